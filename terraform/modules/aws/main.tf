# Skybridge on EKS: Elastic IPs for the gateway's (and federator's) NLB, the federator's IRSA
# role for Cloud Map, an optional Cloud Map namespace, security-group rules for the tunnel, and
# the Kubernetes objects rendered by ../gateway-manifests applied with kubernetes_manifest.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

# The NLB's health checks come from its nodes' private addresses in these subnets.
data "aws_subnet" "public" {
  for_each = toset(var.public_subnet_ids)
  id       = each.value
}

locals {
  federator_enabled = var.federator != null

  # The manifests module names the federator's service account; it is repeated here (rather than
  # read from the module's output) because the role's trust policy feeds the module's input.
  federator_service_account = "skybridge-federator"

  oidc_issuer = var.oidc_provider_url == null ? null : trimprefix(var.oidc_provider_url, "https://")

  tunnel_port  = 15443
  admin_port   = 15021
  control_port = 15010

  # ---- Cloud Map source for the federator ----------------------------------------------------
  cloudmap_namespace_names = distinct(concat(
    var.cloudmap_namespaces,
    var.create_cloudmap_namespace && var.cloudmap_namespace_name != null ? [var.cloudmap_namespace_name] : [],
  ))

  cloudmap_source_id = local.federator_enabled ? coalesce(var.federator.cloudmap_source_id, "aws-cloudmap-${var.region}") : null

  # jsonencode writes valid TOML basic strings and arrays of them.
  cloudmap_source_toml = !local.federator_enabled ? "" : !var.federator.cloudmap_source ? "" : join("\n", compact([
    "[[sources]]",
    "type = \"aws-cloudmap\"",
    "id = ${jsonencode(local.cloudmap_source_id)}",
    "region = ${jsonencode(var.region)}",
    "namespaces = ${jsonencode(local.cloudmap_namespace_names)}",
    var.federator.cloudmap_default_cluster == null ? "" : "default_cluster = ${jsonencode(var.federator.cloudmap_default_cluster)}",
    "interval = ${jsonencode(var.federator.cloudmap_interval)}",
    "",
  ]))

  sources_toml = !local.federator_enabled ? "" : trimspace(join("\n", compact([
    local.cloudmap_source_toml,
    var.federator.extra_sources_toml,
  ])))

  # ---- NLB annotations (AWS Load Balancer Controller) -----------------------------------------
  # Shared by both Services: an internet-facing NLB with pod-IP targets in the given public
  # subnets, cross-zone so every Elastic IP reaches a pod whatever AZs the pods landed in.
  nlb_base_annotations = {
    "service.beta.kubernetes.io/aws-load-balancer-type"            = "external"
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type" = "ip"
    "service.beta.kubernetes.io/aws-load-balancer-scheme"          = "internet-facing"
    "service.beta.kubernetes.io/aws-load-balancer-subnets"         = join(",", var.public_subnet_ids)
    "service.beta.kubernetes.io/aws-load-balancer-attributes"      = "load_balancing.cross_zone.enabled=true"
  }

  gateway_service_annotations = merge(
    local.nlb_base_annotations,
    {
      "service.beta.kubernetes.io/aws-load-balancer-eip-allocations" = join(",", [for s in var.public_subnet_ids : aws_eip.gateway[s].allocation_id])
      # UDP target groups cannot be health-checked over UDP, and nothing listens on 15443/TCP
      # yet: check the gateway's admin readiness endpoint instead (503 while draining).
      "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol" = "http"
      "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port"     = tostring(local.admin_port)
      "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"     = "/readyz"
    },
    # 15443 is declared twice (UDP and TCP): one TCP_UDP listener and target group.
    var.expose_tcp_fallback ? { "service.beta.kubernetes.io/aws-load-balancer-enable-tcp-udp-listener" = "true" } : {},
    var.gateway_service_annotations,
  )

  federator_static_ips = local.federator_enabled ? var.federator.static_ips : false

  federator_service_annotations = !local.federator_enabled ? {} : merge(
    local.nlb_base_annotations,
    local.federator_static_ips ? {
      "service.beta.kubernetes.io/aws-load-balancer-eip-allocations" = join(",", [for s in var.public_subnet_ids : aws_eip.federator[s].allocation_id])
    } : {},
    var.federator.service_annotations,
  )

  advertised_addresses = [for s in var.public_subnet_ids : "${aws_eip.gateway[s].public_ip}:${local.tunnel_port}"]

  # ---- Security-group rules: 15443 from every peer CIDR, UDP (and TCP) ------------------------
  tunnel_protocols = var.expose_tcp_fallback ? ["udp", "tcp"] : ["udp"]
  tunnel_rules = {
    for pair in setproduct(local.tunnel_protocols, var.peer_cidrs) :
    "${pair[0]}-${pair[1]}" => { protocol = pair[0], cidr = pair[1] }
  }
}

# ---------------------------------------------------------------------------------------------
# Elastic IPs: one per public subnet, so the advertised addresses exist before the NLB does.
# ---------------------------------------------------------------------------------------------

resource "aws_eip" "gateway" {
  # checkov:skip=CKV2_AWS_19: the AWS Load Balancer Controller attaches these EIPs to the gateway's NLB (aws-load-balancer-eip-allocations), not to EC2 instances.
  for_each = toset(var.public_subnet_ids)
  domain   = "vpc"
  tags = merge(var.tags, {
    Name                     = "skybridge-gateway-${var.cluster_id}-${each.key}"
    "skybridge.io/cluster"   = var.cluster_id
    "skybridge.io/component" = "gateway"
  })
}

resource "aws_eip" "federator" {
  # checkov:skip=CKV2_AWS_19: the AWS Load Balancer Controller attaches these EIPs to the federator's NLB (aws-load-balancer-eip-allocations), not to EC2 instances.
  for_each = local.federator_static_ips ? toset(var.public_subnet_ids) : toset([])
  domain   = "vpc"
  tags = merge(var.tags, {
    Name                     = "skybridge-federator-${var.cluster_id}-${each.key}"
    "skybridge.io/cluster"   = var.cluster_id
    "skybridge.io/component" = "federator"
  })
}

# ---------------------------------------------------------------------------------------------
# Federator IAM role (IRSA): read-only Cloud Map access for system:serviceaccount:<ns>:skybridge-federator
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "federator_trust" {
  count = local.federator_enabled ? 1 : 0

  statement {
    sid     = "SkybridgeFederatorIrsa"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [coalesce(var.oidc_provider_arn, "missing")]
    }

    condition {
      test     = "StringEquals"
      variable = "${coalesce(local.oidc_issuer, "missing")}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${local.federator_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${coalesce(local.oidc_issuer, "missing")}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "federator_cloudmap" {
  count = local.federator_enabled ? 1 : 0

  statement {
    # ListNamespaces and ListServices do not support resource-level permissions: "*" is the only
    # resource AWS accepts for them (checkov knows this; no skip needed).
    sid       = "CloudMapListNamespacesAndServices"
    effect    = "Allow"
    actions   = ["servicediscovery:ListNamespaces", "servicediscovery:ListServices"]
    resources = ["*"]
  }

  statement {
    sid     = "CloudMapReadInstances"
    effect  = "Allow"
    actions = ["servicediscovery:ListInstances", "servicediscovery:GetInstancesHealthStatus"]
    resources = [
      "arn:${data.aws_partition.current.partition}:servicediscovery:${var.region}:${data.aws_caller_identity.current.account_id}:service/*",
    ]
  }
}

resource "aws_iam_role" "federator" {
  count = local.federator_enabled ? 1 : 0

  name                 = coalesce(var.federator.iam_role_name, substr("skybridge-federator-${var.cluster_id}", 0, 64))
  description          = "Skybridge federator in ${var.cluster_id} (${var.namespace}/${local.federator_service_account}): reads AWS Cloud Map in ${var.region}."
  assume_role_policy   = data.aws_iam_policy_document.federator_trust[0].json
  permissions_boundary = var.federator.iam_permissions_boundary
  max_session_duration = 3600
  tags                 = merge(var.tags, { "skybridge.io/cluster" = var.cluster_id, "skybridge.io/component" = "federator" })

  lifecycle {
    precondition {
      condition     = var.oidc_provider_arn != null && var.oidc_provider_url != null
      error_message = "oidc_provider_arn and oidc_provider_url are required when federator is set (the federator's role is assumed through IRSA)."
    }
    precondition {
      condition     = length(local.sources_toml) > 0
      error_message = "The federator has no catalog source: keep federator.cloudmap_source = true or give federator.extra_sources_toml."
    }
  }
}

resource "aws_iam_role_policy" "federator_cloudmap" {
  count = local.federator_enabled ? 1 : 0

  name   = "skybridge-cloudmap-read"
  role   = aws_iam_role.federator[0].id
  policy = data.aws_iam_policy_document.federator_cloudmap[0].json
}

# ---------------------------------------------------------------------------------------------
# Optional Cloud Map HTTP namespace (API-only discovery; no Route 53 hosted zone)
# ---------------------------------------------------------------------------------------------

resource "aws_service_discovery_http_namespace" "this" {
  count = var.create_cloudmap_namespace ? 1 : 0

  name        = coalesce(var.cloudmap_namespace_name, "missing")
  description = "Services exported to the Skybridge federation from ${var.cluster_id}."
  tags        = var.tags

  lifecycle {
    precondition {
      condition     = var.cloudmap_namespace_name != null
      error_message = "cloudmap_namespace_name is required when create_cloudmap_namespace is true."
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Security-group rules: peers reach the gateway pods on 15443 (NLB ip targets keep the client
# address for UDP, so the pods' security group sees the peers' own addresses).
# ---------------------------------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "tunnel" {
  for_each = local.tunnel_rules

  security_group_id = var.node_security_group_id
  description       = "Skybridge tunnel ${upper(each.value.protocol)} ${local.tunnel_port} from peer gateways ${each.value.cidr} (${var.cluster_id})"
  ip_protocol       = each.value.protocol
  from_port         = local.tunnel_port
  to_port           = local.tunnel_port
  cidr_ipv4         = strcontains(each.value.cidr, ":") ? null : each.value.cidr
  cidr_ipv6         = strcontains(each.value.cidr, ":") ? each.value.cidr : null
  tags              = merge(var.tags, { Name = "skybridge-tunnel-${each.value.protocol}-${var.cluster_id}" })
}

# ---------------------------------------------------------------------------------------------
# Kubernetes objects
# ---------------------------------------------------------------------------------------------

module "manifests" {
  source = "../gateway-manifests"

  cluster_id                  = var.cluster_id
  cloud                       = "aws"
  region                      = var.region
  trust_domain                = var.trust_domain
  image                       = var.image
  namespace                   = var.namespace
  replicas                    = var.replicas
  federator_address           = var.federator_address
  advertised_addresses        = local.advertised_addresses
  tls_secret_name             = var.tls_secret_name
  service_annotations         = local.gateway_service_annotations
  load_balancer_source_ranges = var.peer_cidrs
  expose_tcp_fallback         = var.expose_tcp_fallback
  resources                   = var.gateway_resources
  log_format                  = var.log_format
  otlp_endpoint               = var.otlp_endpoint
  extra_gateway_config        = var.extra_gateway_config

  dns = {
    enabled       = var.dns.enabled
    cluster_ip    = var.dns.cluster_ip
    ttl           = var.dns.ttl
    source_ranges = var.dns.source_ranges
  }

  federator = !local.federator_enabled ? null : {
    sources_toml          = local.sources_toml
    tls_secret_name       = var.federator.tls_secret_name
    api_token_secret_name = var.federator.api_token_secret_name
    service_account_annotations = merge(var.federator.service_account_annotations, {
      "eks.amazonaws.com/role-arn" = aws_iam_role.federator[0].arn
    })
    service_annotations         = local.federator_service_annotations
    load_balancer_source_ranges = var.federator.control_source_ranges
    storage_size                = var.federator.storage_size
    storage_class               = var.federator.storage_class
    cpu_request                 = var.federator.cpu_request
    cpu_limit                   = var.federator.cpu_limit
    memory_request              = var.federator.memory_request
    memory_limit                = var.federator.memory_limit
    extra_config                = var.federator.extra_config
    replicas                    = var.federator.replicas
    etcd                        = var.federator.etcd
  }

  etcd = var.etcd
}

resource "kubernetes_manifest" "namespace" {
  manifest = yamldecode(module.manifests.namespace_manifest)
}

resource "kubernetes_manifest" "objects" {
  for_each = module.manifests.manifests

  manifest = yamldecode(each.value)

  depends_on = [
    kubernetes_manifest.namespace,
    # The federator must not start before its role can read Cloud Map.
    aws_iam_role_policy.federator_cloudmap,
  ]
}

# The manifests module's NetworkPolicy admits the admin port (15021) only from pods in the
# cluster; the NLB health-checks /readyz there from its nodes in the public subnets. Network
# policies are additive, so this one only adds that path (it matters when the VPC CNI or another
# plugin enforces NetworkPolicy).
resource "kubernetes_manifest" "gateway_health_check_policy" {
  manifest = {
    apiVersion = "networking.k8s.io/v1"
    kind       = "NetworkPolicy"
    metadata = {
      name      = "skybridge-gateway-nlb-health-check"
      namespace = var.namespace
      labels    = { "app.kubernetes.io/name" = "skybridge", "app.kubernetes.io/component" = "gateway" }
    }
    spec = {
      # The gateway pods' selector in ../gateway-manifests.
      podSelector = { matchLabels = { "app.kubernetes.io/name" = "skybridge", "app.kubernetes.io/component" = "gateway" } }
      policyTypes = ["Ingress"]
      ingress = [{
        from  = [for s in var.public_subnet_ids : { ipBlock = { cidr = data.aws_subnet.public[s].cidr_block } }]
        ports = [{ port = local.admin_port, protocol = "TCP" }]
      }]
    }
  }

  depends_on = [kubernetes_manifest.namespace]
}

# ---------------------------------------------------------------------------------------------
# Cluster DNS: forward clusterset.local to the gateway's DNS server (dns.forward)
# ---------------------------------------------------------------------------------------------
# EKS's CoreDNS (self-managed, or the managed add-on) reads one key, Corefile, of the ConfigMap
# kube-system/coredns, and its Corefile imports nothing, so the server block must go into that
# text. The module merges it into the live Corefile (between BEGIN/END skybridge markers,
# replacing the block an earlier apply wrote) and writes the key back with server-side apply; the
# Corefile's `reload` plugin picks the change up within a minute or two, without a restart.
# Why not the add-on's configuration_values.corefile: that needs this module to own the
# aws_eks_addon resource, which the cluster's own Terraform (e.g. terraform-aws-modules/eks
# cluster_addons) already owns, and to restate the whole Corefile. Editing the ConfigMap works
# with either kind of CoreDNS and leaves the add-on alone; an add-on update with
# resolve_conflicts_on_update = "OVERWRITE" resets the Corefile, and the next apply merges the
# block again ("PRESERVE" keeps it).
#
# The address: the egress Service's ClusterIP. CoreDNS forwards to addresses, not names. A
# fixed dns.cluster_ip is known at plan time; otherwise it is read from the applied Service
# (kubernetes_manifest's object carries spec.clusterIP), which is unknown until the Service
# exists: on a fresh cluster `terraform plan` shows the Corefile as known after apply, and one
# apply creates the Service and then writes the forward. (The ConfigMap is written with
# kubernetes_config_map_v1_data, which takes values unknown at plan time; kubernetes_manifest
# does not.)

locals {
  dns_forward = var.dns.enabled && var.dns.forward
  dns_forward_address = !local.dns_forward ? null : (
    var.dns.cluster_ip != null ? var.dns.cluster_ip : kubernetes_manifest.objects["Service/${module.manifests.egress_service_name}"].object.spec.clusterIP
  )
}

data "kubernetes_config_map_v1" "coredns" {
  count = local.dns_forward ? 1 : 0

  metadata {
    name      = "coredns"
    namespace = "kube-system"
  }
}

module "dns_forward" {
  count  = local.dns_forward ? 1 : 0
  source = "../gateway-manifests/modules/dns-forward"

  address  = local.dns_forward_address
  corefile = try(data.kubernetes_config_map_v1.coredns[0].data["Corefile"], null)
}

resource "kubernetes_config_map_v1_data" "coredns" {
  count = local.dns_forward ? 1 : 0

  metadata {
    name      = "coredns"
    namespace = "kube-system"
  }
  data = { Corefile = module.dns_forward[0].corefile }
  # The Corefile key belongs to EKS (the add-on) or to whoever created CoreDNS: take it over.
  # A field manager of its own: server-side apply treats one manager's apply as its whole
  # intent, so under the provider's default ("Terraform") it would drop keys another
  # Terraform configuration wrote into the same object.
  force         = true
  field_manager = "skybridge"

  lifecycle {
    # Destroying this resource (terraform destroy, dns.forward = false) would not restore the
    # Corefile: server-side apply removes a key its last manager gives up, and CoreDNS pods
    # started after that fail for want of their config. The README's "Cluster DNS" section
    # gives the safe way out (terraform state rm, then remove the block by hand).
    prevent_destroy = true

    precondition {
      condition     = try(data.kubernetes_config_map_v1.coredns[0].data["Corefile"], null) != null
      error_message = "kube-system/coredns has no Corefile to add the clusterset.local forward to (no CoreDNS in this cluster, e.g. EKS Auto Mode?): set dns.forward = false and forward clusterset.local to the egress Service by other means (docs/deploy/kubernetes.md)."
    }
  }

  # The forward goes in once the Service holds its address.
  depends_on = [kubernetes_manifest.objects]
}
