//! Benchmark driver for bench/als_vs_implicit.py: trains ALS on a matrix file and reports
//! per-iteration seconds as JSON; optionally writes the factors for shared-code scoring.
//!
//! `bench_als FILE FACTORS REG ALPHA ITERS THREADS [OUT_PREFIX]`
//! FILE: little-endian u32 rows, u32 cols, u64 nnz, then nnz u32 rows, nnz u32 cols, nnz f32.
use recsys_core::als::{self, AlsOptions, NoProgress};
use recsys_core::csr::Csr;
use std::io::{Read, Write};
use std::time::Instant;

fn read_u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 6 {
        eprintln!("usage: bench_als FILE FACTORS REG ALPHA ITERS THREADS [OUT_PREFIX]");
        std::process::exit(2);
    }
    let mut bytes = vec![];
    std::fs::File::open(&a[0]).and_then(|mut f| f.read_to_end(&mut bytes)).expect("read matrix");
    let rows = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let cols = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let nnz = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let body = &bytes[16..];
    let r = read_u32s(&body[..nnz * 4]);
    let c = read_u32s(&body[nnz * 4..nnz * 8]);
    let v: Vec<f32> = body[nnz * 8..nnz * 12].chunks_exact(4).map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]])).collect();
    let t_build = Instant::now();
    let m = Csr::from_triplets(rows, cols, &r, &c, &v);
    let build_s = t_build.elapsed().as_secs_f64();
    drop((r, c, v));
    let opts = AlsOptions {
        factors: a[1].parse().unwrap(),
        regularization: a[2].parse().unwrap(),
        alpha: a[3].parse().unwrap(),
        iterations: a[4].parse().unwrap(),
        compute_loss: false,
        ..Default::default()
    };
    let pool = als::pool(a[5].parse().unwrap(), None).unwrap();
    let t = Instant::now();
    let (model, stats) = als::train(&m, &opts, &pool, &mut NoProgress).unwrap();
    let total = t.elapsed().as_secs_f64();
    let mut per: Vec<f64> = vec![stats[0].seconds];
    per.extend(stats.windows(2).map(|w| w[1].seconds - w[0].seconds));
    if let Some(prefix) = a.get(6) {
        for (name, data) in [("user", &model.user_factors), ("item", &model.item_factors)] {
            let mut f = std::fs::File::create(format!("{prefix}.{name}.f32")).expect("create");
            let b: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            f.write_all(&b).expect("write");
        }
    }
    let mut sorted = per.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    println!(
        "{{\"users\": {rows}, \"items\": {cols}, \"nnz\": {}, \"csr_build_s\": {build_s:.4}, \"seconds_total\": {total:.4}, \"median_iter\": {:.5}, \"seconds_per_iter\": {:?}}}",
        m.nnz(),
        sorted[sorted.len() / 2],
        per
    );
}
