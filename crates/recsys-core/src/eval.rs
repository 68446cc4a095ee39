//! Ranking metrics at a cutoff k, binary relevance. Definitions (documented in README):
//! - precision@k = hits / k
//! - recall@k    = hits / |test|
//! - NDCG@k      = Σ_{hit at rank i} 1/log2(i+1) / Σ_{i=1..min(k,|test|)} 1/log2(i+1)
//! - MAP@k       = Σ_{hit at rank i} precision@i / min(k, |test|)
//!
//! Users with an empty test set are skipped; the reported value is the mean over the rest.
//! Every offline evaluation (here [`evaluate_ranking`], the hybrid's in `world`) ranks with
//! [`rank`] and scores the lists with [`Ranked::score`], on a split from `split`.
use crate::csr::Csr;
use crate::topk::{Scored, TopK};
use serde::Serialize;
use std::collections::HashSet;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub users: usize,
}

/// Metrics for one ranked list against one user's held-out set.
pub fn user_metrics(ranked: &[u32], test: &HashSet<u32>, k: usize) -> Metrics {
    if test.is_empty() || k == 0 {
        return Metrics::default();
    }
    let mut hits = 0usize;
    let mut dcg = 0f64;
    let mut ap = 0f64;
    for (pos, item) in ranked.iter().take(k).enumerate() {
        if test.contains(item) {
            hits += 1;
            dcg += 1.0 / ((pos + 2) as f64).log2();
            ap += hits as f64 / (pos + 1) as f64;
        }
    }
    let ideal_n = k.min(test.len());
    let idcg: f64 = (0..ideal_n).map(|p| 1.0 / ((p + 2) as f64).log2()).sum();
    Metrics { precision: hits as f64 / k as f64, recall: hits as f64 / test.len() as f64, ndcg: dcg / idcg, map: ap / ideal_n as f64, users: 1 }
}

/// Running mean over users.
#[derive(Default)]
pub struct MetricsAcc {
    sum: Metrics,
}

impl MetricsAcc {
    pub fn add(&mut self, m: &Metrics) {
        self.sum.precision += m.precision;
        self.sum.recall += m.recall;
        self.sum.ndcg += m.ndcg;
        self.sum.map += m.map;
        self.sum.users += m.users;
    }
    pub fn mean(&self) -> Metrics {
        let n = self.sum.users.max(1) as f64;
        Metrics { precision: self.sum.precision / n, recall: self.sum.recall / n, ndcg: self.sum.ndcg / n, map: self.sum.map / n, users: self.sum.users }
    }
}

/// Root mean squared error and mean absolute error of predictions.
pub fn rmse_mae(pred: &[f32], truth: &[f32]) -> (f64, f64) {
    let n = pred.len().max(1) as f64;
    let (mut se, mut ae) = (0f64, 0f64);
    for (p, t) in pred.iter().zip(truth) {
        let d = (*p - *t) as f64;
        se += d * d;
        ae += d.abs();
    }
    ((se / n).sqrt(), ae / n)
}

/// One user's ranked list, as every offline evaluation ranks: the `k` best of `scored`
/// (item, score), best first, ties to the lower item, leaving out the items `seen` in training,
/// NaN and scores not above `floor` (`f32::NEG_INFINITY` keeps every finite score; the hybrid's
/// evaluation passes 0, as a feed only serves posts with a positive score).
pub fn rank(scored: impl IntoIterator<Item = (u32, f32)>, seen: impl Fn(u32) -> bool, floor: f32, k: usize) -> Vec<u32> {
    let mut top = TopK::new(k);
    for (i, s) in scored {
        if s > floor && s >= top.threshold() && !seen(i) {
            top.push(Scored { score: s, id: i as i64, index: i });
        }
    }
    top.into_sorted().into_iter().map(|x| x.index).collect()
}

/// Every evaluated user's metrics (in the order given) and the catalogue coverage of their
/// lists: distinct items recommended / items.
pub struct Ranked {
    pub per_user: Vec<Metrics>,
    pub coverage: f64,
}

impl Ranked {
    /// The one metric loop: each (ranked list, held-out items) scored at `k`.
    pub fn score<'a>(n_items: usize, k: usize, lists: impl IntoIterator<Item = (&'a [u32], &'a HashSet<u32>)>) -> Ranked {
        let mut covered = vec![false; n_items];
        let per_user = lists
            .into_iter()
            .map(|(ranked, truth)| {
                ranked.iter().for_each(|&i| covered[i as usize] = true);
                user_metrics(ranked, truth, k)
            })
            .collect();
        Ranked { per_user, coverage: covered.iter().filter(|c| **c).count() as f64 / n_items.max(1) as f64 }
    }

    /// Mean over the users for which `keep(position)` holds.
    pub fn mean_of(&self, keep: impl Fn(usize) -> bool) -> Metrics {
        let mut acc = MetricsAcc::default();
        self.per_user.iter().enumerate().filter(|(j, _)| keep(*j)).for_each(|(_, m)| acc.add(m));
        acc.mean()
    }

    pub fn mean(&self) -> Metrics {
        self.mean_of(|_| true)
    }
}

/// Ranks all items for every user with test items by `score(u, out)` (which fills one score
/// per item) with the user's training items left out, and averages the metrics at `k`.
/// Also returns catalogue coverage: distinct items recommended / items.
pub fn evaluate_ranking<F>(train: &Csr, test: &Csr, k: usize, score: F) -> (Metrics, f64)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    use rayon::prelude::*;
    let users: Vec<usize> = (0..test.rows).filter(|&u| !test.row(u).0.is_empty()).collect();
    let lists: Vec<(Vec<u32>, HashSet<u32>)> = users
        .par_iter()
        .map_init(
            || vec![0f32; train.cols],
            |buf, &u| {
                score(u, buf);
                let seen = train.row(u).0;
                let ranked = rank(buf.iter().enumerate().map(|(i, &s)| (i as u32, s)), |i| seen.binary_search(&i).is_ok(), f32::NEG_INFINITY, k);
                (ranked, test.row(u).0.iter().copied().collect())
            },
        )
        .collect();
    let r = Ranked::score(train.cols, k, lists.iter().map(|(l, t)| (l.as_slice(), t)));
    (r.mean(), r.coverage)
}

/// Popularity baseline scores: number of training users per item.
pub fn popularity(train: &Csr) -> Vec<f32> {
    let mut p = vec![0f32; train.cols];
    for &i in &train.indices {
        p[i as usize] += 1.0;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> HashSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn hand_computed_values() {
        // Ranked: 5 1 7 3 9, relevant {1, 3, 4}, k = 5.
        let m = user_metrics(&[5, 1, 7, 3, 9], &set(&[1, 3, 4]), 5);
        assert!((m.precision - 0.4).abs() < 1e-12);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
        // DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4)
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
        assert!((m.ndcg - dcg / idcg).abs() < 1e-12);
        // AP = (1/2 + 2/4) / min(5, 3)
        assert!((m.map - (0.5 + 0.5) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn perfect_and_empty() {
        let m = user_metrics(&[1, 2], &set(&[1, 2]), 10);
        assert!((m.ndcg - 1.0).abs() < 1e-12 && (m.map - 1.0).abs() < 1e-12 && (m.recall - 1.0).abs() < 1e-12);
        assert!((m.precision - 0.2).abs() < 1e-12);
        assert_eq!(user_metrics(&[1], &set(&[]), 10).users, 0);
        let mut acc = MetricsAcc::default();
        acc.add(&m);
        acc.add(&user_metrics(&[3], &set(&[1]), 10));
        assert!((acc.mean().ndcg - 0.5).abs() < 1e-12);
    }

    #[test]
    fn rank_leaves_out_seen_nan_and_the_floor() {
        let scored = [(0, 0.5), (1, 0.9), (2, f32::NAN), (3, 0.5), (4, -0.2), (5, 0.0), (6, 0.7)];
        assert_eq!(rank(scored, |i| i == 6, f32::NEG_INFINITY, 10), vec![1, 0, 3, 5, 4]);
        assert_eq!(rank(scored, |_| false, 0.0, 3), vec![1, 6, 0]);
        assert_eq!(rank(scored, |_| false, 0.0, 10), vec![1, 6, 0, 3]);
        let (a, b) = (vec![1, 6], vec![5]);
        let truth = set(&[6]);
        let r = Ranked::score(8, 2, [(a.as_slice(), &truth), (b.as_slice(), &truth)]);
        assert!((r.coverage - 3.0 / 8.0).abs() < 1e-12);
        assert_eq!(r.mean().users, 2);
        assert!((r.mean_of(|j| j == 1).ndcg).abs() < 1e-12 && r.mean_of(|j| j == 0).ndcg > 0.6);
    }

    #[test]
    fn rmse_mae_hand() {
        let (r, a) = rmse_mae(&[3.0, 4.0], &[4.0, 2.0]);
        assert!((r - (2.5f64).sqrt()).abs() < 1e-9 && (a - 1.5).abs() < 1e-9);
    }
}
