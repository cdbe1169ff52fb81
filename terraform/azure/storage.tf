# The blob account and container: TLS 1.2 minimum, no anonymous access, infrastructure
# (double) encryption, no shared keys (Azure AD only: Wharf signs SAS URLs with user
# delegation keys of its managed identity).

resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV_AZURE_59:Public network access stays on because Wharf redirects blob GETs to SAS URLs that clients fetch from the account directly; anonymous access is off, every request needs a signature, and storage_allowed_cidrs can restrict networks.
  #checkov:skip=CKV_AZURE_35:The network rule denies by default once storage_allowed_cidrs is set; with none it allows every network because clients fetch blobs through SAS URLs (see CKV_AZURE_59).
  #checkov:skip=CKV2_AZURE_33:No private endpoint for the same reason: clients outside the VNet fetch blobs through SAS URLs.
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys are a policy choice; data is encrypted twice with Microsoft-managed keys (infrastructure encryption).
  #checkov:skip=CKV_AZURE_33:Queue service logging does not apply: the account holds only blobs.
  #checkov:skip=CKV_AZURE_206:Replication is a variable (storage_replication, ZRS by default); geo-replication is a disaster-recovery and cost choice.
  name                              = local.storage_account_name
  resource_group_name               = var.resource_group_name
  location                          = var.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.storage_replication
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  infrastructure_encryption_enabled = true
  public_network_access_enabled     = true
  cross_tenant_replication_enabled  = false
  tags                              = local.tags

  blob_properties {
    delete_retention_policy {
      days = var.blob_soft_delete_days
    }
    container_delete_retention_policy {
      days = var.blob_soft_delete_days
    }
  }

  network_rules {
    default_action             = length(var.storage_allowed_cidrs) > 0 ? "Deny" : "Allow"
    ip_rules                   = var.storage_allowed_cidrs
    virtual_network_subnet_ids = length(var.storage_allowed_cidrs) > 0 ? [var.container_apps_subnet_id] : []
    bypass                     = ["AzureServices", "Logging", "Metrics"]
  }

  sas_policy {
    expiration_period = "01.00:00:00"
    expiration_action = "Log"
  }
}

resource "azurerm_storage_container" "blobs" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging goes to the account's diagnostic settings (azurerm_monitor_diagnostic_setting.blobs).
  name                  = local.blob_container_name
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

resource "azurerm_monitor_diagnostic_setting" "blobs" {
  name                       = "${var.name}-blob-logs"
  target_resource_id         = "${azurerm_storage_account.this.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
}
