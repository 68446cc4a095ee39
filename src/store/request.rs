//! What is known about one user at request time, read from the app's tables now (so a like,
//! a follow or a profile edit a second ago counts without a retrain): history, followees,
//! demographics, and the followees' latest engagement and posts. Every query was built at model load from names the
//! server resolved; the user id travels as `$1`/`$3`.
use crate::error::Result;
use crate::store::serving::Serving;
use crate::store::source;
use crate::store::source::Columns;
use pgrx::spi::SpiClient;
use pgrx::{PgBuiltInOids, PgOid};
use recsys_core::fasthash::{IndexMap, IndexSet};
use recsys_core::hybrid::{segment_keys, Event, Followee, UserInput, Weights};

pub struct Request {
    pub input: UserInput,
    /// Every post the user interacted with (known to the model or not).
    pub seen: IndexSet<i64>,
}

const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
const INT8_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8ARRAYOID);

/// The user's history now (the fold-in events of model posts, and every post seen).
pub fn history(client: &SpiClient<'_>, m: &Serving, user_id: i64) -> Result<Request> {
    // Rows are kept as read and their posts looked up after the statement, in one tight loop:
    // each lookup may miss the cache, and there the misses overlap instead of waiting in turn
    // between executor steps.
    let read = super::direct::usable().then(|| super::direct::history(&m.direct, &m.options, user_id)).flatten();
    let rows = match read {
        Some(rows) => rows,
        None => m.run(client, "history", &m.history_query, &[INT8], &[user_id.into()], |row| {
            let Some(pid) = row.get::<i64>(1)? else { return Ok(None) };
            Ok(Some((pid, weight_and_day(m, row, 2)?)))
        })?,
    };
    let mut seen = IndexSet::default();
    let mut unknown = 0usize;
    let mut history = Vec::with_capacity(rows.len());
    for (pid, wd) in rows {
        seen.insert(pid);
        let Some((weight, day)) = wd else { continue };
        match m.item_index.get(pid) {
            Some(item) => history.push(Event { item, weight, day }),
            None => unknown += 1,
        }
    }
    let input = UserInput { history, unknown_history: unknown, ..Default::default() };
    Ok(Request { input, seen })
}

/// The user's followees (with their latest engagement and posts) and demographic segments now,
/// for a user with `n_history` interactions: what [`history`] leaves out.
pub fn people(client: &SpiClient<'_>, m: &Serving, user_id: i64, w: &Weights, n_history: usize) -> Result<(Vec<Followee>, Vec<String>)> {
    let mut followees_now = vec![];
    if let (Some(q), true) = (&m.followees_query, reads_followees(w)) {
        followees_now = followees(client, m, q, user_id)?;
    }
    let mut segments = vec![];
    if let (Some(q), true) = (&m.demographics_query, reads_segments(m, w, n_history)) {
        let read = super::direct::usable().then(|| super::direct::demographics(&m.direct, user_id)).flatten();
        let row = match read {
            Some(row) => row,
            None => m
                .run(client, "demographics", q, &[INT8], &[user_id.into()], |row| Ok(Some((row.get::<f64>(1)?, row.get::<String>(2)?, row.get::<String>(3)?))))?
                .into_iter()
                .next(),
        };
        if let Some((age, g, l)) = row {
            segments = segment_keys(age, g.as_deref(), l.as_deref());
        }
    }
    Ok((followees_now, segments))
}

/// Whether [`people`] reads anything for a user with `n_history` interactions.
pub fn reads_people(m: &Serving, w: &Weights, n_history: usize) -> bool {
    (m.followees_query.is_some() && reads_followees(w)) || (m.demographics_query.is_some() && reads_segments(m, w, n_history))
}

fn reads_followees(w: &Weights) -> bool {
    w.social > 0.0
}

fn reads_segments(m: &Serving, w: &Weights, n_history: usize) -> bool {
    w.demographic > 0.0 && n_history < m.options.hybrid.cold_start_threshold
}

/// An event row's weight and day from its kind, value and time columns (at `at`, `at + 1`,
/// `at + 2`); None (skip the row) unless the weight is a finite float4 and the time not
/// infinite, as the training read does.
fn weight_and_day(m: &Serving, row: &source::Row, at: usize) -> Result<Option<(f32, f32)>> {
    let w = source::event_weight(&m.options, row.get::<&str>(at)?, row.get::<f64>(at + 1)?);
    let t = row.get::<pgrx::datum::TimestampWithTimeZone>(at + 2)?.map(|t| t.into_inner());
    Ok(source::finite_weight(Some(w)).zip(source::finite_day(Some(source::epoch_day(t)))))
}

/// The user's followees now (direct, mutual flags, and the second hop when on), each with their
/// latest engagement and their posts: one statement each for all of them.
fn followees(client: &SpiClient<'_>, m: &Serving, q: &str, user_id: i64) -> Result<Vec<Followee>> {
    let o = &m.options.hybrid;
    // Each read goes direct through its index when that gives the statement's rows
    // (`store::direct`), else runs the statement.
    let go_direct = super::direct::usable();
    let read = go_direct.then(|| super::direct::followees(&m.direct, user_id, recsys_core::world::MAX_FOLLOWEES)).flatten();
    let mut direct = match read {
        Some(rows) => rows,
        None => m.run(client, "followees", q, &[INT8], &[user_id.into()], |row| {
            Ok(row.get::<i64>(1)?.map(|id| (id, row.get::<bool>(2).ok().flatten().unwrap_or(false))))
        })?,
    };
    let mut dedup = IndexSet::default();
    direct.retain(|(id, _)| dedup.insert(*id));
    let mut all: Vec<(i64, bool, bool)> = direct.iter().map(|&(id, mutual)| (id, mutual, false)).collect();
    if let (Some(q2), true) = (&m.second_hop_query, o.second_hop > 0.0) {
        let hop2: Vec<i64> = m.run(client, "second_hop", q2, &[INT8], &[user_id.into()], |row| row.get::<i64>(1).map_err(Into::into))?;
        all.extend(hop2.into_iter().filter(|id| !dedup.contains(id)).map(|id| (id, false, true)));
    }
    if all.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<i64> = all.iter().map(|f| f.0).collect();
    let read = go_direct.then(|| super::direct::followee_events(&m.direct, &m.options, &ids, recsys_core::hybrid::SOCIAL_EVENTS)).flatten();
    let rows = match read {
        Some(rows) => rows,
        None => m.run(client, "followee_events", &m.followee_events_query, &[INT8_ARRAY], &[ids.clone().into()], |row| {
            let (Some(u), Some(p)) = (row.get::<i64>(1)?, row.get::<i64>(2)?) else { return Ok(None) };
            Ok(weight_and_day(m, row, 3)?.map(|(weight, day)| (u, p, weight, day)))
        })?,
    };
    let mut events: IndexMap<i64, Vec<Event>> = IndexMap::default();
    for (u, p, weight, day) in rows {
        if let Some(item) = m.item_index.get(p) {
            events.entry(u).or_default().push(Event { item, weight, day });
        }
    }
    let mut owned: IndexMap<i64, Vec<u32>> = IndexMap::default();
    if let Some(q) = &m.followee_posts_query {
        let read = go_direct.then(|| super::direct::followee_posts(&m.direct, &ids, recsys_core::hybrid::SOCIAL_EVENTS)).flatten();
        let rows = match read {
            Some(rows) => rows,
            None => m.run(client, "followee_posts", q, &[INT8_ARRAY], &[ids.into()], |row| Ok(row.get::<i64>(1)?.zip(row.get::<i64>(2)?)))?,
        };
        for (o, p) in rows {
            if let Some(item) = m.item_index.get(p) {
                owned.entry(o).or_default().push(item);
            }
        }
    }
    Ok(all
        .into_iter()
        .map(|(id, mutual, second_hop)| Followee {
            id,
            mutual,
            second_hop,
            followers: m.followers.get(id).unwrap_or(0),
            events: events.remove(&id).unwrap_or_default(),
            owned: match &m.followee_posts_query {
                Some(_) => owned.remove(&id).unwrap_or_default(),
                None => m.owned.get(id),
            },
        })
        .collect())
}
