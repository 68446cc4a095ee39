"""EASE and RP3beta in numpy/scipy on ML-100K rating >= 4: the peer figures for pg_recsys's item
graphs (crates/recsys-core/src/graph.rs, tests/graph_quality.rs).

The split is the Rust one bit for bit: the core's xoshiro256** stream per user, seed 42, 20% of
each user's positives held out (recsys_core::split::holdout), items numbered in order of first
appearance as the Rust test does. So NDCG@10 here and in `cargo test --test graph_quality` are
measured on the same train/test pairs; the printed split fingerprint must match the test's.

EASE is Steck's reference code (dense float64, np.linalg.inv, full B with negatives), and the
same B cut to the 100 largest |B_ij| a row, which is what graph.rs stores (at lambda 400, k 100
the Rust test measures 0.3164). RP3beta follows Dacrema et al.'s
RP3betaRecommender (RecSys 2019 reproducibility code): P_ui and P_iu row-normalised, raised
to alpha, columns divided by popularity^beta, diagonal zeroed, top-k per row.

Usage (the bench venv, as the other peer scripts):
  [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q numpy scipy
  bench/.venv/bin/python bench/graph_peers.py
"""
import os
import subprocess
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")  # the machine kind of DATASETS.md: 2 cores
os.environ.setdefault("MKL_NUM_THREADS", "2")
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M64 = (1 << 64) - 1


class Rng:
    """recsys_core::rng::Rng: xoshiro256** seeded by SplitMix64."""

    def __init__(self, seed):
        x = seed & M64
        s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            s.append(z ^ (z >> 31))
        self.s = s

    def next_u64(self):
        s = self.s
        rotl = lambda v, k: ((v << k) | (v >> (64 - k))) & M64  # noqa: E731
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        threshold = ((1 << 64) - n) % n
        while True:
            m = self.next_u64() * n
            if (m & M64) >= threshold:
                return m >> 64

    def shuffle(self, v):
        for i in range(len(v) - 1, 0, -1):
            j = self.below(i + 1)
            v[i], v[j] = v[j], v[i]


def ml100k():
    d = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch_ml100k.sh")], check=True,
                       capture_output=True, text=True).stdout.strip().splitlines()[-1]
    users, items, rows = {}, {}, []
    with open(os.path.join(d, "ml-100k.inter")) as f:
        next(f)
        for line in f:
            u, i, r = line.split("\t")[:3]
            if float(r) < 4:
                continue
            rows.append((users.setdefault(u, len(users)), items.setdefault(i, len(items))))
    nu, ni = len(users), len(items)
    by_user = [[] for _ in range(nu)]
    for u, i in rows:
        by_user[u].append(i)
    tr, te = ([], []), ([], [])
    for u in range(nu):
        idx = sorted(set(by_user[u]))
        n = len(idx)
        n_test = min(max(1, int(np.floor(n * 0.2 + 0.5))), n - 1) if n >= 2 else 0
        order = list(range(n))
        Rng(42 ^ ((u * 0x9E3779B97F4A7C15) & M64)).shuffle(order)
        for pos, k in enumerate(order):
            dst = te if pos < n_test else tr
            dst[0].append(u)
            dst[1].append(idx[k])
    mk = lambda p: sp.csr_matrix((np.ones(len(p[0]), np.float64), p), shape=(nu, ni))  # noqa: E731
    return mk(tr), mk(te)


def ndcg_at_10(score_fn, train, test, block=256):
    """Mean NDCG@10 over users with test items; ideal DCG over min(10, |test|); training items
    removed; ties to the lower item index (stable sort), as recsys_core::eval does."""
    disc = 1.0 / np.log2(np.arange(2, 12))
    users = np.flatnonzero(np.diff(test.indptr))
    total = 0.0
    for b in range(0, len(users), block):
        us = users[b:b + block]
        s = np.asarray(score_fn(us), dtype=np.float64)
        s[train[us].nonzero()] = -np.inf
        top = np.argsort(-s, axis=1, kind="stable")[:, :10]
        for row, u in zip(top, us):
            truth = test.indices[test.indptr[u]:test.indptr[u + 1]]
            hits = np.isin(row, truth)
            total += (disc * hits).sum() / disc[:min(10, len(truth))].sum()
    return total / len(users)


def ease(train, lam):
    """Steck 2019, the paper's code."""
    g = (train.T @ train).toarray()
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    return b


def top_k_rows(w, k, by_magnitude):
    """Keeps k entries of each row (the largest |w| or the largest w) as a sparse matrix."""
    w = np.array(w, dtype=np.float64)
    if k < w.shape[1]:
        part = np.argpartition(-(np.abs(w) if by_magnitude else w), k, axis=1)[:, k:]
        np.put_along_axis(w, part, 0.0, axis=1)
    return sp.csr_matrix(w)


def rp3beta(train, alpha, beta, k):
    """Dacrema et al.'s RP3betaRecommender.fit (implicit, no similarity normalisation)."""
    pui = sp.csr_matrix(train / train.sum(axis=1).clip(min=1))
    x_bool = train.T.tocsr(copy=True)
    x_bool.data[:] = 1.0
    pop = np.asarray(x_bool.sum(axis=1)).ravel()
    degree = np.zeros(train.shape[1])
    degree[pop > 0] = np.power(pop[pop > 0], -beta)
    piu = sp.csr_matrix(x_bool / x_bool.sum(axis=1).clip(min=1))
    if alpha != 1.0:
        pui = pui.power(alpha)
        piu = piu.power(alpha)
    w = (piu @ pui).toarray() * degree[None, :]
    np.fill_diagonal(w, 0.0)
    return top_k_rows(w, k, by_magnitude=False)


def timed(fn, repeat=3):
    """Result of fn() and its best wall time over `repeat` runs."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main():
    train, test = ml100k()
    u, i = test.nonzero()
    print(f"ML-100K rating>=4: {train.shape[0]} users x {train.shape[1]} items, train {train.nnz}, test {test.nnz}, "
          f"split fingerprint {int(((u.astype(np.int64) + 1) * (i.astype(np.int64) + 1)).sum())}")
    x = train.tocsr()
    pop = np.asarray(train.sum(axis=0)).ravel()
    print("\n| model | setting | NDCG@10 | fit s (best of 3) |\n|---|---|---|---|")
    print(f"| popularity | training users per item | {ndcg_at_10(lambda us: np.tile(pop, (len(us), 1)), train, test):.4f} | - |")
    for lam in [100.0, 200.0, 300.0, 400.0, 500.0]:
        b, fit = timed(lambda: ease(train, lam))
        dense = ndcg_at_10(lambda us: x[us] @ b, train, test)
        print(f"| EASE dense float64 (Steck's code) | lambda {lam:g} | {dense:.4f} | {fit:.3f} |", flush=True)
        bk = top_k_rows(b, 100, by_magnitude=True)
        n = ndcg_at_10(lambda us: (x[us] @ bk).toarray(), train, test)
        print(f"| EASE, top-100 by abs(B) per row (graph.rs's sparsification) | lambda {lam:g} | {n:.4f} | {fit:.3f} |", flush=True)
    for alpha, beta in [(1.0, 0.5), (0.8, 0.3), (0.6, 0.5)]:
        for k in [100, 200]:
            w, fit = timed(lambda: rp3beta(train, alpha, beta, k))
            n = ndcg_at_10(lambda us: (x[us] @ w).toarray(), train, test)
            print(f"| RP3beta (Dacrema et al.'s code) | alpha {alpha:g} beta {beta:g} k {k} | {n:.4f} | {fit:.3f} |", flush=True)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"(total {time.time() - t0:.0f}s)")
