//! A trending window's scores (one aggregation per window, role and model, from which every
//! `recsys_trending` page and the feed's popularity signal are cut) refreshed off the request
//! path. When the cluster's shared scores have expired, the call that finds them so serves the
//! previous ones (at most `STALE_FACTOR` × `recsys.trending_cache_seconds` old, as calls did
//! while another connection refreshed) and starts a dynamic background worker that aggregates
//! the window again under the caller's role, search_path, row security, custom settings, time
//! zone and half-life, then writes the result where every connection finds it. Without this, one call
//! per expiry paid the whole aggregation (~0.5 s at 600K interactions in the window).
//!
//! The worker writes only under the key it computes itself from what it read (the served
//! version, its options, the settings it was given), so a result is always filed under what it
//! was computed from. It waits for a connection that is refreshing in place (the advisory
//! lock, at most `lock_timeout` 60 s) and aggregates only if that one shared nothing fresh.
//! When no worker can be started (no free `max_worker_processes` slot, a role that cannot log
//! in), the call refreshes in place as before. A transaction that has written starts one too:
//! the worker's transaction sees committed rows only.
use super::trending::{refresh_window, Request, KIND};
use crate::error::Result;
use crate::store::filecache;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

/// The worker's entry point (started by `trending::request_refresh`; `bgw_extra` names the request file).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_recsys_trending_worker(_arg: pg_sys::Datum) {
    // SIGTERM ends the worker (PostgreSQL's bgworker_die), SIGINT cancels its statement.
    // SAFETY: called once, at the start of the worker process.
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    let name = BackgroundWorker::get_extra().to_string();
    if !name.starts_with(KIND) || name.contains('/') {
        return;
    }
    let file = filecache::dir().join(&name);
    let Some(req) = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<Request>(&b).ok()) else { return };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(req.db)), Some(pg_sys::Oid::from(req.role)));
    BackgroundWorker::transaction(|| {
        let t0 = std::time::Instant::now();
        // The request is removed only after a refresh: a skipped or failed one leaves it in
        // place, so calls go on serving the previous result and ask again only once it is
        // older than PENDING (no worker per call while, say, another connection refreshes or
        // the settings cannot be reproduced); past the stale limit a call refreshes in place.
        match Spi::connect(|client| refresh(client, &req)) {
            Ok(Some(n)) => {
                let _ = std::fs::remove_file(&file);
                debug1!("pg_recsys: trending refreshed in the background: {n} rows in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3)
            }
            Ok(None) => debug1!("pg_recsys: background trending refresh skipped (the served model, its options or another refresh changed the picture)"),
            // Logged as this worker's ERROR.
            Err(e) => e.raise(),
        }
    });
}

/// Recomputes the requested result with the requester's settings; Some(rows written), or None
/// when the key computed here differs (another version served since, other settings) or
/// another connection is refreshing.
fn refresh(client: &pgrx::spi::SpiClient<'_>, req: &Request) -> Result<Option<usize>> {
    let settings = [
        ("search_path", req.search_path.clone()),
        ("row_security", if req.row_security { "on" } else { "off" }.to_string()),
        ("TimeZone", req.timezone.clone()),
        ("recsys.trending_half_life_hours", req.half_life_hours.to_string()),
        // Waiting for a connection that is refreshing in place: not for ever.
        ("lock_timeout", "60s".to_string()),
        // One process: parallel workers would take the cores the serving backends need while
        // they serve the previous result (on 2 cores, p99 of a 1-client feed 3.7 -> 5.2 ms).
        ("max_parallel_workers_per_gather", "0".to_string()),
    ];
    for (name, value) in settings {
        // Local to the worker's transaction.
        crate::store::one::<String>(client, "SELECT pg_catalog.set_config($1, $2, true)", &[name.into(), value.into()])?;
    }
    // The requester's custom settings (a tenant a policy reads), those that differ here: a
    // setting the role may not change is then already what the requester had (its role's or
    // database's), or the refresh fails and the request stays (calls refresh in place later).
    for (name, value) in &req.settings {
        crate::store::one::<String>(
            client,
            "SELECT pg_catalog.set_config($1, $2, true) WHERE pg_catalog.current_setting($1, true) IS DISTINCT FROM $2",
            &[name.as_str().into(), value.as_str().into()],
        )?;
    }
    let since = pgrx::datum::Interval::new(req.since.0, req.since.1, req.since.2).map_err(|e| crate::error::RecsysError::Spi(format!("{e:?}")))?;
    let (model, options) = match req.model_id {
        Some(id) => {
            let schema = crate::store::schema()?;
            let Some(name) =
                crate::store::one::<String>(client, &format!("SELECT name FROM {schema}._recsys_model WHERE id OPERATOR(pg_catalog.=) $1"), &[id.into()])?
            else {
                return Ok(None);
            };
            match crate::store::model::served_options(client, &name)? {
                Some((key, options)) => (Some(key), options),
                None => return Ok(None),
            }
        }
        None => (None, crate::options::TrainOptions::default()),
    };
    refresh_window(client, &options, model, since, req.ttl, &req.key)
}
