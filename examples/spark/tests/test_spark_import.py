"""Spark MLlib ALS factors served through recsys_import_factors: the same split, the same
NDCG@10 function, Spark's recommendForUserSubset against recsys_recommend (ALS-only fusion)."""
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
import spark_als  # noqa: E402

# Measured 0.317 (see README); popularity scores 0.150 on this protocol, so a bar of 0.25
# fails if Spark's side degrades to something the comparison says nothing about.
SPARK_BAR = 0.25


@pytest.fixture(scope="module")
def run():
    dsn, data = os.environ.get("DATABASE_URL"), os.environ.get("RECSYS_ML100K_DIR")
    if not (dsn and data):
        pytest.skip("DATABASE_URL and RECSYS_ML100K_DIR are set by run_tests.sh")
    r = spark_als.run(dsn, data)
    out = os.environ.get("RECSYS_SPARK_SUMMARY")
    if out:
        with open(out, "w") as f:
            json.dump(spark_als.summary(r), f, indent=2)
    return r


def test_import_builds_a_model_from_the_spark_factors(run):
    rep = run["report"]
    assert rep["factors"] == spark_als.RANK
    assert rep["iterations"] == 0, "no ALS is trained on import"
    assert rep["users"] == run["user_factors"] == len({u for u, _, _ in run["train"]})
    assert rep["posts"] == run["item_factors"]
    assert rep["placed_by_content"] == rep["content_posts"] - run["item_factors"]
    assert rep["fusion"]["als"] == 1.0 and all(v == 0 for k, v in rep["fusion"].items() if k != "als")


def test_recommend_fills_k_and_excludes_training_items(run):
    seen = {}
    for u, i, _ in run["train"]:
        seen.setdefault(u, set()).add(i)
    for u, recs in run["pg_recs"].items():
        assert len(recs) == spark_als.K and len(set(recs)) == spark_als.K, u
        assert not set(recs) & seen[u], u
    for u, recs in run["spark_recs"].items():
        assert len(recs) == spark_als.K and not set(recs) & seen[u], u


def test_spark_model_is_worth_comparing(run):
    assert run["spark_ndcg"] > SPARK_BAR, run["spark_ndcg"]


def test_ndcg_through_pg_recsys_within_5_percent_of_spark(run):
    ratio = run["pg_ndcg"] / run["spark_ndcg"]
    assert abs(ratio - 1) <= 0.05, spark_als.summary(run)


def test_top10_lists_mostly_agree(run):
    # Same item factors; only the user vectors differ (Spark regularises by regParam x the
    # user's count, the fold-in by one lambda), and 273 posts without factors are placed by
    # content. Measured mean overlap 0.92.
    overlap = [len(set(run["spark_recs"][u]) & set(run["pg_recs"][u])) / spark_als.K for u in run["test"]]
    assert sum(overlap) / len(overlap) >= 0.8
