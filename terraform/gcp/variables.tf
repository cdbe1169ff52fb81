# ---------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project ID to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6–30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of Cloud Run, Cloud SQL, Memorystore and the serverless NEG."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a region name such as europe-west1."
  }
}

variable "name" {
  description = "Prefix of every resource name. Lowercase letters, digits and hyphens."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3–20 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "network_id" {
  description = "ID of the existing VPC network (projects/P/global/networks/N) reached by Cloud Run through direct VPC egress, and peered with Cloud SQL and Memorystore."
  type        = string

  validation {
    condition     = can(regex("^projects/[^/]+/global/networks/[^/]+$", var.network_id))
    error_message = "network_id must look like projects/PROJECT/global/networks/NAME."
  }
}

variable "subnetwork_id" {
  description = "ID of the subnetwork (projects/P/regions/R/subnetworks/S, in var.region) that Cloud Run's direct VPC egress takes addresses from. Size it for max_instances × 2 addresses."
  type        = string

  validation {
    condition     = can(regex("^projects/[^/]+/regions/[^/]+/subnetworks/[^/]+$", var.subnetwork_id))
    error_message = "subnetwork_id must look like projects/PROJECT/regions/REGION/subnetworks/NAME."
  }
}

variable "create_private_service_access" {
  description = "Create the private services access range and peering (servicenetworking) that Cloud SQL private IP and Memorystore need. Set false if the network already has one."
  type        = bool
  default     = true
}

variable "private_service_access_prefix_length" {
  description = "Prefix length of the private services access range created with create_private_service_access."
  type        = number
  default     = 20

  validation {
    condition     = var.private_service_access_prefix_length >= 16 && var.private_service_access_prefix_length <= 24
    error_message = "private_service_access_prefix_length must be between 16 and 24."
  }
}

# ---------------------------------------------------------------------------------------
# Registry endpoint
# ---------------------------------------------------------------------------------------

variable "registry_hostname" {
  description = "Host name of the registry; a Google-managed certificate is issued for it once its DNS A record points at the load balancer address (output lb_ip_address)."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.registry_hostname))
    error_message = "registry_hostname must be a lowercase DNS name such as registry.example.com."
  }
}

variable "security_policy" {
  description = "Optional Cloud Armor security policy (self link) attached to the backend service."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------
# Cloud Run
# ---------------------------------------------------------------------------------------

variable "container_image" {
  description = "Wharf image in Artifact Registry (REGION-docker.pkg.dev/PROJECT/REPO/wharf@sha256:…)."
  type        = string

  validation {
    condition     = length(var.container_image) > 0 && !can(regex("\\s", var.container_image))
    error_message = "container_image must be a non-empty image reference."
  }
}

variable "cpu" {
  description = "vCPUs per Cloud Run instance (CPU is always allocated: Wharf runs notification delivery, upload purging and garbage collection in the background)."
  type        = string
  default     = "2"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "memory" {
  description = "Memory per Cloud Run instance (Kubernetes quantity: 1Gi, 2Gi…)."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be a quantity in Mi or Gi, such as 1Gi."
  }
}

variable "min_instances" {
  description = "Minimum Cloud Run instances (kept warm; at least 1 keeps background work running)."
  type        = number
  default     = 2

  validation {
    condition     = var.min_instances >= 1
    error_message = "min_instances must be at least 1: Wharf's background workers need a running instance."
  }
}

variable "max_instances" {
  description = "Maximum Cloud Run instances. max_instances × database_max_connections must stay below Cloud SQL's max_connections."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "max_concurrency" {
  description = "Concurrent requests per instance before Cloud Run starts another (Wharf is asynchronous; uploads are mostly I/O wait)."
  type        = number
  default     = 200

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 1000
    error_message = "max_concurrency must be between 1 and 1000."
  }
}

variable "request_timeout" {
  description = "Longest request Cloud Run allows (a layer upload is one request), e.g. 3600s."
  type        = string
  default     = "3600s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.request_timeout)) && tonumber(trimsuffix(var.request_timeout, "s")) <= 3600
    error_message = "request_timeout must be seconds with an s suffix, at most 3600s."
  }
}

variable "http2_end_to_end" {
  description = "Serve the container over HTTP/2 cleartext (h2c) end to end. Cloud Run limits HTTP/1 request bodies to 32 MiB, so pushing larger layers needs this; it needs a Wharf build that speaks h2c (README), so it is off by default."
  type        = bool
  default     = false
}

variable "extra_environment" {
  description = "More environment variables for Wharf, typically REGISTRY_* overrides. They win over the module's own."
  type        = map(string)
  default     = {}
}

variable "otel_exporter_otlp_endpoint" {
  description = "Optional OTLP endpoint for traces (a collector reachable through the VPC). Null: no trace export."
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

variable "deletion_protection" {
  description = "Protect the Cloud Run service, the Cloud SQL instance and the bucket (force_destroy off) from deletion."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the GCS bucket for blobs. Null: <project>-<name>-blobs."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid bucket name or null."
  }
}

variable "bucket_location" {
  description = "Location of the bucket: a region (same as var.region for the cheapest traffic) or a multi/dual-region (EU, US)."
  type        = string
  default     = null
}

variable "bucket_versioning" {
  description = "Enable object versioning on the bucket (keeps garbage-collected blobs until noncurrent_version_days)."
  type        = bool
  default     = false
}

variable "noncurrent_version_days" {
  description = "With bucket_versioning: days after which noncurrent object versions are deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which GCS aborts unfinished XML-API multipart uploads left by an instance that died mid-chunk."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && var.abort_incomplete_multipart_upload_days <= 365
    error_message = "abort_incomplete_multipart_upload_days must be between 1 and 365."
  }
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/…/cryptoKeys/…) for CMEK on the bucket and the Cloud SQL instance. Null: Google-managed encryption. The Cloud Storage and Cloud SQL service agents need encrypter/decrypter on it."
  type        = string
  default     = null
}

variable "access_logs_bucket" {
  description = "Optional bucket receiving GCS usage logs of the blob bucket. Null: none (Cloud Audit Logs still record admin activity)."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------
# Cloud SQL
# ---------------------------------------------------------------------------------------

variable "db_tier" {
  description = "Cloud SQL machine tier (db-custom-CPUS-MEMORY_MB or db-perf-optimized-N-…)."
  type        = string
  default     = "db-custom-2-7680"

  validation {
    condition     = can(regex("^db-", var.db_tier))
    error_message = "db_tier must be a Cloud SQL tier such as db-custom-2-7680."
  }
}

variable "db_version" {
  description = "Cloud SQL PostgreSQL version."
  type        = string
  default     = "POSTGRES_15"

  validation {
    condition     = can(regex("^POSTGRES_(1[5-9])$", var.db_version))
    error_message = "db_version must be POSTGRES_15 or later."
  }
}

variable "db_high_availability" {
  description = "REGIONAL availability (a standby in another zone with automatic failover) instead of ZONAL."
  type        = bool
  default     = true
}

variable "db_disk_size_gb" {
  description = "Initial SSD size of the database, GB (grows automatically)."
  type        = number
  default     = 20

  validation {
    condition     = var.db_disk_size_gb >= 10
    error_message = "db_disk_size_gb must be at least 10."
  }
}

variable "db_backup_retained_count" {
  description = "Number of daily backups kept (point-in-time recovery covers the last 7 days)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retained_count >= 1 && var.db_backup_retained_count <= 365
    error_message = "db_backup_retained_count must be between 1 and 365."
  }
}

variable "db_require_tls" {
  description = "Accept only encrypted database connections (ssl_mode ENCRYPTED_ONLY, sslmode=require). Leave false until Wharf is built with sqlx's TLS support: the current binary cannot negotiate TLS with PostgreSQL (README)."
  type        = bool
  default     = false
}

variable "db_user" {
  description = "Database user Wharf connects as (a built-in user with a generated password)."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_user)) && var.db_user != "postgres"
    error_message = "db_user must be a lowercase identifier other than postgres."
  }
}

variable "db_password_version" {
  description = "Bump to generate and set a new database password (write-only: the password never enters the state). New Cloud Run revisions pick it up; roll the service after bumping."
  type        = number
  default     = 1

  validation {
    condition     = var.db_password_version >= 1
    error_message = "db_password_version must be a positive integer."
  }
}

variable "database_max_connections" {
  description = "Wharf's database.maxconnections: pooled connections per instance."
  type        = number
  default     = 16

  validation {
    condition     = var.database_max_connections >= 2 && var.database_max_connections <= 200
    error_message = "database_max_connections must be between 2 and 200."
  }
}

# ---------------------------------------------------------------------------------------
# Memorystore
# ---------------------------------------------------------------------------------------

variable "redis_tier" {
  description = "Memorystore tier: STANDARD_HA (replica with automatic failover) or BASIC (one node; a failure costs cache misses only)."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_memory_size_gb" {
  description = "Memorystore capacity in GB."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_memory_size_gb >= 1 && var.redis_memory_size_gb <= 300
    error_message = "redis_memory_size_gb must be between 1 and 300."
  }
}

variable "redis_version" {
  description = "Memorystore Redis version."
  type        = string
  default     = "REDIS_7_2"

  validation {
    condition     = can(regex("^REDIS_7_[0-9]$", var.redis_version))
    error_message = "redis_version must be a Redis 7 version such as REDIS_7_2."
  }
}
