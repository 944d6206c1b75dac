# ---------------------------------------------------------------------------------------------
# Where the cluster is
# ---------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Project of the GKE cluster: the static addresses, firewall rules and the federator's Google service account are created here, and its Workload Identity pool is <project_id>.svc.id.goog."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 characters, lowercase letters, digits and '-', starting with a letter."
  }
}

variable "region" {
  description = "Region of the GKE cluster; the regional external static addresses are reserved here (e.g. europe-west1)."
  type        = string
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1 (not a zone)."
  }
}

variable "cluster_name" {
  description = "Name of the existing GKE cluster (used for the fleet membership's resource link)."
  type        = string
  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a GKE cluster name: lowercase letters, digits and '-', at most 40 characters, starting with a letter."
  }
}

variable "cluster_location" {
  description = "Location of the GKE cluster: its region (regional cluster) or zone (zonal cluster). null: var.region."
  type        = string
  default     = null
  validation {
    condition     = var.cluster_location == null ? true : can(regex("^[a-z]+-[a-z]+[0-9]+(-[a-z])?$", var.cluster_location))
    error_message = "cluster_location must be a region (europe-west1) or a zone (europe-west1-b)."
  }
}

variable "network" {
  description = "VPC network of the GKE nodes (name or self link) for the tunnel firewall rule."
  type        = string
  validation {
    condition     = length(trimspace(var.network)) > 0
    error_message = "network must not be empty."
  }
}

variable "network_project_id" {
  description = "Project that owns var.network (the Shared VPC host project); the firewall rules are created there. null: var.project_id."
  type        = string
  default     = null
  validation {
    condition     = var.network_project_id == null ? true : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.network_project_id))
    error_message = "network_project_id must be a Google Cloud project id."
  }
}

variable "node_target_tags" {
  description = "Network tags of the GKE nodes that may run gateway (and federator) pods; the firewall rules target them. GKE gives every node the tag gke-<cluster>-<hash>-node; node pools can add their own."
  type        = list(string)
  validation {
    condition     = length(var.node_target_tags) > 0 && alltrue([for t in var.node_target_tags : can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", t))])
    error_message = "node_target_tags must list at least one network tag (lowercase letters, digits and '-', at most 63 characters)."
  }
}

variable "peer_cidrs" {
  description = "Egress CIDRs of the peer gateways (other clusters' NAT / node addresses) allowed to reach the tunnel port 15443. Used for the VPC firewall rule and the Service's loadBalancerSourceRanges."
  type        = list(string)
  validation {
    condition     = length(var.peer_cidrs) > 0 && alltrue([for c in var.peer_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "peer_cidrs must list at least one IPv4 CIDR such as 203.0.113.0/24."
  }
}

variable "name_prefix" {
  description = "Prefix of the Google Cloud resource names this module creates (addresses, firewall rules)."
  type        = string
  default     = "skybridge"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix must start with a letter and use at most 20 lowercase letters, digits and '-'."
  }
}

variable "network_tier" {
  description = "Network tier of the static addresses and load balancers: PREMIUM (Google's backbone, default) or STANDARD."
  type        = string
  default     = "PREMIUM"
  validation {
    condition     = contains(["PREMIUM", "STANDARD"], var.network_tier)
    error_message = "network_tier must be PREMIUM or STANDARD."
  }
}

# ---------------------------------------------------------------------------------------------
# The gateway (passed to the gateway-manifests module)
# ---------------------------------------------------------------------------------------------

variable "cluster_id" {
  description = "This cluster's id in the federation (a DNS label, e.g. gcp-prod-euw1); the gateway certificate must name it. Also the default fleet membership id, so the federator's catalog names this cluster the same way."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.cluster_id))
    error_message = "cluster_id must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters."
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
  description = "The skybridge container image, pinned by tag or digest (e.g. europe-docker.pkg.dev/p/skybridge/skybridge:0.1.0)."
  type        = string
  validation {
    condition     = length(regexall(":latest$", var.image)) == 0 && can(regex("[:@]", var.image))
    error_message = "image must be pinned to a tag or digest other than latest."
  }
}

variable "namespace" {
  description = "Kubernetes namespace for the gateway (and federator); created by this module. The TLS Secrets must be created in it."
  type        = string
  default     = "skybridge-system"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "replicas" {
  description = "Gateway pods. Two or more keep the tunnel up through node drains and upgrades."
  type        = number
  default     = 2
  validation {
    condition     = var.replicas >= 1 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number of at least 1."
  }
}

variable "federator_address" {
  description = "host:port of the federator's control listener (15010) that this cluster's gateways dial. null: only allowed when this module also runs the federator (var.federator), whose reserved address is used."
  type        = string
  default     = null
  validation {
    condition     = var.federator_address == null ? true : can(regex("^[^:/ ]+:[0-9]{1,5}$", var.federator_address))
    error_message = "federator_address must be host:port, e.g. 34.90.1.3:15010."
  }
}

variable "tls_secret_name" {
  description = "Secret (in var.namespace) holding the gateway identity from `skybridge ca issue --cluster <cluster_id>`: keys cert.pem, key.pem, ca.pem. Not created by this module."
  type        = string
  default     = "skybridge-gateway-tls"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.tls_secret_name))
    error_message = "tls_secret_name must be a Kubernetes object name."
  }
}

variable "expose_tcp_fallback" {
  description = "Also expose 15443/TCP on the gateway's load balancer (reserved for the TLS-over-TCP fallback). This makes the Service mixed-protocol (UDP+TCP), which GKE supports only on clusters created at 1.34.1-gke.2190000 or later; set false on older clusters (UDP only)."
  type        = bool
  default     = true
}

variable "gateway_service_annotations" {
  description = "Extra annotations on the gateway's LoadBalancer Service, merged over the ones this module sets (cloud.google.com/l4-rbs, cloud.google.com/network-tier)."
  type        = map(string)
  default     = {}
}

variable "resources" {
  description = "Gateway container resources (cpu_request, cpu_limit, memory_request, memory_limit); see the gateway-manifests module."
  type = object({
    cpu_request    = optional(string, "500m")
    cpu_limit      = optional(string, "2")
    memory_request = optional(string, "256Mi")
    memory_limit   = optional(string, "1Gi")
  })
  default = {}
}

variable "log_format" {
  description = "Log format of the skybridge processes: json (Cloud Logging parses it) or text."
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
  description = "The gateway's DNS server for clusterset.local (docs/dns.md) and the cluster DNS's forward of that zone to it. enabled: render it (listen.dns on 15053, the [dns] table, port 53 UDP and TCP on skybridge-egress); false: nothing DNS-related is rendered or forwarded. forward: add clusterset.local to the stubDomains of kube-system/kube-dns (GKE Standard with kube-dns); set false with Cloud DNS for GKE (Autopilot's only DNS) and use the Cloud DNS setup in the README. cluster_ip: a fixed ClusterIP for skybridge-egress, a free address of the cluster's Service range; null: the address Kubernetes assigns, read from the applied Service. ttl and source_ranges: as in ../gateway-manifests (defaults 5s and []); with NodeLocal DNSCache give the nodes' range in source_ranges."
  type = object({
    enabled       = optional(bool, true)
    forward       = optional(bool, true)
    cluster_ip    = optional(string)
    ttl           = optional(string)
    source_ranges = optional(list(string))
  })
  default  = {}
  nullable = false
}

# ---------------------------------------------------------------------------------------------
# Fleet (GKE Hub)
# ---------------------------------------------------------------------------------------------

variable "fleet_project_id" {
  description = "Fleet host project: where this cluster's membership is registered and the federator lists memberships. null: var.project_id."
  type        = string
  default     = null
  validation {
    condition     = var.fleet_project_id == null ? true : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.fleet_project_id))
    error_message = "fleet_project_id must be a Google Cloud project id."
  }
}

variable "register_fleet_membership" {
  description = "Register this cluster in the fleet (google_gke_hub_membership, global location) with membership id var.membership_id. false: the cluster is registered elsewhere, or not at all."
  type        = bool
  default     = false
}

variable "membership_id" {
  description = "Fleet membership id for this cluster. The federator names the catalog cluster after the membership, so keep it equal to cluster_id (the default, null) unless a [[sources.clusters]] entry maps it."
  type        = string
  default     = null
  validation {
    condition     = var.membership_id == null ? true : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.membership_id))
    error_message = "membership_id must be a DNS-1123 label."
  }
}

variable "enable_multicluster_services" {
  description = "Enable the fleet's Multi-Cluster Services feature (google_gke_hub_feature multiclusterservicediscovery) and grant the MCS importer roles/compute.networkViewer. The feature is one per fleet: enable it in exactly one Terraform root."
  type        = bool
  default     = false
}

variable "fleet_reader_identities" {
  description = "Google identities (service account e-mails) of federators that read this cluster through the connect gateway; each gets a read-only ClusterRole binding (ServiceExports, Services, EndpointSlices). The local federator's account is added automatically."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for e in var.fleet_reader_identities : can(regex("^[^@ ]+@[^@ ]+$", e))])
    error_message = "fleet_reader_identities must be e-mail addresses, e.g. skybridge-federator@fleet-host.iam.gserviceaccount.com."
  }
}

# ---------------------------------------------------------------------------------------------
# Federator (one per federation)
# ---------------------------------------------------------------------------------------------

variable "federator" {
  description = <<-EOT
    Run the federator in this cluster, reading the GKE fleet of fleet_project_id through a
    Workload Identity Google service account. null: gateway only (then federator_address is
    required). Fields:
      control_source_ranges  CIDRs of every gateway's egress allowed to reach the control port 15010 (required)
      fleet_location         membership location to list: "-" (all), "global" or a region
      source_id              id of the gke-fleet [[sources]] entry
      export_apis            ServiceExport groups to read: gke, upstream, aks-fleet
      rediscover             how often memberships are listed again (duration, e.g. 60s)
      clusters               per-membership overrides: membership, cluster, server, ca_file
      extra_sources_toml     more [[sources]] tables appended verbatim (e.g. aws-cloudmap, aks-fleet)
      google_service_account_id  account id of the federator's Google service account
      tls_secret_name, api_token_secret_name, storage_size, storage_class, pod_labels,
      resources (cpu/memory), extra_config: passed to the gateway-manifests module
      replicas, etcd         run it replicated on etcd (a Deployment, default 3 replicas); fields
                             and defaults as in ../gateway-manifests (endpoints null: var.etcd)
  EOT
  type = object({
    control_source_ranges = list(string)
    fleet_location        = optional(string, "-")
    source_id             = optional(string, "gke-fleet")
    export_apis           = optional(list(string), ["gke", "upstream"])
    rediscover            = optional(string, "60s")
    clusters = optional(list(object({
      membership = string
      cluster    = optional(string)
      server     = optional(string)
      ca_file    = optional(string)
    })), [])
    extra_sources_toml        = optional(string, "")
    google_service_account_id = optional(string, "skybridge-federator")
    tls_secret_name           = optional(string, "skybridge-federator-tls")
    api_token_secret_name     = optional(string)
    storage_size              = optional(string, "1Gi")
    storage_class             = optional(string)
    pod_labels                = optional(map(string), {})
    service_annotations       = optional(map(string), {})
    cpu_request               = optional(string, "250m")
    cpu_limit                 = optional(string, "2")
    memory_request            = optional(string, "256Mi")
    memory_limit              = optional(string, "1Gi")
    extra_config              = optional(string, "")
    replicas                  = optional(number)
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
    condition = var.federator == null ? true : (
      length(var.federator.control_source_ranges) > 0 &&
      alltrue([for c in var.federator.control_source_ranges : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    )
    error_message = "federator.control_source_ranges must list at least one IPv4 CIDR (the gateways' egress addresses)."
  }
  validation {
    condition     = var.federator == null ? true : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.federator.google_service_account_id))
    error_message = "federator.google_service_account_id must be 6-30 characters: lowercase letters, digits and '-', starting with a letter."
  }
  validation {
    condition     = var.federator == null ? true : can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", var.federator.source_id))
    error_message = "federator.source_id must use lowercase letters, digits and '-'."
  }
  validation {
    condition     = var.federator == null ? true : (length(var.federator.export_apis) > 0 && alltrue([for a in var.federator.export_apis : contains(["gke", "upstream", "aks-fleet"], a)]))
    error_message = "federator.export_apis must list one or more of gke, upstream, aks-fleet."
  }
  validation {
    condition     = var.federator == null ? true : can(regex("^([0-9]+(ms|s|m|h))+$", var.federator.rediscover))
    error_message = "federator.rediscover must be a duration such as 60s or 5m."
  }
  validation {
    condition     = var.federator == null ? true : (var.federator.fleet_location == "-" || var.federator.fleet_location == "global" || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.federator.fleet_location)))
    error_message = "federator.fleet_location must be \"-\" (every location), \"global\" or a region."
  }
  validation {
    condition = var.federator == null ? true : alltrue([
      for c in var.federator.clusters : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", c.membership)) &&
      (c.server == null ? true : startswith(c.server, "https://"))
    ])
    error_message = "federator.clusters: membership must be a DNS label and server an https:// URL."
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
