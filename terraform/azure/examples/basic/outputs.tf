output "registry_url" {
  description = "Base URL of the registry."
  value       = module.wharf.registry_url
}

output "app_fqdn" {
  description = "Generated FQDN of the app (CNAME target for a custom host name)."
  value       = module.wharf.app_fqdn
}

output "blob_container" {
  description = "Storage account and container of the blobs."
  value       = "${module.wharf.storage_account_name}/${module.wharf.blob_container_name}"
}

output "database_endpoint" {
  description = "PostgreSQL endpoint."
  value       = module.wharf.database_endpoint
}
