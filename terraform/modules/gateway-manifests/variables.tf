variable "cluster_id" {
  description = "This cluster's id in the federation (a DNS label, e.g. aws-prod-use1); the gateway certificate must name it."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.cluster_id))
    error_message = "cluster_id must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit."
  }
}

variable "cloud" {
  description = "Which cloud this cluster runs in: aws, gcp, azure or other."
  type        = string
  validation {
    condition     = contains(["aws", "gcp", "azure", "other"], var.cloud)
    error_message = "cloud must be one of aws, gcp, azure, other."
  }
}

variable "region" {
  description = "The cloud region of this cluster (e.g. us-east-1, europe-west1, westeurope)."
  type        = string
  validation {
    condition     = length(var.region) > 0
    error_message = "region must not be empty."
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
  description = "The skybridge container image, pinned by tag or digest (e.g. registry.example.com/skybridge:0.1.0)."
  type        = string
  validation {
    condition     = length(regexall(":latest$", var.image)) == 0 && can(regex("[:@]", var.image))
    error_message = "image must be pinned to a tag or digest other than latest."
  }
}

variable "namespace" {
  description = "Kubernetes namespace for the gateway (and federator); created by these manifests."
  type        = string
  default     = "skybridge-system"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "replicas" {
  description = "Gateway pods. Two or more keep the tunnel up through node drains (the PodDisruptionBudget keeps one)."
  type        = number
  default     = 2
  validation {
    condition     = var.replicas >= 1 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number of at least 1."
  }
}

variable "federator_address" {
  description = "host:port of the federator's gRPC control listener that gateways dial (mTLS), e.g. federator.example.com:15010. When this module also renders the federator with federator.etcd, this cluster's gateways dial its headless Service (every replica) instead; gateways elsewhere use this address."
  type        = string
  validation {
    condition     = can(regex("^[^:/ ]+:[0-9]{1,5}$", var.federator_address))
    error_message = "federator_address must be host:port."
  }
}

variable "advertised_addresses" {
  description = "host:port addresses peers dial to reach this gateway: the LoadBalancer's static address with port 15443. Empty: peers cannot reach this cluster until it is set."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for a in var.advertised_addresses : can(regex("^[^/ ]+:[0-9]{1,5}$", a))])
    error_message = "every advertised address must be host:port."
  }
}

variable "tls_secret_name" {
  description = "Secret holding the gateway identity from `skybridge ca issue --cluster`: keys cert.pem, key.pem and ca.pem."
  type        = string
  default     = "skybridge-gateway-tls"
}

variable "tls_mount_path" {
  description = "Where the certificate secret is mounted in the gateway and federator pods; the rendered configs point here."
  type        = string
  default     = "/etc/skybridge/tls"
  validation {
    condition     = startswith(var.tls_mount_path, "/")
    error_message = "tls_mount_path must be an absolute path."
  }
}

variable "service_annotations" {
  description = "Extra annotations on the gateway's LoadBalancer Service (the cloud modules put their load-balancer annotations here)."
  type        = map(string)
  default     = {}
}

variable "load_balancer_ip" {
  description = "A reserved static address for the gateway's LoadBalancer (spec.loadBalancerIP), or null to let the cloud pick."
  type        = string
  default     = null
}

variable "load_balancer_source_ranges" {
  description = "CIDRs allowed to reach the tunnel port through the LoadBalancer (the peer gateways' egress addresses). Empty: any."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.load_balancer_source_ranges : can(cidrhost(c, 0))])
    error_message = "load_balancer_source_ranges must be CIDRs such as 203.0.113.0/24."
  }
}

variable "expose_tcp_fallback" {
  description = "Also expose 15443/TCP, the port DESIGN.md reserves for the TLS-over-TCP fallback tunnel (the gateway does not listen there yet; connections are refused)."
  type        = bool
  default     = true
}

variable "service_account_annotations" {
  description = "Annotations on the gateway's ServiceAccount."
  type        = map(string)
  default     = {}
}

variable "resources" {
  description = "Gateway container resources. The data path is CPU-bound under load; memory is bounded by limits.max_connections."
  type = object({
    cpu_request    = optional(string, "500m")
    cpu_limit      = optional(string, "2")
    memory_request = optional(string, "256Mi")
    memory_limit   = optional(string, "1Gi")
  })
  default = {}
}

variable "drain_deadline_seconds" {
  description = "How long a stopping gateway lets in-flight connections finish (limits.drain_deadline); the pod's termination grace period is this plus 15 s."
  type        = number
  default     = 20
  validation {
    condition     = var.drain_deadline_seconds >= 1 && var.drain_deadline_seconds <= 3600
    error_message = "drain_deadline_seconds must be between 1 and 3600."
  }
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
    condition     = var.otlp_endpoint == null || startswith(coalesce(var.otlp_endpoint, "x"), "http://")
    error_message = "otlp_endpoint must be an http:// URL (TLS to the collector is not built in)."
  }
}

variable "extra_gateway_config" {
  description = "TOML appended to the rendered gateway config, for keys this module does not expose (e.g. a [limits] or [routing] table)."
  type        = string
  default     = ""
}

variable "federator" {
  description = "Also render the federator (one per federation): its catalog sources as TOML [[sources]] tables, its identity secret, and how its control port is exposed to gateways in other clouds. null: gateway only. With etcd set, the federator runs replicated (a Deployment of `replicas` pods, default 3) on that etcd instead of as one pod with the embedded store; etcd.endpoints null means the bundled etcd of var.etcd."
  type = object({
    sources_toml                = string
    tls_secret_name             = optional(string, "skybridge-federator-tls")
    api_token_secret_name       = optional(string)
    service_account_annotations = optional(map(string), {})
    pod_labels                  = optional(map(string), {})
    service_annotations         = optional(map(string), {})
    load_balancer_ip            = optional(string)
    load_balancer_source_ranges = optional(list(string), [])
    storage_size                = optional(string, "1Gi")
    storage_class               = optional(string)
    cpu_request                 = optional(string, "250m")
    cpu_limit                   = optional(string, "2")
    memory_request              = optional(string, "256Mi")
    memory_limit                = optional(string, "1Gi")
    extra_config                = optional(string, "")
    gateway_expiry              = optional(string)
    replicas                    = optional(number)
    etcd = optional(object({
      endpoints            = optional(list(string))
      prefix               = optional(string, "/skybridge")
      lease_ttl            = optional(string, "5s")
      tls_secret_name      = optional(string)
      tls_client_cert      = optional(bool, true)
      username             = optional(string)
      password_secret_name = optional(string)
    }))
  })
  default = null

  validation {
    condition     = var.federator == null ? true : var.federator.gateway_expiry == null ? true : can(regex("^[0-9]+(s|m|h|d)$", var.federator.gateway_expiry))
    error_message = "federator.gateway_expiry must be a duration such as 10m or 1h (the federator accepts 10s to 30d)."
  }
  validation {
    condition = var.federator == null ? true : var.federator.replicas == null ? true : (
      floor(var.federator.replicas) == var.federator.replicas &&
      (var.federator.etcd == null ? var.federator.replicas == 1 : var.federator.replicas >= 2)
    )
    error_message = "federator.replicas must be 1 with the embedded store (one process may open its file) and a whole number of at least 2 with etcd (default 3)."
  }
  validation {
    condition = var.federator == null ? true : var.federator.etcd == null ? true : var.federator.etcd.endpoints == null ? true : (
      length(var.federator.etcd.endpoints) > 0 &&
      alltrue([for e in var.federator.etcd.endpoints : can(regex("^https?://[^/ :]+:[0-9]{1,5}$", e))])
    )
    error_message = "federator.etcd.endpoints must list etcd client URLs such as https://etcd-0.etcd:2379 (scheme, host and port, no path), or be null for the bundled etcd (var.etcd)."
  }
  validation {
    condition = var.federator == null ? true : var.federator.etcd == null ? true : var.federator.etcd.endpoints == null ? true : alltrue([
      for e in var.federator.etcd.endpoints : startswith(e, var.federator.etcd.tls_secret_name == null ? "http://" : "https://")
    ])
    error_message = "federator.etcd.endpoints must all be https:// when federator.etcd.tls_secret_name is set, and all http:// when it is not."
  }
  validation {
    condition     = var.federator == null ? true : var.federator.etcd == null ? true : can(regex("^(/[A-Za-z0-9._-]+)+$", var.federator.etcd.prefix)) && length(var.federator.etcd.prefix) <= 256
    error_message = "federator.etcd.prefix must be an absolute key path such as /skybridge, without a trailing '/'."
  }
  validation {
    condition = var.federator == null ? true : var.federator.etcd == null ? true : (
      can(regex("^[0-9]+s$", var.federator.etcd.lease_ttl)) && try(tonumber(trimsuffix(var.federator.etcd.lease_ttl, "s")) >= 2 && tonumber(trimsuffix(var.federator.etcd.lease_ttl, "s")) <= 300, false)
    )
    error_message = "federator.etcd.lease_ttl must be whole seconds from 2s to 300s (etcd leases are whole seconds)."
  }
  validation {
    condition     = var.federator == null ? true : var.federator.etcd == null ? true : (var.federator.etcd.username == null) == (var.federator.etcd.password_secret_name == null)
    error_message = "federator.etcd.username and federator.etcd.password_secret_name go together: give both (etcd authentication) or neither."
  }
}

variable "etcd" {
  description = "Also render a bundled etcd for the replicated federator: a StatefulSet of `members` (3 or 5) with a volume each, headless and client Services, a PodDisruptionBudget and a NetworkPolicy that admits only the federator pods to the client port. Use it with federator.etcd.endpoints = null. tls_secret_name: Secret with ca.pem, cert.pem, key.pem for the members (server and peer TLS, client certificates required); null: plain HTTP inside the namespace, guarded by the NetworkPolicy only (docs/deploy/kubernetes.md). null: no etcd here."
  type = object({
    image           = optional(string, "registry.k8s.io/etcd:3.5.16-0")
    members         = optional(number, 3)
    tls_secret_name = optional(string)
    storage_size    = optional(string, "8Gi")
    storage_class   = optional(string)
    cpu_request     = optional(string, "100m")
    cpu_limit       = optional(string, "1")
    memory_request  = optional(string, "256Mi")
    memory_limit    = optional(string, "1Gi")
    extra_args      = optional(list(string), [])
  })
  default = null

  validation {
    condition     = var.etcd == null ? true : contains([3, 5], var.etcd.members)
    error_message = "etcd.members must be 3 or 5 (an odd quorum that survives one, or two, lost members)."
  }
  validation {
    condition     = var.etcd == null ? true : length(regexall(":latest$", var.etcd.image)) == 0 && can(regex("[:@]", var.etcd.image))
    error_message = "etcd.image must be pinned to a tag or digest other than latest."
  }
  validation {
    condition     = var.etcd == null ? true : alltrue([for a in var.etcd.extra_args : startswith(a, "--")])
    error_message = "etcd.extra_args must be etcd flags such as --quota-backend-bytes=4294967296."
  }
}

variable "cluster_domain" {
  description = "The cluster's DNS domain: the names of the federator's headless Service and of the bundled etcd members end in svc.<cluster_domain>."
  type        = string
  default     = "cluster.local"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", var.cluster_domain))
    error_message = "cluster_domain must be a DNS name such as cluster.local."
  }
}

variable "dns" {
  description = "The gateway's DNS server for clusterset.local (docs/dns.md): listen.dns on 15053 (UDP and TCP), a [dns] table whose answers give the egress Service, and port 53 (UDP and TCP) on the egress Service in front of it, which the cluster DNS forwards clusterset.local to. cluster_ip: a fixed spec.clusterIP for skybridge-egress (a free address of the cluster's service CIDR), so that the forward's address is known before the Service exists; null: Kubernetes picks one (read it from the applied Service). ttl: the answers' TTL, whole seconds (the gateway accepts 1s to 1d). source_ranges: CIDRs admitted to the DNS port besides pods of any namespace, for node-level resolvers on the host network (NodeLocal DNSCache). enabled = false: nothing DNS-related is rendered."
  type = object({
    enabled       = optional(bool, true)
    cluster_ip    = optional(string)
    ttl           = optional(string, "5s")
    source_ranges = optional(list(string), [])
  })
  default  = {}
  nullable = false

  validation {
    # cidrhost accepts an IPv4 address with /32 and an IPv6 address with /128, and nothing else.
    condition     = var.dns.cluster_ip == null ? true : can(cidrhost("${var.dns.cluster_ip}/${strcontains(var.dns.cluster_ip, ":") ? 128 : 32}", 0))
    error_message = "dns.cluster_ip must be an IP address of the cluster's service CIDR (e.g. 172.20.0.53), or null to let Kubernetes pick one."
  }
  validation {
    condition     = can(regex("^[1-9][0-9]*(s|m|h)$", var.dns.ttl))
    error_message = "dns.ttl must be whole seconds, minutes or hours, such as 5s or 1m."
  }
  validation {
    condition     = alltrue([for c in var.dns.source_ranges : can(cidrhost(c, 0))])
    error_message = "dns.source_ranges must be CIDRs such as 10.0.0.0/16."
  }
}
