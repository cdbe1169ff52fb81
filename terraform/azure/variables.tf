# ---------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name. Lowercase letters and digits (storage account and Key Vault names allow nothing else), 3–12 characters."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.name))
    error_message = "name must be 3–12 lowercase letters and digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region (westeurope, eastus2…)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "location must be a region name without spaces, such as westeurope."
  }
}

variable "resource_group_name" {
  description = "Existing resource group to deploy into."
  type        = string

  validation {
    condition     = length(var.resource_group_name) > 0 && length(var.resource_group_name) <= 90
    error_message = "resource_group_name must be 1–90 characters."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "container_apps_subnet_id" {
  description = "ID of the existing subnet of the Container Apps environment (a /27 or larger, delegated to Microsoft.App/environments). Its address range becomes Wharf's http.trustedproxies (the environment's ingress proxies live in it)."
  type        = string

  validation {
    condition     = can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$", var.container_apps_subnet_id))
    error_message = "container_apps_subnet_id must be a subnet resource ID."
  }
}

variable "postgres_subnet_id" {
  description = "ID of the existing subnet for PostgreSQL Flexible Server VNet integration (delegated to Microsoft.DBforPostgreSQL/flexibleServers, in the same VNet)."
  type        = string

  validation {
    condition     = can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$", var.postgres_subnet_id))
    error_message = "postgres_subnet_id must be a subnet resource ID."
  }
}

variable "private_endpoint_subnet_id" {
  description = "ID of the existing subnet (same VNet) for the private endpoint of Azure Cache for Redis."
  type        = string

  validation {
    condition     = can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$", var.private_endpoint_subnet_id))
    error_message = "private_endpoint_subnet_id must be a subnet resource ID."
  }
}

# ---------------------------------------------------------------------------------------
# Registry endpoint and app
# ---------------------------------------------------------------------------------------

variable "registry_hostname" {
  description = "Optional custom host name of the registry (registry.example.com). Null: the app's generated *.azurecontainerapps.io name. A custom name needs DNS records and a managed certificate binding (README)."
  type        = string
  default     = null

  validation {
    condition     = var.registry_hostname == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.registry_hostname))
    error_message = "registry_hostname must be a lowercase DNS name or null."
  }
}

variable "container_image" {
  description = "Wharf image (myregistry.azurecr.io/wharf@sha256:…)."
  type        = string

  validation {
    condition     = length(var.container_image) > 0 && !can(regex("\\s", var.container_image))
    error_message = "container_image must be a non-empty image reference."
  }
}

variable "acr_id" {
  description = "Optional resource ID of the Azure Container Registry holding container_image; the app's identity gets AcrPull on it and pulls with it. Null: a public image."
  type        = string
  default     = null

  validation {
    condition     = var.acr_id == null || can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.ContainerRegistry/registries/[^/]+$", var.acr_id))
    error_message = "acr_id must be a container registry resource ID or null."
  }
}

variable "cpu" {
  description = "vCPUs per replica (Consumption profile: 0.25–4 in steps of 0.25; memory is 2 GiB per vCPU)."
  type        = number
  default     = 1

  validation {
    condition     = var.cpu >= 0.25 && var.cpu <= 4 && floor(var.cpu * 4) == var.cpu * 4
    error_message = "cpu must be a multiple of 0.25 between 0.25 and 4."
  }
}

variable "min_replicas" {
  description = "Minimum replicas (at least 1: Wharf's background workers need a running instance)."
  type        = number
  default     = 2

  validation {
    condition     = var.min_replicas >= 1 && var.min_replicas <= 300
    error_message = "min_replicas must be between 1 and 300."
  }
}

variable "max_replicas" {
  description = "Maximum replicas. max_replicas × database_max_connections must stay below the server's max_connections."
  type        = number
  default     = 10

  validation {
    condition     = var.max_replicas >= 1 && var.max_replicas <= 300
    error_message = "max_replicas must be between 1 and 300."
  }
}

variable "scale_concurrent_requests" {
  description = "Concurrent HTTP requests per replica at which Container Apps adds a replica."
  type        = number
  default     = 100

  validation {
    condition     = var.scale_concurrent_requests >= 1
    error_message = "scale_concurrent_requests must be at least 1."
  }
}

variable "ingress_allowed_cidrs" {
  description = "Optional IPv4 CIDR blocks allowed to reach the registry; empty: everyone."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ingress_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "ingress_allowed_cidrs must be IPv4 CIDR blocks."
  }
}

variable "zone_redundant" {
  description = "Spread the Container Apps environment across availability zones (needs a region with zones)."
  type        = bool
  default     = true
}

variable "extra_environment" {
  description = "More environment variables for Wharf, typically REGISTRY_* overrides. They win over the module's own."
  type        = map(string)
  default     = {}
}

variable "otel_exporter_otlp_endpoint" {
  description = "Optional OTLP endpoint for traces. Null: no trace export."
  type        = string
  default     = null
}

variable "otel_traces_sampler_arg" {
  description = "Share of traces kept (parentbased_traceidratio), 0–1."
  type        = number
  default     = 0.05

  validation {
    condition     = var.otel_traces_sampler_arg >= 0 && var.otel_traces_sampler_arg <= 1
    error_message = "otel_traces_sampler_arg must be between 0 and 1."
  }
}

variable "log_retention_days" {
  description = "Retention of the Log Analytics workspace receiving the app's logs, days."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

# ---------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------

variable "storage_replication" {
  description = "Replication of the storage account: ZRS (zones of one region), GZRS/RAGZRS (plus a paired region), LRS."
  type        = string
  default     = "ZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage_replication)
    error_message = "storage_replication must be LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  }
}

variable "blob_soft_delete_days" {
  description = "Days deleted blobs and containers stay recoverable (soft delete)."
  type        = number
  default     = 7

  validation {
    condition     = var.blob_soft_delete_days >= 1 && var.blob_soft_delete_days <= 365
    error_message = "blob_soft_delete_days must be between 1 and 365."
  }
}

variable "storage_allowed_cidrs" {
  description = "Optional IPv4 CIDR blocks allowed to reach the storage account's public endpoint, besides the app's subnet. Empty: every network may, which pulls need: Wharf redirects blob GETs to SAS URLs of the account, fetched by the clients themselves. When set, the app subnet is allowed too and needs the Microsoft.Storage service endpoint."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.storage_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "storage_allowed_cidrs must be IPv4 CIDR blocks."
  }
}

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------

variable "postgres_sku" {
  description = "PostgreSQL Flexible Server SKU (B_Standard_B2s, GP_Standard_D2ds_v5…). High availability needs General Purpose or Memory Optimized."
  type        = string
  default     = "GP_Standard_D2ds_v5"

  validation {
    condition     = can(regex("^(B|GP|MO)_Standard_", var.postgres_sku))
    error_message = "postgres_sku must be a Flexible Server SKU such as GP_Standard_D2ds_v5."
  }
}

variable "postgres_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "15"

  validation {
    condition     = contains(["15", "16", "17"], var.postgres_version)
    error_message = "postgres_version must be 15, 16 or 17."
  }
}

variable "postgres_storage_mb" {
  description = "Storage of the server, MB (a size Flexible Server offers: 32768, 65536, 131072…)."
  type        = number
  default     = 32768

  validation {
    condition     = contains([32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4193280, 4194304, 8388608, 16777216, 33553408], var.postgres_storage_mb)
    error_message = "postgres_storage_mb must be a Flexible Server storage size (32768, 65536, 131072, …)."
  }
}

variable "postgres_high_availability" {
  description = "Zone-redundant high availability (a standby in another zone with automatic failover)."
  type        = bool
  default     = true
}

variable "postgres_backup_retention_days" {
  description = "Days of backups (point-in-time restore window)."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days must be between 7 and 35."
  }
}

variable "postgres_geo_redundant_backup" {
  description = "Keep backups in the paired region too (cannot be changed after creation)."
  type        = bool
  default     = false
}

variable "postgres_admin_login" {
  description = "Administrator login Wharf connects as."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.postgres_admin_login)) && !contains(["azure_superuser", "azure_pg_admin", "admin", "administrator", "root", "guest", "public", "postgres"], var.postgres_admin_login)
    error_message = "postgres_admin_login must be a lowercase identifier and not a reserved name."
  }
}

variable "postgres_password_version" {
  description = "Bump to generate and set a new administrator password (write-only: it never enters the state); then restart the app's revision."
  type        = number
  default     = 1

  validation {
    condition     = var.postgres_password_version >= 1
    error_message = "postgres_password_version must be a positive integer."
  }
}

variable "db_require_tls" {
  description = "Require TLS on database connections (require_secure_transport = ON, sslmode=require). Leave false until Wharf is built with sqlx's TLS support: the current binary cannot negotiate TLS with PostgreSQL (README)."
  type        = bool
  default     = false
}

variable "database_max_connections" {
  description = "Wharf's database.maxconnections: pooled connections per replica."
  type        = number
  default     = 16

  validation {
    condition     = var.database_max_connections >= 2 && var.database_max_connections <= 200
    error_message = "database_max_connections must be between 2 and 200."
  }
}

# ---------------------------------------------------------------------------------------
# Redis and Key Vault
# ---------------------------------------------------------------------------------------

variable "redis_sku" {
  description = "Azure Cache for Redis SKU: Standard (primary + replica) or Premium (zones, larger sizes)."
  type        = string
  default     = "Standard"

  validation {
    condition     = contains(["Standard", "Premium"], var.redis_sku)
    error_message = "redis_sku must be Standard or Premium (Basic has no replica and no SLA)."
  }
}

variable "redis_capacity" {
  description = "Cache size: C family 0–6 for Standard, P family 1–5 for Premium."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_capacity >= 0 && var.redis_capacity <= 6
    error_message = "redis_capacity must be between 0 and 6."
  }
}

variable "key_vault_allowed_cidrs" {
  description = "IPv4 CIDR blocks (the machine running Terraform) allowed through the Key Vault firewall. Empty: the firewall allows every network (RBAC still decides). When set, the app subnet is allowed too and needs the Microsoft.KeyVault service endpoint."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.key_vault_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "key_vault_allowed_cidrs must be IPv4 CIDR blocks."
  }
}
