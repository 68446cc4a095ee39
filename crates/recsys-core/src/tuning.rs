//! Fusion-weight tuning over the offline evaluation: coordinate ascent on one seeded split,
//! checked on another the search never saw (`"tune": true`).
use crate::als::{AlsOptions, Progress};
use crate::hybrid::{self, HybridOptions, Weights};
use crate::world::{only, prepare_with, EvalConfig, Outcome, Prepared, World};
use crate::CoreError;

impl Prepared {
    /// Coordinate ascent from `start` over a grid per weight (ALS fixed at its start value, as
    /// only ratios matter); returns the best weights and their outcome.
    pub fn tune(&self, start: &Weights) -> (Weights, Outcome) {
        const GRID: [f32; 11] = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5];
        let mut best = *start;
        let mut best_o = self.evaluate(&best);
        for _round in 0..2 {
            let mut improved = false;
            for name in &hybrid::COMPONENTS[1..] {
                for &g in &GRID {
                    let mut w = best;
                    *w.get_mut(name).expect("known component") = g;
                    let o = self.evaluate(&w);
                    // A change must gain 1% (relative) to count: small samples are noisy.
                    if o.ndcg > best_o.ndcg * (1.0 + MIN_GAIN) + 1e-9 {
                        best = w;
                        best_o = o;
                        improved = true;
                    }
                }
            }
            if !improved {
                break;
            }
        }
        (best, best_o)
    }
}

/// What [`tune_checked`] chose and on what evidence.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuneReport {
    pub weights: Weights,
    /// True when the tuned weights were kept (they scored at least the start's NDCG on the
    /// holdout split); false when the start's were.
    pub kept_tuned: bool,
    /// NDCG@10 on the split the tuner searched: start, tuned.
    pub tuning_ndcg_start: f64,
    pub tuning_ndcg_tuned: f64,
    /// NDCG@10 on a second split the tuner never saw: start, tuned, and the chosen weights.
    pub holdout_ndcg_start: f64,
    pub holdout_ndcg_tuned: f64,
    pub holdout_ndcg: f64,
    pub holdout_ndcg_als_only: f64,
    pub users: usize,
}

/// Fusion weights tuned on one seeded split and checked on another the tuner never saw: the
/// tuned weights are kept only when they score at least as well as `start` there, so tuning
/// never makes a model worse than its defaults on held-out data.
pub fn tune_checked(
    w: &World,
    als_opts: &AlsOptions,
    o: &HybridOptions,
    cfg: &EvalConfig,
    start: &Weights,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<TuneReport, CoreError> {
    let search = prepare_with(w, als_opts, o, cfg, pool, progress)?;
    let (tuned, after) = search.tune(start);
    let before = search.evaluate(start);
    drop(search);
    let check = prepare_with(w, als_opts, o, &EvalConfig { seed: cfg.seed.wrapping_add(0x9E37_79B9), ..cfg.clone() }, pool, progress)?;
    let (hs, ht) = (check.evaluate(start).ndcg, check.evaluate(&tuned).ndcg);
    let kept_tuned = ht >= hs;
    Ok(TuneReport {
        weights: if kept_tuned { tuned } else { *start },
        kept_tuned,
        tuning_ndcg_start: before.ndcg,
        tuning_ndcg_tuned: after.ndcg,
        holdout_ndcg_start: hs,
        holdout_ndcg_tuned: ht,
        holdout_ndcg: hs.max(ht),
        holdout_ndcg_als_only: check.evaluate(&only(&["als"])).ndcg,
        users: check.warm_users + check.cold_users,
    })
}

/// Relative NDCG gain a tuning step must bring to be taken.
pub const MIN_GAIN: f64 = 0.01;
