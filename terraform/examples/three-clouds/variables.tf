variable "trust_domain" {
  description = "SPIFFE trust domain of the federation, as given to `skybridge ca init`."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9._-]{1,255}$", var.trust_domain))
    error_message = "trust_domain may only use lowercase letters, digits, '.', '-' and '_'."
  }
}

variable "image" {
  description = "The skybridge image every cluster pulls, pinned by tag or digest (each cloud must be able to pull it)."
  type        = string
  validation {
    condition     = can(regex("[:@]", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must be pinned to a tag or digest other than latest."
  }
}

variable "aws" {
  description = "The EKS cluster: its Skybridge cluster id, region, EKS name, public subnets for the NLB, node security group, IRSA OIDC provider and the NAT egress CIDRs its gateways dial out from."
  type = object({
    cluster_id             = string
    region                 = string
    eks_cluster_name       = string
    public_subnet_ids      = list(string)
    node_security_group_id = string
    egress_cidrs           = list(string)
  })
  validation {
    condition     = length(var.aws.public_subnet_ids) > 0 && length(var.aws.egress_cidrs) > 0
    error_message = "aws.public_subnet_ids and aws.egress_cidrs must not be empty."
  }
}

variable "gcp" {
  description = "The GKE cluster, which also runs the federator (reading its GKE fleet): project, region, GKE name and location, VPC network, the node tags the firewall targets, the fleet host project and the NAT egress CIDRs."
  type = object({
    cluster_id       = string
    project_id       = string
    region           = string
    gke_cluster_name = string
    network          = string
    node_target_tags = list(string)
    fleet_project_id = string
    egress_cidrs     = list(string)
  })
  validation {
    condition     = length(var.gcp.node_target_tags) > 0 && length(var.gcp.egress_cidrs) > 0
    error_message = "gcp.node_target_tags and gcp.egress_cidrs must not be empty."
  }
}

variable "azure" {
  description = "The AKS cluster: subscription, location, AKS name and resource group, the resource group for Skybridge's public IP, the node NSG, and the NAT egress CIDRs."
  type = object({
    cluster_id              = string
    subscription_id         = string
    location                = string
    aks_cluster_name        = string
    aks_resource_group_name = string
    resource_group_name     = string
    nsg_name                = string
    nsg_resource_group_name = string
    egress_cidrs            = list(string)
  })
  validation {
    condition     = can(regex("^[0-9a-f-]{36}$", var.azure.subscription_id)) && length(var.azure.egress_cidrs) > 0
    error_message = "azure.subscription_id must be a subscription GUID and azure.egress_cidrs must not be empty."
  }
}

variable "extra_sources_toml" {
  description = "More catalog sources for the federator, as TOML [[sources]] tables: e.g. aws-cloudmap and aks-fleet once the federator has credentials for those clouds (docs/sources/)."
  type        = string
  default     = ""
}
