"""What a statement costs as the first one a new connection runs (after `SELECT 1`): each given
statement in N new connections, alternated (this VM's speed drifts within minutes), median
wall-clock ms from the client. For comparing two ways to write a statement that a first call
plans (catalog and planner warm-up included, which is most of it).

Usage: python bench/first_sql.py N 'SQL A' ['SQL B' ...]   (environment: PGHOST, PGPORT, PGUSER)
"""
import os
import statistics
import sys
import time

import psycopg

DSN = f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user={os.environ['PGUSER']} dbname=postgres"
n, sqls = int(sys.argv[1]), sys.argv[2:]
times = [[] for _ in sqls]
for _ in range(n):
    for k, sql in enumerate(sqls):
        with psycopg.connect(DSN, autocommit=True) as c:
            c.execute("SELECT 1")
            t = time.perf_counter()
            c.execute(sql).fetchall()
            times[k].append((time.perf_counter() - t) * 1000)
for sql, t in zip(sqls, times):
    print(f"{statistics.median(t):.3f} ms median of {n} | {' '.join(sql.split())[:120]}")
