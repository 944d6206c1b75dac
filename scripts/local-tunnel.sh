#!/usr/bin/env bash
# Runs two gateways on loopback, "aws-local" and "gcp-local", with a sample HTTP service that
# lives only in gcp-local, and prints curl commands that reach it through aws-local's egress.
# Ctrl-C stops everything. Needs: cargo, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin skybridge
BIN=$PWD/target/debug/skybridge
WORK=$(mktemp -d "${TMPDIR:-/tmp}/skybridge-local.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$BIN" ca init --trust-domain local.skybridge --out "$WORK/ca" >/dev/null
for c in aws-local gcp-local; do "$BIN" ca issue --ca "$WORK/ca" --cluster "$c" --out "$WORK/$c" >/dev/null; done

# A sample backend in "gcp": Python's http.server on a loopback port.
mkdir -p "$WORK/www" && echo "hello from gcp-local" > "$WORK/www/index.html"
python3 -m http.server 18080 --bind 127.0.0.2 --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -fs http://127.0.0.2:18080/ >/dev/null && break; sleep 0.1; done

write_config() { # cluster cloud tunnel sni http admin peer peer_cloud peer_addr endpoints
  cat > "$WORK/$1.toml" <<TOML
[gateway]
cluster = "$1"
cloud = "$2"
region = "local"
trust_domain = "local.skybridge"

[tls]
cert = "$1/cert.pem"
key = "$1/key.pem"
trust_bundle = "$1/ca.pem"

[listen]
tunnel = "$3"
sni = "$4"
http = "$5"
admin = "$6"

[[peers]]
cluster = "$7"
cloud = "$8"
address = "$9"

[[services]]
namespace = "demo"
name = "hello"
clusters = ["gcp-local"]
[[services.ports]]
port = 80
protocol = "http"
endpoints = [${10}]
TOML
}
write_config aws-local aws 127.0.0.1:25443 127.0.0.1:25001 127.0.0.1:25080 127.0.0.1:25021 gcp-local gcp 127.0.0.1:26443 ""
write_config gcp-local gcp 127.0.0.1:26443 127.0.0.1:26001 127.0.0.1:26080 127.0.0.1:26021 aws-local aws 127.0.0.1:25443 '"127.0.0.2:18080"'

for c in aws-local gcp-local; do
  SKYBRIDGE_LOG=${SKYBRIDGE_LOG:-info} "$BIN" gateway --config "$WORK/$c.toml" 2>"$WORK/$c.log" &
  PIDS+=($!)
done
for port in 25021 26021; do
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done

cat <<MSG
Two gateways are running (logs in $WORK/*.log). Try:

  curl -H 'Host: hello.demo.svc.clusterset.local' http://127.0.0.1:25080/
      # client -> aws-local egress (HTTP by Host) -> QUIC+mTLS -> gcp-local -> backend
  curl http://127.0.0.1:25021/status        # aws-local: peers, RTT, services
  curl http://127.0.0.1:25021/metrics

Ctrl-C stops everything.
MSG
if [ "${1:-}" = "--once" ]; then
  curl -fsS -H 'Host: hello.demo.svc.clusterset.local' http://127.0.0.1:25080/
  exit 0
fi
wait
