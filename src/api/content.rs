use super::feed::Feed;
use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::options::DEFAULT_MODEL;
use crate::store::live;
use crate::store::model;
use crate::store::serving::Serving;
use pgrx::prelude::*;
use recsys_core::kernels::score_all;
use recsys_core::topk::{Scored, TopK};

use super::feed::check_k;

/// Query tokens: words as in posts, plus `#tag` tokens for words written with a leading '#'.
fn query_tokens(q: &str) -> Vec<String> {
    let mut out = vec![];
    recsys_core::tfidf::words(q, &mut out);
    for w in q.split_whitespace().filter(|w| w.starts_with('#')) {
        recsys_core::tfidf::tag(w, &mut out);
    }
    out
}

#[pg_extern(stable)]
fn recsys_search(query: &str, k: default!(i32, 10), model: default!(&str, "'default'")) -> TableIterator<'static, (name!(post_id, i64), name!(score, f32))> {
    let k = check_k(k).or_raise();
    let max = gucs::max_query_bytes();
    if query.len() > max {
        RecsysError::QueryTooLong { bytes: query.len(), max }.raise();
    }
    let top = Spi::connect(|client| -> Result<Vec<Scored>> {
        let m = model::current(client, model)?;
        let c = m.content.as_ref().ok_or(RecsysError::NoContentModel)?;
        let toks = query_tokens(query);
        pgrx::check_for_interrupts!();
        let q = c.tfidf.query(&toks);
        if q.is_empty() {
            // Documented: an empty query, or one with no term known to the posts, matches nothing.
            return Ok(vec![]);
        }
        // Accumulated through the postings a block of terms at a time, so cancel and
        // statement_timeout are honoured between blocks.
        let mut scores = vec![0f32; c.ids.len()];
        for block in q.chunks(64) {
            c.tfidf.accumulate(block, &mut scores);
            pgrx::check_for_interrupts!();
        }
        // Only posts that exist and that the caller may see now: drop the others and refill.
        let mut out = vec![];
        for round in 0..4 {
            let size = (k + k / 2 + 8) << (2 * round);
            let mut top = TopK::new(size);
            for (d, &s) in scores.iter().enumerate() {
                if s > 0.0 && s >= top.threshold() {
                    top.push(Scored { score: s, id: c.ids[d], index: d as u32 });
                }
            }
            let cands = top.into_sorted();
            let exhausted = cands.len() < size;
            let ids: Vec<i64> = cands.iter().map(|c| c.id).collect();
            let Some(vis) = crate::store::live::visible(client, &m, &ids)? else {
                out = cands;
                break;
            };
            out = cands.iter().filter(|c| vis.contains_key(&c.id)).copied().collect();
            if out.len() >= k || exhausted {
                break;
            }
            cands.iter().filter(|c| !vis.contains_key(&c.id)).for_each(|c| scores[c.index as usize] = 0.0);
            pgrx::check_for_interrupts!();
        }
        out.truncate(k);
        Ok(out)
    })
    .or_raise();
    TableIterator::new(top.into_iter().map(|s| (s.id, s.score)).collect::<Vec<_>>())
}

/// Blend of ALS item cosine and content cosine around one post, over every post of the model,
/// through the feed filters. A post with factors mixes both (`recsys.similar_content_weight`
/// is the content share); a post known only from the posts table (no interactions yet) is
/// placed by its content alone. Returns (post_id, score, als part, content part, reason).
pub fn similar(client: &pgrx::spi::SpiClient<'_>, m: &Serving, post_id: i64, feed: &super::feed::Feed<'_>) -> Result<Vec<(i64, f32, f32, f32, String)>> {
    let f = m.factors;
    let n = m.item_ids.len();
    let als_q = m.item_index.get(post_id);
    let content = m.content.as_ref();
    let content_q = content.and_then(|c| c.index.get(post_id));
    if als_q.is_none() && content_q.is_none() {
        return Err(RecsysError::UnknownPost(post_id));
    }
    // A post placed by content has factors that are an average of its neighbours': its ALS
    // cosine says little, so content leads.
    let beta = match (als_q, content_q) {
        (Some(q), Some(_)) if q as usize >= m.interacted_items => 1.0,
        (Some(_), Some(_)) => gucs::similar_content_weight(),
        (Some(_), None) => 0.0,
        _ => 1.0,
    };
    let mut als = vec![0f32; n];
    // From 20,000 posts on, the ALS cosines come from the int8 scan and the candidate pool is
    // re-scored exactly (as in recsys_recommend; recsys.exact_scan = on forces f32).
    let quant = m.quantized.as_ref().filter(|_| !gucs::exact_scan() && beta < 1.0 && als_q.is_some());
    let qv: &[f32] = als_q.map(|q| &m.item_factors[q as usize * f..(q as usize + 1) * f]).unwrap_or(&[]);
    let qn = als_q.map(|q| m.item_norms[q as usize].max(1e-12)).unwrap_or(1.0);
    let exact_als = |i: usize| -> f32 {
        if qv.is_empty() || beta >= 1.0 {
            return 0.0;
        }
        let d = recsys_core::kernels::dot_dispatch(&m.item_factors[i * f..(i + 1) * f], qv);
        (1.0 - beta) * (d / (qn * m.item_norms[i].max(1e-12))).max(0.0)
    };
    if !qv.is_empty() && beta < 1.0 {
        match quant {
            Some(qz) => qz.scores(qv, &mut als),
            None => score_all(&m.item_factors, f, qv, &mut als),
        }
        for (s, n) in als.iter_mut().zip(&m.item_norms) {
            *s = (1.0 - beta) * (*s / (qn * n.max(1e-12))).max(0.0);
        }
    }
    let mut cont = vec![0f32; n];
    let mut qdoc = vec![];
    if let (Some(c), Some(d), true) = (content, content_q, beta > 0.0) {
        qdoc = c.tfidf.doc(d as usize);
        let mut cs = vec![0f32; c.ids.len()];
        c.tfidf.scores(&qdoc, &mut cs);
        for (row, &v) in cs.iter().enumerate() {
            if let Some(i) = c.to_item.get(row) {
                cont[i as usize] = beta * v;
            }
        }
    }
    let total: Vec<f32> = als.iter().zip(&cont).map(|(a, c)| a + c).collect();
    let exact = |i: u32| exact_als(i as usize) + cont[i as usize];
    let top = feed.rank(client, m, &total, None, if quant.is_some() { Some(&exact) } else { None }, &mut |_| vec![])?.items;
    if quant.is_some() {
        top.iter().for_each(|s| als[s.index as usize] = exact_als(s.index as usize));
    }
    Ok(top
        .into_iter()
        .filter(|s| s.score > 0.0)
        .map(|s| {
            let i = s.index as usize;
            let reason = if cont[i] >= als[i] {
                shared_term(m, &qdoc, s.index).map(|t| format!("shares {}", super::explain::term_text(&t))).unwrap_or_else(|| "similar content".into())
            } else {
                "liked by the same people".into()
            };
            (s.id, s.score, als[i], cont[i], reason)
        })
        .collect())
}

/// The term that contributes most to the content cosine between `qdoc` and item `i`.
fn shared_term(m: &Serving, qdoc: &[(u32, f32)], i: u32) -> Option<String> {
    let c = m.content.as_ref()?;
    let row = c.from_item.get(i as usize)?;
    let (ts, vs) = c.tfidf.docs.row(row as usize);
    qdoc.iter()
        .filter_map(|&(t, qv)| ts.binary_search(&t).ok().map(|k| (t, qv * vs[k])))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(t, _)| c.tfidf.vocab.term(t).to_string())
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
