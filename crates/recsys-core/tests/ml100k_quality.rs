//! Quality on real data: MovieLens 100K under the protocol of ../shared/DATASETS.md
//! (rating >= 4 as positives, per-user 80/20 seeded split, top-10 with training items removed).
//! Needs the data: `scripts/fetch_ml100k.sh` (the test command runs it and sets
//! RECSYS_ML100K_DIR), hence `#[ignore]` for a plain `cargo test`.
use recsys_core::als::{self, AlsOptions, NoProgress};
use recsys_core::csr::Csr;
use recsys_core::eval::{evaluate_ranking, popularity};
use recsys_core::kernels::score_all;
use recsys_core::split::holdout;

fn load_positives() -> Csr {
    let dir = std::env::var("RECSYS_ML100K_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.data/ml-100k").to_string());
    recsys_core::datasets::movielens_matrix(std::path::Path::new(&dir), 4.0, true)
        .unwrap_or_else(|e| panic!("ML-100K not found in {dir} ({e}); run scripts/fetch_ml100k.sh"))
}

#[test]
#[ignore = "needs ML-100K: scripts/fetch_ml100k.sh"]
fn ml100k_ndcg_at_implicit_settings() {
    let m = load_positives();
    assert_eq!(m.nnz(), 55_375, "rating >= 4 positives in ML-100K");
    let (train, test) = holdout(&m, 0.2, 42);
    let opts = AlsOptions { factors: 64, iterations: 15, regularization: 0.05, alpha: 5.0, seed: 42, ..Default::default() };
    let pool = als::pool(2, None).unwrap();
    let (model, stats) = als::train(&train, &opts, &pool, &mut NoProgress).unwrap();
    let f = model.factors;
    let (metrics, coverage) = evaluate_ranking(&train, &test, 10, |u, out| score_all(&model.item_factors, f, model.user(u), out));
    let pop = popularity(&train);
    let (pop_metrics, _) = evaluate_ranking(&train, &test, 10, |_, out| out.copy_from_slice(&pop));
    eprintln!(
        "ML-100K ALS: ndcg@10 {:.4} p@10 {:.4} recall@10 {:.4} map@10 {:.4} coverage {:.3} ({:.2}s); popularity ndcg@10 {:.4} p@10 {:.4}",
        metrics.ndcg,
        metrics.precision,
        metrics.recall,
        metrics.map,
        coverage,
        stats.last().unwrap().seconds,
        pop_metrics.ndcg,
        pop_metrics.precision
    );
    assert!(metrics.ndcg >= 0.22, "NDCG@10 {:.4} < 0.22 (implicit measured 0.229)", metrics.ndcg);
    assert!(metrics.ndcg > pop_metrics.ndcg * 1.2, "ALS must clearly beat popularity");
}

#[test]
#[ignore = "needs ML-100K: scripts/fetch_ml100k.sh"]
fn ml100k_ndcg_at_product_defaults() {
    let m = load_positives();
    let (train, test) = holdout(&m, 0.2, 42);
    let opts = AlsOptions::default();
    let pool = als::pool(2, None).unwrap();
    let (model, _) = als::train(&train, &opts, &pool, &mut NoProgress).unwrap();
    let f = model.factors;
    let (metrics, coverage) = evaluate_ranking(&train, &test, 10, |u, out| score_all(&model.item_factors, f, model.user(u), out));
    eprintln!("ML-100K ALS defaults: ndcg@10 {:.4} p@10 {:.4} coverage {:.3}", metrics.ndcg, metrics.precision, coverage);
    // Measured 0.3211 at reg 30 / alpha 4 (0.2858 at the earlier reg 10 / alpha 1); implicit
    // tuned (reg 20) measured 0.292, untuned 0.229.
    assert!(metrics.ndcg >= 0.31, "NDCG@10 {:.4} < 0.31 at defaults", metrics.ndcg);
    assert!(coverage >= 0.2, "catalogue coverage {coverage:.3} collapsed");
}

/// The hybrid's floor on this split (issue 11): measured 0.3316 with ALS at reg 30 / alpha 4 and
/// weight 1.5 and EASE's popularity discount (β 0.2); ALS alone 0.3210, EASE alone 0.3264.
/// Before: 0.3269 (ALS reg 10 / alpha 1, weight 0.5, plain EASE), 0.3231 at 100 neighbours a
/// post, 0.2925 before the item graph.
const HYBRID_FLOOR: f64 = 0.33;

fn ml100k_world() -> recsys_core::world::World {
    let dir = std::env::var("RECSYS_ML100K_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.data/ml-100k").to_string());
    recsys_core::world::World::from_movielens(std::path::Path::new(&dir)).unwrap_or_else(|e| panic!("ML-100K in {dir}: {e}"))
}

#[test]
#[ignore = "needs ML-100K: scripts/fetch_ml100k.sh"]
fn ml100k_hybrid_is_at_least_als_alone() {
    use recsys_core::hybrid::{HybridOptions, Weights};
    use recsys_core::world::{only, prepare, EvalConfig};
    let w = ml100k_world();
    let pool = als::pool(2, None).unwrap();
    let p = prepare(&w, &AlsOptions::default(), &HybridOptions::default(), &EvalConfig { max_users: 1_000, ..Default::default() }, &pool).unwrap();
    let als_only = p.evaluate(&only(&["als"]));
    let graph_only = p.evaluate(&only(&["graph"]));
    let hybrid = p.evaluate(&Weights::default());
    let popularity = p.evaluate(&only(&["popularity"]));
    eprintln!(
        "ML-100K NDCG@10 ({} users): ALS alone {:.4}, graph (EASE) alone {:.4}, hybrid defaults {:.4}, popularity {:.4}",
        p.warm_users, als_only.warm.ndcg, graph_only.warm.ndcg, hybrid.warm.ndcg, popularity.warm.ndcg
    );
    assert!(
        hybrid.warm.ndcg >= als_only.warm.ndcg.max(graph_only.warm.ndcg),
        "hybrid {:.4} < ALS alone {:.4} or the graph alone {:.4}",
        hybrid.warm.ndcg,
        als_only.warm.ndcg,
        graph_only.warm.ndcg
    );
    assert!(hybrid.warm.ndcg >= HYBRID_FLOOR, "hybrid NDCG@10 {:.4} < {HYBRID_FLOOR}", hybrid.warm.ndcg);
}
