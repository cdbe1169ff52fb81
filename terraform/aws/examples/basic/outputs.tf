output "registry_url" {
  description = "Base URL of the registry."
  value       = module.wharf.registry_url
}

output "alb_dns_name" {
  description = "Load balancer DNS name (for DNS outside Route 53)."
  value       = module.wharf.alb_dns_name
}

output "bucket_name" {
  description = "Blob bucket."
  value       = module.wharf.bucket_name
}

output "cloudfront_domain_name" {
  description = "CloudFront domain serving blobs."
  value       = module.wharf.cloudfront_domain_name
}

output "cloudfront_private_key_secret_arn" {
  description = "Secret to fill with the CloudFront private key."
  value       = module.wharf.cloudfront_private_key_secret_arn
}

output "database_endpoint" {
  description = "PostgreSQL endpoint."
  value       = module.wharf.database_endpoint
}
