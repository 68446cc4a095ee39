"""The pgvector alternative over a trained model's factors, shared by bench/serving.py and
bench/memory.py: item_vec (the served post factors, recsys_item_factors) and user_vec (the
newest model's trained user factors, read from its stored parts) as vector(F) columns, and the
query a user of pgvector writes for a feed: ORDER BY v <#> user LIMIT 20.

Environment: PGHOST, PGPORT, PGUSER (database postgres).
"""
import base64
import os
import struct
import subprocess
import tempfile

# The user's top 20 by inner product (pgbench syntax: :uid is the user id).
KNN = "SELECT count(*) FROM (SELECT i.id FROM item_vec i ORDER BY i.v <#> (SELECT v FROM user_vec WHERE id = :uid) LIMIT 20) s;"


def psql(sql, *extra):
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", *extra, "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def part(name, fmt, size):
    rows = psql(f"SELECT encode(data, 'base64') FROM _recsys_model_data WHERE model_id = (SELECT max(id) FROM _recsys_model) "
                f"AND part = '{name}' ORDER BY chunk").split()
    raw = b"".join(base64.b64decode(r) for r in rows)
    return struct.unpack(f"<{len(raw) // size}{fmt}", raw)


def tables(users=None):
    """Creates item_vec and user_vec (only the ids in `users` when given); returns (factors,
    post vectors, user vectors)."""
    f = int(psql("SELECT factors FROM _recsys_model ORDER BY id DESC LIMIT 1"))
    psql("CREATE EXTENSION IF NOT EXISTS vector")
    psql(f"DROP TABLE IF EXISTS item_vec, user_vec, bench_exact; "
         f"CREATE TABLE item_vec (id bigint PRIMARY KEY, v vector({f})); "
         f"CREATE TABLE user_vec (id bigint PRIMARY KEY, v vector({f}))")
    psql("INSERT INTO item_vec SELECT post_id, factors::vector FROM recsys_item_factors()")
    ids, vals = part("user_ids", "q", 8), part("user_factors", "f", 4)
    keep = set(users) if users is not None else None
    tmp = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    n = 0
    for k, i in enumerate(ids):  # %.9g round-trips a float32 exactly
        if keep is None or i in keep:
            tmp.write(f'{i},"[{",".join(f"{x:.9g}" for x in vals[k * f:(k + 1) * f])}]"\n')
            n += 1
    tmp.close()
    psql(f"\\copy user_vec FROM '{tmp.name}' WITH (FORMAT csv)")
    os.unlink(tmp.name)
    psql("VACUUM ANALYZE item_vec", "-c", "VACUUM ANALYZE user_vec")
    return f, int(psql("SELECT count(*) FROM item_vec")), n


def hnsw():
    """Builds the HNSW index on item_vec (default m / ef_construction); returns the plan of KNN,
    which must use it."""
    psql("SET maintenance_work_mem = '1GB'; CREATE INDEX item_vec_hnsw ON item_vec USING hnsw (v vector_ip_ops)")
    plan = psql(f"EXPLAIN {KNN.replace(':uid', '1')}")
    assert "item_vec_hnsw" in plan, plan
    return plan
