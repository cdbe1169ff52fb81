# ElastiCache for Redis OSS: Wharf's shared metadata cache. TLS in transit, encryption
# at rest, an AUTH token. No snapshots: the cache holds no data of record, and Wharf must
# never be handed an old generation of it (README of the repository, Backends).

resource "aws_elasticache_subnet_group" "this" {
  name        = "${var.name}-redis"
  description = "Wharf Redis subnets"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

# ElastiCache takes the AUTH token only as a plain argument, so it is in the state
# (README: what reaches the state). Characters that Redis AUTH or YAML would mind are left
# out.
resource "random_password" "redis_auth" {
  length           = 48
  special          = true
  override_special = "-_.~"
}

resource "aws_secretsmanager_secret" "redis_auth" {
  #checkov:skip=CKV2_AWS_57:ElastiCache AUTH tokens are rotated with auth_token_update_strategy ROTATE then SET, which a Secrets Manager rotation function cannot coordinate with running tasks; rotate by changing random_password's keepers and redeploying (README).
  name_prefix = "${var.name}/redis-auth-"
  description = "AUTH token of the ${var.name} ElastiCache replication group (Wharf redis.password)"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id     = aws_secretsmanager_secret.redis_auth.id
  secret_string = random_password.redis_auth.result
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-redis7"
  family      = "redis7"
  description = "Wharf cache: evict least recently used keys when full"

  parameter {
    name  = "maxmemory-policy"
    value = "allkeys-lru"
  }

  tags = local.tags
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV2_AWS_50:Multi-AZ with automatic failover is on whenever redis_replicas >= 1 (the default); a single node is allowed for small setups, where a failure costs cache misses only.
  replication_group_id = "${var.name}-cache"
  description          = "Wharf metadata cache"
  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = 6379
  parameter_group_name = aws_elasticache_parameter_group.this.name

  num_cache_clusters         = 1 + var.redis_replicas
  automatic_failover_enabled = var.redis_replicas > 0
  multi_az_enabled           = var.redis_replicas > 0

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = 0
  auto_minor_version_upgrade = true
  maintenance_window         = "sun:05:30-sun:06:30"
  apply_immediately          = false

  tags = local.tags
}
