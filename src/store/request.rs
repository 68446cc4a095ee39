//! What is known about one user at request time, read from the app's tables now (so a like,
//! a follow or a profile edit a second ago counts without a retrain): history, followees,
//! demographics. The followees' recent engagement comes from the model (a snapshot taken at
//! training time), which keeps a request to a couple of index lookups. Every query was built at model load from names the
//! server resolved; the user id travels as `$1`/`$3`.
use crate::error::Result;
use crate::store::model::Serving;
use crate::store::source;
use pgrx::spi::SpiClient;
use pgrx::{PgBuiltInOids, PgOid};
use recsys_core::hybrid::{segment_keys, Event, Followee, UserInput, Weights};
use std::collections::HashSet;

pub struct Request {
    pub input: UserInput,
    /// Every post the user interacted with (known to the model or not).
    pub seen: HashSet<i64>,
}

const JSONB: PgOid = PgOid::BuiltIn(PgBuiltInOids::JSONBOID);
const FLOAT4: PgOid = PgOid::BuiltIn(PgBuiltInOids::FLOAT4OID);
const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);

pub fn gather(client: &SpiClient<'_>, m: &Serving, user_id: i64, w: &Weights) -> Result<Request> {
    let o = &m.options.hybrid;
    let (weights, default_weight) = source::weight_args(&m.options);
    let mut seen = HashSet::new();
    let mut unknown = 0usize;
    let rows = m.run(
        client,
        "history",
        &m.history_query,
        &[JSONB, FLOAT4, INT8],
        &[weights.into(), default_weight.into(), user_id.into()],
        |row| {
            let Some(pid) = row.get::<i64>(1)? else { return Ok(None) };
            seen.insert(pid);
            let weight = row.get::<f32>(2)?.unwrap_or(f32::NAN);
            let day = row.get::<f32>(3)?.unwrap_or(f32::NAN);
            if !weight.is_finite() {
                return Ok(None);
            }
            match m.item_index.get(&pid) {
                Some(&item) => Ok(Some(Event { item, weight, day })),
                None => {
                    unknown += 1;
                    Ok(None)
                }
            }
        },
    )?;
    let mut input = UserInput { history: rows, unknown_history: unknown, ..Default::default() };
    let n_history = input.history.len() + unknown;

    if let (Some(q), true) = (&m.followees_query, w.social > 0.0) {
        let mut direct: Vec<(i64, bool)> = m.run(client, "followees", q, &[INT8], &[user_id.into()], |row| {
            Ok(row.get::<i64>(1)?.map(|id| (id, row.get::<bool>(2).ok().flatten().unwrap_or(false))))
        })?;
        let mut dedup = HashSet::new();
        direct.retain(|(id, _)| dedup.insert(*id));
        let mut all: Vec<(i64, bool, bool)> = direct.iter().map(|&(id, mutual)| (id, mutual, false)).collect();
        if let (Some(q2), true) = (&m.second_hop_query, o.second_hop > 0.0) {
            let hop2: Vec<i64> = m.run(client, "second_hop", q2, &[INT8], &[user_id.into()], |row| row.get::<i64>(1).map_err(Into::into))?;
            all.extend(hop2.into_iter().filter(|id| !dedup.contains(id)).map(|id| (id, false, true)));
        }
        if !all.is_empty() {
            input.followees = all
                .into_iter()
                .map(|(id, mutual, second_hop)| Followee {
                    id,
                    mutual,
                    second_hop,
                    followers: m.followers.get(&id).copied().unwrap_or(0),
                    events: m.recent.of(id).to_vec(),
                    owned: m.owned.get(&id).cloned().unwrap_or_default(),
                })
                .collect();
        }
    }

    if let (Some(q), true) = (&m.demographics_query, w.demographic > 0.0 && n_history < o.cold_start_threshold) {
        let rows = m.run(client, "demographics", q, &[INT8], &[user_id.into()], |row| {
            Ok(Some((row.get::<f64>(1)?, row.get::<String>(2)?, row.get::<String>(3)?)))
        })?;
        if let Some((age, g, l)) = rows.into_iter().next() {
            input.segments = segment_keys(age, g.as_deref(), l.as_deref());
        }
    }
    Ok(Request { input, seen })
}
