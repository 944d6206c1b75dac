# Runs offline (`terraform test`): the module has no providers. The Rust harness
# (tests/tests/deploy.rs) also feeds the rendered configs to `skybridge ... --check-config`.

variables {
  cluster_id           = "aws-prod-use1"
  cloud                = "aws"
  region               = "us-east-1"
  trust_domain         = "corp.example"
  image                = "registry.example.com/skybridge:0.1.0"
  federator_address    = "federator.corp.example:15010"
  advertised_addresses = ["203.0.113.10:15443"]
}

run "gateway_objects" {
  command = plan

  assert {
    condition = toset([for k, _ in output.manifests : split("/", k)[0]]) == toset([
      "ServiceAccount", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "NetworkPolicy",
    ])
    error_message = "unexpected kinds: ${jsonencode(keys(output.manifests))}"
  }
  assert {
    condition     = yamldecode(output.namespace_manifest).metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    error_message = "the namespace must enforce the restricted Pod Security Standard"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Service/skybridge-gateway"]).spec.type == "LoadBalancer" &&
      toset([for p in yamldecode(output.manifests["Service/skybridge-gateway"]).spec.ports : "${p.port}/${p.protocol}"]) == toset(["15443/UDP", "15443/TCP"])
    )
    error_message = "the gateway LoadBalancer must carry 15443/UDP and 15443/TCP"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].command == ["/usr/local/bin/skybridge-gateway"] &&
      !contains(yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].args, "gateway")
    )
    error_message = "the gateway Deployment must run the gateway-only binary (no subcommand)"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Service/skybridge-egress"]).spec.type == "ClusterIP" &&
      toset([for p in yamldecode(output.manifests["Service/skybridge-egress"]).spec.ports : "${p.port}/${p.protocol}>${p.targetPort}"]) == toset(["443/TCP>15001", "80/TCP>15080", "15021/TCP>15021", "53/UDP>15053", "53/TCP>15053"]) &&
      !can(yamldecode(output.manifests["Service/skybridge-egress"]).spec.clusterIP)
    )
    error_message = "the egress Service must map 443 to SNI, 80 to HTTP, 53 (UDP and TCP) to the gateway's DNS and expose admin, with a ClusterIP Kubernetes picks"
  }
  assert {
    condition = (
      toset([for p in yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].ports : "${p.containerPort}/${p.protocol}" if startswith(p.name, "dns-")]) == toset(["15053/UDP", "15053/TCP"]) &&
      strcontains(output.gateway_config, "admin = \"0.0.0.0:15021\"\ndns = \"0.0.0.0:15053\"\n")
    )
    error_message = "the gateway must listen for DNS on 15053, UDP and TCP: ${output.gateway_config}"
  }
  assert {
    condition = strcontains(output.gateway_config, join("\n", [
      "[dns]",
      "answer = [\"skybridge-egress.skybridge-system.svc.cluster.local\"]",
      "ttl = \"5s\"",
      "tls_port = 443",
      "http_port = 80",
    ]))
    error_message = "the [dns] table must answer the egress Service's name and give its ports in SRV records: ${output.gateway_config}"
  }
  assert {
    condition = anytrue([
      for r in yamldecode(output.manifests["NetworkPolicy/skybridge-gateway"]).spec.ingress :
      try(r.from, null) == [{ namespaceSelector = {} }] && toset([for p in r.ports : "${p.port}/${p.protocol}"]) == toset(["15053/UDP", "15053/TCP"])
    ])
    error_message = "the NetworkPolicy must admit the cluster DNS pods (kube-system) and other pods to 15053, UDP and TCP"
  }
  assert {
    condition = (
      output.dns_forward.zone == "clusterset.local" && output.dns_forward.port == 53 && output.dns_forward.cluster_ip == null &&
      "${output.dns_forward.service}.${output.dns_forward.namespace}" == "skybridge-egress.skybridge-system"
    )
    error_message = "dns_forward must say where the cluster DNS forwards clusterset.local: ${jsonencode(output.dns_forward)}"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].readinessProbe.httpGet.path == "/readyz" && yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].readinessProbe.httpGet.port == 15021 &&
      yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].livenessProbe.httpGet.path == "/healthz" && yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].livenessProbe.httpGet.port == 15021
    )
    error_message = "probes must hit the admin port's /readyz and /healthz"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].securityContext.runAsNonRoot && yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem &&
      !yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation && yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].securityContext.capabilities.drop == ["ALL"] &&
      yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.securityContext.seccompProfile.type == "RuntimeDefault"
    )
    error_message = "the gateway must run non-root, read-only, without privileges"
  }
  assert {
    condition     = yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.terminationGracePeriodSeconds > 20
    error_message = "the termination grace period must outlast the 20 s drain deadline"
  }
  assert {
    condition     = length(yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution) == 1
    error_message = "gateway pods must spread over nodes"
  }
  assert {
    condition     = yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].resources.requests.cpu == "500m" && yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].resources.limits.memory == "1Gi"
    error_message = "resource requests and limits must be set"
  }
  assert {
    condition     = strcontains(output.gateway_config, "tunnel_addresses = [\"203.0.113.10:15443\"]")
    error_message = "the gateway must advertise the load balancer's address"
  }
  assert {
    condition     = output.federator_yaml == null && output.federator_config == null && output.etcd_yaml == null
    error_message = "no federator (and no etcd) unless asked for"
  }
  assert {
    condition = (
      strcontains(output.gateway_config, "catalog_cache = \"/var/cache/skybridge/catalog-cache.pb\"") &&
      contains([for m in yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].volumeMounts : m.name if m.mountPath == "/var/cache/skybridge"], "catalog-cache") &&
      contains([for v in yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.volumes : v.name if can(v.emptyDir)], "catalog-cache")
    )
    error_message = "the gateway must keep its catalog cache on a writable emptyDir (the config folder is a read-only ConfigMap) and its config must name it"
  }
  assert {
    condition     = strcontains(output.gateway_config, "address = \"federator.corp.example:15010\"")
    error_message = "without a replicated federator here, gateways dial federator_address"
  }
}

run "drain_and_tcp_fallback_follow_inputs" {
  command = plan
  variables {
    drain_deadline_seconds = 120
    expose_tcp_fallback    = false
    replicas               = 3
    otlp_endpoint          = "http://otel-collector.observability:4317"
  }
  assert {
    condition     = yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.terminationGracePeriodSeconds == 135 && strcontains(output.gateway_config, "drain_deadline = \"120s\"")
    error_message = "grace period and drain deadline must follow drain_deadline_seconds"
  }
  assert {
    condition     = [for p in yamldecode(output.manifests["Service/skybridge-gateway"]).spec.ports : p.protocol] == ["UDP"]
    error_message = "without the TCP fallback only 15443/UDP is exposed"
  }
  assert {
    condition     = strcontains(output.gateway_config, "[telemetry]\notlp_endpoint = \"http://otel-collector.observability:4317\"")
    error_message = "the OTLP endpoint must reach the gateway config"
  }
}

run "dns_with_a_fixed_cluster_ip" {
  command = plan
  variables {
    namespace      = "skybridge"
    cluster_domain = "corp.internal"
    dns = {
      cluster_ip    = "172.20.0.53"
      ttl           = "30s"
      source_ranges = ["10.0.0.0/16"]
    }
  }
  assert {
    condition     = yamldecode(output.manifests["Service/skybridge-egress"]).spec.clusterIP == "172.20.0.53" && output.dns_forward.cluster_ip == "172.20.0.53"
    error_message = "dns.cluster_ip must become the egress Service's spec.clusterIP and the forward's address"
  }
  assert {
    condition     = strcontains(output.gateway_config, "answer = [\"skybridge-egress.skybridge.svc.corp.internal\"]\nttl = \"30s\"\n")
    error_message = "the answer follows namespace and cluster_domain, the TTL dns.ttl: ${output.gateway_config}"
  }
  assert {
    condition = anytrue([
      for r in yamldecode(output.manifests["NetworkPolicy/skybridge-gateway"]).spec.ingress :
      try(r.from, null) == [{ namespaceSelector = {} }, { ipBlock = { cidr = "10.0.0.0/16" } }] && contains([for p in r.ports : p.port], 15053)
    ])
    error_message = "dns.source_ranges (node-level resolvers) must be admitted to the DNS port"
  }
}

run "dns_disabled_renders_nothing_of_it" {
  command = plan
  variables {
    dns = { enabled = false, cluster_ip = "172.20.0.53" }
  }
  assert {
    condition = (
      !strcontains(output.gateway_config, "dns") &&
      !strcontains(output.gateway_config, "15053") &&
      toset([for p in yamldecode(output.manifests["Service/skybridge-egress"]).spec.ports : p.port]) == toset([443, 80, 15021]) &&
      !can(yamldecode(output.manifests["Service/skybridge-egress"]).spec.clusterIP) &&
      length([for p in yamldecode(output.manifests["Deployment/skybridge-gateway"]).spec.template.spec.containers[0].ports : p if p.containerPort == 15053]) == 0 &&
      !strcontains(output.manifests["NetworkPolicy/skybridge-gateway"], "15053") &&
      !strcontains(output.gateway_yaml, "15053") &&
      output.dns_forward == null
    )
    error_message = "with dns.enabled = false no DNS listener, port, address, policy rule or config is rendered"
  }
}

run "dns_inputs_are_validated" {
  command = plan
  variables {
    dns = { cluster_ip = "skybridge-egress", ttl = "500ms", source_ranges = ["10.0.0.0"] }
  }
  expect_failures = [var.dns]
}

run "federator_objects" {
  command = plan
  variables {
    federator = {
      sources_toml                = "[[sources]]\ntype = \"static\"\nid = \"file\"\npath = \"/etc/skybridge/catalog.toml\"\n"
      api_token_secret_name       = "skybridge-api-token"
      service_account_annotations = { "eks.amazonaws.com/role-arn" = "arn:aws:iam::123456789012:role/skybridge-federator" }
    }
  }
  assert {
    condition     = yamldecode(output.manifests["StatefulSet/skybridge-federator"]).spec.replicas == 1
    error_message = "one federator: the embedded store allows one process"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Service/skybridge-federator"]).spec.type == "LoadBalancer" &&
      [for p in yamldecode(output.manifests["Service/skybridge-federator"]).spec.ports : "${p.port}/${p.protocol}"] == ["15010/TCP"]
    )
    error_message = "gateways in other clouds reach the control port through a LoadBalancer"
  }
  assert {
    condition     = yamldecode(output.manifests["ServiceAccount/skybridge-federator"]).metadata.annotations["eks.amazonaws.com/role-arn"] != ""
    error_message = "service account annotations (IRSA, Workload Identity) must be applied"
  }
  assert {
    condition     = strcontains(output.federator_config, "token_file = \"/etc/skybridge/api-token/token\"") && strcontains(output.federator_config, "id = \"file\"")
    error_message = "the federator config must carry the token file and the sources"
  }
  assert {
    condition     = yamldecode(output.manifests["StatefulSet/skybridge-federator"]).spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem
    error_message = "the federator must run with a read-only root filesystem"
  }
  assert {
    condition = (
      !contains(keys(output.manifests), "Deployment/skybridge-federator") &&
      !contains(keys(output.manifests), "PodDisruptionBudget/skybridge-federator") &&
      !contains(keys(output.manifests), "Service/skybridge-federator-control") &&
      length(yamldecode(output.manifests["StatefulSet/skybridge-federator"]).spec.volumeClaimTemplates) == 1 &&
      strcontains(output.federator_config, "data_dir = \"/var/lib/skybridge\"") && !strcontains(output.federator_config, "[store]") &&
      output.federator_replicas == 1 && output.etcd_yaml == null
    )
    error_message = "without etcd the federator stays the embedded-store StatefulSet of one pod with its volume"
  }
}

run "federator_on_an_existing_etcd" {
  command = plan
  variables {
    federator = {
      sources_toml          = "[[sources]]\ntype = \"static\"\nid = \"file\"\npath = \"/etc/skybridge/catalog.toml\"\n"
      api_token_secret_name = "skybridge-api-token"
      gateway_expiry        = "15m"
      etcd = {
        endpoints            = ["https://etcd-0.etcd:2379", "https://etcd-1.etcd:2379", "https://etcd-2.etcd:2379"]
        prefix               = "/federations/prod"
        lease_ttl            = "6s"
        tls_secret_name      = "etcd-client-tls"
        username             = "skybridge"
        password_secret_name = "etcd-skybridge-password"
      }
    }
  }
  assert {
    condition = (
      yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.replicas == 3 &&
      !contains(keys(output.manifests), "StatefulSet/skybridge-federator") && output.federator_replicas == 3
    )
    error_message = "with etcd the federator is a Deployment of 3 replicas instead of the StatefulSet"
  }
  assert {
    condition     = yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey == "kubernetes.io/hostname" && yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.topologySpreadConstraints[0].topologyKey == "topology.kubernetes.io/zone"
    error_message = "federator replicas must spread over nodes and zones"
  }
  assert {
    condition     = yamldecode(output.manifests["PodDisruptionBudget/skybridge-federator"]).spec.maxUnavailable == 1 && yamldecode(output.manifests["PodDisruptionBudget/skybridge-federator"]).spec.selector.matchLabels["app.kubernetes.io/component"] == "federator"
    error_message = "a PodDisruptionBudget must keep all but one replica through drains"
  }
  assert {
    condition = (
      !can(yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.volumeClaimTemplates) &&
      length([for v in yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.volumes : v if can(v.persistentVolumeClaim)]) == 0 &&
      !contains([for m in yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.containers[0].volumeMounts : m.name], "data") &&
      !strcontains(output.federator_config, "data_dir")
    )
    error_message = "no volume and no data_dir with etcd: the state is in etcd"
  }
  assert {
    condition     = yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.containers[0].readinessProbe.httpGet.path == "/readyz" && yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.containers[0].readinessProbe.httpGet.port == 8080
    error_message = "replicas are ready on /readyz (catalog loaded)"
  }
  assert {
    condition = strcontains(output.federator_config, join("\n", [
      "[store]",
      "backend = \"etcd\"",
      "endpoints = [",
      "  \"https://etcd-0.etcd:2379\",",
      "  \"https://etcd-1.etcd:2379\",",
      "  \"https://etcd-2.etcd:2379\",",
      "]",
      "prefix = \"/federations/prod\"",
      "lease_ttl = \"6s\"",
      "tls = { ca = \"/etc/skybridge/etcd/ca.pem\", cert = \"/etc/skybridge/etcd/cert.pem\", key = \"/etc/skybridge/etcd/key.pem\" }",
      "username = \"skybridge\"",
      "password_file = \"/etc/skybridge/etcd-auth/password\"",
    ]))
    error_message = "the federator config must carry the [store] section: ${output.federator_config}"
  }
  assert {
    condition     = strcontains(output.federator_config, "gateway_expiry = \"15m\"")
    error_message = "gateway_expiry must reach the [federator] table"
  }
  assert {
    condition = (
      contains([for v in yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.volumes : v.secret.secretName if can(v.secret)], "etcd-client-tls") &&
      contains([for v in yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.volumes : v.secret.secretName if can(v.secret)], "etcd-skybridge-password") &&
      toset([for m in yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.template.spec.containers[0].volumeMounts : m.mountPath if try(m.readOnly, false)]) == toset(["/etc/skybridge/config", "/etc/skybridge/tls", "/etc/skybridge/api-token", "/etc/skybridge/etcd", "/etc/skybridge/etcd-auth"])
    )
    error_message = "the etcd client TLS and password secrets must be mounted read-only where the config points"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Service/skybridge-federator-control"]).spec.clusterIP == "None" &&
      strcontains(output.gateway_config, "address = \"skybridge-federator-control.skybridge-system.svc.cluster.local:15010\"") &&
      yamldecode(output.manifests["Service/skybridge-federator"]).spec.type == "LoadBalancer"
    )
    error_message = "gateways here dial every replica through the headless Service; other clusters keep the LoadBalancer"
  }
  assert {
    condition     = output.etcd_yaml == null && !contains(keys(output.manifests), "StatefulSet/skybridge-etcd")
    error_message = "no bundled etcd when the federator is given endpoints"
  }
}

run "federator_with_the_bundled_etcd" {
  command = plan
  variables {
    federator = {
      sources_toml = "# none"
      replicas     = 4
      etcd         = { tls_secret_name = "skybridge-etcd-client-tls" }
    }
    etcd = {
      tls_secret_name = "skybridge-etcd-tls"
      storage_class   = "fast-ssd"
    }
  }
  assert {
    condition     = yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.replicas == 3 && yamldecode(output.manifests["Deployment/skybridge-federator"]).spec.replicas == 4
    error_message = "three etcd members; federator.replicas sets the federator's"
  }
  assert {
    condition = alltrue([for m in ["skybridge-etcd-0", "skybridge-etcd-1", "skybridge-etcd-2"] : contains(
      split(",", trimprefix([for a in yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].command : a if startswith(a, "--initial-cluster=")][0], "--initial-cluster=")),
      "${m}=https://${m}.skybridge-etcd.skybridge-system.svc.cluster.local:2380"
    )])
    error_message = "--initial-cluster must name every member by its pod DNS name"
  }
  assert {
    condition = (
      contains(yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].command, "--initial-cluster-state=new") &&
      contains(yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].command, "--client-cert-auth=true") &&
      contains(yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].command, "--peer-client-cert-auth=true") &&
      yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.podManagementPolicy == "Parallel"
    )
    error_message = "a new cluster, with TLS and client certificates, members started together"
  }
  assert {
    condition = (
      yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.volumeClaimTemplates[0].spec.storageClassName == "fast-ssd" &&
      contains([for m in yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].volumeMounts : m.mountPath if m.name == "data"], "/var/lib/etcd") &&
      yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].readinessProbe.httpGet.path == "/readyz" &&
      yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].resources.limits.memory == "1Gi" &&
      yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem &&
      yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.securityContext.runAsNonRoot
    )
    error_message = "etcd data on a claimed volume, readiness on /readyz, limits, the module's security context"
  }
  assert {
    condition     = yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey == "kubernetes.io/hostname" && yamldecode(output.manifests["PodDisruptionBudget/skybridge-etcd"]).spec.maxUnavailable == 1
    error_message = "etcd members on distinct nodes, one disrupted at a time"
  }
  assert {
    condition = (
      yamldecode(output.manifests["Service/skybridge-etcd"]).spec.clusterIP == "None" && yamldecode(output.manifests["Service/skybridge-etcd"]).spec.publishNotReadyAddresses &&
      yamldecode(output.manifests["Service/skybridge-etcd-client"]).spec.type == "ClusterIP"
    )
    error_message = "a headless Service for the members' names (published before they are ready) and a client Service"
  }
  assert {
    condition = (
      [for r in yamldecode(output.manifests["NetworkPolicy/skybridge-etcd"]).spec.ingress : r.from[0].podSelector.matchLabels["app.kubernetes.io/component"] if r.ports[0].port == 2379] == ["federator"] &&
      [for r in yamldecode(output.manifests["NetworkPolicy/skybridge-etcd"]).spec.ingress : r.from[0].podSelector.matchLabels["app.kubernetes.io/component"] if r.ports[0].port == 2380] == ["etcd"]
    )
    error_message = "only the federator reaches the client port and only members the peer port"
  }
  assert {
    condition = strcontains(output.federator_config, join("\n", [
      "endpoints = [",
      "  \"https://skybridge-etcd-0.skybridge-etcd.skybridge-system.svc.cluster.local:2379\",",
      "  \"https://skybridge-etcd-1.skybridge-etcd.skybridge-system.svc.cluster.local:2379\",",
      "  \"https://skybridge-etcd-2.skybridge-etcd.skybridge-system.svc.cluster.local:2379\",",
      "]",
    ])) && output.etcd_endpoints[0] == "https://skybridge-etcd-0.skybridge-etcd.skybridge-system.svc.cluster.local:2379"
    error_message = "the federator must dial every bundled member by name"
  }
  assert {
    condition     = !can(yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).metadata.annotations["checkov.io/skip2"])
    error_message = "with TLS no etcd check is skipped"
  }
}

run "bundled_etcd_without_tls" {
  command = plan
  variables {
    federator = {
      sources_toml = "# none"
      etcd         = {}
    }
    etcd = {}
  }
  assert {
    condition = (
      strcontains(output.federator_config, "\"http://skybridge-etcd-2.skybridge-etcd.skybridge-system.svc.cluster.local:2379\"") && !strcontains(output.federator_config, "tls = {") &&
      !contains(yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).spec.template.spec.containers[0].command, "--client-cert-auth=true") &&
      strcontains(yamldecode(output.manifests["StatefulSet/skybridge-etcd"]).metadata.annotations["checkov.io/skip2"], "NetworkPolicy")
    )
    error_message = "without TLS: http:// endpoints, no TLS flags, and the skipped checks say why"
  }
}

run "etcd_inputs_are_validated" {
  command = plan
  variables {
    federator = {
      sources_toml = "# none"
      replicas     = 1
      etcd = {
        endpoints       = ["http://etcd-0.etcd:2379"]
        tls_secret_name = "etcd-client-tls"
        lease_ttl       = "1500ms"
        prefix          = "/skybridge/"
        username        = "skybridge"
      }
    }
    etcd = { members = 4, image = "registry.k8s.io/etcd:latest" }
  }
  expect_failures = [var.federator, var.etcd]
}

run "embedded_store_allows_one_replica" {
  command = plan
  variables {
    federator = {
      sources_toml = "# none"
      replicas     = 3
    }
  }
  expect_failures = [var.federator]
}

run "bundled_etcd_needs_the_federator_to_use_it" {
  command = plan
  variables {
    federator = { sources_toml = "# none" }
    etcd      = {}
  }
  expect_failures = [output.manifests, output.federator_yaml, output.etcd_yaml, output.federator_config]
}

run "bundled_etcd_with_tls_needs_a_client_certificate" {
  command = plan
  variables {
    federator = {
      sources_toml = "# none"
      etcd         = {}
    }
    etcd = { tls_secret_name = "skybridge-etcd-tls" }
  }
  expect_failures = [output.manifests, output.federator_yaml, output.etcd_yaml, output.federator_config]
}

run "bad_inputs_are_rejected" {
  command = plan
  variables {
    cluster_id = "AWS_Prod"
    image      = "registry.example.com/skybridge:latest"
  }
  expect_failures = [var.cluster_id, var.image]
}
