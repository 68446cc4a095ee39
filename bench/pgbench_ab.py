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
import os
import re
import shutil
import statistics
import subprocess

from build_ab import install


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("script")
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    libdir = subprocess.run(["pg_config", "--pkglibdir"], check=True, capture_output=True, text=True).stdout.strip()
    dest = os.path.join(libdir, "pg_recsys.so")
    saved = dest + ".ab-saved"
    shutil.copyfile(dest, saved)
    res = {"A": [], "B": []}
    try:
        for _ in range(a.rounds):
            for name, path in (("A", a.a), ("B", a.b)):
                install(path, dest)
                out = subprocess.run(["pgbench", "-n", "-c", "1", "-T", str(a.secs), "-f", a.script],
                                     check=True, capture_output=True, text=True).stdout
                res[name].append(float(re.search(r"latency average = ([\d.]+) ms", out).group(1)))
    finally:
        install(saved, dest)
        os.unlink(saved)
    for name in res:
        print(f"{name}: latency ms {res[name]}, median {statistics.median(res[name]):.3f}")
    print(f"B / A (medians): {statistics.median(res['B']) / statistics.median(res['A']):.3f}; "
          f"per round: {[round(b / a_, 3) for a_, b in zip(res['A'], res['B'])]}")


if __name__ == "__main__":
    main()
