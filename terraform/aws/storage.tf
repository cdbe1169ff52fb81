# The blob bucket: private, encrypted, TLS-only; read by CloudFront through origin
# access control and by the tasks through their role.

resource "aws_s3_bucket" "blobs" {
  #checkov:skip=CKV_AWS_21:Versioning is optional (bucket_versioning): blobs are immutable and content-addressed, and deletes come only from garbage collection; versioning would keep every collected blob for noncurrent_version_expiration_days.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice with its own bucket, region and cost; blobs can also be re-pushed. Add aws_s3_bucket_replication_configuration outside the module if required.
  #checkov:skip=CKV2_AWS_62:Wharf keeps every blob's state in PostgreSQL; S3 event notifications have no consumer.
  #checkov:skip=CKV_AWS_18:Server access logs need a separate log bucket chosen by the operator; blob reads are logged by CloudFront (cloudfront_logs_bucket_domain) and requests by the ALB and Wharf itself.
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_public_access_block" "blobs" {
  bucket                  = aws_s3_bucket.blobs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "blobs" {
  bucket = aws_s3_bucket.blobs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "blobs" {
  bucket = aws_s3_bucket.blobs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.bucket_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.bucket_kms ? aws_kms_key.this.arn : null
    }
    # S3 Bucket Keys cut KMS requests (and their cost) by orders of magnitude.
    bucket_key_enabled = local.bucket_kms
  }
}

# Only with bucket_versioning; removing it later suspends versioning (existing versions
# stay until the noncurrent-version rule, kept enabled then, removes them).
resource "aws_s3_bucket_versioning" "blobs" {
  count  = var.bucket_versioning ? 1 : 0
  bucket = aws_s3_bucket.blobs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  # An instance killed in the middle of a chunk leaves an unfinished multipart upload:
  # invisible, but billed until aborted.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # Always on: it does nothing on a bucket that was never versioned, and cleans up after
  # versioning is turned off.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.blobs]
}

data "aws_iam_policy_document" "bucket" {
  # Refuse any request over plain HTTP.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.blobs.arn, "${aws_s3_bucket.blobs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # CloudFront (this distribution only) reads blobs; signed URLs decide who may ask it.
  statement {
    sid       = "CloudFrontOACRead"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.blobs.arn}/*"]
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

resource "aws_s3_bucket_policy" "blobs" {
  bucket = aws_s3_bucket.blobs.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.blobs]
}
