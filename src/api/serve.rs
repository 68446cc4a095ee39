use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::store::model::{self, Serving};
use crate::store::source;
use pgrx::prelude::*;
use recsys_core::als::fold_in;
use recsys_core::kernels::score_all;
use recsys_core::topk::{Scored, TopK};

use std::collections::{HashMap, HashSet};

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

/// The user's current interactions (post index, summed weight), read now: this is what makes
/// a like inserted a second ago count without a retrain. Posts unknown to the model are
/// returned separately (they can only be excluded, not folded in).
fn history(client: &pgrx::spi::SpiClient<'_>, m: &Serving, user_id: i64) -> Result<(Vec<(u32, f32)>, HashSet<i64>)> {
    let (weights, default_weight) = source::weight_args(&m.options);
    if m.history_plan.borrow().is_none() {
        use pgrx::{PgBuiltInOids, PgOid};
        let types = [PgOid::BuiltIn(PgBuiltInOids::JSONBOID), PgOid::BuiltIn(PgBuiltInOids::FLOAT4OID), PgOid::BuiltIn(PgBuiltInOids::INT8OID)];
        let plan = client.prepare(m.history_query.as_str(), &types)?.keep();
        *m.history_plan.borrow_mut() = Some(plan);
    }
    let plan = m.history_plan.borrow();
    let plan = plan.as_ref().ok_or_else(|| RecsysError::Spi("history plan missing".into()))?;
    let rows = client.select(plan, None, &[weights.into(), default_weight.into(), user_id.into()])?;
    let mut sums: HashMap<u32, f32> = HashMap::new();
    let mut seen = HashSet::new();
    for row in rows {
        let Some(pid) = row.get::<i64>(1)? else { continue };
        seen.insert(pid);
        let w = row.get::<f32>(2)?.unwrap_or(f32::NAN);
        if let (Some(&i), true) = (m.item_index.get(&pid), w.is_finite()) {
            *sums.entry(i).or_insert(0.0) += w;
        }
    }
    let mut items: Vec<(u32, f32)> = sums.into_iter().filter(|(_, w)| *w > 0.0).collect();
    items.sort_by_key(|x| x.0);
    Ok((items, seen))
}

type Rows = TableIterator<'static, (name!(post_id, i64), name!(score, f32))>;

fn rows(top: Vec<Scored>) -> Rows {
    TableIterator::new(top.into_iter().map(|s| (s.id, s.score)).collect::<Vec<_>>())
}

/// The feed arguments of recsys_recommend, checked.
pub(super) struct Feed<'a> {
    pub k: usize,
    pub offset: usize,
    pub diversity: f32,
    pub attrs: [Option<&'a str>; 3],
    pub include: Option<HashSet<i64>>,
    pub exclude: HashSet<i64>,
}

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
        })
    }

    /// Ranks `scores` (one per model item), applying every filter, the page and the re-rank.
    /// The filter codes for this feed (None when no attribute filter is set).
    fn codes(&self, m: &Serving) -> Result<Option<[Option<Option<u32>>; 3]>> {
        if self.attrs.iter().all(|a| a.is_none()) {
            return Ok(None);
        }
        let c = m.content.as_ref().ok_or(RecsysError::NoContentModel)?;
        Ok(Some(c.filter_codes(self.attrs)))
    }

    /// Whether model item `i` may appear in this feed.
    fn allowed(&self, m: &Serving, i: usize, seen: Option<&HashSet<i64>>, codes: Option<&[Option<Option<u32>>; 3]>) -> bool {
        let id = m.item_ids[i];
        if seen.is_some_and(|x| x.contains(&id)) || self.exclude.contains(&id) || self.include.as_ref().is_some_and(|inc| !inc.contains(&id)) {
            return false;
        }
        match (codes, m.content.as_ref()) {
            (None, _) => true,
            (Some(codes), Some(c)) => c.from_item[i].is_some_and(|row| c.matches(row as usize, codes)),
            (Some(_), None) => false,
        }
    }

    /// The popularity feed as a walk down the precomputed order: O(page), not O(catalogue).
    pub fn rank_popular(&self, m: &Serving, seen: Option<&HashSet<i64>>) -> Result<Vec<Scored>> {
        if self.diversity > 0.0 {
            return self.rank(m, &m.popularity, seen, None);
        }
        let codes = self.codes(m)?;
        let want = self.offset + self.k;
        let mut out = Vec::with_capacity(want);
        for &i in &m.popularity_order {
            if out.len() == want {
                break;
            }
            if self.allowed(m, i as usize, seen, codes.as_ref()) {
                out.push(Scored { score: m.popularity[i as usize], id: m.item_ids[i as usize], index: i });
            }
        }
        Ok(out.into_iter().skip(self.offset).collect())
    }

    /// With `exact`, `scores` are approximate: a larger pool is kept and re-scored by `exact`
    /// before paging, so the returned order and scores are exact.
    pub fn rank(&self, m: &Serving, scores: &[f32], seen: Option<&HashSet<i64>>, exact: Option<&dyn Fn(u32) -> f32>) -> Result<Vec<Scored>> {
        let codes = self.codes(m)?;
        let want = self.offset + self.k;
        // MMR needs a pool to choose from; plain ranking needs exactly the page.
        let mut pool = if self.diversity > 0.0 { (want * 4).max(want + 20) } else { want };
        if exact.is_some() {
            pool = pool.max(want * 8 + 64);
        }
        let mut top = TopK::new(pool);
        for (i, &s) in scores.iter().enumerate() {
            if s < top.threshold() || !self.allowed(m, i, seen, codes.as_ref()) {
                continue;
            }
            top.push(Scored { score: s, id: m.item_ids[i], index: i as u32 });
        }
        let mut ranked = top.into_sorted();
        if let Some(ex) = exact {
            ranked.iter_mut().for_each(|c| c.score = ex(c.index));
            ranked.sort_by(recsys_core::topk::rank_order);
        }
        let ranked = if self.diversity > 0.0 {
            let f = m.factors;
            let cos = |a: u32, b: u32| {
                let (a, b) = (a as usize, b as usize);
                recsys_core::kernels::dot_dispatch(&m.item_factors[a * f..(a + 1) * f], &m.item_factors[b * f..(b + 1) * f])
                    / (m.item_norms[a] * m.item_norms[b]).max(1e-12)
            };
            recsys_core::topk::mmr(&ranked, want, self.diversity, cos)
        } else {
            ranked
        };
        Ok(ranked.into_iter().skip(self.offset).take(self.k).collect())
    }
}

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
) -> TableIterator<'static, (name!(post_id, i64), name!(score, f32))> {
    // NULL user, k or exclude_seen: no rows (as a STRICT function would); NULL offset or
    // diversity: their defaults.
    let (Some(user_id), Some(k), Some(exclude_seen)) = (user_id, k, exclude_seen) else {
        return rows(vec![]);
    };
    let feed = Feed::new(k, category, project_code, mood, include, exclude, offset.unwrap_or(0), diversity.unwrap_or(0.0)).or_raise();
    let top = Spi::connect(|client| -> Result<Vec<Scored>> {
        let m = model::current(client)?;
        let (items, seen) = history(client, &m, user_id)?;
        let seen = exclude_seen.then_some(&seen);
        if items.is_empty() {
            // Cold start: the documented popularity fallback (distinct users per post, scaled
            // to [0, 1]).
            return feed.rank_popular(&m, seen);
        }
        let x = fold_in(&m.item_factors, m.factors, &m.gram, &items, m.options.als.alpha);
        let mut scores = vec![0f32; m.item_ids.len()];
        match m.quantized.as_ref().filter(|_| !gucs::exact_scan()) {
            Some(q) => {
                q.scores(&x, &mut scores);
                let f = m.factors;
                let exact = |i: u32| recsys_core::kernels::dot_dispatch(&m.item_factors[i as usize * f..(i as usize + 1) * f], &x);
                feed.rank(&m, &scores, seen, Some(&exact))
            }
            None => {
                score_all(&m.item_factors, m.factors, &x, &mut scores);
                feed.rank(&m, &scores, seen, None)
            }
        }
    })
    .or_raise();
    rows(top)
}

#[pg_extern(stable)]
fn recsys_similar(post_id: i64, k: default!(i32, 10)) -> TableIterator<'static, (name!(post_id, i64), name!(score, f32))> {
    let k = check_k(k).or_raise();
    let top = Spi::connect(|client| -> Result<Vec<Scored>> {
        let m = model::current(client)?;
        super::content::similar(&m, post_id, k)
    })
    .or_raise();
    rows(top)
}
