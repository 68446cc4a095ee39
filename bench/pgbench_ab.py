"""One build of the extension against another under pgbench: 1 client, alternating cells.

Each cell installs one build's shared library (as bench/build_ab.py does: copied beside the
installed one, then renamed over it), runs `pgbench -n -c 1 -T SECS -f SCRIPT` (new
connections, so the new library is loaded; the server must not preload it) and keeps the
average latency pgbench reports. The median per build and the ratio are printed; the build
installed before the run is installed again at the end.

Usage: python bench/pgbench_ab.py A.so B.so SCRIPT [--secs 5] [--rounds 7]
Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq defaults).
Example SCRIPT (recsys_similar over spread posts of the serving data set):
    \\set pid random(1, 100000)
    SELECT count(*) FROM recsys_similar(:pid, 20);
"""
import argparse
import re
import subprocess

from build_ab import alternate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("script")
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()

    def measure():
        out = subprocess.run(["pgbench", "-n", "-c", "1", "-T", str(a.secs), "-f", a.script],
                             check=True, capture_output=True, text=True).stdout
        return float(re.search(r"latency average = ([\d.]+) ms", out).group(1))

    alternate(a.a, a.b, a.rounds, "latency ms", measure)


if __name__ == "__main__":
    main()
