//! The hybrid against its own components and the popularity baseline, on seeded synthetic data
//! and (given its directory) ML-100K; prints a markdown table (bench/hybrid.sh).
//!   cargo run --release -p recsys-core --example hybrid_eval -- [ML100K_DIR]
//! Per data set, one seeded split (seed 42): warm users hold out 20% of their posts; for the
//! cold columns 20% of users hide their whole history (they keep follows and demographics).
//! "tuned" weights are picked on a different split (seed 1) and scored on this one.
use recsys_core::als::AlsOptions;
use recsys_core::hybrid::{HybridOptions, Weights};
use recsys_core::world::{only, prepare, EvalConfig, World};
use std::time::Instant;

fn main() {
    let pool = recsys_core::als::pool(2, None).expect("pool");
    let o = HybridOptions::default();
    let als = AlsOptions::default();
    let mut sets: Vec<(String, World)> = vec![];
    for (seed, u, p, n) in [(42u64, 5_000usize, 5_000usize, 100_000usize), (7, 20_000, 10_000, 400_000)] {
        let w = World::from_synth(&recsys_core::synth::generate(&recsys_core::synth::SynthConfig::new(seed, u, p, n)));
        sets.push((format!("synthetic seed {seed}: {u} users, {p} posts, {n} interactions"), w));
    }
    if let Some(dir) = std::env::args().nth(1) {
        sets.push(("ML-100K (rating >= 4; no follows)".into(), World::from_movielens(std::path::Path::new(&dir)).expect("ML-100K files")));
    }
    println!("| data | users (warm/cold) | ALS alone | content alone | social alone | popularity | hybrid (defaults) | hybrid (tuned) | hybrid / ALS | cold: popularity | cold: demographic | cold: social | cold: hybrid | cold hybrid / popularity | seconds |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, w) in &sets {
        let t = Instant::now();
        let cold = if w.follows.is_empty() && w.key_dict.len() <= 1 { 0.0 } else { 0.2 };
        let cfg = EvalConfig { cold_fraction: cold, ..Default::default() };
        let p = prepare(w, &als, &o, &cfg, &pool).expect("prepare");
        let tune_split = prepare(w, &als, &o, &EvalConfig { seed: 1, ..cfg.clone() }, &pool).expect("prepare");
        let (tuned, _) = tune_split.tune(&Weights::default());
        let e = |ws: &Weights| p.evaluate(ws);
        let a = e(&only(&["als"]));
        let h = e(&Weights::default());
        let ht = e(&tuned);
        let pop = e(&only(&["popularity"]));
        let c = |x: f64| if cold > 0.0 { format!("{x:.4}") } else { "–".into() };
        let ratio = |x: f64, y: f64| if y > 0.0 { format!("{:.2}×", x / y) } else { "–".into() };
        println!(
            "| {name} | {}/{} | {:.4} | {:.4} | {} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} | {} | {} | {:.1} |",
            p.warm_users,
            p.cold_users,
            a.warm.ndcg,
            e(&only(&["content"])).warm.ndcg,
            if w.follows.is_empty() { "–".into() } else { format!("{:.4}", e(&only(&["social"])).warm.ndcg) },
            pop.warm.ndcg,
            h.warm.ndcg,
            ht.warm.ndcg,
            ratio(h.warm.ndcg, a.warm.ndcg),
            c(pop.cold.ndcg),
            c(e(&only(&["demographic"])).cold.ndcg),
            if w.follows.is_empty() { "–".into() } else { c(e(&only(&["social"])).cold.ndcg) },
            c(h.cold.ndcg),
            if cold > 0.0 { ratio(h.cold.ndcg, pop.cold.ndcg) } else { "–".into() },
            t.elapsed().as_secs_f64()
        );
        eprintln!("{name}: tuned weights {tuned:?}");
    }
}
