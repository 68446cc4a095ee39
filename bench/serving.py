"""Serving under pgbench: recsys_recommend (with and without a category filter), recsys_similar,
recsys_trending, and the plain-SQL alternative a user would write over the same factors (a
float4[] per post and per user, ORDER BY a dot product LIMIT 20), at several client counts.

Run by bench/serving.sh, which starts the cluster and loads the data. Prints a markdown table:
QPS and p50/p99 latency in ms from pgbench's per-transaction log.
Usage: python bench/serving.py POSTS SECONDS CLIENTS... (environment: PGHOST, PGPORT, PGUSER)
"""
import base64
import glob
import os
import statistics
import struct
import subprocess
import sys
import tempfile

POSTS, SECS = int(sys.argv[1]), int(sys.argv[2])
CLIENTS = [int(c) for c in sys.argv[3:]] or [1, 2, 8, 16]
USERS = POSTS // 5


def psql(sql, *extra):
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", *extra, "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def part(name, fmt, size):
    rows = psql(f"SELECT encode(data, 'base64') FROM _recsys_model_data WHERE model_id = (SELECT max(id) FROM _recsys_model) "
                f"AND part = '{name}' ORDER BY chunk").split()
    raw = b"".join(base64.b64decode(r) for r in rows)
    return struct.unpack(f"<{len(raw) // size}{fmt}", raw)


def plain_sql_tables():
    f = int(psql("SELECT factors FROM _recsys_model ORDER BY id DESC LIMIT 1"))
    for kind in ("item", "user"):
        ids = part(f"{kind}_ids", "q", 8)
        vals = part(f"{kind}_factors", "f", 4)
        tmp = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
        for k, i in enumerate(ids):
            v = ",".join(f"{x:.7g}" for x in vals[k * f:(k + 1) * f])
            tmp.write(f'{i},"{{{v}}}"\n')
        tmp.close()
        psql(f"DROP TABLE IF EXISTS {kind}_vec; CREATE TABLE {kind}_vec (id bigint PRIMARY KEY, v real[])")
        psql(f"\\copy {kind}_vec FROM '{tmp.name}' WITH (FORMAT csv)")
        os.unlink(tmp.name)
    psql("ANALYZE item_vec; ANALYZE user_vec")


QUERIES = {
    "recsys_recommend(k=20)": "SELECT count(*) FROM recsys_recommend(:uid, 20);",
    "recsys_recommend(k=20, category)": "SELECT count(*) FROM recsys_recommend(:uid, 20, category => 'dance');",
    "recsys_recommend(k=20), ALS only": "SELECT count(*) FROM recsys_recommend(:uid, 20, weights => '{\"content\": 0, \"social\": 0, \"popularity\": 0, \"freshness\": 0, \"demographic\": 0}');",
    "recsys_similar(k=20)": "SELECT count(*) FROM recsys_similar(:pid, 20);",
    "recsys_trending(k=20)": "SELECT count(*) FROM recsys_trending(20);",
    "plain SQL: float4[] dot product ORDER BY LIMIT 20": (
        "SELECT count(*) FROM (SELECT i.id FROM item_vec i, user_vec u WHERE u.id = :uid "
        "ORDER BY (SELECT sum(a * b) FROM unnest(i.v, u.v) AS t(a, b)) DESC LIMIT 20) s;"),
}


def run(sql, clients, secs):
    d = tempfile.mkdtemp()
    script = os.path.join(d, "q.sql")
    with open(script, "w") as fh:
        fh.write(f"\\set uid random(1, {USERS})\n\\set pid random(1, {POSTS})\n{sql}\n")
    out = subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(secs), "-f", script,
                          "--log", "--log-prefix", os.path.join(d, "log"), "postgres"],
                         check=True, capture_output=True, text=True, cwd=d).stdout
    lat = []
    for f in glob.glob(os.path.join(d, "log*")):
        with open(f) as fh:
            lat += [int(line.split()[2]) / 1000.0 for line in fh if line.strip()]
    tps = float(next(l for l in out.splitlines() if l.startswith("tps")).split()[2])
    errors = next((l for l in out.splitlines() if "failed transactions" in l), "")
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    return tps, statistics.median(lat) if lat else float("nan"), p(0.99), len(lat), errors


def main():
    plain_sql_tables()
    print(f"\nServing, synthetic catalogue of {POSTS:,} posts ({USERS:,} users), {SECS} s per cell, 2 cores shared by server and pgbench:\n")
    print("| query | clients | QPS | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    qps = {}
    for name, sql in QUERIES.items():
        for c in CLIENTS:
            tps, p50, p99, n, errors = run(sql, c, SECS)
            qps[(name, c)] = tps
            print(f"| {name} | {c} | {tps:,.0f} | {p50:.2f} | {p99:.2f} |", flush=True)
    plain = "plain SQL: float4[] dot product ORDER BY LIMIT 20"
    print("\n| clients | recsys_recommend QPS / plain SQL QPS | ALS-only recsys_recommend / plain SQL |")
    print("|---|---|---|")
    for c in CLIENTS:
        print(f"| {c} | {qps[('recsys_recommend(k=20)', c)] / qps[(plain, c)]:.1f}× | {qps[('recsys_recommend(k=20), ALS only', c)] / qps[(plain, c)]:.1f}× |")


main()
