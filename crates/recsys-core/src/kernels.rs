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

/// True when the AVX-512 VNNI copy of the int8 scan may be used.
#[inline]
pub fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("avx512vnni")
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
            if has_avx512_vnni() {
                // SAFETY: features checked at run time.
                unsafe { self.scores_vnni(&qq, sq, out) };
                return;
            }
            if has_avx2_fma() {
                // SAFETY: features checked at run time.
                unsafe { self.scores_avx2(&qq, sq, out) };
                return;
            }
        }
        self.scores_impl(&qq, sq, out)
    }

    /// [`QuantizedRows::scores`] with AVX-512 VNNI: 64 bytes of a row against 64 of the query
    /// in one instruction (`vpdpbusd`, unsigned × signed bytes into 32-bit sums). A row's
    /// signed bytes are made unsigned by adding 128 (flipping the top bit), and 128 · Σ q is
    /// taken off again: integer arithmetic, so every sum, and every score, is the one
    /// [`QuantizedRows::scores_impl`] computes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn scores_vnni(&self, qq: &[i8], sq: f32, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let f = self.f;
        if f == 0 || qq.len() != f {
            return self.scores_impl(qq, sq, out);
        }
        // The chunks of 64 bytes in a row, the last one masked to what is left.
        let chunks = f.div_ceil(64);
        let mask = |c: usize| -> u64 {
            let len = (f - c * 64).min(64);
            if len == 64 {
                u64::MAX
            } else {
                (1u64 << len) - 1
            }
        };
        // SAFETY: a masked load reads only the bytes its mask selects, all inside the slice
        // (chunk c covers c·64 .. c·64 + len ≤ f); the others read as 0.
        let q: Vec<__m512i> = (0..chunks).map(|c| unsafe { _mm512_maskz_loadu_epi8(mask(c), qq.as_ptr().add(c * 64)) }).collect();
        // Σ (r + 128) · q = Σ r · q + 128 · Σ q; bytes outside the row have q = 0.
        let bias: i32 = 128 * qq.iter().map(|&b| b as i32).sum::<i32>();
        let flip = _mm512_set1_epi8(i8::MIN);
        for ((o, row), s) in out.iter_mut().zip(self.data.chunks_exact(f)).zip(self.scale.iter()) {
            let mut acc = _mm512_setzero_si512();
            for (c, qc) in q.iter().enumerate() {
                // SAFETY: as for the query: the row has f bytes and the mask stays inside them.
                let r = unsafe { _mm512_maskz_loadu_epi8(mask(c), row.as_ptr().add(c * 64)) };
                acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(r, flip), *qc);
            }
            let d = _mm512_reduce_add_epi32(acc) - bias;
            *o = d as f32 * s * sq;
        }
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
    fn every_copy_of_the_int8_scan_gives_the_same_scores() {
        // Row lengths below, at and around the 64-byte chunk, and extreme bytes (±127).
        let mut rng = Rng::new(9);
        for f in [1usize, 7, 32, 63, 64, 65, 100, 128, 130] {
            let n = 257;
            let mut rows: Vec<f32> = (0..n * f).map(|_| rng.normal() as f32).collect();
            rows[..f].iter_mut().for_each(|x| *x = 1.0);
            rows[f..2 * f].iter_mut().enumerate().for_each(|(j, x)| *x = if j % 2 == 0 { -1.0 } else { 1.0 });
            let qz = QuantizedRows::new(&rows, f);
            let q: Vec<f32> = (0..f).map(|j| if j % 3 == 0 { -2.0 } else { rng.normal() as f32 }).collect();
            let mut qq = vec![0i8; f];
            let sq = quantize(&q, &mut qq);
            let mut plain = vec![0f32; n];
            qz.scores_impl(&qq, sq, &mut plain);
            let mut dispatched = vec![0f32; n];
            qz.scores(&q, &mut dispatched);
            assert_eq!(plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), dispatched.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "f = {f}");
            #[cfg(target_arch = "x86_64")]
            {
                let mut v = vec![0f32; n];
                if has_avx512_vnni() {
                    // SAFETY: features checked at run time.
                    unsafe { qz.scores_vnni(&qq, sq, &mut v) };
                    assert_eq!(plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "vnni, f = {f}");
                }
                if has_avx2_fma() {
                    // SAFETY: features checked at run time.
                    unsafe { qz.scores_avx2(&qq, sq, &mut v) };
                    assert_eq!(plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "avx2, f = {f}");
                }
            }
        }
    }

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
