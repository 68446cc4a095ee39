use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::options::{TableMap, TrainOptions, INTERACTIONS, POSTS};
use crate::store::source;
use pgrx::datum::Interval;
use pgrx::prelude::*;

use super::serve::check_k;

thread_local! {
    /// Recent results by (table, weights, arguments), for recsys.trending_cache_seconds.
    static CACHE: std::cell::RefCell<std::collections::HashMap<String, (std::time::Instant, Vec<(i64, f32)>)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The mapping and weights of the served model, or the defaults when none is trained yet:
/// trending reads interactions directly and needs no trained model.
fn recipe(client: &pgrx::spi::SpiClient<'_>) -> Result<TrainOptions> {
    match crate::store::model::current(client) {
        Ok(m) => Ok(m.options.clone()),
        Err(RecsysError::NotTrained) => Ok(TrainOptions::default()),
        Err(e) => Err(e),
    }
}

#[pg_extern(stable)]
fn recsys_trending(
    k: default!(Option<i32>, 10),
    category: default!(Option<&str>, "NULL"),
    project_code: default!(Option<&str>, "NULL"),
    since: default!(Option<Interval>, "'7 days'"),
    offset: default!(Option<i32>, 0),
) -> TableIterator<'static, (name!(post_id, i64), name!(score, f32))> {
    // NULL k: no rows; NULL since / offset: their defaults.
    let Some(k) = k else { return TableIterator::new(vec![]) };
    let k = check_k(k).or_raise();
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        RecsysError::InvalidArgument { message: format!("offset must be 0 or more, got {offset}"), hint: "pass offset => 0".into() }.raise();
    }
    let rows = Spi::connect(|client| -> Result<Vec<(i64, f32)>> {
        let since: Interval = since.unwrap_or_else(|| Interval::from_days(7));
        // Compared as PostgreSQL compares intervals: a month is 30 days.
        if since.as_micros() <= 0 {
            return Err(RecsysError::InvalidArgument {
                message: "since must be a positive interval".into(),
                hint: "pass since => '7 days'".into(),
            });
        }
        let o = recipe(client)?;
        let it = source::resolve(client, "interactions", &o.interactions, INTERACTIONS)?;
        let (post, time) = (it.col("post").unwrap_or("NULL"), it.col("time"));
        let time = time.ok_or_else(|| RecsysError::MissingColumnFor { what: "recsys_trending", role: "time", table: it.table.clone() })?;
        let mut join = String::new();
        if category.is_some() || project_code.is_some() {
            let map = o.posts.clone().unwrap_or_else(|| TableMap::defaults_for("posts", POSTS));
            let pt = source::resolve(client, "posts", &map, POSTS)?;
            let id = pt.col("id").unwrap_or("NULL");
            join = format!("JOIN {tbl} p ON (p.{id})::int8 = i.p", tbl = pt.table);
            for (arg, role, n) in [(category, "category", 5), (project_code, "project_code", 6)] {
                if arg.is_some() {
                    let c = pt.col(role).ok_or_else(|| RecsysError::MissingColumnFor {
                        what: "this filter",
                        role: if role == "category" { "category" } else { "project_code" },
                        table: pt.table.clone(),
                    })?;
                    join.push_str(&format!(" AND (p.{c})::text = ${n}"));
                }
            }
        }
        // Exponential decay: weight · 2^(−age / half-life), age clamped at 0 for future rows.
        let sql = format!(
            "SELECT i.p, pg_catalog.sum(i.w * pg_catalog.exp(-0.6931471805599453 * i.age / $4))::float4 AS score FROM (
               SELECT ({post})::int8 AS p, {w} AS w,
                      greatest(0, extract(epoch FROM (pg_catalog.now() - ({time})::timestamptz)))::float8 AS age
               FROM {tbl} WHERE ({time})::timestamptz >= pg_catalog.now() - $3::interval AND ({post}) IS NOT NULL
             ) i {join}
             WHERE i.w = i.w AND i.w <> 'Infinity' AND i.w <> '-Infinity'
             GROUP BY i.p HAVING pg_catalog.sum(i.w) > 0
             ORDER BY score DESC, i.p LIMIT $7 OFFSET $8",
            w = source::weight_expr(&it),
            tbl = it.table
        );
        let ttl = gucs::trending_cache_seconds();
        let key = format!(
            "{}|{}|{:?}|{:?}|{:?}|{}|{}|{}",
            it.table,
            serde_json::to_string(&o.weights).unwrap_or_default(),
            category,
            project_code,
            (since.months(), since.days(), since.micros()),
            gucs::trending_half_life_seconds(),
            k,
            offset
        );
        if ttl > 0 {
            if let Some(hit) = CACHE.with(|c| c.borrow().get(&key).filter(|(t, _)| t.elapsed().as_secs() < ttl).map(|(_, v)| v.clone())) {
                return Ok(hit);
            }
        }
        let (weights, default_weight) = source::weight_args(&o);
        let rows = client.select(
            sql.as_str(),
            None,
            &[
                weights.into(),
                default_weight.into(),
                since.into(),
                gucs::trending_half_life_seconds().into(),
                category.into(),
                project_code.into(),
                (k as i64).into(),
                (offset as i64).into(),
            ],
        )?;
        let mut out = vec![];
        for r in rows {
            if let (Some(p), Some(s)) = (r.get::<i64>(1)?, r.get::<f32>(2)?) {
                out.push((p, s));
            }
        }
        if ttl > 0 {
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() >= 256 {
                    c.clear();
                }
                c.insert(key, (std::time::Instant::now(), out.clone()));
            });
        }
        Ok(out)
    })
    .or_raise();
    TableIterator::new(rows)
}
