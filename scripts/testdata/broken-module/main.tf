resource "aws_eip" "ok" {
  count  = 2
  domain = "vpc"
  tags   = { Name = "fixture-${count.index}" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_eip" "typo" {
  # BROKEN: misspelled argument (domain).
  domian = "vpc"
}

# BROKEN: no such resource type.
resource "aws_elastic_ip" "nope" {
  domain = "vpc"
}

resource "google_compute_firewall" "fw" {
  name = "fixture"
  # BROKEN: missing required argument network.
  depends_on = [aws_eip.ok]

  # BROKEN: allow is a block, given as an argument.
  allow = [{ protocol = "udp", ports = ["15443"] }]

  # BROKEN: source_ranges is an argument, given as a block.
  source_ranges {
    cidr = "0.0.0.0/0"
  }

  dynamic "deny" {
    for_each = toset(["tcp"])
    content {
      protocol = deny.value
      # BROKEN: unknown argument inside a (dynamic) nested block.
      port = ["22"]
    }
  }
}

resource "google_compute_address" "ip" {
  name = "fixture"
  # BROKEN: a list where a string is expected.
  address_type = ["EXTERNAL"]
  # BROKEN: a string where a map is expected.
  labels = "app=fixture"
}

resource "kubernetes_config_map_v1_data" "cm" {
  # BROKEN: missing required block metadata.
  data = { "a" = "b" }
}

resource "kubernetes_manifest" "free_form" {
  # The manifest is free-form: nothing inside it is checked against the provider's schema.
  manifest = {
    apiVersion = "v1"
    kind       = "ConfigMap"
    metadata   = { name = "fixture", namespace = "default" }
    data       = { anything = "goes" }
  }
}

data "aws_caller_identity" "current" {}
