# ---------------------------------------------------------------------------------------------
# Federation identity of this cluster (passed to ../gateway-manifests)
# ---------------------------------------------------------------------------------------------

variable "cluster_id" {
  description = "This AKS cluster's id in the federation (a DNS label, e.g. azure-prod-weu); the gateway certificate from `skybridge ca issue --cluster` must name it."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.cluster_id))
    error_message = "cluster_id must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit."
  }
}

variable "trust_domain" {
  description = "SPIFFE trust domain of the federation (the one given to `skybridge ca init`)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9._-]{1,255}$", var.trust_domain))
    error_message = "trust_domain may only use lowercase letters, digits, '.', '-' and '_'."
  }
}

variable "image" {
  description = "The skybridge container image, pinned by tag or digest (e.g. myregistry.azurecr.io/skybridge:0.1.0)."
  type        = string
  validation {
    condition     = length(regexall(":latest$", var.image)) == 0 && can(regex("[:@]", var.image))
    error_message = "image must be pinned to a tag or digest other than latest."
  }
}

variable "federator_address" {
  description = "host:port of the federator's gRPC control listener (port 15010) that this cluster's gateways dial; the host must be a name in the federator certificate (`skybridge ca issue --federator --dns HOST`)."
  type        = string
  validation {
    condition     = can(regex("^[^:/ ]+:[0-9]{1,5}$", var.federator_address))
    error_message = "federator_address must be host:port, e.g. federator.example.com:15010."
  }
}

variable "namespace" {
  description = "Kubernetes namespace for the gateway (and federator); created by this module."
  type        = string
  default     = "skybridge-system"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

# ---------------------------------------------------------------------------------------------
# Azure placement
# ---------------------------------------------------------------------------------------------

variable "location" {
  description = "Azure region of the AKS cluster (e.g. westeurope); the public IPs and the federator identity are created here, and it is the region the gateway reports."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location must be an Azure region name such as westeurope or eastus2 (lowercase, no spaces)."
  }
}

variable "resource_group_name" {
  description = "Existing resource group for the public IPs and the federator's managed identity. Using the cluster's node resource group (MC_...) avoids the extra role assignment, but that group is deleted with the cluster."
  type        = string
  validation {
    condition     = can(regex("^[-\\w\\._\\(\\)]{1,90}$", var.resource_group_name)) && !endswith(var.resource_group_name, ".")
    error_message = "resource_group_name must be 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'."
  }
}

variable "name_prefix" {
  description = "Prefix of the Azure resource names this module creates (<prefix>-gateway-pip, <prefix>-federator-pip, <prefix>-federator-id)."
  type        = string
  default     = "skybridge"
  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9-]{0,39}$", var.name_prefix))
    error_message = "name_prefix must be 1-40 letters, digits or '-', starting with a letter or digit."
  }
}

variable "public_ip_zones" {
  description = "Availability zones of the Standard public IPs: [\"1\",\"2\",\"3\"] is zone-redundant; [] for regions without availability zones."
  type        = list(string)
  default     = ["1", "2", "3"]
  validation {
    condition     = alltrue([for z in var.public_ip_zones : contains(["1", "2", "3"], z)])
    error_message = "public_ip_zones may only contain \"1\", \"2\" and \"3\"."
  }
}

variable "cluster_identity_principal_id" {
  description = "Principal (object) id of the AKS cluster's control-plane identity (azurerm_kubernetes_cluster.identity[0].principal_id). When set, it is granted Network Contributor on resource_group_name so the cloud provider can attach the public IPs; leave null when resource_group_name is the node resource group or the grant exists already."
  type        = string
  default     = null
  validation {
    condition     = var.cluster_identity_principal_id == null ? true : can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.cluster_identity_principal_id))
    error_message = "cluster_identity_principal_id must be a GUID (an object id), or null."
  }
}

variable "tags" {
  description = "Tags put on every Azure resource this module creates."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Network exposure of the tunnel
# ---------------------------------------------------------------------------------------------

variable "peer_cidrs" {
  description = "CIDRs of the peer gateways' egress addresses (the other clusters' NAT / outbound IPs) allowed to reach 15443/UDP and 15443/TCP. Used for the Service's loadBalancerSourceRanges (the AKS-managed NSG) and for the rules on network_security_group."
  type        = list(string)
  validation {
    condition     = length(var.peer_cidrs) > 0 && alltrue([for c in var.peer_cidrs : can(cidrhost(c, 0))])
    error_message = "peer_cidrs must hold at least one CIDR such as 203.0.113.0/24."
  }
  validation {
    condition     = !contains(var.peer_cidrs, "0.0.0.0/0") && !contains(var.peer_cidrs, "::/0")
    error_message = "peer_cidrs must not be 0.0.0.0/0 or ::/0: list the peer gateways' egress ranges (the tunnel is mTLS, but it should not face the whole Internet)."
  }
}

variable "network_security_group" {
  description = "An existing NSG on the AKS node subnet (bring-your-own subnet NSG) that needs explicit allow rules for the tunnel: 15443/UDP and 15443/TCP from peer_cidrs (and 15010/TCP for the federator when it has source ranges). null: no rules added (the AKS-managed NSG is handled by the cloud provider)."
  type = object({
    name                = string
    resource_group_name = string
    priority            = optional(number, 400)
  })
  default = null
  validation {
    condition     = var.network_security_group == null ? true : (var.network_security_group.priority >= 100 && var.network_security_group.priority <= 4093 && floor(var.network_security_group.priority) == var.network_security_group.priority)
    error_message = "network_security_group.priority must be a whole number from 100 to 4093 (the module uses priority, priority+1 and priority+2)."
  }
  validation {
    condition     = var.network_security_group == null ? true : length(var.network_security_group.name) > 0 && length(var.network_security_group.resource_group_name) > 0
    error_message = "network_security_group.name and resource_group_name must not be empty."
  }
}

variable "tcp_probe_kube_proxy" {
  description = "Only for a gateway Service changed to externalTrafficPolicy: Cluster: probe the 15443/TCP rule with kube-proxy's HTTP /healthz on node port 10256 instead of a TCP connect to a node port the gateway does not listen on. Leave false with the rendered manifests (externalTrafficPolicy: Local), where every rule, UDP included, already uses the Service's healthCheckNodePort HTTP probe and a port override would send traffic to nodes without a gateway pod."
  type        = bool
  default     = false
}

variable "extra_service_annotations" {
  description = "More annotations for the gateway's LoadBalancer Service, merged over the ones this module sets (e.g. service.beta.kubernetes.io/azure-dns-label-name)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Gateway workload (passed through to ../gateway-manifests)
# ---------------------------------------------------------------------------------------------

variable "replicas" {
  description = "Gateway pods. Two or more keep the tunnel up through node drains and upgrades."
  type        = number
  default     = 2
  validation {
    condition     = var.replicas >= 1 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number of at least 1."
  }
}

variable "tls_secret_name" {
  description = "Secret (created beforehand, see docs/deploy/azure.md) holding the gateway identity from `skybridge ca issue --cluster`: keys cert.pem, key.pem and ca.pem."
  type        = string
  default     = "skybridge-gateway-tls"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.tls_secret_name))
    error_message = "tls_secret_name must be a DNS-1123 subdomain."
  }
}

variable "expose_tcp_fallback" {
  description = "Also expose 15443/TCP (reserved for the TLS-over-TCP fallback tunnel; the gateway does not listen there yet)."
  type        = bool
  default     = true
}

variable "resources" {
  description = "Gateway container resources (requests and limits)."
  type = object({
    cpu_request    = optional(string, "500m")
    cpu_limit      = optional(string, "2")
    memory_request = optional(string, "256Mi")
    memory_limit   = optional(string, "1Gi")
  })
  default = {}
}

variable "log_format" {
  description = "Log format of the skybridge processes: json or text."
  type        = string
  default     = "json"
  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "log_format must be json or text."
  }
}

variable "otlp_endpoint" {
  description = "OTLP/gRPC receiver for connection spans (e.g. http://otel-collector.observability:4317), or null for no trace export."
  type        = string
  default     = null
  validation {
    condition     = var.otlp_endpoint == null ? true : startswith(var.otlp_endpoint, "http://")
    error_message = "otlp_endpoint must be an http:// URL."
  }
}

variable "extra_gateway_config" {
  description = "TOML appended to the rendered gateway config (e.g. a [limits] or [routing] table)."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------------------------
# DNS for clusterset.local
# ---------------------------------------------------------------------------------------------

variable "dns" {
  description = "The gateway's DNS server for clusterset.local (docs/dns.md) and the cluster DNS's forward of that zone to it. enabled: render it (listen.dns on 15053, the [dns] table, port 53 UDP and TCP on skybridge-egress); false: nothing DNS-related is rendered or forwarded. forward: put the server block `clusterset.local:53 { forward . <egress ClusterIP> }` in kube-system/coredns-custom as clusterset.server (AKS's Corefile imports custom/*.server). restart_coredns: roll the coredns Deployment when that block changes (a pod-template annotation): CoreDNS reads imported files only at start. cluster_ip: a fixed ClusterIP for skybridge-egress, a free address of the cluster's service CIDR; null: the address Kubernetes assigns, read from the applied Service. ttl and source_ranges: as in ../gateway-manifests (defaults 5s and [])."
  type = object({
    enabled         = optional(bool, true)
    forward         = optional(bool, true)
    restart_coredns = optional(bool, true)
    cluster_ip      = optional(string)
    ttl             = optional(string)
    source_ranges   = optional(list(string))
  })
  default  = {}
  nullable = false
}

# ---------------------------------------------------------------------------------------------
# Federator (one per federation; optional)
# ---------------------------------------------------------------------------------------------

variable "oidc_issuer_url" {
  description = "The AKS cluster's OIDC issuer URL (azurerm_kubernetes_cluster.oidc_issuer_url; needs oidc_issuer_enabled and workload_identity_enabled). Required when federator is set."
  type        = string
  default     = null
  validation {
    condition     = var.oidc_issuer_url == null ? true : startswith(var.oidc_issuer_url, "https://")
    error_message = "oidc_issuer_url must be an https:// URL."
  }
}

variable "federator" {
  description = "Run the federator in this cluster, reading an Azure Kubernetes Fleet Manager fleet with workload identity (docs/sources/azure.md). null: gateway only. The module creates the managed identity, its federated credential and role assignments, and the aks-fleet [[sources]] table."
  type = object({
    subscription_id       = string                    # subscription of the fleet
    resource_group_name   = string                    # the fleet's resource group
    fleet_name            = optional(string)          # null: every AKS cluster of resource_group_name
    source_id             = optional(string, "azure") # [[sources]] id
    member_scopes         = optional(list(string), [])
    grant_aks_rbac_reader = optional(bool, true)
    prefer_private_fqdn   = optional(bool, false)
    interval              = optional(string, "60s")
    extra_sources_toml    = optional(string, "")
    # Exposure of the control port 15010/TCP to the gateways of every cloud.
    static_public_ip            = optional(bool, true)
    load_balancer_source_ranges = optional(list(string), [])
    # Pod settings passed through to ../gateway-manifests.
    tls_secret_name       = optional(string, "skybridge-federator-tls")
    api_token_secret_name = optional(string)
    storage_size          = optional(string, "1Gi")
    storage_class         = optional(string)
    extra_config          = optional(string, "")
    # Replicated on etcd (a Deployment, default 3 replicas); fields and defaults as in
    # ../gateway-manifests (endpoints null: the bundled etcd of var.etcd).
    replicas = optional(number)
    etcd = optional(object({
      endpoints            = optional(list(string))
      prefix               = optional(string)
      lease_ttl            = optional(string)
      tls_secret_name      = optional(string)
      tls_client_cert      = optional(bool)
      username             = optional(string)
      password_secret_name = optional(string)
    }))
  })
  default = null

  validation {
    condition     = var.federator == null ? true : can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.federator.subscription_id))
    error_message = "federator.subscription_id must be a subscription GUID."
  }
  validation {
    condition     = var.federator == null ? true : can(regex("^[-\\w\\._\\(\\)]{1,90}$", var.federator.resource_group_name))
    error_message = "federator.resource_group_name must be a resource group name (1-90 letters, digits, '-', '_', '.', '(' or ')')."
  }
  validation {
    condition     = var.federator == null ? true : (var.federator.fleet_name == null ? true : can(regex("^[a-zA-Z0-9][a-zA-Z0-9-]{0,61}[a-zA-Z0-9]?$", var.federator.fleet_name)))
    error_message = "federator.fleet_name must be a fleet name (letters, digits and '-', at most 63 characters), or null."
  }
  validation {
    condition     = var.federator == null ? true : can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", var.federator.source_id))
    error_message = "federator.source_id must use lowercase letters, digits and '-'."
  }
  validation {
    condition     = var.federator == null ? true : alltrue([for s in var.federator.member_scopes : can(regex("^/subscriptions/[0-9a-fA-F-]{36}(/resourceGroups/[^/]+(/providers/Microsoft.ContainerService/managedClusters/[^/]+)?)?$", s))])
    error_message = "federator.member_scopes must be Azure resource ids of subscriptions, resource groups or managedClusters (/subscriptions/<id>[/resourceGroups/<rg>[/providers/Microsoft.ContainerService/managedClusters/<name>]])."
  }
  validation {
    condition     = var.federator == null ? true : can(regex("^[0-9]+(ms|s|m|h)$", var.federator.interval))
    error_message = "federator.interval must be a duration such as 30s, 2m or 1h."
  }
  validation {
    condition     = var.federator == null ? true : alltrue([for c in var.federator.load_balancer_source_ranges : can(cidrhost(c, 0))])
    error_message = "federator.load_balancer_source_ranges must be CIDRs (the gateways' egress addresses)."
  }
}

variable "etcd" {
  description = "A bundled etcd (a StatefulSet of 3 members) for the replicated federator, rendered by ../gateway-manifests (its README lists the fields and their defaults: image, members, tls_secret_name, storage_size, storage_class, CPU/memory requests and limits, extra_args). Use with federator.etcd = {} (endpoints null). null: none; give federator.etcd.endpoints of an existing etcd instead. The clouds offer no managed etcd."
  type = object({
    image           = optional(string)
    members         = optional(number)
    tls_secret_name = optional(string)
    storage_size    = optional(string)
    storage_class   = optional(string)
    cpu_request     = optional(string)
    cpu_limit       = optional(string)
    memory_request  = optional(string)
    memory_limit    = optional(string)
    extra_args      = optional(list(string))
  })
  default = null
}
