//! Why a post is recommended: the one-line reason of each feed row and recsys_explain's
//! evidence rows.
use super::score::{score_user, weights_for, UserScores};
use crate::error::{OrRaise, RecsysError, Result};
use crate::options::DEFAULT_MODEL;
use crate::store::live;
use crate::store::model;
use crate::store::serving::Serving;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use recsys_core::als::FoldIn;
use recsys_core::hybrid::{self, Catalog, Parts};
use recsys_core::tfidf::Tfidf;
use std::collections::HashMap;

/// Evidence order: largest contribution first, then the lower item index.
fn evidence_order(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// A short reason for one recommended post: its largest contribution, in words.
pub(super) struct Reasons<'a> {
    m: &'a Serving,
    s: &'a UserScores,
    fold: Option<(FoldIn, Vec<(u32, f32)>)>,
    /// ALS evidence per item, in history order, computed once (a feed row asks for it twice:
    /// its title, its text). A feed row names only the largest contribution, so nothing is
    /// sorted until an explanation asks for the order.
    als: HashMap<u32, Vec<(u32, f32)>>,
    /// Current titles of the evidence posts the caller may see (None: no posts table).
    titles: Option<HashMap<i64, String>>,
}

impl<'a> Reasons<'a> {
    pub(super) fn new(m: &'a Serving, s: &'a UserScores) -> Reasons<'a> {
        Reasons { m, s, fold: None, als: HashMap::new(), titles: None }
    }

    /// Reads the titles of the posts that will be named as evidence for `rows`, in one query.
    pub(super) fn load_titles(&mut self, client: &SpiClient<'_>, rows: &[(u32, Parts)]) -> Result<()> {
        let ids = self.evidence_posts(rows);
        self.titles = live::visible(client, self.m, &ids)?;
        Ok(())
    }

    /// The posts the reasons of `rows` (item, contributions) name, the ALS evidence of all of
    /// them worked out in one solve.
    pub(super) fn evidence_posts(&mut self, rows: &[(u32, Parts)]) -> Vec<i64> {
        let als: Vec<u32> = rows.iter().filter(|(_, p)| p.leading() == Some("als")).map(|(i, _)| *i).collect();
        self.prepare_als(&als);
        rows.iter().filter_map(|(i, p)| self.evidence_post(*i, p)).collect()
    }

    /// The post the reason of item `i` (contributions `p`) names, if any.
    pub(super) fn evidence_post(&mut self, i: u32, p: &Parts) -> Option<i64> {
        let first = match p.leading() {
            Some("als") => self.als_first(i).map(|e| e.0),
            Some("graph") => self.graph_evidence(i).first().map(|e| e.0),
            _ => None,
        };
        first.map(|j| self.m.item_ids[j as usize])
    }

    /// Titles read with the feed's own visibility check (see `Feed::rank_by`).
    pub(super) fn set_titles(&mut self, titles: Option<HashMap<i64, String>>) {
        self.titles = titles;
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
        self.prepare_als(&[item]);
        let mut ev = self.als.get(&item).cloned().unwrap_or_default();
        ev.sort_by(evidence_order);
        ev
    }

    /// The first of [`Reasons::als_evidence`] without ordering (or copying) the rest: one pass
    /// over the history instead of a sort, which for a user with tens of thousands of posts was
    /// most of a feed's reasons.
    fn als_first(&mut self, item: u32) -> Option<(u32, f32)> {
        self.prepare_als(&[item]);
        self.als.get(&item)?.iter().copied().reduce(|best, e| if evidence_order(&e, &best).is_lt() { e } else { best })
    }

    /// Computes the ALS evidence of `items` not known yet, all in one solve (a feed's page).
    fn prepare_als(&mut self, items: &[u32]) {
        let todo: Vec<u32> = items.iter().copied().filter(|i| !self.als.contains_key(i)).collect();
        if todo.is_empty() {
            return;
        }
        let m = self.m;
        let (fold, history) = self.fold.get_or_insert_with(|| {
            // The scorer already factorised this user's system: reuse it.
            self.s.scores.fold.clone().unwrap_or_else(|| {
                let items = hybrid::fold_in_items(&self.s.req.input.history);
                (FoldIn::new(&m.item_factors, m.factors, &m.gram, &items, m.options.als.alpha), items)
            })
        });
        for (item, ev) in todo.iter().zip(fold.evidence_many(&m.item_factors, history, m.options.als.alpha, &todo)) {
            self.als.insert(*item, ev);
        }
    }

    /// The history items whose graph edges lead to `item`, positive contributions only,
    /// largest first.
    fn graph_evidence(&self, item: u32) -> Vec<(u32, f32)> {
        // The scorer's folded-in items are the history the graph scores came from.
        let (Some(g), Some((_, folded))) = (self.m.graph.as_ref(), self.s.scores.fold.as_ref()) else { return vec![] };
        let items: Vec<u32> = folded.iter().map(|x| x.0).collect();
        g.evidence(&items, item).into_iter().filter(|e| e.1 > 0.0).collect()
    }

    fn term(&self, item: u32) -> Option<String> {
        let c = self.m.content.as_ref()?;
        let row = c.from_item.get(item as usize)?;
        let t = self.s.scores.best_term(&c.tfidf, row as usize)?;
        Some(term_text(c.tfidf.vocab.term(t)))
    }

    pub(super) fn text(&mut self, item: u32, p: &Parts) -> String {
        let m = self.m;
        match p.leading() {
            Some("als") => match self.als_first(item).and_then(|(j, _)| self.name(j)) {
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
            // Popularity (the trending signal).
            Some(_) => match m.category(item) {
                Some(c) => format!("trending in {c}"),
                None => "trending now".into(),
            },
            // Nothing contributes (a score of 0): e.g. ALS alone for a user without history.
            // Not "trending": the post is there for want of anything better, not for its views.
            None => "no signal for you yet".into(),
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

/// One evidence row: component, evidence, post_id, user_id, contribution.
type ExplainRow = (String, String, Option<i64>, Option<i64>, f32);

/// Rows of evidence kept per component (the rest are summed into one row, so the rows of a
/// component add up to its contribution).
const EXPLAIN_TOP: usize = 5;

#[pg_extern(stable)]
fn recsys_explain(
    user_id: Option<i64>,
    post_id: Option<i64>,
    weights: default!(Option<JsonB>, "NULL"),
    model: default!(Option<&str>, "'default'"),
) -> TableIterator<
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
        let mut e = Explanation { m: &m, s: &s, cat, item, p, out: vec![] };
        e.als(client)?;
        e.graph(client)?;
        e.social();
        e.content();
        e.signals();
        e.negative();
        e.out.push(("total".into(), format!("fused score; {} interactions known", s.scores.n_history), Some(post_id), Some(user_id), p.total()));
        Ok(e.out)
    })
    .or_raise();
    TableIterator::new(rows)
}

/// recsys_explain's rows for one user and one post, component by component, in the order
/// they are returned.
struct Explanation<'a> {
    m: &'a Serving,
    s: &'a UserScores,
    cat: Catalog<'a>,
    item: u32,
    p: Parts,
    out: Vec<ExplainRow>,
}

impl Explanation<'_> {
    /// Lets `r` name the first EXPLAIN_TOP posts of `ev` (one query for their titles).
    fn name_top(&self, client: &SpiClient<'_>, r: &mut Reasons<'_>, ev: &[(u32, f32)]) -> Result<()> {
        let ids: Vec<i64> = ev.iter().take(EXPLAIN_TOP).map(|&(j, _)| self.m.item_ids[j as usize]).collect();
        r.titles = live::visible(client, self.m, &ids)?;
        Ok(())
    }

    /// ALS: the user's posts that pull this one up, in units of the fused score.
    fn als(&mut self, client: &SpiClient<'_>) -> Result<()> {
        let (m, sc, item) = (self.m, &self.s.scores, self.item);
        if !(sc.weights.als > 0.0 && sc.als_max > 0.0 && sc.x.is_some()) {
            return Ok(());
        }
        let k = sc.weights.als / sc.als_max;
        let mut r = Reasons::new(m, self.s);
        let ev = r.als_evidence(item);
        self.name_top(client, &mut r, &ev)?;
        for &(j, c) in ev.iter().take(EXPLAIN_TOP) {
            // A post the caller may no longer see is counted but not named.
            match r.name(j) {
                Some(name) => self.out.push(("als".into(), format!("you interacted with {name}"), Some(m.item_ids[j as usize]), None, k * c)),
                None => self.out.push(("als".into(), "a post you interacted with".into(), None, None, k * c)),
            }
        }
        if ev.len() > EXPLAIN_TOP {
            let rest: f32 = ev[EXPLAIN_TOP..].iter().map(|e| e.1).sum();
            self.out.push(("als".into(), format!("{} other posts you interacted with", ev.len() - EXPLAIN_TOP), None, None, k * rest));
        }
        Ok(())
    }

    /// Graph: the user's posts with an edge to this one (EASE / RP3beta), binary weights.
    fn graph(&mut self, client: &SpiClient<'_>) -> Result<()> {
        let (m, sc, item, p) = (self.m, &self.s.scores, self.item, self.p);
        if !(sc.weights.graph > 0.0 && sc.graph_max > 0.0 && p.graph > 0.0) {
            return Ok(());
        }
        let k = sc.weights.graph / sc.graph_max;
        let mut r = Reasons::new(m, self.s);
        let ev = r.graph_evidence(item);
        self.name_top(client, &mut r, &ev)?;
        let mut shown = 0f32;
        for &(j, w) in ev.iter().take(EXPLAIN_TOP) {
            shown += k * w;
            match r.name(j) {
                Some(name) => self.out.push(("graph".into(), format!("you liked {name}, which leads here"), Some(m.item_ids[j as usize]), None, k * w)),
                None => self.out.push(("graph".into(), "a post you liked leads here".into(), None, None, k * w)),
            }
        }
        // The rest (further posts, negative edges, the cap at the maximum) so the rows add up.
        let rest = p.graph - shown;
        if rest.abs() > 1e-6 {
            self.out.push(("graph".into(), format!("{} other posts you liked (net)", ev.len().saturating_sub(EXPLAIN_TOP)), None, None, rest));
        }
        Ok(())
    }

    /// Social: each followee who engaged with or owns the post.
    fn social(&mut self) {
        let (sc, item) = (&self.s.scores, self.item);
        if sc.social_max > 0.0 {
            let o = &self.m.options.hybrid;
            let now = hybrid::social_now(&self.s.req.input.followees);
            for fe in &self.s.req.input.followees {
                let one = hybrid::social_scores_at(std::slice::from_ref(fe), o, now).0;
                if let Some(v) = one.get(&item) {
                    let how = match (fe.second_hop, fe.mutual, fe.owned.contains(&item)) {
                        (true, _, _) => "followed by people you follow",
                        (_, true, true) => "you follow each other; they posted it",
                        (_, false, true) => "you follow them; they posted it",
                        (_, true, false) => "you follow each other; they engaged with it",
                        (_, false, false) => "you follow them; they engaged with it",
                    };
                    self.out.push(("social".into(), how.into(), None, Some(fe.id), sc.weights.social * v / sc.social_max));
                }
            }
        }
    }

    /// Content: the profile terms the post shares, largest product first.
    fn content(&mut self) {
        let sc = &self.s.scores;
        let (Some(c), true) = (self.m.content.as_ref(), sc.content_max > 0.0) else { return };
        let Some(row) = c.from_item.get(self.item as usize) else { return };
        let terms = shared_terms(&c.tfidf, &sc.profile, row as usize);
        let k = sc.weights.content / sc.content_max;
        for &(t, v) in terms.iter().take(EXPLAIN_TOP) {
            self.out.push(("content".into(), format!("matches {}", term_text(c.tfidf.vocab.term(t))), None, None, k * v));
        }
        if terms.len() > EXPLAIN_TOP {
            let rest: f32 = terms[EXPLAIN_TOP..].iter().map(|t| t.1).sum();
            self.out.push(("content".into(), format!("{} other matching terms", terms.len() - EXPLAIN_TOP), None, None, k * rest));
        }
    }

    /// The signals with no per-post evidence: popularity, freshness, demographic segments.
    fn signals(&mut self) {
        let (m, item, p) = (self.m, self.item, self.p);
        if p.popularity > 0.0 {
            self.out.push(("popularity".into(), format!("trending score {:.3}", self.cat.popularity[item as usize]), None, None, p.popularity));
        }
        if p.freshness > 0.0 {
            self.out.push(("freshness".into(), format!("freshness {:.3}", m.freshness[item as usize]), None, None, p.freshness));
        }
        if p.demographic > 0.0 {
            let segs: Vec<&str> = self
                .s
                .req
                .input
                .segments
                .iter()
                .filter(|k| self.s.segments.lists.get(*k).is_some_and(|l| l.iter().any(|x| x.0 == item)))
                .map(|k| k.as_str())
                .collect();
            self.out.push(("demographic".into(), format!("popular in your segments: {}", segs.join(", ")), None, None, p.demographic));
        }
    }

    /// Negative feedback: what the post was demoted for.
    fn negative(&mut self) {
        let (m, sc, item, p) = (self.m, &self.s.scores, self.item, self.p);
        if p.negative < 0.0 {
            let pen = 100.0 * sc.penalty(item);
            let row = match sc.demotion(&self.cat, item) {
                Some(hybrid::Demotion::Creator(u)) => {
                    ("negative".into(), format!("by a creator whose post you disliked (demoted {pen:.0}%)"), None, Some(u), p.negative)
                }
                Some(hybrid::Demotion::Similar(j)) => {
                    ("negative".into(), format!("close to a post you disliked (demoted {pen:.0}%)"), Some(m.item_ids[j as usize]), None, p.negative)
                }
                None => ("negative".into(), format!("close to posts you disliked (demoted {pen:.0}%)"), None, None, p.negative),
            };
            self.out.push(row);
        }
    }
}

/// The terms of document `row` that the user's profile shares, each weighted by profile weight
/// × document weight, largest first. A one-word tag matches as `#tag` and as the word: one
/// entry for both, under the tag's term.
fn shared_terms(tfidf: &Tfidf, profile: &[(u32, f32)], row: usize) -> Vec<(u32, f32)> {
    let (ts, vs) = tfidf.docs.row(row);
    let shared: Vec<(u32, f32)> = profile.iter().filter_map(|&(t, pw)| ts.binary_search(&t).ok().map(|k| (t, pw * vs[k]))).collect();
    let mut merged: std::collections::BTreeMap<&str, (u32, f32)> = std::collections::BTreeMap::new();
    for &(t, v) in &shared {
        let name = tfidf.vocab.term(t);
        let key = name.strip_prefix('#').unwrap_or(name);
        let e = merged.entry(key).or_insert((t, 0.0));
        if name.starts_with('#') {
            e.0 = t;
        }
        e.1 += v;
    }
    let mut terms: Vec<(u32, f32)> = merged.into_values().collect();
    terms.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    terms
}
