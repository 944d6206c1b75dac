# ---------------------------------------------------------------------------------------------
# Identity of this cluster in the federation
# ---------------------------------------------------------------------------------------------

variable "cluster_id" {
  description = "This cluster's id in the federation (a DNS label, e.g. aws-prod-use1); the gateway certificate from `skybridge ca issue --cluster` must name it."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.cluster_id))
    error_message = "cluster_id must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit."
  }
}

variable "region" {
  description = "AWS region of the EKS cluster (e.g. us-east-1). Shown in the catalog and used for the Cloud Map source and the IAM policy's ARNs; must be the region of the caller's aws provider."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$", var.region))
    error_message = "region must be an AWS region such as us-east-1."
  }
}

variable "trust_domain" {
  description = "SPIFFE trust domain of the federation (the one given to `skybridge ca init --trust-domain`)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9._-]{1,255}$", var.trust_domain))
    error_message = "trust_domain may only use lowercase letters, digits, '.', '-' and '_'."
  }
}

variable "image" {
  description = "The skybridge container image, pinned by tag or digest (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/skybridge:0.1.0)."
  type        = string
  validation {
    condition     = length(regexall(":latest$", var.image)) == 0 && can(regex("[:@]", var.image))
    error_message = "image must be pinned to a tag or digest other than latest."
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

variable "federator_address" {
  description = "host:port of the federator's control listener (15010/TCP) that this cluster's gateways dial, e.g. federator.example.com:15010. When the federator runs in this cluster, point a DNS name at the federator_public_ips output (or its NLB) and use that name: it must match the `--dns` of the federator certificate."
  type        = string
  validation {
    condition     = can(regex("^[^:/ ]+:[0-9]{1,5}$", var.federator_address))
    error_message = "federator_address must be host:port, e.g. federator.example.com:15010."
  }
}

# ---------------------------------------------------------------------------------------------
# Gateway
# ---------------------------------------------------------------------------------------------

variable "replicas" {
  description = "Gateway pods. Two or more keep the tunnel up through node drains."
  type        = number
  default     = 2
  validation {
    condition     = var.replicas >= 1 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number of at least 1."
  }
}

variable "tls_secret_name" {
  description = "Secret (in var.namespace) holding the gateway identity from `skybridge ca issue --cluster`: keys cert.pem, key.pem and ca.pem. Created by the operator, not by this module."
  type        = string
  default     = "skybridge-gateway-tls"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.tls_secret_name))
    error_message = "tls_secret_name must be a DNS-1123 subdomain (a valid Secret name)."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets (one per Availability Zone, at most one per AZ) the internet-facing NLB is placed in. One Elastic IP is allocated per subnet, so the gateway's address is known before the NLB exists."
  type        = list(string)
  validation {
    condition     = length(var.public_subnet_ids) >= 1 && alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids must hold at least one subnet id (subnet-...)."
  }
  validation {
    condition     = length(distinct(var.public_subnet_ids)) == length(var.public_subnet_ids)
    error_message = "public_subnet_ids must not repeat a subnet."
  }
}

variable "node_security_group_id" {
  description = "Security group of the nodes/pods that run the gateway (with VPC CNI ip targets, the node or pod ENIs' group, e.g. the EKS cluster security group). Rules for 15443/UDP and TCP from var.peer_cidrs are added to it."
  type        = string
  validation {
    condition     = can(regex("^sg-[0-9a-f]{8,17}$", var.node_security_group_id))
    error_message = "node_security_group_id must be a security group id (sg-...)."
  }
}

variable "peer_cidrs" {
  description = "CIDRs of the peer gateways' egress addresses (their NAT or node public IPs) allowed to reach the tunnel port 15443 (UDP and TCP). Used for the security-group rules and the Service's loadBalancerSourceRanges."
  type        = list(string)
  validation {
    condition     = length(var.peer_cidrs) >= 1 && alltrue([for c in var.peer_cidrs : can(cidrhost(c, 0))])
    error_message = "peer_cidrs must hold at least one CIDR such as 203.0.113.0/24."
  }
  validation {
    condition     = alltrue([for c in var.peer_cidrs : !contains(["0.0.0.0/0", "::/0"], c)])
    error_message = "peer_cidrs must not contain 0.0.0.0/0 or ::/0: list the peer gateways' egress ranges."
  }
}

variable "expose_tcp_fallback" {
  description = "Also expose 15443/TCP (the reserved TLS-over-TCP fallback; the gateway does not listen there yet). Needs an AWS Load Balancer Controller that supports TCP_UDP listeners."
  type        = bool
  default     = true
}

variable "gateway_service_annotations" {
  description = "Extra annotations on the gateway's LoadBalancer Service, merged over the module's NLB annotations (e.g. service.beta.kubernetes.io/aws-load-balancer-attributes)."
  type        = map(string)
  default     = {}
}

variable "gateway_resources" {
  description = "Gateway container resources (CPU and memory requests and limits, Kubernetes quantities)."
  type = object({
    cpu_request    = optional(string, "500m")
    cpu_limit      = optional(string, "2")
    memory_request = optional(string, "256Mi")
    memory_limit   = optional(string, "1Gi")
  })
  default = {}
}

variable "extra_gateway_config" {
  description = "TOML appended to the rendered gateway config, for keys the manifests module does not expose (e.g. a [limits] or [routing] table)."
  type        = string
  default     = ""
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
    error_message = "otlp_endpoint must be an http:// URL."
  }
}

# ---------------------------------------------------------------------------------------------
# DNS for clusterset.local
# ---------------------------------------------------------------------------------------------

variable "dns" {
  description = "The gateway's DNS server for clusterset.local (docs/dns.md) and the cluster DNS's forward of that zone to it. enabled: render it (listen.dns on 15053, the [dns] table, port 53 UDP and TCP on skybridge-egress); false: nothing DNS-related is rendered or forwarded. forward: merge the server block `clusterset.local:53 { forward . <egress ClusterIP> }` into the Corefile of kube-system/coredns (self-managed CoreDNS or the EKS add-on; the README says why there and what removing it takes). cluster_ip: a fixed ClusterIP for skybridge-egress, a free address of the cluster's service CIDR; null: the address Kubernetes assigns, read from the applied Service. ttl and source_ranges: as in ../gateway-manifests (defaults 5s and [])."
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
# Federator (optional; one per federation)
# ---------------------------------------------------------------------------------------------

variable "federator" {
  description = "Also deploy the federator in this cluster, with an IRSA role that can read Cloud Map. null: gateway only (no IAM role is created). extra_sources_toml: further [[sources]] tables (other clouds, other accounts) appended after the module's aws-cloudmap source. etcd: run it replicated (replicas, default 3) on etcd; fields and defaults as in ../gateway-manifests (endpoints null: the bundled etcd of var.etcd)."
  type = object({
    cloudmap_source             = optional(bool, true)
    cloudmap_source_id          = optional(string)
    cloudmap_default_cluster    = optional(string)
    cloudmap_interval           = optional(string, "30s")
    extra_sources_toml          = optional(string, "")
    tls_secret_name             = optional(string, "skybridge-federator-tls")
    api_token_secret_name       = optional(string)
    static_ips                  = optional(bool, true)
    control_source_ranges       = optional(list(string), [])
    service_annotations         = optional(map(string), {})
    storage_size                = optional(string, "1Gi")
    storage_class               = optional(string)
    cpu_request                 = optional(string, "250m")
    cpu_limit                   = optional(string, "2")
    memory_request              = optional(string, "256Mi")
    memory_limit                = optional(string, "1Gi")
    extra_config                = optional(string, "")
    iam_role_name               = optional(string)
    iam_permissions_boundary    = optional(string)
    service_account_annotations = optional(map(string), {})
    replicas                    = optional(number)
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
    condition     = var.federator == null || try(var.federator.cloudmap_source_id == null || can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", var.federator.cloudmap_source_id)), false)
    error_message = "federator.cloudmap_source_id may only use lowercase letters, digits and '-'."
  }
  validation {
    condition     = var.federator == null || try(var.federator.cloudmap_default_cluster == null || can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.federator.cloudmap_default_cluster)), false)
    error_message = "federator.cloudmap_default_cluster must be a cluster id (DNS-1123 label)."
  }
  validation {
    condition     = var.federator == null || try(can(regex("^[0-9]+(ms|s|m|h)$", var.federator.cloudmap_interval)), false)
    error_message = "federator.cloudmap_interval must be a duration such as 30s or 2m."
  }
  validation {
    condition     = var.federator == null || try(alltrue([for c in var.federator.control_source_ranges : can(cidrhost(c, 0))]), false)
    error_message = "federator.control_source_ranges must be CIDRs such as 203.0.113.0/24."
  }
  validation {
    condition     = var.federator == null || try(var.federator.iam_permissions_boundary == null || startswith(var.federator.iam_permissions_boundary, "arn:"), false)
    error_message = "federator.iam_permissions_boundary must be a policy ARN."
  }
  validation {
    condition     = var.federator == null || try(var.federator.iam_role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.federator.iam_role_name)), false)
    error_message = "federator.iam_role_name must be a valid IAM role name (1-64 characters of A-Z a-z 0-9 +=,.@_-)."
  }
  validation {
    condition     = var.federator == null || try(!contains(keys(var.federator.service_account_annotations), "eks.amazonaws.com/role-arn"), false)
    error_message = "federator.service_account_annotations must not set eks.amazonaws.com/role-arn: the module sets it to the role it creates."
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

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA), e.g. arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE. Required when federator is set."
  type        = string
  default     = null
  validation {
    condition     = var.oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", coalesce(var.oidc_provider_arn, "x")))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/...)."
  }
}

variable "oidc_provider_url" {
  description = "Issuer URL of the EKS cluster's OIDC provider (aws_eks_cluster.identity[0].oidc[0].issuer), with or without https://. Required when federator is set."
  type        = string
  default     = null
  validation {
    condition     = var.oidc_provider_url == null || can(regex("^(https://)?[^/ ]+(/[^ ]*)?$", coalesce(var.oidc_provider_url, "x")))
    error_message = "oidc_provider_url must be the issuer URL, e.g. https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE."
  }
}

# ---------------------------------------------------------------------------------------------
# Cloud Map
# ---------------------------------------------------------------------------------------------

variable "cloudmap_namespaces" {
  description = "Cloud Map namespace names the federator's aws-cloudmap source reads (e.g. [\"prod.example.local\"]). Empty, and no namespace created by this module: every namespace the role can list in var.region."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for n in var.cloudmap_namespaces : can(regex("^[A-Za-z0-9._-]{1,1024}$", n))])
    error_message = "cloudmap_namespaces must be Cloud Map namespace names (letters, digits, '.', '-', '_')."
  }
}

variable "create_cloudmap_namespace" {
  description = "Create an aws_service_discovery_http_namespace named var.cloudmap_namespace_name (it is then also read by the federator's Cloud Map source)."
  type        = bool
  default     = false
}

variable "cloudmap_namespace_name" {
  description = "Name of the Cloud Map HTTP namespace created when create_cloudmap_namespace is true; its first DNS label becomes the clusterset namespace (prod.example.local -> prod)."
  type        = string
  default     = null
  validation {
    condition     = var.cloudmap_namespace_name == null || can(regex("^[A-Za-z0-9]([A-Za-z0-9._-]{0,1022}[A-Za-z0-9])?$", coalesce(var.cloudmap_namespace_name, "x")))
    error_message = "cloudmap_namespace_name must be a namespace name of letters, digits, '.', '-' and '_'."
  }
}

# ---------------------------------------------------------------------------------------------
# Common
# ---------------------------------------------------------------------------------------------

variable "tags" {
  description = "Tags on every AWS resource this module creates (Elastic IPs, IAM role, Cloud Map namespace, security-group rules)."
  type        = map(string)
  default     = {}
}
