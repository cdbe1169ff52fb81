terraform {
  # 1.11: ephemeral resources and write-only arguments keep the database password out of
  # the state.
  required_version = ">= 1.11"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.30+: administrator_password_wo (PostgreSQL) and value_wo (Key Vault secrets).
      version = ">= 4.30, < 5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
  }
}
