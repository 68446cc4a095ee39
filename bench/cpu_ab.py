"""Backend CPU per recsys_recommend call, A against B in one session.

This VM's speed varies by up to 2x between runs, so two builds or two models are compared within
one run: cells of N calls over spread users alternate between the variants, three rounds; the
figure is the backend's CPU time (user + system, from /proc/<pid>/stat: the server must run on
this machine) per call, and the wall time per call. The trending cache is held for an hour so
that a re-aggregation of the trending window does not land in one cell.

Variants are either deployed versions of a model (`--versions 2,3`: recsys_deploy switches
between them before each cell; e.g. a model trained by the previous build against one trained
by this build on the same data) or values of a setting (`--guc recsys.partition_scan=on,off`).

Usage: python bench/cpu_ab.py (--versions A,B | --guc NAME=A,B) [--als-only] [--calls N] [--users U]
Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq defaults).
"""
import argparse
import os

import psycopg

ALS_ONLY = ', weights => \'{"als": 1, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}\''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions")
    ap.add_argument("--guc")
    ap.add_argument("--model", default="default")
    ap.add_argument("--als-only", action="store_true")
    ap.add_argument("--calls", type=int, default=800)
    ap.add_argument("--users", type=int, default=20000)
    a = ap.parse_args()
    if bool(a.versions) == bool(a.guc):
        ap.error("give --versions or --guc")
    conn = psycopg.connect(autocommit=True)
    cur = conn.cursor()
    pid = cur.execute("SELECT pg_backend_pid()").fetchone()[0]

    def cpu():
        f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def wall():
        return cur.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0]

    extra = ALS_ONLY if a.als_only else ""
    if a.versions:
        variants = a.versions.split(",")
        switch = [("SELECT recsys_deploy(%s, %s)", (a.model, v)) for v in variants]
    else:
        name, values = a.guc.split("=", 1)
        variants = values.split(",")
        switch = [("SELECT pg_catalog.set_config(%s, %s, false)", (name, v)) for v in variants]
    cur.execute("SET recsys.trending_cache_seconds = 3600")
    loop = (f"DO $$ DECLARE i int; c int; BEGIN FOR i IN 1..{a.calls} LOOP "
            f"SELECT count(*) INTO c FROM recsys_recommend((i * 7919) % {a.users} + 1, 20{extra}); END LOOP; END $$")
    res = {v: [] for v in variants}
    for _ in range(3):
        for v, (sql, args) in zip(variants, switch):
            cur.execute(sql, args)
            # Opens the model; a typical user (see build_ab.py on glibc thresholds after user 1).
            cur.execute(f"SELECT count(*) FROM recsys_recommend({a.users // 2 + 1}, 20{extra})")
            c0, w0 = cpu(), wall()
            cur.execute(loop)
            res[v].append(((cpu() - c0) * 1000 / a.calls, (float(wall()) - float(w0)) * 1000 / a.calls))
    for v in variants:
        print(f"{v}: cpu ms/call {[round(c, 3) for c, _ in res[v]]}, wall ms/call {[round(w, 3) for _, w in res[v]]}")


if __name__ == "__main__":
    main()
