//! 5-fold RMSE/MAE of the explicit-rating model on ML-100K (all ratings).
//!   cargo run --release -p recsys-core --example explicit_eval -- DIR [factors reg bias_reg iters knn_weight knn_k implicit_reg reg_exponent]
//! With RECSYS_FOLDS=FILE (user<TAB>item<TAB>rating<TAB>fold lines, e.g. written by
//! bench/ratings_vs_surprise.py), those folds are used instead of its own, and one JSON line
//! with per-fold figures is printed. With RECSYS_TUNE=1 as well, only fold 0's training ratings
//! are used, a seeded fifth of them held out (the figure repeated 5 times): the split the
//! defaults were chosen on, so no test fold picks a hyper-parameter.
use recsys_core::csr::Csr;
use recsys_core::explicit::{cross_validate, ExplicitOptions};
use std::collections::HashMap;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let text = std::fs::read_to_string(format!("{}/ml-100k.inter", a[0])).expect("ml-100k.inter");
    let g = |i: usize, d: f64| a.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(d);
    let (mut users, mut items) = (HashMap::new(), HashMap::new());
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let n = users.len() as u32;
        let u = *users.entry(f[0].to_string()).or_insert(n);
        let n = items.len() as u32;
        let i = *items.entry(f[1].to_string()).or_insert(n);
        r.push(u);
        c.push(i);
        v.push(f[2].parse::<f32>().unwrap());
    }
    let m = Csr::from_triplets(users.len(), items.len(), &r, &c, &v);
    let d = ExplicitOptions::default();
    let o = ExplicitOptions {
        factors: g(1, d.factors as f64) as usize,
        regularization: g(2, d.regularization as f64) as f32,
        bias_regularization: g(3, d.bias_regularization as f64) as f32,
        iterations: g(4, d.iterations as f64) as usize,
        knn_weight: g(5, d.knn_weight as f64) as f32,
        knn_k: g(6, d.knn_k as f64) as usize,
        implicit_regularization: g(7, d.implicit_regularization as f64) as f32,
        regularization_exponent: g(8, d.regularization_exponent as f64) as f32,
        seed: 42,
    };
    let pool = recsys_core::als::pool(2, None).unwrap();
    let t = std::time::Instant::now();
    if let Ok(path) = std::env::var("RECSYS_FOLDS") {
        // Same (user, item) order as the CSR: sort the file's rows by (user index, item index).
        let text = std::fs::read_to_string(&path).expect("folds file");
        let mut rows: Vec<(u32, u32, f32, usize)> = vec![];
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let (Some(&u), Some(&i)) = (users.get(f[0]), items.get(f[1])) else { panic!("unknown pair in folds file: {line}") };
            rows.push((u, i, f[2].parse().unwrap(), f[3].parse().unwrap()));
        }
        rows.sort_by_key(|r| (r.0, r.1));
        assert_eq!(rows.len(), m.nnz(), "one fold per rating");
        let fold_of: Vec<usize> = rows.iter().map(|r| r.3).collect();
        if std::env::var("RECSYS_TUNE").is_ok() {
            // Hyper-parameter search without the test folds: fold 0's training ratings only,
            // a seeded fifth of them held out.
            let keep: Vec<&(u32, u32, f32, usize)> = rows.iter().filter(|r| r.3 != 0).collect();
            let sub = Csr::from_triplets(
                m.rows,
                m.cols,
                &keep.iter().map(|r| r.0).collect::<Vec<_>>(),
                &keep.iter().map(|r| r.1).collect::<Vec<_>>(),
                &keep.iter().map(|r| r.2).collect::<Vec<_>>(),
            );
            let mut rng = recsys_core::rng::Rng::new(7);
            let inner: Vec<usize> = (0..sub.nnz()).map(|_| usize::from(rng.next_f64() >= 0.2)).collect();
            let res = recsys_core::explicit::cross_validate_with(&sub, &inner, 1, &o, &pool).unwrap();
            println!("{{\"rmse\": {:?}, \"mae\": {:?}, \"seconds\": {:.2}}}", vec![res[0][0]; 5], vec![res[0][1]; 5], t.elapsed().as_secs_f64());
            return;
        }
        let k = fold_of.iter().max().unwrap() + 1;
        let res = recsys_core::explicit::cross_validate_with(&m, &fold_of, k, &o, &pool).unwrap();
        let rmse: Vec<f64> = res.iter().map(|f| f[0]).collect();
        let mae: Vec<f64> = res.iter().map(|f| f[1]).collect();
        println!("{{\"rmse\": {rmse:?}, \"mae\": {mae:?}, \"seconds\": {:.2}}}", t.elapsed().as_secs_f64());
        return;
    }
    let folds = cross_validate(&m, &o, 5, &pool).unwrap();
    let mean = |k: usize| folds.iter().map(|f| f[k]).sum::<f64>() / folds.len() as f64;
    println!("{o:?}\n5-fold RMSE {:.4} MAE {:.4} (baseline RMSE {:.4} MAE {:.4}) in {:.1}s", mean(0), mean(1), mean(2), mean(3), t.elapsed().as_secs_f64());
}
