# Three clusters, one federation: a gateway in EKS, GKE and AKS, and the federator in GKE.
# The federator reads the GKE fleet; add Cloud Map and AKS fleet sources through
# var.extra_sources_toml once it has credentials for them (README.md).

provider "aws" {
  region = var.aws.region
}

provider "google" {
  project = var.gcp.project_id
  region  = var.gcp.region
}

provider "azurerm" {
  features {}
  subscription_id = var.azure.subscription_id
}

data "aws_eks_cluster" "this" {
  name = var.aws.eks_cluster_name
}

data "aws_eks_cluster_auth" "this" {
  name = var.aws.eks_cluster_name
}

data "google_client_config" "this" {}

data "google_container_cluster" "this" {
  project  = var.gcp.project_id
  name     = var.gcp.gke_cluster_name
  location = var.gcp.region
}

data "azurerm_kubernetes_cluster" "this" {
  name                = var.azure.aks_cluster_name
  resource_group_name = var.azure.aks_resource_group_name
}

provider "kubernetes" {
  alias                  = "aws"
  host                   = data.aws_eks_cluster.this.endpoint
  cluster_ca_certificate = base64decode(data.aws_eks_cluster.this.certificate_authority[0].data)
  token                  = data.aws_eks_cluster_auth.this.token
}

provider "kubernetes" {
  alias                  = "gcp"
  host                   = "https://${data.google_container_cluster.this.endpoint}"
  cluster_ca_certificate = base64decode(data.google_container_cluster.this.master_auth[0].cluster_ca_certificate)
  token                  = data.google_client_config.this.access_token
}

provider "kubernetes" {
  alias                  = "azure"
  host                   = data.azurerm_kubernetes_cluster.this.kube_config[0].host
  cluster_ca_certificate = base64decode(data.azurerm_kubernetes_cluster.this.kube_config[0].cluster_ca_certificate)
  client_certificate     = base64decode(data.azurerm_kubernetes_cluster.this.kube_config[0].client_certificate)
  client_key             = base64decode(data.azurerm_kubernetes_cluster.this.kube_config[0].client_key)
}

locals {
  # Every gateway dials every other gateway and the federator from its cloud's NAT addresses.
  all_egress = concat(var.aws.egress_cidrs, var.gcp.egress_cidrs, var.azure.egress_cidrs)
}

module "gcp" {
  source    = "../../modules/gcp"
  providers = { google = google, kubernetes = kubernetes.gcp }

  project_id       = var.gcp.project_id
  region           = var.gcp.region
  cluster_name     = var.gcp.gke_cluster_name
  network          = var.gcp.network
  node_target_tags = var.gcp.node_target_tags
  peer_cidrs       = concat(var.aws.egress_cidrs, var.azure.egress_cidrs)

  cluster_id   = var.gcp.cluster_id
  trust_domain = var.trust_domain
  image        = var.image

  fleet_project_id          = var.gcp.fleet_project_id
  register_fleet_membership = true

  federator = {
    control_source_ranges = local.all_egress
    extra_sources_toml    = var.extra_sources_toml
  }
}

module "aws" {
  source    = "../../modules/aws"
  providers = { aws = aws, kubernetes = kubernetes.aws }

  cluster_id             = var.aws.cluster_id
  region                 = var.aws.region
  trust_domain           = var.trust_domain
  image                  = var.image
  federator_address      = module.gcp.federator_address
  public_subnet_ids      = var.aws.public_subnet_ids
  node_security_group_id = var.aws.node_security_group_id
  peer_cidrs             = concat(var.gcp.egress_cidrs, var.azure.egress_cidrs)
}

module "azure" {
  source    = "../../modules/azure"
  providers = { azurerm = azurerm, kubernetes = kubernetes.azure }

  cluster_id                    = var.azure.cluster_id
  trust_domain                  = var.trust_domain
  image                         = var.image
  federator_address             = module.gcp.federator_address
  location                      = var.azure.location
  resource_group_name           = var.azure.resource_group_name
  cluster_identity_principal_id = data.azurerm_kubernetes_cluster.this.identity[0].principal_id
  peer_cidrs                    = concat(var.aws.egress_cidrs, var.gcp.egress_cidrs)
  network_security_group = {
    name                = var.azure.nsg_name
    resource_group_name = var.azure.nsg_resource_group_name
  }
}
