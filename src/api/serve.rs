use crate::options::DEFAULT_MODEL;
use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::store::model::{self, Serving};
use crate::store::request::{self, Request};
use pgrx::prelude::*;
use pgrx::JsonB;
use recsys_core::als::FoldIn;
use recsys_core::hybrid::{self, Parts, Scores, Weights};
use recsys_core::topk::{Scored, TopK};

use crate::store::live;
use pgrx::spi::SpiClient;
use std::collections::{HashMap, HashSet};

/// Positions of a feed re-ranked for diversity; later positions keep score order.
const MMR_PICKS: usize = 1000;
/// Candidates beyond the page that MMR may choose from.
const MMR_EXTRA_POOL: usize = 3000;

pub(super) fn check_k(k: i32) -> Result<usize> {
    if k < 1 {
        return Err(RecsysError::InvalidArgument { message: format!("k must be at least 1, got {k}"), hint: "pass k => 10".into() });
    }
    let max = gucs::max_k();
    if k > max {
        return Err(RecsysError::InvalidArgument {
            message: format!("k = {k} is above recsys.max_k ({max})"),
            hint: format!("SET recsys.max_k = {k} to allow it"),
        });
    }
    Ok(k as usize)
}

/// The feed arguments of recsys_recommend, checked.
pub(crate) struct Feed<'a> {
    pub k: usize,
    pub offset: usize,
    pub diversity: f32,
    pub attrs: [Option<&'a str>; 3],
    pub include: Option<HashSet<i64>>,
    pub exclude: HashSet<i64>,
    /// Posts matching the attribute filters in the posts table now (None = no filter, or no
    /// posts table: then the model's codes decide).
    pub live_match: Option<HashSet<i64>>,
}

/// A ranked page: visible posts only.
pub(crate) struct Ranked {
    pub items: Vec<Scored>,
}

/// Rounds of "rank, drop what is no longer visible, rank again" before a page is returned
/// short: each round widens the pool, so only a burst of deletions among the top posts costs
/// more than one.
const REFILL_ROUNDS: usize = 4;

impl<'a> Feed<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        k: i32,
        category: Option<&'a str>,
        project_code: Option<&'a str>,
        mood: Option<&'a str>,
        include: Option<Vec<Option<i64>>>,
        exclude: Option<Vec<Option<i64>>>,
        offset: i32,
        diversity: f32,
    ) -> Result<Feed<'a>> {
        let k = check_k(k)?;
        if offset < 0 {
            return Err(RecsysError::InvalidArgument { message: format!("offset must be 0 or more, got {offset}"), hint: "pass offset => 0".into() });
        }
        if (offset as i64 + k as i64) > gucs::max_k() as i64 * 10 {
            return Err(RecsysError::InvalidArgument {
                message: format!("offset + k = {} is above 10 × recsys.max_k", offset as i64 + k as i64),
                hint: "page with smaller offsets, or raise recsys.max_k".into(),
            });
        }
        if !(0.0..=1.0).contains(&diversity) {
            return Err(RecsysError::InvalidArgument {
                message: format!("diversity must be between 0 and 1, got {diversity}"),
                hint: "0 = off, 0.3 = a mild re-rank, 1 = most diverse".into(),
            });
        }
        Ok(Feed {
            k,
            offset: offset as usize,
            diversity,
            attrs: [category, project_code, mood],
            include: include.map(|v| v.into_iter().flatten().collect()),
            exclude: exclude.map(|v| v.into_iter().flatten().collect()).unwrap_or_default(),
            live_match: None,
        })
    }

    /// Reads what the attribute filters match in the posts table now.
    pub fn prepare(&mut self, client: &pgrx::spi::SpiClient<'_>, m: &Serving) -> Result<()> {
        self.live_match = live::matching(client, m, self.attrs)?;
        Ok(())
    }

    /// Ranks `scores` (one per model item), applying every filter, the page and the re-rank.
    /// The filter codes for this feed (None when no attribute filter is set).
    fn codes(&self, m: &Serving) -> Result<Option<[Option<Option<u32>>; 3]>> {
        if self.attrs.iter().all(|a| a.is_none()) || self.live_match.is_some() {
            return Ok(None);
        }
        let c = m.content.as_ref().ok_or(RecsysError::NoContentModel)?;
        Ok(Some(c.filter_codes(self.attrs)))
    }

    /// Whether model item `i` may appear in this feed.
    fn allowed(&self, m: &Serving, i: usize, seen: Option<&HashSet<i64>>, codes: Option<&[Option<Option<u32>>; 3]>) -> bool {
        let id = m.item_ids[i];
        if seen.is_some_and(|x| x.contains(&id))
            || self.exclude.contains(&id)
            || self.include.as_ref().is_some_and(|inc| !inc.contains(&id))
            || self.live_match.as_ref().is_some_and(|l| !l.contains(&id))
        {
            return false;
        }
        match (codes, m.content.as_ref()) {
            (None, _) => true,
            (Some(codes), Some(c)) => c.from_item[i].is_some_and(|row| c.matches(row as usize, codes)),
            (Some(_), None) => false,
        }
    }

    /// Which items may appear, as one flag per item (None = all): built once per call, so the
    /// scan tests a byte instead of hashing ids (a filter keeps the threshold low for long).
    fn mask(&self, m: &Serving, seen: Option<&HashSet<i64>>, codes: Option<&[Option<Option<u32>>; 3]>) -> Option<Vec<bool>> {
        let seen_any = seen.is_some_and(|s| !s.is_empty());
        if !seen_any && self.exclude.is_empty() && self.include.is_none() && codes.is_none() && self.live_match.is_none() {
            return None;
        }
        let n = m.item_ids.len();
        let allow = |set: &HashSet<i64>| {
            let mut v = vec![false; n];
            set.iter().filter_map(|&id| m.item_index.get(id)).for_each(|i| v[i as usize] = true);
            v
        };
        let mut mask = match &self.include {
            None => vec![true; n],
            Some(inc) => allow(inc),
        };
        if let Some(live) = &self.live_match {
            mask.iter_mut().zip(allow(live)).for_each(|(ok, l)| *ok = *ok && l);
        }
        if let Some(codes) = codes {
            match m.content.as_ref() {
                Some(c) => mask.iter_mut().zip(&c.from_item).for_each(|(ok, row)| *ok = *ok && row.is_some_and(|r| c.matches(r as usize, codes))),
                None => mask.iter_mut().for_each(|ok| *ok = false),
            }
        }
        for id in seen.into_iter().flatten().chain(self.exclude.iter()) {
            if let Some(i) = m.item_index.get(*id) {
                mask[i as usize] = false;
            }
        }
        Some(mask)
    }

    /// The popularity feed as a walk down the precomputed order: O(page), not O(catalogue).
    /// `pop` is the popularity in force and `first` the posts it ranks (trending now, best
    /// first); the rest of the walk follows the model's popularity order.
    pub fn rank_popular(&self, client: &SpiClient<'_>, m: &Serving, pop: &[f32], first: &[u32], seen: Option<&HashSet<i64>>) -> Result<Ranked> {
        if self.diversity > 0.0 {
            return self.rank(client, m, pop, seen, None);
        }
        let codes = self.codes(m)?;
        let want = self.offset + self.k;
        let mut out = Vec::with_capacity(want);
        let mut walked = HashSet::new();
        let mut order = first
            .iter()
            .chain(m.popularity_order.iter())
            .copied()
            .filter(|&i| walked.insert(i) && self.allowed(m, i as usize, seen, codes.as_ref()));
        // Walked in batches, each checked against the posts table, until the page is full.
        loop {
            let need = want - out.len();
            let batch: Vec<Scored> =
                order.by_ref().take(need + need / 2 + 8).map(|i| Scored { score: pop[i as usize], id: m.item_ids[i as usize], index: i }).collect();
            if batch.is_empty() {
                break;
            }
            let ids: Vec<i64> = batch.iter().map(|c| c.id).collect();
            match live::visible(client, m, &ids)? {
                None => out.extend(batch),
                Some(v) => out.extend(batch.into_iter().filter(|c| v.contains_key(&c.id))),
            }
            if out.len() >= want {
                break;
            }
            pgrx::check_for_interrupts!();
        }
        out.truncate(want);
        Ok(Ranked { items: out.into_iter().skip(self.offset).collect() })
    }

    /// With `exact`, `scores` are approximate: a larger pool is kept and re-scored by `exact`
    /// before paging, so the returned order and scores are exact.
    /// Candidates no longer in the posts table (or hidden from the caller) are dropped and the
    /// pool refilled, so a page is full whenever enough visible posts exist.
    pub fn rank(&self, client: &SpiClient<'_>, m: &Serving, scores: &[f32], seen: Option<&HashSet<i64>>, exact: Option<&dyn Fn(u32) -> f32>) -> Result<Ranked> {
        let codes = self.codes(m)?;
        let want = self.offset + self.k;
        // MMR needs a pool to choose from (bounded: it is scanned once per pick); plain
        // ranking needs exactly the page.
        let mut pool = if self.diversity > 0.0 { want + (want * 3).clamp(20, MMR_EXTRA_POOL) } else { want };
        if exact.is_some() {
            pool = pool.max(want * 8 + 64);
        }
        // What the page (or MMR) needs visible; the rest of an exact re-scoring pool is only
        // there to fix the order.
        let need = if self.diversity > 0.0 { want + (want * 3).clamp(20, MMR_EXTRA_POOL) } else { want };
        let mut mask = self.mask(m, seen, codes.as_ref());
        let mut ranked: Vec<Scored> = vec![];
        for round in 0..REFILL_ROUNDS {
            let size = pool << (2 * round);
            let mut top = TopK::new(size);
            for (i, &s) in scores.iter().enumerate() {
                if s < top.threshold() || !mask.as_ref().map_or(true, |mk| mk[i]) {
                    continue;
                }
                top.push(Scored { score: s, id: m.item_ids[i], index: i as u32 });
            }
            let mut cands = top.into_sorted();
            if let Some(ex) = exact {
                cands.iter_mut().for_each(|c| c.score = ex(c.index));
                cands.sort_by(recsys_core::topk::rank_order);
            }
            let exhausted = cands.len() < size;
            // Checked against the posts table a prefix at a time, best first, until `need`
            // candidates are known visible: a call looks up about k posts, not the whole pool.
            ranked.clear();
            let mut gone = vec![];
            let mut checked = 0;
            let mut live = true;
            while ranked.len() < need && checked < cands.len() {
                let step = ((need - ranked.len()) + (need - ranked.len()) / 4 + 4).min(cands.len() - checked);
                let chunk = &cands[checked..checked + step];
                checked += step;
                let ids: Vec<i64> = chunk.iter().map(|c| c.id).collect();
                match live::visible(client, m, &ids)? {
                    None => {
                        live = false;
                        ranked = cands.clone();
                        break;
                    }
                    Some(vis) => {
                        for c in chunk {
                            if vis.contains_key(&c.id) {
                                ranked.push(*c);
                            } else {
                                gone.push(c.index);
                            }
                        }
                    }
                }
            }
            if !live || ranked.len() >= need || exhausted {
                break;
            }
            let mk = mask.get_or_insert_with(|| vec![true; scores.len()]);
            gone.iter().for_each(|&i| mk[i as usize] = false);
            pgrx::check_for_interrupts!();
        }
        ranked.truncate(need);
        let ranked = if self.diversity > 0.0 {
            let f = m.factors;
            let cos = |a: u32, b: u32| {
                let (a, b) = (a as usize, b as usize);
                recsys_core::kernels::dot_dispatch(&m.item_factors[a * f..(a + 1) * f], &m.item_factors[b * f..(b + 1) * f])
                    / (m.item_norms[a] * m.item_norms[b]).max(1e-12)
            };
            // Bounded: MMR is quadratic, so only the first MMR_PICKS positions are re-ranked,
            // and interrupts are checked after every pick.
            recsys_core::topk::mmr_bounded(&ranked, want, self.diversity, cos, MMR_PICKS, &mut || {
                pgrx::check_for_interrupts!();
            })
        } else {
            ranked
        };
        Ok(Ranked { items: ranked.into_iter().skip(self.offset).take(self.k).collect() })
    }
}

/// The model's fusion weights with the caller's partial override ({"social": 0.5}).
pub(super) fn weights_for(m: &Serving, over: Option<&JsonB>) -> Result<Weights> {
    match over {
        None => Ok(m.options.hybrid.weights),
        Some(j) => Ok(crate::options::parse_weights("weights", &j.0, m.options.hybrid.weights)?),
    }
}

/// One user's component scores, from the app's tables as they are now.
pub(super) struct Scored2 {
    pub req: Request,
    pub scores: Scores,
    /// The popularity component now (recsys_trending's signal) and its order; None = nothing
    /// trending in the window, the model's popularity stands in.
    pub pop: Option<(Vec<f32>, Vec<u32>)>,
}

impl Scored2 {
    /// The model's catalogue with the call's popularity.
    pub fn catalog<'a>(&'a self, m: &'a Serving) -> recsys_core::hybrid::Catalog<'a> {
        let mut c = m.catalog();
        if let Some((p, _)) = &self.pop {
            c.popularity = p;
        }
        c
    }
}

pub(super) fn score_user(client: &pgrx::spi::SpiClient<'_>, m: &Serving, user_id: i64, w: &Weights) -> Result<Scored2> {
    let req = request::gather(client, m, user_id, w)?;
    let pop = if w.popularity > 0.0 { super::trending::feed_popularity(client, m)? } else { None };
    let mut s = Scored2 { req, scores: Scores::default(), pop };
    s.scores = hybrid::score(&s.catalog(m), &s.req.input, &m.options.hybrid, w);
    Ok(s)
}

/// A short reason for one recommended post: its largest contribution, in words.
struct Reasons<'a> {
    m: &'a Serving,
    s: &'a Scored2,
    fold: Option<(FoldIn, Vec<(u32, f32)>)>,
    /// Current titles of the evidence posts the caller may see (None: no posts table).
    titles: Option<HashMap<i64, String>>,
}

impl<'a> Reasons<'a> {
    fn new(m: &'a Serving, s: &'a Scored2) -> Reasons<'a> {
        Reasons { m, s, fold: None, titles: None }
    }

    /// Reads the titles of the posts that will be named as evidence for `rows`, in one query.
    fn load_titles(&mut self, client: &SpiClient<'_>, rows: &[(u32, Parts)]) -> Result<()> {
        let mut ids = vec![];
        for (i, p) in rows {
            let first = match p.leading() {
                Some("als") => self.als_evidence(*i).first().map(|e| e.0),
                Some("graph") => self.graph_evidence(*i).first().map(|e| e.0),
                _ => None,
            };
            if let Some(j) = first {
                ids.push(self.m.item_ids[j as usize]);
            }
        }
        self.titles = live::visible(client, self.m, &ids)?;
        Ok(())
    }

    /// How to name post `j` to the caller: its current title, its id when there is no posts
    /// table, nothing when the caller may not see it (deleted, hidden, row-level security).
    fn name(&self, j: u32) -> Option<String> {
        let id = self.m.item_ids[j as usize];
        match &self.titles {
            None => Some(format!("post {id}")),
            Some(t) => t.get(&id).map(|t| if t.is_empty() { format!("post {id}") } else { format!("\"{t}\"") }),
        }
    }

    /// The history items behind an ALS score, largest contribution first (HKV section 5).
    fn als_evidence(&mut self, item: u32) -> Vec<(u32, f32)> {
        let m = self.m;
        let (fold, items) = self.fold.get_or_insert_with(|| {
            // The scorer already factorised this user's system: reuse it.
            self.s.scores.fold.clone().unwrap_or_else(|| {
                let items = hybrid::fold_in_items(&self.s.req.input.history);
                (FoldIn::new(&m.item_factors, m.factors, &m.gram, &items, m.options.als.alpha), items)
            })
        });
        let mut ev = fold.evidence(&m.item_factors, items, m.options.als.alpha, item);
        ev.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ev
    }

    /// The history items whose graph edges lead to `item`, positive contributions only,
    /// largest first.
    fn graph_evidence(&self, item: u32) -> Vec<(u32, f32)> {
        let Some(g) = self.m.graph.as_ref() else { return vec![] };
        let items: Vec<u32> = hybrid::fold_in_items(&self.s.req.input.history).into_iter().map(|x| x.0).collect();
        g.evidence(&items, item).into_iter().filter(|e| e.1 > 0.0).collect()
    }

    fn term(&self, item: u32) -> Option<String> {
        let c = self.m.content.as_ref()?;
        let row = c.from_item.get(item as usize).copied().flatten()?;
        let t = self.s.scores.best_term(&c.tfidf, row as usize)?;
        Some(term_text(c.tfidf.vocab.term(t)))
    }

    fn text(&mut self, item: u32, p: &Parts) -> String {
        let m = self.m;
        match p.leading() {
            Some("als") => match self.als_evidence(item).first().and_then(|&(j, _)| self.name(j)) {
                Some(name) => format!("because you liked {name}"),
                None => "picked for you".into(),
            },
            Some("graph") => {
                let ev = self.graph_evidence(item);
                match (ev.len(), ev.first().and_then(|&(j, _)| self.name(j))) {
                    (1, Some(name)) => format!("because you liked {name}"),
                    (n, Some(name)) if n > 1 => format!("because you liked {name} and {} more", n - 1),
                    (n, _) if n > 1 => format!("{n} posts you liked lead here"),
                    _ => "picked for you".into(),
                }
            }
            Some("content") => match self.term(item) {
                Some(t) => format!("matches {t}"),
                None => "matches your interests".into(),
            },
            Some("social") => {
                let s = &self.s.scores;
                match (s.social_people.get(&item).copied().unwrap_or(0), s.social_owned.contains_key(&item)) {
                    (0, true) => "posted by someone you follow".into(),
                    (0, false) => "popular with people your friends follow".into(),
                    (1, _) => "liked by 1 person you follow".into(),
                    (n, _) => format!("liked by {n} people you follow"),
                }
            }
            Some("freshness") => "new post".into(),
            Some("demographic") => "popular with people like you".into(),
            _ => match m.category(item) {
                Some(c) => format!("trending in {c}"),
                None => "trending now".into(),
            },
        }
    }
}

/// A vocabulary term as shown to people: `#street dance` stays a tag, a word gets quotes.
pub(super) fn term_text(t: &str) -> String {
    if t.starts_with('#') {
        t.to_string()
    } else {
        format!("\"{t}\"")
    }
}

/// One feed row: post_id, score, als, graph, content, social, popularity, reason.
type FeedRow = (i64, f32, f32, f32, f32, f32, f32, String);

#[allow(clippy::too_many_arguments)]
#[pg_extern(stable)]
fn recsys_recommend(
    user_id: Option<i64>,
    k: default!(Option<i32>, 10),
    exclude_seen: default!(Option<bool>, true),
    category: default!(Option<&str>, "NULL"),
    project_code: default!(Option<&str>, "NULL"),
    mood: default!(Option<&str>, "NULL"),
    include: default!(Option<Vec<Option<i64>>>, "NULL"),
    exclude: default!(Option<Vec<Option<i64>>>, "NULL"),
    offset: default!(Option<i32>, 0),
    diversity: default!(Option<f32>, 0.0),
    weights: default!(Option<JsonB>, "NULL"),
    model: default!(Option<&str>, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(post_id, i64),
        name!(score, f32),
        name!(als, f32),
        name!(graph, f32),
        name!(content, f32),
        name!(social, f32),
        name!(popularity, f32),
        name!(reason, String),
    ),
> {
    // NULL user, k or exclude_seen: no rows (as a STRICT function would); NULL offset,
    // diversity or weights: their defaults.
    let (Some(user_id), Some(k), Some(exclude_seen)) = (user_id, k, exclude_seen) else {
        return TableIterator::new(vec![]);
    };
    let mut feed = Feed::new(k, category, project_code, mood, include, exclude, offset.unwrap_or(0), diversity.unwrap_or(0.0)).or_raise();
    let rows = Spi::connect(|client| -> Result<Vec<FeedRow>> {
        let m = model::current(client, model.unwrap_or(DEFAULT_MODEL))?;
        feed.prepare(client, &m)?;
        let w = weights_for(&m, weights.as_ref())?;
        let s = score_user(client, &m, user_id, &w)?;
        let seen = exclude_seen.then_some(&s.req.seen);
        let cat = s.catalog(&m);
        let personal = !s.scores.als.is_empty() || !s.scores.graph.is_empty() || !s.scores.content.is_empty() || !s.scores.social.is_empty() || !s.scores.demographic.is_empty();
        let fresh = s.scores.weights.freshness > 0.0 && !m.freshness.is_empty();
        let top = if !personal && !fresh && s.scores.weights.popularity > 0.0 {
            // Nothing personal and no freshness: the popularity order, walked (O(page)).
            let first: &[u32] = s.pop.as_ref().map_or(&[], |p| p.1.as_slice());
            feed.rank_popular(client, &m, cat.popularity, first, seen)?
        } else {
            let mut fused = Vec::new();
            s.scores.fused(&cat, &mut fused);
            let exact = |i: u32| s.scores.parts(&cat, i).total();
            let approx = cat.quantized.is_some() && !s.scores.als.is_empty();
            feed.rank(client, &m, &fused, seen, if approx { Some(&exact) } else { None })?
        };
        let rows: Vec<(u32, Parts)> = top.items.iter().map(|c| (c.index, s.scores.parts(&cat, c.index))).collect();
        let mut reasons = Reasons::new(&m, &s);
        reasons.load_titles(client, &rows)?;
        Ok(top
            .items
            .iter()
            .zip(&rows)
            .map(|(c, (_, p))| {
                let reason = reasons.text(c.index, p);
                (c.id, p.total(), p.als, p.graph, p.content, p.social, p.popularity + p.freshness + p.demographic, reason)
            })
            .collect())
    })
    .or_raise();
    TableIterator::new(rows)
}

#[pg_extern(stable)]
fn recsys_predict(user_id: Option<i64>, post_id: Option<i64>, weights: default!(Option<JsonB>, "NULL"), model: default!(Option<&str>, "'default'")) -> Option<f32> {
    let (user_id, post_id) = (user_id?, post_id?);
    Spi::connect(|client| -> Result<f32> {
        let m = model::current(client, model.unwrap_or(DEFAULT_MODEL))?;
        if let Some(r) = &m.rating {
            return predict_rating(client, &m, r, user_id, post_id);
        }
        let item = m.item_index.get(post_id).ok_or(RecsysError::UnknownPost(post_id))?;
        let w = weights_for(&m, weights.as_ref())?;
        let s = score_user(client, &m, user_id, &w)?;
        Ok(s.scores.parts(&s.catalog(&m), item).total())
    })
    .map(Some)
    .or_raise()
}

/// One evidence row: component, evidence, post_id, user_id, contribution.
/// Explicit mode: the user's ratings now, folded into the rating model (items fixed), blended
/// with the neighbourhood model. An unknown post gets μ + b_u; a user without ratings gets
/// μ + b_i (+ the neighbourhood's nothing): the biases.
fn predict_rating(client: &pgrx::spi::SpiClient<'_>, m: &Serving, r: &model::Rating, user_id: i64, post_id: i64) -> Result<f32> {
    use pgrx::{PgBuiltInOids, PgOid};
    let n = r.model.item_bias.len();
    let kind = m.options.rating_kind.clone();
    let mut rows = m.run(
        client,
        "ratings",
        &r.query,
        &[PgOid::BuiltIn(PgBuiltInOids::TEXTOID), PgOid::BuiltIn(PgBuiltInOids::INT8OID)],
        &[kind.into(), user_id.into()],
        |row| {
            let (Some(p), Some(v)) = (row.get::<i64>(1)?, crate::store::source::finite_weight(row.get::<f64>(2)?)) else { return Ok(None) };
            Ok(m.item_index.get(p).filter(|&i| (i as usize) < n).map(|i| (i, v)))
        },
    )?;
    // One rating per post (the mean), sorted by post index.
    rows.sort_by_key(|x| x.0);
    let mut ratings: Vec<(u32, f32)> = vec![];
    let mut counts: Vec<u32> = vec![];
    for (i, v) in rows {
        match ratings.last_mut() {
            Some(last) if last.0 == i => {
                last.1 += v;
                *counts.last_mut().expect("paired") += 1;
            }
            _ => {
                ratings.push((i, v));
                counts.push(1);
            }
        }
    }
    ratings.iter_mut().zip(&counts).for_each(|(r, c)| r.1 /= *c as f32);
    let (x, b) = r.model.fold_in(&ratings, &m.options.rating);
    let item = m.item_index.get(post_id).map(|i| i as usize).filter(|&i| i < n);
    let mf = r.model.predict_with(&x, b, item);
    let beta = m.options.rating.knn_weight;
    Ok(match (&r.knn, item) {
        (Some(k), Some(i)) if beta > 0.0 => {
            let knn = k.predict_with_bias(k.user_bias(&ratings), &ratings, i);
            ((1.0 - beta) * mf + beta * knn).clamp(r.model.min, r.model.max)
        }
        _ => mf,
    })
}

type ExplainRow = (String, String, Option<i64>, Option<i64>, f32);

/// Rows of evidence kept per component (the rest are summed into one row, so the rows of a
/// component add up to its contribution).
const EXPLAIN_TOP: usize = 5;

#[pg_extern(stable)]
fn recsys_explain(user_id: Option<i64>, post_id: Option<i64>, weights: default!(Option<JsonB>, "NULL"), model: default!(Option<&str>, "'default'")) -> TableIterator<
    'static,
    (name!(component, String), name!(evidence, String), name!(post_id, Option<i64>), name!(user_id, Option<i64>), name!(contribution, f32)),
> {
    let (Some(user_id), Some(post_id)) = (user_id, post_id) else { return TableIterator::new(vec![]) };
    let rows = Spi::connect(|client| -> Result<Vec<ExplainRow>> {
        let m = model::current(client, model.unwrap_or(DEFAULT_MODEL))?;
        let item = m.item_index.get(post_id).ok_or(RecsysError::UnknownPost(post_id))?;
        let w = weights_for(&m, weights.as_ref())?;
        let s = score_user(client, &m, user_id, &w)?;
        let cat = s.catalog(&m);
        let p = s.scores.parts(&cat, item);
        let sc = &s.scores;
        let mut out: Vec<ExplainRow> = vec![];
        // ALS: the user's posts that pull this one up, in units of the fused score.
        if sc.weights.als > 0.0 && sc.als_max > 0.0 && sc.x.is_some() {
            let k = sc.weights.als / sc.als_max;
            let mut r = Reasons::new(&m, &s);
            let ev = r.als_evidence(item);
            let ids: Vec<i64> = ev.iter().take(EXPLAIN_TOP).map(|&(j, _)| m.item_ids[j as usize]).collect();
            r.titles = live::visible(client, &m, &ids)?;
            for &(j, c) in ev.iter().take(EXPLAIN_TOP) {
                // A post the caller may no longer see is counted but not named.
                match r.name(j) {
                    Some(name) => out.push(("als".into(), format!("you interacted with {name}"), Some(m.item_ids[j as usize]), None, k * c)),
                    None => out.push(("als".into(), "a post you interacted with".into(), None, None, k * c)),
                }
            }
            if ev.len() > EXPLAIN_TOP {
                let rest: f32 = ev[EXPLAIN_TOP..].iter().map(|e| e.1).sum();
                out.push(("als".into(), format!("{} other posts you interacted with", ev.len() - EXPLAIN_TOP), None, None, k * rest));
            }
        }
        // Graph: the user's posts with an edge to this one (EASE / RP3beta), binary weights.
        if sc.weights.graph > 0.0 && sc.graph_max > 0.0 && p.graph > 0.0 {
            let k = sc.weights.graph / sc.graph_max;
            let mut r = Reasons::new(&m, &s);
            let ev = r.graph_evidence(item);
            let ids: Vec<i64> = ev.iter().take(EXPLAIN_TOP).map(|&(j, _)| m.item_ids[j as usize]).collect();
            r.titles = live::visible(client, &m, &ids)?;
            let mut shown = 0f32;
            for &(j, w) in ev.iter().take(EXPLAIN_TOP) {
                shown += k * w;
                match r.name(j) {
                    Some(name) => out.push(("graph".into(), format!("you liked {name}, which leads here"), Some(m.item_ids[j as usize]), None, k * w)),
                    None => out.push(("graph".into(), "a post you liked leads here".into(), None, None, k * w)),
                }
            }
            // The rest (further posts, negative edges, the cap at the maximum) so the rows add up.
            let rest = p.graph - shown;
            if rest.abs() > 1e-6 {
                out.push(("graph".into(), format!("{} other posts you liked (net)", ev.len().saturating_sub(EXPLAIN_TOP)), None, None, rest));
            }
        }
        // Social: each followee who engaged with or owns the post.
        if sc.social_max > 0.0 {
            let o = &m.options.hybrid;
            let now = hybrid::social_now(&s.req.input.followees);
            for fe in &s.req.input.followees {
                let one = hybrid::social_scores_at(std::slice::from_ref(fe), o, now).0;
                if let Some(v) = one.get(&item) {
                    let how = match (fe.second_hop, fe.mutual, fe.owned.contains(&item)) {
                        (true, _, _) => "followed by people you follow",
                        (_, true, true) => "you follow each other; they posted it",
                        (_, false, true) => "you follow them; they posted it",
                        (_, true, false) => "you follow each other; they engaged with it",
                        (_, false, false) => "you follow them; they engaged with it",
                    };
                    out.push(("social".into(), how.into(), None, Some(fe.id), sc.weights.social * v / sc.social_max));
                }
            }
        }
        // Content: the profile terms the post shares, largest product first.
        if let (Some(c), true) = (m.content.as_ref(), sc.content_max > 0.0) {
            if let Some(row) = c.from_item[item as usize] {
                let (ts, vs) = c.tfidf.docs.row(row as usize);
                let shared: Vec<(u32, f32)> =
                    sc.profile.iter().filter_map(|&(t, pw)| ts.binary_search(&t).ok().map(|k| (t, pw * vs[k]))).collect();
                // A one-word tag matches as `#tag` and as the word: one row for both.
                let mut merged: std::collections::BTreeMap<&str, (u32, f32)> = std::collections::BTreeMap::new();
                for &(t, v) in &shared {
                    let name = c.tfidf.vocab.term(t);
                    let key = name.strip_prefix('#').unwrap_or(name);
                    let e = merged.entry(key).or_insert((t, 0.0));
                    if name.starts_with('#') {
                        e.0 = t;
                    }
                    e.1 += v;
                }
                let mut terms: Vec<(u32, f32)> = merged.into_values().collect();
                terms.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let k = sc.weights.content / sc.content_max;
                for &(t, v) in terms.iter().take(EXPLAIN_TOP) {
                    out.push(("content".into(), format!("matches {}", term_text(c.tfidf.vocab.term(t))), None, None, k * v));
                }
                if terms.len() > EXPLAIN_TOP {
                    let rest: f32 = terms[EXPLAIN_TOP..].iter().map(|t| t.1).sum();
                    out.push(("content".into(), format!("{} other matching terms", terms.len() - EXPLAIN_TOP), None, None, k * rest));
                }
            }
        }
        if p.popularity > 0.0 {
            out.push(("popularity".into(), format!("trending score {:.3}", cat.popularity[item as usize]), None, None, p.popularity));
        }
        if p.freshness > 0.0 {
            out.push(("freshness".into(), format!("freshness {:.3}", m.freshness[item as usize]), None, None, p.freshness));
        }
        if p.demographic > 0.0 {
            let segs: Vec<&str> = s.req.input.segments.iter().filter(|k| m.segments.lists.get(*k).is_some_and(|l| l.iter().any(|x| x.0 == item))).map(|k| k.as_str()).collect();
            out.push(("demographic".into(), format!("popular in your segments: {}", segs.join(", ")), None, None, p.demographic));
        }
        if p.negative < 0.0 {
            let pen = 100.0 * sc.penalty(item);
            match sc.demotion(&cat, item) {
                Some(hybrid::Demotion::Creator(u)) => {
                    out.push(("negative".into(), format!("by a creator whose post you disliked (demoted {pen:.0}%)"), None, Some(u), p.negative))
                }
                Some(hybrid::Demotion::Similar(j)) => out.push((
                    "negative".into(),
                    format!("close to a post you disliked (demoted {pen:.0}%)"),
                    Some(m.item_ids[j as usize]),
                    None,
                    p.negative,
                )),
                None => out.push(("negative".into(), format!("close to posts you disliked (demoted {pen:.0}%)"), None, None, p.negative)),
            }
        }
        out.push(("total".into(), format!("fused score; {} interactions known", sc.n_history), Some(post_id), Some(user_id), p.total()));
        Ok(out)
    })
    .or_raise();
    TableIterator::new(rows)
}


#[allow(clippy::too_many_arguments)]
#[pg_extern(stable)]
fn recsys_similar(
    post_id: Option<i64>,
    k: default!(Option<i32>, 10),
    category: default!(Option<&str>, "NULL"),
    project_code: default!(Option<&str>, "NULL"),
    mood: default!(Option<&str>, "NULL"),
    include: default!(Option<Vec<Option<i64>>>, "NULL"),
    exclude: default!(Option<Vec<Option<i64>>>, "NULL"),
    offset: default!(Option<i32>, 0),
    model: default!(Option<&str>, "'default'"),
) -> TableIterator<'static, (name!(post_id, i64), name!(score, f32), name!(als, f32), name!(content, f32), name!(reason, String))> {
    let (Some(post_id), Some(k)) = (post_id, k) else { return TableIterator::new(vec![]) };
    let mut feed = Feed::new(k, category, project_code, mood, include, exclude, offset.unwrap_or(0), 0.0).or_raise();
    feed.exclude.insert(post_id);
    let rows = Spi::connect(|client| -> Result<Vec<(i64, f32, f32, f32, String)>> {
        let m = model::current(client, model.unwrap_or(DEFAULT_MODEL))?;
        // A deleted (or hidden) post has no neighbours to show.
        if live::visible(client, &m, &[post_id])?.is_some_and(|v| v.is_empty()) {
            return Err(RecsysError::UnknownPost(post_id));
        }
        feed.prepare(client, &m)?;
        super::content::similar(client, &m, post_id, &feed)
    })
    .or_raise();
    TableIterator::new(rows)
}
