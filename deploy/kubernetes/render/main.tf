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

  federator = {
    # Replace with your catalog sources: docs/federator.md and docs/sources/.
    sources_toml          = "# [[sources]] tables go here (docs/federator.md, docs/sources/)."
    api_token_secret_name = "skybridge-api-token"
  }
}

output "gateway_yaml" {
  value = module.skybridge.gateway_yaml
}

output "federator_yaml" {
  value = module.skybridge.federator_yaml
}
