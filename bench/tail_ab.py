"""One build against another under pgbench at 1 client, for the tail: alternating cells of SECS
seconds each, every cell's p50, p99, p99.9, slowest call and calls over 50 ms from pgbench's
per-transaction log, then the medians per build. Installs as bench/build_ab.py does (the
server must not preload the library) and puts the installed build back at the end.

Usage: python bench/tail_ab.py A.so B.so ROUNDS SECS SCRIPT
Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq defaults).
"""
import glob, os, shutil, statistics, subprocess, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_ab import install
a, b, rounds, secs, script = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), os.path.abspath(sys.argv[5])
libdir = subprocess.run(["pg_config", "--pkglibdir"], check=True, capture_output=True, text=True).stdout.strip()
dest = os.path.join(libdir, "pg_recsys.so"); saved = dest + ".saved"; shutil.copyfile(dest, saved)
res = {"A": [], "B": []}
try:
    for _ in range(rounds):
        for name, so in (("A", a), ("B", b)):
            install(so, dest)
            with tempfile.TemporaryDirectory() as d:
                subprocess.run(["pgbench", "-n", "-c", "1", "-T", str(secs), "-f", script, "--log"], check=True, capture_output=True, cwd=d)
                lat = sorted(int(l.split()[2]) / 1000 for f in glob.glob(d + "/pgbench_log*") for l in open(f) if l.strip())
            q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
            res[name].append((len(lat), q(0.5), q(0.99), q(0.999), lat[-1], sum(x > 50 for x in lat)))
            print(name, res[name][-1], flush=True)
finally:
    install(saved, dest); os.unlink(saved)
for name in res:
    cols = list(zip(*res[name]))
    print(name, "median calls %.0f p50 %.3f p99 %.3f p999 %.3f max %.1f over50ms %.0f" % tuple(statistics.median(c) for c in cols))
