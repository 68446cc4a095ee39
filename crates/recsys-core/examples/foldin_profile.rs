//! Times the serving-side fold-in pieces on random factors: the factored system of a user with
//! `n` history items (FoldIn::new) and the ALS evidence of a 20-post page (evidence_many).
//!   cargo run --release -p recsys-core --example foldin_profile -- [ITEMS] [F] [HISTORY]
use recsys_core::als::{gram, pool, FoldIn};
use recsys_core::rng::Rng;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (items, f, n) = (args.first().copied().unwrap_or(100_000), args.get(1).copied().unwrap_or(64), args.get(2).copied().unwrap_or(44));
    let mut rng = Rng::new(7);
    let y: Vec<f32> = (0..items * f).map(|_| (rng.next_f32() - 0.5) * 0.3).collect();
    let g = gram(&y, f, 0.1, &pool(1, None).expect("a pool"));
    let users = 400;
    let hist: Vec<Vec<(u32, f32)>> =
        (0..users).map(|_| (0..n).map(|_| ((rng.next_f32() * items as f32) as u32 % items as u32, 1.0 + (rng.next_f32() * 3.0).floor())).collect()).collect();
    let targets: Vec<Vec<u32>> = (0..users).map(|_| (0..20).map(|_| (rng.next_f32() * items as f32) as u32 % items as u32).collect()).collect();
    for round in 0..5 {
        let (mut t_new, mut t_ev, mut sink) = (0f64, 0f64, 0f32);
        for (h, tg) in hist.iter().zip(&targets) {
            // As in a serving call: one fold, its evidence, dropped.
            let t = Instant::now();
            let fi = FoldIn::new(&y, f, &g, h, 4.0);
            let t1 = Instant::now();
            let ev = fi.evidence_many(&y, h, 4.0, tg);
            t_ev += t1.elapsed().as_secs_f64();
            t_new += (t1 - t).as_secs_f64();
            sink += fi.x[0] + ev.iter().filter_map(|e| e.first()).map(|e| e.1).sum::<f32>();
        }
        println!("round {round}: FoldIn::new {:.1} us, evidence_many(20) {:.1} us  (check {sink:.6})", t_new / users as f64 * 1e6, t_ev / users as f64 * 1e6);
    }
}
