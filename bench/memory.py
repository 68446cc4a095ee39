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
Last, the hybrid's bursts through PgBouncer (transaction pooling, 4 server connections, started
here when pgbouncer is installed): 20 new client connections at once, served by backends that
are already up, which is what a pooler changes.

Each burst's 20 clients are processes (threads of one Python process would queue for its
interpreter lock once a reply is in) that connect together, and a burst starts once the last
one's backends have exited (their exits are CPU the next burst would otherwise share).

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
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg

from pgvec import KNN, hnsw, tables

USERS = int(sys.argv[1])
COLD = "--cold" in sys.argv[2:]
BURSTS = int(next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--bursts=")), "10"))
POOL = 4  # PgBouncer's server connections: two per core
MP = multiprocessing.get_context("fork")
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
        results.append((first, second, (m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)) / 1024, m.get("Pss", 0) / 1024, (time.perf_counter() - t0) * 1000, pid))


def client(start, setting, hold, query, user, out):
    """One of a burst's clients, in its own process (threads of one client would queue for
    Python's interpreter lock, up to its 5 ms switch interval, once a reply is in), connecting
    when all of them are ready."""
    start.wait()
    res = []
    one(setting, user, res, hold, query)
    out.put(res[0])


def gone(pids, timeout=10.0):
    """Waits until these backends have exited (their exits are CPU the next burst must not share)."""
    end = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{p}") for p in pids):
        if time.monotonic() > end:
            raise SystemExit(f"backends {pids} still there after {timeout} s")
        time.sleep(0.005)


def row(label, res):
    """A table row from (first, second[, private MB, PSS MB, ...]) results; n/a without memory."""
    first = [r[0] for r in res]
    q = statistics.quantiles(first, n=100) if len(first) >= 2 else [first[0]] * 99
    mem = " | ".join(f"{statistics.median(r[i] for r in res):.1f}" if len(res[0]) > i else "n/a" for i in (2, 3))
    print(f"| {label} | {len(res)} | {statistics.median(first):.1f} | {q[98]:.1f} | {statistics.median(r[1] for r in res):.2f} | {mem} |")


def burst(target, users, *args):
    """One burst: a process per user running target(start, ..., user, out), all released
    together; their results."""
    start, out = MP.Barrier(len(users) + 1), MP.Queue()
    ps = [MP.Process(target=target, args=(start, *args, u, out)) for u in users]
    [p.start() for p in ps]
    start.wait()
    res = [out.get(timeout=120) for _ in ps]
    [p.join() for p in ps]
    return res


def block(label, setting, users, query=RECOMMEND):
    # Warm: the image exists (written by an earlier backend) and the OS has the files cached.
    one(setting, users[0], [], query=query)
    seq = []
    for u in users[1:11]:
        one(setting, u, seq, query=query)
        gone([seq[-1][5]])
    row(label + ", one at a time", seq)
    # The p99 of one burst of 20 is its slowest call, which one scheduling hiccup moves by
    # 10 ms on a 2-core machine: BURSTS bursts of 20 new connections, one after the other,
    # give the p99 over 20 × BURSTS first calls.
    par = []
    for _ in range(BURSTS):
        res = burst(client, users[11:31], setting, MP.Barrier(20), query)
        par += res
        gone([r[5] for r in res])
    row(label + f", 20 at once ({BURSTS} bursts)", par)


def pooled(users):
    """The same bursts through PgBouncer (transaction pooling, POOL server connections): each
    client connection is new, as above, but the pooler hands its calls to server backends that
    are already up (started and warmed here by a burst that is not counted), so no backend
    starts or exits during the timed bursts. Skipped when pgbouncer is not installed."""
    exe = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if not exe:
        print("\n(pgbouncer not installed: no pooled row)")
        return
    d = tempfile.mkdtemp(prefix="pg_recsys-pgbouncer-")
    port = int(os.environ["PGPORT"]) + 100
    with open(os.path.join(d, "users.txt"), "w") as f:
        f.write(f'"{os.environ["PGUSER"]}" ""\n')
    with open(os.path.join(d, "pgbouncer.ini"), "w") as f:
        f.write(f"[databases]\npostgres = host={os.environ['PGHOST']} port={os.environ['PGPORT']} dbname=postgres\n"
                f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n"
                f"auth_file = {d}/users.txt\npool_mode = transaction\ndefault_pool_size = {POOL}\nmin_pool_size = {POOL}\n"
                f"max_client_conn = 100\nlogfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n")
    subprocess.run(["chown", "-R", "postgres", d], check=False)
    subprocess.run([exe, "-d", "-u", "postgres", os.path.join(d, "pgbouncer.ini")] if os.geteuid() == 0 else [exe, "-d", os.path.join(d, "pgbouncer.ini")], check=True)
    try:
        dsn = DSN.replace(f"port={os.environ['PGPORT']}", f"port={port}")
        # Up to 20 s: on a loaded machine the daemon takes a while to listen.
        for k in range(200):
            try:
                psycopg.connect(dsn, autocommit=True, prepare_threshold=None).close()
                break
            except psycopg.OperationalError as e:
                if k == 199:
                    # The directory goes with the pooler: the log's end goes into the message.
                    log = open(os.path.join(d, "pgbouncer.log")).read()[-2000:] if os.path.exists(os.path.join(d, "pgbouncer.log")) else "(no log)"
                    raise SystemExit(f"pgbouncer on port {port} does not answer ({e}); its log ends:\n{log}")
                time.sleep(0.1)
        burst(pooled_client, users[11:31], dsn)  # starts and warms the pool's server connections
        par = [r for _ in range(BURSTS) for r in burst(pooled_client, users[11:31], dsn)]
        row(f"shared image, through PgBouncer (transaction pooling, {POOL} server connections), 20 new client connections at once ({BURSTS} bursts)", par)
    finally:
        if os.path.exists(os.path.join(d, "pgbouncer.pid")):
            with open(os.path.join(d, "pgbouncer.pid")) as f:
                os.kill(int(f.read()), signal.SIGTERM)
        shutil.rmtree(d, ignore_errors=True)


def pooled_client(start, dsn, user, out):
    """A burst's client through the pooler: (first, second) call ms (no backend of its own to read)."""
    start.wait()
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        t1 = time.perf_counter()
        c.execute(RECOMMEND, (user,)).fetchone()
        first = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        c.execute(RECOMMEND, (user,)).fetchone()
        out.put((first, (time.perf_counter() - t2) * 1000))


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
pooled(USERS_ASKED)
