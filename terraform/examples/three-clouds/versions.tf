terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws        = { source = "hashicorp/aws", version = ">= 5.0" }
    google     = { source = "hashicorp/google", version = ">= 5.0" }
    azurerm    = { source = "hashicorp/azurerm", version = ">= 3.87, < 5.0" }
    kubernetes = { source = "hashicorp/kubernetes", version = ">= 2.23" }
  }
}
