locals {
  labels = {
    "app.kubernetes.io/name"       = "skybridge"
    "app.kubernetes.io/part-of"    = "skybridge"
    "app.kubernetes.io/managed-by" = "terraform"
    "app.kubernetes.io/instance"   = var.cluster_id
  }
  gateway_selector   = { "app.kubernetes.io/name" = "skybridge", "app.kubernetes.io/component" = "gateway" }
  federator_selector = { "app.kubernetes.io/name" = "skybridge", "app.kubernetes.io/component" = "federator" }
  gateway_labels     = merge(local.labels, local.gateway_selector)
  federator_labels   = merge(local.labels, local.federator_selector)

  # 65532 is the distroless "nonroot" user the Dockerfile's runtime image runs as.
  uid         = 65532
  config_dir  = "/etc/skybridge/config"
  token_dir   = "/etc/skybridge/api-token"
  data_dir    = "/var/lib/skybridge"
  grace       = var.drain_deadline_seconds + 15
  fed_enabled = var.federator != null

  # The gateway keeps the last verified catalog here, so that a gateway restarted while no
  # federator answers still routes. The config folder is a read-only ConfigMap mount: the cache
  # lives on an emptyDir, which survives container restarts (the case that matters) but not the
  # pod.
  cache_dir     = "/var/cache/skybridge"
  catalog_cache = "${local.cache_dir}/catalog-cache.pb"

  # ---- Replicated federator on etcd (federator.etcd) -------------------------------------------
  ha             = local.fed_enabled && try(var.federator.etcd, null) != null
  fed_etcd       = local.ha ? var.federator.etcd : null
  fed_replicas   = local.ha ? coalesce(var.federator.replicas, 3) : 1
  etcd_tls_dir   = "/etc/skybridge/etcd"
  etcd_auth_dir  = "/etc/skybridge/etcd-auth"
  etcd_tls       = local.ha && try(local.fed_etcd.tls_secret_name, null) != null
  etcd_auth      = local.ha && try(local.fed_etcd.password_secret_name, null) != null
  etcd_endpoints = !local.ha ? [] : local.fed_etcd.endpoints != null ? local.fed_etcd.endpoints : local.bundled_etcd_endpoints
  # Gateways in this cluster dial the replicas directly through a headless Service: DNS answers
  # every ready replica, and a gateway whose stream breaks reconnects to another one. Gateways
  # in other clusters keep dialling the LoadBalancer (their federator_address).
  federator_control_headless = "skybridge-federator-control"
  gateway_federator_address  = local.ha ? "${local.federator_control_headless}.${var.namespace}.svc.${var.cluster_domain}:15010" : var.federator_address

  # ---- DNS for clusterset.local (var.dns; docs/dns.md) -----------------------------------------
  # The egress Service's ports: clients dial these, so SRV records give them (dns.tls_port and
  # dns.http_port) rather than the listeners' own 15001 and 15080.
  egress_service   = "skybridge-egress"
  egress_tls_port  = 443
  egress_http_port = 80
  dns_enabled      = var.dns.enabled
  dns_port         = 15053 # listen.dns, UDP and TCP; the egress Service exposes it as 53
  # A/AAAA answers give the egress Service, by name: the gateway resolves it at start and every
  # dns.resolve_interval, so the answers follow the Service's ClusterIP whatever it is.
  dns_answer = "${local.egress_service}.${var.namespace}.svc.${var.cluster_domain}"
  dns_config = !local.dns_enabled ? null : join("\n", [
    "",
    "[dns]",
    "answer = ${jsonencode([local.dns_answer])}",
    "ttl = ${jsonencode(var.dns.ttl)}",
    "tls_port = ${local.egress_tls_port}",
    "http_port = ${local.egress_http_port}",
  ])

  # TOML basic strings share JSON's escapes, so jsonencode quotes any value safely.
  q = { for k, v in {
    cluster      = var.cluster_id
    cloud        = var.cloud
    region       = var.region
    trust_domain = var.trust_domain
    cert         = "${var.tls_mount_path}/cert.pem"
    key          = "${var.tls_mount_path}/key.pem"
    bundle       = "${var.tls_mount_path}/ca.pem"
    federator    = local.gateway_federator_address
    cache        = local.catalog_cache
  } : k => jsonencode(v) }

  gateway_config = join("\n", [for l in [
    "# Rendered by terraform/modules/gateway-manifests; reference: docs/operations.md.",
    "[gateway]",
    "cluster = ${local.q.cluster}",
    "cloud = ${local.q.cloud}",
    "region = ${local.q.region}",
    "trust_domain = ${local.q.trust_domain}",
    "",
    "[tls]",
    "cert = ${local.q.cert}",
    "key = ${local.q.key}",
    "trust_bundle = ${local.q.bundle}",
    "",
    "[listen]",
    "tunnel = \"0.0.0.0:15443\"",
    "sni = \"0.0.0.0:15001\"",
    "http = \"0.0.0.0:15080\"",
    "admin = \"0.0.0.0:15021\"",
    local.dns_enabled ? "dns = \"0.0.0.0:${local.dns_port}\"" : null,
    local.dns_config,
    "",
    "[limits]",
    "drain_deadline = \"${var.drain_deadline_seconds}s\"",
    "",
    "[federator]",
    "address = ${local.q.federator}",
    "tunnel_addresses = ${jsonencode(var.advertised_addresses)}",
    "catalog_cache = ${local.q.cache}",
    var.otlp_endpoint == null ? null : "\n[telemetry]\notlp_endpoint = ${jsonencode(var.otlp_endpoint)}",
    var.extra_gateway_config,
  ] : l if l != null])

  federator_config = local.fed_enabled ? join("\n", [for l in [
    "# Rendered by terraform/modules/gateway-manifests; reference: docs/federator.md.",
    "[federator]",
    "trust_domain = ${local.q.trust_domain}",
    # No data_dir with etcd: the state is there. Each replica's name defaults to its pod name.
    local.ha ? null : "data_dir = ${jsonencode(local.data_dir)}",
    local.f.gateway_expiry == null ? null : "gateway_expiry = ${jsonencode(local.f.gateway_expiry)}",
    local.ha ? local.store_config : null,
    "",
    "[tls]",
    "cert = ${local.q.cert}",
    "key = ${local.q.key}",
    "trust_bundle = ${local.q.bundle}",
    "",
    "[listen]",
    "control = \"0.0.0.0:15010\"",
    "api = \"0.0.0.0:8080\"",
    local.f.api_token_secret_name == null ? null : "\n[api]\ntoken_file = ${jsonencode("${local.token_dir}/token")}",
    "",
    local.f.sources_toml,
    local.f.extra_config,
  ] : l if l != null]) : null

  store_config = !local.ha ? null : join("\n", [for l in [
    "",
    "[store]",
    "backend = \"etcd\"",
    "endpoints = [\n${join("", [for e in local.etcd_endpoints : "  ${jsonencode(e)},\n"])}]",
    "prefix = ${jsonencode(local.fed_etcd.prefix)}",
    "lease_ttl = ${jsonencode(local.fed_etcd.lease_ttl)}",
    !local.etcd_tls ? null : (local.fed_etcd.tls_client_cert
      ? "tls = { ca = ${jsonencode("${local.etcd_tls_dir}/ca.pem")}, cert = ${jsonencode("${local.etcd_tls_dir}/cert.pem")}, key = ${jsonencode("${local.etcd_tls_dir}/key.pem")} }"
      : "tls = { ca = ${jsonencode("${local.etcd_tls_dir}/ca.pem")} }"
    ),
    !local.etcd_auth ? null : "username = ${jsonencode(local.fed_etcd.username)}",
    !local.etcd_auth ? null : "password_file = ${jsonencode("${local.etcd_auth_dir}/password")}",
  ] : l if l != null])

  # What every skybridge container gets: no privileges, nothing writable but /tmp and data.
  container_security = {
    runAsNonRoot             = true
    runAsUser                = local.uid
    runAsGroup               = local.uid
    allowPrivilegeEscalation = false
    readOnlyRootFilesystem   = true
    privileged               = false
    capabilities             = { drop = ["ALL"] }
    seccompProfile           = { type = "RuntimeDefault" }
  }
  pod_security = {
    runAsNonRoot   = true
    runAsUser      = local.uid
    runAsGroup     = local.uid
    fsGroup        = local.uid
    seccompProfile = { type = "RuntimeDefault" }
  }
  probes = {
    for port, path in { "15021" = "gateway", "8080" = "federator" } : path => {
      readinessProbe            = { httpGet = { path = "/readyz", port = tonumber(port) }, periodSeconds = 5, failureThreshold = 2 }
      livenessProbe             = { httpGet = { path = "/healthz", port = tonumber(port) }, periodSeconds = 10, failureThreshold = 3 }
      startupProbe              = { httpGet = { path = "/healthz", port = tonumber(port) }, periodSeconds = 2, failureThreshold = 30 }
    }
  }
}
