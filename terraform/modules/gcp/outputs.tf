output "gateway_address" {
  description = "host:port peers dial to reach this cluster's gateway: the reserved static address with port 15443."
  value       = local.gateway_address
}

output "gateway_ip" {
  description = "The reserved external static address of the gateway's load balancer."
  value       = google_compute_address.gateway.address
}

output "federator_address" {
  description = "host:port of the federator control listener this cluster's gateways dial (the reserved federator address with port 15010 when the federator runs here)."
  value       = local.federator_address
}

output "federator_ip" {
  description = "The reserved external static address of the federator's control load balancer; null without a federator."
  value       = local.federator_enabled ? google_compute_address.federator[0].address : null
}

output "federator_service_account_email" {
  description = "E-mail of the federator's Google service account (Workload Identity); null without a federator. Grant it read access in other fleet members via their fleet_reader_identities."
  value       = local.federator_enabled ? google_service_account.federator[0].email : null
}

output "gateway_config" {
  description = "The rendered gateway config (TOML)."
  value       = module.manifests.gateway_config
}

output "federator_config" {
  description = "The rendered federator config (TOML), including the gke-fleet [[sources]] table; null without a federator."
  value       = module.manifests.federator_config
}

output "sources_toml" {
  description = "The [[sources]] TOML given to the federator (gke-fleet source plus federator.extra_sources_toml); empty without a federator."
  value       = local.sources_toml
}

output "namespace" {
  description = "Kubernetes namespace of the gateway and federator (create the TLS Secrets here)."
  value       = module.manifests.namespace
}

output "gateway_service_name" {
  description = "Name of the gateway's LoadBalancer Service."
  value       = module.manifests.gateway_service_name
}

output "federator_service_name" {
  description = "Name of the federator's Service; null without a federator."
  value       = local.federator_enabled ? module.manifests.federator_service_name : null
}

output "fleet_membership_id" {
  description = "Fleet membership id of this cluster (the catalog's cluster name), or null when register_fleet_membership is false."
  value       = var.register_fleet_membership ? google_gke_hub_membership.this[0].membership_id : null
}

output "firewall_rules" {
  description = "Names of the VPC firewall rules this module created."
  value       = concat([google_compute_firewall.tunnel.name], google_compute_firewall.federator_control[*].name)
}

output "dns_forward_address" {
  description = "The address kube-dns forwards clusterset.local to (port 53): the egress Service's ClusterIP, dns.cluster_ip or the one Kubernetes assigned (known after the first apply). null without dns.forward."
  value       = local.dns_forward_address
}
