output "gateway_address" {
  description = "host:port peers dial to reach this cluster's gateway: the static public IP with port 15443 (also written into the gateway config as federator.tunnel_addresses)."
  value       = local.gateway_address
}

output "gateway_public_ip" {
  description = "The gateway's static public IP address (give it to the other clusters' peer_cidrs / firewalls as this cluster's tunnel endpoint)."
  value       = azurerm_public_ip.gateway.ip_address
}

output "gateway_public_ip_id" {
  description = "Azure resource id of the gateway's public IP."
  value       = azurerm_public_ip.gateway.id
}

output "federator_public_ip" {
  description = "Static public IP of the federator's LoadBalancer (control port 15010/TCP); point the DNS name in the federator certificate at it. null when the federator is off or has no static IP."
  value       = local.fed_pip ? azurerm_public_ip.federator[0].ip_address : null
}

output "federator_client_id" {
  description = "Client id of the federator's user-assigned managed identity (the ServiceAccount's azure.workload.identity/client-id); null when the federator is off."
  value       = local.fed_enabled ? azurerm_user_assigned_identity.federator[0].client_id : null
}

output "federator_principal_id" {
  description = "Object (principal) id of the federator's managed identity, for extra grants: role assignments on member clusters in other subscriptions, or a Kubernetes ClusterRoleBinding on clusters without Azure RBAC. null when the federator is off."
  value       = local.fed_enabled ? azurerm_user_assigned_identity.federator[0].principal_id : null
}

output "federator_sources_toml" {
  description = "The [[sources]] TOML given to the federator (the aks-fleet source plus federator.extra_sources_toml); empty when the federator is off."
  value       = local.sources_toml
}

output "gateway_config" {
  description = "The rendered gateway TOML config (as in the ConfigMap)."
  value       = module.manifests.gateway_config
}

output "federator_config" {
  description = "The rendered federator TOML config; null when the federator is off."
  value       = module.manifests.federator_config
}

output "namespace" {
  description = "Kubernetes namespace the objects were applied to (create the TLS secrets here)."
  value       = module.manifests.namespace
}

output "gateway_service_name" {
  description = "Name of the gateway's LoadBalancer Service."
  value       = module.manifests.gateway_service_name
}

output "federator_service_name" {
  description = "Name of the federator's LoadBalancer Service (control port 15010); its API (8080) is a ClusterIP Service."
  value       = module.manifests.federator_service_name
}

output "dns_forward_address" {
  description = "The address CoreDNS forwards clusterset.local to (port 53): the egress Service's ClusterIP, dns.cluster_ip or the one Kubernetes assigned (known after the first apply). null without dns.forward."
  value       = local.dns_forward_address
}
