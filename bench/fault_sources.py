"""Where a new connection's first recsys_recommend call takes its page faults: per connection
(one at a time), `perf record -e page-faults -c 1 -d` on the backend around the first call,
each fault's data address placed in the backend's mappings (/proc/PID/maps after the call:
[heap], the model image file, shared buffers, pg_recsys.so's code, ...). Prints the mean faults
per first call by mapping. Every fresh page costs about the same whether it is faulted or populated
in advance (1.2-1.5 µs per 4 kB page on the VM of BENCHMARKS.md's seventeenth session), so
the [heap] row is what the call's new private memory costs.

Needs perf and the server on this machine (root). Users from --first-user on, 37 apart (ask
them once first, so that their index pages are in shared buffers).
Usage: python bench/fault_sources.py [CONNECTIONS] [--als-only] [--first-user N]
Environment: PGHOST, PGPORT, PGUSER.
"""
import argparse
import bisect
import collections
import os
import signal
import subprocess
import tempfile
import time

import psycopg

from first_call import ALS_ONLY


def mappings(pid):
    out = []
    with open(f"/proc/{pid}/maps") as fh:
        for line in fh:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            name = f[5].rsplit("/", 1)[-1] if len(f) > 5 else "[anonymous]"
            if name.startswith("PostgreSQL") or name == "zero":
                name = "shared memory (shared buffers)"
            elif name.endswith(".img"):
                name = "model image"
            out.append((lo, hi, f"{name} {f[1]}"))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("connections", type=int, nargs="?", default=10)
    ap.add_argument("--als-only", action="store_true")
    ap.add_argument("--first-user", type=int, default=5000)
    a = ap.parse_args()
    extra = ALS_ONLY if a.als_only else ""
    total = collections.Counter()
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "faults.data")
        for k in range(a.connections):
            with psycopg.connect(autocommit=True) as c:
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                perf = subprocess.Popen(["perf", "record", "-q", "-m", "1024", "-e", "page-faults", "-c", "1", "-d", "-p", str(pid), "-o", data],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.3)  # perf attached
                c.execute(f"SELECT count(*) FROM recsys_recommend({a.first_user + 37 * k}, 20{extra})").fetchall()
                maps = mappings(pid)
                time.sleep(0.1)
                perf.send_signal(signal.SIGINT)
                perf.wait()
            starts = [m[0] for m in maps]
            out = subprocess.run(["perf", "script", "-i", data, "-F", "addr"], capture_output=True, text=True).stdout
            for line in out.split():
                addr = int(line, 16)
                i = bisect.bisect_right(starts, addr) - 1
                total[maps[i][2] if i >= 0 and addr < maps[i][1] else "unmapped"] += 1
    n = a.connections
    for name, count in total.most_common(12):
        print(f"{count / n:8.1f}  {name}")
    print(f"{sum(total.values()) / n:8.1f}  in all, per first call ({n} connections{', ALS only' if a.als_only else ''})")


if __name__ == "__main__":
    main()
