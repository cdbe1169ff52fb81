# Key Vault with RBAC authorization, purge protection and a firewall. It holds the
# PostgreSQL password (write-only: not in the state) and the Redis access key (read from
# the cache resource, so in the state anyway: README). The app reads them through its
# managed identity.

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV2_AZURE_32:No private endpoint: Terraform writes the secrets from outside the VNet; the firewall (key_vault_allowed_cidrs) and RBAC limit access.
  #checkov:skip=CKV_AZURE_109:The firewall denies by default once key_vault_allowed_cidrs is set; with no CIDRs it allows every network so that a first apply works from anywhere (RBAC still decides).
  #checkov:skip=CKV_AZURE_189:Public network access is needed by Terraform, which writes the secrets; see CKV_AZURE_109.
  name                          = local.key_vault_name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  enable_rbac_authorization     = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    default_action             = length(var.key_vault_allowed_cidrs) > 0 ? "Deny" : "Allow"
    bypass                     = "AzureServices"
    ip_rules                   = var.key_vault_allowed_cidrs
    virtual_network_subnet_ids = length(var.key_vault_allowed_cidrs) > 0 ? [var.container_apps_subnet_id] : []
  }
}

# The identity running Terraform writes the secrets.
resource "azurerm_role_assignment" "deployer_secrets" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_key_vault_secret" "postgres_password" {
  #checkov:skip=CKV_AZURE_41:An expiry would stop the registry on that date; the password is rotated with postgres_password_version instead.
  name             = "postgres-password"
  key_vault_id     = azurerm_key_vault.this.id
  content_type     = "text/plain"
  value_wo         = ephemeral.random_password.postgres.result
  value_wo_version = var.postgres_password_version
  tags             = local.tags

  depends_on = [azurerm_role_assignment.deployer_secrets]
}

resource "azurerm_key_vault_secret" "redis_key" {
  #checkov:skip=CKV_AZURE_41:The access key is Azure's; it changes only when regenerated, and an expiry would stop the registry on that date.
  name         = "redis-access-key"
  key_vault_id = azurerm_key_vault.this.id
  content_type = "text/plain"
  value        = azurerm_redis_cache.this.primary_access_key
  tags         = local.tags

  depends_on = [azurerm_role_assignment.deployer_secrets]
}
