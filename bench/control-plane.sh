#!/usr/bin/env bash
# Control-plane benchmark: catalog merge, federator RSS, propagation to 3 real + 50 simulated
# gateways, delta vs snapshot size. Env: BENCH_SERVICES (10000), BENCH_CHANGES (20),
# BENCH_SIMULATED (50). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin skybridge
SKYBRIDGE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/skybridge" \
  cargo bench --quiet -p skybridge-tests --bench propagation
