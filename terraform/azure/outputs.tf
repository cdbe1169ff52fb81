output "registry_url" {
  description = "Base URL of the registry."
  value       = local.registry_url
}

output "app_fqdn" {
  description = "Generated FQDN of the container app (the CNAME target of a custom host name)."
  value       = azurerm_container_app.wharf.ingress[0].fqdn
}

output "custom_domain_verification_id" {
  description = "Value of the TXT record asuid.<registry_hostname> that proves ownership of a custom host name."
  value       = azurerm_container_app_environment.this.custom_domain_verification_id
}

output "storage_account_name" {
  description = "Storage account holding the blobs."
  value       = azurerm_storage_account.this.name
}

output "blob_container_name" {
  description = "Blob container holding the blobs."
  value       = azurerm_storage_container.blobs.name
}

output "database_endpoint" {
  description = "PostgreSQL Flexible Server FQDN (private DNS) and port."
  value       = "${azurerm_postgresql_flexible_server.this.fqdn}:5432"
}

output "redis_endpoint" {
  description = "Azure Cache for Redis endpoint, host:TLS port (private endpoint)."
  value       = "${azurerm_redis_cache.this.hostname}:${azurerm_redis_cache.this.ssl_port}"
}

output "key_vault_id" {
  description = "Key Vault holding the app's secrets."
  value       = azurerm_key_vault.this.id
}

output "identity_principal_id" {
  description = "Principal ID of the app's managed identity (grant it AcrPull on your registry)."
  value       = azurerm_user_assigned_identity.wharf.principal_id
}
