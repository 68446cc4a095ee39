"""TF-IDF build and all-posts top-10 neighbours: pg_recsys's core vs scikit-learn
(TfidfVectorizer + linear_kernel), same seeded synthetic corpus, 2 threads, one run.

Two sklearn rows: (a) its own defaults on the raw text (title, description, tags, category),
(b) fed our exact tokens (analyzer=identity), which must give the same neighbour lists as ours
— that row doubles as a correctness check (agreement is printed). Timing: build = tokenize +
fit + transform; top-10 = cosine of every post against all, 10 best, itself excluded
(sklearn: linear_kernel in blocks of 1,000 rows + argpartition).
Usage: python bench/tfidf_vs_sklearn.py [POSTS ...]   (via bash bench/tfidf.sh)
"""
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.metrics.pairwise import linear_kernel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def top10_all(X):
    n = X.shape[0]
    out = np.empty((n, 10), dtype=np.int64)
    for s in range(0, n, 1000):
        S = linear_kernel(X[s:s + 1000], X)
        rows = np.arange(S.shape[0])
        S[rows, rows + s] = -1.0
        part = np.argpartition(-S, 10, axis=1)[:, :10]
        vals = np.take_along_axis(S, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        out[s:s + 1000] = np.take_along_axis(part, order, axis=1)
    return out


def run(n):
    d = os.path.join(ROOT, "bench", "out", f"tfidf_{n}")
    r = subprocess.run(["cargo", "run", "--release", "-q", "-p", "recsys-core", "--example", "tfidf_bench", "--", str(n), d],
                       check=True, capture_output=True, text=True, cwd=ROOT)
    ours = json.loads(r.stdout.strip().splitlines()[-1])
    with open(os.path.join(d, "corpus.tsv")) as f:
        raw = [" ".join(line.rstrip("\n").replace("|", " ").split("\t")) for line in f]
    with open(os.path.join(d, "tokens.txt")) as f:
        toks = [line.rstrip("\n").split("\x1f") if line.strip() else [] for line in f]
    with open(os.path.join(d, "neighbours.txt")) as f:
        our_nb = [line.strip().split(",") if line.strip() else [] for line in f]

    t = time.time()
    Xa = TfidfVectorizer().fit_transform(raw)
    a_build = time.time() - t
    t = time.time()
    top10_all(Xa)
    a_top = time.time() - t

    t = time.time()
    Xb = TfidfVectorizer(analyzer=lambda doc: doc, lowercase=False).fit_transform(toks)
    b_build = time.time() - t
    t = time.time()
    nb = top10_all(Xb)
    b_top = time.time() - t
    agree = np.mean([len(set(map(int, ours_i)) & set(nb[i].tolist())) / 10 for i, ours_i in enumerate(our_nb) if len(ours_i) == 10])
    ob = ours["tokenize"] + ours["fit"]
    return [
        (n, "pg_recsys core (Tfidf::fit + postings top-10, 2 threads)", ob, ours["top10_all"], "–"),
        (n, "sklearn TfidfVectorizer() defaults + linear_kernel", a_build, a_top, f"{(ob + ours['top10_all']) / (a_build + a_top):.2f}×"),
        (n, f"sklearn fed our tokens + linear_kernel (top-10 agreement with ours {agree:.4f})", b_build, b_top,
         f"{(ob + ours['top10_all']) / (b_build + b_top):.2f}×"),
    ]


def main():
    sizes = [int(x) for x in sys.argv[1:]] or [10_000, 50_000]
    print("\n| posts | implementation | build s | all-posts top-10 s | pg_recsys total / this total |")
    print("|---|---|---|---|---|")
    for n in sizes:
        for row in run(n):
            print(f"| {row[0]:,} | {row[1]} | {row[2]:.3f} | {row[3]:.3f} | {row[4]} |", flush=True)


main()
