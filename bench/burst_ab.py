"""20 new connections calling recsys_recommend at once, one build of the extension against another.

For each round and each build: installs the build's shared library (copied next to the
installed one, then renamed over it), restarts the cluster that bench/memory.sh left in
/tmp/pg_recsys-bench-memory (port 54344) with the library preloaded, warms it with 10 new
connections one after another, then runs three bursts: 20 connections open, wait at a
barrier, and each times its first call (wall clock from the client). Prints each burst's
median and slowest call, and per build the medians of those over all bursts.

Usage: python bench/burst_ab.py A.so B.so [ROUNDS]   (run as root, like scripts/pgcluster.sh)
"""
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

import psycopg

from build_ab import install as install_as

DIR = "/tmp/pg_recsys-bench-memory"
DSN = "host=127.0.0.1 port=54344 user=postgres dbname=postgres"
LIB = "/usr/lib/postgresql/15/lib/pg_recsys.so"
CLUSTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "pgcluster.sh")


def install(so):
    install_as(so, LIB)


def restart():
    subprocess.run(["bash", CLUSTER, "stop", DIR], check=True)
    subprocess.run(["bash", CLUSTER, "start", DIR, "54344", "shared_preload_libraries=pg_recsys"], check=True)


def first_call(user, out, barrier):
    conn = psycopg.connect(DSN, autocommit=True)
    conn.execute("SELECT 1")
    barrier.wait()
    t = time.perf_counter()
    conn.execute(f"SELECT * FROM recsys_recommend({user}, 20)").fetchall()
    out.append((time.perf_counter() - t) * 1000)
    conn.close()


def main():
    a, b = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    before = LIB + ".burst-ab-saved"
    shutil.copyfile(LIB, before)
    res = {a: [], b: []}
    try:
        for rnd in range(rounds):
            for so in (a, b):
                install(so)
                restart()
                for i in range(10):
                    with psycopg.connect(DSN, autocommit=True) as conn:
                        conn.execute(f"SELECT * FROM recsys_recommend({1000 + i * 37}, 20)").fetchall()
                for trial in range(3):
                    out, barrier = [], threading.Barrier(20)
                    users = [5000 + rnd * 1000 + trial * 100 + j * 13 for j in range(20)]
                    threads = [threading.Thread(target=first_call, args=(u, out, barrier)) for u in users]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    out.sort()
                    res[so].append((out[len(out) // 2], out[-1]))
                    print(f"{so}: burst median {out[len(out) // 2]:.1f} ms, slowest {out[-1]:.1f} ms", flush=True)
    finally:
        install(before)
        os.remove(before)
        restart()
    for so, v in res.items():
        print(f"{so}: medians over {len(v)} bursts: median call {statistics.median(x[0] for x in v):.1f} ms, "
              f"slowest call {statistics.median(x[1] for x in v):.1f} ms")


if __name__ == "__main__":
    main()
