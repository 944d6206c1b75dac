output "gateway_addresses" {
  description = "Each cluster's gateway tunnel address(es), as advertised to peers."
  value = {
    aws   = module.aws.gateway_address
    gcp   = module.gcp.gateway_address
    azure = module.azure.gateway_address
  }
}

output "federator_address" {
  description = "The federator's control address every gateway dials (its API stays inside the GKE cluster: kubectl port-forward svc/skybridge-federator-api 8080)."
  value       = module.gcp.federator_address
}
