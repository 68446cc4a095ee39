"""Backend CPU per call of several forms of recsys_recommend on one build, alternated.

What an argument costs (reasons => false against the default, say) is a difference of a few
tens of microseconds in calls of a few hundred, and this VM's speed drifts by up to 2x within
minutes: so the forms are timed in alternating cells (each round runs every form once, the
order reversed every other round), each cell a new connection that makes 200 untimed calls
and then N timed ones over spread users. The figure is the CPU time of the backend's own
thread (/proc/<pid>/task/<pid>/schedstat, nanoseconds: the server must run on this machine),
with recsys.serving_helper off so that the whole call runs on that thread, and the trending
cache held for an hour so that a re-aggregation of the window does not land in one cell.
Prints, per form, the median over the rounds and each round's figure, and each form's median
ratio to the first form's.

Usage: python bench/call_cpu.py FORM[,FORM...] [--calls N] [--rounds R] [--users U]
Forms: als, als_noreasons, hybrid, hybrid_noreasons, diverse, diverse_noreasons.
Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq defaults).
"""
import argparse
import statistics

import psycopg

from build_ab import thread_seconds

ALS_ONLY = '{"als": 1, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}'
FORMS = {
    "als": f"SELECT count(*) FROM recsys_recommend(%s, 20, weights => '{ALS_ONLY}')",
    "als_noreasons": f"SELECT count(*) FROM recsys_recommend(%s, 20, weights => '{ALS_ONLY}', reasons => false)",
    "hybrid": "SELECT count(*) FROM recsys_recommend(%s, 20)",
    "hybrid_noreasons": "SELECT count(*) FROM recsys_recommend(%s, 20, reasons => false)",
    "diverse": "SELECT count(*) FROM recsys_recommend(%s, 20, diversity => 0.3)",
    "diverse_noreasons": "SELECT count(*) FROM recsys_recommend(%s, 20, diversity => 0.3, reasons => false)",
}


def cell(sql, calls, users, seed):
    with psycopg.connect(autocommit=True) as c:
        c.execute("SET recsys.trending_cache_seconds = 3600")
        c.execute("SET recsys.serving_helper = off")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        for k in range(200):
            c.execute(sql, (1 + (k * 7919) % users,)).fetchone()
        t = thread_seconds(pid)
        for k in range(calls):
            c.execute(sql, (1 + (k * 7919 + seed * 31) % users,)).fetchone()
        return (thread_seconds(pid) - t) / calls * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("forms")
    ap.add_argument("--calls", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--users", type=int, default=20000)
    a = ap.parse_args()
    forms = a.forms.split(",")
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        ap.error(f"unknown forms {unknown}; known: {', '.join(FORMS)}")
    res = {f: [] for f in forms}
    for r in range(a.rounds):
        for f in forms if r % 2 == 0 else forms[::-1]:
            res[f].append(cell(FORMS[f], a.calls, a.users, r))
    base = statistics.median(res[forms[0]])
    for f in forms:
        m = statistics.median(res[f])
        print(f"{f}: {m:.4f} ms of backend CPU per call (median of {a.rounds} cells of {a.calls} calls; "
              f"{m / base:.3f}x {forms[0]}); cells: {', '.join(f'{x:.4f}' for x in res[f])}", flush=True)


main()
