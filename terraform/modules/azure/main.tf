locals {
  fed_enabled = var.federator != null
  fed_pip     = local.fed_enabled ? var.federator.static_public_ip : false

  # "/subscriptions/<sub>/resourceGroups/<rg>" of the resource group the public IPs live in.
  pip_rg_id = join("/", slice(split("/", azurerm_public_ip.gateway.id), 0, 5))

  gateway_address = "${azurerm_public_ip.gateway.ip_address}:15443"

  # Azure cloud-provider annotations (https://cloud-provider-azure.sigs.k8s.io/topics/loadbalancer/):
  # bind the Service to our Standard static public IP by name, in our resource group.
  pip_annotations = {
    "service.beta.kubernetes.io/azure-load-balancer-resource-group" = var.resource_group_name
    "service.beta.kubernetes.io/azure-pip-name"                     = azurerm_public_ip.gateway.name
  }
  # Health probes: the rendered Service uses externalTrafficPolicy: Local, so the cloud provider
  # gives every rule, 15443/UDP included, an HTTP probe of the Service's healthCheckNodePort
  # (kube-proxy answers 200 only on nodes running a gateway pod); no annotation is needed.
  # With Cluster, UDP rules get no probe at all (per-port probe annotations are ignored for
  # UDP) and the TCP twin a TCP connect to its node port; tcp_probe_kube_proxy points that one
  # at kube-proxy's /healthz (node port 10256) instead.
  probe_annotations = var.tcp_probe_kube_proxy && var.expose_tcp_fallback ? {
    "service.beta.kubernetes.io/port_15443_health-probe_protocol"     = "Http"
    "service.beta.kubernetes.io/port_15443_health-probe_port"         = "10256"
    "service.beta.kubernetes.io/port_15443_health-probe_request-path" = "/healthz"
  } : {}
  gateway_service_annotations = merge(local.pip_annotations, local.probe_annotations, var.extra_service_annotations)

  federator_service_annotations = local.fed_pip ? {
    "service.beta.kubernetes.io/azure-load-balancer-resource-group" = var.resource_group_name
    "service.beta.kubernetes.io/azure-pip-name"                     = azurerm_public_ip.federator[0].name
  } : {}

  # ---- the federator's aks-fleet source (docs/sources/azure.md) ----
  fleet_rg_scope = local.fed_enabled ? "/subscriptions/${var.federator.subscription_id}/resourceGroups/${var.federator.resource_group_name}" : null
  fed_scopes     = local.fed_enabled ? distinct(concat([local.fleet_rg_scope], var.federator.member_scopes)) : []
  fed_roles = local.fed_enabled ? compact([
    "Reader",                                                                          # fleets/members/read, managedClusters/read
    "Azure Kubernetes Service Cluster User Role",                                      # listClusterUserCredential (cluster CA)
    var.federator.grant_aks_rbac_reader ? "Azure Kubernetes Service RBAC Reader" : "", # serviceexports, services, endpointslices
  ]) : []
  fed_role_assignments = {
    for pair in setproduct(local.fed_scopes, local.fed_roles) : "${pair[1]}|${pair[0]}" => { scope = pair[0], role = pair[1] }
  }

  fleet_source_toml = local.fed_enabled ? join("\n", compact([
    "[[sources]]",
    "type = \"aks-fleet\"",
    "id = ${jsonencode(var.federator.source_id)}",
    "subscription_id = ${jsonencode(var.federator.subscription_id)}",
    "resource_group = ${jsonencode(var.federator.resource_group_name)}",
    var.federator.fleet_name == null ? "" : "fleet = ${jsonencode(var.federator.fleet_name)}",
    "credential = { kind = \"workload-identity\" }",
    "prefer_private_fqdn = ${var.federator.prefer_private_fqdn}",
    "interval = ${jsonencode(var.federator.interval)}",
  ])) : ""
  sources_toml = local.fed_enabled ? join("\n\n", compact([local.fleet_source_toml, var.federator.extra_sources_toml])) : ""
}

# ---------------------------------------------------------------------------------------------
# Gateway: static public IP for the LoadBalancer Service
# ---------------------------------------------------------------------------------------------

resource "azurerm_public_ip" "gateway" {
  name                = "${var.name_prefix}-gateway-pip"
  resource_group_name = var.resource_group_name
  location            = var.location
  allocation_method   = "Static"
  sku                 = "Standard" # AKS load balancers are Standard; a Basic IP cannot be attached
  zones               = var.public_ip_zones
  tags                = merge(var.tags, { "skybridge/cluster" = var.cluster_id, "skybridge/role" = "gateway" })
}

resource "azurerm_public_ip" "federator" {
  count = local.fed_pip ? 1 : 0

  name                = "${var.name_prefix}-federator-pip"
  resource_group_name = var.resource_group_name
  location            = var.location
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = var.public_ip_zones
  tags                = merge(var.tags, { "skybridge/cluster" = var.cluster_id, "skybridge/role" = "federator" })
}

# The cluster identity manages the LoadBalancer; outside the node resource group it needs
# Network Contributor to read and join the public IPs.
resource "azurerm_role_assignment" "cluster_network_contributor" {
  count = var.cluster_identity_principal_id == null ? 0 : 1

  scope                            = local.pip_rg_id
  role_definition_name             = "Network Contributor"
  principal_id                     = var.cluster_identity_principal_id
  skip_service_principal_aad_check = true
  description                      = "Skybridge: lets the AKS cloud provider attach the gateway/federator public IPs."
}

# ---------------------------------------------------------------------------------------------
# Optional NSG rules on an existing (subnet) NSG
# ---------------------------------------------------------------------------------------------

resource "azurerm_network_security_rule" "tunnel" {
  for_each = var.network_security_group == null ? {} : (var.expose_tcp_fallback ? { Udp = 0, Tcp = 1 } : { Udp = 0 })

  name                        = "skybridge-${var.cluster_id}-tunnel-${lower(each.key)}"
  description                 = "Skybridge QUIC tunnel (15443/${upper(each.key)}) from peer gateways"
  resource_group_name         = var.network_security_group.resource_group_name
  network_security_group_name = var.network_security_group.name
  priority                    = var.network_security_group.priority + each.value
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = each.key
  source_address_prefixes     = var.peer_cidrs
  source_port_range           = "*"
  # AKS load-balancing rules use floating IP: packets reach the nodes addressed to the public
  # IP and the service port, which is what the NSG sees.
  destination_address_prefix = azurerm_public_ip.gateway.ip_address
  destination_port_range     = "15443"
}

resource "azurerm_network_security_rule" "federator_control" {
  count = var.network_security_group != null && local.fed_pip && length(try(var.federator.load_balancer_source_ranges, [])) > 0 ? 1 : 0

  name                        = "skybridge-${var.cluster_id}-federator-control"
  description                 = "Skybridge federator control port (15010/TCP, mTLS) from gateways"
  resource_group_name         = var.network_security_group.resource_group_name
  network_security_group_name = var.network_security_group.name
  priority                    = var.network_security_group.priority + 2
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_address_prefixes     = var.federator.load_balancer_source_ranges
  source_port_range           = "*"
  destination_address_prefix  = azurerm_public_ip.federator[0].ip_address
  destination_port_range      = "15010"
}

# ---------------------------------------------------------------------------------------------
# Federator: user-assigned identity, workload identity federation, roles
# ---------------------------------------------------------------------------------------------

resource "azurerm_user_assigned_identity" "federator" {
  count = local.fed_enabled ? 1 : 0

  name                = "${var.name_prefix}-federator-id"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = var.oidc_issuer_url != null
      error_message = "oidc_issuer_url is required when federator is set (enable oidc_issuer_enabled and workload_identity_enabled on the AKS cluster)."
    }
  }
}

resource "azurerm_federated_identity_credential" "federator" {
  count = local.fed_enabled ? 1 : 0

  name                = "${var.name_prefix}-${var.cluster_id}-federator"
  resource_group_name = var.resource_group_name
  parent_id           = azurerm_user_assigned_identity.federator[0].id
  issuer              = var.oidc_issuer_url
  subject             = "system:serviceaccount:${var.namespace}:${module.manifests.federator_service_account}"
  audience            = ["api://AzureADTokenExchange"]
}

resource "azurerm_role_assignment" "federator" {
  for_each = local.fed_role_assignments

  scope                            = each.value.scope
  role_definition_name             = each.value.role
  principal_id                     = azurerm_user_assigned_identity.federator[0].principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
  description                      = "Skybridge federator: read the fleet and its members' ServiceExports."
}

# ---------------------------------------------------------------------------------------------
# Kubernetes objects
# ---------------------------------------------------------------------------------------------

module "manifests" {
  source = "../gateway-manifests"

  cluster_id           = var.cluster_id
  cloud                = "azure"
  region               = var.location
  trust_domain         = var.trust_domain
  image                = var.image
  namespace            = var.namespace
  replicas             = var.replicas
  federator_address    = var.federator_address
  advertised_addresses = [local.gateway_address]
  tls_secret_name      = var.tls_secret_name
  expose_tcp_fallback  = var.expose_tcp_fallback
  resources            = var.resources
  log_format           = var.log_format
  otlp_endpoint        = var.otlp_endpoint
  extra_gateway_config = var.extra_gateway_config

  # The public IP is bound by name through the annotations (spec.loadBalancerIP is deprecated).
  service_annotations         = local.gateway_service_annotations
  load_balancer_ip            = null
  load_balancer_source_ranges = var.peer_cidrs

  dns = {
    enabled       = var.dns.enabled
    cluster_ip    = var.dns.cluster_ip
    ttl           = var.dns.ttl
    source_ranges = var.dns.source_ranges
  }

  federator = local.fed_enabled ? {
    sources_toml          = local.sources_toml
    tls_secret_name       = var.federator.tls_secret_name
    api_token_secret_name = var.federator.api_token_secret_name
    # AKS workload identity: the webhook injects AZURE_CLIENT_ID, AZURE_TENANT_ID and
    # AZURE_FEDERATED_TOKEN_FILE into pods with this label whose SA carries the client id.
    service_account_annotations = {
      "azure.workload.identity/client-id" = azurerm_user_assigned_identity.federator[0].client_id
    }
    pod_labels = {
      "azure.workload.identity/use" = "true"
    }
    service_annotations         = local.federator_service_annotations
    load_balancer_ip            = null
    load_balancer_source_ranges = var.federator.load_balancer_source_ranges
    storage_size                = var.federator.storage_size
    storage_class               = var.federator.storage_class
    extra_config                = var.federator.extra_config
    replicas                    = var.federator.replicas
    etcd                        = var.federator.etcd
  } : null

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
    azurerm_role_assignment.cluster_network_contributor,
    azurerm_federated_identity_credential.federator,
    azurerm_role_assignment.federator,
  ]
}

# ---------------------------------------------------------------------------------------------
# Cluster DNS: forward clusterset.local to the gateway's DNS server (dns.forward)
# ---------------------------------------------------------------------------------------------
# AKS manages the Corefile; the way it offers to extend CoreDNS is the ConfigMap
# kube-system/coredns-custom (created empty by AKS), whose *.server keys the Corefile imports as
# server blocks. The module writes one key, clusterset.server, with server-side apply, leaving
# the other keys alone. CoreDNS reads imported files only when it starts (its reload plugin
# watches the Corefile itself), so a change of the block rolls the coredns Deployment through
# a pod-template annotation (dns.restart_coredns; AKS's own `kubectl rollout restart` advice).
#
# The address: the egress Service's ClusterIP (CoreDNS forwards to addresses, not names). A
# fixed dns.cluster_ip is known at plan time; otherwise it is read from the applied Service
# (kubernetes_manifest's object carries spec.clusterIP), unknown until the Service exists: on a
# fresh cluster `terraform plan` shows the block as known after apply, and one apply creates
# the Service and then the forward. (kubernetes_config_map_v1_data and kubernetes_annotations
# take values unknown at plan time; kubernetes_manifest does not.)

locals {
  dns_forward = var.dns.enabled && var.dns.forward
  dns_forward_address = !local.dns_forward ? null : (
    var.dns.cluster_ip != null ? var.dns.cluster_ip : kubernetes_manifest.objects["Service/${module.manifests.egress_service_name}"].object.spec.clusterIP
  )
}

module "dns_forward" {
  count  = local.dns_forward ? 1 : 0
  source = "../gateway-manifests/modules/dns-forward"

  address = local.dns_forward_address
}

resource "kubernetes_config_map_v1_data" "coredns_custom" {
  count = local.dns_forward ? 1 : 0

  metadata {
    name      = "coredns-custom"
    namespace = "kube-system"
  }
  # Removing the forward (dns.forward = false, destroy) removes just this key; CoreDNS drops
  # the block at its next start (the README says how to restart it).
  data = module.dns_forward[0].coredns_custom_data
  # A field manager of its own: server-side apply treats one manager's apply as its whole
  # intent, so under the provider's default ("Terraform") it would drop keys another
  # Terraform configuration wrote into the same object.
  force         = true
  field_manager = "skybridge"

  # The forward goes in once the Service holds its address.
  depends_on = [kubernetes_manifest.objects]
}

resource "kubernetes_annotations" "coredns_restart" {
  count = local.dns_forward && var.dns.restart_coredns ? 1 : 0

  api_version = "apps/v1"
  kind        = "Deployment"
  metadata {
    name      = "coredns"
    namespace = "kube-system"
  }
  # A new value rolls the CoreDNS pods (a rolling update), which then import the new
  # clusterset.server.
  template_annotations = {
    "skybridge.dev/clusterset-server-sha256" = sha256(module.dns_forward[0].server_block)
  }
  # A field manager of its own: server-side apply treats one manager's apply as its whole
  # intent, so under the provider's default ("Terraform") it would drop keys another
  # Terraform configuration wrote into the same object.
  force         = true
  field_manager = "skybridge"

  depends_on = [kubernetes_config_map_v1_data.coredns_custom]
}
