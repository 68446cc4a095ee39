//! The hybrid scorer: ALS, content, social, popularity, freshness and demographic components,
//! each scaled to [0, 1], blended with weights.
//!
//! Everything here is plain data in, plain data out. The extension fills a [`UserInput`] from
//! the app's tables at request time (history, followees and their engagement, demographics);
//! evaluation and weight tuning ([`World`]) fill it from memory. Both then call [`score`], so
//! what is tuned and tested is exactly what is served.
//!
//! Components for one user u and post i (all non-negative, then divided by their maximum over
//! the catalogue so each lies in [0, 1]):
//! - als: the fold-in preference x_u·y_i (negative values count as 0);
//! - content: cosine between the post's TF-IDF row and the user's profile, the recency-decayed,
//!   weight-scaled centroid of the posts they engaged with (top `profile_terms` terms);
//! - social: Σ over followees f of tie(f)·damp(f)·Σ over f's engagements with i of
//!   ln(1 + weight)·decay(age), plus `owner_weight`·tie·damp when f owns i; tie is
//!   `mutual_weight` for a mutual follow, 1 for a one-way follow and `second_hop` for
//!   followees of followees; damp(f) = (1 + followers of f)^-`degree_damping`;
//! - popularity: time-decayed engagement count at training time (trending), already in [0, 1];
//! - freshness: 2^(-age / half-life) of the post's creation time relative to the newest post;
//! - demographic: share of the user's segments (age band, gender, location) who engaged with
//!   the post, times the square root of its lift over everyone (capped at 10), summed over
//!   the segments the user is in.
//!
//! Negative feedback: the posts whose summed weight in the user's history is below 0 (a
//! dislike outweighing any views) form the disliked set D (at most [`NEGATIVE_ITEMS`], most
//! recent first). They are left out of the fold-in and the content profile, and every post i
//! gets a penalty p_i = min(1, `negative_weight`·max(als⁻_i, content⁻_i, owner⁻_i)): als⁻ is
//! the fold-in of D (|weight| as if liked) scored against i, content⁻ the cosine of i with the
//! content profile of D, each divided by its maximum, and owner⁻ is 1 when i's creator made a
//! post in D. The fused score is multiplied by 1 − p_i, so posts like the ones the user
//! rejected, and the same creators' posts, sink instead of filling the feed.
//!
//! Cold start: a user with fewer than `cold_start_threshold` interactions has the als and
//! content weights scaled by n / threshold and gets the demographic component; above it the
//! demographic weight is 0 (their own history says more). Ages for decay are measured from the
//! newest event of the set being decayed, so data replayed from the past behaves as if live.
use crate::als::FoldIn;
use crate::csr::Csr;
use crate::fasthash::IndexMap;
use crate::ids::RowMap;
use crate::kernels::{dot_dispatch, score_all, QuantizedRows};
use crate::tfidf::Tfidf;
use crate::topk::Scored;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// The graph component's default weight (chosen on ML-100K and the synthetic sets, BENCHMARKS.md).
pub const DEFAULT_GRAPH_WEIGHT: f32 = 1.0;

pub const COMPONENTS: [&str; 7] = ["als", "content", "social", "popularity", "freshness", "demographic", "graph"];

/// Fusion weights, one per component. Only ratios matter.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Weights {
    pub als: f32,
    pub content: f32,
    pub social: f32,
    pub popularity: f32,
    pub freshness: f32,
    pub demographic: f32,
    /// The item-item graph (EASE or RP3beta). Models stored before it existed read 0.
    #[serde(default)]
    pub graph: f32,
}

impl Default for Weights {
    fn default() -> Self {
        // Chosen on seeded synthetic data and ML-100K, two splits each (examples/hybrid_eval.rs --sweep,
        // BENCHMARKS.md): the item graph and ALS share the collaborative part, social leads
        // where there are follows, content and the priors refine and break ties. ALS 1.5 since
        // its defaults make it as strong as EASE on ML-100K (issue 11; was 0.5).
        Weights { als: 1.5, content: 0.3, social: 1.5, popularity: 0.1, freshness: 0.05, demographic: 0.3, graph: DEFAULT_GRAPH_WEIGHT }
    }
}

impl Weights {
    pub fn to_array(&self) -> [f32; 7] {
        [self.als, self.content, self.social, self.popularity, self.freshness, self.demographic, self.graph]
    }
    pub fn from_array(a: [f32; 7]) -> Weights {
        Weights { als: a[0], content: a[1], social: a[2], popularity: a[3], freshness: a[4], demographic: a[5], graph: a[6] }
    }
    pub fn get_mut(&mut self, name: &str) -> Option<&mut f32> {
        Some(match name {
            "als" => &mut self.als,
            "content" => &mut self.content,
            "social" => &mut self.social,
            "popularity" => &mut self.popularity,
            "freshness" => &mut self.freshness,
            "demographic" => &mut self.demographic,
            "graph" => &mut self.graph,
            _ => return None,
        })
    }
}

/// Everything of the hybrid that is not a weight. Stored with the model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HybridOptions {
    pub weights: Weights,
    /// Tie strength of a mutual follow (a one-way follow is 1).
    pub mutual_weight: f32,
    /// Exponent of the degree damping (1 + followers)^-d; 0 = off.
    pub degree_damping: f32,
    /// Tie strength of followees of followees; 0 = the second hop is off.
    pub second_hop: f32,
    /// Credit for a post owned by a followee, in units of one engagement's ln(1 + weight).
    pub owner_weight: f32,
    pub social_half_life_days: f32,
    pub content_half_life_days: f32,
    pub freshness_half_life_days: f32,
    /// Half-life of the trending popularity computed at training time.
    pub popularity_half_life_days: f32,
    /// Users with fewer interactions than this get the cold-start blend.
    pub cold_start_threshold: usize,
    /// Terms kept in a user's content profile.
    pub profile_terms: usize,
    /// Strength of the demotion by negative feedback (0 = off, 1 = a post as close to the
    /// disliked ones as they are to themselves scores 0). Models stored before it read as 1.
    #[serde(default = "default_negative_weight")]
    pub negative_weight: f32,
    /// How the item-item graph is built at training time. Models stored before it read "off".
    #[serde(default = "GraphOptions::off")]
    pub graph: GraphOptions,
}

/// Which item-item graph to build: EASE (dense closed form, small catalogues) or RP3beta
/// (sparse, any size); "auto" picks EASE when its dense solve fits the memory budget and the
/// catalogue has at most `ease_max_items` posts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GraphOptions {
    pub kind: GraphKind,
    /// Neighbours kept per post (at least; see `ease_edges`).
    pub neighbours: usize,
    /// EASE only: a post keeps more than `neighbours` while the graph has at most this many
    /// edges in all (`graph::ease_neighbours`), so small catalogues keep (nearly) dense rows.
    /// 0 = exactly `neighbours`, which models stored before it read.
    #[serde(default)]
    pub ease_edges: usize,
    pub ease_lambda: f32,
    pub ease_max_items: usize,
    pub rp3_alpha: f32,
    pub rp3_beta: f32,
    /// EASE only: edges into post j are divided by (users of j)^`ease_beta`
    /// (`graph::discount_popular`). 0 = plain EASE, which models stored before it read.
    #[serde(default)]
    pub ease_beta: f32,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GraphKind {
    Auto,
    Ease,
    Rp3beta,
    Off,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            kind: GraphKind::Auto,
            neighbours: crate::graph::DEFAULT_K,
            ease_edges: crate::graph::DEFAULT_EASE_EDGES,
            ease_lambda: crate::graph::DEFAULT_EASE_LAMBDA,
            ease_max_items: 20_000,
            rp3_alpha: crate::graph::DEFAULT_RP3_ALPHA,
            rp3_beta: crate::graph::DEFAULT_RP3_BETA,
            ease_beta: crate::graph::DEFAULT_EASE_BETA,
        }
    }
}

impl GraphOptions {
    fn off() -> GraphOptions {
        GraphOptions { kind: GraphKind::Off, ..GraphOptions::default() }
    }

    /// The algorithm to run for `items` posts under a memory budget (None = no graph).
    pub fn resolve(&self, items: usize, budget: u64) -> Option<GraphKind> {
        match self.kind {
            GraphKind::Off => None,
            GraphKind::Auto if items <= self.ease_max_items && crate::graph::ease_bytes(items) <= budget => Some(GraphKind::Ease),
            GraphKind::Auto => Some(GraphKind::Rp3beta),
            k => Some(k),
        }
    }

    /// Builds the graph over the users × items matrix (`check` between blocks, on the caller's
    /// thread).
    pub fn build(
        &self,
        kind: GraphKind,
        ui: &crate::csr::Csr,
        pool: &rayon::ThreadPool,
        check: &mut dyn FnMut() -> Result<(), crate::error::CoreError>,
    ) -> Result<Option<crate::graph::ItemGraph>, crate::error::CoreError> {
        if ui.cols < 2 {
            return Ok(None);
        }
        let clamp = |k: usize| k.min(ui.cols - 1).max(1);
        let k = clamp(self.neighbours);
        Ok(Some(match kind {
            GraphKind::Ease => {
                let mut g =
                    crate::graph::ease(ui, self.ease_lambda, clamp(crate::graph::ease_neighbours(self.neighbours, self.ease_edges, ui.cols)), pool, check)?;
                crate::graph::discount_popular(&mut g, ui, self.ease_beta);
                g
            }
            GraphKind::Rp3beta => crate::graph::rp3beta(ui, self.rp3_alpha, self.rp3_beta, k, pool, check)?,
            GraphKind::Auto | GraphKind::Off => return Ok(None),
        }))
    }
}

fn default_negative_weight() -> f32 {
    1.0
}

impl Default for HybridOptions {
    fn default() -> Self {
        HybridOptions {
            weights: Weights::default(),
            mutual_weight: 2.0,
            degree_damping: 0.3,
            second_hop: 0.0,
            owner_weight: 1.0,
            social_half_life_days: 14.0,
            content_half_life_days: 30.0,
            freshness_half_life_days: 7.0,
            popularity_half_life_days: 7.0,
            cold_start_threshold: 5,
            profile_terms: 32,
            negative_weight: default_negative_weight(),
            graph: GraphOptions::default(),
        }
    }
}

/// One interaction: model item, summed weight, time in days since the Unix epoch (NaN = unknown).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    pub item: u32,
    pub weight: f32,
    pub day: f32,
}

/// A followee as seen from one user.
#[derive(Clone, Debug, Default)]
pub struct Followee {
    /// The followee's user id (for explanations).
    pub id: i64,
    pub mutual: bool,
    pub second_hop: bool,
    /// Followers of this followee (for damping).
    pub followers: u32,
    pub events: Vec<Event>,
    /// Model items this followee owns.
    pub owned: Vec<u32>,
}

/// What is known about one user at request time.
#[derive(Clone, Debug, Default)]
pub struct UserInput {
    /// The user's interactions with model items.
    pub history: Vec<Event>,
    /// Interactions with posts unknown to the model count for the cold-start threshold.
    pub unknown_history: usize,
    pub followees: Vec<Followee>,
    /// Demographic segment keys (see [`segment_keys`]).
    pub segments: Vec<String>,
}

/// Demographic segments: per key, the posts its users engaged with most (item, score).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Segments {
    pub lists: HashMap<String, Vec<(u32, f32)>>,
}

/// Posts kept per segment.
pub const SEGMENT_TOP: usize = 300;
/// Segments with fewer users are not used (noise, and privacy).
pub const SEGMENT_MIN_USERS: usize = 3;

/// The segment keys of a user: age band, gender and location, normalised.
pub fn segment_keys(age: Option<f64>, gender: Option<&str>, location: Option<&str>) -> Vec<String> {
    let mut k = vec![];
    if let Some(a) = age.filter(|a| a.is_finite() && *a >= 0.0) {
        let band = match a as i64 {
            0..=17 => "<18",
            18..=24 => "18-24",
            25..=34 => "25-34",
            35..=44 => "35-44",
            45..=54 => "45-54",
            _ => "55+",
        };
        k.push(format!("age:{band}"));
    }
    for (name, v) in [("gender", gender), ("location", location)] {
        if let Some(v) = v.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()) {
            k.push(format!("{name}:{v}"));
        }
    }
    k
}

impl Segments {
    /// Whether every listed post is one of `items` model items and every score finite (a
    /// stored model's lists are checked with this before they are served).
    pub fn fits(&self, items: usize) -> bool {
        self.lists.values().flatten().all(|&(i, v)| (i as usize) < items && v.is_finite())
    }

    /// The lists as flat arrays: (key, start, length) sorted by key, then every list's posts and
    /// scores one after another. A reader takes the lists of one user's keys from these
    /// ([`Segments::unpack`]) without parsing the others.
    pub fn pack(&self) -> (Vec<(String, u32, u32)>, Vec<u32>, Vec<f32>) {
        let mut keys: Vec<&String> = self.lists.keys().collect();
        keys.sort();
        let (mut index, mut items, mut scores) = (Vec::with_capacity(keys.len()), vec![], vec![]);
        for k in keys {
            let l = &self.lists[k];
            index.push((k.clone(), items.len() as u32, l.len() as u32));
            items.extend(l.iter().map(|x| x.0));
            scores.extend(l.iter().map(|x| x.1));
        }
        (index, items, scores)
    }

    /// The lists of `wanted` keys out of [`Segments::pack`]'s arrays (`index` as it wrote it,
    /// sorted by key), checked against `n` model items as [`Segments::fits`] does. None when
    /// the arrays do not hold what the index says (a damaged store).
    pub fn unpack(index: &[(String, u32, u32)], items: &[u32], scores: &[f32], wanted: &[String], n: usize) -> Option<Segments> {
        let mut lists = HashMap::new();
        for k in wanted {
            let Ok(at) = index.binary_search_by(|e| e.0.as_str().cmp(k)) else { continue };
            let (_, start, len) = &index[at];
            let range = *start as usize..(*start as usize).checked_add(*len as usize)?;
            let l: Vec<(u32, f32)> = items.get(range.clone())?.iter().copied().zip(scores.get(range)?.iter().copied()).collect();
            lists.insert(k.clone(), l);
        }
        let s = Segments { lists };
        s.fits(n).then_some(s)
    }

    /// `keys[u]` are the segment keys of row u of `ui` (users × items), as codes into `dict`
    /// (code 0 = none).
    pub fn build(dict: &[String], keys: &[[u32; 3]], ui: &Csr) -> Segments {
        let n_all = ui.rows.max(1) as f32;
        let mut global = vec![0f32; ui.cols];
        for &i in &ui.indices {
            global[i as usize] += 1.0;
        }
        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for (u, ks) in keys.iter().enumerate().take(ui.rows) {
            for &k in ks.iter().filter(|&&k| k != 0) {
                if let Some(name) = dict.get(k as usize) {
                    members.entry(name.as_str()).or_default().push(u);
                }
            }
        }
        let mut lists = HashMap::new();
        let mut counts = vec![0f32; ui.cols];
        for (key, users) in members {
            if users.len() < SEGMENT_MIN_USERS {
                continue;
            }
            let mut touched = vec![];
            for &u in &users {
                for &i in ui.row(u).0 {
                    if counts[i as usize] == 0.0 {
                        touched.push(i);
                    }
                    counts[i as usize] += 1.0;
                }
            }
            let n_s = users.len() as f32;
            let mut top = crate::topk::TopK::new(SEGMENT_TOP);
            for &i in &touched {
                let c = counts[i as usize];
                let expected = global[i as usize] * n_s / n_all;
                let lift = ((c + 1.0) / (expected + 1.0)).min(10.0);
                let s = c / n_s * lift.sqrt();
                top.push(crate::topk::Scored { score: s, id: i as i64, index: i });
                counts[i as usize] = 0.0;
            }
            lists.insert(key.to_string(), top.into_sorted().into_iter().map(|s| (s.index, s.score)).collect());
        }
        Segments { lists }
    }
}

/// The model-wide side of scoring.
pub struct Catalog<'a> {
    pub factors: usize,
    pub item_factors: &'a [f32],
    /// YᵀY + λI.
    pub gram: &'a [f32],
    pub alpha: f32,
    /// int8 copy of the item factors for a faster approximate ALS scan (re-score exactly).
    pub quantized: Option<&'a QuantizedRows>,
    pub tfidf: Option<&'a Tfidf>,
    /// Content row → model item.
    pub to_item: &'a RowMap,
    /// Model item → content row.
    pub from_item: &'a RowMap,
    /// Per item, in [0, 1].
    pub popularity: &'a [f32],
    /// Per item, in [0, 1]; empty = unknown creation times.
    pub freshness: &'a [f32],
    pub segments: &'a Segments,
    /// Per item, its creator's user id (`i64::MIN` = unknown); empty = no owner information.
    pub owners: &'a [i64],
    /// Item → item graph over the trained items (None = not built).
    pub graph: Option<&'a crate::graph::ItemGraph>,
    /// The partition of the item factors for an exact ALS top-k without a full scan (None =
    /// scan every item).
    pub ivf: Option<&'a crate::ivf::Ivf>,
}

impl Catalog<'_> {
    pub fn items(&self) -> usize {
        self.popularity.len()
    }

    /// Document i is item i for every item (the documents stored in item order, as training
    /// stores them): content scores are then accumulated in item order directly.
    pub fn content_in_item_order(&self) -> bool {
        self.from_item.is_identity()
    }
}

/// Per-user component scores, before weighting.
#[derive(Clone, Debug, Default)]
pub struct Scores {
    /// The weights in force for this user (cold-start scaling applied).
    pub weights: Weights,
    /// Interactions the user has (model items or not).
    pub n_history: usize,
    /// The folded-in user vector (None without history).
    pub x: Option<Vec<f32>>,
    /// Its factorised system and the (item, weight) pairs it was built from, kept for
    /// explanations (the ALS evidence of any post is then one solve away).
    pub fold: Option<(FoldIn, Vec<(u32, f32)>)>,
    /// Dense ALS scores (empty when no history or zero weight, or `als_by_ivf`), possibly approximate.
    pub als: Vec<f32>,
    pub als_max: f32,
    /// The catalogue is partitioned: no dense ALS scores, `als_max` is exact, and the caller
    /// ranks with [`Scores::top_by_ivf`] (exact).
    pub als_by_ivf: bool,
    /// ALS is the only component in force (no other has weight and something to say).
    pub als_only: bool,
    /// With `als_by_ivf`: the user vector against the partition's centroids, shared by the
    /// walk for `als_max` and the walk for the page.
    pub probe: Option<crate::ivf::Probe>,
    pub content: Vec<f32>,
    pub content_max: f32,
    /// The user's TF-IDF profile (term, weight), for explanations.
    pub profile: Vec<(u32, f32)>,
    pub social: IndexMap<u32, f32>,
    pub social_max: f32,
    /// Direct followees who engaged with the post.
    pub social_people: IndexMap<u32, u32>,
    /// Posts owned by a direct followee.
    pub social_owned: IndexMap<u32, bool>,
    pub demographic: IndexMap<u32, f32>,
    pub demographic_max: f32,
    /// Dense item-graph scores (empty when no history, no graph or zero weight).
    pub graph: Vec<f32>,
    pub graph_max: f32,
    /// The posts whose `graph` entry was written, each once (every other entry is 0); None:
    /// not known, `graph` is read whole.
    pub graph_touched: Option<Vec<u32>>,
    /// Dense per-item penalty in [0, 1] from negative feedback (empty = none): the fused score
    /// is multiplied by 1 − penalty.
    pub negative: Vec<f32>,
    /// The disliked set behind it, as (item, |summed weight|, newest day), most recent first.
    pub disliked: Vec<Event>,
}

/// The dense part of the partition walk's bound, computed ahead ([`Scores::dense_bound`]).
#[derive(Clone, Debug)]
pub struct DenseBound {
    rest: Vec<f32>,
    /// Per cluster of the partition, the largest of its members' `rest`.
    cluster_max: Vec<f32>,
}

/// Why a post is demoted (see [`Scores::demotion`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Demotion {
    /// Its creator (this user id) made a post the user disliked.
    Creator(i64),
    /// It resembles this disliked post most.
    Similar(u32),
}

/// Contributions of each component to one post's fused score: per component its weight times
/// its scaled score (in the shape of [`Weights`], read through `Deref`: `parts.als`), and the
/// demotion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Parts {
    pub by: Weights,
    /// The demotion by negative feedback (<= 0): minus the sum of the others times the penalty.
    pub negative: f32,
}

impl Default for Parts {
    fn default() -> Self {
        Parts { by: Weights::from_array([0.0; 7]), negative: 0.0 }
    }
}

impl std::ops::Deref for Parts {
    type Target = Weights;
    fn deref(&self) -> &Weights {
        &self.by
    }
}

impl Parts {
    pub fn total(&self) -> f32 {
        self.by.to_array().iter().sum::<f32>() + self.negative
    }
    /// The component that contributes most (name as in [`COMPONENTS`]; the negative part is
    /// not one); None when all are 0.
    pub fn leading(&self) -> Option<&'static str> {
        let (i, best) = self.by.to_array().iter().enumerate().fold((0, 0f32), |(bi, b), (i, &x)| if x > b { (i, x) } else { (bi, b) });
        (best > 0.0).then_some(COMPONENTS[i])
    }
}

/// Approximate candidates re-scored exactly at most, to find the ALS maximum after an int8 scan.
const ALS_MAX_POOL: usize = 256;

/// Disliked posts used for the demotion (the most recent ones): bounds the fold-in and profile.
pub const NEGATIVE_ITEMS: usize = 50;

fn decay(age_days: f32, half_life: f32) -> f32 {
    if !age_days.is_finite() || half_life <= 0.0 {
        return 1.0;
    }
    (-(age_days.max(0.0)) / half_life * std::f32::consts::LN_2).exp()
}

fn newest(events: &[Event]) -> f32 {
    events.iter().map(|e| e.day).filter(|d| d.is_finite()).fold(f32::NEG_INFINITY, f32::max)
}

/// [`item_sums`] (and [`content_profile`] for terms) sums in an array when the items (terms)
/// span at most this many times the events.
const DENSE_SUM_SPAN: usize = 8;

fn strength(w: f32) -> f32 {
    (1.0 + w.max(0.0)).ln()
}

/// The history as (item, summed weight) for the fold-in, sorted by item.
pub fn fold_in_items(history: &[Event]) -> Vec<(u32, f32)> {
    let positive = |w: &f32| *w > 0.0 && w.is_finite();
    match item_sums(history) {
        // Items not in the history sum to 0 and are dropped with the non-positive sums.
        ItemSums::Dense(sums) => (0..sums.len() as u32).zip(sums).filter(|(_, w)| positive(w)).collect(),
        ItemSums::Sparse(sums) => {
            let mut v: Vec<(u32, f32)> = sums.into_iter().filter(|(_, w)| positive(w)).collect();
            v.sort_by_key(|x| x.0);
            v
        }
    }
}

/// Each history item's summed weight, added in history order.
enum ItemSums {
    /// Indexed by item (items not in the history: 0).
    Dense(Vec<f32>),
    /// In order of first appearance.
    Sparse(IndexMap<u32, f32>),
}

/// A long history over a small range of items (a heavy user: tens of thousands of events) is
/// summed in an array indexed by item; a short one in a map. Either way each item's weights
/// are added in history order: the same sums.
fn item_sums(history: &[Event]) -> ItemSums {
    let span = history.iter().map(|e| e.item as usize + 1).max().unwrap_or(0);
    if span <= history.len().saturating_mul(DENSE_SUM_SPAN) {
        let mut sums = vec![0f32; span];
        for e in history {
            sums[e.item as usize] += e.weight;
        }
        ItemSums::Dense(sums)
    } else {
        let mut sums: IndexMap<u32, f32> = IndexMap::default();
        for e in history {
            *sums.entry(e.item).or_insert(0.0) += e.weight;
        }
        ItemSums::Sparse(sums)
    }
}

impl ItemSums {
    /// The summed weight of `item` (0 for an item not in the history).
    fn get(&self, item: u32) -> f32 {
        match self {
            ItemSums::Dense(v) => v.get(item as usize).copied().unwrap_or(0.0),
            ItemSums::Sparse(m) => m.get(&item).copied().unwrap_or(0.0),
        }
    }
}

/// The disliked set: items whose summed weight is below 0, as (item, |sum|, newest day), most
/// recent first (unknown times last), then strongest, at most [`NEGATIVE_ITEMS`].
pub fn disliked_items(history: &[Event]) -> Vec<Event> {
    if !history.iter().any(|e| e.weight < 0.0) {
        return vec![];
    }
    let mut sums: IndexMap<u32, Event> = IndexMap::default();
    for e in history {
        let s = sums.entry(e.item).or_insert(Event { item: e.item, weight: 0.0, day: f32::NAN });
        s.weight += e.weight;
        if e.day > s.day || s.day.is_nan() {
            s.day = e.day;
        }
    }
    let mut v: Vec<Event> = sums.into_values().filter(|e| e.weight < 0.0 && e.weight.is_finite()).map(|e| Event { weight: -e.weight, ..e }).collect();
    let key = |d: f32| if d.is_nan() { f32::NEG_INFINITY } else { d };
    v.sort_by(|a, b| key(b.day).total_cmp(&key(a.day)).then(b.weight.total_cmp(&a.weight)).then(a.item.cmp(&b.item)));
    v.truncate(NEGATIVE_ITEMS);
    v
}

/// The user's content profile: top `terms` terms of Σ ln(1+w)·decay·row, L2-normalised. Posts
/// whose summed weight is not positive (disliked) are left out, as in the fold-in.
pub fn content_profile(cat: &Catalog<'_>, history: &[Event], half_life: f32, terms: usize) -> Vec<(u32, f32)> {
    let Some(t) = cat.tfidf else { return vec![] };
    let now = newest(history);
    // A long history (a heavy user: tens of thousands of events) sums into an array indexed by
    // term, a short one into a map, as item_sums does for items. Either way every sum adds its
    // terms in history order, and the result is sorted by a total order: the same profile.
    let dense_terms = t.postings.rows <= history.len().saturating_mul(DENSE_SUM_SPAN);
    // Only a history with negative events can have a post whose views a dislike cancels.
    let sums = history.iter().any(|e| e.weight < 0.0).then(|| item_sums(history));
    let rejected = |item: u32| sums.as_ref().is_some_and(|s| s.get(item) <= 0.0);
    let weighted = history.iter().filter(|e| !rejected(e.item)).filter_map(|e| {
        let row = cat.from_item.get(e.item as usize)?;
        let w = strength(e.weight) * decay(now - e.day, half_life);
        (w > 0.0).then(|| (t.docs.row(row as usize), w))
    });
    let mut p: Vec<(u32, f32)> = if dense_terms {
        let mut acc = vec![0f32; t.postings.rows];
        for ((ts, vs), w) in weighted {
            for (&term, &v) in ts.iter().zip(vs) {
                // A term outside the vocabulary (a damaged image) is left out.
                if let Some(a) = acc.get_mut(term as usize) {
                    *a += w * v;
                }
            }
        }
        (0..acc.len() as u32).zip(acc).filter(|x| x.1 > 0.0).collect()
    } else {
        let mut acc: IndexMap<u32, f32> = IndexMap::default();
        for ((ts, vs), w) in weighted {
            for (&term, &v) in ts.iter().zip(vs) {
                *acc.entry(term).or_insert(0.0) += w * v;
            }
        }
        acc.into_iter().filter(|x| x.1 > 0.0).collect()
    };
    p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    p.truncate(terms);
    let norm = p.iter().map(|x| x.1 * x.1).sum::<f32>().sqrt();
    if norm > 0.0 {
        p.iter_mut().for_each(|x| x.1 /= norm);
    }
    p.sort_by_key(|x| x.0);
    p
}

/// The reference time of the social component: the newest engagement of any followee.
pub fn social_now(f: &[Followee]) -> f32 {
    f.iter().map(|x| newest(&x.events)).fold(f32::NEG_INFINITY, f32::max)
}

/// The social component: (scores, direct followees per post, posts owned by a direct followee).
pub fn social_scores(f: &[Followee], o: &HybridOptions) -> (IndexMap<u32, f32>, IndexMap<u32, u32>, IndexMap<u32, bool>) {
    social_scores_at(f, o, social_now(f))
}

/// [`social_scores`] with ages measured from `now` (so one followee's share can be computed
/// alone and still add up to the whole).
pub fn social_scores_at(f: &[Followee], o: &HybridOptions, now: f32) -> (IndexMap<u32, f32>, IndexMap<u32, u32>, IndexMap<u32, bool>) {
    let mut acc: IndexMap<u32, f32> = IndexMap::default();
    let mut people: IndexMap<u32, u32> = IndexMap::default();
    let mut owned: IndexMap<u32, bool> = IndexMap::default();
    let mut seen: IndexMap<u32, usize> = IndexMap::default();
    for (n, fe) in f.iter().enumerate() {
        let tie = if fe.second_hop {
            o.second_hop
        } else if fe.mutual {
            o.mutual_weight
        } else {
            1.0
        };
        if tie <= 0.0 {
            continue;
        }
        let damp = if o.degree_damping > 0.0 { (1.0 + fe.followers as f32).powf(-o.degree_damping) } else { 1.0 };
        let w = tie * damp;
        for e in &fe.events {
            let s = w * strength(e.weight) * decay(now - e.day, o.social_half_life_days);
            if s > 0.0 && s.is_finite() {
                *acc.entry(e.item).or_insert(0.0) += s;
                if !fe.second_hop && seen.insert(e.item, n) != Some(n) {
                    *people.entry(e.item).or_insert(0) += 1;
                }
            }
        }
        for &p in &fe.owned {
            *acc.entry(p).or_insert(0.0) += w * o.owner_weight;
            if !fe.second_hop {
                owned.insert(p, true);
            }
        }
    }
    (acc, people, owned)
}

fn max_of<'a>(v: impl Iterator<Item = &'a f32>) -> f32 {
    v.fold(0f32, |m, &x| if x.is_finite() { m.max(x) } else { m })
}

/// [`max_of`] over a slice, with eight independent lanes so the compiler vectorises it (one
/// `maxss` chain over 100K posts was a fifth of a hybrid call). Non-finite values count as 0.
fn max_slice(v: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::has_avx2_fma() {
            // SAFETY: the CPU supports the enabled features (checked above).
            return unsafe { max_slice_avx2(v) };
        }
    }
    max_slice_impl(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn max_slice_avx2(v: &[f32]) -> f32 {
    max_slice_impl(v)
}

/// [`max_slice`] in sixteen lanes (two AVX registers, or four SSE ones).
#[inline(always)]
fn max_slice_impl(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            // NaN compares false; +inf is excluded explicitly; -inf is below the 0 start.
            *m = if x > *m && x < f32::INFINITY { x } else { *m };
        }
    }
    lanes.iter().chain(tail).fold(0f32, |m, &x| if x > m && x < f32::INFINITY { x } else { m })
}

/// Whether ALS alone decides the ranking for this user: every other component has weight 0 or
/// nothing to say (no content model, no graph, no followees, no segments, no dislikes), and
/// no priors (popularity, freshness).
pub fn als_alone(cat: &Catalog<'_>, user: &UserInput, o: &HybridOptions, w: &Weights) -> bool {
    (w.content == 0.0 || cat.tfidf.is_none())
        && (w.graph == 0.0 || cat.graph.is_none())
        && (w.social == 0.0 || user.followees.is_empty())
        && (w.demographic == 0.0 || user.segments.is_empty())
        && w.popularity == 0.0
        && (w.freshness == 0.0 || cat.freshness.is_empty())
        && (o.negative_weight == 0.0 || user.history.iter().all(|e| e.weight >= 0.0))
}

/// Computes every component for one user. `weights` are the weights in force (the model's or
/// the caller's); components whose weight is 0 are skipped.
pub fn score(cat: &Catalog<'_>, user: &UserInput, o: &HybridOptions, weights: &Weights) -> Scores {
    let mut s = score_history(cat, user, o, weights);
    score_people(&mut s, cat, user, o);
    s
}

/// The components that depend on the user's own history only (ALS fold-in, item graph,
/// content, negative feedback): [`score`] without the followees and the demographic lists,
/// which [`score_people`] adds. `user.followees` and `user.segments` are not read, so a caller
/// may compute this while it still reads them.
pub fn score_history(cat: &Catalog<'_>, user: &UserInput, o: &HybridOptions, weights: &Weights) -> Scores {
    let n = cat.items();
    let n_history = user.history.len() + user.unknown_history;
    let mut w = *weights;
    if n_history < o.cold_start_threshold {
        let scale = n_history as f32 / o.cold_start_threshold.max(1) as f32;
        w.als *= scale;
        w.content *= scale;
        w.graph *= scale;
    } else {
        w.demographic = 0.0;
    }
    let mut s = Scores { weights: w, n_history, ..Default::default() };
    let items = fold_in_items(&user.history);
    if !items.is_empty() {
        let f = cat.factors;
        let fi = FoldIn::new(cat.item_factors, f, cat.gram, &items, cat.alpha);
        let x = fi.x.clone();
        if let (true, Some(ivf)) = (w.als > 0.0, cat.ivf) {
            // The maximum over all items, exact, from the partition (no dense scores).
            let probe = ivf.probe(&x);
            s.als_max = ivf.top_probed(&probe, cat.item_factors, &[], &x, 0, &|_| false, &|d| d).1.max(0.0);
            s.probe = Some(probe);
            s.als_by_ivf = true;
        } else if w.als > 0.0 {
            (s.als, s.als_max) = als_dense(cat, &x);
        }
        s.x = Some(x);
        if w.graph > 0.0 {
            if let Some(g) = cat.graph {
                // EASE and RP3beta are defined on binary histories.
                let binary: Vec<(u32, f32)> = items.iter().map(|&(i, _)| (i, 1.0)).collect();
                // A history reaches a few hundred posts through the graph: its maximum and
                // its part of the walk's bound are taken over those only.
                let mut v = vec![0f32; n];
                let touched = g.add_scores(&binary, &mut v);
                s.graph_max = max_of(touched.iter().map(|&j| &v[j as usize]));
                s.graph = v;
                s.graph_touched = Some(touched);
            }
        }
        s.fold = Some((fi, items));
    }
    if w.content > 0.0 {
        if let Some(t) = cat.tfidf {
            s.profile = content_profile(cat, &user.history, o.content_half_life_days, o.profile_terms);
            if !s.profile.is_empty() {
                (s.content, s.content_max) = content_dense(cat, t, &s.profile);
            }
        }
    }
    // The demotion does not depend on the weights (it scales the fused total), so evaluation
    // can apply it under any weight setting.
    if o.negative_weight > 0.0 {
        s.disliked = disliked_items(&user.history);
        if !s.disliked.is_empty() {
            s.negative = penalties(cat, &s.disliked, o);
        }
    }
    s
}

/// Adds the followees' and the demographic lists' components to `s` (from
/// [`score_history`] for the same user, catalogue and options).
pub fn score_people(s: &mut Scores, cat: &Catalog<'_>, user: &UserInput, o: &HybridOptions) {
    let n = cat.items();
    let w = s.weights;
    if w.social > 0.0 && !user.followees.is_empty() {
        let (acc, people, owned) = social_scores(&user.followees, o);
        s.social_max = max_of(acc.values());
        s.social = acc;
        s.social_people = people;
        s.social_owned = owned;
    }
    if w.demographic > 0.0 {
        let mut acc: IndexMap<u32, f32> = IndexMap::default();
        for k in &user.segments {
            if let Some(list) = cat.segments.lists.get(k) {
                for &(i, v) in list {
                    if (i as usize) < n {
                        *acc.entry(i).or_insert(0.0) += v;
                    }
                }
            }
        }
        s.demographic_max = max_of(acc.values());
        s.demographic = acc;
    }
    if s.als_by_ivf {
        s.als_only = als_alone(cat, user, o, &w);
    }
}

/// Every item's ALS score for user vector `x` (the int8 scan when the catalogue has one, so
/// approximate then) and the exact maximum.
fn als_dense(cat: &Catalog<'_>, x: &[f32]) -> (Vec<f32>, f32) {
    let f = cat.factors;
    let mut a = vec![0f32; cat.items()];
    let max = match cat.quantized {
        Some(q) => {
            q.scores(x, &mut a);
            // The scale must not depend on the scan: the exact maximum, found among the posts
            // whose approximate score is within 3% of the approximate one (int8 rows are off by
            // well under 1%).
            let approx_max = max_slice(&a);
            let floor = approx_max - 0.03 * approx_max.abs();
            a.iter()
                .enumerate()
                .filter(|(_, &v)| v >= floor)
                .take(ALS_MAX_POOL)
                .map(|(i, _)| dot_dispatch(&cat.item_factors[i * f..(i + 1) * f], x))
                .fold(0f32, f32::max)
        }
        None => {
            score_all(cat.item_factors, f, x, &mut a);
            max_slice(&a)
        }
    };
    (a, max)
}

/// Every item's content score (cosine with the TF-IDF `profile`) and the maximum.
fn content_dense(cat: &Catalog<'_>, t: &Tfidf, profile: &[(u32, f32)]) -> (Vec<f32>, f32) {
    let n = cat.items();
    if cat.content_in_item_order() {
        // Document i is item i: accumulated in place (the documents of posts without factors,
        // after the items, are dropped; items without a document score 0).
        let mut c = vec![0f32; t.docs.rows.max(n)];
        t.accumulate(profile, &mut c);
        c.truncate(n);
        let max = max_slice(&c);
        return (c, max);
    }
    let mut rows = vec![0f32; t.docs.rows];
    t.scores(profile, &mut rows);
    // Gathered in item order (one sequential pass over the items, not a scatter over the
    // documents into a zeroed array).
    let mut c: Vec<f32> = cat.from_item.iter().take(n).map(|d| d.and_then(|d| rows.get(d as usize).copied()).unwrap_or(0.0)).collect();
    c.resize(n, 0.0);
    let max = max_slice(&c);
    (c, max)
}

/// Per-item penalty in [0, 1] for the disliked set `d` (see the module doc); empty when no
/// post is penalised. Two catalogue scans (factors, content postings) and one over owners.
fn penalties(cat: &Catalog<'_>, d: &[Event], o: &HybridOptions) -> Vec<f32> {
    let n = cat.items();
    let f = cat.factors;
    let mut pen = vec![0f32; n];
    // ALS: the disliked posts folded in as if liked give the direction to move away from.
    let mut items: Vec<(u32, f32)> = d.iter().filter(|e| (e.item as usize) < n).map(|e| (e.item, e.weight)).collect();
    items.sort_by_key(|x| x.0);
    if !items.is_empty() && f > 0 && cat.item_factors.len() >= n * f {
        let x = FoldIn::new(cat.item_factors, f, cat.gram, &items, cat.alpha).x;
        let mut a = vec![0f32; n];
        // An approximate scan is fine: fused and parts both read the stored penalty.
        match cat.quantized {
            Some(q) => q.scores(&x, &mut a),
            None => score_all(cat.item_factors, f, &x, &mut a),
        }
        let max = max_slice(&a);
        pen.iter_mut().zip(&a).for_each(|(p, v)| *p = scaled(*v, max));
    }
    // Content: the profile of the disliked posts, as the user's own profile is built.
    if let Some(t) = cat.tfidf {
        let profile = content_profile(cat, d, o.content_half_life_days, o.profile_terms);
        if !profile.is_empty() {
            let mut rows = vec![0f32; t.docs.rows];
            t.scores(&profile, &mut rows);
            let of_item = |(r, v): (usize, &f32)| cat.to_item.get(r).filter(|&i| (i as usize) < n).map(|i| (i as usize, *v));
            let max = rows.iter().enumerate().filter_map(of_item).fold(0f32, |m, (_, v)| if v.is_finite() { m.max(v) } else { m });
            for (i, v) in rows.iter().enumerate().filter_map(of_item) {
                pen[i] = pen[i].max(scaled(v, max));
            }
        }
    }
    // Creators: one disliked post is enough to sink the rest of theirs.
    if cat.owners.len() == n {
        let bad: HashSet<i64> = d.iter().filter_map(|e| cat.owners.get(e.item as usize).copied()).filter(|&w| w != i64::MIN).collect();
        if !bad.is_empty() {
            pen.iter_mut().zip(cat.owners).filter(|(_, w)| **w != i64::MIN && bad.contains(w)).for_each(|(p, _)| *p = 1.0);
        }
    }
    let k = o.negative_weight;
    pen.iter_mut().for_each(|p| *p = (k * *p).min(1.0));
    if pen.iter().all(|p| *p == 0.0) {
        pen.clear();
    }
    pen
}

/// Dot product of two sparse rows sorted by index.
fn sparse_dot((ta, va): (&[u32], &[f32]), (tb, vb): (&[u32], &[f32])) -> f32 {
    let (mut a, mut b, mut s) = (0, 0, 0f32);
    while a < ta.len() && b < tb.len() {
        match ta[a].cmp(&tb[b]) {
            std::cmp::Ordering::Less => a += 1,
            std::cmp::Ordering::Greater => b += 1,
            std::cmp::Ordering::Equal => {
                s += va[a] * vb[b];
                a += 1;
                b += 1;
            }
        }
    }
    s
}

/// An `each` for [`Scores::add_sparse_at`] and [`Scores::add_graph_at`]: raises a changed post's
/// cluster maximum (`of`: each row's cluster) to its new value where below.
fn raise_cluster_max<'a>(of: &'a [u16], cluster_max: &'a mut [f32]) -> impl FnMut(usize, f32) + 'a {
    move |i, r| {
        if let Some(m) = of.get(i).and_then(|&c| cluster_max.get_mut(c as usize)) {
            *m = m.max(r);
        }
    }
}

fn scaled(v: f32, max: f32) -> f32 {
    if max > 0.0 && v.is_finite() {
        (v.max(0.0) / max).min(1.0)
    } else {
        0.0
    }
}

impl Scores {
    /// The fused score of every item (dense).
    pub fn fused(&self, cat: &Catalog<'_>, out: &mut Vec<f32>) {
        match (&self.x, self.als_by_ivf && self.als.is_empty()) {
            // Ranking goes through the partition; a dense view (evaluation, tests) scores every
            // item exactly.
            (Some(x), true) => {
                let mut als = vec![0f32; cat.items()];
                score_all(cat.item_factors, cat.factors, x, &mut als);
                self.sum_into(cat, &als, out);
            }
            _ => self.sum_into(cat, &self.als, out),
        }
    }

    /// Every component's part but the ALS one and the demotion, per item (dense), −∞ where
    /// `mask` disallows: a bound on the rest of the fused score for [`Scores::top_by_ivf`]
    /// (its sums may differ from [`Scores::parts`]' in the last bits; the partition walk
    /// allows for that). One pass over the catalogue for the dense parts: an absent array is
    /// read as another one times 0.
    fn rest(&self, cat: &Catalog<'_>, mask: Option<&[bool]>) -> Vec<f32> {
        let mut out = self.dense_rest(cat, mask);
        self.add_graph_at(&mut out, |_, _| {});
        self.add_sparse(&mut out);
        out
    }

    /// Adds the item-graph part of the posts in `graph_touched` to `out` (the dense part
    /// left it out), telling `each` every post changed and its new value. The sum is the one
    /// the dense pass would make: its last term added to the same partial sum (the terms left
    /// out added +0).
    fn add_graph_at(&self, out: &mut [f32], mut each: impl FnMut(usize, f32)) {
        let Some(touched) = &self.graph_touched else { return };
        let kg = if self.graph_max > 0.0 { self.weights.graph / self.graph_max } else { 0.0 };
        let usable = kg > 0.0 && kg.is_finite() && self.graph.len() == out.len();
        if !usable {
            return;
        }
        for &j in touched {
            let j = j as usize;
            let r = &mut out[j];
            *r += kg * self.graph[j].max(0.0);
            each(j, *r);
        }
    }

    /// [`Scores::rest`] without the sparse parts (social, demographic) and without the
    /// item graph when its posts are known (`graph_touched`), −∞ where `mask` disallows.
    fn dense_rest(&self, cat: &Catalog<'_>, mask: Option<&[bool]>) -> Vec<f32> {
        let n = cat.items();
        let w = &self.weights;
        let pop = &cat.popularity[..n];
        fn dense<'a>(v: &'a [f32], k: f32, n: usize, zero: &'a [f32]) -> (&'a [f32], f32) {
            if v.len() == n && k > 0.0 && k.is_finite() {
                (&v[..n], k)
            } else {
                (zero, 0.0)
            }
        }
        let (fresh, kf) = dense(cat.freshness, w.freshness, n, pop);
        let (content, kc) = dense(&self.content, if self.content_max > 0.0 { w.content / self.content_max } else { 0.0 }, n, pop);
        let kg = if self.graph_max > 0.0 && self.graph_touched.is_none() { w.graph / self.graph_max } else { 0.0 };
        let (graph, kg) = dense(&self.graph, kg, n, pop);
        let (pop, kp) = dense(pop, w.popularity, n, pop);
        let mut out: Vec<f32> =
            pop.iter().zip(fresh).zip(content.iter().zip(graph)).map(|((p, f), (c, g))| kp * p + kf * f + kc * c + kg * g.max(0.0)).collect();
        if let Some(m) = mask {
            let k = m.len().min(n);
            out[..k].iter_mut().zip(&m[..k]).for_each(|(r, &ok)| *r = if ok { *r } else { f32::NEG_INFINITY });
            out[k..].iter_mut().for_each(|r| *r = f32::NEG_INFINITY);
        }
        out
    }

    /// Adds the social and demographic parts (sparse) to `out`.
    fn add_sparse(&self, out: &mut [f32]) {
        self.add_sparse_at(out, |_, _| {});
    }

    /// [`Scores::add_sparse`], telling `each` every post changed and its new value.
    fn add_sparse_at(&self, out: &mut [f32], mut each: impl FnMut(usize, f32)) {
        let w = &self.weights;
        for (&i, &v) in &self.social {
            let r = &mut out[i as usize];
            *r += w.social * scaled(v, self.social_max);
            each(i as usize, *r);
        }
        for (&i, &v) in &self.demographic {
            let r = &mut out[i as usize];
            *r += w.demographic * scaled(v, self.demographic_max);
            each(i as usize, *r);
        }
    }

    /// [`Scores::fused`] with the dense ALS scores `als` (empty = no ALS part).
    fn sum_into(&self, cat: &Catalog<'_>, als: &[f32], out: &mut Vec<f32>) {
        let n = cat.items();
        out.clear();
        out.resize(n, 0.0);
        let w = &self.weights;
        if w.popularity > 0.0 {
            out.iter_mut().zip(cat.popularity).for_each(|(o, p)| *o += w.popularity * p);
        }
        if w.freshness > 0.0 && cat.freshness.len() == n {
            out.iter_mut().zip(cat.freshness).for_each(|(o, p)| *o += w.freshness * p);
        }
        if !als.is_empty() && self.als_max > 0.0 {
            let k = w.als / self.als_max;
            out.iter_mut().zip(als).for_each(|(o, a)| *o += k * a.max(0.0));
        }
        if !self.content.is_empty() && self.content_max > 0.0 {
            let k = w.content / self.content_max;
            out.iter_mut().zip(&self.content).for_each(|(o, c)| *o += k * c);
        }
        if !self.graph.is_empty() && self.graph_max > 0.0 {
            let k = w.graph / self.graph_max;
            out.iter_mut().zip(&self.graph).for_each(|(o, g)| *o += k * g.max(0.0));
        }
        self.add_sparse(out);
        if self.negative.len() == n {
            out.iter_mut().zip(&self.negative).for_each(|(o, p)| *o *= 1.0 - p);
        }
    }

    /// The negative-feedback penalty of item `i` in [0, 1] (0 when none).
    pub fn penalty(&self, i: u32) -> f32 {
        self.negative.get(i as usize).copied().unwrap_or(0.0)
    }

    /// Why item `i` is demoted, for explanations; None when it is not. A disliked creator
    /// comes first; otherwise the disliked post closest to it (factor or content cosine).
    pub fn demotion(&self, cat: &Catalog<'_>, i: u32) -> Option<Demotion> {
        if self.penalty(i) <= 0.0 {
            return None;
        }
        let iu = i as usize;
        if let Some(&w) = cat.owners.get(iu).filter(|w| **w != i64::MIN) {
            if self.disliked.iter().any(|e| cat.owners.get(e.item as usize) == Some(&w)) {
                return Some(Demotion::Creator(w));
            }
        }
        let f = cat.factors;
        let factors = |j: usize| cat.item_factors.get(j * f..(j + 1) * f);
        let cosine = |a: &[f32], b: &[f32]| {
            let d = dot_dispatch(a, b);
            let nn = (dot_dispatch(a, a) * dot_dispatch(b, b)).sqrt();
            if nn > 0.0 {
                d / nn
            } else {
                0.0
            }
        };
        let row = |j: usize| cat.tfidf.zip(cat.from_item.get(j)).map(|(t, r)| t.docs.row(r as usize));
        let (yi, ri) = (factors(iu), row(iu));
        let mut best: Option<(u32, f32)> = None;
        for e in &self.disliked {
            let j = e.item as usize;
            let a = yi.zip(factors(j)).map_or(0.0, |(x, y)| cosine(x, y));
            // TF-IDF rows are L2-normalised and sorted by term: their dot is the cosine.
            let c = ri.zip(row(j)).map_or(0.0, |(x, y)| sparse_dot(x, y));
            let v = a.max(c);
            if best.is_none_or(|b| v > b.1) {
                best = Some((e.item, v));
            }
        }
        best.map(|b| Demotion::Similar(b.0))
    }

    /// The ALS part of the fused score for an inner product `dot` with the user vector.
    pub fn als_score(&self, dot: f32) -> f32 {
        self.weights.als * scaled(dot, self.als_max)
    }

    /// [`Scores::als_score`] without its cap at 1, for the partition's bounds: the same value for
    /// every item (no inner product exceeds als_max), but a bound above als_max must stay above
    /// the threshold's scale, or no cluster could ever be skipped.
    fn als_uncapped(&self, dot: f32) -> f32 {
        if self.als_max > 0.0 && dot.is_finite() {
            self.weights.als * (dot.max(0.0) / self.als_max)
        } else {
            0.0
        }
    }

    /// With `als_by_ivf`: the exact best `k` items among those `allowed` by the fused score,
    /// best first, through the partition (inner products for the few items whose bound can
    /// still reach the k-th best); empty otherwise.
    /// `mask`: the items allowed (None = all).
    pub fn top_by_ivf(&self, cat: &Catalog<'_>, ids: &[i64], k: usize, mask: Option<&[bool]>) -> Vec<Scored> {
        self.top_by_ivf_from(cat, ids, k, mask, None)
    }

    /// [`Scores::top_by_ivf`] with the dense part of its bound computed ahead by
    /// [`Scores::dense_bound`] (for the same catalogue and `mask`, before or after
    /// [`score_people`]); None computes it here.
    pub fn top_by_ivf_from(&self, cat: &Catalog<'_>, ids: &[i64], k: usize, mask: Option<&[bool]>, ahead: Option<DenseBound>) -> Vec<Scored> {
        if self.als_only {
            return self.als_top(cat, ids, k, &|i| mask.is_none_or(|m| m.get(i).copied().unwrap_or(false)));
        }
        match (self.als_by_ivf, cat.ivf, &self.x) {
            (true, Some(ivf), Some(x)) => {
                let (rest, cluster_max) = match ahead {
                    Some(b) if b.rest.len() == cat.items() => {
                        let DenseBound { mut rest, mut cluster_max } = b;
                        // The sparse parts, as `rest` adds them (−∞, a masked post, stays), and
                        // each changed post's cluster maximum raised to it where below (a bound
                        // need only be at least the maximum).
                        self.add_sparse_at(&mut rest, raise_cluster_max(ivf.clusters_of_rows(), &mut cluster_max));
                        (rest, Some(cluster_max))
                    }
                    _ => (self.rest(cat, mask), None),
                };
                let probe = self.probe_of(ivf, x);
                ivf.top_fused(&probe, cat.item_factors, ids, x, k, &|d| self.als_uncapped(d), &rest, cluster_max.as_deref(), &|i, d| {
                    self.parts_at(cat, i as u32, Some(d)).total()
                })
            }
            _ => vec![],
        }
    }

    /// The dense part of [`Scores::top_by_ivf`]'s bound (popularity, freshness, content, item
    /// graph; −∞ where `mask` disallows) and its maximum per cluster of the partition: what a
    /// caller may compute ahead, before the followees and demographics are known. None unless
    /// the ranking goes through the partition.
    pub fn dense_bound(&self, cat: &Catalog<'_>, mask: Option<&[bool]>) -> Option<DenseBound> {
        let ivf = cat.ivf.filter(|_| self.als_by_ivf && self.x.is_some())?;
        let mut rest = self.dense_rest(cat, mask);
        let mut cluster_max = ivf.cluster_max(&rest[..rest.len().min(ivf.items)]);
        // The item graph's posts, each raising its cluster's maximum where it is now above it
        // (a post's part only grows, so this is the maximum of the final values).
        self.add_graph_at(&mut rest, raise_cluster_max(ivf.clusters_of_rows(), &mut cluster_max));
        Some(DenseBound { rest, cluster_max })
    }

    /// With `als_by_ivf`: the exact best `k` items among those `allowed` by the ALS part (the
    /// whole fused score when `als_only`), best first; empty otherwise.
    pub fn als_top(&self, cat: &Catalog<'_>, ids: &[i64], k: usize, allowed: &dyn Fn(usize) -> bool) -> Vec<Scored> {
        match (self.als_by_ivf, cat.ivf, &self.x) {
            (true, Some(ivf), Some(x)) => ivf.top_probed(&self.probe_of(ivf, x), cat.item_factors, ids, x, k, allowed, &|d| self.als_uncapped(d)).0,
            _ => vec![],
        }
    }

    /// The probe [`score`] kept, or a new one.
    fn probe_of(&self, ivf: &crate::ivf::Ivf, x: &[f32]) -> std::borrow::Cow<'_, crate::ivf::Probe> {
        match &self.probe {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => std::borrow::Cow::Owned(ivf.probe(x)),
        }
    }

    /// One item's contributions; the ALS part is exact (not from the int8 scan).
    pub fn parts(&self, cat: &Catalog<'_>, i: u32) -> Parts {
        self.parts_at(cat, i, None)
    }

    /// [`Scores::parts`] with the inner product of the item and the user vector when known.
    fn parts_at(&self, cat: &Catalog<'_>, i: u32, dot: Option<f32>) -> Parts {
        let w = &self.weights;
        let iu = i as usize;
        let als = match (&self.x, !self.als.is_empty() || self.als_by_ivf) {
            (Some(x), true) => {
                let f = cat.factors;
                self.als_score(dot.unwrap_or_else(|| dot_dispatch(&cat.item_factors[iu * f..(iu + 1) * f], x)))
            }
            _ => 0.0,
        };
        let by = Weights {
            als,
            content: if self.content.is_empty() { 0.0 } else { w.content * scaled(self.content[iu], self.content_max) },
            social: self.social.get(&i).map_or(0.0, |v| w.social * scaled(*v, self.social_max)),
            popularity: w.popularity * cat.popularity.get(iu).copied().unwrap_or(0.0),
            freshness: if cat.freshness.is_empty() { 0.0 } else { w.freshness * cat.freshness[iu] },
            demographic: self.demographic.get(&i).map_or(0.0, |v| w.demographic * scaled(*v, self.demographic_max)),
            graph: if self.graph.is_empty() { 0.0 } else { w.graph * scaled(self.graph.get(iu).copied().unwrap_or(0.0), self.graph_max) },
        };
        let mut p = Parts { by, negative: 0.0 };
        let pen = self.penalty(i);
        if pen > 0.0 {
            p.negative = -p.total() * pen;
        }
        p
    }

    /// The profile term that matches post `row` most (weight in profile × weight in post).
    pub fn best_term(&self, t: &Tfidf, row: usize) -> Option<u32> {
        let (ts, vs) = t.docs.row(row);
        let mut best: Option<(u32, f32)> = None;
        for &(term, pw) in &self.profile {
            if let Ok(k) = ts.binary_search(&term) {
                let v = pw * vs[k];
                if best.is_none_or(|b| v > b.1) {
                    best = Some((term, v));
                }
            }
        }
        best.map(|b| b.0)
    }
}

/// Engagements kept per user for the social component (most recent first).
pub const SOCIAL_EVENTS: usize = 30;

/// Per user (row index), the `per_user` most recent engagements: the same post's rows are
/// merged (weights summed, newest day kept), newest first (unknown times last), as CSR over
/// `n_users` rows. Users for which `keep` is false get an empty row.
pub fn recent_events(n_users: usize, events: impl Iterator<Item = (u32, Event)>, per_user: usize, keep: impl Fn(u32) -> bool) -> (Vec<usize>, Vec<Event>) {
    let mut v: Vec<(u32, Event)> = events.filter(|(u, e)| keep(*u) && e.weight.is_finite()).collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.item.cmp(&b.1.item)));
    let mut merged: Vec<(u32, Event)> = Vec::with_capacity(v.len());
    for (u, e) in v {
        match merged.last_mut() {
            Some((lu, le)) if *lu == u && le.item == e.item => {
                le.weight += e.weight;
                if e.day > le.day || le.day.is_nan() {
                    le.day = e.day;
                }
            }
            _ => merged.push((u, e)),
        }
    }
    merged.retain(|(_, e)| e.weight > 0.0);
    let key = |d: f32| if d.is_nan() { f32::NEG_INFINITY } else { d };
    merged.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(key(b.1.day).total_cmp(&key(a.1.day))).then(a.1.item.cmp(&b.1.item)));
    let mut ptr = vec![0usize; n_users + 1];
    let mut out = Vec::new();
    let mut i = 0;
    for u in 0..n_users {
        let start = i;
        while i < merged.len() && merged[i].0 as usize == u {
            if i - start < per_user {
                out.push(merged[i].1);
            }
            i += 1;
        }
        ptr[u + 1] = out.len();
    }
    (ptr, out)
}

/// Per-item freshness in [0, 1] from creation days (NaN = unknown → 0), relative to the newest.
pub fn freshness(created_day: &[f32], half_life: f32) -> Vec<f32> {
    let newest = created_day.iter().copied().filter(|d| d.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    if !newest.is_finite() {
        return vec![];
    }
    created_day.iter().map(|&d| if d.is_finite() { decay(newest - d, half_life) } else { 0.0 }).collect()
}

/// The newest finite creation day (NaN when none is known).
pub fn newest_day(created_day: &[f32]) -> f32 {
    let newest = created_day.iter().copied().filter(|d| d.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    if newest.is_finite() {
        newest
    } else {
        f32::NAN
    }
}

/// The freshness of one post created on `day`, against a catalogue whose newest post was
/// created on `newest` (as [`freshness`] computes it; a post newer than that is 1).
pub fn freshness_of(day: f32, newest: f32, half_life: f32) -> f32 {
    if day.is_finite() && newest.is_finite() {
        decay(newest - day, half_life)
    } else {
        0.0
    }
}

/// Trending popularity in [0, 1]: Σ over interactions of decay(age), by post, relative to the
/// newest interaction; without times, the count of distinct users.
pub fn trending(items: usize, events: impl Iterator<Item = (u32, f32)>, half_life_days: f32) -> Vec<f32> {
    let ev: Vec<(u32, f32)> = events.collect();
    let newest = ev.iter().map(|e| e.1).filter(|d| d.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let mut p = vec![0f32; items];
    for (i, d) in ev {
        let w = if newest.is_finite() && d.is_finite() { decay(newest - d, half_life_days) } else { 1.0 };
        p[i as usize] += w;
    }
    let max = max_of(p.iter());
    if max > 0.0 {
        p.iter_mut().for_each(|x| *x /= max);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalogue maximum used to scale a component: the largest finite value above 0
    /// (NaN and +inf ignored, 0 when nothing is positive), the same in every lane layout.
    #[test]
    fn max_slice_is_the_largest_finite_positive() {
        let mut rng = crate::rng::Rng::new(5);
        for n in 0..70 {
            let mut v: Vec<f32> = (0..n).map(|_| rng.next_f32() * 4.0 - 3.0).collect();
            if n > 3 {
                v[n / 2] = f32::NAN;
                v[n / 3] = f32::INFINITY;
                v[n - 1] = f32::NEG_INFINITY;
            }
            let want = v.iter().copied().filter(|x| x.is_finite() && *x > 0.0).fold(0f32, f32::max);
            assert_eq!(max_slice(&v), want, "n {n}");
            assert_eq!(max_slice_impl(&v), want, "n {n}");
        }
        assert_eq!(max_slice(&[-1.0, -2.0]), 0.0);
    }

    #[test]
    fn fold_in_sums_are_the_same_summed_in_an_array_or_a_map() {
        // A heavy user (many events over few items: the array) and a light one (few events
        // over many items: the map), against sums kept in a BTreeMap in history order.
        let mut rng = crate::rng::Rng::new(17);
        for (events, span) in [(5000usize, 300u64), (40, 100_000), (3, 50), (2000, 16_000)] {
            let history: Vec<Event> = (0..events)
                .map(|_| {
                    let w = if rng.below(10) == 0 { -1.5 } else { rng.next_f32() * 3.0 };
                    ev(rng.below(span) as u32, w, 0.0)
                })
                .collect();
            let mut want: std::collections::BTreeMap<u32, f32> = Default::default();
            for e in &history {
                *want.entry(e.item).or_insert(0.0) += e.weight;
            }
            let want: Vec<(u32, f32)> = want.into_iter().filter(|(_, w)| *w > 0.0 && w.is_finite()).collect();
            let got = fold_in_items(&history);
            assert_eq!(got.len(), want.len(), "{events} events over {span} items");
            assert!(got.iter().zip(&want).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()), "{events} events over {span} items");
        }
        assert!(fold_in_items(&[]).is_empty());
    }

    fn ev(item: u32, weight: f32, day: f32) -> Event {
        Event { item, weight, day }
    }

    #[test]
    fn social_prefers_mutual_recent_and_small_accounts() {
        let o = HybridOptions::default();
        let one_way = Followee { events: vec![ev(1, 4.0, 100.0)], ..Default::default() };
        let mutual = Followee { mutual: true, events: vec![ev(2, 4.0, 100.0)], ..Default::default() };
        let old = Followee { events: vec![ev(3, 4.0, 72.0)], ..Default::default() };
        let celebrity = Followee { followers: 10_000, events: vec![ev(4, 4.0, 100.0)], ..Default::default() };
        let owner = Followee { owned: vec![5], ..Default::default() };
        let (s, people, owned) = social_scores(&[one_way, mutual, old, celebrity, owner], &o);
        assert!(s[&2] > s[&1], "mutual beats one-way");
        assert!((s[&2] / s[&1] - 2.0).abs() < 1e-5);
        assert!((s[&3] / s[&1] - 0.25).abs() < 1e-4, "two half-lives older: a quarter");
        assert!(s[&4] < s[&1] * 0.1, "a 10k-follower account is damped");
        assert!(s[&5] > 0.0 && owned[&5] && !people.contains_key(&5));
        assert_eq!(people[&1], 1);
    }

    #[test]
    fn second_hop_is_off_by_default_and_weighted_when_on() {
        let mut o = HybridOptions::default();
        let hop2 = Followee { second_hop: true, events: vec![ev(7, 1.0, 1.0)], ..Default::default() };
        assert!(social_scores(std::slice::from_ref(&hop2), &o).0.is_empty());
        o.second_hop = 0.25;
        let (s, people, _) = social_scores(&[hop2], &o);
        assert!((s[&7] - 0.25 * 2f32.ln()).abs() < 1e-6);
        assert!(people.is_empty(), "second-hop users are not 'people you follow'");
    }

    #[test]
    fn segment_keys_and_lists() {
        assert_eq!(segment_keys(Some(23.0), Some(" Female "), None), vec!["age:18-24", "gender:female"]);
        assert!(segment_keys(Some(f64::NAN), Some(""), Some("  ")).is_empty());
        // Users 0..3 are in "a" and like item 0; users 3..6 in "b" like item 1; all like item 2.
        let dict = vec![String::new(), "a".into(), "b".into()];
        let keys: Vec<[u32; 3]> = (0..6).map(|u| [if u < 3 { 1 } else { 2 }, 0, 0]).collect();
        let (mut r, mut c) = (vec![], vec![]);
        for u in 0..6u32 {
            r.extend([u, u]);
            c.extend([if u < 3 { 0 } else { 1 }, 2]);
        }
        let ui = Csr::from_triplets(6, 3, &r, &c, &vec![1.0; r.len()]);
        let s = Segments::build(&dict, &keys, &ui);
        let a = &s.lists["a"];
        assert_eq!(a[0].0, 0, "segment-specific item first: {a:?}");
        assert!(a.iter().all(|x| x.0 != 1));
    }

    #[test]
    fn packed_segments_give_back_the_lists_asked_for() {
        let mut s = Segments::default();
        s.lists.insert("gender:f".into(), vec![(3, 0.5), (1, 0.25)]);
        s.lists.insert("age:18-24".into(), vec![(0, 1.0)]);
        s.lists.insert("location:oslo".into(), vec![]);
        let (index, items, scores) = s.pack();
        assert!(index.windows(2).all(|w| w[0].0 < w[1].0), "sorted for the binary search: {index:?}");
        let want = |k: &[&str]| k.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let got = Segments::unpack(&index, &items, &scores, &want(&["gender:f", "age:18-24", "location:oslo", "gender:x"]), 4).unwrap();
        assert_eq!(got, s, "every list asked for, no other, unknown keys skipped");
        let one = Segments::unpack(&index, &items, &scores, &want(&["gender:f"]), 4).unwrap();
        assert_eq!(one.lists.len(), 1);
        assert_eq!(one.lists["gender:f"], s.lists["gender:f"]);
        assert!(Segments::unpack(&index, &items, &scores, &[], 4).unwrap().lists.is_empty());
        // A post beyond the model, a short array, a non-finite score: refused, not served.
        assert!(Segments::unpack(&index, &items, &scores, &want(&["gender:f"]), 3).is_none());
        assert!(Segments::unpack(&index, &items[..2], &scores, &want(&["gender:f"]), 4).is_none());
        let nan: Vec<f32> = scores.iter().map(|_| f32::NAN).collect();
        assert!(Segments::unpack(&index, &items, &nan, &want(&["age:18-24"]), 4).is_none());
    }

    #[test]
    fn cold_start_weights_and_fusion_scale() {
        let f = 2;
        let y = vec![1.0, 0.0, 0.0, 1.0, 0.7, 0.7];
        let gram = {
            let pool = crate::als::pool(1, None).unwrap();
            crate::als::gram(&y, f, 0.1, &pool)
        };
        let pop = vec![1.0, 0.5, 0.0];
        let seg = Segments { lists: [("gender:x".to_string(), vec![(2u32, 3.0f32)])].into_iter().collect() };
        let none = RowMap::default();
        let cat = Catalog {
            factors: f,
            item_factors: &y,
            gram: &gram,
            alpha: 1.0,
            quantized: None,
            tfidf: None,
            to_item: &none,
            from_item: &none,
            popularity: &pop,
            freshness: &[],
            segments: &seg,
            owners: &[],
            graph: None,
            ivf: None,
        };
        let o = HybridOptions::default();
        let w = o.weights;
        // Nothing known: popularity and demographics only.
        let cold = UserInput { segments: vec!["gender:x".into()], ..Default::default() };
        let s = score(&cat, &cold, &o, &w);
        assert_eq!(s.weights.als, 0.0);
        let mut fused = vec![];
        s.fused(&cat, &mut fused);
        assert!((fused[2] - w.demographic).abs() < 1e-6 && (fused[0] - w.popularity).abs() < 1e-6);
        let p = s.parts(&cat, 2);
        assert_eq!(p.leading(), Some("demographic"));
        assert!((p.total() - fused[2]).abs() < 1e-6);
        // Five interactions with item 0: warm, no demographics, ALS leads on item 0's side.
        let warm = UserInput { history: (0..5).map(|d| ev(0, 1.0, d as f32)).collect(), segments: vec!["gender:x".into()], ..Default::default() };
        let s = score(&cat, &warm, &o, &w);
        assert_eq!(s.weights.demographic, 0.0);
        s.fused(&cat, &mut fused);
        assert!(fused[0] > fused[1]);
        for i in 0..3 {
            assert!((s.parts(&cat, i).total() - fused[i as usize]).abs() < 1e-5);
        }
        // Two interactions: ALS and the graph at 2/5 of their weights.
        let few = UserInput { history: vec![ev(0, 1.0, 0.0), ev(0, 1.0, 1.0)], ..Default::default() };
        let ws = score(&cat, &few, &o, &w).weights;
        assert!((ws.als - 0.4 * w.als).abs() < 1e-6 && (ws.graph - 0.4 * w.graph).abs() < 1e-6);
    }

    /// Two planted topics plus a neutral one: 30 popular travel posts (0..30, creators
    /// 100..106), 6 dance posts (30..36, creators 200..202) and 10 food posts (36..46, creators
    /// 300..302, except 45 by travel creator 104). Factors separate the topics (plus a shared
    /// direction, as real factors have); TF-IDF docs use topic words.
    struct Planted {
        y: Vec<f32>,
        gram: Vec<f32>,
        pop: Vec<f32>,
        owners: Vec<i64>,
        tfidf: Tfidf,
        map: RowMap,
        seg: Segments,
        q: QuantizedRows,
    }

    const F: usize = 4;
    const N: usize = 46;

    fn topic(i: usize) -> usize {
        match i {
            0..30 => 0,
            30..36 => 1,
            _ => 2,
        }
    }

    fn planted() -> Planted {
        let words =
            [["travel", "beach", "flight", "hotel", "passport"], ["dance", "salsa", "tango", "rhythm", "studio"], ["food", "recipe", "pasta", "bake", "spice"]];
        let mut y = vec![0f32; N * F];
        let (mut pop, mut owners, mut docs) = (vec![], vec![], vec![]);
        for i in 0..N {
            let t = topic(i);
            y[i * F + t] = 0.8 + 0.02 * (i % 7) as f32;
            y[i * F + 3] = 0.3;
            pop.push(match t {
                0 => 0.6 + 0.01 * i as f32,
                1 => 0.2,
                _ => 0.3 + 0.01 * (i - 36) as f32,
            });
            owners.push(match t {
                0 => 100 + (i / 5) as i64,
                1 => 200 + (i % 2) as i64,
                _ if i == 45 => 104,
                _ => 300 + (i % 2) as i64,
            });
            let w = &words[t];
            docs.push(vec![w[0].to_string(), w[1 + i % 4].to_string(), w[1 + (i + 1) % 4].to_string(), format!("post{i}")]);
        }
        let pool = crate::als::pool(1, None).unwrap();
        let gram = crate::als::gram(&y, F, 0.1, &pool);
        let q = QuantizedRows::new(&y, F);
        Planted { gram, pop, owners, tfidf: Tfidf::fit(&docs), map: RowMap::new((0..N as u32).map(Some).collect()), seg: Segments::default(), q, y }
    }

    impl Planted {
        fn cat(&self, quantized: bool) -> Catalog<'_> {
            Catalog {
                factors: F,
                item_factors: &self.y,
                gram: &self.gram,
                alpha: 1.0,
                quantized: quantized.then_some(&self.q),
                tfidf: Some(&self.tfidf),
                to_item: &self.map,
                from_item: &self.map,
                popularity: &self.pop,
                freshness: &[],
                segments: &self.seg,
                owners: &self.owners,
                graph: None,
                ivf: None,
            }
        }
    }

    /// Top `k` of the fused scores, seen posts excluded (as the caller does).
    fn top(s: &Scores, cat: &Catalog<'_>, seen: &[u32], k: usize) -> Vec<u32> {
        let mut fused = vec![];
        s.fused(cat, &mut fused);
        let mut v: Vec<u32> = (0..N as u32).filter(|i| !seen.contains(i)).collect();
        v.sort_by(|a, b| fused[*b as usize].total_cmp(&fused[*a as usize]).then(a.cmp(b)));
        v.truncate(k);
        v
    }

    /// parts(i).total() == fused[i]; with an int8 scan the fused ALS part is approximate.
    fn assert_parts_add_up(s: &Scores, cat: &Catalog<'_>) {
        let mut fused = vec![];
        s.fused(cat, &mut fused);
        let tol = if cat.quantized.is_some() { 1e-2 } else { 1e-5 };
        for i in 0..N as u32 {
            let p = s.parts(cat, i);
            assert!((p.total() - fused[i as usize]).abs() < tol, "item {i}: {p:?} vs {}", fused[i as usize]);
            assert!(p.negative <= 0.0);
        }
    }

    fn travel(v: &[u32]) -> usize {
        v.iter().filter(|&&i| topic(i as usize) == 0).count()
    }

    /// Documents stored in item order are accumulated in place; the gathering path (any
    /// order) gives the same scores and maximum, and so the same fused ranking.
    #[test]
    fn content_in_item_order_equals_the_gathered_scores() {
        let mut pl = planted();
        let history: Vec<Event> = (30..34).map(|i| ev(i, 4.0, 1.0 + i as f32)).collect();
        let user = UserInput { history, ..Default::default() };
        let w = Weights::default();
        let o = HybridOptions::default();
        assert!(pl.cat(false).content_in_item_order());
        let fast = score(&pl.cat(false), &user, &o, &w);
        // The same identity as a table: not known to be in item order, so gathered.
        pl.map = RowMap::Table(pl.map.iter().collect());
        assert!(!pl.cat(false).content_in_item_order());
        let gathered = score(&pl.cat(false), &user, &o, &w);
        assert!(fast.content_max > 0.0 && fast.content.iter().filter(|v| **v > 0.0).count() > 3);
        assert_eq!(fast.content, gathered.content);
        assert_eq!(fast.content_max.to_bits(), gathered.content_max.to_bits());
    }

    #[test]
    fn dislikes_demote_neighbours_and_creators() {
        let pl = planted();
        // 3 liked dance posts, then 10 disliked travel posts (the most popular ones).
        let mut history: Vec<Event> = (30..33).map(|i| ev(i, 4.0, 1.0)).collect();
        history.extend((20..30).map(|i| ev(i, -3.0, 2.0)));
        // One of them was viewed before the dislike: still disliked, still out of the fold-in.
        history.push(ev(29, 1.0, 1.5));
        let seen: Vec<u32> = history.iter().map(|e| e.item).collect();
        let user = UserInput { history, ..Default::default() };
        let d = disliked_items(&user.history);
        assert_eq!(d.len(), 10);
        assert_eq!(d[0], ev(20, 3.0, 2.0), "most recent, then strongest, then by item: {d:?}");
        assert_eq!(d.iter().find(|e| e.item == 29).map(|e| e.weight), Some(2.0));
        assert_eq!(fold_in_items(&user.history).iter().map(|x| x.0).collect::<Vec<_>>(), vec![30, 31, 32]);
        let w = Weights::default();
        for quantized in [false, true] {
            let cat = pl.cat(quantized);
            let off = HybridOptions { negative_weight: 0.0, ..Default::default() };
            let before = score(&cat, &user, &off, &w);
            assert!(before.negative.is_empty() && before.disliked.is_empty());
            let top_before = top(&before, &cat, &seen, 10);
            // The problem: the 3 other dance posts, then popular travel posts fill the feed.
            assert!(travel(&top_before) >= 5, "{top_before:?}");
            let o = HybridOptions::default();
            let s = score(&cat, &user, &o, &w);
            let top_after = top(&s, &cat, &seen, 10);
            assert!(travel(&top_after) <= 1, "{top_after:?}");
            assert!(top_after[..3].iter().all(|&i| topic(i as usize) == 1), "dance stays first: {top_after:?}");
            assert!(s.penalty(5) > 0.9, "a travel post: {}", s.penalty(5));
            assert!(s.penalty(33) < 0.2 && s.penalty(36) < 0.2, "other topics barely touched: {} {}", s.penalty(33), s.penalty(36));
            // Post 45 (food, by travel creator 104 whose posts 20..25 were disliked) sinks.
            let rank = |t: &[u32]| t.iter().position(|&i| i == 45);
            let all_before = top(&before, &cat, &seen, N);
            let all_after = top(&s, &cat, &seen, N);
            assert!(rank(&all_after) > rank(&all_before), "{:?} -> {:?}", rank(&all_before), rank(&all_after));
            assert_eq!(s.penalty(45), 1.0);
            assert_eq!(s.demotion(&cat, 45), Some(Demotion::Creator(104)));
            // Creator 102 owns 10..15, none disliked: a neighbour by factors and words.
            assert!(matches!(s.demotion(&cat, 12), Some(Demotion::Similar(j)) if (20..30).contains(&j)), "{:?}", s.demotion(&cat, 12));
            assert_eq!(s.demotion(&cat, 40), None);
            let p = s.parts(&cat, 12);
            assert!(p.negative < 0.0 && p.leading() != Some("negative"));
            assert_parts_add_up(&s, &cat);
            assert_parts_add_up(&before, &cat);
            // Half the weight, part of the demotion (the creator's post is still fully out).
            let half = score(&cat, &user, &HybridOptions { negative_weight: 0.5, ..Default::default() }, &w);
            assert!(half.penalty(12) < s.penalty(12) && half.penalty(12) > 0.0);
            assert_eq!(half.penalty(45), 0.5);
        }
    }

    #[test]
    fn only_dislikes_still_demote() {
        let pl = planted();
        let cat = pl.cat(false);
        let user = UserInput { history: (20..30).map(|i| ev(i, -5.0, i as f32)).collect(), ..Default::default() };
        let seen: Vec<u32> = (20..30).collect();
        let w = Weights::default();
        let before = score(&cat, &user, &HybridOptions { negative_weight: 0.0, ..Default::default() }, &w);
        assert!(before.x.is_none() && before.profile.is_empty(), "nothing to like");
        assert_eq!(travel(&top(&before, &cat, &seen, 10)), 10, "popularity alone: all travel");
        let s = score(&cat, &user, &HybridOptions::default(), &w);
        assert!(s.x.is_none() && s.profile.is_empty(), "dislikes never enter the positive side");
        let t = top(&s, &cat, &seen, 10);
        assert!(travel(&t) <= 1, "{t:?}");
        assert_eq!(s.disliked[0].item, 29, "most recent first");
        assert_parts_add_up(&s, &cat);
    }

    #[test]
    fn no_negative_events_no_penalty() {
        let pl = planted();
        let w = Weights::default();
        let user = UserInput { history: (30..33).map(|i| ev(i, 4.0, 1.0)).chain([ev(0, 1.0, 2.0), ev(40, 1.0, 2.0)]).collect(), ..Default::default() };
        for quantized in [false, true] {
            let cat = pl.cat(quantized);
            let on = score(&cat, &user, &HybridOptions::default(), &w);
            let off = score(&cat, &user, &HybridOptions { negative_weight: 0.0, ..Default::default() }, &w);
            assert!(on.negative.is_empty() && on.disliked.is_empty());
            let (mut a, mut b) = (vec![], vec![]);
            on.fused(&cat, &mut a);
            off.fused(&cat, &mut b);
            assert_eq!(a, b);
            assert_eq!(on.profile, off.profile);
            for i in 0..N as u32 {
                assert_eq!(on.parts(&cat, i), off.parts(&cat, i));
                assert_eq!(on.parts(&cat, i).negative, 0.0);
                assert_eq!(on.demotion(&cat, i), None);
            }
            assert_parts_add_up(&on, &cat);
        }
        // A dislike cancelled by later engagement (sum > 0) is not negative feedback either.
        let cat = pl.cat(false);
        let undone = UserInput { history: vec![ev(31, 4.0, 1.0), ev(0, -1.0, 1.0), ev(0, 4.0, 2.0)], ..Default::default() };
        assert!(score(&cat, &undone, &HybridOptions::default(), &w).negative.is_empty());
    }

    #[test]
    fn content_profiles_are_the_same_summed_in_arrays_or_maps() {
        // Long histories take the arrays (items and terms), short ones the maps; both against
        // sums kept in BTreeMaps in history order, bit for bit.
        let pl = planted();
        let cat = pl.cat(false);
        let t = &pl.tfidf;
        let mut rng = crate::rng::Rng::new(23);
        for (events, negatives) in [(2usize, false), (3, true), (5, false), (400, false), (400, true), (3000, true)] {
            let history: Vec<Event> = (0..events)
                .map(|k| {
                    let w = if negatives && rng.below(6) == 0 { -2.0 } else { rng.next_f32() * 3.0 };
                    ev(rng.below(N as u64) as u32, w, (k % 40) as f32 + rng.next_f32())
                })
                .collect();
            let now = newest(&history);
            let mut sums: std::collections::BTreeMap<u32, f32> = Default::default();
            for e in &history {
                *sums.entry(e.item).or_insert(0.0) += e.weight;
            }
            let mut acc: std::collections::BTreeMap<u32, f32> = Default::default();
            for e in history.iter().filter(|e| !negatives || sums[&e.item] > 0.0) {
                let w = strength(e.weight) * decay(now - e.day, 30.0);
                if w > 0.0 {
                    let (ts, vs) = t.docs.row(e.item as usize);
                    ts.iter().zip(vs).for_each(|(&term, &v)| *acc.entry(term).or_insert(0.0) += w * v);
                }
            }
            let mut want: Vec<(u32, f32)> = acc.into_iter().filter(|x| x.1 > 0.0).collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            want.truncate(8);
            let norm = want.iter().map(|x| x.1 * x.1).sum::<f32>().sqrt();
            want.iter_mut().for_each(|x| x.1 /= norm);
            want.sort_by_key(|x| x.0);
            let dense = t.postings.rows <= events * DENSE_SUM_SPAN;
            assert_eq!(dense, events >= 400, "{events} events take the {} path", if dense { "array" } else { "map" });
            let got = content_profile(&cat, &history, 30.0, 8);
            assert_eq!(got.len(), want.len(), "{events} events");
            assert!(got.iter().zip(&want).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()), "{events} events: {got:?} vs {want:?}");
        }
    }

    #[test]
    fn disliked_posts_leave_the_content_profile() {
        let pl = planted();
        let cat = pl.cat(false);
        // Viewed a travel post, then disliked it: only the dance post shapes the profile.
        let h = vec![ev(31, 4.0, 1.0), ev(0, 1.0, 1.0), ev(0, -3.0, 2.0)];
        let p = content_profile(&cat, &h, 30.0, 32);
        let travel_word = pl.tfidf.vocab.get("travel").unwrap();
        assert!(!p.is_empty() && p.iter().all(|x| x.0 != travel_word), "{p:?}");
        assert!(content_profile(&cat, &h[..2], 30.0, 32).iter().any(|x| x.0 == travel_word), "without the dislike it counts");
    }

    #[test]
    fn stored_options_without_negative_weight_read_the_default() {
        let mut v = serde_json::to_value(HybridOptions::default()).unwrap();
        v.as_object_mut().unwrap().remove("negative_weight");
        let o: HybridOptions = serde_json::from_value(v).unwrap();
        assert_eq!(o.negative_weight, 1.0);
        assert_eq!(o, HybridOptions::default());
    }

    #[test]
    fn recent_events_merge_and_keep_the_newest() {
        let e = |item, weight, day| (0u32, ev(item, weight, day));
        let rows = vec![e(1, 1.0, 1.0), e(2, 1.0, 5.0), e(1, 2.0, 3.0), e(3, 1.0, f32::NAN), e(4, -1.0, 9.0), (1, ev(9, 1.0, 1.0))];
        let (ptr, out) = recent_events(3, rows.clone().into_iter(), 2, |_| true);
        assert_eq!(ptr, vec![0, 2, 3, 3]);
        assert_eq!(out[0], ev(2, 1.0, 5.0));
        assert_eq!(out[1], ev(1, 3.0, 3.0), "merged, newest day kept");
        let (ptr, _) = recent_events(3, rows.into_iter(), 10, |u| u == 1);
        assert_eq!(ptr, vec![0, 0, 1, 1]);
    }

    #[test]
    fn freshness_and_trending_are_relative_to_the_newest() {
        let f = freshness(&[10.0, 3.0, f32::NAN], 7.0);
        assert!((f[0] - 1.0).abs() < 1e-6 && (f[1] - 0.5).abs() < 1e-6 && f[2] == 0.0);
        assert!(freshness(&[f32::NAN], 7.0).is_empty());
        let t = trending(3, [(0, 10.0), (1, 9.0), (1, 9.0), (2, f32::NAN)].into_iter(), 1.0);
        assert!((t[1] - 1.0).abs() < 1e-6 && (t[0] - 1.0).abs() < 1e-6 && (t[2] - 1.0).abs() < 1e-6);
        let t = trending(2, [(0, 10.0), (1, 8.0)].into_iter(), 1.0);
        assert!((t[1] - 0.25).abs() < 1e-6);
    }

    /// The ranking through the partition equals the dense ranking (every item fused, then the
    /// best re-scored exactly), with every component in force, filters, and a disliked post.
    #[test]
    fn ranking_through_the_partition_equals_the_dense_ranking() {
        use crate::rng::Rng;
        use crate::topk::{rank_order, TopK};
        let (n, f, users) = (12_000usize, 16usize, 400usize);
        let mut rng = Rng::new(11);
        let topics: Vec<Vec<f32>> = (0..30).map(|_| (0..f).map(|_| rng.normal() as f32).collect()).collect();
        let y: Vec<f32> = (0..n).flat_map(|i| topics[i % 30].iter().map(|v| 0.3 * (v + 0.5 * rng.normal() as f32)).collect::<Vec<f32>>()).collect();
        let pool = crate::als::pool(2, None).unwrap();
        // The last 50 rows came after the partition was built (posts placed after training).
        let build = || crate::ivf::Ivf::build(&y[..(n - 50) * f], f, &pool, &mut || Ok(())).unwrap().expect("above MIN_ITEMS");
        // Odd cases walk a partition that reads its members' rows from its own copy.
        let (plain, copied) = (build(), build());
        let copied = {
            let rows = copied.member_rows(&y);
            copied.with_rows(rows.into())
        };
        let gram = crate::als::gram(&y, f, 0.1, &pool);
        // Interactions (for the graph), posts' words (content), priors, owners, segments.
        let (mut r, mut c) = (vec![], vec![]);
        for u in 0..users as u32 {
            let topic = u as usize % 30;
            for _ in 0..20 {
                r.push(u);
                c.push((topic + 30 * rng.below((n / 30) as u64) as usize) as u32);
            }
        }
        let ui = Csr::from_triplets(users, n, &r, &c, &vec![1.0; r.len()]);
        let graph = crate::graph::rp3beta(&ui, 0.8, 0.3, 50, &pool, &mut || Ok(())).unwrap();
        let docs: Vec<Vec<String>> = (0..n).map(|i| vec![format!("t{}", i % 30), format!("w{}", i % 97), format!("v{}", i % 13)]).collect();
        let tfidf = Tfidf::fit(&docs);
        let map = RowMap::new((0..n as u32).map(Some).collect());
        let popularity: Vec<f32> = (0..n).map(|_| (rng.below(1000) as f32 / 1000.0).powi(4)).collect();
        let freshness: Vec<f32> = (0..n).map(|_| rng.below(1000) as f32 / 1000.0).collect();
        let owners: Vec<i64> = (0..n as i64).map(|i| i % 500).collect();
        let dict = vec![String::new(), "age:18-24".to_string()];
        let keys: Vec<[u32; 3]> = (0..users).map(|u| [(u % 2) as u32, 0, 0]).collect();
        let segments = Segments::build(&dict, &keys, &ui);
        let mut cat = Catalog {
            factors: f,
            item_factors: &y,
            gram: &gram,
            alpha: 1.0,
            quantized: None,
            tfidf: Some(&tfidf),
            to_item: &map,
            from_item: &map,
            popularity: &popularity,
            freshness: &freshness,
            segments: &segments,
            owners: &owners,
            graph: Some(&graph),
            ivf: None,
        };
        let ids: Vec<i64> = (0..n as i64).map(|i| 1000 + i).collect();
        let o = HybridOptions::default();
        for case in 0..12u32 {
            let topic = case as usize % 30;
            let mut history: Vec<Event> = (0..8).map(|j| ev((topic + 30 * (j * 7 + case as usize)) as u32, 1.0 + j as f32, 100.0 + j as f32)).collect();
            if case % 3 == 0 {
                history.push(ev(history[0].item + 1, -5.0, 109.0));
            }
            let followees: Vec<Followee> = (0..3)
                .map(|k| Followee {
                    id: k,
                    mutual: k == 0,
                    events: (0..10).map(|j| ev(((case as usize * 31 + k as usize * 101 + j * 17) % n) as u32, 2.0, 100.0 + j as f32)).collect(),
                    owned: vec![(k as u32 * 997 + case) % n as u32],
                    ..Default::default()
                })
                .collect();
            let segs = if case % 4 == 1 { vec!["age:18-24".to_string()] } else { vec![] };
            let user = UserInput { history: if case % 4 == 1 { history[..2].to_vec() } else { history }, followees, segments: segs, ..Default::default() };
            let weights = if case % 5 == 4 { Weights { content: 0.0, graph: 0.0, ..Weights::default() } } else { Weights::default() };
            let ivf = if case % 2 == 0 { &plain } else { &copied };
            cat.ivf = None;
            let dense = score(&cat, &user, &o, &weights);
            cat.ivf = Some(ivf);
            let part = score(&cat, &user, &o, &weights);
            assert!(part.als_by_ivf && part.als.is_empty() && !dense.als.is_empty());
            assert!((part.als_max - dense.als_max).abs() <= 1e-5 * dense.als_max.abs());
            let filters: [&dyn Fn(usize) -> bool; 2] = [&|_| true, &|i| i % 7 != 3];
            for allowed in filters {
                let mut fused = vec![];
                cat.ivf = None;
                dense.fused(&cat, &mut fused);
                let mut top = TopK::new(200);
                fused.iter().enumerate().filter(|(i, _)| allowed(*i)).for_each(|(i, &v)| top.push(Scored { score: v, id: ids[i], index: i as u32 }));
                let mut want = top.into_sorted();
                want.iter_mut().for_each(|c| c.score = dense.parts(&cat, c.index).total());
                want.sort_by(rank_order);
                want.truncate(20);
                cat.ivf = Some(ivf);
                let mask: Vec<bool> = (0..n).map(allowed).collect();
                let got = part.top_by_ivf(&cat, &ids, 20, Some(&mask));
                assert_eq!(got.len(), 20);
                // The same page with the bound's dense part computed before the followees and
                // demographics were scored.
                let mut early = score_history(&cat, &user, &o, &weights);
                let bound = early.dense_bound(&cat, Some(&mask));
                assert!(bound.is_some());
                // The graph's posts added one by one give the bound the whole dense pass
                // gives, bit for bit.
                assert_eq!(early.graph_touched.as_ref().is_some_and(|t| !t.is_empty()), weights.graph > 0.0, "case {case}");
                let whole = Scores { graph_touched: None, ..early.clone() }.dense_bound(&cat, Some(&mask)).expect("a bound");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                let b = bound.as_ref().expect("a bound");
                assert!(bits(&b.rest) == bits(&whole.rest) && bits(&b.cluster_max) == bits(&whole.cluster_max), "case {case}");
                score_people(&mut early, &cat, &user, &o);
                assert_eq!(early.top_by_ivf_from(&cat, &ids, 20, Some(&mask), bound), got, "case {case}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.score - w.score).abs() <= 1e-5 * w.score.abs().max(1e-3), "case {case}: {got:?} vs {want:?}");
                }
                let (gi, wi): (HashSet<u32>, HashSet<u32>) = (got.iter().map(|c| c.index).collect(), want.iter().map(|c| c.index).collect());
                let kth = want[19].score;
                // Only near-ties at the page's edge may differ.
                for i in gi.symmetric_difference(&wi) {
                    assert!((dense.parts(&cat, *i).total() - kth).abs() <= 1e-5 * kth.abs().max(1e-3), "case {case}: item {i}");
                }
            }
        }
    }
}
