output "gateway_address" {
  description = "Addresses peers dial to reach this cluster's gateway: each Elastic IP with :15443 (what the gateway advertises to the federator)."
  value       = local.advertised_addresses
}

output "gateway_public_ips" {
  description = "The gateway NLB's Elastic IPs, one per public subnet (give them to the peer clusters as their peer_cidrs, /32 each, if the gateways also egress through them)."
  value       = [for s in var.public_subnet_ids : aws_eip.gateway[s].public_ip]
}

output "gateway_eip_allocation_ids" {
  description = "Allocation ids of the gateway's Elastic IPs, in the order of public_subnet_ids."
  value       = [for s in var.public_subnet_ids : aws_eip.gateway[s].allocation_id]
}

output "federator_public_ips" {
  description = "The federator NLB's Elastic IPs (point the DNS name of federator_address at them), or [] when the federator is off or federator.static_ips is false."
  value       = local.federator_static_ips ? [for s in var.public_subnet_ids : aws_eip.federator[s].public_ip] : []
}

output "federator_role_arn" {
  description = "ARN of the federator's IRSA role (annotated on its service account), or null when the federator is off."
  value       = local.federator_enabled ? aws_iam_role.federator[0].arn : null
}

output "cloudmap_namespace_id" {
  description = "Id of the Cloud Map HTTP namespace created by this module, or null."
  value       = var.create_cloudmap_namespace ? aws_service_discovery_http_namespace.this[0].id : null
}

output "cloudmap_namespace_arn" {
  description = "ARN of the Cloud Map HTTP namespace created by this module, or null."
  value       = var.create_cloudmap_namespace ? aws_service_discovery_http_namespace.this[0].arn : null
}

output "gateway_config" {
  description = "The rendered gateway config (TOML), as mounted from the ConfigMap."
  value       = module.manifests.gateway_config
}

output "federator_config" {
  description = "The rendered federator config (TOML), or null when the federator is off."
  value       = module.manifests.federator_config
}

output "sources_toml" {
  description = "The federator's [[sources]] TOML built by this module (the aws-cloudmap source plus federator.extra_sources_toml), or \"\" when the federator is off."
  value       = local.sources_toml
}

output "namespace" {
  description = "Kubernetes namespace of the gateway (and federator); the TLS Secrets go here."
  value       = module.manifests.namespace
}

output "gateway_service_name" {
  description = "Name of the gateway's LoadBalancer Service."
  value       = module.manifests.gateway_service_name
}

output "federator_service_name" {
  description = "Name of the federator's LoadBalancer Service (control port 15010), or null when the federator is off."
  value       = local.federator_enabled ? module.manifests.federator_service_name : null
}

output "dns_forward_address" {
  description = "The address CoreDNS forwards clusterset.local to (port 53): the egress Service's ClusterIP, dns.cluster_ip or the one Kubernetes assigned (known after the first apply). null without dns.forward."
  value       = local.dns_forward_address
}
