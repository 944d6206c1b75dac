terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # BROKEN: the checked aws schema (6.x) is outside this constraint.
      version = "~> 4.60"
    }
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}
