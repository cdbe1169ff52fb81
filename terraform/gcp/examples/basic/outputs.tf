output "registry_url" {
  description = "Base URL of the registry."
  value       = module.wharf.registry_url
}

output "lb_ip_address" {
  description = "Point registry_hostname's A record here."
  value       = module.wharf.lb_ip_address
}

output "bucket_name" {
  description = "Blob bucket."
  value       = module.wharf.bucket_name
}

output "database_endpoint" {
  description = "Cloud SQL private endpoint."
  value       = module.wharf.database_endpoint
}
