terraform {
  # No provider blocks here: the caller configures `aws` (the account and region of the EKS
  # cluster) and `kubernetes` (that cluster's API), and passes them in if it uses aliases.
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23"
    }
  }
}
