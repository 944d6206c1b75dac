#!/usr/bin/env bash
# Downloads the CDKTF provider packages pinned in scripts/provider-schemas.txt and keeps only
# their .jsii assembly and package.json (the schemas scripts/check-provider-schemas.py reads):
# the packages themselves are hundreds of megabytes of generated code.
# Usage: scripts/fetch-provider-schemas.sh [CACHE_DIR]
#        (default $SKYBRIDGE_PROVIDER_SCHEMAS or ~/.cache/skybridge/cdktf-schemas)
# Each package lands in CACHE_DIR/<name>-<version>/; present ones are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${1:-${SKYBRIDGE_PROVIDER_SCHEMAS:-$HOME/.cache/skybridge/cdktf-schemas}}"
mkdir -p "$CACHE"
grep -v '^\s*\(#\|$\)' scripts/provider-schemas.txt | while read -r pkg version _provider _pversion; do
  dest="$CACHE/${pkg##*/}-$version"
  if [ -s "$dest/.jsii" ] && [ -s "$dest/package.json" ]; then continue; fi
  echo "downloading $pkg@$version (schema only) into $dest"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent --no-audit --no-fund "$pkg@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/.jsii package/package.json
  mkdir -p "$dest"
  mv "$tmp/package/.jsii" "$tmp/package/package.json" "$dest/"
  rm -rf "$tmp"
done
