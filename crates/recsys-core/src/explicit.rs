//! Explicit ratings: biased matrix factorisation r̂_ui = μ + b_u + b_i + x_u·y_i fitted by
//! alternating least squares with weighted-λ regularisation (ALS-WR, Zhou et al. 2008: each
//! row's penalty grows with its number of ratings), biases solved jointly with the factors as
//! one extra coordinate. f64 Cholesky solves of (f+1)×(f+1) systems, rows in parallel.
//!
//! Optionally blended with an item-based neighbourhood model on baseline residuals
//! (KNNBaseline, Koren 2010 §2.2): r̂ = (1 − β)·MF + β·KNN.
use crate::csr::Csr;
use crate::error::CoreError;
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExplicitOptions {
    pub factors: usize,
    pub iterations: usize,
    /// λ on the factors, times the row's number of ratings.
    pub regularization: f32,
    /// λ on the biases, times the row's number of ratings.
    pub bias_regularization: f32,
    /// Share β of the neighbourhood model in the blend (0 = MF only).
    pub knn_weight: f32,
    /// Neighbours used by the neighbourhood model.
    pub knn_k: usize,
    pub seed: u64,
}

impl Default for ExplicitOptions {
    fn default() -> Self {
        // Chosen by 5-fold CV on ML-100K (examples/explicit_eval.rs, BENCHMARKS.md).
        ExplicitOptions { factors: 32, iterations: 20, regularization: 0.12, bias_regularization: 0.02, knn_weight: 0.4, knn_k: 40, seed: 42 }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExplicitModel {
    pub factors: usize,
    pub mu: f32,
    pub user_bias: Vec<f32>,
    pub item_bias: Vec<f32>,
    pub user_factors: Vec<f32>,
    pub item_factors: Vec<f32>,
    pub min: f32,
    pub max: f32,
}

/// Solves (Σ φφᵀ + n·Λ) z = Σ t·φ for one row: φ = [other's factors; 1], Λ = diag(λ…λ, λ_b).
fn solve_row(
    idx: &[u32],
    val: &[f32],
    other_factors: &[f32],
    other_bias: &[f32],
    offset: f32,
    f: usize,
    lambda: f32,
    lambda_b: f32,
    out_x: &mut [f32],
    out_b: &mut f32,
) {
    let d = f + 1;
    let mut a = vec![0f64; d * d];
    let mut rhs = vec![0f64; d];
    let n = idx.len() as f64;
    for (&j, &r) in idx.iter().zip(val) {
        let y = &other_factors[j as usize * f..(j as usize + 1) * f];
        let t = (r - offset - other_bias[j as usize]) as f64;
        for p in 0..d {
            let yp = if p < f { y[p] as f64 } else { 1.0 };
            rhs[p] += t * yp;
            for q in p..d {
                let yq = if q < f { y[q] as f64 } else { 1.0 };
                a[p * d + q] += yp * yq;
            }
        }
    }
    for p in 0..d {
        a[p * d + p] += n.max(1.0) * if p < f { lambda as f64 } else { lambda_b as f64 };
        for q in 0..p {
            a[p * d + q] = a[q * d + p];
        }
    }
    crate::als::solve_spd(&mut a, &mut rhs, d);
    for p in 0..f {
        out_x[p] = rhs[p] as f32;
    }
    *out_b = rhs[f] as f32;
}

fn half_step(m: &Csr, other_f: &[f32], other_b: &[f32], mu: f32, o: &ExplicitOptions, xs: &mut [f32], bs: &mut [f32], pool: &rayon::ThreadPool) {
    let f = o.factors;
    pool.install(|| {
        xs.par_chunks_mut(f).zip(bs.par_iter_mut()).enumerate().for_each(|(u, (x, b))| {
            let (idx, val) = m.row(u);
            if idx.is_empty() {
                x.iter_mut().for_each(|v| *v = 0.0);
                *b = 0.0;
                return;
            }
            solve_row(idx, val, other_f, other_b, mu, f, o.regularization, o.bias_regularization, x, b);
        })
    });
}

/// One rating per (user, item) — the mean of that pair's rows — as a rows × cols matrix; None
/// when there is no rating at all.
pub fn mean_ratings(rows: usize, cols: usize, entries: impl Iterator<Item = (u32, u32, f32)>) -> Option<Csr> {
    let mut pairs: std::collections::HashMap<(u32, u32), (f32, u32)> = std::collections::HashMap::new();
    for (u, i, v) in entries {
        let e = pairs.entry((u, i)).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    if pairs.is_empty() {
        return None;
    }
    let (mut r, mut c, mut v) = (Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()));
    for ((u, i), (sum, n)) in pairs {
        r.push(u);
        c.push(i);
        v.push(sum / n as f32);
    }
    Some(Csr::from_triplets(rows, cols, &r, &c, &v))
}

/// Fits on a users × items matrix of ratings (one per pair; callers average duplicates).
pub fn train(
    ratings: &Csr,
    o: &ExplicitOptions,
    pool: &rayon::ThreadPool,
    check: &mut dyn FnMut() -> Result<(), CoreError>,
) -> Result<ExplicitModel, CoreError> {
    if ratings.nnz() == 0 {
        return Err(CoreError::EmptyInput);
    }
    if o.factors == 0 || o.factors > 1024 || o.iterations == 0 {
        return Err(CoreError::InvalidOption { name: "rating_factors / rating_iterations".into(), reason: "must be at least 1".into() });
    }
    let f = o.factors;
    let mu = (ratings.data.iter().map(|&r| r as f64).sum::<f64>() / ratings.nnz() as f64) as f32;
    let (min, max) = ratings.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &r| (a.min(r), b.max(r)));
    let mut rng = Rng::new(o.seed);
    let mut x: Vec<f32> = (0..ratings.rows * f).map(|_| rng.normal() as f32 * 0.1).collect();
    let mut y: Vec<f32> = (0..ratings.cols * f).map(|_| rng.normal() as f32 * 0.1).collect();
    let mut bu = vec![0f32; ratings.rows];
    let mut bi = vec![0f32; ratings.cols];
    let t = ratings.transpose();
    for _ in 0..o.iterations {
        half_step(ratings, &y, &bi, mu, o, &mut x, &mut bu, pool);
        check()?;
        half_step(&t, &x, &bu, mu, o, &mut y, &mut bi, pool);
        check()?;
    }
    Ok(ExplicitModel { factors: f, mu, user_bias: bu, item_bias: bi, user_factors: x, item_factors: y, min, max })
}

impl ExplicitModel {
    /// The prediction for a (user, item) pair, clamped to the observed range; an unknown user
    /// or item contributes neither bias nor factors.
    pub fn predict(&self, u: Option<usize>, i: Option<usize>) -> f32 {
        let f = self.factors;
        let mut r = self.mu;
        if let Some(u) = u {
            r += self.user_bias[u];
        }
        if let Some(i) = i {
            r += self.item_bias[i];
        }
        if let (Some(u), Some(i)) = (u, i) {
            r += crate::kernels::dot::<false>(&self.user_factors[u * f..(u + 1) * f], &self.item_factors[i * f..(i + 1) * f]);
        }
        r.clamp(self.min, self.max)
    }

    /// A user's vector and bias from their ratings now, items fixed (serving-time fold-in).
    pub fn fold_in(&self, ratings: &[(u32, f32)], o: &ExplicitOptions) -> (Vec<f32>, f32) {
        let f = self.factors;
        let mut x = vec![0f32; f];
        let mut b = 0f32;
        if ratings.is_empty() {
            return (x, b);
        }
        let idx: Vec<u32> = ratings.iter().map(|r| r.0).collect();
        let val: Vec<f32> = ratings.iter().map(|r| r.1).collect();
        solve_row(&idx, &val, &self.item_factors, &self.item_bias, self.mu, f, o.regularization, o.bias_regularization, &mut x, &mut b);
        (x, b)
    }

    /// Prediction from a folded-in user.
    pub fn predict_with(&self, x: &[f32], b: f32, i: Option<usize>) -> f32 {
        let f = self.factors;
        let r = match i {
            Some(i) => self.mu + b + self.item_bias[i] + crate::kernels::dot::<false>(x, &self.item_factors[i * f..(i + 1) * f]),
            None => self.mu + b,
        };
        r.clamp(self.min, self.max)
    }
}

/// Baseline estimates b_ui = μ + b_u + b_i by alternating regularised means (as Surprise's
/// `baseline_options` ALS: λ_u = 15, λ_i = 10, 10 sweeps).
pub fn baselines(ratings: &Csr) -> (f32, Vec<f32>, Vec<f32>) {
    let mu = (ratings.data.iter().map(|&r| r as f64).sum::<f64>() / ratings.nnz().max(1) as f64) as f32;
    let t = ratings.transpose();
    let mut bu = vec![0f32; ratings.rows];
    let mut bi = vec![0f32; ratings.cols];
    for _ in 0..10 {
        for (i, b) in bi.iter_mut().enumerate() {
            let (us, rs) = t.row(i);
            let s: f32 = us.iter().zip(rs).map(|(&u, &r)| r - mu - bu[u as usize]).sum();
            *b = s / (10.0 + us.len() as f32);
        }
        for (u, b) in bu.iter_mut().enumerate() {
            let (is, rs) = ratings.row(u);
            let s: f32 = is.iter().zip(rs).map(|(&i, &r)| r - mu - bi[i as usize]).sum();
            *b = s / (15.0 + is.len() as f32);
        }
    }
    (mu, bu, bi)
}

/// Item-based neighbourhood model on baseline residuals (KNNBaseline, Koren 2010 §2.2):
/// Pearson-baseline similarities shrunk by (n − 1)/(n − 1 + 100), k nearest rated items.
pub struct Knn {
    pub k: usize,
    pub mu: f32,
    /// Training users' baseline biases (serving estimates a user's from their ratings).
    pub bu: Vec<f32>,
    pub bi: Vec<f32>,
    /// Per item: (neighbour, similarity), strongest first.
    pub neighbours: Vec<Vec<(u32, f32)>>,
}

impl Knn {
    pub fn fit(ratings: &Csr, k: usize, pool: &rayon::ThreadPool) -> Knn {
        let (mu, bu, bi) = baselines(ratings);
        let items = ratings.cols;
        let t = ratings.transpose();
        let rows: Vec<(Vec<u32>, Vec<f32>)> = (0..items)
            .map(|i| {
                let (us, rs) = t.row(i);
                (us.to_vec(), us.iter().zip(rs).map(|(&u, &r)| r - mu - bu[u as usize] - bi[i]).collect())
            })
            .collect();
        let keep = (k * 4).max(100);
        let neighbours = pool.install(|| {
            (0..items)
                .into_par_iter()
                .map(|i| {
                    let (ui, ri) = &rows[i];
                    let mut sims: Vec<(u32, f32)> = Vec::new();
                    if ui.is_empty() {
                        return sims;
                    }
                    for (j, (uj, rj)) in rows.iter().enumerate() {
                        if j == i {
                            continue;
                        }
                        let (mut a, mut b, mut n) = (0usize, 0usize, 0usize);
                        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
                        while a < ui.len() && b < uj.len() {
                            match ui[a].cmp(&uj[b]) {
                                std::cmp::Ordering::Less => a += 1,
                                std::cmp::Ordering::Greater => b += 1,
                                std::cmp::Ordering::Equal => {
                                    let (p, q) = (ri[a] as f64, rj[b] as f64);
                                    xy += p * q;
                                    xx += p * p;
                                    yy += q * q;
                                    n += 1;
                                    a += 1;
                                    b += 1;
                                }
                            }
                        }
                        if n < 2 || xx <= 0.0 || yy <= 0.0 {
                            continue;
                        }
                        let s = xy / (xx.sqrt() * yy.sqrt()) * ((n as f64 - 1.0) / (n as f64 - 1.0 + 100.0));
                        if s > 0.0 {
                            sims.push((j as u32, s as f32));
                        }
                    }
                    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    sims.truncate(keep);
                    sims
                })
                .collect()
        });
        Knn { k, mu, bu, bi, neighbours }
    }

    /// A user's baseline bias from their ratings (item, rating), as the training sweeps do.
    pub fn user_bias(&self, ratings: &[(u32, f32)]) -> f32 {
        let s: f32 = ratings.iter().filter(|r| (r.0 as usize) < self.bi.len()).map(|&(i, r)| r - self.mu - self.bi[i as usize]).sum();
        s / (15.0 + ratings.len() as f32)
    }

    /// Like [`Knn::predict`] with the user's baseline bias given.
    pub fn predict_with_bias(&self, bu: f32, user_ratings: &[(u32, f32)], i: usize) -> f32 {
        let base = self.mu + bu + self.bi[i];
        let (mut num, mut den, mut used) = (0f64, 0f64, 0);
        for &(j, s) in &self.neighbours[i] {
            if used == self.k {
                break;
            }
            if let Ok(p) = user_ratings.binary_search_by_key(&j, |r| r.0) {
                num += s as f64 * (user_ratings[p].1 - self.mu - bu - self.bi[j as usize]) as f64;
                den += s as f64;
                used += 1;
            }
        }
        if den > 0.0 {
            base + (num / den) as f32
        } else {
            base
        }
    }

    /// r̂ = b_ui + Σ_{j ∈ N^k(i; u)} s_ij (r_uj − b_uj) / Σ s_ij over the k most similar items
    /// the user rated (`user_ratings` sorted by item); b_ui alone when there are none. An
    /// unknown user (None) has b_u = 0.
    pub fn predict(&self, user: Option<usize>, user_ratings: &[(u32, f32)], i: usize) -> f32 {
        self.predict_with_bias(user.map_or(0.0, |u| self.bu[u]), user_ratings, i)
    }
}

/// k-fold RMSE and MAE: every rating is in exactly one test fold (seeded shuffle); returns
/// per fold (rmse, mae) of the model and of the baseline μ + b_u + b_i.
pub fn cross_validate(ratings: &Csr, o: &ExplicitOptions, folds: usize, pool: &rayon::ThreadPool) -> Result<Vec<[f64; 4]>, CoreError> {
    let n = ratings.nnz();
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(o.seed ^ 0xF01D).shuffle(&mut order);
    let mut fold_of = vec![0usize; n];
    for (p, &k) in order.iter().enumerate() {
        fold_of[k] = p % folds;
    }
    cross_validate_with(ratings, &fold_of, folds, o, pool)
}

/// [`cross_validate`] with a given fold per stored rating (in CSR order), e.g. a peer's folds.
pub fn cross_validate_with(ratings: &Csr, fold_of: &[usize], folds: usize, o: &ExplicitOptions, pool: &rayon::ThreadPool) -> Result<Vec<[f64; 4]>, CoreError> {
    let n = ratings.nnz();
    assert_eq!(fold_of.len(), n);
    let mut rows = vec![0u32; n];
    for u in 0..ratings.rows {
        rows[ratings.indptr[u]..ratings.indptr[u + 1]].fill(u as u32);
    }
    let mut out = vec![];
    for fold in 0..folds {
        let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
        let mut test = vec![];
        for k in 0..n {
            if fold_of[k] == fold {
                test.push(k);
            } else {
                r.push(rows[k]);
                c.push(ratings.indices[k]);
                v.push(ratings.data[k]);
            }
        }
        let train = Csr::from_triplets(ratings.rows, ratings.cols, &r, &c, &v);
        let m = train_model(&train, o, pool)?;
        let knn = (o.knn_weight > 0.0).then(|| Knn::fit(&train, o.knn_k, pool));
        let (mut se, mut ae, mut bse, mut bae) = (0f64, 0f64, 0f64, 0f64);
        for &k in &test {
            let (u, i, truth) = (rows[k] as usize, ratings.indices[k] as usize, ratings.data[k]);
            let p = blend(&m, knn.as_ref(), &train, u, i, o.knn_weight);
            let b = (m.mu + m.user_bias[u] + m.item_bias[i]).clamp(m.min, m.max);
            se += ((p - truth) as f64).powi(2);
            ae += (p - truth).abs() as f64;
            bse += ((b - truth) as f64).powi(2);
            bae += (b - truth).abs() as f64;
        }
        let t = test.len().max(1) as f64;
        out.push([(se / t).sqrt(), ae / t, (bse / t).sqrt(), bae / t]);
    }
    Ok(out)
}

fn train_model(data: &Csr, o: &ExplicitOptions, pool: &rayon::ThreadPool) -> Result<ExplicitModel, CoreError> {
    train(data, o, pool, &mut || Ok(()))
}

/// The blended prediction for a known user row of `ratings`: (1 − β)·MF + β·KNN.
pub fn blend(m: &ExplicitModel, knn: Option<&Knn>, ratings: &Csr, u: usize, i: usize, beta: f32) -> f32 {
    let mf = m.predict(Some(u), Some(i));
    match knn {
        Some(k) if beta > 0.0 => {
            let (idx, val) = ratings.row(u);
            let rs: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
            ((1.0 - beta) * mf + beta * k.predict(Some(u), &rs, i)).clamp(m.min, m.max)
        }
        _ => mf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_low_rank_rating_matrix_and_falls_back_to_biases() {
        // r = 3 + user effect + item effect + a rank-1 term, all pairs observed but one.
        let (nu, ni) = (30, 20);
        let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
        for u in 0..nu {
            for i in 0..ni {
                if (u, i) == (0, 0) {
                    continue;
                }
                let x = 3.0 + (u % 3) as f32 * 0.3 - (i % 4) as f32 * 0.2 + ((u % 2) as f32 - 0.5) * ((i % 2) as f32 - 0.5) * 2.0;
                r.push(u as u32);
                c.push(i as u32);
                v.push(x);
            }
        }
        let m = Csr::from_triplets(nu, ni, &r, &c, &v);
        let pool = crate::als::pool(2, None).unwrap();
        let o = ExplicitOptions { factors: 4, iterations: 30, regularization: 0.001, bias_regularization: 0.001, ..Default::default() };
        let model = train(&m, &o, &pool, &mut || Ok(())).unwrap();
        let truth = 3.0 + 0.0 - 0.0 + (0.0 - 0.5) * (0.0 - 0.5) * 2.0;
        assert!((model.predict(Some(0), Some(0)) - truth).abs() < 0.1, "{}", model.predict(Some(0), Some(0)));
        // Unknown user: μ + b_i; unknown everything: μ.
        assert!((model.predict(None, None) - model.mu).abs() < 1e-6);
        assert!((model.predict(None, Some(3)) - (model.mu + model.item_bias[3]).clamp(model.min, model.max)).abs() < 1e-6);
        // Fold-in of user 1's ratings reproduces its trained prediction closely.
        let (idx, val) = m.row(1);
        let rs: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
        let (x, b) = model.fold_in(&rs, &o);
        assert!((model.predict_with(&x, b, Some(5)) - model.predict(Some(1), Some(5))).abs() < 0.05);
    }
}
