"""ALS seconds per iteration and NDCG@10: pg_recsys's core vs implicit 0.7.3, same data, one run.

Both train on the same matrices (written once to a shared file), with the same factors,
regularisation, iterations and 2 threads; NDCG@10 on ML-100K is computed by the same numpy code
from each model's factors. Confidence semantics differ: implicit uses c = alpha*value, ours
c = 1 + alpha*value; on binary data ours gets alpha - 1 so every confidence is equal.
Usage: python bench/als_vs_implicit.py [--quick]   (run by bench/als.sh)
"""
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice: BLAS threads off
os.environ.setdefault("MKL_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from implicit.cpu.als import AlternatingLeastSquares  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
BIN = os.path.join(ROOT, "target", "release", "examples", "bench_als")
THREADS = 2


def write_matrix(path, m):
    m = m.tocoo()
    with open(path, "wb") as f:
        np.array([m.shape[0], m.shape[1]], dtype="<u4").tofile(f)
        np.array([m.nnz], dtype="<u8").tofile(f)
        m.row.astype("<u4").tofile(f)
        m.col.astype("<u4").tofile(f)
        m.data.astype("<f4").tofile(f)


def ours(path, factors, reg, alpha, iters, prefix=None):
    args = [BIN, path, str(factors), str(reg), str(alpha), str(iters), str(THREADS)]
    if prefix:
        args.append(prefix)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def theirs(m, factors, reg, alpha, iters):
    times = []
    model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=iters,
                                    use_cg=True, calculate_training_loss=False, random_state=42,
                                    num_threads=THREADS)
    model.fit(m, show_progress=False, callback=lambda it, el, loss: times.append(el))
    return model, times


def ml100k():
    d = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch_ml100k.sh")], check=True,
                       capture_output=True, text=True).stdout.strip()
    raw = np.loadtxt(os.path.join(d, "ml-100k.inter"), skiprows=1, dtype=np.float64)
    raw = raw[raw[:, 2] >= 4]
    users, u = np.unique(raw[:, 0].astype(np.int64), return_inverse=True)
    items, i = np.unique(raw[:, 1].astype(np.int64), return_inverse=True)
    rng = np.random.default_rng(42)
    test = np.zeros(len(u), dtype=bool)
    order = np.argsort(u, kind="stable")
    bounds = np.searchsorted(u[order], np.arange(len(users) + 1))
    for k in range(len(users)):
        idx = order[bounds[k]:bounds[k + 1]]
        n = len(idx)
        if n >= 2:
            nt = min(max(1, int(round(0.2 * n))), n - 1)
            test[rng.permutation(idx)[:nt]] = True
    shape = (len(users), len(items))
    train = sp.csr_matrix((np.ones((~test).sum(), np.float32), (u[~test], i[~test])), shape=shape)
    testm = sp.csr_matrix((np.ones(test.sum(), np.float32), (u[test], i[test])), shape=shape)
    return train, testm


def ndcg_at_10(uf, itf, train, test):
    scores = uf @ itf.T
    scores[train.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    disc = 1.0 / np.log2(np.arange(2, 12))
    total, n = 0.0, 0
    for u in range(test.shape[0]):
        truth = set(test.indices[test.indptr[u]:test.indptr[u + 1]])
        if not truth:
            continue
        dcg = sum(disc[p] for p, it in enumerate(top[u]) if it in truth)
        idcg = disc[:min(10, len(truth))].sum()
        total += dcg / idcg
        n += 1
    return total / n


def synthetic(users, items, nnz, seed=42):
    rng = np.random.default_rng(seed)
    n = int(nnz * 1.15)  # extra draws, duplicates are removed below
    u = np.minimum((users * rng.random(n) ** 1.6).astype(np.int64), users - 1)
    i = np.minimum((items * rng.random(n) ** 2.5).astype(np.int64), items - 1)
    key = np.unique(u * items + i)[: nnz]
    rng.shuffle(key)
    key = key[:nnz]
    return sp.csr_matrix((np.ones(len(key), np.float32), (key // items, key % items)), shape=(users, items))


def e2e(port, users, items, nnz):
    """recsys_train end to end on the synthetic matrix loaded into the interactions table."""
    m = synthetic(users, items, nnz).tocoo()
    csv = os.path.join(OUT, "e2e.csv")
    np.savetxt(csv, np.column_stack([m.row + 1, m.col + 1]), fmt="%d,%d,view")
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres"]
    subprocess.run(psql + ["-f", os.path.join(ROOT, "scripts", "schema.sql")], check=True)
    subprocess.run(psql + ["-c", "CREATE EXTENSION IF NOT EXISTS pg_recsys; DROP TABLE IF EXISTS posts; TRUNCATE interactions"], check=True)
    t = time.time()
    with open(csv) as f:
        subprocess.run(psql + ["-c", "COPY interactions (user_id, post_id, kind) FROM STDIN WITH (FORMAT csv)"], stdin=f, check=True)
    load_s = time.time() - t
    os.remove(csv)
    subprocess.run(psql + ["-c", "VACUUM ANALYZE interactions"], check=True)
    q = ("SET maintenance_work_mem = '4GB'; SET client_min_messages = warning; SET recsys.threads = 2;"
         "SELECT recsys_train('{\"factors\": 64, \"iterations\": 15, \"regularization\": 0.05, \"alpha\": 4}') - 'loss';"
         "SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status') from 'VmHWM:\\s+(\\d+) kB');")
    t = time.time()
    out = subprocess.run(psql + ["-A", "-t", "-c", q], check=True, capture_output=True, text=True).stdout.split("\n")
    wall = time.time() - t
    lines = [x for x in out if x.strip()]
    report, hwm_kb = json.loads(lines[0]), int(lines[1])
    mcsr = m.tocsr()
    t = time.time()
    theirs(mcsr, 64, 0.05, 5.0, 15)
    fit = time.time() - t
    return report, hwm_kb, wall, fit, load_s


def main():
    quick = "--quick" in sys.argv
    port = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--e2e=")), None)
    os.makedirs(OUT, exist_ok=True)
    rows = []
    reg, alpha_imp, iters = 0.05, 5.0, 15
    # 1. ML-100K, 64 factors, implicit's settings: time and NDCG.
    train, test = ml100k()
    path = os.path.join(OUT, "ml100k.bin")
    write_matrix(path, train)
    r_ours = ours(path, 64, reg, alpha_imp - 1, iters, os.path.join(OUT, "ml100k"))
    uf = np.fromfile(os.path.join(OUT, "ml100k.user.f32"), dtype="<f4").reshape(train.shape[0], 64)
    itf = np.fromfile(os.path.join(OUT, "ml100k.item.f32"), dtype="<f4").reshape(train.shape[1], 64)
    model, t_imp = theirs(train, 64, reg, alpha_imp, iters)
    n_ours = ndcg_at_10(uf, itf, train, test)
    n_imp = ndcg_at_10(np.asarray(model.user_factors), np.asarray(model.item_factors), train, test)
    rows.append(("ML-100K rating>=4 (train split)", train.nnz, 64, float(np.median(t_imp)), r_ours["median_iter"], n_imp, n_ours))
    # 2. Synthetic power-law matrices, 64 factors, 5 iterations (median per iteration).
    sizes = [(50_000, 10_000, 1_000_000)] if quick else [(50_000, 10_000, 1_000_000), (500_000, 50_000, 10_000_000), (1_000_000, 100_000, 20_000_000)]
    sweep = []
    for users, items, nnz in sizes:
        m = synthetic(users, items, nnz)
        path = os.path.join(OUT, f"synth_{nnz}.bin")
        write_matrix(path, m)
        for factors in ([32, 64, 128] if nnz == 1_000_000 else [64]):
            r_ours = ours(path, factors, reg, alpha_imp - 1, 5)
            _, t_imp = theirs(m, factors, reg, alpha_imp, 5)
            row = (f"synthetic {users // 1000}K x {items // 1000}K", m.nnz, factors, float(np.median(t_imp)), r_ours["median_iter"], None, None)
            (rows if factors == 64 else sweep).append(row)
        os.remove(path)
    lines = ["| case | nnz | factors | implicit s/iter | pg_recsys s/iter | time ratio | NDCG@10 implicit | NDCG@10 pg_recsys | NDCG ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, nnz, f, ti, to, ni, no in rows + sweep:
        nd = f"| {ni:.4f} | {no:.4f} | {no / ni:.3f} |" if ni else "| – | – | – |"
        lines.append(f"| {name} | {nnz:,} | {f} | {ti:.4f} | {to:.4f} | {to / ti:.2f}x " + nd)
    print("\n".join(lines), flush=True)
    if port:
        e_users, e_items, e_nnz = (50_000, 10_000, 1_000_000) if quick else (500_000, 50_000, 10_000_000)
        rep, hwm, wall, fit, load_s = e2e(port, e_users, e_items, e_nnz)
        sec = rep["seconds"]
        lines += ["", f"recsys_train end to end, synthetic {e_users // 1000}K x {e_items // 1000}K, {rep['nonzeros']:,} nnz in a table "
                  f"(COPY took {load_s:.1f}s), 64 factors, 15 iterations, 2 threads:", "",
                  "| phase | seconds |", "|---|---|",
                  f"| SPI read | {sec['read']:.2f} |", f"| ALS (15 iterations, loss on) | {sec['train']:.2f} |",
                  f"| TF-IDF | {sec.get('content', 0):.2f} |", f"| model write | {sec['save']:.2f} |",
                  f"| **total** (`recsys_train`) | **{sec['total']:.2f}** |",
                  f"| implicit `fit` alone, same matrix and settings | {fit:.2f} |",
                  f"| **ratio** recsys_train / implicit fit | **{sec['total'] / fit:.2f}x** |", "",
                  f"Backend peak RSS (VmHWM) {hwm / 1024:.0f} MB; the train's own estimate {rep['memory_estimate_mb']} MB."]
    table = "\n".join(lines)
    if port:
        print("\n".join(lines[len(rows) + len(sweep) + 2:]))
    with open(os.path.join(OUT, "als.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"(total {time.time() - t:.0f}s)")
