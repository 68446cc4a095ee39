"""Backend CPU per recsys_recommend call, one build of the extension against another.

This VM's speed drifts by up to 2x within minutes, so two builds are compared in alternating
cells: each cell installs one build's shared library (copied next to the installed one, then
renamed over it: backends that have the old file mapped keep it), opens a new connection,
makes one call to load the library and the model, then times N calls over spread users (the
backend's CPU time from /proc/<pid>/stat: the server must run on this machine). Five rounds;
the median per build and the ratio are printed. The trending cache is held for an hour so that
a re-aggregation of the trending window does not land in one cell. The build that was
installed before the run is installed again at the end.

With --first N a cell is instead N new connections, one after another, each timing its first
call (wall clock from the client, after a `SELECT 1`; the library load is part of it unless
the server preloads the library, which this script's swapping cannot work with); the cell's
figure is their median.

Both builds must use the same SQL (same extension version) and read the deployed model.

With --only U1,U2,... the timed calls go round those users instead (heavy users, say: their
calls are dominated by their own history).

With --thread a cell times the CPU of the backend's own thread instead of the process's
(/proc/<pid>/task/<pid>/schedstat, nanoseconds, not clock ticks), with recsys.serving_helper
off so that the whole call runs on that thread (the helper's waiting awake is CPU of the
process that is no work of the call).

Usage: python bench/build_ab.py A.so B.so [--als-only] [--calls N] [--users U] [--rounds R] [--first N] [--only U1,U2,...] [--thread]
Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq defaults).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import time

import psycopg

ALS_ONLY = ', weights => \'{"als": 1, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}\''


def install(src, dest):
    tmp = dest + ".ab-tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def thread_seconds(pid):
    """CPU time of backend `pid`'s own thread, in seconds (schedstat: nanoseconds)."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as fh:
        return int(fh.read().split()[0]) / 1e9


def cell(extra, calls, users, only=None, thread=False):
    with psycopg.connect(autocommit=True) as conn:
        cur = conn.cursor()
        pid = cur.execute("SELECT pg_backend_pid()").fetchone()[0]
        cur.execute("SET recsys.trending_cache_seconds = 3600")
        if thread:
            cur.execute("SET recsys.serving_helper = off")
        # The first call opens the model. A typical user, not user 1: a heavy user's call frees
        # large blocks, which makes glibc raise its mmap threshold, and the cell would then not
        # measure what a backend serving ordinary users does.
        cur.execute(f"SELECT count(*) FROM recsys_recommend({users // 2 + 1}, 20{extra})")

        def cpu():
            if thread:
                return thread_seconds(pid)
            f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        c0 = cpu()
        user = f"(ARRAY[{only}]::int8[])[i % {len(only.split(','))} + 1]" if only else f"(i * 7919) % {users} + 1"
        cur.execute(f"DO $$ DECLARE i int; c int; BEGIN FOR i IN 1..{calls} LOOP "
                    f"SELECT count(*) INTO c FROM recsys_recommend({user}, 20{extra}); END LOOP; END $$")
        return (cpu() - c0) * 1000 / calls


def first_cell(extra, connections, users):
    out = []
    for k in range(connections):
        with psycopg.connect(autocommit=True) as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            t = time.perf_counter()
            cur.execute(f"SELECT count(*) FROM recsys_recommend({(k * 7919) % users + 1}, 20{extra})")
            cur.fetchall()
            out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--als-only", action="store_true")
    ap.add_argument("--calls", type=int, default=600)
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--only", help="comma-separated user ids the timed calls go round")
    ap.add_argument("--thread", action="store_true", help="time the backend thread's CPU, helper off")
    a = ap.parse_args()
    if a.only:
        a.only = ",".join(str(int(u)) for u in a.only.split(","))
    extra = ALS_ONLY if a.als_only else ""
    alternate(a.a, a.b, a.rounds, "first call ms" if a.first else "cpu ms/call",
              lambda: first_cell(extra, a.first, a.users) if a.first else cell(extra, a.calls, a.users, a.only, a.thread))


def alternate(a, b, rounds, unit, measure, labels=None):
    """Installs build A, then build B, `rounds` times, calling `measure()` after each install;
    installs the build that was there before again at the end; prints each build's figures
    (`unit`), their medians and the ratio B / A. With `labels`, `measure()` returns one figure
    per label, and each is printed with its medians."""
    libdir = subprocess.run(["pg_config", "--pkglibdir"], check=True, capture_output=True, text=True).stdout.strip()
    dest = os.path.join(libdir, "pg_recsys.so")
    saved = dest + ".ab-saved"
    shutil.copyfile(dest, saved)
    res = {"A": [], "B": []}
    try:
        for _ in range(rounds):
            for name, path in (("A", a), ("B", b)):
                install(path, dest)
                res[name].append(measure())
    finally:
        install(saved, dest)
        os.unlink(saved)
    if labels:
        for name in res:
            cols = list(zip(*res[name]))
            print(f"{name} ({unit}): " + "; ".join(f"{l} {[round(x, 2) for x in c]}, median {statistics.median(c):.2f}" for l, c in zip(labels, cols)))
        return
    for name in res:
        print(f"{name}: {unit} {[round(x, 3) for x in res[name]]}, median {statistics.median(res[name]):.3f}")
    print(f"B / A (medians): {statistics.median(res['B']) / statistics.median(res['A']):.3f}; "
          f"per round: {[round(b / a_, 3) for a_, b in zip(res['A'], res['B'])]}")

if __name__ == "__main__":
    main()
