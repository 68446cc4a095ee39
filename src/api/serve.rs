//! recsys_recommend and recsys_predict.
use super::explain::Reasons;
use super::feed::Feed;
use super::score::{score_user, score_user_ahead, weights_for};
use crate::error::{OrRaise, RecsysError, Result};
use crate::options::DEFAULT_MODEL;
use crate::store::model;
use crate::store::serving::Serving;
use crate::store::source::Columns;
use pgrx::prelude::*;
use pgrx::JsonB;
use recsys_core::hybrid::Parts;
use std::collections::HashSet;

/// One feed row: post_id, score, als, graph, content, social, popularity, reason.
type FeedRow = (i64, f32, f32, f32, f32, f32, f32, Option<String>);

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
    reasons: default!(Option<bool>, true),
    fcinfo: pg_sys::FunctionCallInfo,
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
        name!(reason, Option<String>),
    ),
> {
    // NULL user, k or exclude_seen: no rows (as a STRICT function would); NULL offset,
    // diversity, weights or reasons: their defaults.
    let (Some(user_id), Some(k), Some(exclude_seen)) = (user_id, k, exclude_seen) else {
        return TableIterator::new(vec![]);
    };
    // Without reasons, no evidence is computed and no evidence post is looked up.
    let with_reasons = reasons.unwrap_or(true);
    // The extension's schema is this function's (no lookup of the extension by name).
    let _caller = crate::store::Caller::of(fcinfo);
    // The helper's wake-up overlaps the reads before its work is handed over.
    crate::helper::prewake();
    let mut feed = Feed::new(k, category, project_code, mood, include, exclude, offset.unwrap_or(0), diversity.unwrap_or(0.0)).or_raise();
    let rows = Spi::connect(|client| -> Result<Vec<FeedRow>> {
        let m = model::current(client, model.unwrap_or(DEFAULT_MODEL))?;
        feed.prepare(client, &m)?;
        let w = weights_for(&m, weights.as_ref())?;
        let codes = feed.codes(&m)?;
        let served: &crate::store::serving::Data = &m;
        let mask_of = |seen: &_| feed.mask(served, exclude_seen.then_some(seen), codes.as_ref());
        let (s, ahead) = score_user_ahead(client, &m, user_id, &w, Some(&mask_of))?;
        let (first_mask, bound) = ahead.map_or((None, None), |a| (Some(a.mask), a.bound));
        let bound = std::cell::Cell::new(bound);
        let seen = exclude_seen.then_some(&s.req.seen);
        let cat = s.catalog(&m);
        let personal = !s.scores.als.is_empty()
            || s.scores.als_by_ivf
            || !s.scores.graph.is_empty()
            || !s.scores.content.is_empty()
            || !s.scores.social.is_empty()
            || !s.scores.demographic.is_empty();
        let fresh = s.scores.weights.freshness > 0.0 && !m.freshness.is_empty();
        let mut reasons = Reasons::new(&m, &s);
        // The reasons' evidence posts are looked up with each chunk's visibility check (one
        // statement for both), for the candidates the ranking expects on the page.
        let mut asked: HashSet<u32> = HashSet::new();
        let mut evidence = |chunk: &[recsys_core::topk::Scored]| -> Vec<i64> {
            if !with_reasons {
                return vec![];
            }
            asked.extend(chunk.iter().map(|c| c.index));
            let rows: Vec<(u32, Parts)> = chunk.iter().map(|c| (c.index, s.scores.parts(&cat, c.index))).collect();
            reasons.evidence_posts(&rows)
        };
        let top = if !personal && !fresh && s.scores.weights.popularity > 0.0 {
            // Nothing personal and no freshness: the popularity order, walked (O(page)).
            let first: &[u32] = s.pop.as_ref().map_or(&[], |p| p.1.as_slice());
            feed.rank_popular(client, &m, cat.popularity, first, seen)?
        } else if s.scores.als_by_ivf {
            // The exact top-k through the partition: inner products only where a post's bound
            // can still reach the page, no dense ALS pass.
            // The first round's mask and bound were computed ahead; a refill computes its own.
            feed.rank_by(
                client,
                &m,
                seen,
                false,
                first_mask,
                &|mask, size| s.scores.top_by_ivf_from(&cat, &m.item_ids, size, mask, bound.take()),
                &mut evidence,
            )?
        } else {
            let mut fused = Vec::new();
            s.scores.fused(&cat, &mut fused);
            let exact = |i: u32| s.scores.parts(&cat, i).total();
            let approx = cat.quantized.is_some() && !s.scores.als.is_empty();
            feed.rank(client, &m, &fused, seen, if approx { Some(&exact) } else { None }, &mut evidence)?
        };
        let rows: Vec<(u32, Parts)> = top.items.iter().map(|c| (c.index, s.scores.parts(&cat, c.index))).collect();
        match top.titles {
            _ if !with_reasons => {}
            Some(mut t) => {
                // Rows whose evidence was not looked up with the ranking (a candidate moved up
                // past one no longer visible, a page re-ranked by MMR): worked out now, all in
                // one solve, and their evidence posts looked up in one statement.
                let late: Vec<(u32, Parts)> = rows.iter().filter(|(i, _)| !asked.contains(i)).copied().collect();
                let more: Vec<i64> = reasons.evidence_posts(&late).into_iter().filter(|id| !t.contains_key(id)).collect();
                if let Some(found) = crate::store::live::visible(client, &m, &more)? {
                    t.extend(found);
                }
                reasons.set_titles(Some(t));
            }
            None => reasons.load_titles(client, &rows)?,
        }
        Ok(top
            .items
            .iter()
            .zip(&rows)
            .map(|(c, (_, p))| {
                let reason = with_reasons.then(|| reasons.text(c.index, p));
                (c.id, p.total(), p.als, p.graph, p.content, p.social, p.popularity + p.freshness + p.demographic, reason)
            })
            .collect())
    })
    .or_raise();
    TableIterator::new(rows)
}

#[pg_extern(stable)]
fn recsys_predict(
    user_id: Option<i64>,
    post_id: Option<i64>,
    weights: default!(Option<JsonB>, "NULL"),
    model: default!(Option<&str>, "'default'"),
) -> Option<f32> {
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

/// Explicit mode: the user's ratings now, folded into the rating model (items fixed), blended
/// with the neighbourhood model. An unknown post gets μ + b_u; a user without ratings gets
/// μ + b_i (+ the neighbourhood's nothing): the biases.
fn predict_rating(client: &pgrx::spi::SpiClient<'_>, m: &Serving, r: &crate::store::serving::Rating, user_id: i64, post_id: i64) -> Result<f32> {
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
