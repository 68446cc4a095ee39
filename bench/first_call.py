"""What the first recsys_recommend call of a new connection costs beyond the next one.

Per new connection (one at a time): `LOAD 'pg_recsys'` timed alone (the library load, which
`shared_preload_libraries` moves to server start), then the first call, then a call for the
next user id. Prints the medians. Run against a cluster with a trained model, e.g. the one
bench/memory.sh builds (kept running) or any app database.

With --calls N each connection makes N calls (for users a few ids apart) after the LOAD, and
the p50 of each call's position is printed too: how the 2nd, 3rd, ... call of a connection
compare with a warm one (PostgreSQL plans a kept statement afresh for its first five runs
unless it is planned generically).

With --cpu (the server on this machine, readable /proc): also the backend thread's CPU
(schedstat) and the backend's minor page faults during the first and the second call.
--idle S waits S seconds before the first connection (a quiet spell: the trending cache
expires), --gap S between connections, and --each prints every connection's first call.

Usage: python bench/first_call.py [CONNECTIONS] [--als-only] [--first-user N] [--calls N] [--cpu] [--idle S] [--gap S] [--each]
Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq defaults).
"""
import argparse
import statistics
import time

import psycopg

from build_ab import thread_seconds

ALS_ONLY = ', weights => \'{"als": 1, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}\''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("connections", type=int, nargs="?", default=30)
    ap.add_argument("--als-only", action="store_true")
    ap.add_argument("--first-user", type=int, default=10000)
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--idle", type=float, default=0.0)
    ap.add_argument("--gap", type=float, default=0.0)
    ap.add_argument("--each", action="store_true")
    a = ap.parse_args()
    extra = ALS_ONLY if a.als_only else ""
    r = {"load": [], "first": [], "second": [], "later": []}
    cost = {"first": ([], []), "second": ([], [])}  # (CPU ms, minor faults)
    pid = None

    def counters():
        with open(f"/proc/{pid}/stat") as fh:
            minflt = int(fh.read().rsplit(")", 1)[1].split()[7])
        return thread_seconds(pid) * 1000, minflt
    by_position = [[] for _ in range(max(a.calls, 2))]

    def timed(key, cur, sql):
        before = counters() if a.cpu and key in cost else None
        t = time.perf_counter()
        cur.execute(sql)
        cur.fetchall() if cur.description else None
        r[key].append((time.perf_counter() - t) * 1000)
        if before:
            after = counters()
            cost[key][0].append(after[0] - before[0])
            cost[key][1].append(after[1] - before[1])

    time.sleep(a.idle)
    for k in range(a.connections):
        if k:
            time.sleep(a.gap)
        u = a.first_user + k * 37
        with psycopg.connect(autocommit=True) as c:
            cur = c.cursor()
            pid = cur.execute("SELECT pg_backend_pid()").fetchone()[0]
            timed("load", cur, "LOAD 'pg_recsys'")
            timed("first", cur, f"SELECT count(*) FROM recsys_recommend({u}, 20{extra})")
            timed("second", cur, f"SELECT count(*) FROM recsys_recommend({u + 1}, 20{extra})")
            for j in range(2, a.calls):
                timed("later", cur, f"SELECT count(*) FROM recsys_recommend({u + j}, 20{extra})")
            if a.each:
                cpu = f", backend CPU {cost['first'][0][-1]:.2f} ms" if a.cpu else ""
                print(f"connection {k}: first call {r['first'][-1]:.2f} ms{cpu}", flush=True)
            by_position[0].append(r["first"][-1])
            by_position[1].append(r["second"][-1])
            for j in range(2, a.calls):
                by_position[j].append(r["later"][j - a.calls])
    med = {k: statistics.median(v) for k, v in r.items() if v}
    print(f"LOAD p50 {med['load']:.2f} ms, first call p50 {med['first']:.2f} ms, next call p50 {med['second']:.2f} ms, "
          f"first - next {med['first'] - med['second']:.2f} ms ({a.connections} connections{', ALS only' if a.als_only else ''})")
    if a.cpu:
        for key, (ms, faults) in cost.items():
            print(f"{key} call: backend thread CPU p50 {statistics.median(ms):.3f} ms, minor faults p50 {statistics.median(faults):.0f}")
    if a.calls > 2:
        print("p50 ms by call position:", [round(statistics.median(p), 2) for p in by_position])


if __name__ == "__main__":
    main()
