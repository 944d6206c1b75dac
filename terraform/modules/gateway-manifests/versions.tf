terraform {
  # Only built-in functions: this module renders, it never talks to an API, so it runs offline
  # (and under `terraform test`) with no provider at all.
  required_version = ">= 1.6.0"
}
