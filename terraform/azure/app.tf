# The registry on Azure Container Apps: an environment in the caller's subnet, one app
# with external ingress on port 5000, Key Vault secrets through the managed identity,
# probes on /readyz and /healthz, scaling on concurrent HTTP requests. Configuration as
# REGISTRY_* variables over the image's default file (REGISTRY_STORAGE=azure replaces
# its filesystem driver).

resource "azurerm_container_app_environment" "this" {
  name                           = "${var.name}-env"
  location                       = var.location
  resource_group_name            = var.resource_group_name
  log_analytics_workspace_id     = azurerm_log_analytics_workspace.this.id
  infrastructure_subnet_id       = var.container_apps_subnet_id
  internal_load_balancer_enabled = false
  zone_redundancy_enabled        = var.zone_redundant
  tags                           = local.tags

  workload_profile {
    name                  = "Consumption"
    workload_profile_type = "Consumption"
  }
}

locals {
  registry_url = var.registry_hostname == null ? "https://${var.name}.${azurerm_container_app_environment.this.default_domain}" : "https://${var.registry_hostname}"

  environment = merge(
    {
      REGISTRY_LOG_FORMATTER = "json"
      REGISTRY_HTTP_ADDR     = ":5000"
      REGISTRY_HTTP_HOST     = local.registry_url
      # The environment's ingress (Envoy) runs in the app subnet: the only peers whose
      # X-Forwarded-For is believed.
      REGISTRY_HTTP_TRUSTEDPROXIES          = jsonencode(data.azurerm_subnet.apps.address_prefixes)
      REGISTRY_STORAGE                      = "azure"
      REGISTRY_STORAGE_AZURE_ACCOUNTNAME    = azurerm_storage_account.this.name
      REGISTRY_STORAGE_AZURE_CONTAINER      = azurerm_storage_container.blobs.name
      REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR = "redis"
      REGISTRY_REDIS_ADDR                   = "${azurerm_redis_cache.this.hostname}:${azurerm_redis_cache.this.ssl_port}"
      REGISTRY_REDIS_TLS_ENABLED            = "true"
      # No password in the URL: PGPASSWORD (Key Vault) supplies it.
      REGISTRY_DATABASE_URL            = "postgres://${var.postgres_admin_login}@${azurerm_postgresql_flexible_server.this.fqdn}:5432/${azurerm_postgresql_flexible_server_database.wharf.name}?sslmode=${var.db_require_tls ? "require" : "prefer"}"
      REGISTRY_DATABASE_MAXCONNECTIONS = tostring(var.database_max_connections)
      # The managed identity to use for Blob Storage (object_store reads AZURE_CLIENT_ID
      # and the IDENTITY_ENDPOINT that Container Apps provides).
      AZURE_CLIENT_ID = azurerm_user_assigned_identity.wharf.client_id
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

resource "azurerm_container_app" "wharf" {
  name                         = var.name
  resource_group_name          = var.resource_group_name
  container_app_environment_id = azurerm_container_app_environment.this.id
  revision_mode                = "Single"
  workload_profile_name        = "Consumption"
  tags                         = local.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.wharf.id]
  }

  dynamic "registry" {
    for_each = var.acr_id == null ? [] : [data.azurerm_container_registry.images[0].login_server]
    content {
      server   = registry.value
      identity = azurerm_user_assigned_identity.wharf.id
    }
  }

  # Versionless references: Container Apps picks up a new secret version on the next
  # revision (or within 30 minutes for new replicas).
  secret {
    name                = "postgres-password"
    key_vault_secret_id = azurerm_key_vault_secret.postgres_password.versionless_id
    identity            = azurerm_user_assigned_identity.wharf.id
  }

  secret {
    name                = "redis-access-key"
    key_vault_secret_id = azurerm_key_vault_secret.redis_key.versionless_id
    identity            = azurerm_user_assigned_identity.wharf.id
  }

  ingress {
    external_enabled           = true
    target_port                = 5000
    transport                  = "auto"
    allow_insecure_connections = false

    traffic_weight {
      latest_revision = true
      percentage      = 100
    }

    dynamic "ip_security_restriction" {
      for_each = var.ingress_allowed_cidrs
      content {
        name             = "allow-${replace(replace(ip_security_restriction.value, ".", "-"), "/", "-")}"
        action           = "Allow"
        ip_address_range = ip_security_restriction.value
      }
    }
  }

  template {
    min_replicas = var.min_replicas
    max_replicas = var.max_replicas

    http_scale_rule {
      name                = "concurrent-requests"
      concurrent_requests = tostring(var.scale_concurrent_requests)
    }

    container {
      name   = "wharf"
      image  = var.container_image
      cpu    = var.cpu
      memory = "${var.cpu * 2}Gi"

      dynamic "env" {
        for_each = local.environment
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name        = "PGPASSWORD"
        secret_name = "postgres-password"
      }

      env {
        name        = "REGISTRY_REDIS_PASSWORD"
        secret_name = "redis-access-key"
      }

      startup_probe {
        transport               = "HTTP"
        port                    = 5000
        path                    = "/readyz"
        interval_seconds        = 5
        timeout                 = 4
        failure_count_threshold = 24
      }

      readiness_probe {
        transport               = "HTTP"
        port                    = 5000
        path                    = "/readyz"
        interval_seconds        = 10
        timeout                 = 4
        failure_count_threshold = 3
        success_count_threshold = 1
      }

      liveness_probe {
        transport               = "HTTP"
        port                    = 5000
        path                    = "/healthz"
        interval_seconds        = 15
        timeout                 = 4
        failure_count_threshold = 3
      }
    }
  }

  depends_on = [
    azurerm_role_assignment.secrets,
    azurerm_role_assignment.blob_data,
    azurerm_role_assignment.blob_delegator,
    azurerm_role_assignment.acr_pull,
  ]
}

# A custom host name. Create its DNS records first (CNAME to the app's FQDN and TXT
# asuid.<host> = custom_domain_verification_id); then bind a managed certificate (README).
resource "azurerm_container_app_custom_domain" "registry" {
  count            = var.registry_hostname == null ? 0 : 1
  name             = var.registry_hostname
  container_app_id = azurerm_container_app.wharf.id

  lifecycle {
    # The managed certificate is bound outside Terraform (az containerapp hostname bind).
    ignore_changes = [certificate_binding_type, container_app_environment_certificate_id]
  }
}
