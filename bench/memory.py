"""Per-backend memory and first-call latency of serving (issue 12): for recsys.shared_models on
(the mapped image) and off (each backend decodes its own copy), new connections that make one
recsys_recommend call each, for users from the middle of the id range (typical histories; the
synthetic ids at the start are the power-law head): the first call's latency (the same call
again: the second call; their difference is what opening the model and planning the
per-call queries costs a new connection) (1 connection at a time, and 20 cold
connections at once), and the backend's private memory after the call (Private_Clean +
Private_Dirty of /proc/<pid>/smaps_rollup: what the backend holds that no other process shares;
needs the server on this machine and permission to read it, e.g. root) and its PSS.

Run by bench/memory.sh, which makes the data and trains. Environment: PGHOST, PGPORT, PGUSER.
Usage: python bench/memory.py USERS
"""
import os
import statistics
import sys
import threading
import time

import psycopg

USERS = int(sys.argv[1])
DSN = f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user={os.environ['PGUSER']} dbname=postgres"


def smaps(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                out[parts[0][:-1]] = int(parts[1])
    return out


def one(shared, user, results, hold=None):
    t0 = time.perf_counter()
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute(f"SET recsys.shared_models = {'on' if shared else 'off'}")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        t1 = time.perf_counter()
        c.execute("SELECT count(*) FROM recsys_recommend(%s, 20)", (user,)).fetchone()
        first = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        c.execute("SELECT count(*) FROM recsys_recommend(%s, 20)", (user,)).fetchone()
        second = (time.perf_counter() - t2) * 1000
        m = smaps(pid)
        if hold:
            hold.wait()
        results.append((first, second, (m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)) / 1024, m.get("Pss", 0) / 1024, (time.perf_counter() - t0) * 1000))


def row(label, res):
    first = [r[0] for r in res]
    q = statistics.quantiles(first, n=100) if len(first) >= 2 else [first[0]] * 99
    print(f"| {label} | {len(res)} | {statistics.median(first):.1f} | {q[98]:.1f} | {statistics.median(r[1] for r in res):.2f} | "
          f"{statistics.median(r[2] for r in res):.1f} | {statistics.median(r[3] for r in res):.1f} |")


print("| serving | connections | first call p50 ms | first call p99 ms | same call again p50 ms | private MB per backend (p50) | PSS MB per backend (p50) |")
print("|---|---|---|---|---|---|---|")
for shared in (True, False):
    label = "shared image (recsys.shared_models = on)" if shared else "private copy (off)"
    # Warm: the image exists (written by an earlier backend) and the OS has the files cached.
    one(shared, USERS // 2, [])
    seq = []
    for k in range(10):
        one(shared, USERS // 2 + 37 * k, seq)
    row(label + ", one at a time", seq)
    par, hold = [], threading.Barrier(20)
    ts = [threading.Thread(target=one, args=(shared, USERS // 2 + 1000 + 53 * k, par, hold)) for k in range(20)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    row(label + ", 20 at once", par)
