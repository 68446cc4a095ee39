//! Seconds per ALS iteration on a seeded random power-law matrix, for profiling the core.
//! `cargo run --release -p recsys-core --example als_profile -- USERS ITEMS NNZ FACTORS THREADS`
use recsys_core::als::{self, AlsOptions, NoProgress};
use recsys_core::csr::Csr;
use recsys_core::rng::Rng;
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().expect("numbers")).collect();
    let (users, items, nnz, factors, threads) = (a[0], a[1], a[2], a[3], a[4]);
    let mut rng = Rng::new(1);
    let (mut r, mut c, mut v) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    for _ in 0..nnz {
        r.push(rng.below(users as u64) as u32);
        // Zipf-like item popularity: inverse-power transform of a uniform draw.
        let x = rng.next_f64().max(1e-9);
        c.push(((items as f64 * x.powf(2.5)) as u64).min(items as u64 - 1) as u32);
        v.push(1.0);
    }
    let m = Csr::from_triplets(users, items, &r, &c, &v);
    let pool = als::pool(threads, None).unwrap();
    let opts = AlsOptions { factors, iterations: 3, compute_loss: false, ..Default::default() };
    let t = Instant::now();
    let (_, stats) = als::train(&m, &opts, &pool, &mut NoProgress).unwrap();
    let per: Vec<f64> = stats.windows(2).map(|w| w[1].seconds - w[0].seconds).collect();
    println!(
        "users {users} items {items} nnz {} factors {factors} threads {threads}: first {:.3}s, then {:?} s/iter, total {:.2}s",
        m.nnz(),
        stats[0].seconds,
        per.iter().map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        t.elapsed().as_secs_f64()
    );
}
