#!/usr/bin/env bash
# Source propagation benchmark: a Cloud Map registration (moto + aws CLI) and a Kubernetes
# watch event, each until every gateway applied it. Env: BENCH_SAMPLES (10), BENCH_INTERVAL (1s).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v moto_server >/dev/null && command -v aws >/dev/null || python3 -m pip install -q "moto[server]" awscli
cargo build --release --quiet --bin skybridge
SKYBRIDGE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/skybridge" \
  cargo bench --quiet -p skybridge-tests --bench sources
