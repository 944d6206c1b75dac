terraform {
  required_version = ">= 1.6.0"

  # No provider blocks here: the caller configures azurerm (subscription, features {}) and
  # kubernetes (the AKS cluster's API server and credentials) and passes them in.
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 3.87: azurerm_role_assignment's principal_type (main.tf) is new in 3.87.0.
      version = ">= 3.87, < 5.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23"
    }
  }
}
