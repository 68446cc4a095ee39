//! An app's data in memory (interactions with times, follows, demographics, post text), and
//! the offline evaluation of the hybrid on it: a seeded split, ALS on the training part, the
//! same [`hybrid::score`] the extension serves with, and NDCG@k per weight setting. Loaders are
//! in `datasets`, weight tuning (`"tune": true`) in `tuning`.
use crate::als::{self, AlsOptions, NoProgress, Progress};
use crate::csr::Csr;
use crate::eval::{popularity as popularity_counts, rank, Metrics, Ranked};
use crate::hybrid::{self, Catalog, Event, Followee, HybridOptions, Segments, UserInput, Weights};
use crate::ids::RowMap;
use crate::rng::Rng;
use crate::split::{self, Holdout};
use crate::tfidf::Tfidf;
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

    /// Content row -> model item and its inverse, and each post's creator as the extension
    /// passes them (the user index as the id, as for followees; `i64::MIN` = unknown).
    fn item_maps(&self) -> (RowMap, RowMap, Vec<i64>) {
        let to_item = RowMap::collect(self.to_item.iter().copied());
        let from_item = to_item.inverse(self.n_items);
        let mut owners = vec![i64::MIN; self.n_items];
        for u in 0..self.n_users {
            for &i in &self.owned[self.own_ptr[u]..self.own_ptr[u + 1]] {
                owners[i as usize] = u as i64;
            }
        }
        (to_item, from_item, owners)
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
    /// The popularity baseline's list (distinct training users per post).
    baseline: Vec<u32>,
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

/// Splits `w`, trains ALS on the training part and scores the sampled users.
pub fn prepare(w: &World, als_opts: &AlsOptions, o: &HybridOptions, cfg: &EvalConfig, pool: &rayon::ThreadPool) -> Result<Prepared, CoreError> {
    prepare_with(w, als_opts, o, cfg, pool, &mut NoProgress)
}

/// Users scored between two progress checks while a split is prepared.
const CHECK_USERS: usize = 128;

/// The split of `w` under `cfg`: training events (in `World::events` order), each user's
/// held-out posts and which users are cold (their whole history held out; they keep follows
/// and demographics). Warm users hold out distinct posts by [`split::held_out`], the split
/// [`split::holdout`] makes of a matrix.
fn split_events(w: &World, cfg: &EvalConfig) -> (Vec<(u32, Event)>, Vec<HashSet<u32>>, Vec<bool>) {
    let mut rng = Rng::new(cfg.seed);
    let cold: Vec<bool> = (0..w.n_users).map(|_| rng.next_f64() < cfg.cold_fraction).collect();
    let how = if cfg.folds >= 2 { Holdout::Fold { folds: cfg.folds, fold: cfg.fold } } else { Holdout::Fraction(cfg.test_fraction) };
    let mut train_ev: Vec<(u32, Event)> = Vec::with_capacity(w.events.len());
    let mut truth: Vec<HashSet<u32>> = vec![HashSet::new(); w.n_users];
    for u in 0..w.n_users {
        let ev = w.user_events(u);
        let mut items: Vec<u32> = ev.iter().map(|e| e.item).collect();
        items.sort_unstable();
        items.dedup();
        let test: HashSet<u32> = if cold[u] {
            items.into_iter().collect()
        } else {
            items.iter().zip(split::held_out(items.len(), u, cfg.seed, how)).filter(|(_, t)| *t).map(|(i, _)| *i).collect()
        };
        train_ev.extend(ev.iter().filter(|e| !test.contains(&e.item)).map(|e| (u as u32, *e)));
        truth[u] = test;
    }
    (train_ev, truth, cold)
}

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
    let (train_ev, truth, cold) = split_events(w, cfg);
    // The training events grouped by user (CSR over users), as `World::events` holds them.
    let train = grouped(w.n_users, &train_ev);
    // Followees' engagement as the extension stores it at training time.
    let recent = hybrid::recent_events(w.n_users, train_ev.iter().copied(), hybrid::SOCIAL_EVENTS, |_| true);
    let r: Vec<u32> = train_ev.iter().map(|(u, _)| *u).collect();
    let c: Vec<u32> = train_ev.iter().map(|(_, e)| e.item).collect();
    let v: Vec<f32> = train_ev.iter().map(|(_, e)| e.weight).collect();
    let ui = Csr::from_triplets(w.n_users, w.n_items, &r, &c, &v);
    drop((train_ev, r, c, v));
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
    let segments = Segments::build(&w.key_dict, &w.keys, &ui);
    let (to_item, from_item, owners) = w.item_maps();
    let cat = Catalog {
        factors: m.factors,
        item_factors: &m.item_factors,
        gram: &gram,
        alpha: quiet.alpha,
        quantized: None,
        tfidf: w.tfidf.as_ref(),
        to_item: &to_item,
        from_item: &from_item,
        popularity: &popularity,
        freshness: &freshness,
        segments: &segments,
        owners: &owners,
        graph: graph.as_ref(),
        ivf: None,
    };
    let sc = Scoring { w, cat: &cat, o, cfg, train: &train, recent: &recent, truth: &truth, cold: &cold, counts: popularity_counts(&ui) };
    let mut users: Vec<usize> = (0..w.n_users).filter(|&u| !truth[u].is_empty()).collect();
    Rng::new(cfg.seed ^ 0x5EED).shuffle(&mut users);
    users.truncate(cfg.max_users);
    users.sort_unstable();
    let mut cases: Vec<Case> = Vec::with_capacity(users.len());
    for block in users.chunks(CHECK_USERS) {
        progress.check()?;
        cases.extend(pool.install(|| block.par_iter().map(|&u| sc.case(u)).collect::<Vec<_>>()));
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

/// What scoring one evaluated user needs: the catalogue over the training split and the split.
struct Scoring<'a> {
    w: &'a World,
    cat: &'a Catalog<'a>,
    o: &'a HybridOptions,
    cfg: &'a EvalConfig,
    train: &'a (Vec<usize>, Vec<Event>),
    recent: &'a (Vec<usize>, Vec<Event>),
    truth: &'a [HashSet<u32>],
    cold: &'a [bool],
    /// The popularity baseline's scores.
    counts: Vec<f32>,
}

impl Scoring<'_> {
    /// User `u`'s candidates (the best `cfg.pool` of each component, seen posts left out) with
    /// their unit-weight parts, and the baseline's list.
    fn case(&self, u: usize) -> Case {
        let input = user_input(self.train, self.recent, self.w, u);
        let s = hybrid::score(self.cat, &input, self.o, &Weights::from_array([1.0; 7]));
        let seen: HashSet<u32> = input.history.iter().map(|e| e.item).collect();
        let seen = |i: u32| seen.contains(&i);
        let (n, pool) = (self.w.n_items, self.cfg.pool);
        let dense = |v: &[f32], k: usize| rank((0..n).map(|i| (i as u32, v[i])), seen, 0.0, k);
        let mut cand: HashSet<u32> = HashSet::new();
        for v in [&s.als[..], &s.content, &s.graph, self.cat.popularity, self.cat.freshness] {
            if !v.is_empty() {
                cand.extend(dense(v, pool));
            }
        }
        for map in [&s.social, &s.demographic] {
            cand.extend(rank(map.iter().map(|(&i, &v)| (i, v)), seen, f32::NEG_INFINITY, pool));
        }
        let mut cands: Vec<(u32, [f32; 7])> = cand
            .into_iter()
            .map(|i| {
                let p = s.parts(self.cat, i);
                // The demotion scales the total, so it can be folded into each part and still
                // apply under any weights.
                let keep = 1.0 - s.penalty(i);
                (i, [p.als * keep, p.content * keep, p.social * keep, p.popularity * keep, p.freshness * keep, p.demographic * keep, p.graph * keep])
            })
            .collect();
        cands.sort_by_key(|c| c.0);
        Case { baseline: dense(&self.counts, self.cfg.k), cold: self.cold[u], cands, truth: self.truth[u].clone() }
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
    /// Every evaluated user ranked under `weights` (fused scores above 0, as a feed serves).
    pub fn evaluate(&self, weights: &Weights) -> Outcome {
        let wa = weights.to_array();
        let lists: Vec<Vec<u32>> =
            self.cases.iter().map(|c| rank(c.cands.iter().map(|(i, p)| (*i, p.iter().zip(&wa).map(|(a, b)| a * b).sum())), |_| false, 0.0, self.k)).collect();
        self.outcome(lists.iter().map(|l| l.as_slice()))
    }

    /// The popularity baseline (distinct training users per post, training posts removed).
    pub fn baseline(&self) -> Outcome {
        self.outcome(self.cases.iter().map(|c| c.baseline.as_slice()))
    }

    /// The metrics of one ranked list per case, overall and for warm and cold users.
    fn outcome<'a>(&'a self, lists: impl Iterator<Item = &'a [u32]>) -> Outcome {
        let r = Ranked::score(self.n_items, self.k, lists.zip(self.cases.iter().map(|c| &c.truth)));
        let all = r.mean();
        Outcome { warm: r.mean_of(|j| !self.cases[j].cold), cold: r.mean_of(|j| self.cases[j].cold), ndcg: all.ndcg, all, coverage: r.coverage }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The hybrid's evaluation splits events exactly as `split::holdout` splits the matrix of
    /// the same users' distinct posts, for the fraction split and for every fold.
    #[test]
    fn event_split_is_the_matrix_split() {
        let w = World::from_synth(&crate::synth::generate(&crate::synth::SynthConfig::new(7, 300, 200, 3_000)));
        let r: Vec<u32> = (0..w.n_users).flat_map(|u| w.user_events(u).iter().map(move |_| u as u32)).collect();
        let c: Vec<u32> = w.events.iter().map(|e| e.item).collect();
        let m = Csr::from_triplets(w.n_users, w.n_items, &r, &c, &vec![1.0; r.len()]);
        let (_, test) = split::holdout(&m, 0.2, 42);
        let (train_ev, truth, cold) = split_events(&w, &EvalConfig::default());
        assert!(cold.iter().all(|c| !c));
        for (u, held_out) in truth.iter().enumerate() {
            let mut t: Vec<u32> = held_out.iter().copied().collect();
            t.sort_unstable();
            assert_eq!(t, test.row(u).0, "user {u}");
        }
        assert!(train_ev.iter().all(|(u, e)| !truth[*u as usize].contains(&e.item)));
        let mut held = vec![0usize; w.n_users];
        for fold in 0..3 {
            let (_, truth, _) = split_events(&w, &EvalConfig { folds: 3, fold, ..Default::default() });
            for u in 0..w.n_users {
                let pos = split::held_out(m.row(u).0.len(), u, 42, Holdout::Fold { folds: 3, fold });
                let want: Vec<u32> = m.row(u).0.iter().zip(pos).filter(|(_, t)| *t).map(|(i, _)| *i).collect();
                let mut t: Vec<u32> = truth[u].iter().copied().collect();
                t.sort_unstable();
                assert_eq!(t, want);
                held[u] += t.len();
            }
        }
        // Every post of a user with two or more is held out in exactly one fold.
        assert!((0..w.n_users).all(|u| held[u] == if m.row(u).0.len() >= 2 { m.row(u).0.len() } else { 0 }));
    }
}
