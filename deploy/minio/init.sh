#!/bin/sh
# One-shot job of the compose stack (runs in the minio/mc image): creates Wharf's bucket
# and a MinIO user limited to it, so Wharf does not use MinIO's root credentials.
# Idempotent: safe to run again on an existing volume.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${WHARF_S3_BUCKET:?}"
: "${WHARF_S3_ACCESS_KEY:?}" "${WHARF_S3_SECRET_KEY:?}"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$WHARF_S3_BUCKET"

# Read, write, delete and multipart operations on the bucket's objects; listing of the
# bucket itself. Nothing else.
policy=/tmp/wharf-policy.json
cat > "$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${WHARF_S3_BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${WHARF_S3_BUCKET}/*"]
    }
  ]
}
JSON
mc admin policy create local wharf-bucket "$policy"
mc admin user add local "$WHARF_S3_ACCESS_KEY" "$WHARF_S3_SECRET_KEY"
mc admin policy attach local wharf-bucket --user "$WHARF_S3_ACCESS_KEY" 2>/dev/null \
  || echo "policy wharf-bucket already attached to $WHARF_S3_ACCESS_KEY"

# Unfinished multipart uploads (an instance killed mid-chunk) need no lifecycle rule
# here: MinIO removes stale multipart uploads by itself (24 h by default,
# api stale_uploads_expiry). On AWS the Terraform module adds the S3 lifecycle rule.
echo "bucket $WHARF_S3_BUCKET ready for $WHARF_S3_ACCESS_KEY"
