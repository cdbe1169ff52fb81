terraform {
  # 1.11: write-only arguments and ephemeral resources (nothing of the CloudFront key or
  # the database password passes through the state).
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.95, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
  }
}
