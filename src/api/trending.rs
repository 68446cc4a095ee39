use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::options::DEFAULT_MODEL;
use crate::options::{TableMap, TrainOptions, INTERACTIONS, POSTS};
use crate::store::serving::{ModelKey, Serving};
use crate::store::{filecache, source};
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::datum::Interval;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use std::time::Duration;

use super::feed::check_k;

use crate::backend::TRENDING as CACHE;

/// The mapping and weights of the served model, or the defaults when none is trained yet:
/// trending reads interactions directly and needs no trained model.
fn recipe(client: &pgrx::spi::SpiClient<'_>, name: &str) -> Result<(TrainOptions, Option<Rc<Serving>>)> {
    match crate::store::model::current(client, name) {
        Ok(m) => Ok((m.options.clone(), Some(m))),
        Err(RecsysError::NotTrained) if name == DEFAULT_MODEL => Ok((TrainOptions::default(), None)),
        Err(e) => Err(e),
    }
}

/// Trending arguments.
pub struct Window<'a> {
    pub k: usize,
    pub offset: usize,
    pub category: Option<&'a str>,
    pub project_code: Option<&'a str>,
    pub since: Interval,
}

/// Posts ranked by recent engagement, as recsys_trending returns them: the one trending signal,
/// also the feed's popularity component. Only posts that exist in the posts table (when one is
/// mapped) and that the caller may see count.
pub fn top(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, model: Option<ModelKey>, w: &Window<'_>) -> Result<Rc<Vec<(i64, f32)>>> {
    top_cached(client, o, model, w, true)
}

/// [`top`], from a cache younger than `recsys.trending_cache_seconds` when `cached`. A page is
/// cut from the window's scores (every post engaged with in the window, one aggregation shared
/// by every page, filter and `k` of the same window, role and model), keeping the posts that
/// exist, are visible and match the filters now.
fn top_cached(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, model: Option<ModelKey>, w: &Window<'_>, cached: bool) -> Result<Rc<Vec<(i64, f32)>>> {
    // The cache is consulted before anything is resolved: a hit costs no query at all (the
    // mapping comes from the model, whose key is part of the cache key).
    let ttl = gucs::trending_cache_seconds();
    let key = cache_key(o, model, w);
    if ttl > 0 && cached {
        if let Some(hit) = CACHE.with(|c| c.borrow().get(&key).filter(|(t, _)| t.elapsed().as_secs() < ttl).map(|(_, v)| v.clone())) {
            return Ok(hit);
        }
        // Another connection's page (a new connection would otherwise cut it again).
        if let Some(out) = shared_result(&key, ttl) {
            return Ok(out);
        }
        if let Some(out) = stale_page(client, o, model, w, &key, ttl)? {
            return Ok(out);
        }
    }
    let (list, fresh) = window_scores(client, o, model, w.since)?;
    let out = Rc::new(page(client, o, w, &list)?);
    // Kept and shared only when this transaction has written nothing: then it saw committed
    // rows only, which every other session (and this one after a rollback) may see too.
    if ttl > 0 && fresh && shareable() {
        filecache::put("trending", &key, &out);
        remember(key, std::time::Instant::now(), out.clone());
    } else if ttl > 0 && shareable() {
        // Cut from the previous window result (served while a worker refreshes it).
        remember_briefly(key, ttl, &out);
    }
    Ok(out)
}

/// Keeps a result served while the window is refreshed in this backend's cache for a second,
/// not shared, so the calls meanwhile neither read the window's file nor cut the page again,
/// and one after it takes the refreshed result.
fn remember_briefly(key: String, ttl: u64, out: &Rc<Vec<(i64, f32)>>) {
    if let Some(at) = std::time::Instant::now().checked_sub(Duration::from_secs(ttl.saturating_sub(1))) {
        remember(key, at, out.clone());
    }
}

/// While the window's scores are being refreshed, the unfiltered page another connection cut
/// from the previous ones (up to [`STALE_FACTOR`] times the time to live old, as the previous
/// window is served then; only if it was written after that window, so it is the page this
/// call would cut from it), kept as [`remember_briefly`] says: without it each new connection
/// cut the same page again from the previous window (the window's file read, the posts table
/// resolved and its statements planned: about 4 ms of a first call at 100K posts). A page with
/// a category or project filter is cut again as before, since the filters read the posts table
/// now; an unfiltered page only names posts, and whether they still exist and may be seen is
/// checked per call (recsys_trending checks a cached page, the feed its candidates). None when
/// the window is fresh (its page is cut and shared), there is no such page, or no background
/// refresh can be started (then one connection aggregates in place, as before).
fn stale_page(
    client: &pgrx::spi::SpiClient<'_>,
    o: &TrainOptions,
    model: Option<ModelKey>,
    w: &Window<'_>,
    key: &str,
    ttl: u64,
) -> Result<Option<Rc<Vec<(i64, f32)>>>> {
    if w.category.is_some() || w.project_code.is_some() {
        return Ok(None);
    }
    let wkey = window_key(o, model, w.since);
    let Some(window_age) = filecache::age(WINDOW, &wkey).filter(|age| *age >= Duration::from_secs(ttl)) else {
        return Ok(None);
    };
    // Only a page cut from this window (written after it): the page this call would cut.
    let Some((_, rows)) = filecache::get("trending", key, Duration::from_secs(ttl.saturating_mul(STALE_FACTOR))).filter(|(age, _)| *age <= window_age) else {
        return Ok(None);
    };
    if !request_refresh(client, o, &wkey, model, w.since, ttl)? {
        return Ok(None);
    }
    let out = Rc::new(rows);
    remember_briefly(key.to_string(), ttl, &out);
    Ok(Some(out))
}

/// The window's scores for every post with a positive sum, best first (ties by id), and
/// whether they are younger than the time to live. When the shared result has expired, the
/// previous one is served while a background worker aggregates the window again; without a
/// worker, one connection at a time aggregates it while the others serve the previous result
/// (up to STALE_FACTOR times the time to live old), or when there is none wait up to WAIT for
/// the refreshed one, instead of all aggregating at once. A transaction that has written serves
/// shared results and starts the worker as any call, but when it must aggregate it does so
/// over its own view and shares nothing, so it neither takes nor waits for the lock.
fn window_scores(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, model: Option<ModelKey>, since: Interval) -> Result<(Rc<Vec<(i64, f32)>>, bool)> {
    let ttl = gucs::trending_cache_seconds();
    let key = window_key(o, model, since);
    if ttl > 0 {
        // Not kept by the backend (a page is, and it is what calls ask for again): at 100K
        // engaged posts the scores take 1.6 MB.
        if let Some((_, rows)) = filecache::get(WINDOW, &key, Duration::from_secs(ttl)) {
            return Ok((Rc::new(rows), true));
        }
        let stale = Duration::from_secs(ttl.saturating_mul(STALE_FACTOR));
        let previous = filecache::get(WINDOW, &key, stale).map(|(_, rows)| Rc::new(rows));
        // The previous result and the worker's are committed rows only: a transaction that has
        // written serves them as it serves a fresh one (else, in an app that writes before it
        // asks, as with Django's ATOMIC_REQUESTS, every call after an expiry aggregated the
        // whole window in place and nothing was ever shared again).
        // With nothing to serve, a transaction that has written aggregates its own view (not
        // shared) and still asks: the worker shares the committed one for the calls after it.
        if previous.is_some() || !shareable() {
            let started = request_refresh(client, o, &key, model, since, ttl)?;
            if let (true, Some(rows)) = (started, &previous) {
                return Ok((rows.clone(), false));
            }
        }
        if shareable() && !refresh_lock(client)? {
            if let Some(rows) = previous {
                return Ok((rows, false));
            }
            let t0 = std::time::Instant::now();
            while t0.elapsed() < WAIT {
                // SAFETY: sleeps the backend thread; interrupts are checked right after.
                unsafe { pgrx::pg_sys::pg_usleep(5_000) };
                pgrx::check_for_interrupts!();
                if let Some((_, rows)) = filecache::get(WINDOW, &key, Duration::from_secs(ttl)) {
                    return Ok((Rc::new(rows), true));
                }
                // The refresher's transaction ended without a result (error, cancel):
                // this connection refreshes.
                if refresh_lock(client)? {
                    break;
                }
            }
        }
    }
    let out = Rc::new(window_query(client, o, since)?);
    if ttl > 0 && shareable() {
        filecache::put(WINDOW, &key, &out);
    }
    Ok((out, true))
}

/// The file cache's kind for a window's scores (pages are kind "trending").
const WINDOW: &str = "trendwin";

/// The page `w` of the window's scores `list`: posts that exist in the posts table, are
/// visible to the caller and match the filters now (all of them without a posts table),
/// `w.offset` skipped, then `w.k`.
fn page(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, w: &Window<'_>, list: &[(i64, f32)]) -> Result<Vec<(i64, f32)>> {
    let need = w.offset.saturating_add(w.k);
    let Some(filter) = posts_filter(client, o, w)? else {
        return Ok(list.iter().skip(w.offset).take(w.k).copied().collect());
    };
    let mut kept: Vec<(i64, f32)> = Vec::with_capacity(need.min(list.len()));
    let text = |f: &PostsFilter<'_>| -> Vec<pgrx::datum::DatumWithOid<'_>> { f.values.iter().map(|v| (*v).into()).collect() };
    // The list's posts in order, a block at a time, each block checked at once (by id: one
    // index descent each). With a filter, only the first BY_ID_POSTS so: past them, one
    // statement reads every matching post (through an index on the filtered column if there
    // is one) and the rest of the list is walked against it.
    let (mut at, mut block) = (0usize, need.saturating_add(need / 8).saturating_add(16));
    while kept.len() < need && at < list.len() && (filter.matching.is_none() || at < BY_ID_POSTS) {
        let end = at.saturating_add(block).min(list.len());
        let ids: Vec<i64> = list[at..end].iter().map(|r| r.0).collect();
        let mut args: Vec<pgrx::datum::DatumWithOid<'_>> = vec![ids.into()];
        args.extend(text(&filter));
        let found = ids_of(client, &filter.by_id, &args)?;
        kept.extend(list[at..end].iter().filter(|(p, _)| found.contains(p)).take(need - kept.len()));
        at = end;
        block = block.saturating_mul(2);
        pgrx::check_for_interrupts!();
    }
    if let (true, Some(sql)) = (kept.len() < need && at < list.len(), &filter.matching) {
        let ids = ids_of(client, sql, &text(&filter))?;
        kept.extend(list[at..].iter().filter(|(p, _)| ids.contains(p)).take(need - kept.len()));
    }
    Ok(kept.into_iter().skip(w.offset).take(w.k).collect())
}

/// With a filter, how many of the list's posts are checked by id before the matching posts are
/// read in one statement instead.
const BY_ID_POSTS: usize = 1024;

/// How much older than `recsys.trending_cache_seconds` a result may be when it is served while
/// another connection refreshes it.
const STALE_FACTOR: u64 = 10;
/// How long a call with no result to serve waits for another connection's refresh before it
/// aggregates the window itself (the refresher's lock lasts until its transaction ends, which
/// may be long after its result was written).
const WAIT: Duration = Duration::from_secs(1);

/// Whether this transaction has written nothing (its results may be shared).
fn shareable() -> bool {
    // SAFETY: reads the current transaction's state, on the backend thread.
    unsafe { pgrx::pg_sys::GetTopTransactionIdIfAny() == pgrx::pg_sys::InvalidTransactionId }
}

/// Takes the cluster's trending-refresh lock for this transaction if no other holds it: the
/// transaction-level advisory lock (hashtext('pg_recsys trending'), 0), released at commit or
/// rollback, so an error or a cancel cannot leave it held.
fn refresh_lock(client: &pgrx::spi::SpiClient<'_>) -> Result<bool> {
    Ok(crate::store::one::<bool>(client, "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pg_recsys trending'), 0)", &[])?.unwrap_or(false))
}

/// Another connection's result for `key` younger than `ttl` seconds, kept in this backend's
/// cache for what is left of its time to live.
fn shared_result(key: &str, ttl: u64) -> Option<Rc<Vec<(i64, f32)>>> {
    let (age, rows) = filecache::get("trending", key, Duration::from_secs(ttl))?;
    let out = Rc::new(rows);
    remember(key.to_string(), std::time::Instant::now().checked_sub(age).unwrap_or_else(std::time::Instant::now), out.clone());
    Some(out)
}

/// Keeps a result in this backend's cache.
fn remember(key: String, at: std::time::Instant, out: Rc<Vec<(i64, f32)>>) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(key, (at, out));
    });
}

/// Everything a window's scores depend on: the caller (role, row security, search_path, custom
/// settings a policy may read), the model and its mapping and weights, the window and the
/// half-life.
fn window_key(o: &TrainOptions, model: Option<ModelKey>, since: Interval) -> String {
    // SAFETY: reads the backend's current user id and a GUC variable, on the backend thread.
    let (role, rls) = unsafe { (pgrx::pg_sys::GetUserId().to_u32(), pgrx::pg_sys::row_security) };
    // Without a model the table names are unqualified defaults: the search_path decides them.
    let path = gucs::search_path();
    format!(
        "W|{role}|{rls}|{path}|{:032x}|{:?}|{}|{:?}|{}|{:?}|{}",
        if settings_may_filter(o) { gucs::custom_settings_fingerprint() } else { 0 },
        model,
        o.interactions.table,
        o.posts.as_ref().map(|p| (&p.table, &p.visible)),
        serde_json::to_string(&o.weights).unwrap_or_default(),
        parts(since),
        gucs::trending_half_life_seconds(),
    )
}

/// An interval's months, days and microseconds (pgrx's Interval has no equality).
fn parts(i: Interval) -> (i32, i32, i64) {
    (i.months(), i.days(), i.micros())
}

/// Whether the session's custom settings may change what the window's tables show the caller
/// (see `source::settings_may_filter`): then they are part of the window's key.
fn settings_may_filter(o: &TrainOptions) -> bool {
    use crate::store::source::settings_may_filter as filters;
    filters(&o.interactions.table, None) || o.posts.as_ref().is_some_and(|p| filters(&p.table, p.visible.as_deref()))
}

/// Everything a page depends on: its window's key, the filters, `k` and the offset.
fn cache_key(o: &TrainOptions, model: Option<ModelKey>, w: &Window<'_>) -> String {
    format!("P|{}|{:?}|{:?}|{}|{}", window_key(o, model, w.since), w.category, w.project_code, w.k, w.offset)
}

/// Aggregates the window: every post with a positive sum, best first (ties by id); no cache.
fn window_query(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, since: Interval) -> Result<Vec<(i64, f32)>> {
    let it = source::resolve(client, "interactions", &o.interactions, INTERACTIONS)?;
    let (post, time) = (it.col("post").unwrap_or("NULL"), it.col("time"));
    let time = time.ok_or_else(|| RecsysError::MissingColumnFor { what: "recsys_trending", role: "time", table: it.table.clone() })?;
    // Exponential decay: weight · 2^(−age / half-life), age clamped at 0 for future rows. Rows
    // with a non-finite weight or time are skipped, never an error for everyone; every operator
    // is schema-qualified (OPERATOR() binds as one precedence level, left to right: parenthesise).
    let sql = format!(
        "SELECT a.p, a.score FROM (
           SELECT i.p, pg_catalog.sum(i.w OPERATOR(pg_catalog.*) pg_catalog.exp((-0.6931471805599453)::pg_catalog.float8
                    OPERATOR(pg_catalog.*) i.age OPERATOR(pg_catalog./) $4::pg_catalog.float8)) AS score
           FROM (
             SELECT ({post})::pg_catalog.int8 AS p, {w} AS w,
                    GREATEST(0::pg_catalog.float8, pg_catalog.date_part('epoch',
                      pg_catalog.now() OPERATOR(pg_catalog.-) ({time})::pg_catalog.timestamptz)) AS age
             FROM {tbl}
             WHERE ({time})::pg_catalog.timestamptz OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) $3::pg_catalog.interval)
               AND pg_catalog.isfinite(({time})::pg_catalog.timestamptz) AND ({post}) IS NOT NULL
           ) i
           WHERE i.w OPERATOR(pg_catalog.=) i.w AND i.w OPERATOR(pg_catalog.<>) 'Infinity'::pg_catalog.float8
             AND i.w OPERATOR(pg_catalog.<>) '-Infinity'::pg_catalog.float8
           GROUP BY i.p HAVING pg_catalog.sum(i.w) OPERATOR(pg_catalog.>) 0::pg_catalog.float8
         ) a
         ORDER BY a.score DESC, a.p",
        w = source::weight_expr(&it),
        tbl = it.table
    );
    let (weights, default_weight) = source::weight_args(o);
    let rows = client.select(sql.as_str(), None, &[weights.into(), default_weight.into(), since.into(), gucs::trending_half_life_seconds().into()])?;
    let mut out = vec![];
    for r in rows {
        if let (Some(p), Some(s)) = (r.get::<i64>(1)?, source::finite_weight(r.get::<f64>(2)?)) {
            out.push((p, s));
        }
    }
    Ok(out)
}

/// How a page keeps the posts that exist, are visible to the caller and match its filters now.
struct PostsFilter<'a> {
    /// Which of `$1` (int8[]) posts, with the filters' values as `$2`, `$3`.
    by_id: String,
    /// With a category or project filter: every matching post (the values as `$1`, `$2`).
    matching: Option<String>,
    values: Vec<&'a str>,
}

/// The check of a page's posts against the posts table (None without one: every post counts).
fn posts_filter<'a>(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, w: &Window<'a>) -> Result<Option<PostsFilter<'a>>> {
    let posts_map = match &o.posts {
        Some(m) => Some(m.clone()),
        None if source::table_exists(client, "posts")? => Some(TableMap::defaults_for("posts", POSTS)),
        None if w.category.is_some() || w.project_code.is_some() => Some(TableMap::defaults_for("posts", POSTS)),
        None => None,
    };
    let Some(map) = &posts_map else { return Ok(None) };
    let pt = source::resolve(client, "posts", map, POSTS)?;
    let id = pt.col("id").unwrap_or("NULL");
    let mut columns = vec![];
    let mut values = vec![];
    for (arg, role) in [(w.category, "category"), (w.project_code, "project_code")] {
        if let Some(v) = arg {
            let c = pt.col(role).ok_or_else(|| RecsysError::MissingColumnFor {
                what: "this filter",
                role: if role == "category" { "category" } else { "project_code" },
                table: pt.table.clone(),
            })?;
            values.push(v);
            columns.push(c);
        }
    }
    let vis = map.visible.as_ref().map(|v| format!(" AND ({v})")).unwrap_or_default();
    // The filters' conditions with their values from parameter `first` on.
    let filters = |first: usize| -> String {
        columns.iter().enumerate().map(|(k, c)| format!(" AND ({c})::pg_catalog.text OPERATOR(pg_catalog.=) ${}::pg_catalog.text", first + k)).collect()
    };
    let select = |cond: String| format!("SELECT ({id})::pg_catalog.int8 FROM {tbl} WHERE {cond}{vis}", tbl = pt.table);
    let by_id = select(format!("{id} OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[]){}", filters(2)));
    let matching = (!values.is_empty()).then(|| select(format!("true{}", filters(1))));
    Ok(Some(PostsFilter { by_id, matching, values }))
}

/// The ids a statement returns (first column).
fn ids_of(client: &pgrx::spi::SpiClient<'_>, sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<std::collections::HashSet<i64>> {
    let mut out = std::collections::HashSet::new();
    for r in client.select(sql, None, args)? {
        if let Some(id) = r.get::<i64>(1)? {
            out.insert(id);
        }
    }
    Ok(out)
}

/// Posts of the feed's trending signal (recsys_trending's default window).
pub const FEED_TRENDING_POSTS: usize = 1000;

/// The feed's trending window: the top 1,000 of the last 7 days, no filter.
fn feed_window() -> Window<'static> {
    Window { k: FEED_TRENDING_POSTS, offset: 0, category: None, project_code: None, since: Interval::from_days(7) }
}

/// The background worker's part: the window's scores for served version `model` (None: no
/// model) with `o`, aggregated now and shared, when their key (computed here, from this
/// session's settings) is `wanted`. Waits for a connection that is refreshing (the lock); if
/// that one shared a result younger than `ttl` seconds meanwhile, nothing is aggregated.
/// Some(rows written), or None when the key differs.
pub fn refresh_window(
    client: &pgrx::spi::SpiClient<'_>,
    o: &TrainOptions,
    model: Option<ModelKey>,
    since: Interval,
    ttl: u64,
    wanted: &str,
) -> Result<Option<usize>> {
    let key = window_key(o, model, since);
    if key != wanted || !shareable() {
        return Ok(None);
    }
    crate::store::one::<bool>(client, "SELECT true FROM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_recsys trending'), 0)", &[])?;
    if let Some((_, rows)) = filecache::get(WINDOW, &key, Duration::from_secs(ttl)) {
        return Ok(Some(rows.len()));
    }
    let out = window_query(client, o, since)?;
    filecache::put(WINDOW, &key, &out);
    // The feed's page of this window too, cut here from committed rows: a transaction that has
    // written (which keeps nothing it cuts itself) then finds it shared instead of cutting its
    // 1,000 posts on every call.
    let feed = feed_window();
    if model.is_some() && parts(since) == parts(feed.since) {
        let cut = page(client, o, &feed, &out)?;
        filecache::put("trending", &cache_key(o, model, &feed), &cut);
    }
    Ok(Some(out.len()))
}

/// The feed's popularity component now: recsys_trending's scores over its default window
/// scaled to [0, 1], per model item (None when nothing is trending in the window: the caller
/// falls back to the model's popularity). The same result is cached per backend as
/// recsys_trending's.
pub fn feed_popularity(client: &pgrx::spi::SpiClient<'_>, m: &Serving) -> Result<Option<Rc<(Vec<f32>, Vec<u32>)>>> {
    if m.options.interactions.columns.get("time").is_none_or(|c| c.is_none()) {
        return Ok(None);
    }
    let w = feed_window();
    let rows = match top(client, &m.options, Some(m.key), &w) {
        Ok(r) => r,
        // No time column resolved: no trending signal.
        Err(RecsysError::MissingColumnFor { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let max = rows.first().map(|r| r.1).unwrap_or(0.0);
    if max <= 0.0 {
        return Ok(None);
    }
    // The same cached result for the same model: the same component (no pass over the catalogue).
    let reuse = crate::backend::FEED_POPULARITY.with(|c| {
        c.borrow().as_ref().filter(|p| Rc::ptr_eq(&p.rows, &rows) && p.model == m.key && p.built.0.len() == m.item_ids.len()).map(|p| p.built.clone())
    });
    if let Some(built) = reuse {
        return Ok(Some(built));
    }
    let mut pop = vec![0f32; m.item_ids.len()];
    let mut order = vec![];
    for &(p, s) in rows.iter() {
        if let Some(i) = m.item_index.get(p) {
            pop[i as usize] = (s / max).clamp(0.0, 1.0);
            order.push(i);
        }
    }
    let built = Rc::new((pop, order));
    crate::backend::FEED_POPULARITY.with(|c| *c.borrow_mut() = Some(crate::backend::FeedPopularity { rows, model: m.key, built: built.clone() }));
    Ok(Some(built))
}

// The background refresh of a window's scores: the request side (the worker is in
// `trending_worker`).

/// What the worker must reproduce: the requester's identity and the settings the result
/// depends on, and the key the result is wanted under.
#[derive(Serialize, Deserialize)]
pub(super) struct Request {
    pub(super) db: u32,
    pub(super) role: u32,
    pub(super) search_path: String,
    pub(super) row_security: bool,
    /// The requester's custom settings ([`gucs::custom_settings`]).
    #[serde(default)]
    pub(super) settings: Vec<(String, String)>,
    pub(super) timezone: String,
    pub(super) half_life_hours: f64,
    /// The served version's id (None: no model, the defaults).
    pub(super) model_id: Option<i64>,
    pub(super) since: (i32, i32, i64),
    /// The requester's recsys.trending_cache_seconds.
    pub(super) ttl: u64,
    pub(super) key: String,
}

/// File name prefix of a pending request (in the cache directory, next to the results).
pub(super) const KIND: &str = "trendreq";
/// A request younger than this is taken to be in hand (its worker running or about to, or one
/// that skipped or failed, which leaves it): no second worker is started for the same key.
const PENDING: Duration = Duration::from_secs(30);
const ENTRY: &str = "pg_recsys_trending_worker";

/// Asks for a background refresh of the window's scores `key` (of served version `model`).
/// True when a worker is (or was just) started for it: the caller may serve the previous
/// result. False when none can be started: the caller refreshes in place.
fn request_refresh(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, key: &str, model: Option<ModelKey>, since: Interval, ttl: u64) -> Result<bool> {
    let dir = filecache::dir();
    let name = filecache::file_name(KIND, key, "json");
    let file = dir.join(&name);
    if file.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a < PENDING)) {
        return Ok(true);
    }
    // SAFETY: reads the backend's current user, database and a GUC variable on the backend thread.
    let (role, db, rls) = unsafe { (pg_sys::GetUserId().to_u32(), pg_sys::MyDatabaseId.to_u32(), pg_sys::row_security) };
    let path = gucs::search_path();
    // The worker connects as the current role: one that cannot log in cannot be a worker's.
    let row = crate::store::first_row::<bool, String, bool>(
        client,
        "SELECT r.rolcanlogin, pg_catalog.current_setting('TimeZone'), true FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1",
        &[pg_sys::Oid::from(role).into()],
    )?;
    let Some((Some(true), Some(timezone), _)) = row else { return Ok(false) };
    let req = Request {
        db,
        role,
        search_path: path,
        row_security: rls,
        // Only when they count (else the values, a JWT's claims, are not written at all).
        settings: if settings_may_filter(o) { gucs::custom_settings() } else { vec![] },
        timezone,
        half_life_hours: crate::gucs::trending_half_life_seconds() / 3600.0,
        model_id: model.map(|m| m.id),
        since: parts(since),
        ttl,
        key: key.to_string(),
    };
    if write(&dir, &file, &req).is_err() {
        return Ok(false);
    }
    let started = BackgroundWorkerBuilder::new("pg_recsys trending refresh")
        .set_type("pg_recsys trending refresh")
        .set_library("pg_recsys")
        .set_function(ENTRY)
        .enable_spi_access()
        // Standbys serve feeds too: a read-only worker may run there.
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(None)
        .set_extra(&name)
        .load_dynamic()
        .is_ok();
    if !started {
        let _ = std::fs::remove_file(&file);
    }
    Ok(started)
}

fn write(dir: &std::path::Path, file: &std::path::Path, req: &Request) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // SAFETY: reads the backend's pid.
    let tmp = file.with_extension(format!("tmp{}", unsafe { pg_sys::MyProcPid }));
    std::fs::write(&tmp, serde_json::to_vec(req).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, file)
}

#[pg_extern(stable)]
fn recsys_trending(
    k: default!(Option<i32>, 10),
    category: default!(Option<&str>, "NULL"),
    project_code: default!(Option<&str>, "NULL"),
    since: default!(Option<Interval>, "'7 days'"),
    offset: default!(Option<i32>, 0),
    model: default!(Option<&str>, "'default'"),
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
            return Err(RecsysError::InvalidArgument { message: "since must be a positive interval".into(), hint: "pass since => '7 days'".into() });
        }
        let (o, served) = recipe(client, model.unwrap_or(DEFAULT_MODEL))?;
        let w = Window { k, offset: offset as usize, category, project_code, since };
        let key = served.as_ref().map(|m| m.key);
        let rows = top(client, &o, key, &w)?;
        // A cached page is checked against the posts table now: when a post on it was deleted
        // or hidden since, the page is computed again (so it is full and current).
        if let Some(m) = &served {
            let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            if let Some(vis) = crate::store::live::visible(client, m, &ids)? {
                if ids.iter().any(|id| !vis.contains_key(id)) {
                    return Ok(top_cached(client, &o, key, &w, false)?.as_ref().clone());
                }
            }
        }
        Ok(rows.as_ref().clone())
    })
    .or_raise();
    TableIterator::new(rows)
}
