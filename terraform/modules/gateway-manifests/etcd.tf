# The bundled etcd (var.etcd) for the replicated federator: for teams without an etcd of their
# own. Members are named by the StatefulSet (skybridge-etcd-0, -1, ...) and find each other
# through the headless Service; the cluster is bootstrapped once (--initial-cluster-state new)
# and afterwards each member starts from its own volume. docs/deploy/kubernetes.md covers TLS,
# backups and replacing a member.
locals {
  etcd_enabled  = var.etcd != null
  etcd_selector = { "app.kubernetes.io/name" = "skybridge", "app.kubernetes.io/component" = "etcd" }
  etcd_labels   = merge(local.labels, local.etcd_selector)

  # With etcd off the objects are still built (from these placeholders) and then filtered out.
  e = var.etcd != null ? var.etcd : {
    image           = "registry.k8s.io/etcd:3.5.16-0"
    members         = 3
    tls_secret_name = null
    storage_size    = "8Gi"
    storage_class   = null
    cpu_request     = "100m"
    cpu_limit       = "1"
    memory_request  = "256Mi"
    memory_limit    = "1Gi"
    extra_args      = []
  }

  etcd_member_tls = local.e.tls_secret_name != null
  etcd_scheme     = local.etcd_member_tls ? "https" : "http"
  etcd_service    = "skybridge-etcd"
  etcd_domain     = "${local.etcd_service}.${var.namespace}.svc.${var.cluster_domain}"
  etcd_members    = [for i in range(local.e.members) : "${local.etcd_service}-${i}"]
  etcd_data       = "/var/lib/etcd"
  etcd_certs      = "/etc/etcd/tls"

  # The federator's endpoints: every member by its stable name (not the client Service, whose
  # endpoints empty out when the members lose quorum and fail readiness).
  bundled_etcd_endpoints = local.etcd_enabled ? [for m in local.etcd_members : "${local.etcd_scheme}://${m}.${local.etcd_domain}:2379"] : []
  etcd_initial_cluster   = join(",", [for m in local.etcd_members : "${m}=${local.etcd_scheme}://${m}.${local.etcd_domain}:2380"])

  # Kubernetes expands $(POD_NAME) in the command from the container's env. The image has no
  # shell, so every flag is spelled out here.
  etcd_command = concat(
    [
      "etcd",
      "--name=$(POD_NAME)",
      # A folder below the mount: etcd creates it 0700, as it wants its data directory.
      "--data-dir=${local.etcd_data}/data",
      "--listen-client-urls=${local.etcd_scheme}://0.0.0.0:2379",
      "--advertise-client-urls=${local.etcd_scheme}://$(POD_NAME).${local.etcd_domain}:2379",
      "--listen-peer-urls=${local.etcd_scheme}://0.0.0.0:2380",
      "--initial-advertise-peer-urls=${local.etcd_scheme}://$(POD_NAME).${local.etcd_domain}:2380",
      "--initial-cluster=${local.etcd_initial_cluster}",
      # Only read on a member's first start (empty volume); afterwards its data says who it is.
      "--initial-cluster-state=new",
      "--initial-cluster-token=skybridge-etcd-${var.namespace}",
      # Health and metrics only (/livez, /readyz, /metrics), plain HTTP for the kubelet's probes.
      "--listen-metrics-urls=http://0.0.0.0:2381",
      # The federator keeps no history in etcd: compact hourly so the database stays small.
      "--auto-compaction-mode=periodic",
      "--auto-compaction-retention=1h",
    ],
    local.etcd_member_tls ? [
      # Clients (the federator) and peers must present a certificate from the same CA.
      "--cert-file=${local.etcd_certs}/cert.pem",
      "--key-file=${local.etcd_certs}/key.pem",
      "--trusted-ca-file=${local.etcd_certs}/ca.pem",
      "--client-cert-auth=true",
      "--peer-cert-file=${local.etcd_certs}/cert.pem",
      "--peer-key-file=${local.etcd_certs}/key.pem",
      "--peer-trusted-ca-file=${local.etcd_certs}/ca.pem",
      "--peer-client-cert-auth=true",
    ] : [],
    local.e.extra_args,
  )

  etcd_objects = [for o in local.etcd_all : o if local.etcd_enabled]

  etcd_all = [
    {
      apiVersion                   = "v1"
      kind                         = "ServiceAccount"
      metadata                     = { name = local.etcd_service, namespace = var.namespace, labels = local.etcd_labels }
      automountServiceAccountToken = false
    },
    {
      apiVersion = "v1"
      kind       = "Service"
      metadata   = { name = local.etcd_service, namespace = var.namespace, labels = local.etcd_labels }
      # Headless, for the members' stable names. Not-ready members are published too: members
      # must find each other to form a quorum before any of them is ready.
      spec = {
        clusterIP                = "None"
        publishNotReadyAddresses = true
        selector                 = local.etcd_selector
        ports = [
          { name = "client", port = 2379, targetPort = 2379, protocol = "TCP" },
          { name = "peer", port = 2380, targetPort = 2380, protocol = "TCP" },
        ]
      }
    },
    {
      apiVersion = "v1"
      kind       = "Service"
      metadata   = { name = "${local.etcd_service}-client", namespace = var.namespace, labels = local.etcd_labels }
      # For etcdctl and tools; the federator dials the members by name.
      spec = {
        type     = "ClusterIP"
        selector = local.etcd_selector
        ports    = [{ name = "client", port = 2379, targetPort = 2379, protocol = "TCP" }]
      }
    },
    {
      apiVersion = "apps/v1"
      kind       = "StatefulSet"
      metadata = {
        name      = local.etcd_service
        namespace = var.namespace
        labels    = local.etcd_labels
        annotations = merge(
          {
            "checkov.io/skip1" = "CKV_K8S_43=The image is pinned by the etcd.image variable, which accepts repo@sha256:digest; digest pinning is the operator's release choice"
          },
          # Without etcd.tls_secret_name the members speak plain HTTP: documented as for a
          # namespace whose NetworkPolicy (below) admits only the federator and the members.
          local.etcd_member_tls ? {} : {
            "checkov.io/skip2" = "CKV_K8S_116=etcd.tls_secret_name is null: plain HTTP inside the namespace, guarded by the NetworkPolicy skybridge-etcd (docs/deploy/kubernetes.md); set it for TLS"
            "checkov.io/skip3" = "CKV_K8S_117=etcd.tls_secret_name is null: no client certificates without TLS; the NetworkPolicy admits only the federator pods to 2379"
            "checkov.io/skip4" = "CKV_K8S_119=etcd.tls_secret_name is null: no peer TLS; the NetworkPolicy admits only the etcd members to 2380"
          },
        )
      }
      spec = {
        replicas    = local.e.members
        serviceName = local.etcd_service
        # Parallel: a member is ready only once a quorum exists, so members started one after
        # the other (OrderedReady) would wait for each other forever.
        podManagementPolicy = "Parallel"
        updateStrategy      = { type = "RollingUpdate" }
        selector            = { matchLabels = local.etcd_selector }
        template = {
          metadata = {
            labels = local.etcd_labels
            annotations = {
              "prometheus.io/scrape" = "true"
              "prometheus.io/port"   = "2381"
              "prometheus.io/path"   = "/metrics"
            }
          }
          spec = {
            serviceAccountName            = local.etcd_service
            automountServiceAccountToken  = false
            terminationGracePeriodSeconds = 30
            securityContext               = local.pod_security
            # Required: two members on one node would lose the quorum with that node (this needs
            # at least `members` schedulable nodes). Zones: spread when the cluster has them.
            affinity = {
              podAntiAffinity = {
                requiredDuringSchedulingIgnoredDuringExecution = [{
                  topologyKey   = "kubernetes.io/hostname"
                  labelSelector = { matchLabels = local.etcd_selector }
                }]
              }
            }
            topologySpreadConstraints = [{
              maxSkew           = 1
              topologyKey       = "topology.kubernetes.io/zone"
              whenUnsatisfiable = "ScheduleAnyway"
              labelSelector     = { matchLabels = local.etcd_selector }
            }]
            containers = [{
              name            = "etcd"
              image           = local.e.image
              imagePullPolicy = "Always"
              command         = local.etcd_command
              env = concat(
                [{ name = "POD_NAME", valueFrom = { fieldRef = { fieldPath = "metadata.name" } } }],
                # For `kubectl exec ... -- etcdctl ...` in a member.
                [{ name = "ETCDCTL_ENDPOINTS", value = "${local.etcd_scheme}://$(POD_NAME).${local.etcd_domain}:2379" }],
                local.etcd_member_tls ? [
                  { name = "ETCDCTL_CACERT", value = "${local.etcd_certs}/ca.pem" },
                  { name = "ETCDCTL_CERT", value = "${local.etcd_certs}/cert.pem" },
                  { name = "ETCDCTL_KEY", value = "${local.etcd_certs}/key.pem" },
                ] : [],
              )
              ports = [
                { name = "client", containerPort = 2379, protocol = "TCP" },
                { name = "peer", containerPort = 2380, protocol = "TCP" },
                { name = "metrics", containerPort = 2381, protocol = "TCP" },
              ]
              # /readyz needs a quorum (a linearizable read); /livez only a live process, so a
              # member is not restarted while its peers are away.
              readinessProbe = { httpGet = { path = "/readyz", port = 2381 }, periodSeconds = 5, failureThreshold = 3, timeoutSeconds = 5 }
              livenessProbe  = { httpGet = { path = "/livez", port = 2381 }, periodSeconds = 10, failureThreshold = 8, timeoutSeconds = 5 }
              startupProbe   = { httpGet = { path = "/livez", port = 2381 }, periodSeconds = 5, failureThreshold = 60, timeoutSeconds = 5 }
              resources = {
                requests = { cpu = local.e.cpu_request, memory = local.e.memory_request }
                limits   = { cpu = local.e.cpu_limit, memory = local.e.memory_limit }
              }
              securityContext = local.container_security
              volumeMounts = concat(
                [{ name = "data", mountPath = local.etcd_data }],
                local.etcd_member_tls ? [{ name = "tls", mountPath = local.etcd_certs, readOnly = true }] : [],
              )
            }]
            volumes = local.etcd_member_tls ? [
              { name = "tls", secret = { secretName = local.e.tls_secret_name, defaultMode = 288 } }, # 0440
            ] : []
          }
        }
        volumeClaimTemplates = [{
          metadata = { name = "data", labels = local.etcd_labels }
          spec = merge(
            { accessModes = ["ReadWriteOnce"], resources = { requests = { storage = local.e.storage_size } } },
            local.e.storage_class == null ? {} : { storageClassName = local.e.storage_class },
          )
        }]
      }
    },
    {
      apiVersion = "policy/v1"
      kind       = "PodDisruptionBudget"
      metadata   = { name = local.etcd_service, namespace = var.namespace, labels = local.etcd_labels }
      # One member at a time: the others keep the quorum through node drains.
      spec = { maxUnavailable = 1, selector = { matchLabels = local.etcd_selector } }
    },
    {
      apiVersion = "networking.k8s.io/v1"
      kind       = "NetworkPolicy"
      metadata   = { name = local.etcd_service, namespace = var.namespace, labels = local.etcd_labels }
      spec = {
        podSelector = { matchLabels = local.etcd_selector }
        policyTypes = ["Ingress"]
        ingress = [
          # The client port: the federator replicas of this namespace only.
          { from = [{ podSelector = { matchLabels = local.federator_selector } }], ports = [{ port = 2379, protocol = "TCP" }] },
          # The peer port: the other members only.
          { from = [{ podSelector = { matchLabels = local.etcd_selector } }], ports = [{ port = 2380, protocol = "TCP" }] },
          # Health and metrics (no keys, no writes): this cluster, for Prometheus.
          { from = [{ namespaceSelector = {} }], ports = [{ port = 2381, protocol = "TCP" }] },
        ]
      }
    },
  ]
}
