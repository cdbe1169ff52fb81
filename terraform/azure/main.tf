# Wharf on Azure: blobs in a Storage account container, metadata in PostgreSQL Flexible
# Server (VNet-integrated), the shared cache in Azure Cache for Redis (TLS only, private
# endpoint), the registry on Azure Container Apps with a user-assigned managed identity
# and Key Vault secrets. The VNet and its subnets are the caller's. Files by concern:
# identity.tf, storage.tf, database.tf, cache.tf, keyvault.tf, app.tf.

data "azurerm_client_config" "current" {}

locals {
  tags = merge({ app = "wharf", deployment = var.name }, var.tags)

  # Parts of the subnet IDs: the VNet (for private DNS links) and the app subnet (for
  # its address range).
  app_subnet = regex("(?i)^/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft.Network/virtualNetworks/(?P<vnet>[^/]+)/subnets/(?P<subnet>[^/]+)$", var.container_apps_subnet_id)
  vnet_id    = regex("(?i)^(.+)/subnets/[^/]+$", var.container_apps_subnet_id)[0]

  # Globally unique names derived from the prefix and the resource group.
  suffix               = substr(sha1("${data.azurerm_client_config.current.subscription_id}/${var.resource_group_name}/${var.name}"), 0, 8)
  storage_account_name = "${var.name}blobs${local.suffix}"
  key_vault_name       = "${var.name}-kv-${local.suffix}"
  blob_container_name  = "blobs"
}

data "azurerm_subnet" "apps" {
  name                 = local.app_subnet.subnet
  virtual_network_name = local.app_subnet.vnet
  resource_group_name  = local.app_subnet.rg
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name}-logs"
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}
