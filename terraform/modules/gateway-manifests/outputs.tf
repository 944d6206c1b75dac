locals {
  key = { for o in concat(local.gateway_objects, local.federator_objects) : "${o.kind}/${o.metadata.name}" => yamlencode(o) }
}

output "namespace_manifest" {
  description = "YAML of the Namespace object; apply it before the others."
  value       = yamlencode(local.namespace)
}

output "manifests" {
  description = "Every other object as YAML, keyed \"Kind/name\" (gateway, and federator when enabled), for kubernetes_manifest with yamldecode."
  value       = local.key
}

output "gateway_yaml" {
  description = "The namespace and the gateway's objects as one multi-document YAML stream (kubectl apply -f)."
  value       = join("---\n", concat([yamlencode(local.namespace)], [for o in local.gateway_objects : yamlencode(o)]))
}

output "federator_yaml" {
  description = "The namespace and the federator's objects as one multi-document YAML stream, or null when the federator is not rendered."
  value       = local.fed_enabled ? join("---\n", concat([yamlencode(local.namespace)], [for o in local.federator_objects : yamlencode(o)])) : null
}

output "gateway_config" {
  description = "The gateway config (TOML) in the ConfigMap."
  value       = local.gateway_config
}

output "federator_config" {
  description = "The federator config (TOML) in its ConfigMap, or null."
  value       = local.federator_config
}

output "namespace" {
  description = "The namespace everything is in."
  value       = var.namespace
}

output "gateway_service_name" {
  description = "The gateway's LoadBalancer Service (tunnel, 15443/UDP and /TCP)."
  value       = "skybridge-gateway"
}

output "egress_service_name" {
  description = "The ClusterIP Service local clients reach the gateway through (443 → SNI, 80 → HTTP)."
  value       = "skybridge-egress"
}

output "gateway_service_account" {
  description = "The gateway pods' ServiceAccount."
  value       = "skybridge-gateway"
}

output "federator_service_name" {
  description = "The federator's LoadBalancer Service (control, 15010/TCP)."
  value       = "skybridge-federator"
}

output "federator_service_account" {
  description = "The federator pod's ServiceAccount (annotate it for IRSA, Workload Identity or Azure workload identity)."
  value       = "skybridge-federator"
}
