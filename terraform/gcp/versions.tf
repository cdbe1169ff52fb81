terraform {
  # 1.11: ephemeral resources and write-only arguments keep the database password out of
  # the state.
  required_version = ">= 1.11"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.30+: google_sql_user.password_wo and google_secret_manager_secret_version.secret_data_wo.
      version = ">= 6.30, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
  }
}
