//! One user's component scores for a call, from the app's tables as they are now.
use crate::error::Result;
use crate::store::request::{self, Request};
use crate::store::serving::Serving;

use pgrx::JsonB;
use recsys_core::hybrid::{self, Scores, Weights};

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
    let req = request::gather(client, m, user_id, w)?;
    let pop = if w.popularity > 0.0 { super::trending::feed_popularity(client, m)? } else { None };
    // Only the demographic component reads the lists (hybrid::score, the explanation).
    let segments = if w.demographic > 0.0 { m.segments.of(&req.input.segments) } else { Default::default() };
    let mut s = UserScores { req, scores: Scores::default(), pop, segments };
    s.scores = hybrid::score(&s.catalog(m), &s.req.input, &m.options.hybrid, w);
    Ok(s)
}
