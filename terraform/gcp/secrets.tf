# Secret Manager: the database password (written write-only, from an ephemeral
# password: not in the state), the Memorystore AUTH string and its CA certificate (both
# read from the Redis instance, so they are in the state anyway: README). Wharf's service
# account may read exactly these.

resource "google_secret_manager_secret" "db_password" {
  project   = var.project_id
  secret_id = "${var.name}-db-password"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "db_password" {
  secret                 = google_secret_manager_secret.db_password.id
  secret_data_wo         = ephemeral.random_password.db.result
  secret_data_wo_version = var.db_password_version
}

resource "google_secret_manager_secret" "redis_auth" {
  project   = var.project_id
  secret_id = "${var.name}-redis-auth"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "redis_auth" {
  secret      = google_secret_manager_secret.redis_auth.id
  secret_data = google_redis_instance.this.auth_string
}

# Not a secret, but Cloud Run mounts files only from Secret Manager: Wharf trusts this CA
# (redis.tls.clientcas) for the Memorystore server certificate.
resource "google_secret_manager_secret" "redis_ca" {
  project   = var.project_id
  secret_id = "${var.name}-redis-ca"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret      = google_secret_manager_secret.redis_ca.id
  secret_data = join("\n", [for c in google_redis_instance.this.server_ca_certs : c.cert])
}

resource "google_secret_manager_secret_iam_member" "wharf" {
  for_each = {
    db_password = google_secret_manager_secret.db_password.id
    redis_auth  = google_secret_manager_secret.redis_auth.id
    redis_ca    = google_secret_manager_secret.redis_ca.id
  }
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.wharf.email}"
}
