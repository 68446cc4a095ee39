"""What a serving query costs the server per transaction under pgbench: the postmaster's reaped
children's CPU (user + system; every backend of a pgbench run exits when the run ends) over the
transactions, and pgbench's own CPU, for the ALS-only feed (with and without reasons) and
pgvector's HNSW query of bench/serving.py, in alternated cells.

Run on bench/serving.sh's cluster (kept running, e.g. `bash scripts/pgcluster.sh start
/tmp/pg_recsys-bench-serving 54342 shared_preload_libraries=pg_recsys`), with serving.py's
item_vec / user_vec tables and HNSW index in place. The server must be on this machine.
Usage: bench/.venv/bin/python bench/server_cpu.py CLIENTS SECONDS ROUNDS [als] [alsnr] [knn]
Environment: PGHOST, PGPORT, PGUSER; PGDATA_DIR (default /tmp/pg_recsys-bench-serving).
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from conn_cpu_ab import children_cpu
from pgvec import KNN

USERS = 20000  # serving.sh at 100K posts
ALS_ONLY = '{"als": 1, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}'
QUERIES = {
    "als": f"SELECT count(*) FROM recsys_recommend(:uid, 20, weights => '{ALS_ONLY}');",
    "alsnr": f"SELECT count(*) FROM recsys_recommend(:uid, 20, weights => '{ALS_ONLY}', reasons => false);",
    "knn": KNN,
}


def main():
    clients, secs, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    names = sys.argv[4:] or ["als", "knn"]
    data_dir = os.environ.get("PGDATA_DIR", "/tmp/pg_recsys-bench-serving")
    res = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as d:
        for n in names:
            with open(os.path.join(d, f"{n}.sql"), "w") as fh:
                fh.write(f"\\set uid random(1, {USERS})\n{QUERIES[n]}\n")
        for _ in range(rounds):
            for n in names:
                c0, t0 = children_cpu(data_dir), os.times()
                out = subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(secs),
                                      "-f", os.path.join(d, f"{n}.sql"), "postgres"], capture_output=True, text=True, check=True).stdout
                time.sleep(0.3)  # the backends reaped
                c1, t1 = children_cpu(data_dir), os.times()
                tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
                tx = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
                client = t1.children_user + t1.children_system - t0.children_user - t0.children_system
                res[n].append((tps, (c1 - c0) * 1000 / tx, client * 1000 / tx))
                print(f"{n}: tps {tps:.0f}, server CPU {res[n][-1][1]:.3f} ms/tx, pgbench CPU {res[n][-1][2]:.3f} ms/tx", flush=True)
    for n in names:
        med = [statistics.median(x[i] for x in res[n]) for i in range(3)]
        print(f"{n} ({clients} clients): median tps {med[0]:.0f}, server {med[1]:.3f} ms/tx, pgbench {med[2]:.3f} ms/tx")


if __name__ == "__main__":
    main()
