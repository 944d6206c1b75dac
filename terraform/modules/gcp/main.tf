locals {
  cluster_location  = coalesce(var.cluster_location, var.region)
  fleet_project     = coalesce(var.fleet_project_id, var.project_id)
  network_project   = coalesce(var.network_project_id, var.project_id)
  membership_id     = coalesce(var.membership_id, var.cluster_id)
  federator_enabled = var.federator != null

  # Google resource names are at most 63 characters; leave room for the suffixes below.
  base_name = trimsuffix(substr("${var.name_prefix}-${var.cluster_id}", 0, 50), "-")

  # GKE L4 load balancer annotations (docs: "GKE LoadBalancer Service parameters"):
  #  - cloud.google.com/l4-rbs = enabled: a backend service-based external passthrough Network
  #    Load Balancer (GKE 1.25.5+). Required for a mixed-protocol (UDP+TCP on 15443) Service,
  #    which GKE supports on clusters created at 1.34.1-gke.2190000 or later.
  #  - cloud.google.com/network-tier must match the reserved address's tier.
  lb_annotations = {
    "cloud.google.com/l4-rbs"       = "enabled"
    "cloud.google.com/network-tier" = var.network_tier == "PREMIUM" ? "Premium" : "Standard"
  }

  gateway_address = "${google_compute_address.gateway.address}:15443"
  federator_address = var.federator_address != null ? var.federator_address : (
    local.federator_enabled ? "${google_compute_address.federator[0].address}:15010" : null
  )

  # Computed from known strings, not read from google_service_account, so that the manifests
  # (and their kubernetes_manifest resources) do not hold a value unknown at plan time.
  federator_gsa_email = local.federator_enabled ? "${var.federator.google_service_account_id}@${var.project_id}.iam.gserviceaccount.com" : null

  federator_roles = local.federator_enabled ? toset(["roles/gkehub.viewer", "roles/gkehub.gatewayReader"]) : toset([])

  # The gke-fleet [[sources]] table (docs/sources/gcp.md). jsonencode gives TOML-compatible
  # basic strings and inline arrays.
  fleet_source_toml = !local.federator_enabled ? "" : join("\n", concat(
    [
      "[[sources]]",
      "type = \"gke-fleet\"",
      "id = ${jsonencode(var.federator.source_id)}",
      "project = ${jsonencode(local.fleet_project)}",
      "location = ${jsonencode(var.federator.fleet_location)}",
      "export_apis = ${jsonencode(var.federator.export_apis)}",
      "rediscover = ${jsonencode(var.federator.rediscover)}",
    ],
    flatten([
      for c in var.federator.clusters : concat(
        ["", "[[sources.clusters]]", "membership = ${jsonencode(c.membership)}"],
        c.cluster == null ? [] : ["cluster = ${jsonencode(c.cluster)}"],
        c.server == null ? [] : ["server = ${jsonencode(c.server)}"],
        c.ca_file == null ? [] : ["ca_file = ${jsonencode(c.ca_file)}"],
      )
    ]),
    [""],
  ))

  sources_toml = !local.federator_enabled ? "" : (
    trimspace(var.federator.extra_sources_toml) == "" ? local.fleet_source_toml : "${local.fleet_source_toml}\n${trimspace(var.federator.extra_sources_toml)}\n"
  )

  fleet_readers = distinct(concat(var.fleet_reader_identities, local.federator_enabled ? [local.federator_gsa_email] : []))
}

# ---------------------------------------------------------------------------------------------
# Static addresses
# ---------------------------------------------------------------------------------------------

resource "google_compute_address" "gateway" {
  project      = var.project_id
  region       = var.region
  name         = "${local.base_name}-gateway"
  description  = "Skybridge gateway tunnel (15443) of cluster ${var.cluster_id}"
  address_type = "EXTERNAL"
  network_tier = var.network_tier

  lifecycle {
    precondition {
      condition     = var.federator != null || var.federator_address != null
      error_message = "federator_address is required when this module does not run the federator (var.federator = null)."
    }
  }
}

resource "google_compute_address" "federator" {
  count = local.federator_enabled ? 1 : 0

  project      = var.project_id
  region       = var.region
  name         = "${local.base_name}-federator"
  description  = "Skybridge federator control port (15010), federation ${var.trust_domain}"
  address_type = "EXTERNAL"
  network_tier = var.network_tier
}

# ---------------------------------------------------------------------------------------------
# Firewall: peers -> nodes on the tunnel port, gateways -> nodes on the control port.
# A passthrough load balancer keeps the packet's destination (the address, port 15443) and
# source (the peer), so the rule is written against the service port and the peers' CIDRs.
# GKE adds its own k8s-fw-* rule from loadBalancerSourceRanges; this one is logged and
# survives Service re-creation.
# ---------------------------------------------------------------------------------------------

resource "google_compute_firewall" "tunnel" {
  project     = local.network_project
  name        = "${local.base_name}-tunnel"
  description = "Skybridge: peer gateways to the QUIC tunnel (15443/udp, TCP fallback) of cluster ${var.cluster_id}"
  network     = var.network
  direction   = "INGRESS"
  priority    = 1000

  source_ranges = var.peer_cidrs
  target_tags   = var.node_target_tags

  allow {
    protocol = "udp"
    ports    = ["15443"]
  }

  dynamic "allow" {
    for_each = var.expose_tcp_fallback ? [1] : []
    content {
      protocol = "tcp"
      ports    = ["15443"]
    }
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "federator_control" {
  count = local.federator_enabled ? 1 : 0

  project     = local.network_project
  name        = "${local.base_name}-control"
  description = "Skybridge: gateways to the federator control port (15010/tcp, mTLS)"
  network     = var.network
  direction   = "INGRESS"
  priority    = 1000

  source_ranges = var.federator.control_source_ranges
  target_tags   = var.node_target_tags

  allow {
    protocol = "tcp"
    ports    = ["15010"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# ---------------------------------------------------------------------------------------------
# Federator identity: a Google service account reached through GKE Workload Identity
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "federator" {
  count = local.federator_enabled ? 1 : 0

  project      = var.project_id
  account_id   = var.federator.google_service_account_id
  display_name = "Skybridge federator"
  description  = "Reads the GKE fleet (memberships, connect gateway) for the Skybridge federator in ${var.cluster_id}/${var.namespace}"
}

resource "google_project_iam_member" "federator" {
  for_each = local.federator_roles

  project = local.fleet_project
  role    = each.value
  member  = "serviceAccount:${google_service_account.federator[0].email}"
}

resource "google_service_account_iam_member" "federator_workload_identity" {
  count = local.federator_enabled ? 1 : 0

  service_account_id = google_service_account.federator[0].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${module.manifests.namespace}/${module.manifests.federator_service_account}]"
}

# ---------------------------------------------------------------------------------------------
# Fleet membership and Multi-Cluster Services (optional)
# ---------------------------------------------------------------------------------------------

resource "google_gke_hub_membership" "this" {
  count = var.register_fleet_membership ? 1 : 0

  project       = local.fleet_project
  membership_id = local.membership_id

  endpoint {
    gke_cluster {
      resource_link = "//container.googleapis.com/projects/${var.project_id}/locations/${local.cluster_location}/clusters/${var.cluster_name}"
    }
  }

  # Fleet Workload Identity for workloads of this cluster.
  authority {
    issuer = "https://container.googleapis.com/v1/projects/${var.project_id}/locations/${local.cluster_location}/clusters/${var.cluster_name}"
  }
}

resource "google_gke_hub_feature" "multicluster_services" {
  count = var.enable_multicluster_services ? 1 : 0

  project  = local.fleet_project
  name     = "multiclusterservicediscovery"
  location = "global"
}

# The MCS importer reads the VPC to program endpoints (GKE MCS setup guide).
resource "google_project_iam_member" "mcs_importer" {
  count = var.enable_multicluster_services ? 1 : 0

  project = local.fleet_project
  role    = "roles/compute.networkViewer"
  member  = "serviceAccount:${local.fleet_project}.svc.id.goog[gke-mcs/gke-mcs-importer]"
}

# ---------------------------------------------------------------------------------------------
# Kubernetes objects
# ---------------------------------------------------------------------------------------------

module "manifests" {
  source = "../gateway-manifests"

  cluster_id   = var.cluster_id
  cloud        = "gcp"
  region       = var.region
  trust_domain = var.trust_domain
  image        = var.image
  namespace    = var.namespace
  replicas     = var.replicas

  federator_address    = local.federator_address
  advertised_addresses = [local.gateway_address]
  tls_secret_name      = var.tls_secret_name

  service_annotations         = merge(local.lb_annotations, var.gateway_service_annotations)
  load_balancer_ip            = google_compute_address.gateway.address
  load_balancer_source_ranges = var.peer_cidrs
  expose_tcp_fallback         = var.expose_tcp_fallback

  resources            = var.resources
  log_format           = var.log_format
  otlp_endpoint        = var.otlp_endpoint
  extra_gateway_config = var.extra_gateway_config

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
    service_account_annotations = {
      "iam.gke.io/gcp-service-account" = local.federator_gsa_email
    }
    pod_labels                  = var.federator.pod_labels
    service_annotations         = merge(local.lb_annotations, var.federator.service_annotations)
    load_balancer_ip            = google_compute_address.federator[0].address
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

  depends_on = [kubernetes_manifest.namespace]
}

# ---------------------------------------------------------------------------------------------
# Cluster DNS: forward clusterset.local to the gateway's DNS server (dns.forward)
# ---------------------------------------------------------------------------------------------
# GKE's kube-dns takes per-domain name servers from the stubDomains key of the ConfigMap
# kube-system/kube-dns (GKE creates it empty and leaves edits alone: addonmanager mode
# EnsureExists) and applies a change without a restart. The module adds clusterset.local to the
# stub domains already there and writes the key back with server-side apply. Cloud DNS for GKE
# does not forward to a ClusterIP; the README shows its equivalent.
#
# The address: the egress Service's ClusterIP (kube-dns forwards to addresses, not names). A
# fixed dns.cluster_ip is known at plan time; otherwise it is read from the applied Service
# (kubernetes_manifest's object carries spec.clusterIP), unknown until the Service exists: on a
# fresh cluster `terraform plan` shows stubDomains as known after apply, and one apply creates
# the Service and then the stub domain. (kubernetes_config_map_v1_data takes values unknown at
# plan time; kubernetes_manifest does not.)

locals {
  dns_forward = var.dns.enabled && var.dns.forward
  dns_forward_address = !local.dns_forward ? null : (
    var.dns.cluster_ip != null ? var.dns.cluster_ip : kubernetes_manifest.objects["Service/${module.manifests.egress_service_name}"].object.spec.clusterIP
  )
}

data "kubernetes_config_map_v1" "kube_dns" {
  count = local.dns_forward ? 1 : 0

  metadata {
    name      = "kube-dns"
    namespace = "kube-system"
  }
}

module "dns_forward" {
  count  = local.dns_forward ? 1 : 0
  source = "../gateway-manifests/modules/dns-forward"

  address      = local.dns_forward_address
  stub_domains = try(data.kubernetes_config_map_v1.kube_dns[0].data["stubDomains"], null)
}

resource "kubernetes_config_map_v1_data" "kube_dns" {
  count = local.dns_forward ? 1 : 0

  metadata {
    name      = "kube-dns"
    namespace = "kube-system"
  }
  # Other stub domains in the key are kept. Destroying this resource (dns.forward = false)
  # removes the whole stubDomains key, theirs too: server-side apply removes a key its last
  # manager gives up.
  data = { stubDomains = module.dns_forward[0].stub_domains }
  # A field manager of its own: server-side apply treats one manager's apply as its whole
  # intent, so under the provider's default ("Terraform") it would drop keys another
  # Terraform configuration wrote into the same object.
  force         = true
  field_manager = "skybridge"

  # The forward goes in once the Service holds its address.
  depends_on = [kubernetes_manifest.objects]
}

# Read-only access for federators reading this cluster through the connect gateway: the
# connect gateway presents the caller's Google identity to the API server as a User.
resource "kubernetes_manifest" "fleet_reader_role" {
  count = length(local.fleet_readers) > 0 ? 1 : 0

  manifest = {
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "ClusterRole"
    metadata = {
      name   = "skybridge-fleet-reader"
      labels = { "app.kubernetes.io/part-of" = "skybridge" }
    }
    rules = [
      {
        apiGroups = ["net.gke.io", "multicluster.x-k8s.io"]
        resources = ["serviceexports"]
        verbs     = ["get", "list", "watch"]
      },
      {
        apiGroups = [""]
        resources = ["services"]
        verbs     = ["get", "list", "watch"]
      },
      {
        apiGroups = ["discovery.k8s.io"]
        resources = ["endpointslices"]
        verbs     = ["get", "list", "watch"]
      },
    ]
  }
}

resource "kubernetes_manifest" "fleet_reader_binding" {
  count = length(local.fleet_readers) > 0 ? 1 : 0

  manifest = {
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "ClusterRoleBinding"
    metadata = {
      name   = "skybridge-fleet-reader"
      labels = { "app.kubernetes.io/part-of" = "skybridge" }
    }
    roleRef = {
      apiGroup = "rbac.authorization.k8s.io"
      kind     = "ClusterRole"
      name     = "skybridge-fleet-reader"
    }
    subjects = [for e in local.fleet_readers : {
      apiGroup = "rbac.authorization.k8s.io"
      kind     = "User"
      name     = e
    }]
  }

  depends_on = [kubernetes_manifest.fleet_reader_role]
}
