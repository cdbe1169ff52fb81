variable "project_id" {
  description = "Google Cloud project ID."
  type        = string
}

variable "region" {
  description = "Region to deploy into."
  type        = string
  default     = "europe-west1"
}

variable "network_id" {
  description = "VPC network ID (projects/P/global/networks/N)."
  type        = string
}

variable "subnetwork_id" {
  description = "Subnetwork ID in the region for Cloud Run direct VPC egress."
  type        = string
}

variable "registry_hostname" {
  description = "Registry host name, e.g. registry.example.com."
  type        = string
}

variable "container_image" {
  description = "Wharf image in Artifact Registry, by digest."
  type        = string
}
