# Wharf on Google Cloud: blobs in GCS, metadata in Cloud SQL for PostgreSQL (private
# IP), the shared cache in Memorystore for Redis (TLS, AUTH), the registry on Cloud Run
# behind a global external Application Load Balancer with a managed certificate. The VPC
# and the subnetwork are the caller's. Files by concern: apis.tf, storage.tf,
# database.tf, cache.tf, secrets.tf, service.tf, lb.tf.

locals {
  labels = merge({ app = "wharf", deployment = var.name }, var.labels)

  bucket_name     = coalesce(var.bucket_name, "${var.project_id}-${var.name}-blobs")
  bucket_location = coalesce(var.bucket_location, upper(var.region))
  registry_url    = "https://${var.registry_hostname}"
  container_port  = 5000
  redis_ca_dir    = "/etc/wharf/redis-ca"
}
