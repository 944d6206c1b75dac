locals {
  namespace = {
    apiVersion = "v1"
    kind       = "Namespace"
    metadata = {
      name = var.namespace
      # Every pod here meets the "restricted" Pod Security Standard; enforce it.
      labels = merge(local.labels, {
        "pod-security.kubernetes.io/enforce" = "restricted"
        "pod-security.kubernetes.io/warn"    = "restricted"
      })
    }
  }

  gateway_config_checksum = sha256(local.gateway_config)

  gateway_ports = concat(
    [{ name = "tunnel", containerPort = 15443, protocol = "UDP" }],
    var.expose_tcp_fallback ? [{ name = "tunnel-tcp", containerPort = 15443, protocol = "TCP" }] : [],
    [
      { name = "sni", containerPort = 15001, protocol = "TCP" },
      { name = "http", containerPort = 15080, protocol = "TCP" },
      { name = "admin", containerPort = 15021, protocol = "TCP" },
    ],
    # listen.dns: the clusterset.local DNS server, reached through the egress Service's port 53.
    local.dns_enabled ? [
      { name = "dns-udp", containerPort = local.dns_port, protocol = "UDP" },
      { name = "dns-tcp", containerPort = local.dns_port, protocol = "TCP" },
    ] : [],
  )

  gateway_objects = [
    {
      apiVersion                   = "v1"
      kind                         = "ServiceAccount"
      metadata                     = { name = "skybridge-gateway", namespace = var.namespace, labels = local.gateway_labels, annotations = var.service_account_annotations }
      automountServiceAccountToken = false
    },
    {
      apiVersion = "v1"
      kind       = "ConfigMap"
      metadata   = { name = "skybridge-gateway-config", namespace = var.namespace, labels = local.gateway_labels }
      data       = { "gateway.toml" = local.gateway_config }
    },
    {
      apiVersion = "apps/v1"
      kind       = "Deployment"
      metadata = {
        name      = "skybridge-gateway"
        namespace = var.namespace
        labels    = local.gateway_labels
        annotations = {
          "checkov.io/skip1" = "CKV_K8S_43=The image is pinned by the image variable, which accepts repo@sha256:digest; digest pinning is the operator's release choice"
        }
      }
      spec = {
        replicas = var.replicas
        selector = { matchLabels = local.gateway_selector }
        # Surge first: a rollout never has fewer ready gateways than asked for.
        strategy = { type = "RollingUpdate", rollingUpdate = { maxUnavailable = 0, maxSurge = 1 } }
        template = {
          metadata = {
            labels = local.gateway_labels
            annotations = {
              # A config change rolls the pods: the gateway reads its config once at start.
              "skybridge.dev/config-sha256" = local.gateway_config_checksum
              "prometheus.io/scrape"        = "true"
              "prometheus.io/port"          = "15021"
              "prometheus.io/path"          = "/metrics"
            }
          }
          spec = {
            serviceAccountName            = "skybridge-gateway"
            automountServiceAccountToken  = false
            terminationGracePeriodSeconds = local.grace
            securityContext               = local.pod_security
            affinity = {
              podAntiAffinity = {
                preferredDuringSchedulingIgnoredDuringExecution = [{
                  weight          = 100
                  podAffinityTerm = { topologyKey = "kubernetes.io/hostname", labelSelector = { matchLabels = local.gateway_selector } }
                }]
              }
            }
            topologySpreadConstraints = [{
              maxSkew           = 1
              topologyKey       = "topology.kubernetes.io/zone"
              whenUnsatisfiable = "ScheduleAnyway"
              labelSelector     = { matchLabels = local.gateway_selector }
            }]
            containers = [merge(local.probes.gateway, {
              name            = "gateway"
              image           = var.image
              imagePullPolicy = "Always"
              # The gateway-only binary: about 4 MB less resident than `skybridge gateway`
              # (docs/benchmarks.md, "Idle footprint").
              command = ["/usr/local/bin/skybridge-gateway"]
              args    = ["--log-format", var.log_format, "--config", "${local.config_dir}/gateway.toml"]
              env     = [{ name = "SKYBRIDGE_LOG", value = "info" }]
              ports   = local.gateway_ports
              resources = {
                requests = { cpu = var.resources.cpu_request, memory = var.resources.memory_request }
                limits   = { cpu = var.resources.cpu_limit, memory = var.resources.memory_limit }
              }
              securityContext = local.container_security
              volumeMounts = [
                { name = "config", mountPath = local.config_dir, readOnly = true },
                { name = "tls", mountPath = var.tls_mount_path, readOnly = true },
                { name = "tmp", mountPath = "/tmp" },
                { name = "catalog-cache", mountPath = local.cache_dir },
              ]
            })]
            volumes = [
              { name = "config", configMap = { name = "skybridge-gateway-config" } },
              # Re-read every tls.reload_interval: rotating the Secret rotates the certificate.
              { name = "tls", secret = { secretName = var.tls_secret_name, defaultMode = 288 } }, # 0440
              { name = "tmp", emptyDir = { sizeLimit = "16Mi" } },
              # federator.catalog_cache: kept across container restarts, gone with the pod. Room
              # for a catalog far larger than real ones (10,000 services are about 10 MB).
              { name = "catalog-cache", emptyDir = { sizeLimit = "64Mi" } },
            ]
          }
        }
      }
    },
    {
      apiVersion = "policy/v1"
      kind       = "PodDisruptionBudget"
      metadata   = { name = "skybridge-gateway", namespace = var.namespace, labels = local.gateway_labels }
      # One at a time: with two or more replicas a node drain never takes the tunnel down.
      spec = { maxUnavailable = 1, selector = { matchLabels = local.gateway_selector } }
    },
    {
      apiVersion = "v1"
      kind       = "Service"
      metadata = {
        name        = "skybridge-gateway"
        namespace   = var.namespace
        labels      = local.gateway_labels
        annotations = var.service_annotations
      }
      spec = merge(
        {
          type     = "LoadBalancer"
          selector = local.gateway_selector
          # Local: peers' packets reach a gateway pod on the node they arrive at, with their
          # source address intact, and nodes without a gateway fail the LB's health check.
          externalTrafficPolicy = "Local"
          ports = concat(
            [{ name = "tunnel", port = 15443, targetPort = 15443, protocol = "UDP" }],
            var.expose_tcp_fallback ? [{ name = "tunnel-tcp", port = 15443, targetPort = 15443, protocol = "TCP" }] : [],
          )
        },
        var.load_balancer_ip == null ? {} : { loadBalancerIP = var.load_balancer_ip },
        length(var.load_balancer_source_ranges) == 0 ? {} : { loadBalancerSourceRanges = var.load_balancer_source_ranges },
      )
    },
    {
      apiVersion = "v1"
      kind       = "Service"
      metadata   = { name = local.egress_service, namespace = var.namespace, labels = local.gateway_labels }
      spec = merge(
        {
          type     = "ClusterIP"
          selector = local.gateway_selector
          # Clients keep their usual ports; *.svc.clusterset.local resolves here (docs/dns.md).
          ports = concat(
            [
              { name = "tls", port = local.egress_tls_port, targetPort = 15001, protocol = "TCP" },
              { name = "http", port = local.egress_http_port, targetPort = 15080, protocol = "TCP" },
              { name = "admin", port = 15021, targetPort = 15021, protocol = "TCP" },
            ],
            # The cluster DNS forwards clusterset.local to this Service's ClusterIP on port 53.
            local.dns_enabled ? [
              { name = "dns-udp", port = 53, targetPort = local.dns_port, protocol = "UDP" },
              { name = "dns-tcp", port = 53, targetPort = local.dns_port, protocol = "TCP" },
            ] : [],
          )
        },
        # Fixed, so that the forward's address is known before the Service exists (immutable
        # once the Service is created).
        local.dns_enabled && var.dns.cluster_ip != null ? { clusterIP = var.dns.cluster_ip } : {},
      )
    },
    {
      apiVersion = "networking.k8s.io/v1"
      kind       = "NetworkPolicy"
      metadata   = { name = "skybridge-gateway", namespace = var.namespace, labels = local.gateway_labels }
      spec = {
        podSelector = { matchLabels = local.gateway_selector }
        policyTypes = ["Ingress"]
        ingress = concat(
          [
            # The tunnel: peers in other clouds, through the load balancer.
            { ports = [for p in local.gateway_ports : { port = p.containerPort, protocol = p.protocol } if startswith(p.name, "tunnel")] },
            # Egress listeners and admin: workloads (and Prometheus) in this cluster.
            {
              from  = [{ namespaceSelector = {} }]
              ports = [{ port = 15001, protocol = "TCP" }, { port = 15080, protocol = "TCP" }, { port = 15021, protocol = "TCP" }]
            },
          ],
          # DNS: the cluster DNS pods (kube-system) forwarding clusterset.local, and any pod asking
          # directly; node-level resolvers on the host network need dns.source_ranges.
          !local.dns_enabled ? [] : [{
            from  = concat([{ namespaceSelector = {} }], [for c in var.dns.source_ranges : { ipBlock = { cidr = c } }])
            ports = [for p in local.gateway_ports : { port = p.containerPort, protocol = p.protocol } if startswith(p.name, "dns-")]
          }],
        )
      }
    },
  ]
}
