terraform {
  required_version = ">= 1.6.0"

  # No provider blocks here: the caller configures azurerm (subscription, features {}) and
  # kubernetes (the AKS cluster's API server and credentials) and passes them in.
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 3.80, < 5.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23"
    }
  }
}
