# The blob bucket: uniform bucket-level access, public access prevented, unfinished
# multipart uploads aborted. Wharf's service account is its only reader and writer.

resource "google_storage_bucket" "blobs" {
  #checkov:skip=CKV_GCP_78:Versioning is optional (bucket_versioning): blobs are immutable and content-addressed, and deletes come only from garbage collection; versioning would keep every collected blob.
  project                     = var.project_id
  name                        = local.bucket_name
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = local.labels

  versioning {
    enabled = var.bucket_versioning
  }

  lifecycle_rule {
    condition {
      age = var.abort_incomplete_multipart_upload_days
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = "${var.name}-blobs"
    }
  }

  depends_on = [google_project_service.this]
}

# Objects only, on this bucket only (create, read, delete: uploads, compose, GC).
resource "google_storage_bucket_iam_member" "wharf_objects" {
  bucket = google_storage_bucket.blobs.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.wharf.email}"
}
