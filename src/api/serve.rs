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
    let rows = client.select(m.history_query.as_str(), None, &[weights.into(), default_weight.into(), user_id.into()])?;
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

#[pg_extern(stable)]
fn recsys_recommend(user_id: i64, k: default!(i32, 10), exclude_seen: default!(bool, true)) -> TableIterator<'static, (name!(post_id, i64), name!(score, f32))> {
    let k = check_k(k).or_raise();
    let top = Spi::connect(|client| -> Result<Vec<Scored>> {
        let m = model::current(client)?;
        let (items, seen) = history(client, &m, user_id)?;
        let mut scores = vec![0f32; m.item_ids.len()];
        if items.is_empty() {
            // Cold start: the documented popularity fallback (distinct users per post, scaled
            // to [0, 1]).
            scores.copy_from_slice(&m.popularity);
        } else {
            let x = fold_in(&m.item_factors, m.factors, &m.gram, &items, m.options.als.alpha);
            score_all(&m.item_factors, m.factors, &x, &mut scores);
        }
        let mut top = TopK::new(k);
        for (i, &s) in scores.iter().enumerate() {
            let id = m.item_ids[i];
            if exclude_seen && seen.contains(&id) {
                continue;
            }
            if s >= top.threshold() {
                top.push(Scored { score: s, id, index: i as u32 });
            }
        }
        Ok(top.into_sorted())
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
