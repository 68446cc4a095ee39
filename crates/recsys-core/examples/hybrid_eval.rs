//! Hybrid vs its components on seeded synthetic data (and the tuned weights).
//!   cargo run --release -p recsys-core --example hybrid_eval -- [SEED USERS POSTS INTERACTIONS]
use recsys_core::als::AlsOptions;
use recsys_core::hybrid::{HybridOptions, Weights};
use recsys_core::world::{only, prepare, EvalConfig, World};

fn main() {
    let a: Vec<u64> = std::env::args().skip(1).map(|x| x.parse().expect("number")).collect();
    let g = |i: usize, d: u64| a.get(i).copied().unwrap_or(d);
    let cfg = recsys_core::synth::SynthConfig::new(g(0, 42), g(1, 5000) as usize, g(2, 5000) as usize, g(3, 100_000) as usize);
    let t = std::time::Instant::now();
    let w = World::from_synth(&recsys_core::synth::generate(&cfg));
    eprintln!("generated in {:.1}s", t.elapsed().as_secs_f64());
    let pool = recsys_core::als::pool(0, None).unwrap();
    let o = HybridOptions::default();
    let als = AlsOptions::default();
    for cold in [0.0, 0.2] {
        let e = EvalConfig { cold_fraction: cold, ..Default::default() };
        let t = std::time::Instant::now();
        let p = prepare(&w, &als, &o, &e, &pool).unwrap();
        eprintln!("prepared (cold {cold}) in {:.1}s: {} warm, {} cold", t.elapsed().as_secs_f64(), p.warm_users, p.cold_users);
        let settings: Vec<(&str, Weights)> = vec![
            ("als", only(&["als"])),
            ("content", only(&["content"])),
            ("social", only(&["social"])),
            ("popularity", only(&["popularity"])),
            ("demographic", only(&["demographic"])),
            ("default", Weights::default()),
        ];
        for (n, ws) in &settings {
            let r = p.evaluate(ws);
            println!("cold={cold} {n:12} warm ndcg {:.4} p {:.4} | cold ndcg {:.4} p {:.4}", r.warm.ndcg, r.warm.precision, r.cold.ndcg, r.cold.precision);
        }
        let t = std::time::Instant::now();
        let (best, r) = p.tune(&Weights::default());
        println!("cold={cold} tuned {:?} warm ndcg {:.4} cold ndcg {:.4} ({:.1}s)", best, r.warm.ndcg, r.cold.ndcg, t.elapsed().as_secs_f64());
    }
}
