locals {
  # With the federator off the objects are still built (from these placeholders) and then
  # filtered out: Terraform cannot choose between tuples of different shapes.
  f = var.federator != null ? var.federator : {
    sources_toml                = ""
    tls_secret_name             = "skybridge-federator-tls"
    api_token_secret_name       = null
    service_account_annotations = {}
    pod_labels                  = {}
    service_annotations         = {}
    load_balancer_ip            = null
    load_balancer_source_ranges = []
    storage_size                = "1Gi"
    storage_class               = null
    cpu_request                 = "250m"
    cpu_limit                   = "2"
    memory_request              = "256Mi"
    memory_limit                = "1Gi"
    extra_config                = ""
  }
  federator_text = coalesce(local.federator_config, "disabled")

  federator_objects = [for o in local.federator_all : o if local.fed_enabled]

  federator_all = [
    {
      apiVersion                   = "v1"
      kind                         = "ServiceAccount"
      metadata                     = { name = "skybridge-federator", namespace = var.namespace, labels = local.federator_labels, annotations = local.f.service_account_annotations }
      automountServiceAccountToken = false
    },
    {
      apiVersion = "v1"
      kind       = "ConfigMap"
      metadata   = { name = "skybridge-federator-config", namespace = var.namespace, labels = local.federator_labels }
      data       = { "federator.toml" = local.federator_text }
    },
    {
      apiVersion = "apps/v1"
      kind       = "StatefulSet"
      metadata = {
        name      = "skybridge-federator"
        namespace = var.namespace
        labels    = local.federator_labels
        annotations = {
          "checkov.io/skip1" = "CKV_K8S_43=The image is pinned by the image variable, which accepts repo@sha256:digest; digest pinning is the operator's release choice"
        }
      }
      spec = {
        # One: the embedded store is a single file only one process may open (docs/federator.md).
        replicas    = 1
        serviceName = "skybridge-federator-api"
        selector    = { matchLabels = local.federator_selector }
        template = {
          metadata = {
            labels = merge(local.federator_labels, local.f.pod_labels)
            annotations = {
              "skybridge.dev/config-sha256" = sha256(local.federator_text)
              "prometheus.io/scrape"        = "true"
              "prometheus.io/port"          = "8080"
              "prometheus.io/path"          = "/metrics"
            }
          }
          spec = {
            serviceAccountName            = "skybridge-federator"
            automountServiceAccountToken  = false
            terminationGracePeriodSeconds = 30
            securityContext               = local.pod_security
            containers = [merge(local.probes.federator, {
              name            = "federator"
              image           = var.image
              imagePullPolicy = "Always"
              args            = ["--log-format", var.log_format, "federator", "--config", "${local.config_dir}/federator.toml"]
              env             = [{ name = "SKYBRIDGE_LOG", value = "info" }]
              ports = [
                { name = "control", containerPort = 15010, protocol = "TCP" },
                { name = "api", containerPort = 8080, protocol = "TCP" },
              ]
              resources = {
                requests = { cpu = local.f.cpu_request, memory = local.f.memory_request }
                limits   = { cpu = local.f.cpu_limit, memory = local.f.memory_limit }
              }
              securityContext = local.container_security
              volumeMounts = concat(
                [
                  { name = "config", mountPath = local.config_dir, readOnly = true },
                  { name = "tls", mountPath = var.tls_mount_path, readOnly = true },
                  { name = "data", mountPath = local.data_dir },
                  { name = "tmp", mountPath = "/tmp" },
                ],
                local.f.api_token_secret_name == null ? [] : [{ name = "api-token", mountPath = local.token_dir, readOnly = true }],
              )
            })]
            volumes = concat(
              [
                { name = "config", configMap = { name = "skybridge-federator-config" } },
                { name = "tls", secret = { secretName = local.f.tls_secret_name, defaultMode = 288 } }, # 0440
                { name = "tmp", emptyDir = { sizeLimit = "16Mi" } },
              ],
              local.f.api_token_secret_name == null ? [] : [
                { name = "api-token", secret = { secretName = local.f.api_token_secret_name, defaultMode = 288 } },
              ],
            )
          }
        }
        volumeClaimTemplates = [{
          metadata = { name = "data", labels = local.federator_labels }
          spec = merge(
            { accessModes = ["ReadWriteOnce"], resources = { requests = { storage = local.f.storage_size } } },
            local.f.storage_class == null ? {} : { storageClassName = local.f.storage_class },
          )
        }]
      }
    },
    {
      apiVersion = "v1"
      kind       = "Service"
      metadata = {
        name        = "skybridge-federator"
        namespace   = var.namespace
        labels      = local.federator_labels
        annotations = local.f.service_annotations
      }
      # Gateways in every cloud dial the control port; the API stays inside the cluster.
      spec = merge(
        {
          type     = "LoadBalancer"
          selector = local.federator_selector
          ports    = [{ name = "control", port = 15010, targetPort = 15010, protocol = "TCP" }]
        },
        local.f.load_balancer_ip == null ? {} : { loadBalancerIP = local.f.load_balancer_ip },
        length(local.f.load_balancer_source_ranges) == 0 ? {} : { loadBalancerSourceRanges = local.f.load_balancer_source_ranges },
      )
    },
    {
      apiVersion = "v1"
      kind       = "Service"
      metadata   = { name = "skybridge-federator-api", namespace = var.namespace, labels = local.federator_labels }
      spec = {
        type     = "ClusterIP"
        selector = local.federator_selector
        ports    = [{ name = "api", port = 8080, targetPort = 8080, protocol = "TCP" }]
      }
    },
    {
      apiVersion = "networking.k8s.io/v1"
      kind       = "NetworkPolicy"
      metadata   = { name = "skybridge-federator", namespace = var.namespace, labels = local.federator_labels }
      spec = {
        podSelector = { matchLabels = local.federator_selector }
        policyTypes = ["Ingress"]
        ingress = [
          # Gateways of every cluster (mTLS with gateway identities only).
          { ports = [{ port = 15010, protocol = "TCP" }] },
          # REST API, dashboard and metrics: this cluster only.
          { from = [{ namespaceSelector = {} }], ports = [{ port = 8080, protocol = "TCP" }] },
        ]
      }
    },
  ]
}
