//! Explicit ratings: biased matrix factorisation r̂_ui = μ + b_u + b_i + x_u·q_i fitted by
//! alternating least squares with weighted-λ regularisation (ALS-WR, Zhou et al. 2008: each
//! row's penalty grows with its number of ratings, here as n^α), biases solved jointly with the
//! factors as one extra coordinate. f64 Cholesky solves of (f+1)×(f+1) systems, rows in
//! parallel. With SVD++'s implicit term (Koren 2008 §4) a user's vector is
//! x_u = p_u + |N(u)|^-½ Σ_{j ∈ N(u)} y_j over the items they rated; the y-step is the exact
//! least-squares step for all y_j together, by conjugate gradient.
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
    /// λ on the factors, times n^α (n = the row's number of ratings).
    pub regularization: f32,
    /// λ on the biases, times n^α.
    pub bias_regularization: f32,
    /// α. Models stored before it existed were trained with α = 1.
    #[serde(default = "one")]
    pub regularization_exponent: f32,
    /// Share β of the neighbourhood model in the blend (0 = MF only).
    pub knn_weight: f32,
    /// Neighbours used by the neighbourhood model.
    pub knn_k: usize,
    /// λ_y on SVD++'s implicit factors y_j (times item j's number of ratings); 0 = no
    /// implicit term (as models stored before it existed).
    #[serde(default)]
    pub implicit_regularization: f32,
    pub seed: u64,
}

fn one() -> f32 {
    1.0
}

impl Default for ExplicitOptions {
    fn default() -> Self {
        // Chosen on a held-out fifth of one ML-100K training fold (RECSYS_TUNE=1 in
        // examples/explicit_eval.rs), then reported on all 5 folds (BENCHMARKS.md).
        ExplicitOptions {
            factors: 32,
            iterations: 10,
            regularization: 2.0,
            bias_regularization: 0.9,
            regularization_exponent: 0.5,
            knn_weight: 0.25,
            knn_k: 40,
            implicit_regularization: 0.5,
            seed: 42,
        }
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
    /// SVD++'s implicit item factors y_j (items × factors); empty = plain biased MF. A user's
    /// vector is then x_u = p_u + |N(u)|^-½ Σ_{j ∈ N(u)} y_j over the items they rated, and
    /// `user_factors` holds x_u.
    pub implicit_factors: Vec<f32>,
    pub min: f32,
    pub max: f32,
}

/// Solves (Σ φφᵀ + n^α·Λ) z = Σ t·φ for one row: φ = [other's factors; 1], Λ = diag(λ…λ, λ_b),
/// t = rating − offset − other's bias − other's factors·shift (SVD++: shift = the row's
/// implicit sum, so z's factor part is the free part p_u of x_u = p_u + shift).
#[allow(clippy::too_many_arguments)]
fn solve_row(
    idx: &[u32],
    val: &[f32],
    other_factors: &[f32],
    other_bias: &[f32],
    offset: f32,
    shift: Option<&[f32]>,
    f: usize,
    lambda: f32,
    lambda_b: f32,
    alpha: f32,
    out_x: &mut [f32],
    out_b: &mut f32,
) {
    let d = f + 1;
    let mut a = vec![0f64; d * d];
    let mut rhs = vec![0f64; d];
    let n = idx.len() as f64;
    for (&j, &r) in idx.iter().zip(val) {
        let y = &other_factors[j as usize * f..(j as usize + 1) * f];
        let s = shift.map_or(0.0, |s| crate::kernels::dot::<false>(y, s));
        let t = (r - offset - other_bias[j as usize] - s) as f64;
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
        a[p * d + p] += n.max(1.0).powf(alpha as f64) * if p < f { lambda as f64 } else { lambda_b as f64 };
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

/// The SVD++ implicit sum |N(u)|^-½ Σ_{j ∈ N(u)} y_j of each row of `m` (N(u) = the row's items).
fn implicit_sums(m: &Csr, y: &[f32], f: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
    let mut s = vec![0f32; m.rows * f];
    pool.install(|| {
        s.par_chunks_mut(f).enumerate().for_each(|(u, s)| {
            let (idx, _) = m.row(u);
            implicit_sum(idx, y, f, s);
        })
    });
    s
}

fn implicit_sum(idx: &[u32], y: &[f32], f: usize, s: &mut [f32]) {
    s.iter_mut().for_each(|v| *v = 0.0);
    if idx.is_empty() {
        return;
    }
    for &j in idx {
        crate::kernels::axpy::<false>(1.0, &y[j as usize * f..(j as usize + 1) * f], s);
    }
    let c = 1.0 / (idx.len() as f32).sqrt();
    s.iter_mut().for_each(|v| *v *= c);
}

/// The y-step's linear system H·Y = B of SVD++ by ALS (see [`implicit_step`]): the rating
/// matrix by user (`m`) and by item (`t`), the item factors Q and the ridge λ_y.
struct ImplicitSystem<'a> {
    m: &'a Csr,
    t: &'a Csr,
    q: &'a [f32],
    f: usize,
    lambda_y: f32,
}

impl ImplicitSystem<'_> {
    fn q(&self, i: u32) -> &[f32] {
        &self.q[i as usize * self.f..(i as usize + 1) * self.f]
    }

    /// Per user: c_u Q_uᵀ Q_u s_u(V) (the data part of H·V, before the scatter to items).
    fn user_part(&self, v: &[f32], out: &mut [f32]) {
        let f = self.f;
        out.par_chunks_mut(f).enumerate().for_each(|(u, w)| {
            let (idx, _) = self.m.row(u);
            w.iter_mut().for_each(|x| *x = 0.0);
            if idx.is_empty() {
                return;
            }
            let mut s = vec![0f32; f];
            implicit_sum(idx, v, f, &mut s);
            let c = 1.0 / (idx.len() as f32).sqrt();
            for &i in idx {
                crate::kernels::axpy::<false>(c * crate::kernels::dot::<false>(self.q(i), &s), self.q(i), w);
            }
        })
    }

    /// Per item: the sum over its raters of `w`, plus the ridge term λ_y·n_j·v_j.
    fn scatter(&self, w: &[f32], v: &[f32], out: &mut [f32]) {
        let f = self.f;
        out.par_chunks_mut(f).enumerate().for_each(|(j, o)| {
            let (us, _) = self.t.row(j);
            for (k, x) in o.iter_mut().enumerate() {
                *x = self.lambda_y * (us.len().max(1) as f32) * v.get(j * f + k).copied().unwrap_or(0.0);
            }
            for &u in us {
                crate::kernels::axpy::<false>(1.0, &w[u as usize * f..(u as usize + 1) * f], o);
            }
        })
    }

    /// out = H·v (`w`: per-user scratch).
    fn apply(&self, v: &[f32], w: &mut [f32], out: &mut [f32]) {
        self.user_part(v, w);
        self.scatter(w, v, out);
    }

    /// B = Σ_{u ∋ j} c_u Q_uᵀ e_u, e = the residual of the model without the implicit term
    /// (user factors `p`, biases, mean).
    fn rhs(&self, p: &[f32], bu: &[f32], bi: &[f32], mu: f32, items: usize) -> Vec<f32> {
        let f = self.f;
        let mut g = vec![0f32; self.m.rows * f];
        g.par_chunks_mut(f).enumerate().for_each(|(u, w)| {
            let (idx, val) = self.m.row(u);
            if idx.is_empty() {
                return;
            }
            let c = 1.0 / (idx.len() as f32).sqrt();
            let pu = &p[u * f..(u + 1) * f];
            for (&i, &r) in idx.iter().zip(val) {
                let e = r - mu - bu[u] - bi[i as usize] - crate::kernels::dot::<false>(self.q(i), pu);
                crate::kernels::axpy::<false>(c * e, self.q(i), w);
            }
        });
        let mut b = vec![0f32; items * f];
        self.scatter(&g, &[], &mut b);
        b
    }
}

/// The y-step of SVD++ by ALS: with p, q and the biases fixed, the squared error is quadratic in
/// all y_j together, min Σ_u ‖e_u − Q_u s_u(Y)‖² + λ_y Σ_j n_j ‖y_j‖² (e = the residual without
/// the implicit term, n_j = item j's ratings); a few conjugate-gradient steps from the current Y.
#[allow(clippy::too_many_arguments)]
fn implicit_step(
    m: &Csr,
    t: &Csr,
    p: &[f32],
    q: &[f32],
    bu: &[f32],
    bi: &[f32],
    mu: f32,
    f: usize,
    lambda_y: f32,
    cg_steps: usize,
    y: &mut [f32],
    pool: &rayon::ThreadPool,
) {
    let h = ImplicitSystem { m, t, q, f, lambda_y };
    let dot = |a: &[f32], b: &[f32]| a.par_iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>();
    pool.install(|| {
        let b = h.rhs(p, bu, bi, mu, y.len() / f.max(1));
        // r = b − H·y
        let mut w = vec![0f32; m.rows * f];
        let mut hv = vec![0f32; y.len()];
        h.apply(y, &mut w, &mut hv);
        let mut r: Vec<f32> = b.iter().zip(&hv).map(|(a, b)| a - b).collect();
        let mut d = r.clone();
        let mut rr = dot(&r, &r);
        for _ in 0..cg_steps {
            if rr <= 1e-20 {
                break;
            }
            h.apply(&d, &mut w, &mut hv);
            let dhd = dot(&d, &hv);
            if dhd <= 0.0 {
                break;
            }
            let alpha = (rr / dhd) as f32;
            y.par_iter_mut().zip(&d).for_each(|(y, &d)| *y += alpha * d);
            r.par_iter_mut().zip(&hv).for_each(|(r, &h)| *r -= alpha * h);
            let rr2 = dot(&r, &r);
            let beta = (rr2 / rr) as f32;
            rr = rr2;
            d.par_iter_mut().zip(&r).for_each(|(d, &r)| *d = r + beta * *d);
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn half_step(
    m: &Csr,
    other_f: &[f32],
    other_b: &[f32],
    mu: f32,
    shifts: Option<&[f32]>,
    o: &ExplicitOptions,
    xs: &mut [f32],
    bs: &mut [f32],
    pool: &rayon::ThreadPool,
) {
    let f = o.factors;
    pool.install(|| {
        xs.par_chunks_mut(f).zip(bs.par_iter_mut()).enumerate().for_each(|(u, (x, b))| {
            let (idx, val) = m.row(u);
            if idx.is_empty() {
                x.iter_mut().for_each(|v| *v = 0.0);
                *b = 0.0;
                return;
            }
            let shift = shifts.map(|s| &s[u * f..(u + 1) * f]);
            solve_row(idx, val, other_f, other_b, mu, shift, f, o.regularization, o.bias_regularization, o.regularization_exponent, x, b);
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
    let implicit = o.implicit_regularization > 0.0;
    let mut yim = vec![0f32; if implicit { ratings.cols * f } else { 0 }];
    let mut z = vec![0f32; if implicit { ratings.rows * f } else { 0 }];
    for _ in 0..o.iterations {
        if !implicit {
            half_step(ratings, &y, &bi, mu, None, o, &mut x, &mut bu, pool);
            check()?;
            half_step(&t, &x, &bu, mu, None, o, &mut y, &mut bi, pool);
            check()?;
            continue;
        }
        let s = implicit_sums(ratings, &yim, f, pool);
        half_step(ratings, &y, &bi, mu, Some(&s), o, &mut x, &mut bu, pool);
        check()?;
        z.iter_mut().zip(x.iter().zip(&s)).for_each(|(z, (p, s))| *z = p + s);
        half_step(&t, &z, &bu, mu, None, o, &mut y, &mut bi, pool);
        check()?;
        implicit_step(ratings, &t, &x, &y, &bu, &bi, mu, f, o.implicit_regularization, 8, &mut yim, pool);
        check()?;
    }
    if implicit {
        // The users as fold-in sees them: the user half-step with the final y, x_u = p_u + s_u.
        let s = implicit_sums(ratings, &yim, f, pool);
        half_step(ratings, &y, &bi, mu, Some(&s), o, &mut x, &mut bu, pool);
        x.iter_mut().zip(&s).for_each(|(p, s)| *p += s);
    }
    Ok(ExplicitModel { factors: f, mu, user_bias: bu, item_bias: bi, user_factors: x, item_factors: y, implicit_factors: yim, min, max })
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

    /// A user's vector x_u and bias from their ratings now, items fixed (serving-time fold-in):
    /// training's user half-step, with the implicit sum over the items rated now.
    pub fn fold_in(&self, ratings: &[(u32, f32)], o: &ExplicitOptions) -> (Vec<f32>, f32) {
        let f = self.factors;
        let mut x = vec![0f32; f];
        let mut b = 0f32;
        if ratings.is_empty() {
            return (x, b);
        }
        let idx: Vec<u32> = ratings.iter().map(|r| r.0).collect();
        let val: Vec<f32> = ratings.iter().map(|r| r.1).collect();
        let (lambda, lambda_b, alpha) = (o.regularization, o.bias_regularization, o.regularization_exponent);
        if self.implicit_factors.is_empty() {
            solve_row(&idx, &val, &self.item_factors, &self.item_bias, self.mu, None, f, lambda, lambda_b, alpha, &mut x, &mut b);
            return (x, b);
        }
        let mut s = vec![0f32; f];
        implicit_sum(&idx, &self.implicit_factors, f, &mut s);
        solve_row(&idx, &val, &self.item_factors, &self.item_bias, self.mu, Some(&s), f, lambda, lambda_b, alpha, &mut x, &mut b);
        x.iter_mut().zip(&s).for_each(|(x, s)| *x += s);
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
/// per fold (rmse, mae) of the model and of the baseline μ + b_u + b_i of [`baselines`].
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
        // The baseline is fitted on its own: the model's biases are fitted with its factors.
        let (bmu, bbu, bbi) = baselines(&train);
        let (mut se, mut ae, mut bse, mut bae) = (0f64, 0f64, 0f64, 0f64);
        for &k in &test {
            let (u, i, truth) = (rows[k] as usize, ratings.indices[k] as usize, ratings.data[k]);
            let p = blend(&m, knn.as_ref(), &train, u, i, o.knn_weight);
            let b = (bmu + bbu[u] + bbi[i]).clamp(m.min, m.max);
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

    /// A sparse seeded rating matrix: 60 users × 40 items, ratings 1–5 from a rank-2 taste.
    fn sparse_ratings() -> Csr {
        let mut rng = Rng::new(3);
        let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
        for u in 0..60u32 {
            for i in 0..40u32 {
                if rng.next_f64() < 0.3 {
                    let taste = ((u % 3) as f32 - 1.0) * ((i % 5) as f32 - 2.0) * 0.6 + (i % 4) as f32 * 0.3;
                    r.push(u);
                    c.push(i);
                    v.push((3.0 + taste + rng.normal() as f32 * 0.3).round().clamp(1.0, 5.0));
                }
            }
        }
        Csr::from_triplets(60, 40, &r, &c, &v)
    }

    #[test]
    fn svdpp_fold_in_matches_training_and_follows_new_ratings() {
        let m = sparse_ratings();
        let pool = crate::als::pool(2, None).unwrap();
        let o = ExplicitOptions { factors: 6, ..Default::default() };
        assert!(o.implicit_regularization > 0.0);
        let model = train(&m, &o, &pool, &mut || Ok(())).unwrap();
        assert_eq!(model.implicit_factors.len(), 40 * 6);
        // Training ends with the user half-step fold-in repeats: the same user, same prediction.
        for u in [0, 7, 31] {
            let (idx, val) = m.row(u);
            let rs: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
            let (x, b) = model.fold_in(&rs, &o);
            for i in [0, 9, 17, 39] {
                let (a, t) = (model.predict_with(&x, b, Some(i)), model.predict(Some(u), Some(i)));
                assert!((a - t).abs() < 1e-3, "user {u} item {i}: fold-in {a} trained {t}");
            }
        }
        // A new rating moves the next prediction without a retrain (through the bias, the
        // factors and the implicit sum).
        let (idx, val) = m.row(0);
        let mut rs: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
        let unrated = (0..40u32).find(|i| !idx.contains(i)).unwrap();
        let before = {
            let (x, b) = model.fold_in(&rs, &o);
            model.predict_with(&x, b, Some(3))
        };
        rs.push((unrated, 5.0));
        rs.sort_by_key(|r| r.0);
        let after = {
            let (x, b) = model.fold_in(&rs, &o);
            model.predict_with(&x, b, Some(3))
        };
        assert!((after - before).abs() > 1e-4, "{before} -> {after}");
    }

    #[test]
    fn the_implicit_step_never_raises_its_objective() {
        let m = sparse_ratings();
        let t = m.transpose();
        let pool = crate::als::pool(2, None).unwrap();
        let f = 4;
        let mut rng = Rng::new(9);
        let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32 * 0.3).collect() };
        let (p, q, mut y) = (rand(60 * f), rand(40 * f), rand(40 * f));
        let (bu, bi) = (vec![0.1f32; 60], vec![-0.1f32; 40]);
        let mu = 3.0;
        let lambda = 0.5;
        // Σ_u ‖e_u − Q_u s_u‖² + λ Σ_j n_j ‖y_j‖².
        let objective = |y: &[f32]| -> f64 {
            let s = implicit_sums(&m, y, f, &pool);
            let mut l = 0f64;
            for u in 0..60 {
                let (idx, val) = m.row(u);
                for (&i, &r) in idx.iter().zip(val) {
                    let qi = &q[i as usize * f..(i as usize + 1) * f];
                    let x: Vec<f32> = (0..f).map(|k| p[u * f + k] + s[u * f + k]).collect();
                    l += ((r - mu - bu[u] - bi[i as usize] - crate::kernels::dot::<false>(qi, &x)) as f64).powi(2);
                }
            }
            for j in 0..40 {
                let n = t.row(j).0.len().max(1) as f64;
                l += lambda as f64 * n * y[j * f..(j + 1) * f].iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
            }
            l
        };
        let mut last = objective(&y);
        for _ in 0..3 {
            implicit_step(&m, &t, &p, &q, &bu, &bi, mu, f, lambda, 8, &mut y, &pool);
            let now = objective(&y);
            assert!(now <= last + 1e-6 * last.abs(), "{last} -> {now}");
            last = now;
        }
    }

    #[test]
    fn options_stored_before_the_implicit_term_keep_their_recipe() {
        let old = r#"{"factors":32,"iterations":20,"regularization":0.12,"bias_regularization":0.02,"knn_weight":0.4,"knn_k":40,"seed":42}"#;
        let o: ExplicitOptions = serde_json::from_str(old).unwrap();
        assert_eq!((o.regularization_exponent, o.implicit_regularization), (1.0, 0.0));
    }
}
