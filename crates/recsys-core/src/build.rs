//! A model from a snapshot of the app's tables: the compute half of `recsys_train`, as plain
//! Rust. The extension reads the tables into an [`AppData`] (`src/store/snapshot.rs`), calls
//! [`build`], and saves the [`Built`] model (`src/store/model.rs`); tests build models here
//! without a database.
//!
//! Phases, in order: the interaction matrix and trending popularity; ALS (or imported
//! factors); the item graph; TF-IDF over the posts and placement of posts nobody engaged with
//! yet; freshness, owners and the fold-in Gram; demographic segments; fusion weights tuned on a
//! holdout (option "tune"); the rating model (option "feedback": "explicit").
use crate::als::{self, AlsModel, Progress};
use crate::csr::Csr;
use crate::explicit::{ExplicitModel, Knn};
use crate::graph::ItemGraph;
use crate::hybrid::{self, Event, GraphKind, Segments, Weights};
use crate::ids::{Dict, IdIndex};
use crate::ivf::Ivf;
use crate::options::TrainOptions;
use crate::tfidf::Tfidf;
use crate::world::{EvalConfig, World};
use crate::CoreError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

/// The interactions as read: ids encoded densely in first-seen order, one triplet per row.
#[derive(Clone, Debug, Default)]
pub struct Interactions {
    pub user_ids: Vec<i64>,
    pub item_ids: Vec<i64>,
    pub rows: Vec<u32>,
    pub cols: Vec<u32>,
    pub vals: Vec<f32>,
    /// Per row: days since the epoch (empty when the table has no time column; NaN = NULL).
    pub days: Vec<f32>,
    /// Rows read, and rows skipped (non-positive or non-finite weight).
    pub read: u64,
    pub skipped: u64,
}

/// The posts table as the content model reads it.
#[derive(Clone, Debug, Default)]
pub struct Posts {
    pub ids: Vec<i64>,
    pub tokens: Vec<Vec<String>>,
    pub token_count: u64,
    /// category, project_code, mood per post (the feed filters), as read.
    pub attrs: Vec<[Option<String>; 3]>,
    /// Owner per post (None = unknown).
    pub owners: Vec<Option<i64>>,
    /// Creation day per post (NaN = unknown).
    pub created: Vec<f32>,
}

/// Factors imported from tables (`recsys_import_factors`): ids and row-major vectors of `dim`.
#[derive(Clone, Debug, Default)]
pub struct Factors {
    pub ids: Vec<i64>,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Everything a train reads from the app's tables, read once before any compute.
#[derive(Debug, Default)]
pub struct AppData {
    pub interactions: Interactions,
    pub posts: Option<Posts>,
    /// The users table's demographic keys: a dictionary and per user id its three codes.
    pub user_keys: Option<(Vec<String>, HashMap<i64, [u32; 3]>)>,
    /// Followers per followed user.
    pub followers: Vec<(i64, u32)>,
    /// (follower, followee) pairs: read for tuning and evaluation only.
    pub follows: Vec<(i64, i64)>,
    /// (user, post, rating) rows: read in explicit mode only.
    pub ratings: Option<Vec<(i64, i64, f32)>>,
    /// (users, posts) factors to serve instead of training ALS.
    pub imported: Option<(Factors, Factors)>,
}

/// Between blocks of work: cancel checks and per-iteration reports (from [`als::Progress`]),
/// plus the phase names and notices a caller may show.
pub trait Observer: Progress {
    fn phase(&mut self, _name: &'static str) {}
    fn notice(&mut self, _message: &str) {}
}

/// Forwards cancel checks only: the tuning splits train ALS too, without per-iteration reports.
struct Quiet<'a>(&'a mut dyn Observer);

impl Progress for Quiet<'_> {
    fn check(&mut self) -> Result<(), CoreError> {
        self.0.check()
    }
}

/// The posts' TF-IDF and their filter attributes, dictionary-encoded (code 0 = NULL).
pub struct Content {
    pub ids: Vec<i64>,
    pub tfidf: Tfidf,
    /// category, project_code, mood per post, as codes into `dict`.
    pub codes: Vec<u32>,
    pub dict: Vec<String>,
}

impl Content {
    /// Puts document `order[k]` at position k (rows, postings, ids and codes alike).
    fn permute(&mut self, order: &[usize]) {
        self.ids = order.iter().map(|&d| self.ids[d]).collect();
        self.codes = order.iter().flat_map(|&d| self.codes[d * 3..d * 3 + 3].iter().copied()).collect();
        self.tfidf.docs = self.tfidf.docs.permute_rows(order);
        self.tfidf.postings = self.tfidf.docs.transpose();
    }
}

impl Posts {
    /// Puts post `order[k]` at position k.
    fn permute(&mut self, order: &[usize]) {
        fn take<T: Default>(v: &mut [T], order: &[usize]) -> Vec<T> {
            order.iter().map(|&d| std::mem::take(&mut v[d])).collect()
        }
        self.ids = take(&mut self.ids, order);
        self.tokens = take(&mut self.tokens, order);
        self.attrs = take(&mut self.attrs, order);
        self.owners = take(&mut self.owners, order);
        self.created = take(&mut self.created, order);
    }
}

/// The documents ordered by their item (documents without one last, in their order).
fn item_order(to_item: &[Option<u32>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..to_item.len()).collect();
    order.sort_by_key(|&d| to_item[d].unwrap_or(u32::MAX));
    order
}

/// A trained model, ready to save.
pub struct Built {
    pub user_ids: Vec<i64>,
    /// Posts with interactions first (`interacted_items` of them), then the ones placed by content.
    pub item_ids: Vec<i64>,
    pub interacted_items: usize,
    pub als: AlsModel,
    pub popularity: Vec<f32>,
    /// YᵀY + λI, for fold-in.
    pub gram: Vec<f32>,
    pub content: Option<Content>,
    pub freshness: Vec<f32>,
    pub newest_day: f32,
    /// Per item: owner user id (i64::MIN = unknown; empty = no owner information).
    pub owners: Vec<i64>,
    pub segments: Option<Segments>,
    pub followers: Vec<(i64, u32)>,
    pub rating: Option<(ExplicitModel, Option<Knn>)>,
    pub graph: Option<ItemGraph>,
    /// The partition of the item factors (None below `ivf::MIN_ITEMS` posts).
    pub ivf: Option<Ivf>,
    /// The fusion weights to serve: the options', or tuned.
    pub weights: Weights,
    /// The train report's compute part (sizes, loss, graph, tuning, rating model, seconds).
    pub report: Value,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Trains a model from `data` with options `o` on `pool`, within `budget` bytes for the
/// item graph's dense solve. Returns [`CoreError::NoRatings`] in explicit mode when no rating
/// row matches a trained user and post.
///
/// Longer than most functions on purpose: it is the sequence of phases, each one call, so the
/// order of the phases and what each one frees read top to bottom in one place.
pub fn build(data: AppData, o: &TrainOptions, budget: u64, pool: &rayon::ThreadPool, obs: &mut dyn Observer) -> Result<Built, CoreError> {
    let AppData { interactions: mut loaded, posts, user_keys, followers, follows, ratings, imported } = data;
    if let Some((_, items)) = &imported {
        keep_imported_items(&mut loaded, items);
    }
    let (ui, mut popularity, events) = matrix(&loaded, o)?;
    let n_items = ui.cols;
    let mut report = json!({
        "users": ui.rows,
        "posts": n_items,
        "interactions": loaded.read,
        "skipped_rows": loaded.skipped,
        "nonzeros": ui.nnz(),
        "followed_users": followers.len(),
    });
    let Interactions { user_ids, mut item_ids, .. } = loaded;
    obs.check()?;

    let t1 = Instant::now();
    obs.phase(if imported.is_some() { "importing factors" } else { "als" });
    let (mut m, stats) = match imported {
        None => als::train(&ui, &o.als, pool, obs)?,
        Some((users, items)) => (imported_model(&user_ids, &users, items, n_items), vec![]),
    };
    report["factors"] = json!(m.factors);
    report["iterations"] = json!(stats.len());
    report["loss"] = json!(stats.iter().map(|s| s.loss).collect::<Vec<_>>());
    let train_s = t1.elapsed().as_secs_f64();

    obs.phase("graph");
    let (graph, graph_report) = build_graph(&ui, o, budget, pool, obs)?;
    report["graph"] = graph_report;

    let t_content = Instant::now();
    obs.phase("content");
    let (content, to_item, posts) = match posts {
        Some(mut p) => {
            let (mut c, to_item) = add_content(&p, &mut item_ids, &mut m, &mut popularity, pool, obs)?;
            // Documents in item order: a feed's content scores (per document) then map to the
            // items in one sequential pass instead of a random gather over the catalogue.
            let order = item_order(&to_item);
            c.permute(&order);
            p.permute(&order);
            (Some(c), order.iter().map(|&d| to_item[d]).collect(), Some(p))
        }
        None => (None, vec![], None),
    };
    report["content_posts"] = json!(content.as_ref().map(|c| c.ids.len()));
    report["content_terms"] = json!(content.as_ref().map(|c| c.tfidf.vocab.len()));
    report["placed_by_content"] = json!(item_ids.len() - n_items);
    let (created, owner) = post_columns(posts.as_ref(), &to_item, item_ids.len());
    drop(posts);
    let freshness = hybrid::freshness(&created, o.hybrid.freshness_half_life_days);
    let newest_day = hybrid::newest_day(&created);
    let gram = als::gram(&m.item_factors, m.factors, o.als.regularization, pool);
    let content_s = t_content.elapsed().as_secs_f64();
    // The partition behind the exact ALS-only top-k (large catalogues only).
    let t_ivf = Instant::now();
    obs.phase("partition");
    let ivf = Ivf::build(&m.item_factors, m.factors, pool, &mut || obs.check())?;
    report["partition"] = json!(ivf.as_ref().map(|p| json!({
        "clusters": p.radius.len(),
        "mb": round3(p.bytes() as f64 / (1 << 20) as f64),
        "seconds": round3(t_ivf.elapsed().as_secs_f64()),
    })));

    // Demographic segments over the users with interactions.
    let t_social = Instant::now();
    obs.phase("social");
    let segments = user_keys.as_ref().map(|(dict, by_id)| {
        let keys: Vec<[u32; 3]> = user_ids.iter().map(|u| by_id.get(u).copied().unwrap_or([0; 3])).collect();
        Segments::build(dict, &keys, &ui)
    });
    report["segments"] = json!(segments.as_ref().map(|s| s.lists.len()));
    let social_s = t_social.elapsed().as_secs_f64();

    // Fusion weights: the options', or tuned on a seeded holdout of this very data.
    let mut weights = o.hybrid.weights;
    report["tuned"] = Value::Null;
    if let Some(events) = events {
        obs.phase("tuning");
        let world = world(&user_ids, item_ids.len(), events, &follows, &owner, user_keys.as_ref(), content.as_ref().map(|c| (&c.tfidf, &to_item)), created);
        drop(follows);
        obs.check()?;
        let (w, r) = tune(&world, o, pool, obs)?;
        (weights, report["tuned"]) = (w, r);
    }
    report["fusion"] = json!(weights);

    // Explicit feedback: a rating model beside the ranking model, over the same post index.
    report["rating_model"] = Value::Null;
    let rating = match ratings.filter(|_| o.explicit) {
        Some(rows) => {
            obs.phase("rating model");
            let (r, rr) = rating_model(rows, o, &user_ids, &item_ids[..n_items], pool, obs)?;
            report["rating_model"] = rr;
            Some(r)
        }
        None => None,
    };
    report["seconds"] = json!({"train": round3(train_s), "content": round3(content_s), "social": round3(social_s)});
    let owners = if owner.iter().any(|x| x.is_some()) { owner.iter().map(|x| x.unwrap_or(i64::MIN)).collect() } else { vec![] };
    let als = m;
    Ok(Built {
        user_ids,
        item_ids,
        interacted_items: n_items,
        als,
        popularity,
        gram,
        content,
        freshness,
        newest_day,
        owners,
        segments,
        followers,
        rating,
        graph,
        ivf,
        weights,
        report,
    })
}

/// The user × post matrix, trending popularity (engagement decayed by age, relative to the
/// newest interaction), and with option "tune" the events again for the tuning splits.
#[allow(clippy::type_complexity)]
fn matrix(l: &Interactions, o: &TrainOptions) -> Result<(Csr, Vec<f32>, Option<Vec<(u32, Event)>>), CoreError> {
    let ui = Csr::from_triplets(l.user_ids.len(), l.item_ids.len(), &l.rows, &l.cols, &l.vals);
    if ui.nnz() == 0 {
        return Err(CoreError::EmptyInput);
    }
    let days = |k: usize| l.days.get(k).copied().unwrap_or(f32::NAN);
    let popularity = hybrid::trending(ui.cols, l.cols.iter().enumerate().map(|(k, &i)| (i, days(k))), o.hybrid.popularity_half_life_days);
    let events = o.tune.then(|| (0..l.rows.len()).map(|k| (l.rows[k], Event { item: l.cols[k], weight: l.vals[k], day: days(k) })).collect());
    Ok((ui, popularity, events))
}

/// The content model over every post, interactions or not; posts with text but no
/// interactions get factors from their content neighbours (appended to the items, with zero
/// popularity), so a new post can be recommended before anyone has seen it. Returns the
/// content model and per post its item.
fn add_content(
    p: &Posts,
    item_ids: &mut Vec<i64>,
    m: &mut AlsModel,
    popularity: &mut Vec<f32>,
    pool: &rayon::ThreadPool,
    obs: &mut dyn Observer,
) -> Result<(Content, Vec<Option<u32>>), CoreError> {
    let (c, mut to_item, new) = content_model(p, item_ids, m, pool);
    obs.check()?;
    for (d, v) in new {
        to_item[d] = Some(item_ids.len() as u32);
        item_ids.push(p.ids[d]);
        m.item_factors.extend_from_slice(&v);
        popularity.push(0.0);
    }
    m.items = item_ids.len();
    Ok((c, to_item))
}

/// Per item: creation day (NaN = unknown) and owner, from the posts table.
fn post_columns(posts: Option<&Posts>, to_item: &[Option<u32>], n: usize) -> (Vec<f32>, Vec<Option<i64>>) {
    let mut created = vec![f32::NAN; n];
    let mut owner: Vec<Option<i64>> = vec![None; n];
    if let Some(p) = posts {
        for (d, i) in to_item.iter().enumerate() {
            if let Some(i) = i {
                created[*i as usize] = p.created[d];
                owner[*i as usize] = p.owners[d];
            }
        }
    }
    (created, owner)
}

/// Imported factors: the post index becomes the imported one; interactions on posts without
/// imported factors are left out (they still count for nothing else).
fn keep_imported_items(loaded: &mut Interactions, items: &Factors) {
    let index = IdIndex::positions(&items.ids);
    let keep: Vec<Option<u32>> = loaded.item_ids.iter().map(|&p| index.get(p)).collect();
    let mut w = 0;
    for k in 0..loaded.rows.len() {
        if let Some(i) = keep[loaded.cols[k] as usize] {
            loaded.rows[w] = loaded.rows[k];
            loaded.cols[w] = i;
            loaded.vals[w] = loaded.vals[k];
            if !loaded.days.is_empty() {
                loaded.days[w] = loaded.days[k];
            }
            w += 1;
        }
    }
    loaded.rows.truncate(w);
    loaded.cols.truncate(w);
    loaded.vals.truncate(w);
    loaded.days.truncate(w.min(loaded.days.len()));
    loaded.item_ids = items.ids.clone();
}

/// The model of imported factors: user rows in `user_ids` order (zero for users without one).
fn imported_model(user_ids: &[i64], users: &Factors, items: Factors, n_items: usize) -> AlsModel {
    let f = items.dim;
    let index = IdIndex::positions(&users.ids);
    let mut uf = vec![0f32; user_ids.len() * f];
    for (u, id) in user_ids.iter().enumerate() {
        if let Some(k) = index.get(*id).map(|k| k as usize) {
            uf[u * f..(u + 1) * f].copy_from_slice(&users.data[k * f..(k + 1) * f]);
        }
    }
    AlsModel { factors: f, users: user_ids.len(), items: n_items, user_factors: uf, item_factors: items.data }
}

/// The item graph the options pick for this catalogue (None = off); an EASE dense solve
/// over `budget` is an error.
fn graph_kind(ui: &Csr, o: &TrainOptions, budget: u64) -> Result<Option<GraphKind>, CoreError> {
    let Some(kind) = o.hybrid.graph.resolve(ui.cols, budget) else { return Ok(None) };
    let needed = crate::graph::ease_bytes(ui.cols);
    if kind == GraphKind::Ease && needed > budget {
        return Err(CoreError::OverBudget { needed, budget, what: "the EASE item graph (dense solve)" });
    }
    Ok(Some(kind))
}

/// The item-item graph over the interaction matrix (EASE when the catalogue is small enough for
/// its dense solve within `budget`, else RP3beta; see the "graph" option), and its report.
fn build_graph(ui: &Csr, o: &TrainOptions, budget: u64, pool: &rayon::ThreadPool, obs: &mut dyn Observer) -> Result<(Option<ItemGraph>, Value), CoreError> {
    let Some(kind) = graph_kind(ui, o, budget)? else { return Ok((None, json!({"kind": "off"}))) };
    let t = Instant::now();
    let graph = o.hybrid.graph.build(kind, ui, pool, &mut || obs.check())?;
    let name = if kind == GraphKind::Ease { "ease" } else { "rp3beta" };
    let report = json!({
        "kind": name,
        "edges": graph.as_ref().map(|x| x.nnz()),
        "mb": graph.as_ref().map(|x| round3(x.bytes() as f64 / (1 << 20) as f64)),
        "seconds": round3(t.elapsed().as_secs_f64()),
    });
    obs.notice(&format!("item graph ({name}) built in {:.2}s", t.elapsed().as_secs_f64()));
    Ok((graph, report))
}

/// TF-IDF and filter codes over every post; per post its model item (None = no interactions);
/// and factors for the posts without interactions placed by their content neighbours.
fn content_model(p: &Posts, item_ids: &[i64], m: &AlsModel, pool: &rayon::ThreadPool) -> (Content, Vec<Option<u32>>, Vec<(usize, Vec<f32>)>) {
    let tfidf = Tfidf::fit(&p.tokens);
    let mut dict = Dict::default();
    let codes: Vec<u32> = p.attrs.iter().flatten().map(|v| dict.code(v.as_deref())).collect();
    let index = IdIndex::positions(item_ids);
    let to_item: Vec<Option<u32>> = p.ids.iter().map(|&id| index.get(id)).collect();
    let new = pool.install(|| crate::tfidf::place_by_content(&tfidf, &to_item, &m.item_factors, m.factors, crate::tfidf::PLACEMENT_NEIGHBOURS));
    (Content { ids: p.ids.clone(), tfidf, codes, dict: dict.into_values() }, to_item, new)
}

/// Fusion weights tuned on seeded holdouts of the training data (kept only when they do at
/// least as well as the options' on a split the search never saw), and the report.
fn tune(world: &World, o: &TrainOptions, pool: &rayon::ThreadPool, obs: &mut dyn Observer) -> Result<(Weights, Value), CoreError> {
    let t0 = Instant::now();
    let cfg = EvalConfig { cold_fraction: 0.1, seed: o.als.seed, ..Default::default() };
    obs.notice(&format!("tuning fusion weights on a seeded holdout ({} users)", cfg.max_users));
    let r = crate::tuning::tune_checked(world, &o.als, &o.hybrid, &cfg, &o.hybrid.weights, pool, &mut Quiet(obs))?;
    // ndcg_at_10 is the chosen weights' NDCG on the split the tuner never saw (what
    // recsys_models shows as holdout_ndcg and recsys_deploy 'best' ranks by).
    let report = json!({
        "weights": r.weights,
        "kept": if r.kept_tuned { "tuned" } else { "start" },
        "ndcg_at_10": round3(r.holdout_ndcg),
        "ndcg_at_10_start": round3(r.holdout_ndcg_start),
        "ndcg_at_10_tuned": round3(r.holdout_ndcg_tuned),
        "ndcg_at_10_als_only": round3(r.holdout_ndcg_als_only),
        "tuning_split": {"ndcg_at_10_start": round3(r.tuning_ndcg_start), "ndcg_at_10_tuned": round3(r.tuning_ndcg_tuned)},
        "users": r.users,
        "seconds": round3(t0.elapsed().as_secs_f64()),
    });
    Ok((r.weights, report))
}

/// Explicit feedback: the rating model over `rows` (user, post, rating) of the trained users and
/// posts, and its report.
fn rating_model(
    rows: Vec<(i64, i64, f32)>,
    o: &TrainOptions,
    user_ids: &[i64],
    item_ids: &[i64],
    pool: &rayon::ThreadPool,
    obs: &mut dyn Observer,
) -> Result<((ExplicitModel, Option<Knn>), Value), CoreError> {
    let t = Instant::now();
    let users = IdIndex::positions(user_ids);
    let items = IdIndex::positions(item_ids);
    // One rating per (user, post): the mean of its rows.
    let known = rows.into_iter().filter_map(|(u, p, v)| Some((users.get(u)?, items.get(p)?, v)));
    let ratings = crate::explicit::mean_ratings(user_ids.len(), item_ids.len(), known).ok_or(CoreError::NoRatings)?;
    let model = crate::explicit::train(&ratings, &o.rating, pool, &mut || obs.check())?;
    let knn = (o.rating.knn_weight > 0.0).then(|| Knn::fit(&ratings, o.rating.knn_k, pool));
    obs.check()?;
    let report = json!({
        "ratings": ratings.nnz(),
        "mean": model.mu,
        "range": [model.min, model.max],
        "seconds": round3(t.elapsed().as_secs_f64()),
    });
    Ok(((model, knn), report))
}

/// The training data as a [`World`] for tuning and offline evaluation. Users who only follow
/// (no interactions) get indices after the model's users.
#[allow(clippy::too_many_arguments)]
pub fn world(
    user_ids: &[i64],
    n_items: usize,
    events: Vec<(u32, Event)>,
    follows: &[(i64, i64)],
    owner: &[Option<i64>],
    keys: Option<&(Vec<String>, HashMap<i64, [u32; 3]>)>,
    content: Option<(&Tfidf, &Vec<Option<u32>>)>,
    created: Vec<f32>,
) -> World {
    let mut index: HashMap<i64, u32> = user_ids.iter().enumerate().map(|(i, u)| (*u, i as u32)).collect();
    let mut ids = user_ids.to_vec();
    let mut idx = |u: i64| {
        let next = ids.len() as u32;
        *index.entry(u).or_insert_with(|| {
            ids.push(u);
            next
        })
    };
    let pairs: Vec<(u32, u32)> = follows.iter().map(|&(a, b)| (idx(a), idx(b))).collect();
    let owners: Vec<Option<u32>> = owner.iter().map(|o| o.and_then(|u| index.get(&u).copied())).collect();
    let (dict, codes) = match keys {
        Some((dict, by_id)) => (dict.clone(), ids.iter().map(|u| by_id.get(u).copied().unwrap_or([0; 3])).collect()),
        None => (vec![String::new()], vec![[0u32; 3]; ids.len()]),
    };
    let (tfidf, to_item) = match content {
        Some((t, m)) => (Some(t.clone()), m.clone()),
        None => (None, vec![]),
    };
    World::new(ids.len(), n_items, events, &pairs, &owners, codes, dict, tfidf, to_item, created)
}

/// The snapshot as a [`World`] for offline evaluation (`recsys_evaluate`): events with a value
/// below `min_value` left out; owners, creation days and TF-IDF from the posts.
pub fn evaluation_world(data: AppData, min_value: Option<f32>) -> Result<World, CoreError> {
    let AppData { interactions: l, posts, user_keys, follows, .. } = data;
    let day = |k: usize| l.days.get(k).copied().unwrap_or(f32::NAN);
    let events: Vec<(u32, Event)> = (0..l.rows.len())
        .filter(|&k| min_value.is_none_or(|m| l.vals[k] >= m))
        .map(|k| (l.rows[k], Event { item: l.cols[k], weight: l.vals[k], day: day(k) }))
        .collect();
    if events.is_empty() {
        return Err(CoreError::EmptyInput);
    }
    let n_items = l.item_ids.len();
    let index = IdIndex::positions(&l.item_ids);
    let content = posts.as_ref().map(|p| (Tfidf::fit(&p.tokens), p.ids.iter().map(|&id| index.get(id)).collect::<Vec<Option<u32>>>()));
    let (created, owner) = post_columns(posts.as_ref(), content.as_ref().map_or(&[], |c| c.1.as_slice()), n_items);
    Ok(world(&l.user_ids, n_items, events, &follows, &owner, user_keys.as_ref(), content.as_ref().map(|(t, m)| (t, m)), created))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting {
        phases: Vec<&'static str>,
        checks: usize,
    }
    impl Progress for Counting {
        fn check(&mut self) -> Result<(), CoreError> {
            self.checks += 1;
            Ok(())
        }
    }
    impl Observer for Counting {
        fn phase(&mut self, name: &'static str) {
            self.phases.push(name);
        }
    }

    /// A small snapshot from the seeded synthetic generator, with posts.
    fn snapshot() -> AppData {
        let d = crate::synth::generate(&crate::synth::SynthConfig::new(5, 300, 200, 6000));
        let mut l = Interactions::default();
        let (mut users, mut items) = (HashMap::new(), HashMap::new());
        let x = &d.interactions;
        for k in 0..x.user_id.len() {
            let n = users.len() as u32;
            let u = *users.entry(x.user_id[k]).or_insert_with(|| {
                l.user_ids.push(x.user_id[k]);
                n
            });
            let n = items.len() as u32;
            let i = *items.entry(x.post_id[k]).or_insert_with(|| {
                l.item_ids.push(x.post_id[k]);
                n
            });
            l.rows.push(u);
            l.cols.push(i);
            l.vals.push(1.0);
            l.days.push(x.created_at[k] as f32 / 86_400.0);
        }
        l.read = l.rows.len() as u64;
        let posts = Posts {
            ids: d.posts.iter().map(|p| p.id).collect(),
            tokens: d.posts.iter().map(|p| p.tokens()).collect(),
            attrs: d.posts.iter().map(|p| [Some(p.category.clone()), Some(p.project_code.clone()), Some(p.mood.to_string())]).collect(),
            owners: d.posts.iter().map(|p| Some(p.owner_id)).collect(),
            created: d.posts.iter().map(|p| p.created_at as f32 / 86_400.0).collect(),
            ..Default::default()
        };
        AppData { interactions: l, posts: Some(posts), ..Default::default() }
    }

    #[test]
    fn builds_a_servable_model_without_a_database() {
        let pool = als::pool(2, None).unwrap();
        let data = snapshot();
        let (n_posts, n_interacted) = (data.posts.as_ref().unwrap().ids.len(), data.interactions.item_ids.len());
        let mut o = TrainOptions::default();
        o.als.iterations = 3;
        let mut obs = Counting { phases: vec![], checks: 0 };
        let b = build(data, &o, 1 << 30, &pool, &mut obs).unwrap();
        assert_eq!(obs.phases, ["als", "graph", "content", "partition", "social"]);
        assert!(obs.checks > 3, "cancel is checked between blocks ({} checks)", obs.checks);
        assert_eq!(b.interacted_items, n_interacted);
        // Every post with text is servable: the ones nobody engaged with were placed by content.
        assert_eq!(b.item_ids.len(), n_posts.max(n_interacted));
        assert_eq!(b.als.item_factors.len(), b.item_ids.len() * b.als.factors);
        assert_eq!(b.popularity.len(), b.item_ids.len());
        assert_eq!(b.gram.len(), b.als.factors * b.als.factors);
        assert!(b.graph.is_some());
        assert_eq!(b.report["iterations"], json!(3));
        assert_eq!(b.report["placed_by_content"], json!(b.item_ids.len() - n_interacted));
        // The documents are stored in item order (documents without an item last), each with
        // the vector it has when the posts are fitted in the order they were read.
        let c = b.content.as_ref().unwrap();
        let pos: std::collections::HashMap<i64, usize> = b.item_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let keys: Vec<usize> = c.ids.iter().map(|id| pos.get(id).copied().unwrap_or(usize::MAX)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1] || w[1] == usize::MAX), "documents in item order");
        let read = snapshot().posts.unwrap();
        let fitted = Tfidf::fit(&read.tokens);
        for (k, id) in c.ids.iter().enumerate() {
            let d = read.ids.iter().position(|x| x == id).unwrap();
            assert_eq!(c.tfidf.docs.row(k), fitted.docs.row(d), "post {id}");
            if let Some(&t) = c.tfidf.docs.row(k).0.first() {
                assert!(c.tfidf.postings.row(t as usize).0.contains(&(k as u32)), "postings follow the documents");
            }
        }
    }

    #[test]
    fn stops_when_the_observer_cancels() {
        struct Cancel;
        impl Progress for Cancel {
            fn check(&mut self) -> Result<(), CoreError> {
                Err(CoreError::Canceled)
            }
        }
        impl Observer for Cancel {}
        let pool = als::pool(1, None).unwrap();
        assert!(matches!(build(snapshot(), &TrainOptions::default(), 1 << 30, &pool, &mut Cancel), Err(CoreError::Canceled)));
    }

    #[test]
    fn explicit_mode_without_matching_ratings_is_an_error() {
        let pool = als::pool(1, None).unwrap();
        let mut data = snapshot();
        data.ratings = Some(vec![(-1, -1, 5.0)]);
        let mut o = TrainOptions { explicit: true, ..Default::default() };
        o.als.iterations = 1;
        assert!(matches!(build(data, &o, 1 << 30, &pool, &mut Counting { phases: vec![], checks: 0 }), Err(CoreError::NoRatings)));
    }
}
