//! Times one full-catalogue scan: f32 `score_all` vs the int8 `QuantizedRows::scores`.
//! `cargo run --release -p recsys-core --example scan_profile -- ROWS FACTORS`
use recsys_core::kernels::{score_all, QuantizedRows};
use recsys_core::rng::Rng;
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().expect("numbers")).collect();
    let (n, f) = (a[0], a[1]);
    let mut rng = Rng::new(1);
    let rows: Vec<f32> = (0..n * f).map(|_| rng.normal() as f32).collect();
    let q: Vec<f32> = (0..f).map(|_| rng.normal() as f32).collect();
    let qz = QuantizedRows::new(&rows, f);
    let mut out = vec![0f32; n];
    for (name, run) in [("f32", 0), ("int8", 1)] {
        let t = Instant::now();
        for _ in 0..200 {
            if run == 0 {
                score_all(&rows, f, &q, &mut out)
            } else {
                qz.scores(&q, &mut out)
            }
        }
        println!("{name}: {:.3} ms per scan of {n} x {f}", t.elapsed().as_secs_f64() * 1000.0 / 200.0);
    }
}
