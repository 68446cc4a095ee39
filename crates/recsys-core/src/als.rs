//! Implicit-feedback ALS: Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback
//! Datasets" (ICDM 2008), solved with a few warm-started conjugate-gradient steps per row
//! (Takács, Pilászy & Tikk, "Applications of the conjugate gradient method for implicit
//! feedback collaborative filtering", RecSys 2011).
//!
//! Confidence is c = 1 + alpha * r for an observed (user, post) with summed weight r, and the
//! preference is 1; unobserved cells have c = 1, p = 0. Regularisation is unscaled (λ‖x‖²), as
//! in the `implicit` library, so hyper-parameters carry over.
use crate::csr::Csr;
use crate::error::CoreError;
use crate::kernels::{axpy, dot, has_avx2_fma};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlsOptions {
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub seed: u64,
    pub cg_steps: usize,
    /// Compute the training loss each iteration (costs about one extra CG step).
    pub compute_loss: bool,
}

impl Default for AlsOptions {
    fn default() -> Self {
        AlsOptions {
            factors: 64,
            iterations: 15,
            // Chosen on ML-100K splits other than the benchmark's (seeds 1-4; BENCHMARKS.md,
            // issue 11): reg 30 / alpha 4 reaches NDCG@10 0.315 alone (reg 10 / alpha 1: 0.285,
            // implicit's 0.05 / 5: 0.236) and lifts the hybrid next to EASE. The optimum is a
            // ridge with reg rising with alpha; too much reg for the alpha (25 / 1, 40 / 4)
            // falls off towards popularity, so alpha moves with reg. The synthetic sets, whose
            // kind weights scale a like to 4, gain slightly too.
            regularization: 30.0,
            alpha: 4.0,
            seed: 42,
            cg_steps: 3,
            compute_loss: true,
        }
    }
}

impl AlsOptions {
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |name: &str, reason: &str| Err(CoreError::InvalidOption { name: name.into(), reason: reason.into() });
        if self.factors == 0 || self.factors > 1024 {
            return bad("factors", "must be between 1 and 1024");
        }
        if self.iterations == 0 || self.iterations > 1000 {
            return bad("iterations", "must be between 1 and 1000");
        }
        if !(self.regularization.is_finite() && self.regularization >= 0.0) {
            return bad("regularization", "must be a finite number >= 0");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("alpha", "must be a finite number > 0");
        }
        if self.cg_steps == 0 || self.cg_steps > 100 {
            return bad("cg_steps", "must be between 1 and 100");
        }
        Ok(())
    }

    /// Bytes the factor matrices and per-thread scratch take for a problem of this shape.
    pub fn factor_bytes(&self, users: usize, items: usize) -> usize {
        (users + items) * self.factors * 4 + 4 * self.factors * self.factors * 4
    }
}

/// Row-major factor matrices.
#[derive(Clone, Debug, PartialEq)]
pub struct AlsModel {
    pub factors: usize,
    pub users: usize,
    pub items: usize,
    pub user_factors: Vec<f32>,
    pub item_factors: Vec<f32>,
}

impl AlsModel {
    pub fn user(&self, u: usize) -> &[f32] {
        &self.user_factors[u * self.factors..(u + 1) * self.factors]
    }
    pub fn item(&self, i: usize) -> &[f32] {
        &self.item_factors[i * self.factors..(i + 1) * self.factors]
    }
}

/// Hooks run on the calling thread between blocks of work: `check` may abort (cancel,
/// timeout), `iteration` reports progress.
pub trait Progress {
    fn check(&mut self) -> Result<(), CoreError> {
        Ok(())
    }
    fn iteration(&mut self, _iteration: usize, _loss: Option<f64>, _seconds: f64) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// Per-iteration record returned with the model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IterationStat {
    pub iteration: usize,
    pub loss: Option<f64>,
    pub seconds: f64,
}

/// Rows solved between two `Progress::check` calls. Small enough that a cancel is seen within
/// milliseconds, large enough that the rayon fork/join is noise.
const BLOCK_ROWS: usize = 2048;

/// Trains on a user × item matrix of summed interaction weights.
pub fn train(ui: &Csr, opts: &AlsOptions, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<(AlsModel, Vec<IterationStat>), CoreError> {
    opts.validate()?;
    if ui.nnz() == 0 {
        return Err(CoreError::EmptyInput);
    }
    let iu = ui.transpose();
    progress.check()?;
    let f = opts.factors;
    let mut rng = Rng::new(opts.seed);
    // Small positive uniform start, as `implicit` does; the first half-step overrides users.
    let mut x: Vec<f32> = (0..ui.rows * f).map(|_| rng.next_f32() * 0.01).collect();
    let mut y: Vec<f32> = (0..ui.cols * f).map(|_| rng.next_f32() * 0.01).collect();
    let mut stats = Vec::with_capacity(opts.iterations);
    let start = Instant::now();
    for it in 0..opts.iterations {
        let g = gram_checked(&y, f, opts.regularization, pool, progress)?;
        solve_rows(ui, &y, &g, &mut x, opts, pool, progress)?;
        let g = gram_checked(&x, f, opts.regularization, pool, progress)?;
        solve_rows(&iu, &x, &g, &mut y, opts, pool, progress)?;
        let loss = if opts.compute_loss { Some(loss(ui, &x, &y, opts, pool, progress)?) } else { None };
        let seconds = start.elapsed().as_secs_f64();
        progress.iteration(it + 1, loss, seconds);
        stats.push(IterationStat { iteration: it + 1, loss, seconds });
    }
    Ok((AlsModel { factors: f, users: ui.rows, items: ui.cols, user_factors: x, item_factors: y }, stats))
}

/// YᵀY + λI, summed over fixed chunks in a fixed order so the result does not depend on the
/// number of threads (same seed, same model).
pub fn gram(y: &[f32], f: usize, reg: f32, pool: &rayon::ThreadPool) -> Vec<f32> {
    gram_checked(y, f, reg, pool, &mut NoProgress).unwrap_or_default()
}

/// [`gram`] with a progress check after every few chunks (a large catalogue at many factors is
/// tens of milliseconds of work per half-step).
fn gram_checked(y: &[f32], f: usize, reg: f32, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Vec<f32>, CoreError> {
    const CHUNK_ROWS: usize = 2048;
    let mut partials: Vec<Vec<f32>> = Vec::new();
    for batch in y.chunks(CHUNK_ROWS * f * 8) {
        partials.extend(pool.install(|| batch.par_chunks(CHUNK_ROWS * f).map(|chunk| gram_chunk(chunk, f)).collect::<Vec<_>>()));
        progress.check()?;
    }
    let mut g = vec![0f32; f * f];
    for p in partials {
        for (a, b) in g.iter_mut().zip(&p) {
            *a += *b;
        }
    }
    // Mirror the upper triangle and add the ridge.
    for i in 0..f {
        for j in 0..i {
            g[i * f + j] = g[j * f + i];
        }
        g[i * f + i] += reg;
    }
    Ok(g)
}

fn gram_chunk(chunk: &[f32], f: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: features checked at run time.
            return unsafe { gram_chunk_avx2(chunk, f) };
        }
    }
    gram_chunk_impl::<false>(chunk, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gram_chunk_avx2(chunk: &[f32], f: usize) -> Vec<f32> {
    gram_chunk_impl::<true>(chunk, f)
}

#[inline(always)]
fn gram_chunk_impl<const FMA: bool>(chunk: &[f32], f: usize) -> Vec<f32> {
    // Accumulate in f64 would be slower; chunks are short (2048 rows) so f32 error stays small.
    let mut g = vec![0f32; f * f];
    for row in chunk.chunks_exact(f) {
        for i in 0..f {
            let a = row[i];
            axpy::<FMA>(a, &row[i..], &mut g[i * f + i..(i + 1) * f]);
        }
    }
    g
}

/// One half-step: for every row r of `m`, x_r ← CG steps on
/// (G + Σ_i αr_ri y_i y_iᵀ) x = Σ_i (1 + αr_ri) y_i, warm-started from the current x_r.
fn solve_rows(m: &Csr, y: &[f32], g: &[f32], x: &mut [f32], opts: &AlsOptions, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<(), CoreError> {
    let f = opts.factors;
    let avx = has_avx2_fma();
    for (b, block) in x.chunks_mut(BLOCK_ROWS * f).enumerate() {
        let first = b * BLOCK_ROWS;
        pool.install(|| {
            block.par_chunks_mut(64 * f).enumerate().for_each(|(c, rows)| {
                let mut scratch = vec![0f32; 3 * f];
                for (k, xr) in rows.chunks_exact_mut(f).enumerate() {
                    let r = first + c * 64 + k;
                    let (idx, val) = m.row(r);
                    solve_one(avx, idx, val, y, g, xr, opts, &mut scratch);
                }
            })
        });
        progress.check()?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn solve_one(avx: bool, idx: &[u32], val: &[f32], y: &[f32], g: &[f32], x: &mut [f32], opts: &AlsOptions, scratch: &mut [f32]) {
    let (a, st) = (opts.alpha, opts.cg_steps);
    #[cfg(target_arch = "x86_64")]
    {
        if avx {
            // SAFETY: `avx` is true only when the CPU has AVX2 and FMA.
            unsafe {
                match x.len() {
                    32 => cg_avx2::<32>(idx, val, y, g, x, a, st, scratch),
                    64 => cg_avx2::<64>(idx, val, y, g, x, a, st, scratch),
                    128 => cg_avx2::<128>(idx, val, y, g, x, a, st, scratch),
                    _ => cg_avx2::<0>(idx, val, y, g, x, a, st, scratch),
                }
            }
            return;
        }
    }
    let _ = avx;
    cg::<false, 0>(idx, val, y, g, x, a, st, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn cg_avx2<const N: usize>(idx: &[u32], val: &[f32], y: &[f32], g: &[f32], x: &mut [f32], alpha: f32, steps: usize, scratch: &mut [f32]) {
    cg::<true, N>(idx, val, y, g, x, alpha, steps, scratch)
}

/// out = s · G v for symmetric G, as a sum of scaled rows (row j = column j): f axpy's that
/// vectorise fully, instead of f dot products that each end in a horizontal reduction.
#[inline(always)]
fn gemv_sym<const FMA: bool>(g: &[f32], v: &[f32], out: &mut [f32], s: f32) {
    // Fixed sizes let the accumulator live in registers (8 AVX registers at f = 64).
    match v.len() {
        16 => return gemv_sym_n::<FMA, 16>(g, v, out, s),
        32 => return gemv_sym_n::<FMA, 32>(g, v, out, s),
        64 => return gemv_sym_n::<FMA, 64>(g, v, out, s),
        128 => return gemv_sym_n::<FMA, 128>(g, v, out, s),
        _ => {}
    }
    let f = v.len();
    out.iter_mut().for_each(|o| *o = 0.0);
    for (j, &vj) in v.iter().enumerate() {
        axpy::<FMA>(s * vj, &g[j * f..(j + 1) * f], out);
    }
}

#[inline(always)]
fn gemv_sym_n<const FMA: bool, const N: usize>(g: &[f32], v: &[f32], out: &mut [f32], s: f32) {
    let mut acc = [0f32; N];
    for (j, row) in g.chunks_exact(N).take(N).enumerate() {
        let a = s * v[j];
        for k in 0..N {
            acc[k] = if FMA { a.mul_add(row[k], acc[k]) } else { a * row[k] + acc[k] };
        }
    }
    out[..N].copy_from_slice(&acc);
}

/// Warm-started CG on one row. `N` > 0 fixes the factor count at compile time (so every
/// inner loop is unrolled); `N` = 0 handles any size.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn cg<const FMA: bool, const N: usize>(idx: &[u32], val: &[f32], y: &[f32], g: &[f32], x: &mut [f32], alpha: f32, steps: usize, scratch: &mut [f32]) {
    let f = if N > 0 { N } else { x.len() };
    let x = &mut x[..f];
    if idx.is_empty() {
        // No data: the minimiser of (G) x = 0 is 0.
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let (r, rest) = scratch.split_at_mut(f);
    let (p, rest) = rest.split_at_mut(f);
    let ap = &mut rest[..f];
    let item = |i: u32| &y[i as usize * f..i as usize * f + f];
    // r = b - A x = -G x + Σ (c - αr (y·x)) y
    gemv_sym::<FMA>(g, x, r, -1.0);
    for (&i, &v) in idx.iter().zip(val) {
        let yi = item(i);
        let c = 1.0 + alpha * v;
        let coef = c - alpha * v * dot::<FMA>(yi, x);
        axpy::<FMA>(coef, yi, r);
    }
    p.copy_from_slice(r);
    let mut rs_old = dot::<FMA>(r, r);
    for _ in 0..steps {
        if rs_old < 1e-20 {
            break;
        }
        gemv_sym::<FMA>(g, p, ap, 1.0);
        for (&i, &v) in idx.iter().zip(val) {
            let yi = item(i);
            let coef = alpha * v * dot::<FMA>(yi, p);
            axpy::<FMA>(coef, yi, ap);
        }
        let pap = dot::<FMA>(p, ap);
        // Also stops on NaN.
        if pap.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            break;
        }
        let a = rs_old / pap;
        axpy::<FMA>(a, p, x);
        axpy::<FMA>(-a, ap, r);
        let rs_new = dot::<FMA>(r, r);
        let beta = rs_new / rs_old;
        for i in 0..f {
            p[i] = r[i] + beta * p[i];
        }
        rs_old = rs_new;
    }
}

/// Σ_u Σ_i c_ui (p_ui − x_u·y_i)² + λ(‖X‖² + ‖Y‖²), divided by users × items.
/// Uses Σ_all s² = xᵀ(YᵀY)x so the cost is O(nnz·f + users·f²), not O(users·items·f).
fn loss(ui: &Csr, x: &[f32], y: &[f32], opts: &AlsOptions, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<f64, CoreError> {
    let f = opts.factors;
    let g = gram(y, f, 0.0, pool);
    progress.check()?;
    let (alpha, reg) = (opts.alpha, opts.regularization);
    let avx = has_avx2_fma();
    // In blocks of BLOCK_ROWS users with a progress check between them: over all users the
    // loss is as much work as a CG step, too long to run without seeing a cancel.
    let mut per_chunk: Vec<f64> = Vec::new();
    for (b, block) in x.chunks(BLOCK_ROWS * f).enumerate() {
        let first = b * BLOCK_ROWS;
        let part: Vec<f64> = pool.install(|| {
            block
                .par_chunks(256 * f)
                .enumerate()
                .map(|(c, rows)| {
                    #[cfg(target_arch = "x86_64")]
                    {
                        if avx {
                            // SAFETY: features checked at run time.
                            return unsafe { loss_rows_avx2(ui, first + c * 256, rows, y, &g, alpha, reg) };
                        }
                    }
                    let _ = avx;
                    loss_rows::<false>(ui, first + c * 256, rows, y, &g, alpha, reg)
                })
                .collect()
        });
        per_chunk.extend(part);
        progress.check()?;
    }
    let reg_y: f64 = y.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() * opts.regularization as f64;
    let total: f64 = per_chunk.iter().sum::<f64>() + reg_y;
    Ok(total / (ui.rows as f64 * ui.cols as f64))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn loss_rows_avx2(ui: &Csr, first: usize, rows: &[f32], y: &[f32], g: &[f32], alpha: f32, reg: f32) -> f64 {
    loss_rows::<true>(ui, first, rows, y, g, alpha, reg)
}

/// Loss terms of a block of users starting at row `first`.
#[inline(always)]
fn loss_rows<const FMA: bool>(ui: &Csr, first: usize, rows: &[f32], y: &[f32], g: &[f32], alpha: f32, reg: f32) -> f64 {
    let f = g.len().isqrt();
    let mut total = 0f64;
    let mut gx = vec![0f32; f];
    for (k, xu) in rows.chunks_exact(f).enumerate() {
        gemv_sym::<FMA>(g, xu, &mut gx, 1.0);
        total += dot::<FMA>(xu, &gx) as f64;
        let (idx, val) = ui.row(first + k);
        for (&i, &v) in idx.iter().zip(val) {
            let s = dot::<FMA>(xu, &y[i as usize * f..(i as usize + 1) * f]) as f64;
            let c = 1.0 + (alpha * v) as f64;
            total += c * (1.0 - s) * (1.0 - s) - s * s;
        }
        total += reg as f64 * dot::<FMA>(xu, xu) as f64;
    }
    total
}

/// Exact least-squares step for one user against fixed item factors (the "fold-in"):
/// solves (YᵀY + λI + Σ αr_i y_i y_iᵀ) x = Σ (1 + αr_i) y_i with a Cholesky factorisation in
/// f64. `gram_reg` is YᵀY + λI as returned by [`gram`]. Used at serving time so a like that
/// was inserted a second ago moves the user's vector without a retrain.
pub fn fold_in(item_factors: &[f32], f: usize, gram_reg: &[f32], items: &[(u32, f32)], alpha: f32) -> Vec<f32> {
    FoldIn::new(item_factors, f, gram_reg, items, alpha).x
}

/// A user's fold-in system kept factored, for explanations: with A the system matrix,
/// score(i) = y_iᵀ A⁻¹ Σ_j c_j y_j = Σ_j c_j (y_iᵀ A⁻¹ y_j), so each history item j contributes
/// c_j · (A⁻¹ y_i)·y_j (Hu, Koren & Volinsky 2008, section 5).
#[derive(Clone, Debug)]
pub struct FoldIn {
    f: usize,
    /// Lower Cholesky factor of A, row-major.
    l: Vec<f64>,
    pub x: Vec<f32>,
}

impl FoldIn {
    pub fn new(item_factors: &[f32], f: usize, gram_reg: &[f32], items: &[(u32, f32)], alpha: f32) -> FoldIn {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::kernels::has_avx2_fma() {
                // SAFETY: the CPU supports the enabled features (checked above).
                return unsafe { fold_in_avx2(item_factors, f, gram_reg, items, alpha) };
            }
        }
        fold_in_impl::<false>(item_factors, f, gram_reg, items, alpha)
    }

    /// Contribution of each history item (item, c_j · (A⁻¹ y_target)·y_j); they sum to the
    /// score of `target`. `items` must be the items the fold was built from.
    pub fn evidence(&self, item_factors: &[f32], items: &[(u32, f32)], alpha: f32, target: u32) -> Vec<(u32, f32)> {
        self.evidence_many(item_factors, items, alpha, &[target]).pop().unwrap_or_default()
    }

    /// [`FoldIn::evidence`] for several targets: A⁻¹ y_target for all of them in one pair of
    /// triangular solves (the targets side by side, so the inner loops run across them), then
    /// one f32 dot product per history item and target.
    pub fn evidence_many(&self, item_factors: &[f32], items: &[(u32, f32)], alpha: f32, targets: &[u32]) -> Vec<Vec<(u32, f32)>> {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::kernels::has_avx2_fma() {
                // SAFETY: the CPU supports the enabled features (checked above).
                return unsafe { evidence_avx2(self, item_factors, items, alpha, targets) };
            }
        }
        evidence_impl::<false>(self, item_factors, items, alpha, targets)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fold_in_avx2(item_factors: &[f32], f: usize, gram_reg: &[f32], items: &[(u32, f32)], alpha: f32) -> FoldIn {
    fold_in_impl::<true>(item_factors, f, gram_reg, items, alpha)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn evidence_avx2(fold: &FoldIn, item_factors: &[f32], items: &[(u32, f32)], alpha: f32, targets: &[u32]) -> Vec<Vec<(u32, f32)>> {
    evidence_impl::<true>(fold, item_factors, items, alpha, targets)
}

#[inline(always)]
fn madd64<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// [`FoldIn::new`]: A = YᵀY + λI + Σ αr_j y_j y_jᵀ, accumulated four history items at a time
/// (each row of A is loaded and stored once per four items, not once per item) over the upper
/// triangle from each row's aligned start, factored; then x = A⁻¹ Σ c_j y_j.
#[inline(always)]
fn fold_in_impl<const FMA: bool>(item_factors: &[f32], f: usize, gram_reg: &[f32], items: &[(u32, f32)], alpha: f32) -> FoldIn {
    let mut a: Vec<f64> = gram_reg.iter().map(|v| *v as f64).collect();
    let mut b = vec![0f64; f];
    // Four history rows as f64, and their weights αr_j.
    let mut y = vec![0f64; 4 * f];
    for block in items.chunks(4) {
        let mut e = [0f64; 4];
        for (k, &(i, r)) in block.iter().enumerate() {
            let yi = &item_factors[i as usize * f..(i as usize + 1) * f];
            y[k * f..(k + 1) * f].iter_mut().zip(yi).for_each(|(d, s)| *d = *s as f64);
            e[k] = (alpha * r) as f64;
            let c = 1.0 + e[k];
            b.iter_mut().zip(&y[k * f..(k + 1) * f]).for_each(|(bp, yp)| *bp = madd64::<FMA>(c, *yp, *bp));
        }
        // A short block: the missing rows weigh nothing.
        let (y0, rest) = y.split_at(f);
        let (y1, rest) = rest.split_at(f);
        let (y2, y3) = rest.split_at(f);
        for p in 0..f {
            let (e0, e1, e2, e3) = (e[0] * y0[p], e[1] * y1[p], e[2] * y2[p], e[3] * y3[p]);
            let q0 = p & !3;
            let row = &mut a[p * f + q0..(p + 1) * f];
            let ys = y0[q0..].iter().zip(&y1[q0..]).zip(y2[q0..].iter().zip(&y3[q0..]));
            for (v, ((a0, a1), (a2, a3))) in row.iter_mut().zip(ys) {
                *v = madd64::<FMA>(e0, *a0, madd64::<FMA>(e1, *a1, madd64::<FMA>(e2, *a2, madd64::<FMA>(e3, *a3, *v))));
            }
        }
    }
    cholesky_rows::<FMA>(&mut a, f);
    solve_factored_impl::<FMA>(&a, &mut b, f);
    FoldIn { f, l: a, x: b.into_iter().map(|v| v as f32).collect() }
}

/// [`FoldIn::evidence_many`]: A⁻¹ y_target for all targets in one pair of triangular solves
/// (the targets side by side, so the inner loops run across them), then one product per
/// history item and target.
#[inline(always)]
fn evidence_impl<const FMA: bool>(fold: &FoldIn, item_factors: &[f32], items: &[(u32, f32)], alpha: f32, targets: &[u32]) -> Vec<Vec<(u32, f32)>> {
    let (f, t) = (fold.f, targets.len());
    let row = |i: u32| &item_factors[i as usize * f..(i as usize + 1) * f];
    let l = &fold.l;
    let inv: Vec<f64> = (0..f).map(|i| 1.0 / l[i * f + i]).collect();
    // The targets four at a time (one group: f rows of four, a register wide), each group
    // solved on its own with the running sums held in registers.
    let mut z = vec![[0f64; 4]; t.div_ceil(4) * f];
    for (c, &target) in targets.iter().enumerate() {
        for (p, &v) in row(target).iter().enumerate() {
            z[(c / 4) * f + p][c % 4] = v as f64;
        }
    }
    for zg in z.chunks_exact_mut(f) {
        // L z' = z, then Lᵀ x = z' (x_i = (z'_i − Σ_{k>i} L_ki x_k) / L_ii).
        for i in 0..f {
            let acc = sum4::<FMA>(zg[i], 0, i, |k| -l[i * f + k], |k| zg[k]);
            zg[i] = acc.map(|v| v * inv[i]);
        }
        for i in (0..f).rev() {
            let acc = sum4::<FMA>(zg[i], i + 1, f, |k| -l[k * f + i], |k| zg[k]);
            zg[i] = acc.map(|v| v * inv[i]);
        }
    }
    // Per history item, its products with eight targets at a time (f32, in registers).
    let mut zf = vec![[0f32; 8]; t.div_ceil(8) * f];
    for c in 0..t {
        for p in 0..f {
            zf[(c / 8) * f + p][c % 8] = z[(c / 4) * f + p][c % 4] as f32;
        }
    }
    let mut out: Vec<Vec<(u32, f32)>> = (0..t).map(|_| Vec::with_capacity(items.len())).collect();
    for &(j, r) in items {
        let yj = row(j);
        let c_j = 1.0 + alpha * r;
        for (g, zg) in zf.chunks_exact(f).enumerate() {
            // Two independent running sums (even and odd factors), so the adds do not all
            // wait on each other.
            let (mut a0, mut a1) = ([0f32; 8], [0f32; 8]);
            for (y2, z2) in yj.chunks_exact(2).zip(zg.chunks_exact(2)) {
                for m in 0..8 {
                    a0[m] = crate::kernels::madd::<FMA>(y2[0], z2[0][m], a0[m]);
                    a1[m] = crate::kernels::madd::<FMA>(y2[1], z2[1][m], a1[m]);
                }
            }
            if f % 2 == 1 {
                for m in 0..8 {
                    a0[m] = crate::kernels::madd::<FMA>(yj[f - 1], zg[f - 1][m], a0[m]);
                }
            }
            for m in 0..8.min(t - g * 8) {
                out[g * 8 + m].push((j, c_j * (a0[m] + a1[m])));
            }
        }
    }
    out
}

/// start + Σ_{k in from..to} w(k)·v(k), four lanes wide, in four independent running sums
/// (unrolled by hand: an array indexed by k % 4 would live in memory, not in registers).
#[inline(always)]
fn sum4<const FMA: bool>(start: [f64; 4], from: usize, to: usize, w: impl Fn(usize) -> f64, v: impl Fn(usize) -> [f64; 4]) -> [f64; 4] {
    #[inline(always)]
    fn step<const FMA: bool>(a: &mut [f64; 4], w: f64, v: [f64; 4]) {
        for m in 0..4 {
            a[m] = madd64::<FMA>(w, v[m], a[m]);
        }
    }
    let (mut a0, mut a1, mut a2, mut a3) = (start, [0f64; 4], [0f64; 4], [0f64; 4]);
    let mut k = from;
    while k + 4 <= to {
        step::<FMA>(&mut a0, w(k), v(k));
        step::<FMA>(&mut a1, w(k + 1), v(k + 1));
        step::<FMA>(&mut a2, w(k + 2), v(k + 2));
        step::<FMA>(&mut a3, w(k + 3), v(k + 3));
        k += 4;
    }
    while k < to {
        step::<FMA>(&mut a0, w(k), v(k));
        k += 1;
    }
    std::array::from_fn(|m| (a0[m] + a1[m]) + (a2[m] + a3[m]))
}

/// In-place Cholesky factor of a symmetric positive (semi)definite A (row-major; only the upper
/// triangle is read), right-looking four rows at a time: the four rows are factored among
/// themselves, then subtracted from every row below in one pass (contiguous runs that
/// vectorise, each lower row loaded and stored once per four, not once per row). The lower
/// factor L ends in the lower triangle (and Lᵀ in the upper). Pivots as [`cholesky`]'s
/// ([`floored_sqrt`]).
#[inline(always)]
fn cholesky_rows<const FMA: bool>(a: &mut [f64], n: usize) {
    let mut j0 = 0;
    while j0 < n {
        let jb = 4.min(n - j0);
        let (head, tail) = a.split_at_mut((j0 + jb) * n);
        let panel = &mut head[j0 * n..];
        // The panel's rows among themselves.
        for j in 0..jb {
            let (done, rest) = panel.split_at_mut((j + 1) * n);
            let rj = &mut done[j * n..];
            let c = j0 + j;
            let d = floored_sqrt(rj[c]);
            rj[c] = d;
            let inv = 1.0 / d;
            rj[c + 1..].iter_mut().for_each(|v| *v *= inv);
            for (i, ri) in (c + 1..j0 + jb).zip(rest.chunks_exact_mut(n)) {
                let s = -rj[i];
                ri[i..].iter_mut().zip(&rj[i..]).for_each(|(x, y)| *x = madd64::<FMA>(s, *y, *x));
            }
        }
        // Every row below, minus the panel's four rows at once.
        let panel = &head[j0 * n..];
        for (i, ri) in (j0 + jb..n).zip(tail.chunks_exact_mut(n)) {
            if jb == 4 {
                let (r0, r1, r2, r3) = (&panel[i..n], &panel[n + i..2 * n], &panel[2 * n + i..3 * n], &panel[3 * n + i..4 * n]);
                let (s0, s1, s2, s3) = (-r0[0], -r1[0], -r2[0], -r3[0]);
                let rows = r0.iter().zip(r1).zip(r2.iter().zip(r3));
                for (x, ((y0, y1), (y2, y3))) in ri[i..].iter_mut().zip(rows) {
                    *x = madd64::<FMA>(s0, *y0, madd64::<FMA>(s1, *y1, madd64::<FMA>(s2, *y2, madd64::<FMA>(s3, *y3, *x))));
                }
            } else {
                for m in 0..jb {
                    let rm = &panel[m * n + i..(m + 1) * n];
                    let s = -rm[0];
                    ri[i..].iter_mut().zip(rm).for_each(|(x, y)| *x = madd64::<FMA>(s, *y, *x));
                }
            }
        }
        j0 += jb;
    }
    for p in 0..n {
        for q in 0..p {
            a[p * n + q] = a[q * n + p];
        }
    }
}

/// a · b with four running sums (independent chains: several times faster than one).
#[inline(always)]
fn dot_f64_impl<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            s[k] = madd64::<FMA>(x[k], y[k], s[k]);
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// Solves A x = b in place (A symmetric positive definite, n×n, row-major; b becomes x).
pub fn solve_spd(a: &mut [f64], b: &mut [f64], n: usize) {
    cholesky(a, n);
    solve_factored(a, b, n);
}

/// In-place lower Cholesky factor of a symmetric positive (semi)definite A, with
/// [`floored_sqrt`] pivots.
fn cholesky(a: &mut [f64], n: usize) {
    cholesky_with(a, n, |d| Some(floored_sqrt(d)));
}

/// A pivot's square root, with a tiny floor that keeps a singular A (λ = 0, no data) from
/// producing NaN.
fn floored_sqrt(d: f64) -> f64 {
    if d > 1e-12 {
        d.sqrt()
    } else {
        1e-6
    }
}

/// In-place lower Cholesky factor, each pivot (the remaining diagonal value) mapped through
/// `pivot` to its square root, or None to stop: then false.
pub(crate) fn cholesky_with(a: &mut [f64], n: usize, pivot: impl Fn(f64) -> Option<f64>) -> bool {
    for j in 0..n {
        let lj = &a[j * n..j * n + j];
        let Some(d) = pivot(a[j * n + j] - dot_f64_impl::<false>(lj, lj)) else { return false };
        a[j * n + j] = d;
        for i in j + 1..n {
            let (head, tail) = a.split_at_mut(i * n);
            let s = tail[j] - dot_f64_impl::<false>(&tail[..j], &head[j * n..j * n + j]);
            tail[j] = s / d;
        }
    }
    true
}

/// Solves L Lᵀ x = b in place, L from [`cholesky`].
pub(crate) fn solve_factored(a: &[f64], b: &mut [f64], n: usize) {
    solve_factored_impl::<false>(a, b, n)
}

#[inline(always)]
fn solve_factored_impl<const FMA: bool>(a: &[f64], b: &mut [f64], n: usize) {
    for i in 0..n {
        let s = b[i] - dot_f64_impl::<FMA>(&a[i * n..i * n + i], &b[..i]);
        b[i] = s / a[i * n + i];
    }
    // Lᵀ x = y by rows of L (contiguous): once x_i is known, row i's part of every earlier
    // equation is subtracted.
    for i in (0..n).rev() {
        let x = b[i] / a[i * n + i];
        b[i] = x;
        b[..i].iter_mut().zip(&a[i * n..i * n + i]).for_each(|(bk, l)| *bk = madd64::<FMA>(-l, x, *bk));
    }
}

/// A thread pool of `threads` workers (0 = one per core). `start` runs on each worker as it
/// starts; the extension uses it to block signals there, so only the backend thread sees them.
pub fn pool(threads: usize, start: Option<fn()>) -> Result<rayon::ThreadPool, CoreError> {
    let mut b = rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("recsys-{i}"));
    if let Some(s) = start {
        b = b.start_handler(move |_| s());
    }
    b.build().map_err(|e| CoreError::InvalidOption { name: "threads".into(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted(users: usize, items: usize, groups: usize, seed: u64) -> Csr {
        // Users of group g interact with a random half of the items of group g.
        let mut rng = Rng::new(seed);
        let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
        for u in 0..users {
            let gu = u % groups;
            for i in 0..items {
                if i % groups == gu && rng.next_f32() < 0.5 {
                    r.push(u as u32);
                    c.push(i as u32);
                    v.push(1.0);
                }
            }
        }
        Csr::from_triplets(users, items, &r, &c, &v)
    }

    struct Record(Vec<f64>);
    impl Progress for Record {
        fn iteration(&mut self, _: usize, loss: Option<f64>, _: f64) {
            self.0.push(loss.unwrap());
        }
    }

    #[test]
    fn loss_never_rises() {
        let m = planted(300, 120, 4, 1);
        let opts = AlsOptions { factors: 8, iterations: 12, regularization: 0.1, cg_steps: 3, ..Default::default() };
        let mut rec = Record(vec![]);
        train(&m, &opts, &pool(2, None).unwrap(), &mut rec).unwrap();
        assert_eq!(rec.0.len(), 12);
        for w in rec.0.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-5), "loss rose: {:?}", rec.0);
        }
        assert!(rec.0[11] < rec.0[0]);
    }

    #[test]
    fn planted_groups_are_recovered_as_neighbours() {
        let groups = 5;
        let m = planted(400, 100, groups, 2);
        let opts = AlsOptions { factors: 16, iterations: 10, regularization: 0.1, ..Default::default() };
        let (model, _) = train(&m, &opts, &pool(2, None).unwrap(), &mut NoProgress).unwrap();
        // For each item, its 5 nearest items by cosine must all be from its group.
        let f = model.factors;
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-9);
        let mut correct = 0;
        let mut total = 0;
        for i in 0..model.items {
            let qi = model.item(i);
            let mut sims: Vec<(f32, usize)> =
                (0..model.items).filter(|&j| j != i).map(|j| (dot::<false>(qi, model.item(j)) / (norm(qi) * norm(model.item(j))), j)).collect();
            sims.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
            for &(_, j) in sims.iter().take(5) {
                total += 1;
                if j % groups == i % groups {
                    correct += 1;
                }
            }
        }
        assert!(f == 16 && correct as f64 / total as f64 > 0.98, "{correct}/{total}");
    }

    #[test]
    fn same_seed_same_model_any_thread_count() {
        let m = planted(200, 80, 3, 3);
        let opts = AlsOptions { factors: 8, iterations: 3, ..Default::default() };
        let (a, _) = train(&m, &opts, &pool(1, None).unwrap(), &mut NoProgress).unwrap();
        let (b, _) = train(&m, &opts, &pool(2, None).unwrap(), &mut NoProgress).unwrap();
        assert_eq!(a, b);
        let (c, _) = train(&m, &AlsOptions { seed: 7, ..opts }, &pool(2, None).unwrap(), &mut NoProgress).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn fold_in_matches_a_converged_cg_row() {
        let m = planted(100, 60, 3, 4);
        let opts = AlsOptions { factors: 8, iterations: 5, regularization: 0.5, ..Default::default() };
        let p = pool(1, None).unwrap();
        let (model, _) = train(&m, &opts, &p, &mut NoProgress).unwrap();
        let g = gram(&model.item_factors, 8, opts.regularization, &p);
        let (idx, val) = m.row(0);
        let items: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
        let exact = fold_in(&model.item_factors, 8, &g, &items, opts.alpha);
        // Many CG steps from zero converge to the same solution.
        let mut x = vec![0f32; 8];
        let mut scratch = vec![0f32; 24];
        cg::<false, 0>(idx, val, &model.item_factors, &g, &mut x, opts.alpha, 50, &mut scratch);
        for (a, b) in exact.iter().zip(&x) {
            assert!((a - b).abs() < 1e-3, "{exact:?} vs {x:?}");
        }
        // The evidence of each history item sums to the score (HKV section 5).
        let fi = FoldIn::new(&model.item_factors, 8, &g, &items, opts.alpha);
        let targets = [0u32, 7, 59];
        let many = fi.evidence_many(&model.item_factors, &items, opts.alpha, &targets);
        for (c, &target) in targets.iter().enumerate() {
            let ev = fi.evidence(&model.item_factors, &items, opts.alpha, target);
            // Several targets solved side by side give each target's own evidence.
            assert_eq!(many[c], ev);
            let total: f32 = ev.iter().map(|e| e.1).sum();
            let score = crate::kernels::dot::<false>(&model.item_factors[target as usize * 8..(target as usize + 1) * 8], &fi.x);
            assert!((total - score).abs() < 1e-4 * score.abs().max(1.0), "{total} vs {score}");
        }
    }

    /// The fold-in's blocked kernels (four history rows, four or eight targets at a time, the
    /// row-wise factorisation), portable and AVX2, against plain Gaussian elimination in f64,
    /// for sizes that leave every kind of partial block.
    #[test]
    fn fold_in_kernels_match_a_plain_solve() {
        let mut rng = Rng::new(11);
        for f in [1usize, 3, 7, 8, 13, 64] {
            let items = 40;
            let y: Vec<f32> = (0..items * f).map(|_| rng.next_f32() - 0.5).collect();
            let g = gram(&y, f, 0.3, &pool(1, None).unwrap());
            for n in [0usize, 1, 3, 4, 5, 9, 17] {
                let hist: Vec<(u32, f32)> = (0..n).map(|k| (((k * 7 + f) % items) as u32, 1.0 + (k % 3) as f32)).collect();
                let alpha = 2.0;
                // A x = b by elimination with partial pivoting.
                let mut a: Vec<f64> = g.iter().map(|v| *v as f64).collect();
                let mut b = vec![0f64; f];
                for &(i, r) in &hist {
                    let yi = &y[i as usize * f..(i as usize + 1) * f];
                    for p in 0..f {
                        b[p] += (1.0 + (alpha * r) as f64) * yi[p] as f64;
                        for q in 0..f {
                            a[p * f + q] += (alpha * r) as f64 * yi[p] as f64 * yi[q] as f64;
                        }
                    }
                }
                for c in 0..f {
                    let piv = (c..f).max_by(|&i, &j| a[i * f + c].abs().total_cmp(&a[j * f + c].abs())).unwrap();
                    for q in 0..f {
                        a.swap(c * f + q, piv * f + q);
                    }
                    b.swap(c, piv);
                    for r in c + 1..f {
                        let m = a[r * f + c] / a[c * f + c];
                        for q in c..f {
                            a[r * f + q] -= m * a[c * f + q];
                        }
                        b[r] -= m * b[c];
                    }
                }
                for c in (0..f).rev() {
                    let s: f64 = (c + 1..f).map(|q| a[c * f + q] * b[q]).sum();
                    b[c] = (b[c] - s) / a[c * f + c];
                }
                let targets: Vec<u32> = (0..13).map(|k| ((k * 3 + 1) % items) as u32).collect();
                let mut kernels: Vec<(FoldIn, Vec<Vec<(u32, f32)>>)> = vec![];
                let portable = fold_in_impl::<false>(&y, f, &g, &hist, alpha);
                let ev = evidence_impl::<false>(&portable, &y, &hist, alpha, &targets);
                kernels.push((portable, ev));
                if crate::kernels::has_avx2_fma() {
                    let fast = FoldIn::new(&y, f, &g, &hist, alpha);
                    let ev = fast.evidence_many(&y, &hist, alpha, &targets);
                    kernels.push((fast, ev));
                }
                for (fold, ev) in &kernels {
                    for (x, want) in fold.x.iter().zip(&b) {
                        assert!((*x as f64 - want).abs() < 1e-4 * want.abs().max(1.0), "f {f} n {n}: {:?} vs {b:?}", fold.x);
                    }
                    assert_eq!(ev.len(), targets.len());
                    for (e, &t) in ev.iter().zip(&targets) {
                        assert_eq!(e.iter().map(|x| x.0).collect::<Vec<_>>(), hist.iter().map(|h| h.0).collect::<Vec<_>>());
                        let total: f64 = e.iter().map(|x| x.1 as f64).sum();
                        let score: f64 = y[t as usize * f..(t as usize + 1) * f].iter().zip(&b).map(|(a, b)| *a as f64 * b).sum();
                        assert!((total - score).abs() < 1e-4 * score.abs().max(1.0), "f {f} n {n} target {t}: {total} vs {score}");
                    }
                }
            }
        }
    }

    #[test]
    fn cancel_stops_training() {
        struct CancelAfter(usize);
        impl Progress for CancelAfter {
            fn check(&mut self) -> Result<(), CoreError> {
                if self.0 == 0 {
                    return Err(CoreError::Canceled);
                }
                self.0 -= 1;
                Ok(())
            }
        }
        let m = planted(100, 50, 2, 5);
        let r = train(&m, &AlsOptions::default(), &pool(1, None).unwrap(), &mut CancelAfter(3));
        assert_eq!(r.unwrap_err(), CoreError::Canceled);
    }

    #[test]
    fn rejects_bad_options_and_empty_input() {
        let m = planted(10, 10, 2, 6);
        let p = pool(1, None).unwrap();
        let bad = AlsOptions { factors: 0, ..Default::default() };
        assert!(matches!(train(&m, &bad, &p, &mut NoProgress), Err(CoreError::InvalidOption { .. })));
        let empty = Csr::from_triplets(3, 3, &[], &[], &[]);
        assert_eq!(train(&empty, &AlsOptions::default(), &p, &mut NoProgress).unwrap_err(), CoreError::EmptyInput);
    }
}
