# The smallest complete use of the module: an existing resource group and VNet with three
# subnets (Container Apps, PostgreSQL, private endpoints) and an image in ACR.

provider "azurerm" {
  features {}
  # The storage account has shared keys disabled: manage its containers through Azure AD.
  storage_use_azuread = true
}

module "wharf" {
  source = "../.."

  name                = var.name
  location            = var.location
  resource_group_name = var.resource_group_name

  container_apps_subnet_id   = var.container_apps_subnet_id
  postgres_subnet_id         = var.postgres_subnet_id
  private_endpoint_subnet_id = var.private_endpoint_subnet_id

  container_image   = var.container_image
  acr_id            = var.acr_id
  registry_hostname = var.registry_hostname

  min_replicas               = 2
  max_replicas               = 6
  postgres_high_availability = true
}
