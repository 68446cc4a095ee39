"""One build of the extension against another under pgbench: 1 client, alternating cells.

Each cell installs one build's shared library (as bench/build_ab.py does: copied beside the
installed one, then renamed over it), runs `pgbench -n -c 1 -T SECS -f SCRIPT` (new
connections, so the new library is loaded; the server must not preload it) and keeps the
average latency pgbench reports (`--metric`: or the median, the 99.9th percentile or the
slowest call, from pgbench's per-transaction log). The median per build and the ratio are
printed; the build installed before the run is installed again at the end.

Usage: python bench/pgbench_ab.py A.so B.so SCRIPT [--secs 5] [--rounds 7] [--metric avg|p50|p999|max]
Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq defaults).
Example SCRIPT (recsys_similar over spread posts of the serving data set):
    \\set pid random(1, 100000)
    SELECT count(*) FROM recsys_similar(:pid, 20);
"""
import argparse
import glob
import os
import re
import subprocess
import tempfile

from build_ab import alternate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("script")
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--metric", choices=["avg", "p50", "p999", "max"], default="avg")
    a = ap.parse_args()
    script = os.path.abspath(a.script)

    def measure():
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(["pgbench", "-n", "-c", "1", "-T", str(a.secs), "-f", script, "--log"],
                                 check=True, capture_output=True, text=True, cwd=d).stdout
            if a.metric == "avg":
                return float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
            lat = sorted(int(line.split()[2]) / 1000.0 for f in glob.glob(os.path.join(d, "pgbench_log*"))
                         for line in open(f) if line.strip())
        at = {"p50": 0.5, "p999": 0.999, "max": 1.0}[a.metric]
        return lat[min(len(lat) - 1, int(at * len(lat)))]

    alternate(a.a, a.b, a.rounds, f"latency ms ({a.metric})", measure)


if __name__ == "__main__":
    main()
