//! The posts table as it is now, read at call time under the caller's rights: which candidate
//! posts exist and are visible (deleted rows, the model's `visible` predicate, row-level
//! security and grants all apply, since the query runs as the caller), their current titles,
//! and which posts match a feed filter now. A model is a ranking; what may be shown is
//! decided here, on every call.
use crate::error::Result;
use crate::store::serving::{LiveQueries, Serving};
use crate::store::source::Columns;
use crate::store::source::Resolved;
use pgrx::{pg_sys, PgBuiltInOids, PgOid};
use std::collections::{HashMap, HashSet};

const INT8_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8ARRAYOID);
const TID_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::TIDARRAYOID);
const TEXT: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);

/// Plan names for [`LiveQueries::filters`] (the plan cache is keyed by static names).
const FILTER_PLANS: [&str; 8] = ["live_f0", "live_f1", "live_f2", "live_f3", "live_f4", "live_f5", "live_f6", "live_f7"];

fn visible_clause(pred: Option<&str>) -> String {
    // The predicate was checked to be one parenthesised expression (options) and parsed by the
    // server against this table at train time.
    pred.map(|p| format!(" AND ({p})")).unwrap_or_default()
}

pub fn queries(t: &Resolved, pred: Option<&str>) -> LiveQueries {
    let id = t.col("id").unwrap_or("NULL");
    let title = t.col("title").map(|c| format!("({c})::pg_catalog.text")).unwrap_or_else(|| "NULL::pg_catalog.text".into());
    let vis = visible_clause(pred);
    // Every statement here: the columns of the posts that meet a condition and the predicate.
    let select = |cols: &str, cond: &str| format!("SELECT {cols} FROM {tbl} WHERE {cond}{vis}", tbl = t.table);
    let cols = format!("({id})::pg_catalog.int8, {title}");
    let by_id = |param: &str| format!("{id} OPERATOR(pg_catalog.=) ANY ({param}::pg_catalog.int8[])");
    // A plain table's check also returns where each row is, for the next call's hints.
    let located = format!("ctid, {cols}");
    let check = select(if t.heap { &located } else { &cols }, &by_id("$1"));
    // Rows whose place is known, fetched by it (a TID scan: no index descent per post), then
    // the others by id; both under the same predicate, row-level security and snapshot.
    let check_tids =
        t.heap.then(|| format!("{} UNION ALL {}", select(&located, "ctid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.tid[])"), select(&located, &by_id("$2"))));
    let roles = ["category", "project_code", "mood"];
    let filters = std::array::from_fn(|mask: usize| {
        let mut conds = vec![];
        for (bit, role) in roles.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                let c = t.col(role)?;
                conds.push(format!("({c})::pg_catalog.text OPERATOR(pg_catalog.=) ${}::pg_catalog.text", conds.len() + 1));
            }
        }
        let cond = if conds.is_empty() { "true".to_string() } else { conds.join(" AND ") };
        Some(select(&format!("({id})::pg_catalog.int8"), &cond))
    });
    LiveQueries { check, check_tids, filters }
}

/// Which of `ids` the caller may be shown now, with their current titles (None: no posts
/// table is mapped, so every post counts as visible and untitled).
pub fn visible(client: &pgrx::spi::SpiClient<'_>, m: &Serving, ids: &[i64]) -> Result<Option<HashMap<i64, String>>> {
    let Some(q) = &m.live else { return Ok(None) };
    if ids.is_empty() {
        return Ok(Some(HashMap::new()));
    }
    // Each post looked up once: a page's reasons often name the same few history posts (2–6
    // distinct ones among 20 rows, for most users of the serving benchmark).
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let ids = &unique[..];
    if let Some(sql) = &q.check_tids {
        return visible_by_place(client, m, &q.check, sql, ids).map(Some);
    }
    let rows = m.run(client, "live_check", &q.check, &[INT8_ARRAY], &[ids.to_vec().into()], |row| {
        Ok(row.get::<i64>(1)?.map(|id| (id, row.get::<String>(2).ok().flatten().unwrap_or_default())))
    })?;
    Ok(Some(rows.into_iter().collect()))
}

/// [`visible`] for a plain table: with hints, `by_place_sql` (the hinted posts by place, the
/// rest by id, one statement); without, `by_id_sql`. Hints are learned from every row read.
fn visible_by_place(client: &pgrx::spi::SpiClient<'_>, m: &Serving, by_id_sql: &str, by_place_sql: &str, ids: &[i64]) -> Result<HashMap<i64, String>> {
    let mut out = HashMap::with_capacity(ids.len());
    let (mut hinted, mut by_id): (Vec<(i64, pg_sys::ItemPointerData)>, Vec<i64>) = (vec![], vec![]);
    {
        let tids = m.tids.borrow();
        for &id in ids {
            match tids.at.get(&id).filter(|_| tids.in_use()) {
                Some(t) => hinted.push((id, *t)),
                None => by_id.push(id),
            }
        }
    }
    let mut learned: Vec<(i64, pg_sys::ItemPointerData)> = vec![];
    let wanted: recsys_core::fasthash::IndexSet<i64> = ids.iter().copied().collect();
    let mut read = |client: &pgrx::spi::SpiClient<'_>, hinted: Vec<pg_sys::ItemPointerData>, by_id: Vec<i64>, out: &mut HashMap<i64, String>| -> Result<()> {
        let mut on_row = |tid: pg_sys::ItemPointerData, id: i64, title: Option<&str>| {
            // A place may now hold another post: true news of where that one is, but not
            // an answer about the posts asked for.
            if wanted.contains(&id) {
                out.insert(id, title.unwrap_or_default().to_string());
            }
            learned.push((id, tid));
        };
        // Read through the index and the places directly where that gives the statement's rows.
        if super::direct::usable() && super::direct::posts_at(&m.direct, &hinted, &by_id, &mut on_row).is_some() {
            return Ok(());
        }
        let each = |row: &super::source::Row| {
            if let (Some(tid), Some(id)) = (row.get::<pg_sys::ItemPointerData>(1)?, row.get::<i64>(2)?) {
                on_row(tid, id, row.get::<&str>(3).ok().flatten());
            }
            Ok(None::<()>)
        };
        if hinted.is_empty() {
            m.run(client, "live_check", by_id_sql, &[INT8_ARRAY], &[by_id.into()], each)?;
        } else {
            m.run(client, "live_check_tids", by_place_sql, &[TID_ARRAY, INT8_ARRAY], &[hinted.into(), by_id.into()], each)?;
        }
        Ok(())
    };
    read(client, hinted.iter().map(|h| h.1).collect(), by_id, &mut out)?;
    // Hints that found nothing: looked up by id.
    let stale: Vec<i64> = hinted.iter().map(|h| h.0).filter(|id| !out.contains_key(id)).collect();
    if !stale.is_empty() {
        read(client, vec![], stale.clone(), &mut out)?;
    }
    let mut tids = m.tids.borrow_mut();
    if !hinted.is_empty() {
        tids.calls = tids.calls.saturating_add(1);
        tids.rechecks += u32::from(!stale.is_empty());
    }
    for id in &stale {
        tids.at.remove(id);
    }
    if tids.at.len() + learned.len() > crate::store::serving::MAX_TIDS {
        tids.at.clear();
    }
    tids.at.extend(learned);
    Ok(out)
}

/// Post ids that match the given filters now (and are visible), or None when no filter is
/// set. A filter on an attribute the posts table does not map matches nothing.
pub fn matching(client: &pgrx::spi::SpiClient<'_>, m: &Serving, attrs: [Option<&str>; 3]) -> Result<Option<HashSet<i64>>> {
    let mask = attrs.iter().enumerate().fold(0usize, |acc, (bit, a)| acc | ((a.is_some() as usize) << bit));
    if mask == 0 {
        return Ok(None);
    }
    let Some(q) = &m.live else { return Ok(None) };
    let Some(sql) = &q.filters[mask] else { return Ok(Some(HashSet::new())) };
    // One filter: read through its column's index directly where that gives the statement's ids.
    if mask.count_ones() == 1 && super::direct::usable() {
        let bit = mask.trailing_zeros() as usize;
        if let Some(ids) = attrs[bit].and_then(|v| super::direct::matching(&m.direct, bit, v)) {
            return Ok(Some(ids.into_iter().collect()));
        }
    }
    let values: Vec<&str> = attrs.iter().flatten().copied().collect();
    let types = vec![TEXT; values.len()];
    let args: Vec<pgrx::datum::DatumWithOid<'_>> = values.iter().map(|v| (*v).into()).collect();
    let ids = m.run(client, FILTER_PLANS[mask], sql, &types, &args, |row| row.get::<i64>(1).map_err(Into::into))?;
    Ok(Some(ids.into_iter().collect()))
}
