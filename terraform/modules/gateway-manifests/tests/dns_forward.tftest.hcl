# The nested module modules/dns-forward: the stub-domain objects the cloud modules write into the
# cluster DNS (they need the kubernetes provider, which cannot be downloaded where these tests
# run, so their rendering lives in this provider-free module and is tested here).

variables {
  address = "172.20.0.53"
  # EKS's default Corefile (the coredns add-on and the self-managed CoreDNS).
  corefile = <<-EOT
    .:53 {
        errors
        health {
            lameduck 5s
          }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
          pods insecure
          fallthrough in-addr.arpa ip6.arpa
        }
        prometheus :9153
        forward . /etc/resolv.conf
        cache 30
        loop
        reload
        loadbalance
    }
  EOT
}

run "coredns_server_block" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  assert {
    condition     = output.server_block == "clusterset.local:53 {\n    errors\n    cache 5\n    forward . 172.20.0.53\n}\n"
    error_message = "the server block must forward clusterset.local to the egress Service's ClusterIP: ${output.server_block}"
  }
  assert {
    condition     = output.coredns_custom_data == { "clusterset.server" = output.server_block }
    error_message = "AKS's coredns-custom imports custom/*.server: the key must end in .server"
  }
  assert {
    condition = (
      startswith(output.corefile, trimsuffix(var.corefile, "\n")) &&
      endswith(output.corefile, "reload\n    loadbalance\n}\n\n# BEGIN skybridge clusterset.local (managed by Terraform: change the skybridge module's dns variable, not this block)\nclusterset.local:53 {\n    errors\n    cache 5\n    forward . 172.20.0.53\n}\n# END skybridge clusterset.local\n")
    )
    error_message = "the block is appended to the live Corefile, which stays as it was: ${output.corefile}"
  }
  assert {
    condition     = jsondecode(output.stub_domains) == { "clusterset.local" = ["172.20.0.53"] }
    error_message = "without stub domains, kube-dns gets just clusterset.local: ${output.stub_domains}"
  }
}

run "merging_again_changes_nothing" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  variables {
    corefile = run.coredns_server_block.corefile
  }
  assert {
    condition     = output.corefile == run.coredns_server_block.corefile
    error_message = "a Corefile that already has the block must come back unchanged (no diff on every plan): ${output.corefile}"
  }
}

run "a_new_address_replaces_the_block" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  variables {
    address  = "fd00:20::35"
    corefile = "${run.coredns_server_block.corefile}\n\n"
  }
  assert {
    condition = (
      length(regexall("# BEGIN skybridge", output.corefile)) == 1 && strcontains(output.corefile, "forward . fd00:20::35\n") &&
      !strcontains(output.corefile, "172.20.0.53") && strcontains(output.corefile, "forward . /etc/resolv.conf")
    )
    error_message = "one block, with the new address, the rest of the Corefile kept: ${output.corefile}"
  }
}

run "stub_domains_are_merged" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  variables {
    corefile     = null
    stub_domains = "{\"corp.example\": [\"10.0.0.2\", \"10.0.0.3\"], \"clusterset.local\": [\"10.9.9.9\"]}\n"
  }
  assert {
    condition = jsondecode(output.stub_domains) == {
      "clusterset.local" = ["172.20.0.53"]
      "corp.example"     = ["10.0.0.2", "10.0.0.3"]
    }
    error_message = "other stub domains are kept and clusterset.local points at the egress Service: ${output.stub_domains}"
  }
  assert {
    condition     = output.corefile == null
    error_message = "no Corefile without one to merge into"
  }
}

run "a_hand_written_forward_is_refused" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  variables {
    corefile = "${var.corefile}clusterset.local:53 {\n    forward . 10.100.7.7\n}\n"
  }
  expect_failures = [output.corefile]
}

run "the_old_rewrite_recipe_is_not_a_server_block" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  variables {
    corefile = replace(var.corefile, "    ready\n", "    ready\n    rewrite name regex (.+)\\.svc\\.clusterset\\.local skybridge-egress.skybridge-system.svc.cluster.local answer auto\n    # clusterset.local {\n")
  }
  assert {
    condition     = strcontains(output.corefile, "# BEGIN skybridge")
    error_message = "a rewrite rule or a comment naming the zone is no second server block"
  }
}

run "stub_domains_that_are_not_an_object_are_refused" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  variables {
    stub_domains = "[\"10.0.0.2\"]"
  }
  expect_failures = [output.stub_domains]
}

run "the_address_must_be_an_ip" {
  command = plan
  module {
    source = "./modules/dns-forward"
  }
  variables {
    address = "skybridge-egress.skybridge-system.svc.cluster.local"
  }
  expect_failures = [var.address]
}
