variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Prefix of the resource names."
  type        = string
  default     = "wharf"
}

variable "vpc_id" {
  description = "Existing VPC ID."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two or more AZs) for tasks, RDS and ElastiCache."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets (two or more AZs) for the load balancer."
  type        = list(string)
}

variable "registry_hostname" {
  description = "Registry host name, e.g. registry.example.com."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate ARN covering registry_hostname."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 zone for registry_hostname, or null to manage DNS elsewhere."
  type        = string
  default     = null
}

variable "container_image" {
  description = "Wharf image reference (ECR, by digest)."
  type        = string
}

variable "cloudfront_public_key_path" {
  description = "Path of the PEM public key whose private key signs CloudFront URLs."
  type        = string
  default     = "cloudfront-public.pem"
}
