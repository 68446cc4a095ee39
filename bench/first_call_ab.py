"""First calls in new connections, one build of the extension against another, on a server
that preloads the library (as the README recommends and bench/memory.sh's cluster does).

A preloading server keeps the library it started with, so each cell installs one build (as
bench/build_ab.py does: copied, then renamed over the installed one), restarts the cluster
(scripts/pgcluster.sh, with `shared_buffers` 1 GB), asks each user once over one connection
(their pages in shared buffers, as bench/memory.py does by default), then times the first call
of 10 new connections one after another and of 20 new connections at once (the users and the
query of bench/memory.py). Builds alternate cell by cell (build_ab.alternate); per build the
medians over the cells are printed. The build that was installed before the run is installed
again at the end.

Usage: python bench/first_call_ab.py A.so B.so ROUNDS USERS
Environment: MEMORY_DIR, MEMORY_PORT (bench/memory.sh's cluster: /tmp/pg_recsys-bench-memory,
54344 by default).
"""
import os
import statistics
import subprocess
import sys
import threading
import time

import psycopg

from build_ab import alternate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.environ.get("MEMORY_DIR", "/tmp/pg_recsys-bench-memory")
PORT = os.environ.get("MEMORY_PORT", "54344")
DSN = f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres"
QUERY = "SELECT count(*) FROM recsys_recommend(%s, 20)"


def restart(extra=()):
    """Restarts the cluster preloading the library, with 1 GB of shared buffers and `extra`
    settings (NAME=VALUE; `env:NAME=VALUE` sets an environment variable of the server instead,
    e.g. `env:GLIBC_TUNABLES=glibc.malloc.hugetlb=1`)."""
    cluster = ["bash", os.path.join(ROOT, "scripts/pgcluster.sh")]
    subprocess.run(cluster + ["stop", DIR, PORT], capture_output=True)
    env = dict(os.environ)
    env.update(e[4:].split("=", 1) for e in extra if e.startswith("env:"))
    settings = [e for e in extra if not e.startswith("env:")]
    subprocess.run(cluster + ["start", DIR, PORT, "shared_preload_libraries=pg_recsys", "shared_buffers=1GB", *settings], capture_output=True, check=True, env=env)


def first(user, out, hold=None):
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute("SELECT pg_backend_pid()").fetchone()
        t = time.perf_counter()
        c.execute(QUERY, (user,)).fetchone()
        out.append((time.perf_counter() - t) * 1000)
        if hold:
            hold.wait()


def cell(users):
    with psycopg.connect(DSN, autocommit=True) as c:
        for u in users:
            c.execute(QUERY, (u,)).fetchone()
    seq = []
    for u in users[1:11]:
        first(u, seq)
    par, hold = [], threading.Barrier(20)
    ts = [threading.Thread(target=first, args=(u, par, hold)) for u in users[11:31]]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return statistics.median(seq), statistics.median(par), max(par)


def main():
    a, b, rounds, n_users = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    users = [n_users // 2] + [n_users // 2 + 37 * k for k in range(10)] + [n_users // 2 + 1000 + 53 * k for k in range(20)]

    def measure():
        restart()
        r = cell(users)
        print("one at a time p50 %.2f ms | 20 at once p50 %.1f, slowest %.1f ms" % r, flush=True)
        return r

    try:
        alternate(a, b, rounds, "ms", measure, labels=["one at a time p50", "20 at once p50", "20 at once slowest"])
    finally:
        restart()


if __name__ == "__main__":
    main()
