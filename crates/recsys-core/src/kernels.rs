//! Dense f32 kernels. Written as `#[inline(always)]` generics over `FMA` so that callers can
//! compile one copy for plain x86-64 and one under `#[target_feature(enable = "avx2,fma")]`,
//! picked at run time: a portable .so that still runs at AVX2 speed where the CPU has it.

#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Dot product with 16 independent accumulators (f32 adds are not reassociated by the
/// compiler, so the split is what lets it vectorise).
#[inline(always)]
pub fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..16 {
            acc[j] = madd::<FMA>(x[j], y[j], acc[j]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail = madd::<FMA>(*x, *y, tail);
    }
    for j in 0..8 {
        acc[j] += acc[j + 8];
    }
    for j in 0..4 {
        acc[j] += acc[j + 4];
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// y += a * x
#[inline(always)]
pub fn axpy<const FMA: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = madd::<FMA>(a, *xi, *yi);
    }
}

/// True when the AVX2+FMA copies may be used.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Dot product dispatched at run time, for code outside hot loops.
pub fn dot_dispatch(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports the enabled features (checked above).
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot::<false>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot::<true>(a, b)
}

/// Scores every row of a row-major `rows × f` matrix against `q`: out[i] = rows[i] · q.
pub fn score_all(rows: &[f32], f: usize, q: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: features checked at run time.
            unsafe { score_all_avx2(rows, f, q, out) };
            return;
        }
    }
    score_all_impl::<false>(rows, f, q, out)
}

#[inline(always)]
fn score_all_impl<const FMA: bool>(rows: &[f32], f: usize, q: &[f32], out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(f)) {
        *o = dot::<FMA>(r, q);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn score_all_avx2(rows: &[f32], f: usize, q: &[f32], out: &mut [f32]) {
    score_all_impl::<true>(rows, f, q, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_for_all_lengths() {
        for n in 0..70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot::<false>(&a, &b) as f64 - naive).abs() < 1e-4);
            assert!((dot_dispatch(&a, &b) as f64 - naive).abs() < 1e-4);
        }
    }

    #[test]
    fn score_all_and_axpy() {
        let rows = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = vec![0.0; 2];
        score_all(&rows, 3, &[1.0, 0.0, -1.0], &mut out);
        assert_eq!(out, vec![-2.0, -2.0]);
        let mut y = vec![1.0, 1.0];
        axpy::<false>(2.0, &[1.0, -1.0], &mut y);
        assert_eq!(y, vec![3.0, -1.0]);
    }
}

/// Row-major factors quantised to i8 with one scale per row (x ≈ scale · q, |q| ≤ 127): a
/// quarter of the bytes of f32, for the full-catalogue scan at serving time. Callers re-score
/// the best candidates exactly, so only the candidate pool, not the answer, is approximate.
#[derive(Clone, Debug)]
pub struct QuantizedRows {
    pub f: usize,
    pub data: crate::buf::Buf<i8>,
    pub scale: crate::buf::Buf<f32>,
}

fn quantize(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        out.iter_mut().for_each(|o| *o = 0);
        return 0.0;
    }
    let s = max / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / s).round().clamp(-127.0, 127.0) as i8;
    }
    s
}

impl QuantizedRows {
    pub fn new(rows: &[f32], f: usize) -> QuantizedRows {
        let n = rows.len() / f.max(1);
        let mut data = vec![0i8; n * f];
        let scale = rows.chunks_exact(f).zip(data.chunks_exact_mut(f)).map(|(r, q)| quantize(r, q)).collect();
        QuantizedRows { f, data: data.into(), scale }
    }

    /// Appends one row (`f` values).
    pub fn push(&mut self, row: &[f32]) {
        let start = self.data.len();
        self.data.resize(start + self.f, 0);
        self.scale.push(quantize(row, &mut self.data[start..]));
    }

    /// out[i] ≈ row_i · q.
    pub fn scores(&self, q: &[f32], out: &mut [f32]) {
        let mut qq = vec![0i8; self.f];
        let sq = quantize(q, &mut qq);
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2_fma() {
                // SAFETY: features checked at run time.
                unsafe { self.scores_avx2(&qq, sq, out) };
                return;
            }
        }
        self.scores_impl(&qq, sq, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores_avx2(&self, qq: &[i8], sq: f32, out: &mut [f32]) {
        self.scores_impl(qq, sq, out)
    }

    #[inline(always)]
    fn scores_impl(&self, qq: &[i8], sq: f32, out: &mut [f32]) {
        for ((o, row), s) in out.iter_mut().zip(self.data.chunks_exact(self.f)).zip(&self.scale) {
            // Integer sums may be reassociated, so this vectorises (sign-extend + pmaddwd).
            let d: i32 = row.iter().zip(qq).map(|(a, b)| *a as i32 * *b as i32).sum();
            *o = d as f32 * s * sq;
        }
    }
}

#[cfg(test)]
mod quantized_tests {
    use super::*;
    use crate::rng::Rng;
    use crate::topk::{Scored, TopK};

    #[test]
    fn pooled_quantised_scan_then_exact_rescore_equals_exact_top_k() {
        let (n, f, k) = (20_000, 64, 20);
        let mut rng = Rng::new(5);
        let rows: Vec<f32> = (0..n * f).map(|_| rng.normal() as f32).collect();
        let qz = QuantizedRows::new(&rows, f);
        for trial in 0..20 {
            let q: Vec<f32> = (0..f).map(|_| rng.normal() as f32 + (trial % 3) as f32 * 0.1).collect();
            let mut exact = vec![0f32; n];
            score_all(&rows, f, &q, &mut exact);
            let mut approx = vec![0f32; n];
            qz.scores(&q, &mut approx);
            let top = |s: &[f32], kk: usize| {
                let mut t = TopK::new(kk);
                s.iter().enumerate().for_each(|(i, &v)| t.push(Scored { score: v, id: i as i64, index: i as u32 }));
                t.into_sorted()
            };
            let pool = top(&approx, k * 8 + 64);
            let mut rescored: Vec<Scored> = pool.iter().map(|c| Scored { score: exact[c.index as usize], ..*c }).collect();
            rescored.sort_by(crate::topk::rank_order);
            rescored.truncate(k);
            assert_eq!(rescored, top(&exact, k), "trial {trial}");
        }
    }
}
