# The root module scripts/render-manifests.sh renders deploy/kubernetes/*.yaml from. Edit the
# values here (or better, use the module from your own Terraform) and re-run the script.

module "skybridge" {
  source = "../../../terraform/modules/gateway-manifests"

  cluster_id           = "example-cluster"
  cloud                = "other"
  region               = "example-region"
  trust_domain         = "corp.example"
  image                = "registry.example.com/skybridge:0.1.0"
  federator_address    = "federator.corp.example:15010"
  advertised_addresses = ["203.0.113.10:15443"]

  # The gateway's DNS server for clusterset.local is on by default (`dns`; port 53 of the egress
  # Service). The plain YAML leaves the cluster DNS alone: forward the zone to the egress
  # Service's ClusterIP by hand (docs/deploy/kubernetes.md#forwarding-by-hand), or fix that
  # address here with dns = { cluster_ip = "..." }.

  federator = {
    # Replace with your catalog sources: docs/federator.md and docs/sources/.
    sources_toml          = "# [[sources]] tables go here (docs/federator.md, docs/sources/)."
    api_token_secret_name = "skybridge-api-token"
  }
}

# The replicated federator (federator-ha.yaml: three replicas on etcd, instead of federator.yaml)
# and the bundled three-member etcd it uses (etcd.yaml), both with TLS to etcd. The certificates:
# docs/deploy/kubernetes.md, "High availability".
module "skybridge_ha" {
  source = "../../../terraform/modules/gateway-manifests"

  cluster_id           = "example-cluster"
  cloud                = "other"
  region               = "example-region"
  trust_domain         = "corp.example"
  image                = "registry.example.com/skybridge:0.1.0"
  federator_address    = "federator.corp.example:15010"
  advertised_addresses = ["203.0.113.10:15443"]

  federator = {
    sources_toml          = "# [[sources]] tables go here (docs/federator.md, docs/sources/)."
    api_token_secret_name = "skybridge-api-token"
    # endpoints null: the bundled etcd below.
    etcd = { tls_secret_name = "skybridge-etcd-client-tls" }
  }
  etcd = { tls_secret_name = "skybridge-etcd-tls" }
}

output "gateway_yaml" {
  value = module.skybridge.gateway_yaml
}

output "federator_yaml" {
  value = module.skybridge.federator_yaml
}

output "federator_ha_yaml" {
  value = module.skybridge_ha.federator_yaml
}

output "etcd_yaml" {
  value = module.skybridge_ha.etcd_yaml
}
