# The app's user-assigned managed identity and everything it may do: read and write
# blobs in its container (not the account), get user delegation keys to sign the SAS
# URLs of blob redirects and server-side compose, read its Key Vault secrets, and pull
# the image from ACR when one is named.

resource "azurerm_user_assigned_identity" "wharf" {
  name                = "${var.name}-registry"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = local.tags
}

resource "azurerm_role_assignment" "blob_data" {
  scope                = azurerm_storage_container.blobs.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.wharf.principal_id
  principal_type       = "ServicePrincipal"
}

# Only generateUserDelegationKey: what a SAS can do is still bounded by the data role
# above, scoped to the container.
resource "azurerm_role_assignment" "blob_delegator" {
  scope                = azurerm_storage_account.this.id
  role_definition_name = "Storage Blob Delegator"
  principal_id         = azurerm_user_assigned_identity.wharf.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "acr_pull" {
  count                = var.acr_id == null ? 0 : 1
  scope                = var.acr_id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_user_assigned_identity.wharf.principal_id
  principal_type       = "ServicePrincipal"
}

data "azurerm_container_registry" "images" {
  count               = var.acr_id == null ? 0 : 1
  name                = regex("(?i)/registries/([^/]+)$", var.acr_id)[0]
  resource_group_name = regex("(?i)/resourceGroups/([^/]+)/", var.acr_id)[0]
}

resource "azurerm_role_assignment" "secrets" {
  for_each = {
    postgres_password = azurerm_key_vault_secret.postgres_password.name
    redis_key         = azurerm_key_vault_secret.redis_key.name
  }
  scope                = "${azurerm_key_vault.this.id}/secrets/${each.value}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.wharf.principal_id
  principal_type       = "ServicePrincipal"
}
