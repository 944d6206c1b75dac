#!/usr/bin/env bash
# Handshake flood benchmark (issue 14): a real gateway process gets 1k, 5k and 20k QUIC client
# Initials that never complete, from one source address and from 64, at BENCH_RATE/s (10000),
# while a legitimate peer keeps opening new connections. Prints a markdown table: peak RSS, CPU
# seconds, bytes sent back, the peer's connections, log lines. Env: BENCH_SIZES
# (1000,5000,20000), BENCH_SOURCES (1,64), BENCH_RATE (10000). SKYBRIDGE_BIN=path runs another
# binary (e.g. an older release build, for a before/after comparison) instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${SKYBRIDGE_BIN:-}" ]]; then
  cargo build --release --quiet --bin skybridge
  SKYBRIDGE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/skybridge"
fi
SKYBRIDGE_BIN="$SKYBRIDGE_BIN" cargo bench --quiet -p skybridge-tests --bench handshake_flood
