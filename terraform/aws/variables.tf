# ---------------------------------------------------------------------------------------
# Naming and placement
# ---------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (ECS cluster and service, RDS, ElastiCache, ALB, IAM roles, secrets). Lowercase letters, digits and hyphens."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3–22 characters: lowercase letters, digits and hyphens, starting with a letter (ALB and target group names are limited to 32 characters with their suffixes)."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "ID of the existing VPC to deploy into (the module creates no VPC, subnets, NAT or routes)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "private_subnet_ids" {
  description = "IDs of the private subnets (at least two, in different availability zones) for the ECS tasks, RDS and ElastiCache. The tasks need a route to the internet or VPC endpoints for S3, ECR, CloudWatch Logs and Secrets Manager."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must hold at least two subnet IDs (subnet-…)."
  }
}

variable "public_subnet_ids" {
  description = "IDs of the subnets of the load balancer (at least two, in different availability zones): public subnets for an internet-facing ALB, private ones when alb_internal is true. Their CIDR blocks become Wharf's http.trustedproxies."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2 && alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids must hold at least two subnet IDs (subnet-…)."
  }
}

# ---------------------------------------------------------------------------------------
# Registry endpoint
# ---------------------------------------------------------------------------------------

variable "registry_hostname" {
  description = "Host name clients use for the registry (docker push registry.example.com/team/app). It must be covered by certificate_arn; Wharf's http.host becomes https://<registry_hostname>."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.registry_hostname))
    error_message = "registry_hostname must be a lowercase DNS name such as registry.example.com."
  }
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate (in the ALB's region) for registry_hostname, served by the HTTPS listener."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "route53_zone_id" {
  description = "Optional Route 53 hosted zone ID in which to create the alias record registry_hostname → ALB. Null: point your DNS at the alb_dns_name output yourself."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id == null || can(regex("^Z[A-Z0-9]{4,32}$", var.route53_zone_id))
    error_message = "route53_zone_id must be a hosted zone ID (Z…) or null."
  }
}

variable "alb_internal" {
  description = "Make the load balancer internal (reachable only inside the VPC and connected networks)."
  type        = bool
  default     = false
}

variable "alb_ingress_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer on ports 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

variable "alb_ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("^ELBSecurityPolicy-(TLS13-1-[23]|TLS-1-2|FS-1-2)", var.alb_ssl_policy))
    error_message = "alb_ssl_policy must be a TLS 1.2+ ELB security policy (ELBSecurityPolicy-TLS13-1-2-…, -TLS-1-2-…, -FS-1-2-…)."
  }
}

variable "alb_idle_timeout" {
  description = "Seconds the ALB keeps a connection open with no bytes moving. A layer upload streams continuously, so this bounds stalls, not upload duration."
  type        = number
  default     = 300

  validation {
    condition     = var.alb_idle_timeout >= 60 && var.alb_idle_timeout <= 4000
    error_message = "alb_idle_timeout must be between 60 and 4000 seconds."
  }
}

variable "alb_deletion_protection" {
  description = "Protect the load balancer from deletion (turn off before terraform destroy)."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "Optional S3 bucket (with the ELB log delivery bucket policy) for ALB access logs. Null: no access logs."
  type        = string
  default     = null
}

variable "waf_web_acl_arn" {
  description = "Optional ARN of a regional WAFv2 web ACL to associate with the ALB. Null: no WAF."
  type        = string
  default     = null

  validation {
    condition     = var.waf_web_acl_arn == null || can(regex("^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/", var.waf_web_acl_arn))
    error_message = "waf_web_acl_arn must be a regional WAFv2 web ACL ARN or null."
  }
}

# ---------------------------------------------------------------------------------------
# Service
# ---------------------------------------------------------------------------------------

variable "container_image" {
  description = "Wharf image to run, by digest preferably (123456789012.dkr.ecr.eu-west-1.amazonaws.com/wharf@sha256:…). Built from the repository's Dockerfile."
  type        = string

  validation {
    condition     = length(var.container_image) > 0 && !can(regex("\\s", var.container_image))
    error_message = "container_image must be a non-empty image reference."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image and of the Fargate tasks."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU). Wharf is CPU-bound on digest hashing and request handling (TLS ends at the ALB); see docs/deployment.md for sizing."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be a Fargate CPU value: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB; must be a valid combination with task_cpu (1024 CPU: 2048–8192)."
  type        = number
  default     = 2048

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880 && var.task_memory % 512 == 0
    error_message = "task_memory must be a multiple of 512 MiB between 512 and 122880."
  }
}

variable "min_tasks" {
  description = "Lower bound of the service's autoscaling, and its initial desired count. At least 2 keeps the registry up through a task or zone failure."
  type        = number
  default     = 2

  validation {
    condition     = var.min_tasks >= 1
    error_message = "min_tasks must be at least 1."
  }
}

variable "max_tasks" {
  description = "Upper bound of the service's autoscaling. Mind the database: max_tasks × database_max_connections must stay below the RDS instance's max_connections."
  type        = number
  default     = 10

  validation {
    condition     = var.max_tasks >= 1 && var.max_tasks <= 200
    error_message = "max_tasks must be between 1 and 200."
  }
}

variable "autoscaling_cpu_target" {
  description = "Target average CPU utilisation (percent) of the service's tasks."
  type        = number
  default     = 60

  validation {
    condition     = var.autoscaling_cpu_target >= 10 && var.autoscaling_cpu_target <= 90
    error_message = "autoscaling_cpu_target must be between 10 and 90."
  }
}

variable "autoscaling_requests_per_target" {
  description = "Target ALB requests per task per minute (ALBRequestCountPerTarget). Manifest and HEAD requests are cheap; measure with your workload."
  type        = number
  default     = 6000

  validation {
    condition     = var.autoscaling_requests_per_target >= 100
    error_message = "autoscaling_requests_per_target must be at least 100."
  }
}

variable "enable_execute_command" {
  description = "Allow ECS Exec into the tasks (adds SSM messages permissions to the task role)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log group of the tasks, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "extra_environment" {
  description = "More environment variables for the Wharf container, typically REGISTRY_* overrides (REGISTRY_AUTH_TOKEN_REALM, REGISTRY_STORAGE_DELETE_ENABLED…). They win over the module's own."
  type        = map(string)
  default     = {}
}

variable "extra_secrets" {
  description = "More secrets for the Wharf container: environment variable name → Secrets Manager secret ARN (optionally with :json-key:: suffix). The execution role may read exactly these."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.extra_secrets) : can(regex("^arn:aws[a-z-]*:secretsmanager:", arn))])
    error_message = "extra_secrets values must be Secrets Manager secret ARNs."
  }
}

variable "otel_exporter_otlp_endpoint" {
  description = "Optional OTLP/HTTP endpoint for traces (an ADOT collector, http://collector:4318). Null: no trace export."
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

# ---------------------------------------------------------------------------------------
# Blob storage and CDN
# ---------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket for blobs. Null: <name>-blobs-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3–63 lowercase letters, digits, dots, hyphens) or null."
  }
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete the bucket with every blob in it. Keep false in production."
  type        = bool
  default     = false
}

variable "bucket_encryption" {
  description = "Server-side encryption of blobs: aws:kms (the module's customer managed key; CloudFront is allowed to decrypt through OAC) or AES256 (S3-managed keys, no KMS request costs)."
  type        = string
  default     = "aws:kms"

  validation {
    condition     = contains(["aws:kms", "AES256"], var.bucket_encryption)
    error_message = "bucket_encryption must be aws:kms or AES256."
  }
}

variable "bucket_versioning" {
  description = "Enable S3 versioning on the blob bucket. Blobs are content-addressed and deleted only by garbage collection, so versioning mainly protects against mistaken deletes, at the cost of keeping noncurrent versions for noncurrent_version_expiration_days."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "With bucket_versioning: days after which noncurrent (deleted or overwritten) object versions are removed."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which S3 aborts unfinished multipart uploads (an instance killed in the middle of a chunk leaves one, invisible but billed)."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && var.abort_incomplete_multipart_upload_days <= 365
    error_message = "abort_incomplete_multipart_upload_days must be between 1 and 365."
  }
}

variable "cloudfront_public_key_pem" {
  description = "PEM-encoded RSA public key (2048-bit, -----BEGIN PUBLIC KEY-----) whose private key signs CloudFront URLs. Generate the pair with openssl; put the private key in the Secrets Manager secret of the cloudfront_private_key_secret_arn output (see README)."
  type        = string

  validation {
    condition     = can(regex("-----BEGIN PUBLIC KEY-----", var.cloudfront_public_key_pem))
    error_message = "cloudfront_public_key_pem must be a PEM public key (-----BEGIN PUBLIC KEY-----)."
  }
}

variable "cloudfront_private_key_secret_arn" {
  description = "Optional ARN of an existing Secrets Manager secret holding the matching PEM private key (as a plain string). Null: the module creates an empty secret for you to fill in."
  type        = string
  default     = null

  validation {
    condition     = var.cloudfront_private_key_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.cloudfront_private_key_secret_arn))
    error_message = "cloudfront_private_key_secret_arn must be a Secrets Manager secret ARN or null."
  }
}

variable "cloudfront_url_duration" {
  description = "How long a CloudFront signed URL given to a client is valid (Go duration: 20m, 1h)."
  type        = string
  default     = "20m"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.cloudfront_url_duration))
    error_message = "cloudfront_url_duration must be a number followed by s, m or h."
  }
}

variable "cloudfront_price_class" {
  description = "CloudFront price class (which edge locations serve blobs)."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_All", "PriceClass_200", "PriceClass_100"], var.cloudfront_price_class)
    error_message = "cloudfront_price_class must be PriceClass_All, PriceClass_200 or PriceClass_100."
  }
}

variable "cloudfront_aliases" {
  description = "Optional alternate domain names for the CloudFront distribution (blobs.example.com). Needs cloudfront_certificate_arn."
  type        = list(string)
  default     = []
}

variable "cloudfront_certificate_arn" {
  description = "ACM certificate in us-east-1 for cloudfront_aliases. Null: the *.cloudfront.net certificate."
  type        = string
  default     = null

  validation {
    condition     = var.cloudfront_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/", var.cloudfront_certificate_arn))
    error_message = "cloudfront_certificate_arn must be an ACM certificate ARN in us-east-1, or null."
  }
}

variable "cloudfront_web_acl_id" {
  description = "Optional ARN of a WAFv2 web ACL with CLOUDFRONT scope for the distribution. Null: none."
  type        = string
  default     = null
}

variable "cloudfront_logs_bucket_domain" {
  description = "Optional bucket domain (logs.s3.amazonaws.com) for CloudFront standard access logs. Null: none."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class. Wharf's metadata is small (rows per blob, manifest and tag); connections matter more than size."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.db_instance_class))
    error_message = "db_instance_class must look like db.t4g.medium."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL engine version (major, or major.minor). Minor versions are upgraded automatically in the maintenance window."
  type        = string
  default     = "15"

  validation {
    condition     = can(regex("^1[5-9](\\.[0-9]+)?$", var.db_engine_version))
    error_message = "db_engine_version must be PostgreSQL 15 or later (15, 15.8, 16…)."
  }
}

variable "db_allocated_storage" {
  description = "Initial gp3 storage of the database, GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 65536
    error_message = "db_allocated_storage must be between 20 and 65536 GiB."
  }
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling, GiB (0 disables storage autoscaling)."
  type        = number
  default     = 200

  validation {
    condition     = var.db_max_allocated_storage == 0 || var.db_max_allocated_storage >= 20
    error_message = "db_max_allocated_storage must be 0 or at least 20."
  }
}

variable "db_multi_az" {
  description = "Run the database with a synchronous standby in another availability zone (automatic failover)."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_deletion_protection" {
  description = "Protect the database from deletion (turn off before terraform destroy)."
  type        = bool
  default     = true
}

variable "db_username" {
  description = "Master user name. RDS generates and rotates its password in Secrets Manager (manage_master_user_password); Wharf connects as this user."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_username)) && !contains(["admin", "postgres", "rdsadmin"], var.db_username)
    error_message = "db_username must be a lowercase identifier and not a reserved name (admin, postgres, rdsadmin)."
  }
}

variable "db_name" {
  description = "Name of the database Wharf uses."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must be a lowercase identifier."
  }
}

variable "db_require_tls" {
  description = "Require TLS on every database connection (rds.force_ssl = 1, sslmode=require). Leave false until Wharf is built with sqlx's TLS support: the current binary cannot negotiate TLS with PostgreSQL and would fail to connect (see README)."
  type        = bool
  default     = false
}

variable "database_max_connections" {
  description = "Wharf's database.maxconnections: pooled connections per task. max_tasks × this must stay below the instance's max_connections."
  type        = number
  default     = 16

  validation {
    condition     = var.database_max_connections >= 2 && var.database_max_connections <= 200
    error_message = "database_max_connections must be between 2 and 200."
  }
}

variable "restart_on_db_password_rotation" {
  description = "Roll the ECS service when Secrets Manager reports a successful rotation of the RDS-managed password. ECS injects secrets only at task start, and Wharf opens new connections with the password it started with, so without this the tasks fail to open connections after a rotation until they are replaced."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type. Wharf keeps small metadata entries (tags, blob links, manifests ≤ 4 MiB) with a TTL; memory needs are modest."
  type        = string
  default     = "cache.t4g.small"

  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.redis_node_type))
    error_message = "redis_node_type must look like cache.t4g.small."
  }
}

variable "redis_engine_version" {
  description = "Redis OSS engine version (7.0 or later)."
  type        = string
  default     = "7.1"

  validation {
    condition     = can(regex("^7\\.[0-9]+$", var.redis_engine_version))
    error_message = "redis_engine_version must be a Redis 7 version such as 7.1."
  }
}

variable "redis_replicas" {
  description = "Read replicas beside the primary. 1 or more enables automatic failover and Multi-AZ; 0 is a single node (a failure costs cache misses only)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 0 && var.redis_replicas <= 5
    error_message = "redis_replicas must be between 0 and 5."
  }
}
