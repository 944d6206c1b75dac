#!/usr/bin/env python3
"""Memory per held idle connection through a gateway pair (issue 16).

Two real `skybridge gateway` processes on loopback: gateway A has a port-mapped listener for
`echo.bench`, gateway B delivers it to an echo server (its own process). The benchmark opens N
client connections through A, sends one byte on each and reads its echo (so every connection
has carried data both ways through the tunnel), holds them, and reads both gateways' RSS. The
figure is (RSS held - RSS before) / N, per gateway.

    python3 bench/idle-memory.py                  # builds the release binary
    SKYBRIDGE_BIN=/path/to/skybridge python3 bench/idle-memory.py

Env: BENCH_CONNS ("1000 10000"), BENCH_TRANSPORTS ("quic tcp": the tunnel over QUIC, and over
TLS on TCP with routing.tcp_fallback = "always"). Prints one markdown row per (transport, N);
everything runs on 127.0.0.1 ports below 32768.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import binary, free_ports, hold, raise_nofile, rss_kib

CONNS = [int(n) for n in os.environ.get("BENCH_CONNS", "1000 10000").split()]
TRANSPORTS = os.environ.get("BENCH_TRANSPORTS", "quic tcp").split()
TD = "bench.local"

ECHO = r"""
import asyncio, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def echo(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await s.serve_forever()
asyncio.run(main())
"""


def gateway_toml(tmp, cluster, tunnel, admin, peer, peer_tunnel, extra):
    return (
        f'[gateway]\ncluster = "{cluster}"\ncloud = "aws"\nregion = "r"\ntrust_domain = "{TD}"\n'
        f'[tls]\ncert = "{tmp}/{cluster}/cert.pem"\nkey = "{tmp}/{cluster}/key.pem"\ntrust_bundle = "{tmp}/{cluster}/ca.pem"\n'
        f'[listen]\ntunnel = "127.0.0.1:{tunnel}"\nsni = "off"\nhttp = "off"\nadmin = "127.0.0.1:{admin}"\n'
        # Enough streams on one tunnel connection for every held client connection.
        "[limits]\nmax_streams_per_peer = 16384\n"
        f"{extra}\n"
        f'[[peers]]\ncluster = "{peer}"\ncloud = "gcp"\naddress = "127.0.0.1:{peer_tunnel}"\n'
    )


def service(endpoint):
    eps = f'endpoints = ["127.0.0.1:{endpoint}"]' if endpoint else ""
    return (
        '\n[[services]]\nnamespace = "bench"\nname = "echo"\nclusters = ["gw-b"]\n'
        f'[[services.ports]]\nport = 7000\nprotocol = "tcp"\n{eps}\n'
    )


def wait_ready(admin, proc, log):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"a gateway exited: see {log}")
        try:
            with socket.create_connection(("127.0.0.1", admin), timeout=0.5) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"a gateway did not become ready: see {log}")


def run(bin_path, transport, n):
    tmp = tempfile.mkdtemp(prefix="skybridge-mem-")
    procs = []
    try:
        sh = lambda *a: subprocess.run([bin_path, *a], check=True, capture_output=True)
        sh("ca", "init", "--trust-domain", TD, "--out", f"{tmp}/ca")
        for c in ("gw-a", "gw-b"):
            sh("ca", "issue", "--ca", f"{tmp}/ca", "--cluster", c, "--out", f"{tmp}/{c}")
        ta, aa, tb, ab, entry, echo = free_ports(6)
        procs.append(subprocess.Popen([sys.executable, "-c", ECHO, str(echo)]))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", echo), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        routing = '[routing]\ntcp_fallback = "always"\n' if transport == "tcp" else ""
        listen = f'[[listen.tcp]]\naddress = "127.0.0.1:{entry}"\nservice = "echo.bench"\nport = 7000\n'
        with open(f"{tmp}/b.toml", "w") as f:
            f.write(gateway_toml(tmp, "gw-b", tb, ab, "gw-a", ta, "") + service(echo))
        with open(f"{tmp}/a.toml", "w") as f:
            f.write(gateway_toml(tmp, "gw-a", ta, aa, "gw-b", tb, listen + routing) + service(None))
        gws = {}
        for name, admin in (("b", ab), ("a", aa)):
            log = open(f"{tmp}/{name}.log", "w")
            env = dict(os.environ, SKYBRIDGE_LOG="warn")
            p = subprocess.Popen([bin_path, "gateway", "--config", f"{tmp}/{name}.toml"], stdout=log, stderr=log, env=env)
            procs.append(p)
            wait_ready(admin, p, f"{tmp}/{name}.log")
            gws[name] = p
        # Warm up: the tunnel connection and the first stream exist before the baseline.
        warm, ok = hold(entry, 4)
        if ok != 4:
            logs = "".join(open(f"{tmp}/{n}.log").read()[-2000:] for n in ("a", "b"))
            sys.exit(f"the path does not work ({ok} of 4 echoes):\n{logs}")
        for s in warm:
            s.close()
        time.sleep(1.0)
        base = {k: rss_kib(p.pid) for k, p in gws.items()}
        conns, ok = hold(entry, n)
        time.sleep(1.0)
        held = {k: rss_kib(p.pid) for k, p in gws.items()}
        per = {k: (held[k] - base[k]) / n for k in gws}
        print(
            f"| {transport} | {n:,} | {ok:,} | {base['a'] / 1024:.0f} → {held['a'] / 1024:.0f} | "
            f"{per['a']:.1f} | {base['b'] / 1024:.0f} → {held['b'] / 1024:.0f} | {per['b']:.1f} |",
            flush=True,
        )
        for s in conns:
            s.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    raise_nofile(max(CONNS) + 1024)
    bin_path = binary()
    print("| transport | connections | echoed | gateway A RSS MB (before → held) | A KiB per connection "
          "| gateway B RSS MB (before → held) | B KiB per connection |")
    print("|---|---:|---:|---|---:|---|---:|")
    for t in TRANSPORTS:
        for n in CONNS:
            run(bin_path, t, n)


if __name__ == "__main__":
    main()
