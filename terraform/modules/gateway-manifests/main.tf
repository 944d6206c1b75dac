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

  # TOML basic strings share JSON's escapes, so jsonencode quotes any value safely.
  q = { for k, v in {
    cluster      = var.cluster_id
    cloud        = var.cloud
    region       = var.region
    trust_domain = var.trust_domain
    cert         = "${var.tls_mount_path}/cert.pem"
    key          = "${var.tls_mount_path}/key.pem"
    bundle       = "${var.tls_mount_path}/ca.pem"
    federator    = var.federator_address
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
    "",
    "[limits]",
    "drain_deadline = \"${var.drain_deadline_seconds}s\"",
    "",
    "[federator]",
    "address = ${local.q.federator}",
    "tunnel_addresses = ${jsonencode(var.advertised_addresses)}",
    var.otlp_endpoint == null ? null : "\n[telemetry]\notlp_endpoint = ${jsonencode(var.otlp_endpoint)}",
    var.extra_gateway_config,
  ] : l if l != null])

  federator_config = local.fed_enabled ? join("\n", [for l in [
    "# Rendered by terraform/modules/gateway-manifests; reference: docs/federator.md.",
    "[federator]",
    "trust_domain = ${local.q.trust_domain}",
    "data_dir = ${jsonencode(local.data_dir)}",
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
