"""Helpers shared by the Python benchmarks in this folder."""
import os
import socket
import subprocess

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
