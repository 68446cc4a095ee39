//! An inverted-file partition of the item factors for exact top-k by inner product without
//! scanning the whole catalogue.
//!
//! At train time the items are clustered by k-means (√n clusters, trained on a sample, every
//! item then assigned to its nearest centroid). Each cluster keeps its centroid μ and radius r
//! (the largest distance of a member from μ). For a query x every member y of a cluster scores
//! x·y = x·μ + x·(y − μ) ≤ x·μ + ‖x‖·r, so clusters are visited best bound first and the walk
//! stops once a cluster's bound is below the k-th best score found: the result is the exact
//! top-k (and the exact maximum), not an approximation. Each member also keeps its own distance
//! d from μ, so inside a visited cluster a member is read only when x·μ + ‖x‖·d can still
//! qualify: of the items of the visited clusters, a fifth or less are read. On clustered factors
//! (a social app's communities and topics) a call reads a few percent of the items.
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
    /// Per position of `order`: that member's distance from its centroid (with slack). None
    /// for a partition stored before it was kept: every member then gets its cluster's radius.
    pub dist: Option<crate::buf::Buf<f32>>,
    /// Per position of `order`: a copy of that member's row (positions × f), so that a walk
    /// reads each visited cluster's rows as one contiguous run instead of rows scattered over
    /// the whole matrix. A serving call finds little of the model in the CPU caches (the rest
    /// of the call and other backends evict it), and contiguous rows are what the hardware
    /// prefetcher streams. None: the rows are read through `order` (the same values).
    pub rows: Option<crate::buf::Buf<f32>>,
    /// Per covered row, its cluster (derived from `order` on first use, or stored beside the
    /// partition: see [`Ivf::with_clusters_of_rows`]).
    cluster_of: std::sync::OnceLock<crate::buf::Buf<u16>>,
}

/// Most clusters a partition may have: a row's cluster is kept as a u16 (training makes at
/// most 4,096).
const MAX_CLUSTERS: usize = u16::MAX as usize + 1;

/// A user vector against the partition's centroids, from [`Ivf::probe`].
#[derive(Clone, Debug)]
pub struct Probe {
    /// ‖x‖.
    xn: f32,
    /// Per cluster, x·μ.
    xm: Vec<f32>,
    /// The non-empty clusters with their bound on x·y, largest first.
    order: Vec<(f32, u32)>,
}

/// An inner-product bound raised by room for f32 rounding (sums in another order differ in
/// the last bits).
fn bound_up(b: f32) -> f32 {
    b + b.abs() * SLACK + 1e-6
}

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
        let mut dist = vec![0f32; assign.len()];
        let mut radius = vec![0f32; clusters];
        for (i, &c) in assign.iter().enumerate() {
            let c = c as usize;
            let d = dist2(&y[i * f..(i + 1) * f], &centroids[c * f..(c + 1) * f]).sqrt() * (1.0 + SLACK) + 1e-6;
            order[next[c] as usize] = i as u32;
            dist[next[c] as usize] = d;
            next[c] += 1;
            radius[c] = radius[c].max(d);
        }
        Ivf::from_parts(f, assign.len(), centroids.into(), radius.into(), order.into(), offsets.into(), Some(dist.into()))
    }

    /// A partition from its stored arrays (check them with [`Ivf::is_consistent`]).
    pub fn from_parts(
        f: usize,
        items: usize,
        centroids: crate::buf::Buf<f32>,
        radius: crate::buf::Buf<f32>,
        order: crate::buf::Buf<u32>,
        offsets: crate::buf::Buf<u32>,
        dist: Option<crate::buf::Buf<f32>>,
    ) -> Ivf {
        Ivf { f, items, centroids, radius, order, offsets, dist, rows: None, cluster_of: Default::default() }
    }

    /// The partition reading its members' rows from `rows` (as [`Ivf::member_rows`] gathers
    /// them from the matrix it partitions; [`Ivf::is_consistent`] checks the length).
    pub fn with_rows(mut self, rows: crate::buf::Buf<f32>) -> Ivf {
        self.rows = Some(rows);
        self
    }

    /// The partition with each covered row's cluster as [`Ivf::clusters_of_rows`] derived it
    /// (stored beside it, so that a reader need not derive it again); ignored unless there is
    /// one per covered row. Trusted: a wrong cluster number makes a walk fail with a panic or
    /// bound a cluster by the wrong rows, never read out of bounds.
    pub fn with_clusters_of_rows(self, of: crate::buf::Buf<u16>) -> Ivf {
        if of.len() == self.items {
            let _ = self.cluster_of.set(of);
        }
        self
    }

    /// The covered rows of `y` in `order`: what [`Ivf::with_rows`] takes.
    pub fn member_rows(&self, y: &[f32]) -> Vec<f32> {
        let f = self.f;
        self.order.iter().flat_map(|&i| &y[i as usize * f..(i as usize + 1) * f]).copied().collect()
    }

    /// The row at position `p` of `order`, which is item `i = order[p]` of `y`.
    #[inline]
    fn member<'a>(&'a self, y: &'a [f32], p: usize, i: usize) -> &'a [f32] {
        let f = self.f;
        match &self.rows {
            Some(r) => &r[p * f..(p + 1) * f],
            None => &y[i * f..(i + 1) * f],
        }
    }

    /// Cluster `c`'s positions in `order`.
    fn span(&self, c: usize) -> std::ops::Range<usize> {
        self.offsets[c] as usize..self.offsets[c + 1] as usize
    }

    /// The distance bound of the member at position `p` of cluster `c` (its own when kept,
    /// else the cluster's radius).
    fn member_radius(&self, c: usize, p: usize) -> f32 {
        self.dist.as_ref().map_or(self.radius[c], |d| d[p])
    }

    /// The rows of cluster `c`.
    fn members(&self, c: usize) -> &[u32] {
        &self.order[self.span(c)]
    }

    /// Whether the stored arrays fit together (a damaged model is refused, never misread).
    pub fn is_consistent(&self, rows: usize) -> bool {
        self.has_consistent_sizes(rows) && self.order.iter().all(|&i| (i as usize) < self.items)
    }

    /// [`Ivf::is_consistent`] without reading the member list (what a model image's reader
    /// checks, in time independent of the posts): a damaged member makes a walk fail with a
    /// panic or score the wrong row, never read out of bounds.
    pub fn has_consistent_sizes(&self, rows: usize) -> bool {
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
            && self.dist.as_ref().is_none_or(|d| d.len() == self.items)
            && self.rows.as_ref().is_none_or(|r| r.len() == self.items * self.f)
    }

    pub fn bytes(&self) -> usize {
        self.centroids.bytes()
            + self.radius.bytes()
            + self.order.bytes()
            + self.offsets.bytes()
            + self.dist.as_ref().map_or(0, |d| d.bytes())
            + self.rows.as_ref().map_or(0, |r| r.bytes())
    }

    /// The exact best `k` rows of `y` (all rows, also those beyond [`Ivf::items`]) by
    /// `score(x·y)` among the rows `allowed`, best first, ties to the lower id; and the largest
    /// x·y over all rows, allowed or not. `score` must be non-decreasing (it maps the inner
    /// product to the ranked score, e.g. a clipped scale).
    pub fn top(&self, y: &[f32], ids: &[i64], x: &[f32], k: usize, allowed: &dyn Fn(usize) -> bool, score: &dyn Fn(f32) -> f32) -> (Vec<Scored>, f32) {
        self.top_probed(&self.probe(x), y, ids, x, k, allowed, score)
    }

    /// What every walk for the user vector `x` starts from: its inner product with each
    /// centroid, and the non-empty clusters ordered by their bound on x·y. A call that walks
    /// the partition more than once (the maximum, then the page) computes it once.
    pub fn probe(&self, x: &[f32]) -> Probe {
        let f = self.f;
        let xn = dot_dispatch(x, x).sqrt();
        let xm: Vec<f32> = self.centroids.chunks_exact(f).map(|mu| dot_dispatch(mu, x)).collect();
        let mut order: Vec<(f32, u32)> =
            (0..self.radius.len()).filter(|&c| self.offsets[c] < self.offsets[c + 1]).map(|c| (bound_up(xm[c] + xn * self.radius[c]), c as u32)).collect();
        order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        Probe { xn, xm, order }
    }

    /// [`Ivf::top`] from a [`Ivf::probe`] of the same `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn top_probed(
        &self,
        probe: &Probe,
        y: &[f32],
        ids: &[i64],
        x: &[f32],
        k: usize,
        allowed: &dyn Fn(usize) -> bool,
        score: &dyn Fn(f32) -> f32,
    ) -> (Vec<Scored>, f32) {
        let f = self.f;
        let n = y.len() / f;
        let row = |i: usize| &y[i * f..(i + 1) * f];
        let mut top = TopK::new(k);
        let mut max = f32::NEG_INFINITY;
        let visit = |i: usize, r: &[f32], top: &mut TopK, max: &mut f32| {
            let d = dot_dispatch(r, x);
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
            visit(i, row(i), &mut top, &mut max);
        }
        let xn = probe.xn;
        // Every member of a cluster scores at most its bound: nothing below it can enter the
        // top k or raise the maximum any more.
        let hopeless = |bound: f32, top: &TopK, max: f32| bound < max && (k == 0 || score(bound) < top.threshold());
        for &(bound, c) in &probe.order {
            if hopeless(bound, &top, max) {
                break;
            }
            let c = c as usize;
            let xm = probe.xm[c];
            for p in self.span(c) {
                if !hopeless(bound_up(xm + xn * self.member_radius(c, p)), &top, max) {
                    let i = self.order[p] as usize;
                    visit(i, self.member(y, p, i), &mut top, &mut max);
                }
            }
        }
        (top.into_sorted(), max)
    }

    /// Per covered row, its cluster (at most [`MAX_CLUSTERS`] of them, as
    /// [`Ivf::is_consistent`] and training ensure).
    pub fn clusters_of_rows(&self) -> &[u16] {
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
            of.into()
        })
    }

    /// Per cluster, the largest `rest` of its members (−∞ when none is allowed): one pass in
    /// row order (the cluster maxima stay in L1), not a gather through `order`.
    pub fn cluster_max(&self, rest: &[f32]) -> Vec<f32> {
        let mut max = vec![f32::NEG_INFINITY; self.radius.len()];
        self.clusters_of_rows().iter().zip(rest).for_each(|(&c, &r)| {
            let m = &mut max[c as usize];
            *m = if r > *m { r } else { *m };
        });
        max
    }

    /// The exact top `k` of a fused score: `exact(i, x·y_i)` for each allowed item i, where
    /// `exact(i, d) <= als(d) + rest[i]`, `als` is non-decreasing and `rest` (one per row) bounds
    /// everything but the inner product; `rest[i] = −∞` marks an item not allowed.
    /// `cluster_max`, when given, is at least [`Ivf::cluster_max`] of `rest` (computed here
    /// otherwise). A cluster is visited while its bound (`als` of its inner-product bound plus
    /// its members' largest `rest`) can still reach the k-th best, and a member is scored only
    /// when its own bound can: the inner product is taken for a few candidates, not the
    /// catalogue.
    #[allow(clippy::too_many_arguments)]
    pub fn top_fused(
        &self,
        probe: &Probe,
        y: &[f32],
        ids: &[i64],
        x: &[f32],
        k: usize,
        als: &dyn Fn(f32) -> f32,
        rest: &[f32],
        cluster_max: Option<&[f32]>,
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
        let visit = |i: usize, r: &[f32], als_bound: f32, top: &mut TopK| {
            if rest[i] == f32::NEG_INFINITY || bound_up(als_bound + rest[i]) < top.threshold() {
                return;
            }
            let s = exact(i, dot_dispatch(r, x));
            if s >= top.threshold() {
                top.push(Scored { score: s, id: ids[i], index: i as u32 });
            }
        };
        // Rows appended after the partition was built: scored directly.
        for i in self.items.min(n)..n {
            visit(i, row(i), f32::INFINITY, &mut top);
        }
        let xn = probe.xn;
        let mut bounds: Vec<(f32, u32)> = Vec::with_capacity(self.radius.len());
        let cluster_max = match cluster_max {
            Some(m) if m.len() == self.radius.len() => std::borrow::Cow::Borrowed(m),
            _ => std::borrow::Cow::Owned(self.cluster_max(&rest[..n.min(self.items)])),
        };
        for (c, r) in self.radius.iter().enumerate() {
            let rest_max = cluster_max[c];
            if rest_max == f32::NEG_INFINITY {
                continue;
            }
            bounds.push((bound_up(als(bound_up(probe.xm[c] + xn * r)) + rest_max), c as u32));
        }
        bounds.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        for (bound, c) in bounds {
            if bound < top.threshold() {
                break;
            }
            let c = c as usize;
            let xm = probe.xm[c];
            for p in self.span(c) {
                let i = self.order[p] as usize;
                if i < n && rest[i] != f32::NEG_INFINITY {
                    visit(i, self.member(y, p, i), als(bound_up(xm + xn * self.member_radius(c, p))), &mut top);
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
        // A partition stored before members kept their own distance: the cluster radius serves.
        let old = with_distances(&ivf, None);
        assert!(old.is_consistent(n));
        // Members' rows copied in cluster order: read instead of the matrix.
        let copied = with_distances(&ivf, ivf.dist.as_ref().map(|d| d.to_vec())).with_rows(ivf.member_rows(&y).into());
        assert!(copied.is_consistent(n));
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
                let want = brute(&y, f, &ids, &x, k, mask, score);
                for p in [&ivf, &old, &copied] {
                    let got = p.top(&y, &ids, &x, k, mask, score);
                    assert_eq!(got.0, want.0, "trial {trial}");
                    assert_eq!(got.1, want.1, "trial {trial}");
                }
            }
        }
    }

    /// A copy of `p` with the member distances `dist` (None: as stored before they were kept).
    fn with_distances(p: &Ivf, dist: Option<Vec<f32>>) -> Ivf {
        let b = |v: &[f32]| v.to_vec().into();
        Ivf::from_parts(p.f, p.items, b(&p.centroids), b(&p.radius), p.order.to_vec().into(), p.offsets.to_vec().into(), dist.map(Into::into))
    }

    #[test]
    fn member_distances_bound_each_member_and_a_short_list_is_refused() {
        let (n, f) = (12_000, 16);
        let y = rows(n, f, 5);
        let pool = crate::als::pool(2, None).unwrap();
        let ivf = Ivf::build(&y, f, &pool, &mut || Ok(())).unwrap().expect("above MIN_ITEMS");
        let d = ivf.dist.as_ref().expect("kept by training");
        // Every stored distance bounds its member's true distance from the centroid.
        for c in 0..ivf.radius.len() {
            let mu = &ivf.centroids[c * f..(c + 1) * f];
            for p in ivf.span(c) {
                let i = ivf.order[p] as usize;
                assert!(dist2(&y[i * f..(i + 1) * f], mu).sqrt() <= d[p]);
            }
        }
        // Some members are strictly inside their cluster's radius (else the distances prune nothing).
        let inside = (0..ivf.radius.len()).flat_map(|c| ivf.span(c).map(move |p| (c, p))).filter(|&(c, p)| d[p] < 0.8 * ivf.radius[c]).count();
        assert!(inside > n / 2, "{inside} of {n} members well inside their radius");
        // Each member's cluster, stored beside the partition: read as derived; a list that
        // does not cover every member is ignored (derived instead).
        let derived = ivf.clusters_of_rows().to_vec();
        assert!((0..ivf.radius.len()).all(|c| ivf.members(c).iter().all(|&i| derived[i as usize] as usize == c)));
        let stored = with_distances(&ivf, None).with_clusters_of_rows(derived.clone().into());
        assert_eq!(stored.clusters_of_rows(), &derived[..]);
        let short = with_distances(&ivf, None).with_clusters_of_rows(derived[1..].to_vec().into());
        assert_eq!(short.clusters_of_rows(), &derived[..]);
        // Distances or copied rows that do not cover every member: refused.
        assert!(!with_distances(&ivf, Some(d[1..].to_vec())).is_consistent(n));
        let rows = ivf.member_rows(&y);
        assert_eq!(rows.len(), n * f);
        assert!(!with_distances(&ivf, None).with_rows(rows[f..].to_vec().into()).is_consistent(n));
        // The copy holds member p's row at position p.
        for p in [0, n / 2, n - 1] {
            let i = ivf.order[p] as usize;
            assert_eq!(&rows[p * f..(p + 1) * f], &y[i * f..(i + 1) * f]);
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
