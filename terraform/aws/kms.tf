# One customer managed key for the deployment's data at rest: blobs (with
# bucket_encryption = aws:kms), the database and its Performance Insights, the Redis
# nodes, the secrets and the log group. IAM policies grant its use to the roles that need
# it; the key policy adds the two services that act without a role of ours.

resource "aws_kms_key" "this" {
  description             = "${var.name}: Wharf data at rest (S3 blobs, RDS, ElastiCache, secrets, logs)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; write access is limited by the principals and conditions of each statement.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only (key policies cannot name other resources).
  #checkov:skip=CKV_AWS_109:The account-root statement is the standard delegation of the key to IAM policies; without it the key becomes unmanageable.
  # Delegates the key to IAM policies of this account (the standard first statement).
  statement {
    sid       = "AccountIAMPolicies"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts the tasks' log group with the key.
  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/ecs/${var.name}",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/vendedlogs/states/${var.name}-redeploy",
      ]
    }
  }

  # CloudFront reads SSE-KMS blobs through origin access control, for this distribution
  # only.
  statement {
    sid       = "CloudFrontOAC"
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.blobs.arn]
    }
  }
}

# A separate resource, so the policy can name the distribution that itself depends on the
# bucket encrypted with this key.
resource "aws_kms_key_policy" "this" {
  key_id = aws_kms_key.this.id
  policy = data.aws_iam_policy_document.kms.json
}
