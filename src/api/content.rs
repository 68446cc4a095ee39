use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::store::model::{self, Serving};
use pgrx::prelude::*;
use recsys_core::kernels::score_all;
use recsys_core::topk::{Scored, TopK};

use super::serve::check_k;

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
fn recsys_search(query: &str, k: default!(i32, 10)) -> TableIterator<'static, (name!(post_id, i64), name!(score, f32))> {
    let k = check_k(k).or_raise();
    let top = Spi::connect(|client| -> Result<Vec<Scored>> {
        let m = model::current(client)?;
        let c = m.content.as_ref().ok_or(RecsysError::NoContentModel)?;
        let q = c.tfidf.query(&query_tokens(query));
        if q.is_empty() {
            // Documented: an empty query, or one with no term known to the posts, matches nothing.
            return Ok(vec![]);
        }
        let mut scores = vec![0f32; c.ids.len()];
        c.tfidf.scores(&q, &mut scores);
        let mut top = TopK::new(k);
        for (d, &s) in scores.iter().enumerate() {
            if s > 0.0 && s >= top.threshold() {
                top.push(Scored { score: s, id: c.ids[d], index: d as u32 });
            }
        }
        Ok(top.into_sorted())
    })
    .or_raise();
    TableIterator::new(top.into_iter().map(|s| (s.id, s.score)).collect::<Vec<_>>())
}

/// Blend of ALS item cosine and content cosine around one post. A post with factors mixes
/// both (`recsys.similar_content_weight` is the content share); a post known only from the
/// posts table (no interactions yet) is placed by its content alone.
pub fn similar(m: &Serving, post_id: i64, k: usize) -> Result<Vec<Scored>> {
    let f = m.factors;
    let als_q = m.item_index.get(&post_id).copied();
    let content = m.content.as_ref();
    let content_q = content.and_then(|c| c.index.get(&post_id).copied());
    if als_q.is_none() && content_q.is_none() {
        return Err(RecsysError::UnknownPost(post_id));
    }
    let beta = match (als_q, content_q) {
        (Some(_), Some(_)) => gucs::similar_content_weight(),
        (Some(_), None) => 0.0,
        _ => 1.0,
    };
    let mut als = vec![0f32; m.item_ids.len()];
    if let Some(q) = als_q {
        let qv = &m.item_factors[q as usize * f..(q as usize + 1) * f];
        let qn = m.item_norms[q as usize].max(1e-12);
        score_all(&m.item_factors, f, qv, &mut als);
        for (s, n) in als.iter_mut().zip(&m.item_norms) {
            *s /= qn * n.max(1e-12);
        }
    }
    let mut top = TopK::new(k);
    let mut in_content = vec![false; m.item_ids.len()];
    if let (Some(c), true) = (content, beta > 0.0) {
        let mut cs = vec![0f32; c.ids.len()];
        if let Some(d) = content_q {
            c.tfidf.scores(&c.tfidf.doc(d as usize), &mut cs);
        }
        for (d, &cv) in cs.iter().enumerate() {
            let id = c.ids[d];
            let a = c.to_item[d].map(|i| {
                in_content[i as usize] = true;
                als[i as usize]
            });
            // Content alone: posts sharing no term are not similar, not "similar with score 0".
            if id == post_id || (beta >= 1.0 && cv <= 0.0) {
                continue;
            }
            let s = beta * cv + (1.0 - beta) * a.unwrap_or(0.0);
            if s >= top.threshold() {
                top.push(Scored { score: s, id, index: d as u32 });
            }
        }
    }
    if beta < 1.0 {
        for (i, &a) in als.iter().enumerate() {
            let id = m.item_ids[i];
            if in_content[i] || id == post_id {
                continue;
            }
            let s = (1.0 - beta) * a;
            if s >= top.threshold() {
                top.push(Scored { score: s, id, index: i as u32 });
            }
        }
    }
    Ok(top.into_sorted())
}
