# Wharf on AWS: blobs in S3 behind CloudFront (signed URLs), metadata in RDS PostgreSQL,
# the shared cache in ElastiCache (Redis OSS), the registry as an ECS Fargate service
# behind an Application Load Balancer. The network (VPC, subnets, NAT or VPC endpoints)
# is the caller's. Files by concern: kms.tf, storage.tf, cdn.tf, database.tf, cache.tf,
# service.tf, lb.tf, rotation.tf.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

# The load balancer's subnets: their CIDR blocks are the only peers whose
# X-Forwarded-For Wharf believes (http.trustedproxies).
data "aws_subnet" "lb" {
  for_each = toset(var.public_subnet_ids)
  id       = each.value
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  tags = merge({ "app.kubernetes.io/name" = "wharf", "wharf/deployment" = var.name }, var.tags)

  bucket_name     = coalesce(var.bucket_name, "${var.name}-blobs-${local.account_id}-${local.region}")
  registry_url    = "https://${var.registry_hostname}"
  container_name  = "wharf"
  container_port  = 5000
  trusted_proxies = sort([for s in data.aws_subnet.lb : s.cidr_block])
  bucket_kms      = var.bucket_encryption == "aws:kms"
  cloudfront_key_secret_arn = coalesce(
    var.cloudfront_private_key_secret_arn,
    try(aws_secretsmanager_secret.cloudfront_private_key[0].arn, null),
  )
}
