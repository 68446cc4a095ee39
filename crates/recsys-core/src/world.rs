//! An app's data in memory (interactions with times, follows, demographics, post text), and
//! the offline evaluation of the hybrid on it: a seeded split, ALS on the training part, the
//! same [`hybrid::score`] the extension serves with, and NDCG@k per weight setting. Loaders are
//! in `datasets`, weight tuning (`"tune": true`) in `tuning`.
use crate::als::{self, AlsOptions, NoProgress, Progress};
use crate::csr::Csr;
use crate::eval::{user_metrics, Metrics, MetricsAcc};
use crate::hybrid::{self, Catalog, Event, Followee, HybridOptions, Segments, UserInput, Weights};
use crate::rng::Rng;
use crate::tfidf::Tfidf;
use crate::topk::{Scored, TopK};
use crate::CoreError;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// Followees considered per user (most recent follows first in the extension).
pub const MAX_FOLLOWEES: usize = 200;

pub struct World {
    pub n_users: usize,
    pub n_items: usize,
    /// Events of user u: `events[ev_ptr[u]..ev_ptr[u + 1]]`, oldest first when times are known.
    pub ev_ptr: Vec<usize>,
    pub events: Vec<Event>,
    /// Followees of user u (index, mutual).
    pub fo_ptr: Vec<usize>,
    pub follows: Vec<(u32, bool)>,
    pub followers: Vec<u32>,
    /// Items owned by user u.
    pub own_ptr: Vec<usize>,
    pub owned: Vec<u32>,
    /// Segment keys per user as codes into `key_dict` (0 = none).
    pub keys: Vec<[u32; 3]>,
    pub key_dict: Vec<String>,
    /// Content rows and their model items.
    pub tfidf: Option<Tfidf>,
    pub to_item: Vec<Option<u32>>,
    /// Creation day per item (NaN = unknown).
    pub created_day: Vec<f32>,
}

fn grouped<T: Copy>(n: usize, pairs: &[(u32, T)]) -> (Vec<usize>, Vec<T>) {
    let mut ptr = vec![0usize; n + 1];
    for p in pairs {
        ptr[p.0 as usize + 1] += 1;
    }
    for i in 0..n {
        ptr[i + 1] += ptr[i];
    }
    let mut next = ptr.clone();
    let mut out: Vec<Option<T>> = vec![None; pairs.len()];
    for p in pairs {
        out[next[p.0 as usize]] = Some(p.1);
        next[p.0 as usize] += 1;
    }
    (ptr, out.into_iter().flatten().collect())
}

impl World {
    /// `events`: (user, event); `follows`: (follower, followee); `owner[i]`: owner of item i.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n_users: usize,
        n_items: usize,
        mut events: Vec<(u32, Event)>,
        follows: &[(u32, u32)],
        owner: &[Option<u32>],
        keys: Vec<[u32; 3]>,
        key_dict: Vec<String>,
        tfidf: Option<Tfidf>,
        to_item: Vec<Option<u32>>,
        created_day: Vec<f32>,
    ) -> World {
        events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.day.total_cmp(&b.1.day)));
        let (ev_ptr, events) = grouped(n_users, &events);
        let set: HashSet<(u32, u32)> = follows.iter().copied().collect();
        let mut f: Vec<(u32, (u32, bool))> = set.iter().filter(|(a, b)| a != b).map(|&(a, b)| (a, (b, set.contains(&(b, a))))).collect();
        f.sort_unstable();
        let mut followers = vec![0u32; n_users];
        for (_, (b, _)) in &f {
            followers[*b as usize] += 1;
        }
        let (fo_ptr, follows) = grouped(n_users, &f);
        let own: Vec<(u32, u32)> = owner.iter().enumerate().filter_map(|(i, o)| o.map(|o| (o, i as u32))).collect();
        let (own_ptr, owned) = grouped(n_users, &own);
        World { n_users, n_items, ev_ptr, events, fo_ptr, follows, followers, own_ptr, owned, keys, key_dict, tfidf, to_item, created_day }
    }

    pub fn user_events(&self, u: usize) -> &[Event] {
        &self.events[self.ev_ptr[u]..self.ev_ptr[u + 1]]
    }
}

#[derive(Clone, Debug)]
pub struct EvalConfig {
    pub k: usize,
    /// Share of each warm user's distinct posts held out.
    pub test_fraction: f64,
    /// Share of users whose whole history is hidden (they keep follows and demographics).
    pub cold_fraction: f64,
    pub seed: u64,
    /// Users evaluated at most (a seeded sample).
    pub max_users: usize,
    /// Candidates per component (the union is ranked).
    pub pool: usize,
    /// With `folds` ≥ 2, k-fold cross-validation: each warm user's posts are shuffled (seeded)
    /// and position p goes to the test set of fold p mod folds; this split is fold `fold`.
    /// `test_fraction` is then unused.
    pub folds: usize,
    pub fold: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { k: 10, test_fraction: 0.2, cold_fraction: 0.0, seed: 42, max_users: 2_000, pool: 200, folds: 0, fold: 0 }
    }
}

/// Per evaluated user: candidates with unit-weight contributions, and the held-out posts.
struct Case {
    cold: bool,
    /// The popularity baseline (distinct training users per post) on this user.
    baseline: Metrics,
    baseline_top: Vec<u32>,
    cands: Vec<(u32, [f32; 7])>,
    truth: HashSet<u32>,
}

/// A split, a trained model and every evaluated user's candidates: rank under any weights.
pub struct Prepared {
    cases: Vec<Case>,
    pub n_items: usize,
    pub k: usize,
    pub warm_users: usize,
    pub cold_users: usize,
}

/// Result of one weight setting.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Every evaluated user (warm and cold).
    pub all: Metrics,
    /// Distinct posts recommended to the evaluated users / posts.
    pub coverage: f64,
    pub warm: Metrics,
    pub cold: Metrics,
    /// Mean NDCG over every evaluated user (the tuning objective).
    pub ndcg: f64,
}

fn top_indices(n: usize, score: impl Fn(usize) -> f32, skip: &HashSet<u32>, k: usize) -> Vec<u32> {
    let mut t = TopK::new(k);
    for i in 0..n {
        let s = score(i);
        if s > 0.0 && s >= t.threshold() && !skip.contains(&(i as u32)) {
            t.push(Scored { score: s, id: i as i64, index: i as u32 });
        }
    }
    t.into_sorted().into_iter().map(|s| s.index).collect()
}

/// Splits `w`, trains ALS on the training part and scores the sampled users.
pub fn prepare(w: &World, als_opts: &AlsOptions, o: &HybridOptions, cfg: &EvalConfig, pool: &rayon::ThreadPool) -> Result<Prepared, CoreError> {
    prepare_with(w, als_opts, o, cfg, pool, &mut NoProgress)
}

/// Users scored between two progress checks while a split is prepared.
const CHECK_USERS: usize = 128;

/// [`prepare`] with `progress.check()` between blocks of work (ALS sweeps, the graph, blocks of
/// [`CHECK_USERS`] scored users), on the calling thread, so a caller can cancel it.
pub fn prepare_with(
    w: &World,
    als_opts: &AlsOptions,
    o: &HybridOptions,
    cfg: &EvalConfig,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<Prepared, CoreError> {
    let mut rng = Rng::new(cfg.seed);
    let cold: Vec<bool> = (0..w.n_users).map(|_| rng.next_f64() < cfg.cold_fraction).collect();
    // Per user: training events and held-out posts (by distinct post).
    let mut train_ev: Vec<(u32, Event)> = Vec::with_capacity(w.events.len());
    let mut truth: Vec<HashSet<u32>> = vec![HashSet::new(); w.n_users];
    for u in 0..w.n_users {
        let ev = w.user_events(u);
        let mut items: Vec<u32> = ev.iter().map(|e| e.item).collect();
        items.sort_unstable();
        items.dedup();
        let test: HashSet<u32> = if cold[u] {
            items.iter().copied().collect()
        } else if items.len() >= 2 && cfg.folds >= 2 {
            let mut r = Rng::new(cfg.seed ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            r.shuffle(&mut items);
            items.iter().enumerate().filter(|(p, _)| p % cfg.folds == cfg.fold).map(|(_, i)| *i).collect()
        } else if items.len() >= 2 {
            let n_test = ((items.len() as f64 * cfg.test_fraction).round() as usize).clamp(1, items.len() - 1);
            let mut r = Rng::new(cfg.seed ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            r.shuffle(&mut items);
            items[..n_test].iter().copied().collect()
        } else {
            HashSet::new()
        };
        for e in ev {
            if !test.contains(&e.item) {
                train_ev.push((u as u32, *e));
            }
        }
        truth[u] = test;
    }
    // The training events grouped by user (CSR over users), as `World::events` holds them.
    let train = grouped(w.n_users, &train_ev);
    // Followees' engagement as the extension stores it at training time.
    let recent = hybrid::recent_events(w.n_users, train_ev.iter().copied(), hybrid::SOCIAL_EVENTS, |_| true);
    let (r, c, v): (Vec<u32>, Vec<u32>, Vec<f32>) = {
        let mut r = Vec::with_capacity(train_ev.len());
        let mut c = Vec::with_capacity(train_ev.len());
        let mut v = Vec::with_capacity(train_ev.len());
        for (u, e) in &train_ev {
            r.push(*u);
            c.push(e.item);
            v.push(e.weight);
        }
        (r, c, v)
    };
    let ui = Csr::from_triplets(w.n_users, w.n_items, &r, &c, &v);
    drop(train_ev);
    let mut quiet = als_opts.clone();
    quiet.compute_loss = false;
    let (m, _) = als::train(&ui, &quiet, pool, &mut Quiet(&mut *progress))?;
    let gram = als::gram(&m.item_factors, m.factors, quiet.regularization, pool);
    // The item graph over the training split, as the extension builds it (no memory budget
    // here beyond the option's item limit).
    let graph = match o.graph.resolve(w.n_items, u64::MAX) {
        Some(kind) => o.graph.build(kind, &ui, pool, &mut || progress.check())?,
        None => None,
    };
    let popularity = hybrid::trending(w.n_items, train.1.iter().map(|e| (e.item, e.day)), o.popularity_half_life_days);
    let freshness = hybrid::freshness(&w.created_day, o.freshness_half_life_days);
    // The baseline: distinct training users per post.
    let counts = crate::eval::popularity(&ui);
    let segments = Segments::build(&w.key_dict, &w.keys, &ui);
    let mut from_item = vec![None; w.n_items];
    for (d, i) in w.to_item.iter().enumerate() {
        if let Some(i) = i {
            from_item[*i as usize] = Some(d as u32);
        }
    }
    // Creators per post, as the extension passes them (user index as the id, as for followees).
    let mut owners = vec![i64::MIN; w.n_items];
    for u in 0..w.n_users {
        for &i in &w.owned[w.own_ptr[u]..w.own_ptr[u + 1]] {
            owners[i as usize] = u as i64;
        }
    }
    let cat = Catalog {
        factors: m.factors,
        item_factors: &m.item_factors,
        gram: &gram,
        alpha: quiet.alpha,
        quantized: None,
        tfidf: w.tfidf.as_ref(),
        to_item: &w.to_item,
        from_item: &from_item,
        popularity: &popularity,
        freshness: &freshness,
        segments: &segments,
        owners: &owners,
        graph: graph.as_ref(),
    };
    let mut users: Vec<usize> = (0..w.n_users).filter(|&u| !truth[u].is_empty()).collect();
    Rng::new(cfg.seed ^ 0x5EED).shuffle(&mut users);
    users.truncate(cfg.max_users);
    users.sort_unstable();
    let unit = Weights::from_array([1.0; 7]);
    let mut cases: Vec<Case> = Vec::with_capacity(users.len());
    for block in users.chunks(CHECK_USERS) {
        progress.check()?;
        cases.extend(pool.install(|| score_cases(block, &train, &recent, w, &cat, o, &unit, cfg, &truth, &cold, &counts, &popularity, &freshness)));
    }
    let cold_users = cases.iter().filter(|c| c.cold).count();
    Ok(Prepared { n_items: w.n_items, warm_users: cases.len() - cold_users, cold_users, cases, k: cfg.k })
}

/// Forwards the checks of an inner ALS run but not its per-iteration reports (a tuning split's
/// sweeps are not the model's).
struct Quiet<'a>(&'a mut dyn Progress);

impl Progress for Quiet<'_> {
    fn check(&mut self) -> Result<(), CoreError> {
        self.0.check()
    }
}

/// The candidates and their unit-weight parts for a block of users (in parallel).
#[allow(clippy::too_many_arguments)]
fn score_cases(
    users: &[usize],
    train: &(Vec<usize>, Vec<Event>),
    recent: &(Vec<usize>, Vec<Event>),
    w: &World,
    cat: &Catalog<'_>,
    o: &HybridOptions,
    unit: &Weights,
    cfg: &EvalConfig,
    truth: &[HashSet<u32>],
    cold: &[bool],
    counts: &[f32],
    popularity: &[f32],
    freshness: &[f32],
) -> Vec<Case> {
    {
        users
            .par_iter()
            .map(|&u| {
                let input = user_input(train, recent, w, u);
                let s = hybrid::score(cat, &input, o, unit);
                let seen: HashSet<u32> = input.history.iter().map(|e| e.item).collect();
                let n = w.n_items;
                let mut cand: HashSet<u32> = HashSet::new();
                let k = cfg.pool;
                if !s.als.is_empty() {
                    cand.extend(top_indices(n, |i| s.als[i], &seen, k));
                }
                if !s.content.is_empty() {
                    cand.extend(top_indices(n, |i| s.content[i], &seen, k));
                }
                if !s.graph.is_empty() {
                    cand.extend(top_indices(n, |i| s.graph[i], &seen, k));
                }
                cand.extend(top_indices(n, |i| popularity[i], &seen, k));
                if !freshness.is_empty() {
                    cand.extend(top_indices(n, |i| freshness[i], &seen, k));
                }
                for map in [&s.social, &s.demographic] {
                    let mut t = TopK::new(k);
                    for (&i, &v) in map.iter() {
                        if !seen.contains(&i) {
                            t.push(Scored { score: v, id: i as i64, index: i });
                        }
                    }
                    cand.extend(t.into_sorted().into_iter().map(|x| x.index));
                }
                let mut cands: Vec<(u32, [f32; 7])> = cand
                    .into_iter()
                    .map(|i| {
                        let p = s.parts(cat, i);
                        // The demotion scales the total, so it can be folded into each part
                        // and still apply under any weights.
                        let keep = 1.0 - s.penalty(i);
                        (i, [p.als * keep, p.content * keep, p.social * keep, p.popularity * keep, p.freshness * keep, p.demographic * keep, p.graph * keep])
                    })
                    .collect();
                cands.sort_by_key(|c| c.0);
                let baseline_top = top_indices(n, |i| counts[i], &seen, cfg.k);
                Case { baseline: user_metrics(&baseline_top, &truth[u], cfg.k), baseline_top, cold: cold[u], cands, truth: truth[u].clone() }
            })
            .collect()
    }
}

/// The request-time view of user `u`: training events, followees (and their training
/// events, most recent first, capped), items they own, demographics.
fn user_input(train: &(Vec<usize>, Vec<Event>), recent: &(Vec<usize>, Vec<Event>), w: &World, u: usize) -> UserInput {
    let mut followees = vec![];
    for &(f, mutual) in w.follows[w.fo_ptr[u]..w.fo_ptr[u + 1]].iter().take(MAX_FOLLOWEES) {
        let events = recent.1[recent.0[f as usize]..recent.0[f as usize + 1]].to_vec();
        let owned = w.owned[w.own_ptr[f as usize]..w.own_ptr[f as usize + 1]].to_vec();
        followees.push(Followee { id: f as i64, mutual, second_hop: false, followers: w.followers[f as usize], events, owned });
    }
    UserInput {
        history: train.1[train.0[u]..train.0[u + 1]].to_vec(),
        unknown_history: 0,
        followees,
        segments: w.keys[u].iter().filter(|&&k| k != 0).map(|&k| w.key_dict[k as usize].clone()).collect(),
    }
}

impl Prepared {
    pub fn evaluate(&self, weights: &Weights) -> Outcome {
        let wa = weights.to_array();
        let mut warm = MetricsAcc::default();
        let mut cold = MetricsAcc::default();
        let mut all = MetricsAcc::default();
        let mut covered = vec![false; self.n_items];
        let mut ndcg = 0.0;
        for c in &self.cases {
            let mut t = TopK::new(self.k);
            for (i, p) in &c.cands {
                let s: f32 = p.iter().zip(&wa).map(|(a, b)| a * b).sum();
                if s > 0.0 {
                    t.push(Scored { score: s, id: *i as i64, index: *i });
                }
            }
            let ranked: Vec<u32> = t.into_sorted().into_iter().map(|s| s.index).collect();
            let m = user_metrics(&ranked, &c.truth, self.k);
            ranked.iter().for_each(|&i| covered[i as usize] = true);
            all.add(&m);
            ndcg += m.ndcg;
            if c.cold {
                cold.add(&m)
            } else {
                warm.add(&m)
            }
        }
        Outcome {
            warm: warm.mean(),
            cold: cold.mean(),
            ndcg: ndcg / self.cases.len().max(1) as f64,
            all: all.mean(),
            coverage: covered.iter().filter(|c| **c).count() as f64 / self.n_items.max(1) as f64,
        }
    }

    /// The popularity baseline (distinct training users per post, training posts removed).
    pub fn baseline(&self) -> Outcome {
        let mut warm = MetricsAcc::default();
        let mut cold = MetricsAcc::default();
        let mut all = MetricsAcc::default();
        let mut covered = vec![false; self.n_items];
        for c in &self.cases {
            all.add(&c.baseline);
            if c.cold {
                cold.add(&c.baseline)
            } else {
                warm.add(&c.baseline)
            }
            c.baseline_top.iter().for_each(|&i| covered[i as usize] = true);
        }
        let all = all.mean();
        Outcome {
            warm: warm.mean(),
            cold: cold.mean(),
            ndcg: all.ndcg,
            all,
            coverage: covered.iter().filter(|c| **c).count() as f64 / self.n_items.max(1) as f64,
        }
    }
}

/// Weights with every component but `keep` set to 0 (e.g. ALS alone).
pub fn only(keep: &[&str]) -> Weights {
    let mut w = Weights::from_array([0.0; 7]);
    for k in keep {
        if let Some(x) = w.get_mut(k) {
            *x = 1.0;
        }
    }
    w
}

/// Convenience for tests and benches: NDCG@k of a few weight settings on one split.
pub fn compare(
    w: &World,
    als_opts: &AlsOptions,
    o: &HybridOptions,
    cfg: &EvalConfig,
    settings: &[(&str, Weights)],
) -> Result<HashMap<String, Outcome>, CoreError> {
    let pool = als::pool(0, None)?;
    let p = prepare(w, als_opts, o, cfg, &pool)?;
    Ok(settings.iter().map(|(n, ws)| (n.to_string(), p.evaluate(ws))).collect())
}
