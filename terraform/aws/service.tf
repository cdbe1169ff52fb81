# The registry: an ECS Fargate service of stateless Wharf tasks. Configuration comes as
# REGISTRY_* environment variables over the image's default file (REGISTRY_STORAGE=s3
# replaces its filesystem driver); secrets are injected by ECS from Secrets Manager.

locals {
  db_secret_arn    = aws_db_instance.this.master_user_secret[0].secret_arn
  redis_secret_arn = aws_secretsmanager_secret.redis_auth.arn

  # Secret ARNs without a ":json-key:stage:version" suffix, for IAM.
  extra_secret_arns = [for v in values(var.extra_secrets) : join(":", slice(split(":", v), 0, 7))]
  readable_secret_arns = distinct(concat(
    [local.db_secret_arn, local.redis_secret_arn, local.cloudfront_key_secret_arn],
    local.extra_secret_arns,
  ))

  cloudfront_key_file = "/run/wharf/cloudfront-private-key.pem"

  environment = merge(
    {
      REGISTRY_LOG_FORMATTER                = "json"
      REGISTRY_HTTP_ADDR                    = ":${local.container_port}"
      REGISTRY_HTTP_HOST                    = local.registry_url
      REGISTRY_HTTP_TRUSTEDPROXIES          = jsonencode(local.trusted_proxies)
      REGISTRY_STORAGE                      = "s3"
      REGISTRY_STORAGE_S3_BUCKET            = aws_s3_bucket.blobs.id
      REGISTRY_STORAGE_S3_REGION            = local.region
      REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR = "redis"
      REGISTRY_REDIS_ADDR                   = "${aws_elasticache_replication_group.this.primary_endpoint_address}:6379"
      REGISTRY_REDIS_TLS_ENABLED            = "true"
      # No password in the URL: PGPASSWORD (from the RDS-managed secret) supplies it.
      REGISTRY_DATABASE_URL            = "postgres://${var.db_username}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/${var.db_name}?sslmode=${var.db_require_tls ? "require" : "prefer"}"
      REGISTRY_DATABASE_MAXCONNECTIONS = tostring(var.database_max_connections)
      # JSON is YAML: the whole middleware list in one variable.
      REGISTRY_MIDDLEWARE_STORAGE = jsonencode([{
        name = "cloudfront"
        options = {
          baseurl    = "https://${length(var.cloudfront_aliases) > 0 ? var.cloudfront_aliases[0] : aws_cloudfront_distribution.blobs.domain_name}"
          privatekey = local.cloudfront_key_file
          keypairid  = aws_cloudfront_public_key.wharf.id
          duration   = var.cloudfront_url_duration
        }
      }])
      WHARF_CLOUDFRONT_PRIVATE_KEY_FILE = local.cloudfront_key_file
      WHARF_HEALTHCHECK_URL             = "http://127.0.0.1:${local.container_port}/readyz"
    },
    var.otel_exporter_otlp_endpoint == null ? {} : {
      OTEL_EXPORTER_OTLP_ENDPOINT = var.otel_exporter_otlp_endpoint
      OTEL_SERVICE_NAME           = "wharf"
      OTEL_TRACES_SAMPLER         = "parentbased_traceidratio"
      OTEL_TRACES_SAMPLER_ARG     = tostring(var.otel_traces_sampler_arg)
      OTEL_RESOURCE_ATTRIBUTES    = "deployment.environment=${var.name}"
    },
    var.extra_environment,
  )

  secrets = merge(
    {
      PGPASSWORD                   = "${local.db_secret_arn}:password::"
      REGISTRY_REDIS_PASSWORD      = local.redis_secret_arn
      WHARF_CLOUDFRONT_PRIVATE_KEY = local.cloudfront_key_secret_arn
    },
    var.extra_secrets,
  )
}

resource "aws_cloudwatch_log_group" "wharf" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags

  depends_on = [aws_kms_key_policy.this]
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

# ---------------------------------------------------------------------------------------
# IAM: the execution role (ECS itself: pull the image, write logs, read the secrets) and
# the task role (Wharf: its bucket's objects, nothing else).
# ---------------------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-exec-"
  description        = "ECS execution role of ${var.name}: image pull, logs, secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution_managed" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.readable_secret_arns
  }
  statement {
    sid       = "DecryptOwnSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-task-"
  description        = "Role of the Wharf tasks of ${var.name}: the blob bucket only"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.blobs.arn]
  }

  # Objects: blobs, upload chunks, multipart uploads of the server-side compose
  # (UploadPartCopy reads with GetObject and writes with PutObject).
  statement {
    sid = "BucketObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.blobs.arn}/*"]
  }

  dynamic "statement" {
    for_each = local.bucket_kms ? [1] : []
    content {
      sid       = "BlobEncryptionKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.this.arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      # ECS Exec's SSM channels have no resource-level permissions.
      sid = "EcsExec"
      actions = [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
      ]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "wharf"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# ---------------------------------------------------------------------------------------
# Task definition and service
# ---------------------------------------------------------------------------------------

resource "aws_ecs_task_definition" "wharf" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Writable scratch for the entrypoint (the CloudFront key file) under a read-only root.
  volume {
    name = "run-wharf"
  }

  container_definitions = jsonencode([{
    name                   = local.container_name
    image                  = var.container_image
    essential              = true
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    stopTimeout            = 60
    portMappings = [{
      containerPort = local.container_port
      protocol      = "tcp"
      name          = "http"
    }]
    mountPoints = [{
      sourceVolume  = "run-wharf"
      containerPath = "/run/wharf"
      readOnly      = false
    }]
    environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets     = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]
    healthCheck = {
      command     = ["CMD-SHELL", "curl -fsS --max-time 4 -o /dev/null http://127.0.0.1:${local.container_port}/readyz || exit 1"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    ulimits = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.wharf.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "wharf"
        mode                  = "non-blocking"
        max-buffer-size       = "4m"
      }
    }
  }])

  tags = local.tags
}

resource "aws_ecs_service" "wharf" {
  name                               = var.name
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.wharf.arn
  desired_count                      = var.min_tasks
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60
  enable_execute_command             = var.enable_execute_command
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.wharf.arn
    container_name   = local.container_name
    container_port   = local.container_port
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    # Autoscaling owns the count after creation.
    ignore_changes = [desired_count]
  }

  tags = local.tags

  depends_on = [aws_lb_listener.https, aws_iam_role_policy.execution_secrets]
}

# ---------------------------------------------------------------------------------------
# Autoscaling: on CPU and on requests per task, whichever asks for more.
# ---------------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "wharf" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.wharf.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = max(var.min_tasks, var.max_tasks)
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.wharf.service_namespace
  resource_id        = aws_appautoscaling_target.wharf.resource_id
  scalable_dimension = aws_appautoscaling_target.wharf.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling_cpu_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  name               = "${var.name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.wharf.service_namespace
  resource_id        = aws_appautoscaling_target.wharf.resource_id
  scalable_dimension = aws_appautoscaling_target.wharf.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling_requests_per_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.wharf.arn_suffix}"
    }
  }
}
