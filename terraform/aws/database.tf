# RDS for PostgreSQL. The master password is generated and kept by RDS in Secrets
# Manager (manage_master_user_password): it is never in Terraform's state. The tasks get
# it as PGPASSWORD, which Wharf's PostgreSQL driver reads when database.url has none.

resource "aws_db_subnet_group" "this" {
  name_prefix = "${var.name}-"
  description = "Wharf PostgreSQL subnets"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-pg${split(".", var.db_engine_version)[0]}-"
  family      = "postgres${split(".", var.db_engine_version)[0]}"
  description = "Wharf PostgreSQL parameters"
  tags        = local.tags

  # RDS for PostgreSQL 15+ requires TLS by default; Wharf's current build cannot speak
  # TLS to PostgreSQL (db_require_tls, README). Passwords are still never sent in clear:
  # SCRAM-SHA-256 is the default password method.
  parameter {
    name  = "rds.force_ssl"
    value = var.db_require_tls ? "1" : "0"
  }

  # Statements slower than a second, for the PostgreSQL log export below.
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name_prefix        = "${var.name}-rds-mon-"
  description        = "RDS enhanced monitoring for ${var.name}"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_161:Wharf authenticates to PostgreSQL with a password (sqlx has no IAM token support); enabling IAM auth would add an unused way in.
  #checkov:skip=CKV2_AWS_30:Query logging of every statement is too heavy for a registry; statements slower than 1 s and lock waits are logged (parameter group) and exported.
  #checkov:skip=CKV2_AWS_69:TLS is required when db_require_tls is true; it defaults to false only because the current Wharf binary cannot negotiate TLS with PostgreSQL (README). Traffic stays inside the VPC, security-group-limited to the tasks, and authentication is SCRAM.
  identifier_prefix = "${var.name}-"
  engine            = "postgres"
  engine_version    = var.db_engine_version
  instance_class    = var.db_instance_class

  db_name                       = var.db_name
  username                      = var.db_username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.this.arn

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage == 0 ? null : var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this.arn

  multi_az               = var.db_multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name
  port                   = 5432

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "03:00-04:00"
  maintenance_window        = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.this.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]

  tags = local.tags

  depends_on = [aws_iam_role_policy_attachment.rds_monitoring]
}
