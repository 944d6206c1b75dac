#!/usr/bin/env python3
"""Memory per held idle connection through a running proxy path (used by bench/run.sh).

    python3 bench/held-memory.py PORT N PID [PID ...]

Opens N connections to 127.0.0.1:PORT (an echo service behind the proxies), sends one byte on
each and reads its echo, holds them for a second and prints one JSON line: how many echoed and
the RSS of the given processes and their children (nginx's workers) before and while held, and
the difference per connection in KiB. The connections are closed on exit.
"""
import json
import sys
import time

from benchlib import hold, raise_nofile, rss_tree_kib


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    port, n, pids = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    raise_nofile(n + 256)
    before = rss_tree_kib(pids)
    conns, echoed = hold(port, n)
    time.sleep(1.0)
    held = rss_tree_kib(pids)
    print(json.dumps({
        "connections": n,
        "echoed": echoed,
        "rss_before_kib": before,
        "rss_held_kib": held,
        "kib_per_conn": round((held - before) / n, 2),
    }))
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
