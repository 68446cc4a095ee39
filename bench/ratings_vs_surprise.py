"""Explicit ratings: pg_recsys's rating model vs scikit-surprise 1.1.5 (SVD, SVD++, KNNBaseline,
BaselineOnly) on the same 5 folds of ML-100K (all 100,000 ratings), one run, same machine.

The folds are drawn here (numpy seed 42: a permutation of the ratings, rating at position p goes
to fold p mod 5), written to bench/out/ml100k_folds.tsv, and both sides use exactly those.
Surprise runs with its default hyper-parameters (as in its published table). Prints a markdown
table of RMSE/MAE means (± std over folds) and seconds.
Usage: python bench/ratings_vs_surprise.py [--no-svdpp]   (normally via bash bench/ratings.sh)
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader, SVDpp, accuracy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
DATA = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch_ml100k.sh")], check=True, capture_output=True,
                      text=True).stdout.strip().splitlines()[-1]


def main():
    os.makedirs(OUT, exist_ok=True)
    df = pd.read_csv(os.path.join(DATA, "ml-100k.inter"), sep="\t", header=0, names=["user", "item", "rating", "ts"],
                     dtype={"user": str, "item": str})
    rng = np.random.default_rng(42)
    fold = np.empty(len(df), dtype=int)
    fold[rng.permutation(len(df))] = np.arange(len(df)) % 5
    df["fold"] = fold
    path = os.path.join(OUT, "ml100k_folds.tsv")
    df[["user", "item", "rating", "fold"]].to_csv(path, sep="\t", header=False, index=False)

    rows = []
    t = time.time()
    ours = subprocess.run(["cargo", "run", "--release", "-q", "-p", "recsys-core", "--example", "explicit_eval", "--", DATA],
                          check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "RECSYS_FOLDS": path})
    r = json.loads(ours.stdout.strip().splitlines()[-1])
    rows.append(("pg_recsys: SVD++ by ALS (λ·√n) + KNNBaseline blend, defaults", r["rmse"], r["mae"], r["seconds"]))

    reader = Reader(rating_scale=(1, 5))
    algos = [("Surprise BaselineOnly", BaselineOnly), ("Surprise SVD", SVD), ("Surprise KNNBaseline", KNNBaseline)]
    if "--no-svdpp" not in sys.argv:
        algos.append(("Surprise SVD++", SVDpp))
    for name, cls in algos:
        rmse, mae = [], []
        t = time.time()
        for k in range(5):
            train = df[df.fold != k]
            test = df[df.fold == k]
            trainset = Dataset.load_from_df(train[["user", "item", "rating"]], reader).build_full_trainset()
            kwargs = {"random_state": 42} if cls in (SVD, SVDpp) else {}
            if cls is KNNBaseline or cls is BaselineOnly:
                kwargs["verbose"] = False
            algo = cls(**kwargs)
            algo.fit(trainset)
            preds = algo.test(list(zip(test.user, test.item, test.rating)))
            rmse.append(accuracy.rmse(preds, verbose=False))
            mae.append(accuracy.mae(preds, verbose=False))
        rows.append((name, rmse, mae, time.time() - t))

    print("\nExplicit ratings, ML-100K, the same 5 folds (all 100,000 ratings), 2-core machine:\n")
    print("| model | RMSE | MAE | seconds (5 folds) | RMSE vs pg_recsys |")
    print("|---|---|---|---|---|")
    base = np.mean(rows[0][1])
    for name, rmse, mae, secs in rows:
        print(f"| {name} | {np.mean(rmse):.4f} ± {np.std(rmse):.4f} | {np.mean(mae):.4f} ± {np.std(mae):.4f} | {secs:.1f} | {np.mean(rmse) - base:+.4f} |")


main()
