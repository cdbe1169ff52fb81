# RDS rotates the managed master password (every 7 days by default). ECS resolves
# secrets only when a task starts, and Wharf opens new connections with the password it
# was started with, so after a rotation the running tasks can no longer open database
# connections. When Secrets Manager reports the rotation, this rolls the service: new
# tasks start with the new password, the old ones drain.

locals {
  restart_on_rotation = var.restart_on_db_password_rotation ? 1 : 0
}

resource "aws_cloudwatch_event_rule" "db_password_rotated" {
  count       = local.restart_on_rotation
  name_prefix = "${var.name}-db-rotated-"
  description = "The RDS-managed password of ${var.name} was rotated"
  event_pattern = jsonencode({
    source        = ["aws.secretsmanager"]
    "detail-type" = ["AWS Service Event via CloudTrail"]
    detail = {
      eventSource         = ["secretsmanager.amazonaws.com"]
      eventName           = ["RotationSucceeded"]
      additionalEventData = { SecretId = [local.db_secret_arn] }
    }
  })
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "redeploy" {
  count             = local.restart_on_rotation
  name              = "/aws/vendedlogs/states/${var.name}-redeploy"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags

  depends_on = [aws_kms_key_policy.this]
}

data "aws_iam_policy_document" "states_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "redeploy" {
  count              = local.restart_on_rotation
  name_prefix        = "${var.name}-redeploy-"
  description        = "Rolls the ${var.name} ECS service after a database password rotation"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "redeploy" {
  statement {
    sid       = "RollService"
    actions   = ["ecs:UpdateService"]
    resources = [aws_ecs_service.wharf.id]
  }
  # Step Functions' log delivery API has no resource-level permissions.
  statement {
    sid = "LogDelivery"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "redeploy" {
  count  = local.restart_on_rotation
  name   = "redeploy"
  role   = aws_iam_role.redeploy[0].id
  policy = data.aws_iam_policy_document.redeploy.json
}

resource "aws_sfn_state_machine" "redeploy" {
  count    = local.restart_on_rotation
  name     = "${var.name}-redeploy"
  role_arn = aws_iam_role.redeploy[0].arn
  type     = "STANDARD"

  definition = jsonencode({
    Comment = "Force a new deployment of the Wharf service"
    StartAt = "Redeploy"
    States = {
      Redeploy = {
        Type     = "Task"
        Resource = "arn:${local.partition}:states:::aws-sdk:ecs:updateService"
        Parameters = {
          Cluster            = aws_ecs_cluster.this.name
          Service            = aws_ecs_service.wharf.name
          ForceNewDeployment = true
        }
        Retry = [{
          ErrorEquals     = ["States.ALL"]
          IntervalSeconds = 10
          MaxAttempts     = 5
          BackoffRate     = 2
        }]
        End = true
      }
    }
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.redeploy[0].arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = true
  }

  tags = local.tags
}

data "aws_iam_policy_document" "events_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "events" {
  count              = local.restart_on_rotation
  name_prefix        = "${var.name}-events-"
  description        = "Lets EventBridge start the ${var.name} redeploy state machine"
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "events" {
  count = local.restart_on_rotation
  name  = "start-redeploy"
  role  = aws_iam_role.events[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "states:StartExecution"
      Resource = aws_sfn_state_machine.redeploy[0].arn
    }]
  })
}

resource "aws_cloudwatch_event_target" "redeploy" {
  count    = local.restart_on_rotation
  rule     = aws_cloudwatch_event_rule.db_password_rotated[0].name
  arn      = aws_sfn_state_machine.redeploy[0].arn
  role_arn = aws_iam_role.events[0].arn
}
