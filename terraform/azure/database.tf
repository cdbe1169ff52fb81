# PostgreSQL Flexible Server, VNet-integrated (no public endpoint), zone-redundant HA as
# an option. The administrator password is generated ephemerally and written, write-only,
# to the server and to Key Vault: it is not in the state.

resource "azurerm_private_dns_zone" "postgres" {
  name                = "${var.name}.private.postgres.database.azure.com"
  resource_group_name = var.resource_group_name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "postgres" {
  name                  = "${var.name}-postgres"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = azurerm_private_dns_zone.postgres.name
  virtual_network_id    = local.vnet_id
  registration_enabled  = false
  tags                  = local.tags
}

ephemeral "random_password" "postgres" {
  length = 40
  # Letters and digits only: nothing to escape in a URL or YAML.
  special = false
}

resource "azurerm_postgresql_flexible_server" "this" {
  #checkov:skip=CKV2_AZURE_57:The server is VNet-integrated (delegated subnet, private DNS zone, public access disabled), the other private networking mode of Flexible Server; a private endpoint would be a second way in.
  #checkov:skip=CKV_AZURE_136:Geo-redundant backups are a variable (postgres_geo_redundant_backup) because they cannot be changed after creation and not every region pair offers them.
  name                          = "${var.name}-pg-${local.suffix}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  version                       = var.postgres_version
  sku_name                      = var.postgres_sku
  storage_mb                    = var.postgres_storage_mb
  auto_grow_enabled             = true
  delegated_subnet_id           = var.postgres_subnet_id
  private_dns_zone_id           = azurerm_private_dns_zone.postgres.id
  public_network_access_enabled = false

  administrator_login               = var.postgres_admin_login
  administrator_password_wo         = ephemeral.random_password.postgres.result
  administrator_password_wo_version = var.postgres_password_version
  backup_retention_days             = var.postgres_backup_retention_days
  geo_redundant_backup_enabled      = var.postgres_geo_redundant_backup

  authentication {
    password_auth_enabled         = true
    active_directory_auth_enabled = false
  }

  dynamic "high_availability" {
    for_each = var.postgres_high_availability ? [1] : []
    content {
      mode = "ZoneRedundant"
    }
  }

  maintenance_window {
    day_of_week  = 0
    start_hour   = 4
    start_minute = 0
  }

  tags = local.tags

  lifecycle {
    # After a failover the primary lives in the standby's zone; do not move it back.
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.postgres]
}

resource "azurerm_postgresql_flexible_server_database" "wharf" {
  name      = "wharf"
  server_id = azurerm_postgresql_flexible_server.this.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

# ON by default on Flexible Server; the current Wharf binary cannot negotiate TLS with
# PostgreSQL (db_require_tls, README).
resource "azurerm_postgresql_flexible_server_configuration" "require_secure_transport" {
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = var.db_require_tls ? "ON" : "OFF"
}

resource "azurerm_postgresql_flexible_server_configuration" "log_min_duration_statement" {
  name      = "log_min_duration_statement"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = "1000"
}

resource "azurerm_monitor_diagnostic_setting" "postgres" {
  name                       = "${var.name}-postgres-logs"
  target_resource_id         = azurerm_postgresql_flexible_server.this.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category = "PostgreSQLLogs"
  }
}
