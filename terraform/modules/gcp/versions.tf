terraform {
  required_version = ">= 1.6.0"

  # No provider blocks here: the caller configures google (project, credentials) and kubernetes
  # (the GKE cluster's endpoint and token) and passes them in.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23"
    }
  }
}
