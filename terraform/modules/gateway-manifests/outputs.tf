locals {
  key = { for o in concat(local.gateway_objects, local.federator_objects, local.etcd_objects) : "${o.kind}/${o.metadata.name}" => yamlencode(o) }

  # Rules across variables (a variable's validation may only look at itself in Terraform < 1.9);
  # enforced as preconditions of the outputs that carry the objects.
  input_problems = compact([
    local.etcd_enabled && !local.ha ? "etcd (the bundled etcd) is set but the federator does not use it: set federator.etcd = {} (its endpoints null)" : "",
    local.etcd_enabled && local.ha && try(local.fed_etcd.endpoints, null) != null ? "etcd (the bundled etcd) is set and federator.etcd.endpoints names another etcd: leave the endpoints null to use the bundled one, or drop var.etcd" : "",
    local.ha && try(local.fed_etcd.endpoints, null) == null && !local.etcd_enabled ? "federator.etcd.endpoints is null, which means the bundled etcd, but var.etcd is null: give the endpoints of your etcd, or set etcd = {}" : "",
    local.ha && local.etcd_enabled && local.etcd_member_tls && !(local.etcd_tls && try(local.fed_etcd.tls_client_cert, false)) ? "the bundled etcd has TLS (etcd.tls_secret_name) and requires client certificates: set federator.etcd.tls_secret_name to a Secret with ca.pem, cert.pem and key.pem from the same CA, with tls_client_cert = true" : "",
    local.ha && local.etcd_enabled && !local.etcd_member_tls && local.etcd_tls ? "federator.etcd.tls_secret_name is set but the bundled etcd has no TLS (etcd.tls_secret_name is null): set both or neither" : "",
  ])
}

output "namespace_manifest" {
  description = "YAML of the Namespace object; apply it before the others."
  value       = yamlencode(local.namespace)
}

output "manifests" {
  description = "Every other object as YAML, keyed \"Kind/name\" (gateway, federator and bundled etcd when enabled), for kubernetes_manifest with yamldecode."
  value       = local.key
  precondition {
    condition     = length(local.input_problems) == 0
    error_message = join("\n", local.input_problems)
  }
}

output "gateway_yaml" {
  description = "The namespace and the gateway's objects as one multi-document YAML stream (kubectl apply -f)."
  value       = join("---\n", concat([yamlencode(local.namespace)], [for o in local.gateway_objects : yamlencode(o)]))
}

output "federator_yaml" {
  description = "The namespace and the federator's objects as one multi-document YAML stream, or null when the federator is not rendered."
  value       = local.fed_enabled ? join("---\n", concat([yamlencode(local.namespace)], [for o in local.federator_objects : yamlencode(o)])) : null
  precondition {
    condition     = length(local.input_problems) == 0
    error_message = join("\n", local.input_problems)
  }
}

output "etcd_yaml" {
  description = "The namespace and the bundled etcd's objects as one multi-document YAML stream, or null without var.etcd."
  value       = local.etcd_enabled ? join("---\n", concat([yamlencode(local.namespace)], [for o in local.etcd_objects : yamlencode(o)])) : null
  precondition {
    condition     = length(local.input_problems) == 0
    error_message = join("\n", local.input_problems)
  }
}

output "gateway_config" {
  description = "The gateway config (TOML) in the ConfigMap."
  value       = local.gateway_config
}

output "federator_config" {
  description = "The federator config (TOML) in its ConfigMap, or null."
  value       = local.federator_config
  precondition {
    condition     = length(local.input_problems) == 0
    error_message = join("\n", local.input_problems)
  }
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
  description = "The ClusterIP Service local clients reach the gateway through (443 → SNI, 80 → HTTP, and 53 → the gateway's DNS with dns.enabled)."
  value       = local.egress_service
}

output "dns_forward" {
  description = "What the cluster DNS needs to forward clusterset.local to the gateway (a CoreDNS server block `clusterset.local:53 { forward . <cluster_ip> }`, or a kube-dns stub domain): zone, the egress Service's namespace and name, port 53, and cluster_ip, the fixed dns.cluster_ip or null when Kubernetes picks it (then read spec.clusterIP of the applied Service: CoreDNS and kube-dns forward to addresses, not names). null with dns.enabled = false."
  value = !local.dns_enabled ? null : {
    zone       = "clusterset.local"
    namespace  = var.namespace
    service    = local.egress_service
    port       = 53
    cluster_ip = var.dns.cluster_ip
  }
}

output "gateway_service_account" {
  description = "The gateway pods' ServiceAccount."
  value       = "skybridge-gateway"
}

output "federator_service_name" {
  description = "The federator's LoadBalancer Service (control, 15010/TCP)."
  value       = "skybridge-federator"
}

output "federator_control_service_name" {
  description = "The headless Service of the replicated federator's control port that this cluster's gateways dial (every ready replica), or null without federator.etcd."
  value       = local.ha ? local.federator_control_headless : null
}

output "federator_replicas" {
  description = "Federator pods: 1 with the embedded store, federator.replicas (default 3) with etcd; 0 without the federator."
  value       = local.fed_enabled ? local.fed_replicas : 0
}

output "etcd_endpoints" {
  description = "Client URLs of the bundled etcd's members (what the federator's [store] endpoints get), or null without var.etcd."
  value       = local.etcd_enabled ? local.bundled_etcd_endpoints : null
}

output "federator_service_account" {
  description = "The federator pod's ServiceAccount (annotate it for IRSA, Workload Identity or Azure workload identity)."
  value       = "skybridge-federator"
}
