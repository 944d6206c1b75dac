"""Helpers shared by the Python benchmarks in this folder."""
import os
import resource
import selectors
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary():
    """`SKYBRIDGE_BIN`, or the release binary built from this tree."""
    b = os.environ.get("SKYBRIDGE_BIN")
    if b:
        return b
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "skybridge"], cwd=ROOT, check=True)
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "skybridge")


def free_ports(n):
    """Loopback ports below 32768 (the ephemeral range collides) free for both TCP and UDP (a
    gateway's tunnel port serves both)."""
    out, port = [], 20000 + (os.getpid() * 7 % 9000)
    while len(out) < n:
        port += 1
        t, u = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", port))
            u.bind(("127.0.0.1", port))
            out.append(port)
        except OSError:
            pass
        finally:
            t.close()
            u.close()
    return out


def raise_nofile(need):
    """Raises this process's open-file limit to its hard limit; exits if that is below `need`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"this shell's hard open-file limit {hard} is below the {need} needed; lower the connection count")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    """Resident set size of one process, KiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def rss_tree_kib(pids):
    """Resident set size of the processes and their children (nginx's workers), KiB."""
    roots, total = {str(p) for p in pids}, 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            if pid in roots or ppid in roots:
                total += rss_kib(pid)
        except (OSError, StopIteration):
            pass
    return total


def hold(port, n):
    """Opens n connections to port (an echo service), sends a byte on each and reads it back;
    returns the open sockets and how many echoed. Exits if the echoes stall for 30 s."""
    sel = selectors.DefaultSelector()
    conns, done = [], 0
    for first in range(0, n, 500):
        for _ in range(min(500, n - first)):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_WRITE)
            conns.append(s)
        deadline = time.monotonic() + 30
        while sel.get_map():
            for key, ev in sel.select(timeout=1):
                s = key.fileobj
                if ev & selectors.EVENT_WRITE:
                    try:
                        s.send(b"x")
                        sel.modify(s, selectors.EVENT_READ)
                    except OSError:
                        sel.unregister(s)
                    continue
                try:
                    done += 1 if s.recv(16) else 0
                except OSError:
                    pass
                sel.unregister(s)
            if time.monotonic() > deadline:
                sys.exit(f"only {done} of {len(conns)} echoes within 30 s")
    return conns, done
