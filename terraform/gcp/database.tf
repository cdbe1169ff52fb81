# Cloud SQL for PostgreSQL on a private IP. The password of Wharf's user is generated
# ephemerally and written, write-only, to the SQL user and to Secret Manager: it is not in
# the state. Cloud Run gets it from Secret Manager as PGPASSWORD.

resource "google_sql_database_instance" "this" {
  #checkov:skip=CKV_GCP_6:TLS is required when db_require_tls is true; it defaults to false only because the current Wharf binary cannot negotiate TLS with PostgreSQL (README). The instance has no public IP and is reached only through the VPC peering.
  #checkov:skip=CKV_GCP_79:PostgreSQL 15 is the version Wharf is tested on; db_version accepts newer majors.
  #checkov:skip=CKV2_GCP_13:log_duration would log a line for every statement of a high-rate API; Query Insights records statement latencies instead.
  #checkov:skip=CKV2_GCP_20:Same as CKV_GCP_6: ssl_mode follows db_require_tls.
  project             = var.project_id
  name                = "${var.name}-pg"
  region              = var.region
  database_version    = var.db_version
  deletion_protection = var.deletion_protection
  encryption_key_name = var.kms_key_name

  settings {
    tier                        = var.db_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.db_high_availability ? "REGIONAL" : "ZONAL"
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network_id
      ssl_mode        = var.db_require_tls ? "ENCRYPTED_ONLY" : "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "03:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = var.db_backup_retained_count
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 4
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # The logging flags CIS recommends; statements themselves are not logged (-1).
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    # Schema changes (Wharf's migrations) are logged; data statements are not.
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_service_networking_connection.private_services, google_project_service.this]
}

resource "google_sql_database" "wharf" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = "wharf"
}

ephemeral "random_password" "db" {
  length = 40
  # Letters and digits only: nothing to escape in a URL or YAML.
  special = false
}

resource "google_sql_user" "wharf" {
  project             = var.project_id
  instance            = google_sql_database_instance.this.name
  name                = var.db_user
  type                = "BUILT_IN"
  password_wo         = ephemeral.random_password.db.result
  password_wo_version = var.db_password_version
}
