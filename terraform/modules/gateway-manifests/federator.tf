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
    gateway_expiry              = null
    replicas                    = null
    etcd                        = null
  }
  federator_text = coalesce(local.federator_config, "disabled")

  federator_objects = [for o in local.federator_all : o if local.fed_enabled]

  # The pod is the same with either store; only the data volume (embedded) or the etcd client
  # secrets (etcd) differ.
  federator_pod_metadata = {
    labels = merge(local.federator_labels, local.f.pod_labels)
    annotations = {
      "skybridge.dev/config-sha256" = sha256(local.federator_text)
      "prometheus.io/scrape"        = "true"
      "prometheus.io/port"          = "8080"
      "prometheus.io/path"          = "/metrics"
    }
  }
  federator_container = merge(local.probes.federator, {
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
      ],
      local.ha ? [] : [{ name = "data", mountPath = local.data_dir }],
      [{ name = "tmp", mountPath = "/tmp" }],
      local.f.api_token_secret_name == null ? [] : [{ name = "api-token", mountPath = local.token_dir, readOnly = true }],
      local.etcd_tls ? [{ name = "etcd-tls", mountPath = local.etcd_tls_dir, readOnly = true }] : [],
      local.etcd_auth ? [{ name = "etcd-auth", mountPath = local.etcd_auth_dir, readOnly = true }] : [],
    )
  })
  federator_pod_spec = {
    serviceAccountName            = "skybridge-federator"
    automountServiceAccountToken  = false
    terminationGracePeriodSeconds = 30
    securityContext               = local.pod_security
    containers                    = [local.federator_container]
    volumes = concat(
      [
        { name = "config", configMap = { name = "skybridge-federator-config" } },
        { name = "tls", secret = { secretName = local.f.tls_secret_name, defaultMode = 288 } }, # 0440
        { name = "tmp", emptyDir = { sizeLimit = "16Mi" } },
      ],
      local.f.api_token_secret_name == null ? [] : [
        { name = "api-token", secret = { secretName = local.f.api_token_secret_name, defaultMode = 288 } },
      ],
      local.etcd_tls ? [{ name = "etcd-tls", secret = { secretName = local.fed_etcd.tls_secret_name, defaultMode = 288 } }] : [],
      local.etcd_auth ? [{ name = "etcd-auth", secret = { secretName = local.fed_etcd.password_secret_name, defaultMode = 288 } }] : [],
    )
  }

  federator_all = concat(
    [
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
    ],
    # Embedded store: one pod with its volume. (Filtered rather than chosen with a conditional:
    # Terraform cannot choose between tuples of different shapes.)
    [for o in [local.federator_statefulset] : o if !local.ha],
    # etcd: replicas, a disruption budget, and the headless Service this cluster's gateways dial.
    [for o in local.federator_ha_objects : o if local.ha],
    [
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
    ],
  )

  federator_statefulset = {
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
        metadata = local.federator_pod_metadata
        spec     = local.federator_pod_spec
      }
      volumeClaimTemplates = [{
        metadata = { name = "data", labels = local.federator_labels }
        spec = merge(
          { accessModes = ["ReadWriteOnce"], resources = { requests = { storage = local.f.storage_size } } },
          local.f.storage_class == null ? {} : { storageClassName = local.f.storage_class },
        )
      }]
    }
  }

  federator_ha_objects = [
    {
      apiVersion = "apps/v1"
      kind       = "Deployment"
      metadata = {
        name      = "skybridge-federator"
        namespace = var.namespace
        labels    = local.federator_labels
        annotations = {
          "checkov.io/skip1" = "CKV_K8S_43=The image is pinned by the image variable, which accepts repo@sha256:digest; digest pinning is the operator's release choice"
        }
      }
      spec = {
        # No volume: the state is in etcd. Every replica serves gateways and the API; the one
        # holding the etcd lease runs the sources (docs/federator.md).
        replicas = local.fed_replicas
        selector = { matchLabels = local.federator_selector }
        # Surge first: a rollout never has fewer ready replicas than asked for.
        strategy = { type = "RollingUpdate", rollingUpdate = { maxUnavailable = 0, maxSurge = 1 } }
        template = {
          metadata = local.federator_pod_metadata
          spec = merge(local.federator_pod_spec, {
            # Preferred, not required, anti-affinity by node, plus a zone spread: the replicas are
            # interchangeable and stateless, so two on one node cost less than one left Pending
            # (a cluster with fewer nodes than replicas, or the surge pod of a rollout, which a
            # required rule would block on a cluster with exactly `replicas` nodes). The
            # scheduler still places them apart whenever it can. The bundled etcd, whose quorum
            # two members on one node would put at risk, uses a required rule (etcd.tf).
            affinity = {
              podAntiAffinity = {
                preferredDuringSchedulingIgnoredDuringExecution = [{
                  weight          = 100
                  podAffinityTerm = { topologyKey = "kubernetes.io/hostname", labelSelector = { matchLabels = local.federator_selector } }
                }]
              }
            }
            topologySpreadConstraints = [{
              maxSkew           = 1
              topologyKey       = "topology.kubernetes.io/zone"
              whenUnsatisfiable = "ScheduleAnyway"
              labelSelector     = { matchLabels = local.federator_selector }
            }]
          })
        }
      }
    },
    {
      apiVersion = "policy/v1"
      kind       = "PodDisruptionBudget"
      metadata   = { name = "skybridge-federator", namespace = var.namespace, labels = local.federator_labels }
      # One at a time: node drains leave the others serving (and electing a leader).
      spec = { maxUnavailable = 1, selector = { matchLabels = local.federator_selector } }
    },
    {
      apiVersion = "v1"
      kind       = "Service"
      metadata   = { name = local.federator_control_headless, namespace = var.namespace, labels = local.federator_labels }
      # Headless: DNS returns every ready replica to this cluster's gateways (gateway_config).
      spec = {
        clusterIP = "None"
        selector  = local.federator_selector
        ports     = [{ name = "control", port = 15010, targetPort = 15010, protocol = "TCP" }]
      }
    },
  ]
}
