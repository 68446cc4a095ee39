"""What a new connection costs the server, A against B: builds of the extension, or server
settings.

Each cell restarts the cluster of bench/memory.sh (preloaded library, 1 GB `shared_buffers`,
autovacuum off, plus the cell's settings), asks 40 users once over one connection (their pages
in shared buffers), then opens 200 new connections one after another, each making one first
call and disconnecting. Figures per cell: the backend CPU per connection (the postmaster's
reaped children's user + system time over the 200, so a backend's start and exit are in it),
the first call's p50 (client wall time), and the p50 / p99 of 5 bursts of 20 new connections at
once. Cells alternate A, B (build_ab.alternate for builds); medians per variant are printed.

Usage: python bench/conn_cpu_ab.py A.so B.so ROUNDS USERS [QUERY]
       python bench/conn_cpu_ab.py --settings "huge_pages=off" "huge_pages=on" ROUNDS USERS [QUERY]
QUERY takes the user id as %s (default: the full hybrid recsys_recommend(%s, 20); `SELECT %s`
gives Postgres's own floor). Environment: MEMORY_DIR, MEMORY_PORT (bench/memory.sh's cluster).
Settings are space-separated NAME=VALUE pairs (`env:NAME=VALUE`: the server's environment, e.g.
`env:GLIBC_TUNABLES=glibc.malloc.hugetlb=1`); several cells' worth of `vm.nr_hugepages` must be
reserved by hand for huge_pages=on.
"""
import os
import statistics
import sys
import threading
import time

import psycopg

import first_call_ab
from build_ab import alternate
from first_call_ab import DIR, DSN

LABELS = ["cpu per connection", "first call p50", "20 at once p50", "20 at once p99"]


def restart(extra=()):
    # Autovacuum off: a worker's CPU would land in one cell's reaped children.
    first_call_ab.restart(("autovacuum=off", *extra))


def children_cpu(data_dir=DIR):
    """The CPU seconds (user + system) of the postmaster's reaped children, for the cluster in
    `data_dir`."""
    with open(os.path.join(data_dir, "postmaster.pid")) as fh:
        pid = int(fh.readline())
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[13]) + int(f[14])) / os.sysconf("SC_CLK_TCK")


def first(query, user, out, hold=None):
    with psycopg.connect(DSN, autocommit=True) as c:
        t = time.perf_counter()
        c.execute(query, (user,)).fetchone()
        out.append((time.perf_counter() - t) * 1000)
        if hold:
            hold.wait()


def cell(query, users, extra=()):
    restart(extra)
    with psycopg.connect(DSN, autocommit=True) as c:
        for u in users:
            c.execute(query, (u,)).fetchone()
    time.sleep(0.5)
    c0, seq = children_cpu(), []
    for k in range(200):
        first(query, users[k % len(users)], seq)
    time.sleep(0.3)
    cpu = (children_cpu() - c0) * 1000 / 200
    par = []
    for _ in range(5):
        hold = threading.Barrier(20)
        ts = [threading.Thread(target=first, args=(query, u, par, hold)) for u in users[:20]]
        [t.start() for t in ts]
        [t.join() for t in ts]
    r = (cpu, statistics.median(seq), statistics.median(par), statistics.quantiles(par, n=100)[98])
    print("cpu per connection %.2f ms | first call p50 %.2f | 20 at once p50 %.1f p99 %.1f" % r, flush=True)
    return r


def main():
    args = sys.argv[1:]
    settings = args[0] == "--settings"
    if settings:
        args = args[1:]
    a, b, rounds, n_users = args[0], args[1], int(args[2]), int(args[3])
    query = args[4] if len(args) > 4 else "SELECT count(*) FROM recsys_recommend(%s, 20)"
    users = [n_users // 2 + 37 * k for k in range(40)]
    try:
        if not settings:
            alternate(a, b, rounds, "ms", lambda: cell(query, users), labels=LABELS)
            return
        res = {"A": [], "B": []}
        for _ in range(rounds):
            for name, s in (("A", a), ("B", b)):
                print(f"{name} ({s}): ", end="")
                res[name].append(cell(query, users, tuple(s.split())))
        for name in res:
            cols = list(zip(*res[name]))
            print(f"{name} (ms): " + "; ".join(f"{l} {[round(x, 2) for x in c]}, median {statistics.median(c):.2f}" for l, c in zip(LABELS, cols)))
    finally:
        restart()


if __name__ == "__main__":
    main()
