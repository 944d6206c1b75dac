#!/usr/bin/env python3
"""Idle-socket benchmark for the federator (issue 14).

A real `skybridge federator` process runs under an open-file limit like a container's
(`prlimit --nofile=N:N`, default 4096). The benchmark opens BENCH_SOCKETS (6000) idle TCP
connections to its REST API port and as many to its control port (never sending a byte), then,
while they are held, asks:

- does `GET /healthz` answer, with what status, and how fast;
- does a TLS handshake with a gateway identity on the control port complete (a new gateway can
  connect);
- how many descriptors the federator holds, and its RSS;

and then how long until `/healthz` answers 200 again once the idle sockets are left alone.

    python3 bench/idle-sockets.py                 # builds the release binary
    SKYBRIDGE_BIN=/path/to/old/skybridge python3 bench/idle-sockets.py   # e.g. a build from before

Env: BENCH_SOCKETS (6000 per port), BENCH_NOFILE (4096, the federator's limit).
Prints one markdown table row; everything runs on 127.0.0.1 ports below 32768.
"""
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from benchlib import binary, free_ports

SOCKETS = int(os.environ.get("BENCH_SOCKETS", "6000"))
NOFILE = int(os.environ.get("BENCH_NOFILE", "4096"))
TD = "bench.skybridge"


def healthz(port, timeout=5.0):
    """(status or error text, seconds) of one GET /healthz."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = s.recv(64).decode(errors="replace")
            status = head.split(" ")[1] if head.startswith("HTTP/1.1 ") else f"garbage {head!r}"
    except OSError as e:
        status = f"no answer ({type(e).__name__})"
    return status, time.monotonic() - start


def gateway_handshake(port, certs, timeout=5.0):
    """Whether a TLS handshake with a gateway identity completes on the control port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem"))
    ctx.set_alpn_protocols(["h2"])
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="federator.skybridge") as tls:
                tls.settimeout(timeout)
                return f"ok ({(time.monotonic() - start) * 1000:.0f} ms)" if tls.version() else "failed"
    except (OSError, ssl.SSLError) as e:
        return f"failed ({type(e).__name__})"


def proc_stats(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) // 1024
    return fds, rss


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * SOCKETS + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"this shell's hard open-file limit {hard} is below the {need} sockets needed; lower BENCH_SOCKETS")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))
    bin_path = binary()
    tmp = tempfile.mkdtemp(prefix="skybridge-idle-")
    try:
        run = lambda *a: subprocess.run([bin_path, *a], check=True, capture_output=True)
        run("ca", "init", "--trust-domain", TD, "--out", f"{tmp}/ca")
        run("ca", "issue", "--ca", f"{tmp}/ca", "--federator", "--dns", "federator.skybridge", "--out", f"{tmp}/fed")
        run("ca", "issue", "--ca", f"{tmp}/ca", "--cluster", "aws-1", "--out", f"{tmp}/gw")
        control, api = free_ports(2)
        with open(f"{tmp}/catalog.toml", "w") as f:
            f.write('[[clusters]]\nid = "aws-1"\ncloud = "aws"\nregion = "us-east-1"\n')
        with open(f"{tmp}/federator.toml", "w") as f:
            f.write(
                f'[federator]\ntrust_domain = "{TD}"\ndata_dir = "{tmp}/data"\n'
                f'[tls]\ncert = "{tmp}/fed/cert.pem"\nkey = "{tmp}/fed/key.pem"\ntrust_bundle = "{tmp}/fed/ca.pem"\n'
                f'[listen]\ncontrol = "127.0.0.1:{control}"\napi = "127.0.0.1:{api}"\n'
                f'[[sources]]\ntype = "static"\nid = "static"\npath = "{tmp}/catalog.toml"\n'
            )
        log = open(f"{tmp}/fed.log", "w")
        fed = subprocess.Popen(
            ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", bin_path, "federator", "--config", f"{tmp}/federator.toml"],
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            for _ in range(200):
                if healthz(api, 0.5)[0] == "200":
                    break
                time.sleep(0.05)
            else:
                sys.exit("the federator did not start: see " + f"{tmp}/fed.log")
            base_fds, base_rss = proc_stats(fed.pid)
            held, refused = [], 0
            start = time.monotonic()
            for port in (api, control):
                for _ in range(SOCKETS):
                    s = socket.socket()
                    s.setblocking(False)
                    try:
                        s.connect(("127.0.0.1", port))
                    except BlockingIOError:
                        pass
                    except OSError:
                        refused += 1
                        s.close()
                        continue
                    held.append(s)
            time.sleep(1.0)
            fds, rss = proc_stats(fed.pid)
            status, secs = healthz(api)
            handshake = gateway_handshake(control, f"{tmp}/gw")
            # Left alone (still open on our side): when does /healthz answer 200 again?
            recovered = None
            while time.monotonic() - start < 60:
                st, _ = healthz(api, 1.0)
                if st == "200":
                    recovered = time.monotonic() - start
                    break
                time.sleep(0.2)
            log.flush()
            with open(f"{tmp}/fed.log") as f:
                lines = sum(1 for _ in f)
            print("| idle sockets (API + control) | federator nofile | fds before → held | RSS MB before → held "
                  "| /healthz while held | gateway TLS handshake while held | /healthz 200 again after | log lines |")
            print("|---|---:|---|---|---|---|---:|---:|")
            rec = f"{recovered:.1f} s" if recovered is not None else "> 60 s"
            print(f"| {SOCKETS} + {SOCKETS} | {NOFILE} | {base_fds} → {fds} | {base_rss} → {rss} "
                  f"| {status} in {secs * 1000:.0f} ms | {handshake} | {rec} | {lines} |")
            for s in held:
                s.close()
        finally:
            fed.kill()
            fed.wait()
    finally:
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
