#!/usr/bin/env bash
# The dependency rules in deny.toml: banned crates (a second crypto provider, a second rustls or
# hyper major, OpenSSL), licences and sources always; RustSec advisories when its database can be
# fetched (it lives on GitHub, which CI machines here cannot reach: then this says it skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo deny --version >/dev/null 2>&1 || { echo "cargo-deny is not installed: run scripts/test.sh --deps-only" >&2; exit 1; }
cargo deny --log-level error check bans licenses sources
if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
else
  echo "cargo deny: advisories NOT checked (the RustSec database at github.com could not be fetched); bans, licenses and sources passed"
fi
