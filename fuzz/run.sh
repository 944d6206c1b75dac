#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time and prints a summary.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
#
# Env: TARGETS="sni http_head" to run a subset; CARGO_BUILD_JOBS to bound the build.
# Exits non-zero if any target produced a crash/leak/timeout/oom artifact (fuzz/artifacts/<target>/)
# or could not be run.
set -uo pipefail

SECS="${1:-60}"
case "$SECS" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
TARGETS="${TARGETS:-sni http_head stream_header catalog_file policy_body tcp_frames dns_request}"
LOGS="fuzz/target/run-logs"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi

echo "== building fuzz targets (nightly, ASan, release + debug assertions)"
cargo +nightly fuzz build --fuzz-dir fuzz || exit 2

mkdir -p "$LOGS"
marker="$LOGS/.started"
: > "$marker"
sleep 1 # artifacts must be strictly newer than the marker

rows=()
failed=0
for t in $TARGETS; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    log="$LOGS/$t.log"
    # Long enough to pass the 16384-byte limits of the listeners; the header fits in 4096.
    case "$t" in sni | http_head | catalog_file) max_len=20480 ;; *) max_len=4096 ;; esac
    echo "== fuzzing $t for ${SECS}s (log: $log)"
    cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1
    rc=$?

    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
    if [ -z "$execs" ]; then # fall back to the last status line (#N ...)
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#')
    fi
    execs=${execs:-0}
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' <<<"$done_line")
    took=${took:-$SECS}
    rate=$(( took > 0 ? execs / took : execs ))
    crashes=$(find "fuzz/artifacts/$t" -maxdepth 1 -type f \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) -newer "$marker" | wc -l)

    echo "   ${done_line:-no 'Done' line (exit $rc)}; stat::number_of_executed_units: $execs"
    if [ "$crashes" -gt 0 ]; then
        failed=1
        echo "   !! $crashes artifact(s):"
        find "fuzz/artifacts/$t" -maxdepth 1 -type f -newer "$marker" | sed 's/^/      /'
        grep -m1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" | sed 's/^/      /'
        sed -n '/panicked at/{n;p;}' "$log" | head -n1 | sed 's/^/      /'
    elif [ "$rc" -ne 0 ]; then
        failed=1
        echo "   !! cargo fuzz run exited $rc without an artifact; see $log"
        tail -n 5 "$log" | sed 's/^/      /'
    fi
    rows+=("$t|$took|$execs|$rate|$crashes")
done

echo
printf '%-15s %8s %12s %10s %8s\n' target seconds executions exec/s crashes
for r in "${rows[@]}"; do
    IFS='|' read -r t s e x c <<<"$r"
    printf '%-15s %8s %12s %10s %8s\n' "$t" "$s" "$e" "$x" "$c"
done
exit "$failed"
