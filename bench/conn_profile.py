"""Where a new connection's CPU goes, from a profile of the backends: reads `perf script -F
comm,tid,ip,sym,dso` output and puts each sample of the backends in one class (the
recsys_recommend call, the helper thread, start, fork, exit, the query outside the call,
other), printed as ms of CPU per connection.

  perf record -F 2000 --call-graph dwarf,16384 -p "$(head -1 $PGDATA/postmaster.pid)" -o p.data
  (N new connections, one call each; then stop perf with SIGINT)
  perf script -i p.data -F comm,tid,ip,sym,dso > p.txt
  python bench/conn_profile.py p.txt N [2000]
"""
import collections
import sys


def samples(path):
    cur = None
    for line in open(path):
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif not line.startswith((" ", "\t")):
            cur = (line.split()[0], [])
        elif cur:
            parts = line.strip().split(None, 1)
            if len(parts) > 1:
                cur[1].append(parts[1])
    if cur:
        yield cur


def classify(comm, frames):
    s = " ".join(frames)
    if comm != "postgres":
        return f"helper thread ({comm})"
    if "recsys_recommend_wrapper" in s:
        return "the call"
    if any(x in s for x in ("proc_exit", "do_exit", "exit_mmap", "__run_exit_handlers")):
        if "call_tls_dtors" in s:
            return "exit: thread-local destructors"
        return "exit: the rest"
    if any(x in s for x in ("InitPostgres", "BackendInitialize", "InitProcess")):
        return "start"
    if any(x in s for x in ("_Fork", "copy_process", "ret_from_fork")):
        return "fork"
    if any(x in s for x in ("exec_", "PortalRun", "pg_plan", "pg_analyze", "pg_parse")):
        return "query outside the call"
    return "other (stack not unwound)"


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    hz = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    cats = collections.Counter(classify(c, f) for c, f in samples(path))
    for k, v in cats.most_common():
        print(f"{v * 1000 / hz / n:6.2f} ms per connection  {k}")


main()
