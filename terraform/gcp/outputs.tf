output "registry_url" {
  description = "Base URL of the registry."
  value       = local.registry_url
}

output "lb_ip_address" {
  description = "Address of the load balancer: create the A record registry_hostname → this; the managed certificate is issued once it resolves."
  value       = google_compute_global_address.lb.address
}

output "bucket_name" {
  description = "GCS bucket holding the blobs."
  value       = google_storage_bucket.blobs.name
}

output "database_endpoint" {
  description = "Private IP address and port of the Cloud SQL instance."
  value       = "${google_sql_database_instance.this.private_ip_address}:5432"
}

output "database_connection_name" {
  description = "Cloud SQL connection name (PROJECT:REGION:INSTANCE), for the Cloud SQL Auth Proxy."
  value       = google_sql_database_instance.this.connection_name
}

output "database_password_secret" {
  description = "Secret Manager secret holding the database password of Wharf's user."
  value       = google_secret_manager_secret.db_password.id
}

output "redis_endpoint" {
  description = "Memorystore endpoint, host:port (TLS)."
  value       = "${google_redis_instance.this.host}:${google_redis_instance.this.port}"
}

output "service_account_email" {
  description = "Service account of the Cloud Run service."
  value       = google_service_account.wharf.email
}

output "cloud_run_service" {
  description = "Name of the Cloud Run service."
  value       = google_cloud_run_v2_service.wharf.name
}
