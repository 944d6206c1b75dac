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
      yamldecode(output.manifests["Service/skybridge-egress"]).spec.type == "ClusterIP" &&
      toset([for p in yamldecode(output.manifests["Service/skybridge-egress"]).spec.ports : "${p.port}>${p.targetPort}"]) == toset(["443>15001", "80>15080", "15021>15021"])
    )
    error_message = "the egress Service must map 443 to SNI, 80 to HTTP and expose admin"
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
    condition     = output.federator_yaml == null && output.federator_config == null
    error_message = "no federator unless asked for"
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
}

run "bad_inputs_are_rejected" {
  command = plan
  variables {
    cluster_id = "AWS_Prod"
    image      = "registry.example.com/skybridge:latest"
  }
  expect_failures = [var.cluster_id, var.image]
}
