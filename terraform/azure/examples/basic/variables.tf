variable "name" {
  description = "Prefix of the resource names (3–12 lowercase letters and digits)."
  type        = string
  default     = "wharf"
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"
}

variable "resource_group_name" {
  description = "Existing resource group."
  type        = string
}

variable "container_apps_subnet_id" {
  description = "Subnet delegated to Microsoft.App/environments."
  type        = string
}

variable "postgres_subnet_id" {
  description = "Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers."
  type        = string
}

variable "private_endpoint_subnet_id" {
  description = "Subnet for private endpoints."
  type        = string
}

variable "container_image" {
  description = "Wharf image reference, by digest."
  type        = string
}

variable "acr_id" {
  description = "Resource ID of the ACR holding the image, or null for a public image."
  type        = string
  default     = null
}

variable "registry_hostname" {
  description = "Custom host name of the registry, or null for the generated one."
  type        = string
  default     = null
}
