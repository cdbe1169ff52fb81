# The APIs the module uses. They are left enabled on destroy: other workloads of the
# project may use them too.
resource "google_project_service" "this" {
  for_each = toset([
    "compute.googleapis.com",
    "run.googleapis.com",
    "sqladmin.googleapis.com",
    "redis.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "iamcredentials.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Private services access: the peering through which Cloud SQL (private IP) and
# Memorystore get addresses in the caller's VPC.
resource "google_compute_global_address" "private_services" {
  count         = var.create_private_service_access ? 1 : 0
  project       = var.project_id
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_service_access_prefix_length
  network       = var.network_id
}

resource "google_service_networking_connection" "private_services" {
  count                   = var.create_private_service_access ? 1 : 0
  network                 = var.network_id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services[0].name]

  depends_on = [google_project_service.this]
}
