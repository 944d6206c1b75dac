#!/usr/bin/env bash
# Skybridge vs nginx vs direct TCP, on loopback, in one run:
#   skybridge: client -> gateway A (port-mapped TCP) -> QUIC + mTLS -> gateway B -> server
#   skybridge-tcp: client -> gateway C (routing.tcp_fallback = "always") -> TLS 1.3 + mTLS on
#                  TCP, HTTP/2 streams -> gateway B -> server
#   nginx:     client -> nginx A (stream, proxy_ssl + client cert) -> TLS 1.3 mTLS -> nginx B (stream) -> server
#   direct:    client -> server
# Metrics: iperf3 throughput with 1 and 8 flows and the proxies' CPU seconds per GB, rrlat
# request/response latency (p50, p99) at a fixed rate, new connections/s (wrk, Connection: close,
# to an nginx HTTP origin), and the proxies' memory per held idle connection (1,000 and 10,000).
# Each measurement runs BENCH_RUNS times (interleaved across paths); the median is reported.
# Prints one table and writes it to bench/results/latest.md. See bench/README.md.
#
# Usage: bench/run.sh [--quick]
#   --quick   1 run, 3 s per iperf3 test and per latency test (smoke test)
# Environment (defaults in brackets):
#   BENCH_RUNS [3]  BENCH_DURATION [10] (iperf3 seconds)  BENCH_RR_DURATION [${BENCH_DURATION}s]
#   BENCH_RR_WARMUP [1s]  BENCH_RR_RATE [2000]  BENCH_RR_CONNECTIONS [8]  BENCH_RR_SIZE [64]
#   BENCH_CR_DURATION [${BENCH_DURATION}] (wrk seconds)  BENCH_CR_CONNECTIONS [16]
#   BENCH_MEM_CONNS ["1000 10000"] (held idle connections; "" skips the memory test)
#   BENCH_PATHS [direct nginx skybridge skybridge-tcp]
#   BENCH_OUT [bench/results/latest.md]  BENCH_KEEP_TMP [0]  NGINX [/usr/sbin/nginx]
#   NGINX_MODULES [/usr/lib/nginx/modules]  CARGO_TARGET_DIR [target]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${BENCH_RUNS:-3}
IPERF_TIME=${BENCH_DURATION:-10}
RR_DURATION=${BENCH_RR_DURATION:-${IPERF_TIME}s}
RR_WARMUP=${BENCH_RR_WARMUP:-1s}
RR_RATE=${BENCH_RR_RATE:-2000}
RR_CONNECTIONS=${BENCH_RR_CONNECTIONS:-8}
RR_SIZE=${BENCH_RR_SIZE:-64}
CR_DURATION=${BENCH_CR_DURATION:-$IPERF_TIME}
CR_CONNECTIONS=${BENCH_CR_CONNECTIONS:-16}
read -r -a MEM_CONNS <<<"${BENCH_MEM_CONNS-1000 10000}"
OUT_MD=${BENCH_OUT:-$ROOT/bench/results/latest.md}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
NGINX=${NGINX:-/usr/sbin/nginx}
NGINX_MODULES=${NGINX_MODULES:-/usr/lib/nginx/modules}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

for arg in "$@"; do
    case $arg in
        --quick) RUNS=1 IPERF_TIME=3 RR_DURATION=3s CR_DURATION=3 ;;
        -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites and build
for cmd in cargo python3 iperf3 wrk; do
    command -v "$cmd" >/dev/null || die "$cmd not found (see bench/README.md for prerequisites)"
done
[[ -x $NGINX ]] || die "nginx not found at $NGINX (apt-get install -y nginx libnginx-mod-stream)"
[[ -f $NGINX_MODULES/ngx_stream_module.so ]] \
    || die "$NGINX_MODULES/ngx_stream_module.so not found (apt-get install -y libnginx-mod-stream)"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $IPERF_TIME =~ ^[1-9][0-9]*$ ]] || die "BENCH_DURATION must be a positive number of seconds"
[[ $CR_DURATION =~ ^[1-9][0-9]*$ ]] || die "BENCH_CR_DURATION must be a positive number of seconds"
# Every process inherits this: 10,000 held connections take 10,000 descriptors on each side.
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
ulimit -n "$NOFILE"
for n in "${MEM_CONNS[@]}"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_MEM_CONNS must be positive integers"
    ((n + 256 <= NOFILE)) || die "BENCH_MEM_CONNS $n needs an open-file limit above $((n + 256)); the hard limit is $NOFILE"
done

log "building release binaries"
cargo build --release --bin skybridge --bin rrlat
SKY=$TARGET_DIR/release/skybridge
RRLAT=$TARGET_DIR/release/rrlat
[[ -x $SKY && -x $RRLAT ]] || die "binaries not found in $TARGET_DIR/release"

# ---------------------------------------------------------------- processes and clean-up
TMP=$(mktemp -d "${TMPDIR:-/tmp}/skybridge-bench.XXXXXX")
PIDS=()
NAMES=()

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ $rc -ne 0 || $KEEP_TMP == 1 ]]; then
        log "kept logs, configs and certificates in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME COMMAND...: runs COMMAND in the background with output in $TMP/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
    log "started $name (pid $!)"
}

# wait_for NAME SECONDS COMMAND...: polls COMMAND until it succeeds; fails early if a process died.
wait_for() {
    local name=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs)) i
    until "$@" >/dev/null 2>&1; do
        for i in "${!PIDS[@]}"; do
            if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
                tail -n 20 "$TMP/${NAMES[$i]}.log" >&2 || true
                die "${NAMES[$i]} exited while waiting for $name"
            fi
        done
        ((SECONDS < deadline)) || die "$name not ready after ${secs}s (logs in $TMP)"
        sleep 0.2
    done
    log "$name ready"
}

http_ok() {
    python3 -c 'import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)' "$1"
}

# echo_ok PORT: a round trip through PORT comes back intact (proves the whole path works).
echo_ok() {
    python3 - "$1" <<'EOF'
import socket, sys
msg = b"skybridge-bench-probe\n" * 4
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3) as s:
    s.settimeout(3)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
sys.exit(0 if got == msg else 1)
EOF
}

# free_ports N: N loopback ports below 32768 (the ephemeral range collides) free for TCP and UDP.
free_ports() {
    python3 -c 'import sys; sys.path.insert(0, sys.argv[1])
from benchlib import free_ports
print(" ".join(map(str, free_ports(int(sys.argv[2])))))' "$ROOT/bench" "$1"
}

# ---------------------------------------------------------------- ports, certificates, configs
read -r P_IPERF P_ECHO GA_TUNNEL GA_ADMIN GA_IPERF GA_ECHO GB_TUNNEL GB_ADMIN \
    NA_IPERF NA_ECHO NB_IPERF NB_ECHO GC_TUNNEL GC_ADMIN GC_IPERF GC_ECHO \
    P_WEB GA_WEB GC_WEB NA_WEB NB_WEB <<<"$(free_ports 21)"

log "creating certificates in $TMP"
"$SKY" ca init --trust-domain bench.local --out "$TMP/ca" >/dev/null
for c in gw-a gw-b gw-c nginx-a; do
    "$SKY" ca issue --ca "$TMP/ca" --cluster "$c" --out "$TMP/$c" >/dev/null
done
# nginx A verifies nginx B by name, like a real deployment would (the leaves have no DNS SAN otherwise).
"$SKY" ca issue --ca "$TMP/ca" --cluster nginx-b --dns nginx-b.bench.local --out "$TMP/nginx-b" >/dev/null

# service NAME PORT [ENDPOINT]: one tcp service hosted by gw-b, with its endpoint on gateway B.
service() {
    printf '\n[[services]]\nnamespace = "bench"\nname = "%s"\nclusters = ["gw-b"]\n' "$1"
    printf '[[services.ports]]\nport = %s\nprotocol = "tcp"\n' "$2"
    [[ -z ${3:-} ]] || printf 'endpoints = ["127.0.0.1:%s"]\n' "$3"
}

services() { # $1 = "local" to add the local endpoints (gateway B)
    local local=""
    [[ $1 == local ]] && local=1
    service iperf 5201 "${local:+$P_IPERF}"
    service echo 7000 "${local:+$P_ECHO}"
    service web 80 "${local:+$P_WEB}"
}

gateway_head() { # cluster cloud tunnel admin
    cat <<EOF
[gateway]
cluster = "$1"
cloud = "$2"
region = "bench"
trust_domain = "bench.local"

[tls]
cert = "$1/cert.pem"
key = "$1/key.pem"
trust_bundle = "$1/ca.pem"

[limits]
# One tunnel connection carries every held connection of the memory test as a stream.
max_streams_per_peer = 16384

[listen]
tunnel = "127.0.0.1:$3"
sni = "off"
http = "off"
admin = "127.0.0.1:$4"
EOF
}

{
    gateway_head gw-a aws "$GA_TUNNEL" "$GA_ADMIN"
    cat <<EOF

[[listen.tcp]]
address = "127.0.0.1:$GA_IPERF"
service = "iperf.bench"
port = 5201

[[listen.tcp]]
address = "127.0.0.1:$GA_ECHO"
service = "echo.bench"
port = 7000

[[listen.tcp]]
address = "127.0.0.1:$GA_WEB"
service = "web.bench"
port = 80

[[peers]]
cluster = "gw-b"
cloud = "gcp"
address = "127.0.0.1:$GB_TUNNEL"
EOF
    services remote
} >"$TMP/gw-a.toml"

# Gateway C: as A, but every stream to B over TLS on TCP (the UDP-blocked path's transport).
sed -e "s/^cluster = \"gw-a\"/cluster = \"gw-c\"/" -e "s#gw-a/#gw-c/#g" \
    -e "s/127.0.0.1:$GA_TUNNEL/127.0.0.1:$GC_TUNNEL/" -e "s/127.0.0.1:$GA_ADMIN/127.0.0.1:$GC_ADMIN/" \
    -e "s/127.0.0.1:$GA_IPERF/127.0.0.1:$GC_IPERF/" -e "s/127.0.0.1:$GA_ECHO/127.0.0.1:$GC_ECHO/" \
    -e "s/127.0.0.1:$GA_WEB/127.0.0.1:$GC_WEB/" \
    "$TMP/gw-a.toml" >"$TMP/gw-c.toml"
printf '\n[routing]\ntcp_fallback = "always"\n' >>"$TMP/gw-c.toml"

{
    gateway_head gw-b gcp "$GB_TUNNEL" "$GB_ADMIN"
    cat <<EOF

[[peers]]
cluster = "gw-a"
cloud = "aws"
address = "127.0.0.1:$GA_TUNNEL"
EOF
    services local
} >"$TMP/gw-b.toml"

nginx_head() { # name workers
    cat <<EOF
load_module $NGINX_MODULES/ngx_stream_module.so;
worker_processes ${2:-2};  # the gateway runs on the machine's 2 cores too
worker_rlimit_nofile $NOFILE;
pid $TMP/$1.pid;
error_log $TMP/$1.error.log warn;
# A proxied connection takes two: 10,000 held connections must fit in one worker.
events { worker_connections 24000; }
EOF
}

# The HTTP origin of the connection-rate test, shared by every path.
{
    nginx_head nginx-origin 1
    cat <<EOF
http {
    access_log off;
    server { listen 127.0.0.1:$P_WEB; location / { return 200 "ok\n"; } }
}
EOF
} >"$TMP/nginx-origin.conf"


{
    nginx_head nginx-b
    cat <<EOF
stream {
    ssl_protocols TLSv1.3;
    ssl_certificate $TMP/nginx-b/cert.pem;
    ssl_certificate_key $TMP/nginx-b/key.pem;
    ssl_verify_client on;
    ssl_client_certificate $TMP/nginx-b/ca.pem;
    ssl_verify_depth 2;
    server { listen 127.0.0.1:$NB_IPERF ssl; proxy_pass 127.0.0.1:$P_IPERF; }
    server { listen 127.0.0.1:$NB_ECHO ssl; proxy_pass 127.0.0.1:$P_ECHO; }
    server { listen 127.0.0.1:$NB_WEB ssl; proxy_pass 127.0.0.1:$P_WEB; }
}
EOF
} >"$TMP/nginx-b.conf"

{
    nginx_head nginx-a
    cat <<EOF
stream {
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.3;
    proxy_ssl_certificate $TMP/nginx-a/cert.pem;
    proxy_ssl_certificate_key $TMP/nginx-a/key.pem;
    proxy_ssl_trusted_certificate $TMP/nginx-a/ca.pem;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 2;
    proxy_ssl_name nginx-b.bench.local;
    proxy_ssl_server_name on;
    server { listen 127.0.0.1:$NA_IPERF; proxy_pass 127.0.0.1:$NB_IPERF; }
    server { listen 127.0.0.1:$NA_ECHO; proxy_pass 127.0.0.1:$NB_ECHO; }
    server { listen 127.0.0.1:$NA_WEB; proxy_pass 127.0.0.1:$NB_WEB; }
}
EOF
} >"$TMP/nginx-a.conf"

for n in nginx-origin nginx-b nginx-a; do
    "$NGINX" -t -q -p "$TMP" -c "$TMP/$n.conf" -e "$TMP/$n.error.log" || die "$n config is invalid"
done
for g in gw-a gw-b gw-c; do
    SKYBRIDGE_LOG=warn "$SKY" gateway --config "$TMP/$g.toml" --check-config >/dev/null \
        || die "$g config is invalid ($TMP/$g.toml)"
done

# ---------------------------------------------------------------- start everything
start iperf3-server iperf3 --server --bind 127.0.0.1 --port "$P_IPERF" --forceflush
start echo-server "$RRLAT" serve --listen "127.0.0.1:$P_ECHO"
start nginx-origin "$NGINX" -p "$TMP" -c "$TMP/nginx-origin.conf" -e "$TMP/nginx-origin.error.log" -g 'daemon off;'
start nginx-b "$NGINX" -p "$TMP" -c "$TMP/nginx-b.conf" -e "$TMP/nginx-b.error.log" -g 'daemon off;'
start nginx-a "$NGINX" -p "$TMP" -c "$TMP/nginx-a.conf" -e "$TMP/nginx-a.error.log" -g 'daemon off;'
start gw-b env SKYBRIDGE_LOG=warn "$SKY" gateway --config "$TMP/gw-b.toml"
start gw-a env SKYBRIDGE_LOG=warn "$SKY" gateway --config "$TMP/gw-a.toml"
start gw-c env SKYBRIDGE_LOG=warn "$SKY" gateway --config "$TMP/gw-c.toml"

wait_for iperf3-server 10 grep -q "Server listening" "$TMP/iperf3-server.log"
wait_for echo-server 10 echo_ok "$P_ECHO"
wait_for nginx-origin 10 http_ok "http://127.0.0.1:$P_WEB/"
wait_for gw-b 20 http_ok "http://127.0.0.1:$GB_ADMIN/readyz"
wait_for gw-a 20 http_ok "http://127.0.0.1:$GA_ADMIN/readyz"
wait_for "nginx path" 20 echo_ok "$NA_ECHO"
wait_for "skybridge path" 20 echo_ok "$GA_ECHO"
wait_for gw-c 20 http_ok "http://127.0.0.1:$GC_ADMIN/readyz"
wait_for "skybridge-tcp path" 20 echo_ok "$GC_ECHO"

# ---------------------------------------------------------------- measure
declare -A IPERF_PORT=([direct]=$P_IPERF [nginx]=$NA_IPERF [skybridge]=$GA_IPERF [skybridge-tcp]=$GC_IPERF)
declare -A ECHO_PORT=([direct]=$P_ECHO [nginx]=$NA_ECHO [skybridge]=$GA_ECHO [skybridge-tcp]=$GC_ECHO)
declare -A WEB_PORT=([direct]=$P_WEB [nginx]=$NA_WEB [skybridge]=$GA_WEB [skybridge-tcp]=$GC_WEB)
read -r -a PATHS <<<"${BENCH_PATHS:-direct nginx skybridge skybridge-tcp}"
RESULTS=$TMP/results.tsv
: >"$RESULTS"

# iperf_gbps PORT FLOWS: prints the received throughput in Gbit/s.
iperf_gbps() {
    local out
    out=$(iperf3 --client 127.0.0.1 --port "$1" --parallel "$2" --time "$IPERF_TIME" \
        --connect-timeout 5000 --json) || { printf '%s\n' "$out" >>"$TMP/iperf3-client-errors.log"; return 1; }
    python3 -c 'import json, sys
d = json.load(sys.stdin)
if "error" in d: sys.exit(d["error"])
print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))' <<<"$out"
}

# The proxy processes of each path, whose CPU time is charged to the bytes it moves.
declare -A PROXIES=([direct]="" [nginx]="nginx-a nginx-b" [skybridge]="gw-a gw-b" [skybridge-tcp]="gw-c gw-b")

# pids_of NAME...: the PIDs of the named processes.
pids_of() {
    local name i
    for name in "$@"; do
        for i in "${!NAMES[@]}"; do [[ ${NAMES[$i]} == "$name" ]] && echo "${PIDS[$i]}"; done
    done
}

# cpu_seconds NAME...: user + system CPU seconds so far of the named processes and their
# children (nginx's workers).
cpu_seconds() {
    local pids
    mapfile -t pids < <(pids_of "$@")
    python3 - "${pids[@]}" <<'EOF'
import os, sys
roots = set(sys.argv[1:])
ticks = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    # After the command: state, ppid, ..., utime (index 11), stime (index 12).
    if pid in roots or f[1] in roots:
        ticks += int(f[11]) + int(f[12])
print(ticks / os.sysconf("SC_CLK_TCK"))
EOF
}

measure_iperf() { # path flows run
    local v cpu0 cpu1 cpu
    cpu0=$(cpu_seconds ${PROXIES[$1]})
    if ! v=$(iperf_gbps "${IPERF_PORT[$1]}" "$2"); then
        log "  iperf3 $1 -P $2 failed; retrying once"
        sleep 2
        v=$(iperf_gbps "${IPERF_PORT[$1]}" "$2") || { log "  iperf3 $1 -P $2 failed"; v=nan; }
    fi
    cpu1=$(cpu_seconds ${PROXIES[$1]})
    # CPU seconds of both proxies per GB received (nan without proxies or a throughput).
    cpu=$(python3 -c 'import sys
c, g, t = float(sys.argv[2]) - float(sys.argv[1]), float(sys.argv[3]), float(sys.argv[4])
print("nan" if c <= 0 or not g > 0 else "%.3f" % (c / (g * t / 8)))' "$cpu0" "$cpu1" "$v" "$IPERF_TIME")
    printf 'iperf%s\t%s\t%s\t%s\n' "$2" "$1" "$3" "$v" >>"$RESULTS"
    printf 'cpu%s\t%s\t%s\t%s\n' "$2" "$1" "$3" "$cpu" >>"$RESULTS"
    log "  $1 iperf3 -P $2: $v Gbit/s, $cpu CPU-s/GB"
    sleep 0.5 # let the iperf3 server get ready for the next test
}

measure_rr() { # path run
    local v
    v=$("$RRLAT" run --target "127.0.0.1:${ECHO_PORT[$1]}" --rate "$RR_RATE" --duration "$RR_DURATION" \
        --connections "$RR_CONNECTIONS" --size "$RR_SIZE" --warmup "$RR_WARMUP" --json) \
        || { log "  rrlat $1 failed"; [[ $v == '{'* ]] || v='{}'; }
    printf 'rr\t%s\t%s\t%s\n' "$1" "$2" "$v" >>"$RESULTS"
    log "  $1 rrlat: $v"
}

measure_connrate() { # path run
    local out v errors
    out=$(wrk -t2 -c"$CR_CONNECTIONS" -d"${CR_DURATION}s" -H "Connection: close" \
        "http://127.0.0.1:${WEB_PORT[$1]}/" 2>&1) || { log "  wrk $1 failed: $out"; out=""; }
    v=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    # Socket errors (connect, read, write, timeout) and non-2xx answers.
    errors=$(awk '/Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' <<<"$out")
    printf 'cr\t%s\t%s\t%s %s\n' "$1" "$2" "${v:-nan}" "$errors" >>"$RESULTS"
    log "  $1 wrk Connection: close: ${v:-failed} conn/s, $errors errors"
}

measure_memory() { # path run
    local n v pids
    [[ -n ${PROXIES[$1]} ]] || return 0
    mapfile -t pids < <(pids_of ${PROXIES[$1]})
    for n in "${MEM_CONNS[@]}"; do
        v=$(python3 "$ROOT/bench/held-memory.py" "${ECHO_PORT[$1]}" "$n" "${pids[@]}") \
            || { log "  held-memory $1 $n failed"; v='{}'; }
        printf 'mem%s\t%s\t%s\t%s\n' "$n" "$1" "$2" "$v" >>"$RESULTS"
        log "  $1 $n held connections: $v"
        sleep 1 # let both proxies close them before the next measurement
    done
}

log "measuring: $RUNS run(s); iperf3 ${IPERF_TIME}s; rrlat $RR_RATE req/s, $RR_CONNECTIONS conns, ${RR_SIZE} B, $RR_DURATION (+$RR_WARMUP warm-up)"
for run in $(seq "$RUNS"); do
    for path in "${PATHS[@]}"; do
        log "run $run/$RUNS: $path"
        measure_iperf "$path" 1 "$run"
        measure_iperf "$path" 8 "$run"
        measure_rr "$path" "$run"
        measure_connrate "$path" "$run"
        measure_memory "$path" "$run"
    done
done

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$OUT_MD")"
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain 2>/dev/null) ]] || GIT_REV="$GIT_REV (dirty)"
MEM_CONNS_LIST="${MEM_CONNS[*]}"
export GIT_REV RUNS IPERF_TIME RR_DURATION RR_WARMUP RR_RATE RR_CONNECTIONS RR_SIZE CR_DURATION CR_CONNECTIONS MEM_CONNS_LIST
BENCH_NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //') \
BENCH_IPERF_VERSION=$(iperf3 --version | head -n 1) \
    python3 - "$RESULTS" "$OUT_MD" <<'EOF'
import json, math, os, platform, statistics, sys, time

results_path, out_path = sys.argv[1], sys.argv[2]
paths = ["direct", "nginx", "skybridge", "skybridge-tcp"]
iperf = {(p, f): [] for p in paths for f in ("1", "8")}
cpu = {(p, f): [] for p in paths for f in ("1", "8")}
rr = {p: [] for p in paths}
mem_conns = os.environ["MEM_CONNS_LIST"].split()
conn_rate = {p: [] for p in paths}
conn_errors = {p: 0 for p in paths}
mem = {(p, n): [] for p in paths for n in mem_conns}
for line in open(results_path):
    kind, path, run, value = line.rstrip("\n").split("\t", 3)
    if kind.startswith("iperf"):
        iperf[(path, kind[5:])].append(float(value))
    elif kind.startswith("cpu"):
        cpu[(path, kind[3:])].append(float(value))
    elif kind == "cr":
        rate, errors = value.split()
        conn_rate[path].append(float(rate))
        conn_errors[path] += int(errors)
    elif kind.startswith("mem"):
        held = json.loads(value)
        # A run where not every connection echoed measured something else.
        ok = held.get("echoed") == held.get("connections")
        mem[(path, kind[3:])].append(held["kib_per_conn"] if ok else math.nan)
    else:
        rr[path].append(json.loads(value))

def med(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else math.nan

def rr_med(path, key):
    return med([r[key] for r in rr[path] if r.get("ok", 0) > 0])

def fmt(v, digits=1):
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"

def ratio(v):
    return "n/a" if math.isnan(v) or math.isinf(v) else f"{v:.2f}×"

def div(a, b):
    return a / b if b > 0 and not math.isnan(a) and not math.isnan(b) else math.nan

m = {}
for p in paths:
    m[p] = {
        "t1": med(iperf[(p, "1")]), "t8": med(iperf[(p, "8")]),
        "c1": med(cpu[(p, "1")]), "c8": med(cpu[(p, "8")]),
        "p50": rr_med(p, "p50_us"), "p99": rr_med(p, "p99_us"),
        "cr": med(conn_rate[p]),
        **{"mem" + n: med(mem[(p, n)]) for n in mem_conns},
        "errors": sum(r.get("errors", 0) for r in rr[p]),
        "requests": sum(r.get("requests", 0) for r in rr[p]),
        "failed_runs": sum(1 for r in rr[p] if r.get("ok", 0) == 0),
    }

def added(key, path="skybridge"):
    d, n, s = m["direct"][key], m["nginx"][key], m[path][key]
    return div(s - d, n - d)

mem_heads = "".join(f" KiB/conn {int(n):,} |" for n in mem_conns)
rows = ["| path | 1-flow Gbit/s | 8-flow Gbit/s | CPU-s/GB 1 flow | CPU-s/GB 8 flows | p50 µs | p99 µs "
        f"| new conn/s |{mem_heads} errors (rr, wrk) |",
        "|---|" + "---:|" * (8 + len(mem_conns))]
for p in paths:
    e = m[p]
    errs = f"{e['errors']}/{e['requests']}, {conn_errors[p]}" + (f" ({e['failed_runs']} rr runs failed)" if e["failed_runs"] else "")
    mems = "".join(f" {fmt(e['mem' + n])} |" for n in mem_conns)
    rows.append(f"| {p} | {fmt(e['t1'], 2)} | {fmt(e['t8'], 2)} | {fmt(e['c1'], 2)} | {fmt(e['c8'], 2)} "
                f"| {fmt(e['p50'])} | {fmt(e['p99'])} | {fmt(e['cr'], 0)} |{mems} {errs} |")
n = m["nginx"]
for p in ("skybridge", "skybridge-tcp"):
    s = m[p]
    mems = "".join(f" {ratio(div(s['mem' + k], n['mem' + k]))} |" for k in mem_conns)
    rows.append(f"| **{p} vs nginx** | {ratio(div(s['t1'], n['t1']))} | {ratio(div(s['t8'], n['t8']))} "
                f"| {ratio(div(s['c1'], n['c1']))} | {ratio(div(s['c8'], n['c8']))} "
                f"| {ratio(added('p50', p))} added | {ratio(added('p99', p))} added "
                f"| {ratio(div(s['cr'], n['cr']))} |{mems} |")
table = "\n".join(rows)

env = os.environ
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
header = f"""# Skybridge benchmark: skybridge vs nginx vs direct (loopback)

- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {env['GIT_REV']}
- host: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}
- peers: {env['BENCH_NGINX_VERSION']}, {env['BENCH_IPERF_VERSION']}
- iperf3: {env['IPERF_TIME']} s per test, `-P 1` and `-P 8`, received throughput
- rrlat: {env['RR_RATE']} req/s over {env['RR_CONNECTIONS']} connections, {env['RR_SIZE']} B, {env['RR_DURATION']} (+{env['RR_WARMUP']} warm-up), latency from the scheduled send time
- new conn/s: wrk, 2 threads, {env['CR_CONNECTIONS']} connections, `Connection: close`, {env['CR_DURATION']} s, to an nginx HTTP origin (1 worker)
- KiB/conn: RSS of both proxies held − before, per connection, for {', '.join(mem_conns) or 'no'} idle connections that each carried one byte both ways
- every figure is the median of {env['RUNS']} run(s), interleaved across paths
"""
notes = """
CPU-s/GB: user + system CPU seconds of both proxies of the path (nginx's workers included) per
GB received by iperf3; its ratio is skybridge / nginx (lower is better for skybridge). The same
holds for KiB/conn (both proxies' RSS per held connection, nginx's workers included).
Ratios: throughput and new conn/s = skybridge / nginx (higher is better for skybridge); latency "added" =
(skybridge − direct) / (nginx − direct), the latency skybridge adds over a direct connection
relative to what nginx adds (lower is better for skybridge).
"""
raw = ["", "## Raw runs", "", "| path | metric | runs |", "|---|---|---|"]
for p in paths:
    for f in ("1", "8"):
        raw.append(f"| {p} | {f}-flow Gbit/s | {', '.join(fmt(v, 2) for v in iperf[(p, f)])} |")
    for key in ("p50_us", "p99_us", "p999_us", "max_us", "achieved_rate", "errors", "send_lag_p99_us"):
        raw.append(f"| {p} | rr {key} | {', '.join(str(r.get(key, 'n/a')) for r in rr[p])} |")
    raw.append(f"| {p} | new conn/s | {', '.join(fmt(v, 0) for v in conn_rate[p])} |")
    for k in mem_conns:
        raw.append(f"| {p} | KiB/conn {k} | {', '.join(fmt(v) for v in mem[(p, k)])} |")

with open(out_path, "w") as f:
    f.write(header + "\n" + table + "\n" + notes + "\n".join(raw) + "\n")
print()
print(table)
print(notes.strip())
print(f"\nwritten to {out_path}")
EOF
