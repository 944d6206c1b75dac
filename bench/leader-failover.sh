#!/usr/bin/env bash
# Leader failover benchmark: kill -9 the leader replica 10 times and time each kill until the
# new leader writes its first catalog version. Needs Debian's etcd-server (scripts/test.sh
# installs it). Env: BENCH_KILLS (10), BENCH_LEASE_TTL (5s). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin skybridge
SKYBRIDGE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/skybridge" \
  cargo bench --quiet -p skybridge-tests --bench leader_failover
