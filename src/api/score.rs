//! One user's component scores for a call, from the app's tables as they are now.
use crate::error::Result;
use crate::store::request::{self, Request};
use crate::store::serving::Serving;

use pgrx::JsonB;
use recsys_core::fasthash::IndexSet;
use recsys_core::hybrid::{self, DenseBound, Scores, Weights};

/// The model's fusion weights with the caller's partial override ({"social": 0.5}).
pub(super) fn weights_for(m: &Serving, over: Option<&JsonB>) -> Result<Weights> {
    match over {
        None => Ok(m.options.hybrid.weights),
        Some(j) => Ok(crate::options::parse_weights("weights", &j.0, m.options.hybrid.weights)?),
    }
}

/// One user's component scores, from the app's tables as they are now.
pub(super) struct UserScores {
    pub req: Request,
    pub scores: Scores,
    /// The popularity component now (recsys_trending's signal) and its order; None = nothing
    /// trending in the window, the model's popularity stands in.
    pub pop: Option<std::rc::Rc<(Vec<f32>, Vec<u32>)>>,
    /// The model's demographic lists of the user's segments.
    pub segments: recsys_core::hybrid::Segments,
}

impl UserScores {
    /// The model's catalogue with the call's popularity.
    pub fn catalog<'a>(&'a self, m: &'a Serving) -> recsys_core::hybrid::Catalog<'a> {
        let mut c = m.catalog(&self.segments);
        if let Some(p) = &self.pop {
            c.popularity = &p.0;
        }
        c
    }
}

pub(super) fn score_user(client: &pgrx::spi::SpiClient<'_>, m: &Serving, user_id: i64, w: &Weights) -> Result<UserScores> {
    Ok(score_user_ahead(client, m, user_id, w, None)?.0)
}

/// What a feed ranked through the partition needs before its walk, computed alongside the
/// reads of the followees: its first mask and the dense part of the walk's bound.
pub(super) struct Ahead {
    pub mask: Option<Vec<bool>>,
    pub bound: Option<DenseBound>,
}

/// [`score_user`], with the feed's mask (`mask_of(seen)`) and the bound computed ahead when the
/// ranking will go through the partition.
pub(super) fn score_user_ahead(
    client: &pgrx::spi::SpiClient<'_>,
    m: &Serving,
    user_id: i64,
    w: &Weights,
    mask_of: Option<&(dyn Fn(&IndexSet<i64>) -> Option<Vec<bool>> + Sync)>,
) -> Result<(UserScores, Option<Ahead>)> {
    let mut req = request::history(client, m, user_id)?;
    let n_history = req.input.history.len() + req.input.unknown_history;
    let o = &m.options.hybrid;
    let pop = if w.popularity > 0.0 { super::trending::feed_popularity(client, m)? } else { None };
    // The history's components (and the feed's mask and bound) are computed on the helper
    // thread while this one reads the followees and demographics: statements run on the
    // backend thread only.
    let no_segments = hybrid::Segments::default();
    let mut cat = m.catalog(&no_segments);
    if let Some(p) = &pop {
        cat.popularity = &p.0;
    }
    let (cat, input, seen) = (&cat, &req.input, &req.seen);
    // A helper only when there is something to read meanwhile.
    let helper = crate::gucs::serving_helper() && request::reads_people(m, w, n_history);
    let ((own, ahead), people) = crate::helper::alongside(
        helper,
        || {
            let s = hybrid::score_history(cat, input, o, w);
            let ahead = mask_of.filter(|_| s.als_by_ivf).map(|mask_of| {
                let mask = mask_of(seen);
                // Without followees or segments ALS may be the only part (no bound needed);
                // when they come, the bound is computed then.
                let bound = if hybrid::als_alone(cat, input, o, &s.weights) { None } else { s.dense_bound(cat, mask.as_deref()) };
                Ahead { mask, bound }
            });
            (s, ahead)
        },
        || request::people(client, m, user_id, w, n_history),
    );
    (req.input.followees, req.input.segments) = people?;
    // Only the demographic component reads the lists (hybrid::score, the explanation).
    let segments = if w.demographic > 0.0 { m.segments.of(&req.input.segments) } else { Default::default() };
    let mut s = UserScores { req, scores: Scores::default(), pop, segments };
    let mut scores = own;
    hybrid::score_people(&mut scores, &s.catalog(m), &s.req.input, o);
    s.scores = scores;
    Ok((s, ahead))
}
