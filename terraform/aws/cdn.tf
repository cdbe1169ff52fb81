# CloudFront in front of the blob bucket. Wharf answers a blob GET with a 307 to a URL of
# this distribution signed with the private key of the trusted key group (canned policy,
# middleware.storage: cloudfront); CloudFront refuses unsigned requests and reads S3
# through origin access control. Blobs are content-addressed, so they cache for long.

resource "aws_cloudfront_origin_access_control" "blobs" {
  name                              = "${var.name}-blobs"
  description                       = "Wharf blob bucket ${local.bucket_name}"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_public_key" "wharf" {
  name        = "${var.name}-url-signing"
  comment     = "Verifies Wharf's signed blob URLs"
  encoded_key = var.cloudfront_public_key_pem

  lifecycle {
    # A new key gets a new ID; create it before the old one goes (rotate by adding the
    # new key to the group, deploying Wharf with it, then removing the old one).
    create_before_destroy = true
  }
}

resource "aws_cloudfront_key_group" "wharf" {
  name    = "${var.name}-url-signing"
  comment = "Keys whose signatures CloudFront accepts for ${var.name}"
  items   = [aws_cloudfront_public_key.wharf.id]
}

# The private key never passes through Terraform: the module creates the secret, and you
# store the PEM in it yourself (README). ECS reads it at task start.
resource "aws_secretsmanager_secret" "cloudfront_private_key" {
  #checkov:skip=CKV2_AWS_57:The value is a CloudFront key pair's private key; rotating it means a new public key in the key group first, which Secrets Manager rotation cannot do. Rotate by hand (README).
  count       = var.cloudfront_private_key_secret_arn == null ? 1 : 0
  name_prefix = "${var.name}/cloudfront-private-key-"
  description = "PEM private key matching CloudFront public key ${var.name}-url-signing; Wharf signs blob URLs with it"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

data "aws_cloudfront_cache_policy" "optimized" {
  name = "Managed-CachingOptimized"
}

data "aws_cloudfront_response_headers_policy" "security" {
  name = "Managed-SecurityHeadersPolicy"
}

resource "aws_cloudfront_distribution" "blobs" {
  #checkov:skip=CKV_AWS_310:A single S3 origin; an origin group needs a second, replicated bucket (see CKV_AWS_144 on the bucket).
  #checkov:skip=CKV_AWS_68:WAF is optional (cloudfront_web_acl_id): every request must already carry a valid CloudFront signature, which a WAF cannot add to.
  #checkov:skip=CKV_AWS_86:Access logs are optional (cloudfront_logs_bucket_domain): they need a log bucket with ACLs enabled, which the operator chooses.
  #checkov:skip=CKV_AWS_374:Blobs are served worldwide by design; restrict with a WAF (cloudfront_web_acl_id) where law requires.
  #checkov:skip=CKV_AWS_305:The distribution serves only signed blob URLs; there is no root object to serve.
  #checkov:skip=CKV2_AWS_47:No WAF is attached by default (cloudfront_web_acl_id is optional); the origin is S3, not a Java application, so the Log4j rule set would not apply.
  #checkov:skip=CKV_AWS_174:With the default *.cloudfront.net certificate CloudFront fixes the minimum protocol at TLSv1; with cloudfront_certificate_arn the module sets TLSv1.2_2021.
  enabled         = true
  is_ipv6_enabled = true
  comment         = "${var.name}: Wharf blobs (signed URLs)"
  price_class     = var.cloudfront_price_class
  aliases         = var.cloudfront_aliases
  web_acl_id      = var.cloudfront_web_acl_id
  http_version    = "http2and3"

  origin {
    origin_id                = "blobs"
    domain_name              = aws_s3_bucket.blobs.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.blobs.id
  }

  default_cache_behavior {
    target_origin_id           = "blobs"
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = false # layers are compressed already
    cache_policy_id            = data.aws_cloudfront_cache_policy.optimized.id
    response_headers_policy_id = data.aws_cloudfront_response_headers_policy.security.id
    trusted_key_groups         = [aws_cloudfront_key_group.wharf.id]
  }

  dynamic "logging_config" {
    for_each = var.cloudfront_logs_bucket_domain == null ? [] : [var.cloudfront_logs_bucket_domain]
    content {
      bucket          = logging_config.value
      prefix          = "${var.name}/"
      include_cookies = false
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.cloudfront_certificate_arn == null
    acm_certificate_arn            = var.cloudfront_certificate_arn
    ssl_support_method             = var.cloudfront_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.cloudfront_certificate_arn == null ? "TLSv1" : "TLSv1.2_2021"
  }

  tags = local.tags
}
