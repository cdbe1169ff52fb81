# The smallest complete use of the module: an existing VPC, an ACM certificate, a Route 53
# zone and a CloudFront key pair (README: before you apply).

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project = "wharf"
    }
  }
}

module "wharf" {
  source = "../.."

  name               = var.name
  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  public_subnet_ids  = var.public_subnet_ids

  registry_hostname = var.registry_hostname
  certificate_arn   = var.certificate_arn
  route53_zone_id   = var.route53_zone_id

  container_image           = var.container_image
  cloudfront_public_key_pem = file(var.cloudfront_public_key_path)

  # A small production: two tasks at least, Multi-AZ database, one Redis replica.
  min_tasks      = 2
  max_tasks      = 6
  db_multi_az    = true
  redis_replicas = 1
}
