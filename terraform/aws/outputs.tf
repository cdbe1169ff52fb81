output "registry_url" {
  description = "Base URL of the registry (docker login / push / pull against its host)."
  value       = local.registry_url
}

output "alb_dns_name" {
  description = "DNS name of the load balancer: point registry_hostname at it (alias or CNAME) unless route53_zone_id was given."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone ID of the load balancer, for Route 53 alias records."
  value       = aws_lb.this.zone_id
}

output "bucket_name" {
  description = "S3 bucket holding the blobs."
  value       = aws_s3_bucket.blobs.id
}

output "bucket_arn" {
  description = "ARN of the blob bucket."
  value       = aws_s3_bucket.blobs.arn
}

output "cloudfront_domain_name" {
  description = "Domain of the CloudFront distribution serving blobs (the baseurl of Wharf's cloudfront middleware)."
  value       = aws_cloudfront_distribution.blobs.domain_name
}

output "cloudfront_distribution_id" {
  description = "ID of the CloudFront distribution."
  value       = aws_cloudfront_distribution.blobs.id
}

output "cloudfront_public_key_id" {
  description = "ID of the CloudFront public key (Wharf's keypairid)."
  value       = aws_cloudfront_public_key.wharf.id
}

output "cloudfront_private_key_secret_arn" {
  description = "Secrets Manager secret that must hold the PEM private key matching cloudfront_public_key_pem (put it there before the tasks start)."
  value       = local.cloudfront_key_secret_arn
}

output "database_endpoint" {
  description = "PostgreSQL endpoint, host:port."
  value       = aws_db_instance.this.endpoint
}

output "database_master_user_secret_arn" {
  description = "Secrets Manager secret, managed and rotated by RDS, holding the database user's password."
  value       = local.db_secret_arn
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of the ElastiCache replication group (TLS, AUTH)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "ecs_cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "ecs_service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.wharf.name
}

output "task_role_arn" {
  description = "IAM role of the Wharf tasks (add permissions here for extra features)."
  value       = aws_iam_role.task.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the Wharf tasks."
  value       = aws_cloudwatch_log_group.wharf.name
}

output "kms_key_arn" {
  description = "Customer managed KMS key encrypting the deployment's data at rest."
  value       = aws_kms_key.this.arn
}
