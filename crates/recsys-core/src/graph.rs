//! Item-item graphs: EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW
//! 2019) and RP3beta (Paudel, Christoffel, Newell & Bernstein, "Updatable, Accurate, Diverse, and
//! Scalable Recommendations for Interactive Applications", ACM TiiS 2016), both kept as a sparse
//! item → item matrix with at most `k` neighbours a row.
//!
//! A user's score for item j is Σ_i w_i · weight(i → j) over their history items i, so each
//! recommendation decomposes exactly into "the posts you liked that lead here".
use crate::buf::Buf;
use crate::csr::Csr;
use crate::error::CoreError;
use crate::kernels::{has_avx2_fma, madd};
use crate::topk::{Scored, TopK};
use rayon::prelude::*;
use std::sync::Mutex;

type Result<T> = std::result::Result<T, CoreError>;

/// Defaults chosen on ML-100K rating >= 4 (tests/graph_quality.rs prints the sweep).
pub const DEFAULT_K: usize = 100;
/// Edges an EASE graph may keep in all (16 MB of neighbours and weights): a post keeps
/// `max(k, DEFAULT_EASE_EDGES / items)` neighbours ([`ease_neighbours`]), so a small catalogue
/// keeps (nearly) dense rows. On ML-100K (1.7K posts, 1,246 a row) EASE alone goes from 0.3164
/// to 0.3228 NDCG@10, the dense figure; at 5K posts a row keeps 419, at 10K 209, from 21K posts
/// on the plain `k`. RP3beta (and so the large-catalogue path) is not affected.
pub const DEFAULT_EASE_EDGES: usize = 1 << 21;
pub const DEFAULT_EASE_LAMBDA: f32 = 400.0;
/// EASE edges into post j are divided by (users of j)^β ([`discount_popular`]); chosen on
/// ML-100K splits other than the benchmark's (BENCHMARKS.md, issue 11).
pub const DEFAULT_EASE_BETA: f32 = 0.2;
pub const DEFAULT_RP3_ALPHA: f32 = 0.6;
pub const DEFAULT_RP3_BETA: f32 = 0.5;

/// Sparse item → item matrix: row i holds the items j a user who interacted with i is led to,
/// best first (weight descending, then lower j), at most `k` a row, never i itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemGraph {
    pub items: usize,
    /// Row i is `ptr[i]..ptr[i + 1]` of `nbr` and `weight`.
    pub ptr: Buf<u32>,
    pub nbr: Buf<u32>,
    pub weight: Buf<f32>,
}

fn corrupt(reason: String) -> CoreError {
    CoreError::InvalidOption { name: "item_graph".into(), reason }
}

fn bad(name: &str, reason: &str) -> CoreError {
    CoreError::InvalidOption { name: name.into(), reason: reason.into() }
}

impl ItemGraph {
    /// From parts this build wrote itself (a model image): the sizes and the ends of the row
    /// pointers are checked, the rest trusted (a decreasing pointer makes a row's slice fail
    /// with a panic, never read out of bounds; an edge beyond the catalogue is skipped by
    /// `scores`, a NaN weight scores 0), so opening touches no row.
    pub fn from_written_parts(items: usize, ptr: Buf<u32>, nbr: Buf<u32>, weight: Buf<f32>) -> Result<ItemGraph> {
        let ok = ptr.len() == items.saturating_add(1) && ptr[0] == 0 && ptr[items] as usize == nbr.len() && nbr.len() == weight.len();
        if !ok {
            return Err(corrupt("row pointers or lengths do not match".into()));
        }
        Ok(ItemGraph { items, ptr, nbr, weight })
    }

    /// Checks parts read back from storage; never panics. Rejects: `ptr` not of length
    /// items + 1, not starting at 0, decreasing, or not ending at the edge count; `nbr` and
    /// `weight` of different lengths; a neighbour >= items; a non-finite weight; a row not
    /// sorted by weight descending.
    pub fn from_parts(items: usize, ptr: Buf<u32>, nbr: Buf<u32>, weight: Buf<f32>) -> Result<ItemGraph> {
        if ptr.len() != items.saturating_add(1) {
            return Err(corrupt(format!("ptr has {} entries, expected items + 1 = {}", ptr.len(), items.saturating_add(1))));
        }
        if nbr.len() != weight.len() {
            return Err(corrupt(format!("{} neighbours but {} weights", nbr.len(), weight.len())));
        }
        if ptr[0] != 0 {
            return Err(corrupt(format!("ptr starts at {}, not 0", ptr[0])));
        }
        if let Some(p) = ptr.windows(2).position(|w| w[0] > w[1]) {
            return Err(corrupt(format!("ptr decreases at row {p}")));
        }
        if ptr[items] as usize != nbr.len() {
            return Err(corrupt(format!("ptr ends at {} but there are {} edges", ptr[items], nbr.len())));
        }
        if let Some(p) = nbr.iter().position(|&j| j as usize >= items) {
            return Err(corrupt(format!("neighbour {} at edge {p} is not below items = {items}", nbr[p])));
        }
        if let Some(p) = weight.iter().position(|w| !w.is_finite()) {
            return Err(corrupt(format!("weight {} at edge {p} is not finite", weight[p])));
        }
        for i in 0..items {
            let w = &weight[ptr[i] as usize..ptr[i + 1] as usize];
            if w.windows(2).any(|p| p[0] < p[1]) {
                return Err(corrupt(format!("row {i} is not sorted by weight descending")));
            }
        }
        Ok(ItemGraph { items, ptr, nbr, weight })
    }

    /// Builds from per-row lists already in rank order (the builders' top-k output).
    fn push_rows(&mut self, rows: Vec<Vec<(u32, f32)>>) -> Result<()> {
        for row in rows {
            for (j, w) in row {
                self.nbr.push(j);
                self.weight.push(w);
            }
            let end = u32::try_from(self.nbr.len()).map_err(|_| bad("k", "the graph would exceed 4G edges; lower k"))?;
            self.ptr.push(end);
        }
        Ok(())
    }

    fn empty(items: usize, k: usize) -> ItemGraph {
        let cap = items.saturating_mul(k).min(1 << 24);
        let mut ptr = Vec::with_capacity(items + 1);
        ptr.push(0);
        ItemGraph { items, ptr: ptr.into(), nbr: Vec::with_capacity(cap).into(), weight: Vec::with_capacity(cap).into() }
    }

    /// Row i (empty when i is out of range).
    pub fn row(&self, i: u32) -> (&[u32], &[f32]) {
        let i = i as usize;
        if i >= self.items {
            return (&[], &[]);
        }
        let (a, b) = (self.ptr[i] as usize, self.ptr[i + 1] as usize);
        (&self.nbr[a..b], &self.weight[a..b])
    }

    pub fn nnz(&self) -> usize {
        self.nbr.len()
    }

    /// out[j] = Σ over history (i, w_i) of w_i · weight(i → j), `out` zeroed first. Items out of
    /// range (in the history or beyond `out`) are ignored; a repeated item counts each time.
    /// EASE and RP3beta were designed for binary histories (w = 1).
    /// [`ItemGraph::scores`] added to `out` (not zeroed first), returning the items it wrote,
    /// each once, in the order first written. With `out` zeroed first, every other entry
    /// stays 0.
    pub fn add_scores(&self, history: &[(u32, f32)], out: &mut [f32]) -> Vec<u32> {
        let mut touched = vec![];
        // One bit per item: a heavy history writes tens of thousands of entries, and sorting
        // them to drop repeats cost more than the scores.
        let mut seen = vec![0u64; out.len().div_ceil(64)];
        for &(i, w) in history {
            let (js, ws) = self.row(i);
            for (&j, &b) in js.iter().zip(ws) {
                if let Some(o) = out.get_mut(j as usize) {
                    *o += w * b;
                    let (word, bit) = (j as usize / 64, 1u64 << (j % 64));
                    if seen[word] & bit == 0 {
                        seen[word] |= bit;
                        touched.push(j);
                    }
                }
            }
        }
        touched
    }

    pub fn scores(&self, history: &[(u32, f32)], out: &mut [f32]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        for &(i, w) in history {
            let (js, ws) = self.row(i);
            for (&j, &b) in js.iter().zip(ws) {
                if let Some(o) = out.get_mut(j as usize) {
                    *o += w * b;
                }
            }
        }
    }

    /// The history items with an edge to `j` and its weight, strongest first (ties: lower item).
    /// With binary history weights these sum to `scores(..)[j]`.
    pub fn evidence(&self, history_items: &[u32], j: u32) -> Vec<(u32, f32)> {
        let mut ev: Vec<(u32, f32)> = history_items
            .iter()
            .filter_map(|&i| {
                let (js, ws) = self.row(i);
                js.iter().position(|&x| x == j).map(|p| (i, ws[p]))
            })
            .collect();
        ev.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ev
    }

    /// Bytes held, for memory accounting.
    pub fn bytes(&self) -> usize {
        self.ptr.len() * 4 + self.nbr.len() * 4 + self.weight.len() * 4
    }
}

/// Neighbours per post an EASE graph over `items` posts keeps: at least `k`, more while the
/// graph stays within `edges` edges in all (`edges` = 0: exactly `k`).
pub fn ease_neighbours(k: usize, edges: usize, items: usize) -> usize {
    k.max(edges / items.max(1))
}

fn validate_k(k: usize, items: usize) -> Result<usize> {
    if k == 0 {
        return Err(bad("k", "must be at least 1"));
    }
    let k = k.min(items.saturating_sub(1));
    if items.saturating_mul(k) > u32::MAX as usize {
        return Err(bad("k", "items × k exceeds 4G edges; lower k"));
    }
    Ok(k)
}

/// Top `k` of `(j, w)` candidates with w > 0, best first, ties to the lower j.
fn top_row(k: usize, cands: impl Iterator<Item = (u32, f32)>) -> Vec<(u32, f32)> {
    let mut t = TopK::new(k);
    for (j, w) in cands {
        if w > 0.0 && w.is_finite() && w >= t.threshold() {
            t.push(Scored { score: w, id: j as i64, index: j });
        }
    }
    t.into_sorted().into_iter().map(|s| (s.index, s.score)).collect()
}

// ---------------------------------------------------------------------------------------------
// EASE

/// Pivot block of the dense inversion: a 128-wide panel of Vᵀ tiles is 8 KB a tile (L1).
const NB: usize = 128;
/// Columns per micro-kernel tile (two AVX registers of f32) and rows per quad.
const TILE: usize = 16;
const QUAD: usize = 4;
/// Rows a parallel task updates; a multiple of TILE so quads stay aligned.
const BAND: usize = 32;
/// Rows between two cancel checks in the dense phases.
const CHECK_ROWS: usize = 1024;

/// Memory the EASE solve needs for `items` items: one dense items × items f32 matrix (inverted in
/// place) plus three items × 128 panels. 10K items ≈ 0.4 GB, 20K ≈ 1.6 GB, 50K ≈ 10 GB: EASE
/// is for catalogues up to a few tens of thousands of items; beyond, use [`rp3beta`]. The
/// interaction matrix and its transpose (8 bytes an interaction each) and the output graph
/// (8 bytes an edge) come on top.
pub fn ease_bytes(items: usize) -> u64 {
    let n = items as u64;
    let padded = n.div_ceil(TILE as u64) * TILE as u64;
    n * n * 4 + (n + 2 * padded) * NB as u64 * 4
}

/// EASE (Steck 2019): with X the binarised user × item matrix, G = XᵀX, P = (G + λI)⁻¹ and
/// B_ij = −P_ij / P_jj (B_ii = 0), the closed form of min ‖X − XB‖² + λ‖B‖² s.t. diag(B) = 0.
/// Row i of the graph keeps the `k` entries of largest |B_ij|, sorted by B_ij descending: the
/// positive ones first ("leads to"), then the negative ones (items that stand in for i, which
/// a user of i rarely also takes). The negatives carry ranking signal: on ML-100K at k = 100,
/// NDCG@10 is 0.319 against 0.308 for the k largest positive weights (dense B: 0.325).
///
/// Dense: needs [`ease_bytes`] of memory and ~items³ flops. Measured on 2 cores: ML-100K's
/// 1.4K items 0.1 s; 10K items 0.4 GB, 16 s; 20K items 1.6 GB, 72 s. The caller checks its
/// budget with [`ease_bytes`] first; an allocation that fails anyway is an error, not an abort.
///
/// Precision: f32. The matrix is SPD with condition number ≈ (λ_max(G) + λ)/λ, modest for the
/// λ EASE needs (hundreds), and the inversion is backward stable: the tests find the weights
/// within 1e-6 of the largest one against an f64 inverse, and on ML-100K the graph ranks
/// exactly like numpy's float64 EASE cut to the same k (bench/graph_peers.py). f64 would double
/// the memory (20K items: 3.2 GB) and halve the SIMD width for no ranking change.
/// `check` runs between blocks of work; an `Err` stops the build and is returned.
pub fn ease(ui: &Csr, lambda: f32, k: usize, pool: &rayon::ThreadPool, check: &mut dyn FnMut() -> Result<()>) -> Result<ItemGraph> {
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(bad("lambda", "must be a finite number > 0"));
    }
    let n = ui.cols;
    let k = validate_k(k, n)?;
    if ui.nnz() == 0 {
        return Err(CoreError::EmptyInput);
    }
    let iu = ui.transpose();
    check()?;
    let mut a: Vec<f32> = Vec::new();
    a.try_reserve_exact(n.saturating_mul(n)).map_err(|_| {
        bad(
            "items",
            &format!("EASE needs a dense {n} × {n} matrix ({} MB) and it could not be allocated; use rp3beta for a catalogue this large", ease_bytes(n) >> 20),
        )
    })?;
    a.resize(n * n, 0.0);
    // G = XᵀX on the binarised matrix, lower triangle, + λ on the diagonal.
    for (c, chunk) in a.chunks_mut(CHECK_ROWS * n).enumerate() {
        pool.install(|| {
            chunk.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
                let i = c * CHECK_ROWS + r;
                for &u in iu.row(i).0 {
                    for &j in ui.row(u as usize).0 {
                        if j as usize <= i {
                            row[j as usize] += 1.0;
                        }
                    }
                }
                row[i] += lambda;
            })
        });
        check()?;
    }
    drop(iu);
    sweep_inverse(&mut a, n, NB, pool, check)?;
    // a now holds −P in its lower triangle; mirror it so each row is contiguous.
    mirror_lower(&mut a, n);
    check()?;
    // B_ij = −P_ij / P_jj = a_ij · (−1 / a_jj).
    let scale: Vec<f32> = (0..n).map(|j| -1.0 / a[j * n + j]).collect();
    let mut g = ItemGraph::empty(n, k);
    for start in (0..n).step_by(CHECK_ROWS * 4) {
        let end = (start + CHECK_ROWS * 4).min(n);
        let rows: Vec<Vec<(u32, f32)>> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map(|i| {
                    let b = |j: usize| a[i * n + j] * scale[j];
                    let mut t = TopK::new(k);
                    for j in (0..n).filter(|&j| j != i) {
                        let w = b(j).abs();
                        if w > 0.0 && w.is_finite() && w >= t.threshold() {
                            t.push(Scored { score: w, id: j as i64, index: j as u32 });
                        }
                    }
                    let mut row: Vec<(u32, f32)> = t.into_sorted().into_iter().map(|s| (s.index, b(s.index as usize))).collect();
                    row.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                    row
                })
                .collect()
        });
        g.push_rows(rows)?;
        check()?;
    }
    Ok(g)
}

/// In-place inverse of the symmetric positive definite n × n matrix whose lower triangle is in
/// `a` (row-major): on return the lower triangle holds −A⁻¹; the upper triangle is scratch.
///
/// Block Gauss–Jordan "sweep" (Goodnight 1979) over pivot blocks K of `nb` indices, with R the
/// other indices and D = A_KK:  A_KK ← −D⁻¹,  A_RK ← A_RK D⁻¹,  A_RR ← A_RR − A_RK D⁻¹ A_KR.
/// Each D is a Schur complement of an SPD matrix, hence SPD, so it is inverted through its
/// Cholesky factor (in f64) and no pivoting is needed. Same n³ flops as Cholesky + potri, but
/// in place with one heavy step, the rank-nb update of A_RR, done by a register-tiled kernel.
fn sweep_inverse(a: &mut [f32], n: usize, nb: usize, pool: &rayon::ThreadPool, check: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let mut s = Sweep::new(n, nb);
    for k0 in (0..n).step_by(nb) {
        let k1 = (k0 + nb).min(n);
        s.invert_pivot(a, k0, k1)?;
        s.pack(a, k0, k1, pool);
        check()?;
        // A_RR −= U Vᵀ on the lower triangle, bands of rows in parallel.
        for (c, chunk) in a.chunks_mut(CHECK_ROWS * n).enumerate() {
            let (up, vt) = (&s.up[..], &s.vt[..]);
            pool.install(|| {
                chunk.par_chunks_mut(BAND * n).enumerate().for_each(|(b, band)| {
                    update_band(band, c * CHECK_ROWS + b * BAND, n, up, vt, nb);
                })
            });
            check()?;
        }
        s.store_pivot(a, k0, k1);
    }
    Ok(())
}

/// The scratch of [`sweep_inverse`] for one pivot block K = k0..k1 at a time (m = k1 − k0 <= nb).
struct Sweep {
    n: usize,
    nb: usize,
    /// V = A_RK, n × nb, zero on K.
    v: Vec<f32>,
    /// U = V D⁻¹ packed by quads of rows: up[q][k][r] = U[4q + r][k].
    up: Vec<f32>,
    /// Vᵀ packed by tiles of columns: vt[t][k][l] = V[16t + l][k].
    vt: Vec<f32>,
    /// D = A_KK (m × m, f64); destroyed by its inversion.
    d: Vec<f64>,
    /// D⁻¹ (m × m), in f64 and in f32.
    dinv: Vec<f64>,
    dinv32: Vec<f32>,
}

impl Sweep {
    fn new(n: usize, nb: usize) -> Sweep {
        let quads = n.div_ceil(QUAD);
        let tiles = n.div_ceil(TILE);
        Sweep {
            n,
            nb,
            v: vec![0f32; n * nb],
            up: vec![0f32; quads * QUAD * nb],
            vt: vec![0f32; tiles * TILE * nb],
            d: vec![0f64; nb * nb],
            dinv: vec![0f64; nb * nb],
            dinv32: vec![0f32; nb * nb],
        }
    }

    /// D = A_KK (symmetric from the lower triangle), inverted through Cholesky in f64.
    fn invert_pivot(&mut self, a: &[f32], k0: usize, k1: usize) -> Result<()> {
        let (n, m, d) = (self.n, k1 - k0, &mut self.d);
        for p in 0..m {
            for q in 0..=p {
                let x = a[(k0 + p) * n + k0 + q] as f64;
                d[p * m + q] = x;
                d[q * m + p] = x;
            }
        }
        if !spd_inverse(&mut d[..m * m], &mut self.dinv[..m * m], m) {
            return Err(bad("lambda", "the regularised Gram matrix is not positive definite in f32; raise lambda"));
        }
        self.dinv32.iter_mut().zip(&self.dinv).for_each(|(s, x)| *s = *x as f32);
        Ok(())
    }

    /// Fills V = A_RK, U = V D⁻¹ and Vᵀ, packed for [`update_band`].
    fn pack(&mut self, a: &[f32], k0: usize, k1: usize, pool: &rayon::ThreadPool) {
        let Sweep { n, nb, v, up, vt, dinv32, .. } = self;
        let (n, nb, m, dinv32) = (*n, *nb, k1 - k0, &dinv32[..]);
        pool.install(|| {
            // V = A_RK, zero on K (so the update leaves K alone). Rows above K read column block
            // K from rows K (a transpose): in blocks of 64 rows so both sides stay in cache.
            v.par_chunks_mut(64 * nb).enumerate().for_each(|(b, vb)| {
                let i0 = b * 64;
                let rows = vb.len() / nb;
                vb.iter_mut().for_each(|x| *x = 0.0);
                let above = k0.saturating_sub(i0).min(rows);
                for kk in 0..m {
                    let src = &a[(k0 + kk) * n + i0..(k0 + kk) * n + i0 + above];
                    for (r, &x) in src.iter().enumerate() {
                        vb[r * nb + kk] = x;
                    }
                }
                for r in 0..rows {
                    let i = i0 + r;
                    if i >= k1 {
                        vb[r * nb..r * nb + m].copy_from_slice(&a[i * n + k0..i * n + k1]);
                    }
                }
            });
            // U = V D⁻¹, packed by quads of rows: up[q][k][r] = U[4q + r][k].
            let v = &*v;
            up.par_chunks_mut(QUAD * nb).enumerate().for_each(|(q, uq)| {
                uq.iter_mut().for_each(|x| *x = 0.0);
                let mut row = vec![0f32; nb];
                for r in 0..QUAD {
                    let i = q * QUAD + r;
                    if i >= n || (k0..k1).contains(&i) {
                        continue;
                    }
                    row.iter_mut().for_each(|x| *x = 0.0);
                    for (kk, &x) in v[i * nb..i * nb + m].iter().enumerate() {
                        if x != 0.0 {
                            for (o, &y) in row[..m].iter_mut().zip(&dinv32[kk * m..(kk + 1) * m]) {
                                *o += x * y;
                            }
                        }
                    }
                    for (kk, &x) in row[..m].iter().enumerate() {
                        uq[kk * QUAD + r] = x;
                    }
                }
            });
            // Vᵀ packed by tiles of columns: vt[t][k][l] = V[16t + l][k].
            vt.par_chunks_mut(TILE * nb).enumerate().for_each(|(t, tile)| {
                tile.iter_mut().for_each(|x| *x = 0.0);
                for l in 0..TILE {
                    let j = t * TILE + l;
                    if j >= n {
                        break;
                    }
                    for kk in 0..m {
                        tile[kk * TILE + l] = v[j * nb + kk];
                    }
                }
            });
        });
    }

    /// A_RK ← U, A_KK ← −D⁻¹ (lower triangle).
    fn store_pivot(&self, a: &mut [f32], k0: usize, k1: usize) {
        let (n, nb, m, up) = (self.n, self.nb, k1 - k0, &self.up);
        let u_at = |i: usize, kk: usize| up[(i / QUAD) * QUAD * nb + kk * QUAD + i % QUAD];
        for kk in 0..m {
            for (i, x) in a[(k0 + kk) * n..(k0 + kk) * n + k0].iter_mut().enumerate() {
                *x = u_at(i, kk);
            }
        }
        for i in k1..n {
            for (kk, x) in a[i * n + k0..i * n + k1].iter_mut().enumerate() {
                *x = u_at(i, kk);
            }
        }
        for p in 0..m {
            for q in 0..=p {
                a[(k0 + p) * n + k0 + q] = -self.dinv[p * m + q] as f32;
            }
        }
    }
}

/// Inverse of an SPD m × m matrix through its Cholesky factor; `d` is destroyed. False when a
/// pivot is not positive.
fn spd_inverse(d: &mut [f64], out: &mut [f64], m: usize) -> bool {
    if !crate::als::cholesky_with(d, m, |s| (s > 0.0 && s.is_finite()).then(|| s.sqrt())) {
        return false;
    }
    // Column c of the inverse: solve L Lᵀ x = e_c.
    let mut x = vec![0f64; m];
    for c in 0..m {
        x.iter_mut().for_each(|v| *v = 0.0);
        x[c] = 1.0;
        crate::als::solve_factored(d, &mut x, m);
        for i in 0..m {
            out[i * m + c] = x[i];
        }
    }
    true
}

fn update_band(band: &mut [f32], first: usize, n: usize, up: &[f32], vt: &[f32], nb: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports the enabled features (checked above).
            unsafe { update_band_avx2(band, first, n, up, vt, nb) };
            return;
        }
    }
    update_band_impl::<false>(band, first, n, up, vt, nb)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn update_band_avx2(band: &mut [f32], first: usize, n: usize, up: &[f32], vt: &[f32], nb: usize) {
    update_band_impl::<true>(band, first, n, up, vt, nb)
}

/// Rows `first..` of the band (a multiple of QUAD): a_ij −= U_i · V_j for every tile of columns
/// that reaches j <= i. The part of a tile above the diagonal lands in the scratch upper
/// triangle. Tiles outer, quads inner: a tile of Vᵀ (8 KB) stays in L1 for the whole band.
#[inline(always)]
fn update_band_impl<const FMA: bool>(band: &mut [f32], first: usize, n: usize, up: &[f32], vt: &[f32], nb: usize) {
    let rows = band.len() / n;
    if rows == 0 {
        return;
    }
    let last = first + rows - 1;
    for t in 0..=last / TILE {
        let j0 = t * TILE;
        let width = TILE.min(n - j0);
        let tile = &vt[t * TILE * nb..(t + 1) * TILE * nb];
        let mut r = j0.saturating_sub(first);
        while r < rows {
            let q = (first + r) / QUAD;
            let uq = &up[q * QUAD * nb..(q + 1) * QUAD * nb];
            let mut acc = [[0f32; TILE]; QUAD];
            for kk in 0..nb {
                let x: &[f32] = &uq[kk * QUAD..kk * QUAD + QUAD];
                let y: &[f32] = &tile[kk * TILE..kk * TILE + TILE];
                for h in 0..QUAD {
                    for l in 0..TILE {
                        acc[h][l] = madd::<FMA>(x[h], y[l], acc[h][l]);
                    }
                }
            }
            for (h, acc_h) in acc.iter().enumerate().take((rows - r).min(QUAD)) {
                let row = &mut band[(r + h) * n + j0..(r + h) * n + j0 + width];
                for (o, s) in row.iter_mut().zip(acc_h) {
                    *o -= s;
                }
            }
            r += QUAD;
        }
    }
}

/// Copies the lower triangle onto the upper one, in cache-sized blocks.
fn mirror_lower(a: &mut [f32], n: usize) {
    const B: usize = 64;
    for bi in (0..n).step_by(B) {
        for bj in (0..=bi).step_by(B) {
            for i in bi..(bi + B).min(n) {
                for j in bj..(bj + B).min(i) {
                    a[j * n + i] = a[i * n + j];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RP3beta

/// RP3beta (Paudel et al. 2016): a three-step random walk item → user → item on the bipartite
/// interaction graph, with transition probabilities raised to α and the arrival item's
/// popularity (distinct users) divided out to the power β:
/// W_ij = Σ_u P_iu^α · P_uj^α / pop_j^β, P_iu = r_ui / Σ_v r_vi, P_uj = r_uj / Σ_l r_ul.
/// On binary data this is the paper's (and Dacrema et al. 2019's) RP3beta; with weights, a walk
/// follows heavier interactions more often. Row i keeps the `k` largest W_ij, j ≠ i.
///
/// Sparse and row by row: row i touches Σ_{u ∈ users(i)} |items(u)| entries, with one dense
/// accumulator of `items` floats per thread; memory is the interaction matrix, its transpose and
/// the output (8 bytes an edge), never an items × items matrix. Parallel over rows; `check`
/// runs between blocks of rows.
pub fn rp3beta(ui: &Csr, alpha: f32, beta: f32, k: usize, pool: &rayon::ThreadPool, check: &mut dyn FnMut() -> Result<()>) -> Result<ItemGraph> {
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(bad("alpha", "must be a finite number >= 0"));
    }
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(bad("beta", "must be a finite number >= 0"));
    }
    let n = ui.cols;
    let k = validate_k(k, n)?;
    if ui.nnz() == 0 {
        return Err(CoreError::EmptyInput);
    }
    let puj = user_steps(ui, alpha, pool);
    let iu = ui.transpose();
    check()?;
    let popb: Vec<f32> = (0..n)
        .map(|j| {
            let d = iu.row(j).0.len();
            if d == 0 {
                0.0
            } else {
                (d as f32).powf(-beta)
            }
        })
        .collect();
    let walk = Walk { ui, iu: &iu, puj: &puj, popb: &popb, alpha, k };
    // One accumulator (and its list of touched items) per worker thread.
    let scratch: Vec<Mutex<(Vec<f32>, Vec<u32>)>> = (0..pool.current_num_threads().max(1)).map(|_| Mutex::new((Vec::new(), Vec::new()))).collect();
    let mut g = ItemGraph::empty(n, k);
    const BLOCK: usize = 2048;
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let rows: Vec<Vec<(u32, f32)>> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map(|i| {
                    let slot = rayon::current_thread_index().unwrap_or(0) % scratch.len();
                    let mut guard = match scratch[slot].lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    let (acc, touched) = &mut *guard;
                    walk.row(i, acc, touched)
                })
                .collect()
        });
        g.push_rows(rows)?;
        check()?;
    }
    Ok(g)
}

/// P_uj^α for every stored (u, j), in ui's order: the user → item step of the walk.
fn user_steps(ui: &Csr, alpha: f32, pool: &rayon::ThreadPool) -> Vec<f32> {
    let mut puj = vec![0f32; ui.nnz()];
    pool.install(|| {
        let mut parts: Vec<&mut [f32]> = Vec::with_capacity(ui.rows);
        let mut rest: &mut [f32] = &mut puj;
        for u in 0..ui.rows {
            let (a, b) = rest.split_at_mut(ui.indptr[u + 1] - ui.indptr[u]);
            parts.push(a);
            rest = b;
        }
        parts.into_par_iter().enumerate().for_each(|(u, out)| {
            let vals = ui.row(u).1;
            let s: f32 = vals.iter().sum();
            for (o, &r) in out.iter_mut().zip(vals) {
                *o = (r / s).powf(alpha);
            }
        })
    });
    puj
}

/// What one row of RP3beta reads: the interactions both ways, the user → item steps and the
/// popularity discount pop_j^−β.
struct Walk<'a> {
    ui: &'a Csr,
    iu: &'a Csr,
    puj: &'a [f32],
    popb: &'a [f32],
    alpha: f32,
    k: usize,
}

impl Walk<'_> {
    /// Row i of W, its `k` largest entries off the diagonal. `acc` (all zeros, resized to the
    /// item count on first use) and `touched` (empty) are the thread's scratch, left as found.
    fn row(&self, i: usize, acc: &mut Vec<f32>, touched: &mut Vec<u32>) -> Vec<(u32, f32)> {
        let (ui, n) = (self.ui, self.ui.cols);
        if acc.len() != n {
            *acc = vec![0f32; n];
        }
        let (users, r_iu) = self.iu.row(i);
        let s: f32 = r_iu.iter().sum();
        for (&u, &r) in users.iter().zip(r_iu) {
            let p = (r / s).powf(self.alpha);
            let (a, b) = (ui.indptr[u as usize], ui.indptr[u as usize + 1]);
            for (&j, &w) in ui.indices[a..b].iter().zip(&self.puj[a..b]) {
                let slot = &mut acc[j as usize];
                if *slot == 0.0 {
                    touched.push(j);
                }
                *slot += p * w;
            }
        }
        // Reading an entry clears it, so a repeat in `touched` reads 0 and is skipped.
        let row = top_row(
            self.k,
            touched.iter().filter(|&&j| j as usize != i).map(|&j| {
                let x = std::mem::take(&mut acc[j as usize]);
                (j, x * self.popb[j as usize])
            }),
        );
        // The diagonal was skipped above; clear it too.
        acc[i] = 0.0;
        touched.clear();
        row
    }
}

// ---------------------------------------------------------------------------------------------
// Popularity discount

/// Divides every edge into post j by (training users of j)^`beta`, RP3beta's popularity
/// discount applied to another graph (here EASE's), and re-sorts each row by weight. EASE fits
/// co-occurrence, so its strongest edges point at the most popular posts; a mild discount
/// (β 0.2, [`DEFAULT_EASE_BETA`]) ranks better on ML-100K, alone and in the hybrid
/// (BENCHMARKS.md, issue 11). The rows keep the neighbours they had (top-k by |B| before the
/// discount). One pass over the edges: O(edges + users' interactions).
pub fn discount_popular(g: &mut ItemGraph, ui: &Csr, beta: f32) {
    if beta == 0.0 || !beta.is_finite() {
        return;
    }
    let mut users = vec![0u32; g.items];
    for &j in ui.indices.iter() {
        if let Some(c) = users.get_mut(j as usize) {
            *c += 1;
        }
    }
    let d: Vec<f32> = users.iter().map(|&c| (c.max(1) as f32).powf(-beta)).collect();
    let mut row: Vec<(u32, f32)> = Vec::new();
    for i in 0..g.items {
        let (a, b) = (g.ptr[i] as usize, g.ptr[i + 1] as usize);
        row.clear();
        row.extend(g.nbr[a..b].iter().zip(&g.weight[a..b]).map(|(&j, &w)| (j, w * d.get(j as usize).copied().unwrap_or(1.0))));
        row.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        for (k, &(j, w)) in row.iter().enumerate() {
            g.nbr[a + k] = j;
            g.weight[a + k] = w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn pool() -> rayon::ThreadPool {
        crate::als::pool(2, None).unwrap()
    }

    fn ok() -> Result<()> {
        Ok(())
    }

    fn random_ui(users: usize, items: usize, p: f32, seed: u64) -> Csr {
        let mut rng = Rng::new(seed);
        let (mut r, mut c) = (vec![], vec![]);
        for u in 0..users {
            for i in 0..items {
                // Item i is popular in proportion to 1/(1 + i/10): a skewed catalogue.
                if rng.next_f32() < p / (1.0 + i as f32 / 10.0) {
                    r.push(u as u32);
                    c.push(i as u32);
                }
            }
        }
        let v = vec![1.0; r.len()];
        Csr::from_triplets(users, items, &r, &c, &v)
    }

    /// Plain f64 Gauss–Jordan with partial pivoting: the reference inverse.
    fn inverse_f64(a: &[f64], n: usize) -> Vec<f64> {
        let mut m = a.to_vec();
        let mut inv = vec![0f64; n * n];
        for i in 0..n {
            inv[i * n + i] = 1.0;
        }
        for c in 0..n {
            let p = (c..n).max_by(|&x, &y| m[x * n + c].abs().total_cmp(&m[y * n + c].abs())).unwrap();
            for j in 0..n {
                m.swap(c * n + j, p * n + j);
                inv.swap(c * n + j, p * n + j);
            }
            let d = m[c * n + c];
            for j in 0..n {
                m[c * n + j] /= d;
                inv[c * n + j] /= d;
            }
            for r in 0..n {
                if r != c {
                    let f = m[r * n + c];
                    for j in 0..n {
                        m[r * n + j] -= f * m[c * n + j];
                        inv[r * n + j] -= f * inv[c * n + j];
                    }
                }
            }
        }
        inv
    }

    /// Dense EASE B in f64, straight from the paper's formulas.
    fn ease_reference(ui: &Csr, lambda: f64) -> Vec<f64> {
        let n = ui.cols;
        let mut g = vec![0f64; n * n];
        for u in 0..ui.rows {
            let js = ui.row(u).0;
            for &a in js {
                for &b in js {
                    g[a as usize * n + b as usize] += 1.0;
                }
            }
        }
        for i in 0..n {
            g[i * n + i] += lambda;
        }
        let p = inverse_f64(&g, n);
        (0..n * n).map(|x| if x / n == x % n { 0.0 } else { -p[x] / p[(x % n) * n + x % n] }).collect()
    }

    #[test]
    fn ease_matches_hand_inverse_on_four_items() {
        // Users × items: 0:{0,1}, 1:{0,1,2}, 2:{1,2}, 3:{2,3}, 4:{0,3}.
        let rows: &[&[u32]] = &[&[0, 1], &[0, 1, 2], &[1, 2], &[2, 3], &[0, 3]];
        let (mut r, mut c) = (vec![], vec![]);
        for (u, js) in rows.iter().enumerate() {
            for &j in *js {
                r.push(u as u32);
                c.push(j);
            }
        }
        let ui = Csr::from_triplets(5, 4, &r, &c, &vec![1.0; r.len()]);
        // G + λI with λ = 1: diag (3,3,3,2) + 1, off-diagonal co-counts.
        let lambda = 1.0;
        let b = ease_reference(&ui, lambda);
        let g = ease(&ui, lambda as f32, 3, &pool(), &mut ok).unwrap();
        for i in 0..4u32 {
            let (js, ws) = g.row(i);
            for (&j, &w) in js.iter().zip(ws) {
                assert!((w as f64 - b[i as usize * 4 + j as usize]).abs() < 1e-5, "B[{i}][{j}] = {w}");
            }
            assert_eq!(js.len(), 3);
        }
        // By hand (exact fractions): G+I = [[4,2,1,1],[2,4,2,0],[1,2,4,1],[1,0,1,3]], e.g.
        // P_01 = −3/14, P_11 = 13/28, so B_01 = 6/13. Full B (rows): [0, 6/13, −1/8, 1/3],
        // [9/16, 0, 9/16, −1/3], [−1/8, 6/13, 0, 1/3], [3/8, −4/13, 3/8, 0]. Rows sorted by
        // weight, ties to the lower item.
        let want: [&[(u32, f32)]; 4] = [
            &[(1, 6.0 / 13.0), (3, 1.0 / 3.0), (2, -1.0 / 8.0)],
            &[(0, 9.0 / 16.0), (2, 9.0 / 16.0), (3, -1.0 / 3.0)],
            &[(1, 6.0 / 13.0), (3, 1.0 / 3.0), (0, -1.0 / 8.0)],
            &[(0, 3.0 / 8.0), (2, 3.0 / 8.0), (1, -4.0 / 13.0)],
        ];
        let check = |g: &ItemGraph, want: &[&[(u32, f32)]]| {
            for (i, w) in want.iter().enumerate() {
                let (js, ws) = g.row(i as u32);
                assert_eq!(js, w.iter().map(|x| x.0).collect::<Vec<_>>(), "row {i}");
                for (a, b) in ws.iter().zip(w.iter()) {
                    assert!((a - b.1).abs() < 1e-6, "row {i}: {a} vs {}", b.1);
                }
            }
        };
        check(&g, &want);
        // k = 2 keeps the two largest |B_ij|, which here drops each row's negative (row 3:
        // |−4/13| < 3/8); k = 1 breaks row 3's tie to item 0.
        let g2 = ease(&ui, 1.0, 2, &pool(), &mut ok).unwrap();
        check(
            &g2,
            &[&[(1, 6.0 / 13.0), (3, 1.0 / 3.0)], &[(0, 9.0 / 16.0), (2, 9.0 / 16.0)], &[(1, 6.0 / 13.0), (3, 1.0 / 3.0)], &[(0, 3.0 / 8.0), (2, 3.0 / 8.0)]],
        );
        let g1 = ease(&ui, 1.0, 1, &pool(), &mut ok).unwrap();
        assert_eq!(g1.row(3).0, &[0]);
    }

    #[test]
    fn sweep_inverse_matches_f64_across_blocks() {
        // n not a multiple of the block, tile or quad; blocks of 8 give many pivot steps.
        for (n, nb) in [(1, 8), (5, 8), (37, 8), (70, 16), (131, 128), (150, 128)] {
            let mut rng = Rng::new(n as u64);
            let x: Vec<f64> = (0..n * (n + 3)).map(|_| rng.normal()).collect();
            let mut spd = vec![0f64; n * n];
            for i in 0..n {
                for j in 0..n {
                    spd[i * n + j] = (0..n + 3).map(|t| x[i * (n + 3) + t] * x[j * (n + 3) + t]).sum::<f64>();
                }
                spd[i * n + i] += 1.0;
            }
            let reference = inverse_f64(&spd, n);
            let mut a: Vec<f32> = spd.iter().map(|v| *v as f32).collect();
            sweep_inverse(&mut a, n, nb, &pool(), &mut ok).unwrap();
            let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
            for i in 0..n {
                for j in 0..=i {
                    let got = -(a[i * n + j] as f64);
                    assert!((got - reference[i * n + j]).abs() <= 2e-4 * scale, "n {n} nb {nb} [{i}][{j}]: {got} vs {}", reference[i * n + j]);
                }
            }
        }
    }

    #[test]
    fn ease_agrees_with_f64_on_a_skewed_catalogue() {
        // 300 items: three pivot blocks, a partial tile and quad.
        let ui = random_ui(400, 301, 0.3, 11);
        let b = ease_reference(&ui, 50.0);
        let n = ui.cols;
        let g = ease(&ui, 50.0, n, &pool(), &mut ok).unwrap();
        let max = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let mut worst = 0f64;
        for i in 0..n as u32 {
            let (js, ws) = g.row(i);
            for (&j, &w) in js.iter().zip(ws) {
                worst = worst.max((w as f64 - b[i as usize * n + j as usize]).abs() / max);
            }
            let nonzero = (0..n).filter(|&j| j != i as usize && b[i as usize * n + j].abs() > 1e-6 * max).count();
            assert!(js.len() >= nonzero, "row {i}: {} edges, {nonzero} non-zero in f64", js.len());
        }
        assert!(worst < 1e-5, "max error {worst:e} of the largest weight");
        // The kept top-10 (by |B_ij|) agree with f64.
        let g10 = ease(&ui, 50.0, 10, &pool(), &mut ok).unwrap();
        let mut same = 0;
        for i in 0..n {
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i && b[i * n + j] != 0.0).collect();
            order.sort_by(|&x, &y| b[i * n + y].abs().total_cmp(&b[i * n + x].abs()).then(x.cmp(&y)));
            order.truncate(10);
            order.sort_unstable();
            let mut got: Vec<usize> = g10.row(i as u32).0.iter().map(|&j| j as usize).collect();
            got.sort_unstable();
            same += (got == order) as usize;
        }
        assert!(same >= n * 95 / 100, "{same} of {n} rows keep the same top 10 as f64");
        eprintln!("EASE f32 vs f64: max error {worst:e} of the largest weight, {same}/{n} identical top-10 sets");
    }

    #[test]
    fn popularity_discount_divides_and_resorts() {
        // Users per item: 0 → 4, 1 → 1, 2 → 2.
        let ui = Csr::from_triplets(4, 3, &[0, 1, 2, 3, 0, 1, 2], &[0, 0, 0, 0, 1, 2, 2], &[1.0; 7]);
        let g0 = ItemGraph::from_parts(3, vec![0, 2, 3, 5].into(), vec![2, 1, 0, 0, 1].into(), vec![1.0, -0.5, 4.0, 2.0, 1.0].into()).unwrap();
        let mut g = g0.clone();
        discount_popular(&mut g, &ui, 0.0);
        assert_eq!(g, g0);
        discount_popular(&mut g, &ui, 1.0);
        assert_eq!(g.row(0), (&[2u32, 1][..], &[0.5f32, -0.5][..]));
        assert_eq!(g.row(1), (&[0u32][..], &[1.0f32][..]));
        // 2.0 / 4 falls below 1.0 / 1: the row is re-sorted.
        assert_eq!(g.row(2), (&[1u32, 0][..], &[1.0f32, 0.5][..]));
        let (p, n, w) = (g.ptr.clone(), g.nbr.clone(), g.weight.clone());
        assert!(ItemGraph::from_parts(3, p, n, w).is_ok());
    }

    #[test]
    fn rp3beta_hand_computed() {
        // Users: 0:{0,1}, 1:{1,2}, 2:{0,1,2}. Degrees: users 2,2,3; items 0:2, 1:3, 2:2.
        let ui = Csr::from_triplets(3, 3, &[0, 0, 1, 1, 2, 2, 2], &[0, 1, 1, 2, 0, 1, 2], &[1.0; 7]);
        // α = 1, β = 0.5. W_01 = Σ_{u∈{0,2}} (1/2)·(1/deg u) / √3 = (1/2·1/2 + 1/2·1/3)/√3.
        // W_02 = (1/2·1/3)/√2 (only user 2). W_10 = (1/3·1/2 + 1/3·1/3)/√2, W_12 = (1/3·1/2 +
        // 1/3·1/3)/√2, W_21 = (1/2·1/2 + 1/2·1/3)/√3, W_20 = (1/2·1/3)/√2.
        let g = rp3beta(&ui, 1.0, 0.5, 2, &pool(), &mut ok).unwrap();
        let (s2, s3) = (2f32.sqrt(), 3f32.sqrt());
        let w01 = (0.25 + 1.0 / 6.0) / s3;
        let w02 = (1.0 / 6.0) / s2;
        let w10 = (1.0 / 6.0 + 1.0 / 9.0) / s2;
        assert_eq!(g.row(0).0, &[1, 2]);
        assert!((g.row(0).1[0] - w01).abs() < 1e-6 && (g.row(0).1[1] - w02).abs() < 1e-6);
        // Row 1: a tie between 0 and 2 breaks to the lower item.
        assert_eq!(g.row(1).0, &[0, 2]);
        assert!((g.row(1).1[0] - w10).abs() < 1e-6 && (g.row(1).1[1] - w10).abs() < 1e-6);
        assert_eq!(g.row(2).0, &[1, 0]);
        // α = 0 makes every transition 1: W_ij = co-count / pop_j^β; β = 0 is plain co-counts.
        let g = rp3beta(&ui, 0.0, 0.0, 2, &pool(), &mut ok).unwrap();
        assert_eq!(g.row(1), (&[0u32, 2][..], &[2.0f32, 2.0][..]));
        // k = 1 keeps the best only.
        let g = rp3beta(&ui, 1.0, 0.5, 1, &pool(), &mut ok).unwrap();
        assert_eq!(&g.ptr[..], &[0, 1, 2, 3]);
    }

    #[test]
    fn rp3beta_matches_dense_formula() {
        let ui = random_ui(200, 120, 0.4, 3);
        let (alpha, beta) = (0.7f64, 0.3f64);
        let n = ui.cols;
        let iu = ui.transpose();
        let g = rp3beta(&ui, alpha as f32, beta as f32, n, &pool(), &mut ok).unwrap();
        for i in 0..n {
            let mut w = vec![0f64; n];
            let di = iu.row(i).0.len() as f64;
            for &u in iu.row(i).0 {
                let du = ui.row(u as usize).0.len() as f64;
                for &j in ui.row(u as usize).0 {
                    w[j as usize] += (1.0 / di).powf(alpha) * (1.0 / du).powf(alpha);
                }
            }
            let (js, ws) = g.row(i as u32);
            let expected = (0..n).filter(|&j| j != i && w[j] > 0.0).count();
            assert_eq!(js.len(), expected);
            for (&j, &x) in js.iter().zip(ws) {
                let want = w[j as usize] / (iu.row(j as usize).0.len() as f64).powf(beta);
                assert!((x as f64 - want).abs() < 1e-5 * want.max(1e-3), "W[{i}][{j}] {x} vs {want}");
            }
        }
        // Threads do not change the result.
        let one = crate::als::pool(1, None).unwrap();
        assert_eq!(rp3beta(&ui, 0.7, 0.3, 20, &one, &mut ok).unwrap(), rp3beta(&ui, 0.7, 0.3, 20, &pool(), &mut ok).unwrap());
    }

    #[test]
    fn added_scores_are_the_scores_and_name_the_posts_written() {
        let pool = crate::als::pool(2, None).unwrap();
        let (r, c): (Vec<u32>, Vec<u32>) = (0..200u32).map(|k| (k % 40, (k * 7 + k / 40) % 60)).unzip();
        let ui = Csr::from_triplets(40, 60, &r, &c, &vec![1.0; r.len()]);
        let g = rp3beta(&ui, 0.8, 0.3, 10, &pool, &mut || Ok(())).unwrap();
        let h = [(3u32, 1.0f32), (17, 1.0), (3, 1.0), (59, 1.0)];
        let (mut a, mut b) = (vec![0f32; 60], vec![0f32; 60]);
        g.scores(&h, &mut a);
        let touched = g.add_scores(&h, &mut b);
        assert_eq!(a, b);
        let mut once = touched.clone();
        once.sort_unstable();
        once.dedup();
        assert!(once.len() == touched.len() && !touched.is_empty());
        assert!((0..60u32).all(|j| once.binary_search(&j).is_ok() || b[j as usize] == 0.0));
    }

    #[test]
    fn scores_and_evidence_agree() {
        let ui = random_ui(300, 80, 0.5, 7);
        let p = pool();
        for g in [ease(&ui, 20.0, 15, &p, &mut ok).unwrap(), rp3beta(&ui, 0.8, 0.3, 15, &p, &mut ok).unwrap()] {
            let history: Vec<u32> = vec![0, 3, 9, 27, 40, 79];
            let mut out = vec![f32::NAN; 80];
            g.scores(&history.iter().map(|&i| (i, 1.0)).collect::<Vec<_>>(), &mut out);
            for j in 0..80u32 {
                let ev = g.evidence(&history, j);
                let sum: f32 = ev.iter().map(|e| e.1).sum();
                assert!((sum - out[j as usize]).abs() < 1e-5, "item {j}: {sum} vs {}", out[j as usize]);
                assert!(ev.windows(2).all(|w| w[0].1 >= w[1].1));
                assert!(ev.iter().all(|e| history.contains(&e.0)));
            }
            // Weights scale linearly; out-of-range items and a short `out` are ignored.
            let mut twice = vec![0f32; 80];
            g.scores(&history.iter().map(|&i| (i, 2.0)).chain([(1_000_000, 1.0)]).collect::<Vec<_>>(), &mut twice);
            assert!(twice.iter().zip(&out).all(|(a, b)| (a - 2.0 * b).abs() < 1e-5));
            let mut short = vec![0f32; 5];
            g.scores(&[(0, 1.0)], &mut short);
            assert!(g.evidence(&[1_000_000], 1).is_empty());
            // Round trip through the validating constructor.
            let back = ItemGraph::from_parts(g.items, g.ptr.clone(), g.nbr.clone(), g.weight.clone()).unwrap();
            assert_eq!(back, g);
            assert_eq!(g.bytes(), (g.items + 1 + 2 * g.nnz()) * 4);
        }
    }

    #[test]
    fn from_parts_rejects_bad_input() {
        let good = || (3usize, vec![0u32, 2, 2, 3], vec![1u32, 2, 0], vec![0.5f32, 0.25, 1.0]);
        let (n, p, j, w) = good();
        assert!(ItemGraph::from_parts(n, p.into(), j.into(), w.into()).is_ok());
        type Parts = (usize, Vec<u32>, Vec<u32>, Vec<f32>);
        let cases: Vec<Parts> = vec![
            (3, vec![0, 2, 3], vec![1, 2, 0], vec![0.5, 0.25, 1.0]),         // ptr too short
            (3, vec![1, 2, 2, 3], vec![1, 2, 0], vec![0.5, 0.25, 1.0]),      // ptr[0] != 0
            (3, vec![0, 2, 1, 3], vec![1, 2, 0], vec![0.5, 0.25, 1.0]),      // decreasing
            (3, vec![0, 2, 2, 4], vec![1, 2, 0], vec![0.5, 0.25, 1.0]),      // past the end
            (3, vec![0, 2, 2, 2], vec![1, 2, 0], vec![0.5, 0.25, 1.0]),      // short of the end
            (3, vec![0, 2, 2, 3], vec![1, 3, 0], vec![0.5, 0.25, 1.0]),      // neighbour >= items
            (3, vec![0, 2, 2, 3], vec![1, 2, 0], vec![0.5, 0.25]),           // lengths differ
            (3, vec![0, 2, 2, 3], vec![1, 2, 0], vec![f32::NAN, 0.25, 1.0]), // NaN
            (3, vec![0, 2, 2, 3], vec![1, 2, 0], vec![0.5, f32::INFINITY, 1.0]),
            (3, vec![0, 2, 2, 3], vec![1, 2, 0], vec![0.25, 0.5, 1.0]), // unsorted row
            (usize::MAX, vec![0], vec![], vec![]),                      // absurd size
            (0, vec![], vec![], vec![]),                                // empty ptr
        ];
        for (i, (n, p, j, w)) in cases.into_iter().enumerate() {
            assert!(matches!(ItemGraph::from_parts(n, p.into(), j.into(), w.into()), Err(CoreError::InvalidOption { .. })), "case {i}");
        }
        assert!(ItemGraph::from_parts(0, vec![0].into(), vec![].into(), vec![].into()).is_ok());
    }

    #[test]
    fn options_empty_input_and_cancel() {
        let p = pool();
        let ui = random_ui(50, 40, 0.5, 1);
        assert!(matches!(ease(&ui, 0.0, 10, &p, &mut ok), Err(CoreError::InvalidOption { .. })));
        assert!(matches!(ease(&ui, f32::NAN, 10, &p, &mut ok), Err(CoreError::InvalidOption { .. })));
        assert!(matches!(ease(&ui, 10.0, 0, &p, &mut ok), Err(CoreError::InvalidOption { .. })));
        assert!(matches!(rp3beta(&ui, -1.0, 0.3, 10, &p, &mut ok), Err(CoreError::InvalidOption { .. })));
        assert!(matches!(rp3beta(&ui, 0.5, f32::INFINITY, 10, &p, &mut ok), Err(CoreError::InvalidOption { .. })));
        let empty = Csr::from_triplets(3, 4, &[], &[], &[]);
        assert_eq!(ease(&empty, 10.0, 5, &p, &mut ok), Err(CoreError::EmptyInput));
        assert_eq!(rp3beta(&empty, 0.5, 0.3, 5, &p, &mut ok), Err(CoreError::EmptyInput));
        // k beyond the catalogue is clamped; one-item catalogues have no edges.
        assert!(ease(&ui, 10.0, 1000, &p, &mut ok).unwrap().row(0).0.len() <= 39);
        let one = Csr::from_triplets(2, 1, &[0, 1], &[0, 0], &[1.0, 1.0]);
        assert_eq!(ease(&one, 1.0, 5, &p, &mut ok).unwrap().nnz(), 0);
        assert_eq!(rp3beta(&one, 1.0, 0.5, 5, &p, &mut ok).unwrap().nnz(), 0);
        // A cancel seen on the second check stops both builds.
        for build in [0, 1] {
            let mut calls = 0;
            let mut cancel = || {
                calls += 1;
                if calls >= 2 {
                    Err(CoreError::Canceled)
                } else {
                    Ok(())
                }
            };
            let r = if build == 0 { ease(&ui, 10.0, 5, &p, &mut cancel) } else { rp3beta(&ui, 0.5, 0.3, 5, &p, &mut cancel) };
            assert_eq!(r, Err(CoreError::Canceled));
        }
        // Small catalogues keep more neighbours, within the edge budget; large ones keep k.
        assert_eq!(ease_neighbours(100, DEFAULT_EASE_EDGES, 1_682), 1_246);
        assert_eq!(ease_neighbours(100, DEFAULT_EASE_EDGES, 10_000), 209);
        assert_eq!(ease_neighbours(100, DEFAULT_EASE_EDGES, 20_000), 104);
        assert_eq!(ease_neighbours(100, DEFAULT_EASE_EDGES, 1_000_000), 100);
        assert_eq!(ease_neighbours(100, 0, 1_682), 100);
        assert_eq!(ease_neighbours(7, DEFAULT_EASE_EDGES, 0), DEFAULT_EASE_EDGES);
        // The documented figure: 20K items ≈ 1.6 GB.
        assert!((1_600_000_000..1_650_000_000).contains(&ease_bytes(20_000)));
    }
}
