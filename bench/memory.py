"""Per-backend memory and first-call latency of serving (issue 12): for recsys.shared_models on
(the mapped image) and off (each backend decodes its own copy), new connections that make one
recsys_recommend call each (the full hybrid; then with ALS-only weights), for users from the
middle of the id range (typical histories; the synthetic ids at the start are the power-law
head): the first call's latency (the same call again: the second call; their difference is what
opening the model and planning the per-call queries costs a new connection) (1 connection at a
time, and 20 cold connections at once, in bursts: p50/p99 over every burst's first calls), and the backend's private memory after the call (Private_Clean +
Private_Dirty of /proc/<pid>/smaps_rollup: what the backend holds that no other process shares,
read with 20 at once after all 20 have made their calls;
needs the server on this machine and permission to read it, e.g. root) and its PSS. Then the
same for the pgvector alternative over the same factors (bench/pgvec.py: the served post factors
and the asked users' trained factors in vector columns, an HNSW index, ORDER BY v <#> user
LIMIT 20): what a first query costs a new connection when the database does the nearest
neighbours and nothing else. First of all, the floor: the same connections with `SELECT $1` as
their first query, no extension and no table involved, which is what this machine's cores give
any first query of 20 connections starting at once (their starts and the client compete with it).

Shared buffers: the per-call reads of a hybrid feed go through indexes of follows and
interactions several times larger than the default shared_buffers, so a user not asked since
the server started pays a read from the OS per index page, in whatever connection. That is the
server warming up, not the connection, so by default every measured user is asked once first,
over one connection (their pages are then in shared buffers, as a running server's hot pages
are), and each block's first calls measure what a new connection costs. `--cold` skips that
pass: right after a server start, the figures then include the buffer misses.

Run by bench/memory.sh, which makes the data and trains. Environment: PGHOST, PGPORT, PGUSER.
Usage: python bench/memory.py USERS [--cold] [--bursts=N]  (N bursts of 20 at once, default 10)
"""
import os
import statistics
import sys
import threading
import time

import psycopg

from pgvec import KNN, hnsw, tables

USERS = int(sys.argv[1])
COLD = "--cold" in sys.argv[2:]
BURSTS = int(next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--bursts=")), "10"))
DSN = f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user={os.environ['PGUSER']} dbname=postgres"


def smaps(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                out[parts[0][:-1]] = int(parts[1])
    return out


RECOMMEND = "SELECT count(*) FROM recsys_recommend(%s, 20)"
PGVECTOR = KNN.replace(":uid", "%s")


def one(setting, user, results, hold=None, query=RECOMMEND):
    t0 = time.perf_counter()
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute(setting)
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        t1 = time.perf_counter()
        c.execute(query, (user,)).fetchone()
        first = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        c.execute(query, (user,)).fetchone()
        second = (time.perf_counter() - t2) * 1000
        if hold:
            # Read once every connection has made its calls: an image page is private to a
            # backend only while no other one has touched it yet.
            hold.wait()
        m = smaps(pid)
        if hold:
            hold.wait()
        results.append((first, second, (m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)) / 1024, m.get("Pss", 0) / 1024, (time.perf_counter() - t0) * 1000))


def row(label, res):
    first = [r[0] for r in res]
    q = statistics.quantiles(first, n=100) if len(first) >= 2 else [first[0]] * 99
    print(f"| {label} | {len(res)} | {statistics.median(first):.1f} | {q[98]:.1f} | {statistics.median(r[1] for r in res):.2f} | "
          f"{statistics.median(r[2] for r in res):.1f} | {statistics.median(r[3] for r in res):.1f} |")


def block(label, setting, users, query=RECOMMEND):
    # Warm: the image exists (written by an earlier backend) and the OS has the files cached.
    one(setting, users[0], [], query=query)
    seq = []
    for u in users[1:11]:
        one(setting, u, seq, query=query)
    row(label + ", one at a time", seq)
    # The p99 of one burst of 20 is its slowest call, which one scheduling hiccup moves by
    # 10 ms on a 2-core machine: BURSTS bursts of 20 new connections, one after the other,
    # give the p99 over 20 × BURSTS first calls.
    par = []
    for _ in range(BURSTS):
        hold = threading.Barrier(20)
        ts = [threading.Thread(target=one, args=(setting, u, par, hold, query)) for u in users[11:31]]
        [t.start() for t in ts]
        [t.join() for t in ts]
    row(label + f", 20 at once ({BURSTS} bursts)", par)


USERS_ASKED = [USERS // 2] + [USERS // 2 + 37 * k for k in range(10)] + [USERS // 2 + 1000 + 53 * k for k in range(20)]
if not COLD:
    # The server warmed for these users (see the module doc): one connection, one call each.
    with psycopg.connect(DSN, autocommit=True) as c:
        for u in USERS_ASKED:
            c.execute(RECOMMEND, (u,)).fetchone()
print(f"shared buffers {'as found (--cold)' if COLD else 'warmed for the asked users'}\n")
print("| serving | connections | first call p50 ms | first call p99 ms | same call again p50 ms | private MB per backend (p50) | PSS MB per backend (p50) |")
print("|---|---|---|---|---|---|---|")
block("floor: SELECT $1 (no extension, no table)", "SELECT 1", USERS_ASKED, "SELECT %s")
block("shared image (recsys.shared_models = on)", "SET recsys.shared_models = on", USERS_ASKED)
block("private copy (off)", "SET recsys.shared_models = off", USERS_ASKED)
ALS_ONLY = '{"als": 1, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}'
block("shared image, ALS only (weights)", "SET recsys.shared_models = on", USERS_ASKED, f"SELECT count(*) FROM recsys_recommend(%s, 20, weights => '{ALS_ONLY}')")
# The alternative over the same factors: the served post factors and these users' trained
# factors in vector columns, an HNSW index, the KNN query of bench/serving.py.
tables(USERS_ASKED)
hnsw()
block("pgvector HNSW (ef_search 40), same factors", "SET hnsw.ef_search = 40", USERS_ASKED, PGVECTOR)
