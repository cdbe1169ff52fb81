# The registry on Cloud Run (v2): Wharf's own service account, direct VPC egress to
# Cloud SQL and Memorystore, configuration as REGISTRY_* variables over the image's
# default file (REGISTRY_STORAGE=gcs replaces its filesystem driver), reachable only
# through the load balancer.

resource "google_service_account" "wharf" {
  project      = var.project_id
  account_id   = "${var.name}-registry"
  display_name = "Wharf registry (${var.name})"
  description  = "Runs the Wharf Cloud Run service: its bucket's objects and its secrets only"
}

# Wharf redirects blob pulls to V4 signed GCS URLs; without a key file it signs through
# the IAM signBlob API as itself, which needs this role on its own account only.
resource "google_service_account_iam_member" "wharf_sign_self" {
  service_account_id = google_service_account.wharf.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.wharf.email}"
}

locals {
  environment = merge(
    {
      REGISTRY_LOG_FORMATTER = "json"
      REGISTRY_HTTP_ADDR     = ":${local.container_port}"
      REGISTRY_HTTP_HOST     = local.registry_url
      # The client's address is the right-most X-Forwarded-For entry that is not one of
      # these: Cloud Run's front end (the TCP peer), Google's load balancer ranges and
      # the load balancer's own address.
      REGISTRY_HTTP_TRUSTEDPROXIES = jsonencode([
        "169.254.0.0/16",
        "35.191.0.0/16",
        "130.211.0.0/22",
        "${google_compute_global_address.lb.address}/32",
      ])
      REGISTRY_STORAGE                      = "gcs"
      REGISTRY_STORAGE_GCS_BUCKET           = google_storage_bucket.blobs.name
      REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR = "redis"
      REGISTRY_REDIS_ADDR                   = "${google_redis_instance.this.host}:${google_redis_instance.this.port}"
      REGISTRY_REDIS_TLS_ENABLED            = "true"
      REGISTRY_REDIS_TLS_CLIENTCAS          = jsonencode(["${local.redis_ca_dir}/ca.pem"])
      # No password in the URL: PGPASSWORD (Secret Manager) supplies it.
      REGISTRY_DATABASE_URL            = "postgres://${var.db_user}@${google_sql_database_instance.this.private_ip_address}:5432/${google_sql_database.wharf.name}?sslmode=${var.db_require_tls ? "require" : "prefer"}"
      REGISTRY_DATABASE_MAXCONNECTIONS = tostring(var.database_max_connections)
    },
    var.otel_exporter_otlp_endpoint == null ? {} : {
      OTEL_EXPORTER_OTLP_ENDPOINT = var.otel_exporter_otlp_endpoint
      OTEL_SERVICE_NAME           = "wharf"
      OTEL_TRACES_SAMPLER         = "parentbased_traceidratio"
      OTEL_TRACES_SAMPLER_ARG     = tostring(var.otel_traces_sampler_arg)
    },
    var.extra_environment,
  )
}

resource "google_cloud_run_v2_service" "wharf" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.wharf.email
    timeout                          = var.request_timeout
    max_instance_request_concurrency = var.max_concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    labels                           = local.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = var.network_id
        subnetwork = var.subnetwork_id
      }
    }

    volumes {
      name = "redis-ca"
      secret {
        secret       = google_secret_manager_secret.redis_ca.secret_id
        default_mode = 292 # 0444
        items {
          version = "latest"
          path    = "ca.pem"
        }
      }
    }

    containers {
      name  = "wharf"
      image = var.container_image

      ports {
        name           = var.http2_end_to_end ? "h2c" : "http1"
        container_port = local.container_port
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU stays allocated between requests: notification delivery, upload purging
        # and garbage collection run in the background.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.environment
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "PGPASSWORD"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.db_password.secret_id
            version = "latest"
          }
        }
      }

      env {
        name = "REGISTRY_REDIS_PASSWORD"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.redis_auth.secret_id
            version = "latest"
          }
        }
      }

      volume_mounts {
        name       = "redis-ca"
        mount_path = local.redis_ca_dir
      }

      startup_probe {
        http_get {
          path = "/readyz"
          port = local.container_port
        }
        initial_delay_seconds = 2
        period_seconds        = 5
        timeout_seconds       = 4
        failure_threshold     = 24
      }

      liveness_probe {
        http_get {
          path = "/healthz"
          port = local.container_port
        }
        period_seconds    = 15
        timeout_seconds   = 4
        failure_threshold = 3
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  depends_on = [
    google_secret_manager_secret_iam_member.wharf,
    google_secret_manager_secret_version.db_password,
    google_secret_manager_secret_version.redis_auth,
    google_secret_manager_secret_version.redis_ca,
    google_sql_user.wharf,
    google_project_service.this,
  ]
}

# Ingress is limited to the internal load balancer path, so any caller must come through
# the HTTPS load balancer; registry authentication is Wharf's (auth.*), not Cloud Run IAM.
resource "google_cloud_run_v2_service_iam_member" "public" {
  project  = var.project_id
  location = google_cloud_run_v2_service.wharf.location
  name     = google_cloud_run_v2_service.wharf.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
