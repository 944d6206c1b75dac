# Provider-free, like its parent: what the cluster DNS needs to forward clusterset.local to the
# gateway's DNS server (the egress Service's port 53), in the forms the cloud modules write:
#   server_block   a CoreDNS server block (EKS merges it into kube-system/coredns, AKS puts it in
#                  kube-system/coredns-custom as clusterset.server)
#   corefile       a Corefile with that block merged in, between markers, replacing the block an
#                  earlier apply merged (EKS)
#   stub_domains   the kube-dns stubDomains JSON with the zone added to the ones already there (GKE)
# The cloud modules read the live ConfigMaps and write these back with kubernetes_config_map_v1_data;
# keeping the text here lets `terraform test` check it offline (../../tests/dns_forward.tftest.hcl).

terraform {
  required_version = ">= 1.6.0"
}

variable "address" {
  description = "The address clusterset.local is forwarded to: the egress Service's ClusterIP (its port 53 leads to the gateways' listen.dns). CoreDNS and kube-dns forward to addresses, not names. May be unknown until the Service is applied."
  type        = string
  validation {
    condition     = can(cidrhost("${var.address}/${strcontains(var.address, ":") ? 128 : 32}", 0))
    error_message = "address must be an IP address (the egress Service's ClusterIP)."
  }
}

variable "corefile" {
  description = "The current Corefile of kube-system/coredns to merge the server block into (a block merged by an earlier apply is replaced), or null: the corefile output is null."
  type        = string
  default     = null
}

variable "stub_domains" {
  description = "The current stubDomains of kube-system/kube-dns (a JSON object of domain to name servers) to add the zone to, or null or empty for none."
  type        = string
  default     = null
}

locals {
  zone = "clusterset.local"

  # CoreDNS forwards over UDP and retries over TCP when an answer is truncated; the egress Service
  # has both. The cache never holds an answer longer than its TTL (the gateway's dns.ttl), nor
  # more than 5 s.
  server_block = <<-EOT
    ${local.zone}:53 {
        errors
        cache 5
        forward . ${var.address}
    }
  EOT

  begin = "# BEGIN skybridge ${local.zone} (managed by Terraform: change the skybridge module's dns variable, not this block)"
  end   = "# END skybridge ${local.zone}"

  # The live Corefile without the block an earlier apply merged and without trailing blank
  # space, so that merging again gives the same text.
  corefile_base = var.corefile == null ? null : replace(
    replace(var.corefile, "/\\n*# BEGIN skybridge clusterset\\.local[^\\n]*\\n[\\s\\S]*?# END skybridge clusterset\\.local[^\\n]*/", ""),
    "/\\s+$/", "",
  )
  corefile = var.corefile == null ? null : "${local.corefile_base}\n\n${local.begin}\n${local.server_block}${local.end}\n"
  # A server block for the zone that is not ours (a hand-written forward): CoreDNS refuses two.
  corefile_conflict = var.corefile == null ? false : can(regex(
    "(?m)^\\s*([^\\s#{]+\\s+)*([a-z]+://)?clusterset\\.local\\.?(:[0-9]+)?(\\s+[^\\s#{]+)*\\s*\\{\\s*$", local.corefile_base,
  ))

  stub_domains_text   = var.stub_domains == null ? "{}" : trimspace(var.stub_domains) == "" ? "{}" : var.stub_domains
  stub_domains_parsed = try(jsondecode(local.stub_domains_text), null)
  stub_domains = jsonencode(try(
    merge(local.stub_domains_parsed, { (local.zone) = [var.address] }),
    { (local.zone) = [var.address] },
  ))
}

output "zone" {
  description = "The forwarded zone."
  value       = local.zone
}

output "server_block" {
  description = "The CoreDNS server block forwarding the zone to the address (AKS: the clusterset.server key of kube-system/coredns-custom)."
  value       = local.server_block
}

output "coredns_custom_data" {
  description = "The data for AKS's kube-system/coredns-custom ConfigMap: {\"clusterset.server\" = server_block} (its Corefile imports custom/*.server)."
  value       = { "clusterset.server" = local.server_block }
}

output "corefile" {
  description = "var.corefile with the server block merged in at the end, between BEGIN/END skybridge markers (replacing the block an earlier apply merged); null without var.corefile."
  value       = local.corefile
  precondition {
    condition     = !local.corefile_conflict
    error_message = "The Corefile already has a server block for clusterset.local that this module did not write (a hand-made forward?): CoreDNS refuses two. Remove it from kube-system/coredns, or set dns.forward = false and keep yours."
  }
}

output "stub_domains" {
  description = "The kube-dns stubDomains JSON: var.stub_domains with clusterset.local forwarded to the address (replacing an earlier entry for it)."
  value       = local.stub_domains
  precondition {
    condition     = can(keys(local.stub_domains_parsed))
    error_message = "The kube-dns ConfigMap's stubDomains is not a JSON object (kube-dns ignores it too): fix it before the module adds clusterset.local to it."
  }
}
