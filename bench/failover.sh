#!/usr/bin/env bash
# Failover benchmark: new connections at BENCH_RATE/s (200) across BENCH_CUTS (4) cuts of the
# nearest cloud's link, then BENCH_JITTER_SECS (60) of ±20 % jitter between two near-equal
# clouds. Three gateway processes and a federator on loopback, WAN emulated by the userspace
# relay. Prints markdown tables (detection, failed connections, recovery, route changes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin skybridge
SKYBRIDGE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/skybridge" \
  cargo bench --quiet -p skybridge-tests --bench failover
