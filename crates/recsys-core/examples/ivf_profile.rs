//! How much of the catalogue an ALS-only call reads through the partition, on a real model's
//! factors: the share of posts in the clusters whose bound reaches the final 20th score (what
//! any exact walk must visit), the share of them whose own bound does (what is read), and the
//! time of one exact top-20 walk: reading the members' rows through the matrix and from the
//! partition's own copy in cluster order, each with warm caches and with the CPU caches
//! flushed before every walk (as in a serving call, which finds little of the model cached).
//!
//! `cargo run --release -p recsys-core --example ivf_profile -- ITEMS.bin USERS.bin FACTORS`
//! where the files hold little-endian f32 rows, e.g. a trained model's parts:
//! `psql -XAt -c "SELECT encode(data, 'hex') FROM _recsys_model_data WHERE model_id = 3
//!  AND part = 'item_factors' ORDER BY chunk" | xxd -r -p > ITEMS.bin` (and `user_factors`).
use recsys_core::ivf::Ivf;
use recsys_core::kernels::dot_dispatch;
use std::time::Instant;

fn load(p: &str) -> Vec<f32> {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    assert!(a.len() == 3, "usage: ITEMS.bin USERS.bin FACTORS");
    let f: usize = a[2].parse().expect("FACTORS is a number");
    let (y, u) = (load(&a[0]), load(&a[1]));
    let n = y.len() / f;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    let ivf = Ivf::build(&y, f, &pool, &mut || Ok(())).expect("build").expect("at least 10,000 posts");
    let d = ivf.dist.as_ref().expect("distances");
    let ids: Vec<i64> = (0..n as i64).collect();
    let users: Vec<usize> = (0..400).map(|k| (k * 7919) % (u.len() / f)).collect();
    let k = 20;
    let (mut in_visited, mut read) = (0usize, 0usize);
    let t = Instant::now();
    let mut thresholds = vec![];
    for &uu in &users {
        let x = &u[uu * f..(uu + 1) * f];
        let (top, _) = ivf.top(&y, &ids, x, k, &|_| true, &|d| d);
        thresholds.push(top.last().map_or(f32::NEG_INFINITY, |s| s.score));
    }
    let per_walk = t.elapsed().as_secs_f64() * 1000.0 / users.len() as f64;
    let copied = Ivf::build(&y, f, &pool, &mut || Ok(())).expect("build").expect("at least 10,000 posts");
    let copied = {
        let rows = copied.member_rows(&y);
        copied.with_rows(rows.into())
    };
    // 64 MB written between walks: more than the last-level cache.
    let mut flush = vec![1u8; 64 << 20];
    let mut walks = |p: &Ivf, cold: bool| {
        let mut total = 0f64;
        for &uu in &users {
            if cold {
                flush.iter_mut().for_each(|b| *b = b.wrapping_add(1));
            }
            let x = &u[uu * f..(uu + 1) * f];
            let t = Instant::now();
            std::hint::black_box(p.top(&y, &ids, x, k, &|_| true, &|d| d));
            total += t.elapsed().as_secs_f64();
        }
        total * 1000.0 / users.len() as f64
    };
    let times: Vec<f64> = [(&ivf, false), (&copied, false), (&ivf, true), (&copied, true)].iter().map(|&(p, cold)| walks(p, cold)).collect();
    for (&uu, &t20) in users.iter().zip(&thresholds) {
        let x = &u[uu * f..(uu + 1) * f];
        let xn = dot_dispatch(x, x).sqrt();
        for c in 0..ivf.radius.len() {
            let xm = dot_dispatch(&ivf.centroids[c * f..(c + 1) * f], x);
            let span = ivf.offsets[c] as usize..ivf.offsets[c + 1] as usize;
            if xm + xn * ivf.radius[c] >= t20 {
                in_visited += span.len();
                read += span.filter(|&p| xm + xn * d[p] >= t20).count();
            }
        }
    }
    let pct = |x: usize| 100.0 * x as f64 / (users.len() * n) as f64;
    println!(
        "{n} posts, {} clusters, {} users: posts in the clusters visited {:.2}%, read {:.2}%; exact top-{k} walk {per_walk:.3} ms",
        ivf.radius.len(),
        users.len(),
        pct(in_visited),
        pct(read)
    );
    println!(
        "walk, rows through the matrix / copied in cluster order: warm {:.4} / {:.4} ms, caches flushed {:.4} / {:.4} ms",
        times[0], times[1], times[2], times[3]
    );
}
