#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, then runs them all.
# Usage: scripts/test.sh             (as root, or with sudo available)
#        scripts/test.sh --deps-only (install only: .ci/run does it before clippy, which needs protoc)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages the build, the tests and the local-tunnel smoke use (protoc builds the control
# protocol, chromium and its driver run the dashboard's browser test, python3-venv holds the
# deployment checkers, etcd-server and etcd-client are the replicated store's real etcd, dig from
# bind9-dnsutils queries the gateway's clusterset.local DNS server).
APT_PACKAGES=(ca-certificates curl python3 python3-pip python3-venv protobuf-compiler chromium chromium-driver
  etcd-server etcd-client iproute2 bind9-dnsutils)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

# Python tools the cloud-adapter tests start: moto's server stands in for AWS Cloud Map, and
# the real aws CLI registers instances in one end-to-end test.
PIP_PACKAGES=("moto[server]" awscli)
if ! command -v moto_server >/dev/null || ! command -v aws >/dev/null; then
  echo "installing: ${PIP_PACKAGES[*]}"
  python3 -m pip install -q "${PIP_PACKAGES[@]}" || python3 -m pip install -q --break-system-packages "${PIP_PACKAGES[@]}"
  hash -r
fi

# checkov and python-hcl2 check the Terraform modules and Kubernetes YAML (tests/tests/deploy.rs).
# Their own virtualenv: checkov pins botocore versions that would break the aws CLI above.
DEPLOY_TOOLS="${SKYBRIDGE_DEPLOY_TOOLS:-$HOME/.cache/skybridge/deploy-tools}"
# kubernetes-validate (same venv) checks deploy/kubernetes against Kubernetes' OpenAPI schemas.
if [ ! -x "$DEPLOY_TOOLS/bin/checkov" ] || ! "$DEPLOY_TOOLS/bin/python" -c "import hcl2, kubernetes_validate" 2>/dev/null; then
  echo "installing: checkov python-hcl2 kubernetes-validate (into $DEPLOY_TOOLS)"
  python3 -m venv "$DEPLOY_TOOLS"
  "$DEPLOY_TOOLS/bin/pip" install -q checkov python-hcl2 kubernetes-validate
fi
export SKYBRIDGE_DEPLOY_TOOLS="$DEPLOY_TOOLS"
# The Terraform providers' schemas (CDKTF packages from npm, only their .jsii kept) that
# scripts/check-provider-schemas.py checks the modules against; skips those already cached.
command -v npm >/dev/null || { echo "installing: npm"; $SUDO apt-get update -qq; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm; }
export SKYBRIDGE_PROVIDER_SCHEMAS="${SKYBRIDGE_PROVIDER_SCHEMAS:-$HOME/.cache/skybridge/cdktf-schemas}"
scripts/fetch-provider-schemas.sh "$SKYBRIDGE_PROVIDER_SCHEMAS"
# Terraform is not in the package registries; tests/tests/deploy.rs fails naming it if absent.
command -v terraform >/dev/null || echo "WARNING: terraform is not installed: the Terraform tests will fail" >&2

# cargo-deny checks the dependency rules in deny.toml (.ci/run runs scripts/deny.sh).
if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing: cargo-deny"
  cargo install -q --locked cargo-deny
fi

if [ "${1:-}" = "--deps-only" ]; then exit 0; fi

# Unit, in-process integration and end-to-end tests.
cargo test --workspace --locked

# The README's "run it" command, once, as a smoke test of the real binary and script.
scripts/local-tunnel.sh --once
