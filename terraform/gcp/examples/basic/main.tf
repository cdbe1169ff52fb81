# The smallest complete use of the module: an existing VPC and subnetwork, an image in
# Artifact Registry, and a DNS name you can point at the load balancer.

provider "google" {
  project = var.project_id
  region  = var.region
}

module "wharf" {
  source = "../.."

  project_id        = var.project_id
  region            = var.region
  network_id        = var.network_id
  subnetwork_id     = var.subnetwork_id
  registry_hostname = var.registry_hostname
  container_image   = var.container_image

  min_instances        = 2
  max_instances        = 6
  db_high_availability = true
  redis_tier           = "STANDARD_HA"
}
