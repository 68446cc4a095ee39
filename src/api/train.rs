use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::options::TrainOptions;
use crate::store::serving::Tables;
use crate::store::snapshot::{self, Purpose};
use crate::store::{self, model, source};
use pgrx::prelude::*;
use pgrx::JsonB;
use recsys_core::als::{self, Progress};
use recsys_core::build::{self, Observer};
use recsys_core::CoreError;
use serde_json::json;
use std::time::Instant;

/// Between blocks of ALS work, on the backend thread: honour cancel/statement_timeout and
/// report progress.
pub(super) struct TrainProgress {
    pub(super) iterations: usize,
    /// No per-iteration NOTICE (evaluation and tuning splits).
    pub(super) quiet: bool,
}

impl Progress for TrainProgress {
    fn check(&mut self) -> std::result::Result<(), CoreError> {
        // Raises the pending ERROR (query canceled, statement timeout) if there is one.
        pgrx::check_for_interrupts!();
        Ok(())
    }
    fn iteration(&mut self, it: usize, loss: Option<f64>, seconds: f64) {
        if self.quiet {
            return;
        }
        crate::progress::iteration(it, self.iterations);
        match loss {
            Some(l) => notice!("recsys_train: iteration {it}/{} loss {l:.6} elapsed {seconds:.2}s", self.iterations),
            None => notice!("recsys_train: iteration {it}/{} elapsed {seconds:.2}s", self.iterations),
        }
    }
}

impl Observer for TrainProgress {
    fn phase(&mut self, name: &'static str) {
        crate::progress::phase(name);
    }
    fn notice(&mut self, message: &str) {
        if !self.quiet {
            notice!("recsys_train: {message}");
        }
    }
}

/// Runs on each worker thread as it starts: only the backend thread may take Postgres's
/// signals (its handlers set flags the backend thread checks).
pub(super) fn block_signals() {
    // SAFETY: plain libc calls on the current thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Bytes a train of this shape holds at its peak (documented in the README).
pub fn estimate_bytes(rows: u64, nnz: u64, users: u64, items: u64, factors: u64, threads: u64) -> u64 {
    rows * 20 + nnz * 16 + (users + items) * (factors * 4 + source::BYTES_PER_ID) + factors * factors * 4 * (threads + 4)
}

#[pg_extern(volatile)]
fn recsys_train(options: default!(Option<JsonB>, "'{}'")) -> JsonB {
    let opts = options.map(|j| j.0).unwrap_or_else(|| json!({}));
    let opts = TrainOptions::parse(&opts).map_err(RecsysError::from).or_raise();
    opts.notices.iter().for_each(|n| notice!("{n}"));
    JsonB(Spi::connect_mut(|client| train(client, &opts, None)).or_raise())
}

/// Rebuilds everything of the served model except its factors, from the tables as they are now:
/// content (new and changed posts, placed by content), attributes, owners, freshness, follower
/// counts, demographic segments and popularity. Seconds where a train takes minutes: no ALS.
#[pg_extern(volatile)]
fn recsys_refresh(model: default!(Option<&str>, "'default'")) -> JsonB {
    JsonB(
        Spi::connect_mut(|client| {
            let m = model::current(client, model.unwrap_or(crate::options::DEFAULT_MODEL))?;
            let schema = store::schema()?;
            let f = m.factors;
            let (uids, ufs, iids, ifs) = model::read_factors(client, &schema, m.key.id, f, m.interacted_items)?;
            let users = import::Factors { ids: uids, dim: f, data: ufs };
            let items = import::Factors { ids: iids, dim: f, data: ifs };
            let mut opts = m.options.clone();
            // The factors stay what they were; tuning would need a retrain. The refreshed
            // version replaces the served one.
            opts.tune = false;
            opts.deploy = true;
            let from = m.key.id;
            drop(m);
            let mut report = train(client, &opts, Some((users, items)))?;
            report["refreshed_from"] = json!(from);
            let id = report["model_id"].as_i64().unwrap_or(0);
            model::update_report(client, &schema, id, report.clone())?;
            Ok(report)
        })
        .or_raise(),
    )
}

/// Factors trained elsewhere (Spark MLlib ALS, implicit, ...) served with everything else.
/// SQL: recsys_import_factors(user_factors regclass, item_factors regclass, options jsonb), a
/// wrapper in sql/finalize.sql (pgrx has no regclass argument type).
#[pg_extern(volatile, name = "_recsys_import_factors")]
fn recsys_import_factors(user_factors: pgrx::pg_sys::Oid, item_factors: pgrx::pg_sys::Oid, options: default!(Option<JsonB>, "'{}'")) -> JsonB {
    let opts = options.map(|j| j.0).unwrap_or_else(|| json!({}));
    let opts = TrainOptions::parse(&opts).map_err(RecsysError::from).or_raise();
    opts.notices.iter().for_each(|n| notice!("{n}"));
    JsonB(
        Spi::connect_mut(|client| {
            let users = import::read(client, user_factors, "user_factors")?;
            let items = import::read(client, item_factors, "item_factors")?;
            if users.dim != items.dim {
                return Err(RecsysError::InvalidArgument {
                    message: format!("user factors have {} dimensions, item factors {}", users.dim, items.dim),
                    hint: "import the two sides of one factorisation".into(),
                });
            }
            train(client, &opts, Some((users, items)))
        })
        .or_raise(),
    )
}

mod import {
    use crate::error::{RecsysError, Result};
    use pgrx::spi::SpiClient;

    pub use recsys_core::build::Factors;

    /// Reads (id, features) from a table given as regclass: the first integer column is the id,
    /// the first real[], double precision[] or pgvector `vector` column the features. Every row must have the same
    /// number of finite features and a distinct, non-NULL id.
    pub fn read(client: &SpiClient<'_>, table: pgrx::pg_sys::Oid, arg: &'static str) -> Result<Factors> {
        let cols = |types: &str| -> Result<Option<String>> {
            crate::store::one::<String>(
                client,
                &format!(
                    "SELECT pg_catalog.quote_ident(a.attname::text) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND t.typname IN ({types}) ORDER BY a.attnum LIMIT 1"
                ),
                &[table.into()],
            )
        };
        let name = crate::store::one::<String>(client, "SELECT $1::pg_catalog.regclass::text", &[table.into()])?.unwrap_or_default();
        let bad = |what: String| RecsysError::InvalidArgument {
            message: format!("{arg} {name}: {what}"),
            hint: format!("{arg} must be a table of (id bigint, features real[] or vector), e.g. Spark ALS output"),
        };
        let id = cols("'int2', 'int4', 'int8'")?.ok_or_else(|| bad("has no integer id column".into()))?;
        // pgvector's `vector` casts to real[] (its own cast), so its columns import as they are.
        let features = cols("'_float4', '_float8', 'vector'")?.ok_or_else(|| bad("has no real[], double precision[] or vector features column".into()))?;
        let query = format!("SELECT ({id})::int8, ({features})::float4[] FROM {name}");
        let mut out = Factors { ids: vec![], dim: 0, data: vec![] };
        let mut seen = std::collections::HashSet::new();
        crate::store::source::for_each_batch(client, &query, &[], 10_000, |batch| {
            for row in batch {
                let id = row.get::<i64>(1)?.ok_or_else(|| bad("a row has a NULL id".into()))?;
                let v: Vec<Option<f32>> = row.get::<Vec<Option<f32>>>(2)?.ok_or_else(|| bad(format!("id {id} has NULL features")))?;
                if out.ids.is_empty() {
                    out.dim = v.len();
                    if out.dim == 0 || out.dim > 1024 {
                        return Err(bad(format!("id {id} has {} features (1 to 1024 allowed)", out.dim)));
                    }
                } else if v.len() != out.dim {
                    return Err(bad(format!("id {id} has {} features, the first row {}", v.len(), out.dim)));
                }
                if !seen.insert(id) {
                    return Err(bad(format!("id {id} appears twice")));
                }
                for x in v {
                    match x {
                        Some(x) if x.is_finite() => out.data.push(x),
                        _ => return Err(bad(format!("id {id} has a NULL, NaN or infinite feature"))),
                    }
                }
                out.ids.push(id);
            }
            Ok(())
        })?;
        if out.ids.is_empty() {
            return Err(bad("is empty".into()));
        }
        Ok(out)
    }
}

/// Warns about each per-call read of serving that would scan a table (no index), and returns
/// the `CREATE INDEX` statements for the report.
fn warn_missing_indexes(client: &pgrx::spi::SpiClient<'_>, t: &Tables) -> Result<Vec<String>> {
    let missing = source::missing_indexes(client, &source::per_call_reads(&t.interactions, t.posts.as_ref(), t.follows.as_ref()))?;
    for (stmt, why) in &missing {
        pgrx::warning!("recsys_train: serving will scan a table on every call ({why}); create the index: {stmt}");
    }
    Ok(missing.into_iter().map(|(stmt, _)| stmt).collect())
}

/// The core's error for a train, with explicit mode's "no ratings" given its hint.
fn build_error(e: CoreError, o: &TrainOptions) -> RecsysError {
    match e {
        CoreError::NoRatings => RecsysError::InvalidArgument {
            message: "feedback \"explicit\" found no ratings".into(),
            hint: format!(
                "ratings are rows of kind {} with a non-NULL value; set \"rating_kind\" (null = every row with a value)",
                o.rating_kind.as_deref().map(|k| format!("'{k}'")).unwrap_or_else(|| "any".into())
            ),
        },
        e => e.into(),
    }
}

/// recsys_train: snapshot the tables, build the model in the core, save it. `imported` factors
/// (recsys_import_factors, recsys_refresh) replace ALS.
fn train(client: &mut pgrx::spi::SpiClient<'_>, o: &TrainOptions, imported: Option<(import::Factors, import::Factors)>) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    if store::one::<bool>(client, "SELECT pg_catalog.pg_is_in_recovery()", &[])?.unwrap_or(false) {
        return Err(RecsysError::ReadOnly { what: "recsys_train" });
    }
    // A READ ONLY transaction would fail only at the save, after the whole train: fail now.
    // SAFETY: reads a GUC variable of the backend, on the backend thread.
    if unsafe { pgrx::pg_sys::XactReadOnly } {
        return Err(RecsysError::ReadOnlyTransaction { what: "recsys_train" });
    }
    // Seen from other sessions in recsys_progress until this function returns (or raises).
    let _progress = crate::progress::Guard::start("waiting for another train");
    // One train at a time per database: a second caller waits here, then trains on fresh data.
    client.update("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_recsys'), 1)", None, &[])?;
    crate::progress::phase("reading");
    let schema = store::schema()?;
    let (mut o, tables) = snapshot::resolve(client, o)?;
    // Serving reads these tables on every call: say now which reads would scan.
    let missing = warn_missing_indexes(client, &tables)?;
    if let Some((_, items)) = &imported {
        o.als.factors = items.dim;
        o.tune = false;
    }
    let budget = gucs::maintenance_work_mem_bytes();
    let threads = o.threads.map(gucs::clamp_threads).unwrap_or_else(gucs::threads);
    // Peak bytes: the model, plus a second copy of the triplets when tuning, plus the social
    // snapshot's sorted copy of the rows (16 bytes each).
    let copies = if o.tune { 2 } else { 1 };
    let social_rows = if tables.follows.is_some() { 16 } else { 0 };
    let estimate =
        |rows: u64, users: u64, items: u64| estimate_bytes(rows, rows, users, items, o.als.factors as u64, threads as u64) * copies + rows * social_rows;
    if let Some(rows) = source::estimated_rows(client, &tables.interactions)? {
        // Rough pre-check from the planner's row count: users and posts unknown yet.
        let est = estimate(rows as u64, 0, 0);
        if est > budget {
            return Err(RecsysError::OverBudget { needed: est, budget, what: "recsys_train" });
        }
    }
    let mut est = 0;
    let mut data = snapshot::read(client, &o, &tables, budget, Purpose::Train, |l| {
        est = estimate(l.rows.len() as u64, l.user_ids.len() as u64, l.item_ids.len() as u64);
        if est > budget {
            return Err(RecsysError::OverBudget { needed: est, budget, what: "recsys_train" });
        }
        Ok(())
    })?;
    data.imported = imported;
    let read_s = t0.elapsed().as_secs_f64();
    let pool = als::pool(threads, Some(block_signals))?;
    let built = build::build(data, &o, budget, &pool, &mut TrainProgress { iterations: o.als.iterations, quiet: false }).map_err(|e| build_error(e, &o))?;
    drop(pool);
    o.hybrid.weights = built.weights;
    crate::progress::phase("saving");
    let t2 = Instant::now();
    let mut report = built.report.clone();
    report["threads"] = json!(threads);
    report["memory_estimate_mb"] = json!(est.div_ceil(1 << 20));
    report["missing_indexes"] = json!(missing);
    let id = model::save(client, &schema, &model::NewModel::from_built(&o, &built), report.clone(), gucs::keep_models())?;
    report["model_id"] = json!(id);
    let seconds = &mut report["seconds"];
    seconds["read"] = json!(round3(read_s));
    seconds["save"] = json!(round3(t2.elapsed().as_secs_f64()));
    seconds["total"] = json!(round3(t0.elapsed().as_secs_f64()));
    model::update_report(client, &schema, id, report.clone())?;
    Ok(report)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
