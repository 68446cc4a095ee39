//! An inverted-file partition of the item factors for exact top-k by inner product without
//! scanning the whole catalogue.
//!
//! At train time the items are clustered by k-means (√n clusters, trained on a sample, every
//! item then assigned to its nearest centroid). Each cluster keeps its centroid μ and radius r
//! (the largest distance of a member from μ). For a query x every member y of a cluster scores
//! x·y = x·μ + x·(y − μ) ≤ x·μ + ‖x‖·r, so clusters are visited best bound first and the walk
//! stops once a cluster's bound is below the k-th best score found: the result is the exact
//! top-k (and the exact maximum), not an approximation. On clustered factors (a social app's
//! communities and topics) a call reads a few percent of the items.
use crate::kernels::dot_dispatch;
use crate::topk::{Scored, TopK};
use crate::CoreError;
use rayon::prelude::*;

/// Catalogues smaller than this are scanned whole (the partition would not pay for itself).
pub const MIN_ITEMS: usize = 10_000;
/// k-means rounds over the sample.
const ROUNDS: usize = 8;
/// Sample points per cluster used to train the centroids.
const SAMPLE_PER_CLUSTER: usize = 64;
/// Relative slack on every bound, so that f32 rounding of the centroid dot and the radius can
/// never prune a cluster holding a qualifying item.
const SLACK: f32 = 1e-4;

/// The partition of the first `items` rows of a factor matrix.
#[derive(Debug)]
pub struct Ivf {
    pub f: usize,
    /// Rows covered (rows beyond, e.g. posts placed after training, are scanned directly).
    pub items: usize,
    /// Cluster centroids, row-major (clusters × f).
    pub centroids: crate::buf::Buf<f32>,
    /// Per cluster: the largest distance of a member from its centroid (with slack).
    pub radius: crate::buf::Buf<f32>,
    /// Item rows grouped by cluster; cluster c holds `order[offsets[c]..offsets[c + 1]]`.
    pub order: crate::buf::Buf<u32>,
    pub offsets: crate::buf::Buf<u32>,
    /// Per covered row, its cluster (derived from `order` on first use).
    cluster_of: std::sync::OnceLock<Vec<u16>>,
}

/// Most clusters a partition may have: a row's cluster is kept as a u16 (training makes at
/// most 4,096).
const MAX_CLUSTERS: usize = u16::MAX as usize + 1;

fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The centroid nearest to `y`: argmin ‖y − μ‖² = argmax y·μ − ‖μ‖²/2 (`half_norms`), so the
/// scan is one SIMD dot product per centroid.
fn nearest(y: &[f32], centroids: &[f32], half_norms: &[f32], f: usize) -> u32 {
    let mut best = (f32::NEG_INFINITY, 0u32);
    for (c, (mu, h)) in centroids.chunks_exact(f).zip(half_norms).enumerate() {
        let v = dot_dispatch(y, mu) - h;
        if v > best.0 {
            best = (v, c as u32);
        }
    }
    best.1
}

fn half_norms(centroids: &[f32], f: usize) -> Vec<f32> {
    centroids.chunks_exact(f).map(|mu| 0.5 * dot_dispatch(mu, mu)).collect()
}

impl Ivf {
    /// Partitions the `n = y.len() / f` rows of `y`; None below [`MIN_ITEMS`] rows. `check`
    /// runs between rounds (cancel).
    pub fn build(y: &[f32], f: usize, pool: &rayon::ThreadPool, check: &mut dyn FnMut() -> Result<(), CoreError>) -> Result<Option<Ivf>, CoreError> {
        let n = y.len() / f.max(1);
        if n < MIN_ITEMS || f == 0 {
            return Ok(None);
        }
        let clusters = ((n as f64).sqrt() as usize).clamp(16, 4096);
        let row = |i: usize| &y[i * f..(i + 1) * f];
        // A deterministic strided sample; the first centroids are spread over it.
        let sample_n = (clusters * SAMPLE_PER_CLUSTER).min(n);
        let sample: Vec<usize> = (0..sample_n).map(|s| (s as u64 * n as u64 / sample_n as u64) as usize).collect();
        let mut centroids: Vec<f32> = (0..clusters).flat_map(|c| row(sample[c * sample_n / clusters]).to_vec()).collect();
        for _ in 0..ROUNDS {
            let h = half_norms(&centroids, f);
            let assign: Vec<u32> = pool.install(|| sample.par_iter().map(|&i| nearest(row(i), &centroids, &h, f)).collect());
            let mut sum = vec![0f64; clusters * f];
            let mut count = vec![0usize; clusters];
            for (&i, &c) in sample.iter().zip(&assign) {
                count[c as usize] += 1;
                sum[c as usize * f..(c as usize + 1) * f].iter_mut().zip(row(i)).for_each(|(s, v)| *s += *v as f64);
            }
            for c in 0..clusters {
                // An empty cluster keeps its centroid (it may still win items in the final pass).
                if count[c] > 0 {
                    for j in 0..f {
                        centroids[c * f + j] = (sum[c * f + j] / count[c] as f64) as f32;
                    }
                }
            }
            check()?;
        }
        let h = half_norms(&centroids, f);
        let assign: Vec<u32> = pool.install(|| (0..n).into_par_iter().map(|i| nearest(row(i), &centroids, &h, f)).collect());
        check()?;
        Ok(Some(Ivf::from_assignment(y, f, centroids, &assign)))
    }

    /// The partition given each row's cluster (radii computed here).
    fn from_assignment(y: &[f32], f: usize, centroids: Vec<f32>, assign: &[u32]) -> Ivf {
        let clusters = centroids.len() / f;
        let mut offsets = vec![0u32; clusters + 1];
        for &c in assign {
            offsets[c as usize + 1] += 1;
        }
        for c in 0..clusters {
            offsets[c + 1] += offsets[c];
        }
        let mut next: Vec<u32> = offsets[..clusters].to_vec();
        let mut order = vec![0u32; assign.len()];
        let mut radius = vec![0f32; clusters];
        for (i, &c) in assign.iter().enumerate() {
            let c = c as usize;
            order[next[c] as usize] = i as u32;
            next[c] += 1;
            let d = dist2(&y[i * f..(i + 1) * f], &centroids[c * f..(c + 1) * f]).sqrt();
            radius[c] = radius[c].max(d);
        }
        radius.iter_mut().for_each(|r| *r = *r * (1.0 + SLACK) + 1e-6);
        Ivf::from_parts(f, assign.len(), centroids.into(), radius.into(), order.into(), offsets.into())
    }

    /// A partition from its stored arrays (check them with [`Ivf::is_consistent`]).
    pub fn from_parts(
        f: usize,
        items: usize,
        centroids: crate::buf::Buf<f32>,
        radius: crate::buf::Buf<f32>,
        order: crate::buf::Buf<u32>,
        offsets: crate::buf::Buf<u32>,
    ) -> Ivf {
        Ivf { f, items, centroids, radius, order, offsets, cluster_of: Default::default() }
    }

    /// The rows of cluster `c`.
    fn members(&self, c: usize) -> &[u32] {
        &self.order[self.offsets[c] as usize..self.offsets[c + 1] as usize]
    }

    /// Whether the stored arrays fit together (a damaged model is refused, never misread).
    pub fn is_consistent(&self, rows: usize) -> bool {
        let clusters = self.radius.len();
        self.f > 0
            && clusters <= MAX_CLUSTERS
            && self.centroids.len() == clusters * self.f
            && self.offsets.len() == clusters + 1
            && self.offsets.first() == Some(&0)
            && self.offsets.windows(2).all(|w| w[0] <= w[1])
            && self.offsets.last().map(|&x| x as usize) == Some(self.order.len())
            && self.order.len() == self.items
            && self.items <= rows
            && self.order.iter().all(|&i| (i as usize) < self.items)
    }

    pub fn bytes(&self) -> usize {
        self.centroids.bytes() + self.radius.bytes() + self.order.bytes() + self.offsets.bytes()
    }

    /// The exact best `k` rows of `y` (all rows, also those beyond [`Ivf::items`]) by
    /// `score(x·y)` among the rows `allowed`, best first, ties to the lower id; and the largest
    /// x·y over all rows, allowed or not. `score` must be non-decreasing (it maps the inner
    /// product to the ranked score, e.g. a clipped scale).
    pub fn top(&self, y: &[f32], ids: &[i64], x: &[f32], k: usize, allowed: &dyn Fn(usize) -> bool, score: &dyn Fn(f32) -> f32) -> (Vec<Scored>, f32) {
        let f = self.f;
        let n = y.len() / f;
        let row = |i: usize| &y[i * f..(i + 1) * f];
        let mut top = TopK::new(k);
        let mut max = f32::NEG_INFINITY;
        let visit = |i: usize, top: &mut TopK, max: &mut f32| {
            let d = dot_dispatch(row(i), x);
            *max = max.max(d);
            if allowed(i) {
                let s = score(d);
                if s >= top.threshold() {
                    top.push(Scored { score: s, id: ids[i], index: i as u32 });
                }
            }
        };
        // Rows appended after the partition was built: scanned directly.
        for i in self.items.min(n)..n {
            visit(i, &mut top, &mut max);
        }
        let xn = dot_dispatch(x, x).sqrt();
        let mut bounds: Vec<(f32, u32)> = self
            .centroids
            .chunks_exact(f)
            .zip(self.radius.iter())
            .enumerate()
            .filter(|(c, _)| self.offsets[*c] < self.offsets[*c + 1])
            .map(|(c, (mu, r))| {
                let b = dot_dispatch(mu, x) + xn * r;
                (b + b.abs() * SLACK + 1e-6, c as u32)
            })
            .collect();
        bounds.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        for (bound, c) in bounds {
            // Every member scores at most `bound`: nothing below it can enter the top k or
            // raise the maximum any more.
            if bound < max && (k == 0 || score(bound) < top.threshold()) {
                break;
            }
            let c = c as usize;
            for &i in self.members(c) {
                visit(i as usize, &mut top, &mut max);
            }
        }
        (top.into_sorted(), max)
    }

    /// Per covered row, its cluster (at most [`MAX_CLUSTERS`] of them, as
    /// [`Ivf::is_consistent`] and training ensure).
    fn clusters_of_rows(&self) -> &[u16] {
        self.cluster_of.get_or_init(|| {
            debug_assert!(self.radius.len() <= MAX_CLUSTERS);
            let mut of = vec![0u16; self.items];
            for c in 0..self.radius.len() {
                for &i in self.members(c) {
                    if let Some(slot) = of.get_mut(i as usize) {
                        *slot = c as u16;
                    }
                }
            }
            of
        })
    }

    /// Per cluster, the largest `rest` of its members (−∞ when none is allowed): one pass in
    /// row order (the cluster maxima stay in L1), not a gather through `order`.
    fn cluster_max(&self, rest: &[f32]) -> Vec<f32> {
        let mut max = vec![f32::NEG_INFINITY; self.radius.len()];
        self.clusters_of_rows().iter().zip(rest).for_each(|(&c, &r)| {
            let m = &mut max[c as usize];
            *m = if r > *m { r } else { *m };
        });
        max
    }

    /// The exact top `k` of a fused score: `exact(i, x·y_i)` for each allowed item i, where
    /// `exact(i, d) <= als(d) + rest[i]`, `als` is non-decreasing and `rest` (one per row) bounds
    /// everything but the inner product; `rest[i] = −∞` marks an item not allowed. A cluster is
    /// visited while its bound (`als` of its inner-product bound plus its members' largest
    /// `rest`) can still reach the k-th best, and a member is scored only when its own bound
    /// can: the inner product is taken for a few candidates, not the catalogue.
    #[allow(clippy::too_many_arguments)]
    pub fn top_fused(
        &self,
        y: &[f32],
        ids: &[i64],
        x: &[f32],
        k: usize,
        als: &dyn Fn(f32) -> f32,
        rest: &[f32],
        exact: &dyn Fn(usize, f32) -> f32,
    ) -> Vec<Scored> {
        let f = self.f;
        let n = (y.len() / f).min(rest.len());
        let row = |i: usize| &y[i * f..(i + 1) * f];
        let mut top = TopK::new(k);
        if k == 0 {
            return vec![];
        }
        // f32 sums in a different order differ in the last bits: every bound gets room for it.
        let up = |b: f32| b + b.abs() * SLACK + 1e-6;
        let visit = |i: usize, als_bound: f32, top: &mut TopK| {
            if rest[i] == f32::NEG_INFINITY || up(als_bound + rest[i]) < top.threshold() {
                return;
            }
            let s = exact(i, dot_dispatch(row(i), x));
            if s >= top.threshold() {
                top.push(Scored { score: s, id: ids[i], index: i as u32 });
            }
        };
        // Rows appended after the partition was built: scored directly.
        for i in self.items.min(n)..n {
            visit(i, f32::INFINITY, &mut top);
        }
        let xn = dot_dispatch(x, x).sqrt();
        let mut bounds: Vec<(f32, f32, u32)> = Vec::with_capacity(self.radius.len());
        let cluster_max = self.cluster_max(&rest[..n.min(self.items)]);
        for (c, (mu, r)) in self.centroids.chunks_exact(f).zip(self.radius.iter()).enumerate() {
            let rest_max = cluster_max[c];
            if rest_max == f32::NEG_INFINITY {
                continue;
            }
            let a = als(up(dot_dispatch(mu, x) + xn * r));
            bounds.push((up(a + rest_max), a, c as u32));
        }
        bounds.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        for (bound, a, c) in bounds {
            if bound < top.threshold() {
                break;
            }
            for &i in self.members(c as usize) {
                if (i as usize) < n {
                    visit(i as usize, a, &mut top);
                }
            }
        }
        top.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Clustered rows: 40 topics, each row its topic's direction plus noise, norms varying.
    fn rows(n: usize, f: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let topics: Vec<Vec<f32>> = (0..40).map(|_| (0..f).map(|_| rng.normal() as f32).collect()).collect();
        (0..n)
            .flat_map(|i| {
                let t = &topics[i % 40];
                let scale = 0.2 + (i % 7) as f32 * 0.3;
                t.iter().map(|v| scale * (v + 0.4 * rng.normal() as f32)).collect::<Vec<f32>>()
            })
            .collect()
    }

    fn brute(y: &[f32], f: usize, ids: &[i64], x: &[f32], k: usize, allowed: &dyn Fn(usize) -> bool, score: &dyn Fn(f32) -> f32) -> (Vec<Scored>, f32) {
        let mut top = TopK::new(k);
        let mut max = f32::NEG_INFINITY;
        for (i, r) in y.chunks_exact(f).enumerate() {
            let d = dot_dispatch(r, x);
            max = max.max(d);
            if allowed(i) {
                top.push(Scored { score: score(d), id: ids[i], index: i as u32 });
            }
        }
        (top.into_sorted(), max)
    }

    #[test]
    fn equals_the_full_scan_with_masks_clipping_and_appended_rows() {
        let (n, f) = (12_000, 16);
        let mut y = rows(n, f, 3);
        let pool = crate::als::pool(2, None).unwrap();
        let ivf = Ivf::build(&y, f, &pool, &mut || Ok(())).unwrap().expect("above MIN_ITEMS");
        assert!(ivf.is_consistent(n));
        // Rows appended after the partition (posts placed at serve time) are still found.
        let mut rng = Rng::new(9);
        let extra: Vec<f32> = (0..50 * f).map(|_| 3.0 * rng.normal() as f32).collect();
        y.extend_from_slice(&extra);
        let ids: Vec<i64> = (0..y.len() / f).map(|i| 1_000_000 - i as i64).collect();
        let clip = |d: f32| 2.0 * d.max(0.0);
        let plain = |d: f32| d;
        for trial in 0..30 {
            let x: Vec<f32> = (0..f).map(|_| rng.normal() as f32 * if trial % 5 == 0 { 0.01 } else { 1.0 }).collect();
            let k = [1, 20, 200][trial % 3];
            let allowed = |i: usize| !(i * 7 + trial).is_multiple_of(5);
            let all = |_: usize| true;
            for (mask, score) in [(&allowed as &dyn Fn(usize) -> bool, &clip as &dyn Fn(f32) -> f32), (&all, &plain)] {
                let got = ivf.top(&y, &ids, &x, k, mask, score);
                let want = brute(&y, f, &ids, &x, k, mask, score);
                assert_eq!(got.0, want.0, "trial {trial}");
                assert_eq!(got.1, want.1, "trial {trial}");
            }
        }
    }

    #[test]
    fn small_catalogues_are_not_partitioned_and_cancel_stops_the_build() {
        let pool = crate::als::pool(1, None).unwrap();
        assert!(Ivf::build(&rows(MIN_ITEMS - 1, 8, 1), 8, &pool, &mut || Ok(())).unwrap().is_none());
        let r = Ivf::build(&rows(MIN_ITEMS, 8, 1), 8, &pool, &mut || Err(CoreError::Canceled));
        assert_eq!(r.err(), Some(CoreError::Canceled));
    }
}
