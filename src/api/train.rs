use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::options::{TableMap, TrainOptions, FOLLOWS, POSTS, USERS};
use crate::store::{self, model, source};
use pgrx::prelude::*;
use pgrx::JsonB;
use recsys_core::als::{self, Progress};
use recsys_core::csr::Csr;
use recsys_core::hybrid;
use recsys_core::CoreError;
use serde_json::json;
use std::collections::HashMap;
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

/// The item-item graph over the interaction matrix (EASE when the catalogue is small enough for
/// its dense solve within `budget`, else RP3beta; see the "graph" option), and its report.
fn build_graph(
    ui: &recsys_core::csr::Csr,
    o: &TrainOptions,
    budget: u64,
    pool: &rayon::ThreadPool,
) -> Result<(Option<recsys_core::graph::ItemGraph>, serde_json::Value)> {
    use recsys_core::hybrid::GraphKind;
    let g = &o.hybrid.graph;
    let Some(kind) = g.resolve(ui.cols, budget) else { return Ok((None, json!({"kind": "off"}))) };
    if kind == GraphKind::Ease && recsys_core::graph::ease_bytes(ui.cols) > budget {
        return Err(RecsysError::OverBudget { needed: recsys_core::graph::ease_bytes(ui.cols), budget, what: "the EASE item graph (dense solve)" });
    }
    let t = Instant::now();
    let graph = g.build(kind, ui, pool, &mut || {
        pgrx::check_for_interrupts!();
        Ok(())
    })?;
    let name = if kind == GraphKind::Ease { "ease" } else { "rp3beta" };
    let report = json!({
        "kind": name,
        "edges": graph.as_ref().map(|x| x.nnz()),
        "mb": graph.as_ref().map(|x| round3(x.bytes() as f64 / (1 << 20) as f64)),
        "seconds": round3(t.elapsed().as_secs_f64()),
    });
    notice!("recsys_train: item graph ({name}) built in {:.2}s", t.elapsed().as_secs_f64());
    Ok((graph, report))
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
            let schema = store::schema(client)?;
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

    /// One side of an imported factorisation: ids and row-major vectors.
    pub struct Factors {
        pub ids: Vec<i64>,
        pub dim: usize,
        pub data: Vec<f32>,
    }

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

/// The mapping of an optional table: the caller's, or the default name when such a table
/// exists. The choice is stored with the model, so serving reads the same tables.
pub(super) fn optional_map(client: &pgrx::spi::SpiClient<'_>, given: &Option<TableMap>, name: &str, spec: crate::options::Spec) -> Result<Option<TableMap>> {
    Ok(match given {
        Some(m) => Some(m.clone()),
        None if source::table_exists(client, name)? => Some(TableMap::defaults_for(name, spec)),
        None => None,
    })
}

/// The options with every table mapping checked and stored schema-qualified (so every session
/// serves the same tables whatever its search_path), the optional tables that exist used, and
/// the `visible` predicate parsed by the server; with the resolved tables.
fn resolve_mappings(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions) -> Result<(TrainOptions, crate::store::serving::Tables)> {
    let mut o = o.clone();
    o.posts = optional_map(client, &o.posts, "posts", POSTS)?;
    o.users = optional_map(client, &o.users, "users", USERS)?;
    o.follows = optional_map(client, &o.follows, "follows", FOLLOWS)?;
    // The same resolution serving does at load (interactions, posts, users, follows).
    let t = model::resolve_tables(client, &o)?;
    if let Some(v) = o.posts.as_ref().and_then(|m| m.visible.as_deref()) {
        source::check_visible(client, t.posts.as_ref().ok_or(RecsysError::NoContentModel)?, v)?;
    }
    o.interactions.table = t.interactions.table.clone();
    for (m, r) in [(&mut o.posts, &t.posts), (&mut o.users, &t.users), (&mut o.follows, &t.follows)] {
        if let (Some(m), Some(r)) = (m.as_mut(), r) {
            m.table = r.table.clone();
        }
    }
    Ok((o, t))
}

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
    let schema = store::schema(client)?;
    // Every mapping checked now, so a typo fails before minutes of work.
    let (o, crate::store::serving::Tables { interactions: table, posts: posts_t, users: users_t, follows: follows_t }) = resolve_mappings(client, o)?;
    // Serving reads these tables on every call: say now which reads would scan.
    let missing = source::missing_indexes(client, &source::per_call_reads(&table, posts_t.as_ref(), follows_t.as_ref()))?;
    for (stmt, why) in &missing {
        pgrx::warning!("recsys_train: serving will scan a table on every call ({why}); create the index: {stmt}");
    }
    let budget = gucs::maintenance_work_mem_bytes();
    let threads = o.threads.map(gucs::clamp_threads).unwrap_or_else(gucs::threads);
    let f = o.als.factors as u64;
    let copies = if o.tune { 2 } else { 1 };
    // The social snapshot sorts a copy of the rows (16 bytes each) while the triplets live.
    let social_rows = if follows_t.is_some() { 16 } else { 0 };
    if let Some(rows) = source::estimated_rows(client, &table)? {
        // Rough pre-check from the planner's row count: users and posts unknown yet, so
        // count only what grows with rows.
        let est = estimate_bytes(rows as u64, rows as u64, 0, 0, f, threads as u64) * copies + rows as u64 * social_rows;
        if est > budget {
            return Err(RecsysError::OverBudget { needed: est, budget, what: "recsys_train" });
        }
    }
    let mut loaded = source::read_interactions(client, &table, &o, budget)?;
    // Imported factors: the post index is the imported one; interactions on posts without
    // imported factors are left out (they still count for nothing else).
    let mut o = o;
    if let Some((_, items)) = &imported {
        let index = recsys_core::ids::IdIndex::positions(&items.ids);
        let keep: Vec<Option<u32>> = loaded.item_ids.iter().map(|&p| index.get(p)).collect();
        let mut w = 0;
        for k in 0..loaded.rows.len() {
            if let Some(i) = keep[loaded.cols[k] as usize] {
                loaded.rows[w] = loaded.rows[k];
                loaded.cols[w] = i;
                loaded.vals[w] = loaded.vals[k];
                if !loaded.days.is_empty() {
                    loaded.days[w] = loaded.days[k];
                }
                w += 1;
            }
        }
        loaded.rows.truncate(w);
        loaded.cols.truncate(w);
        loaded.vals.truncate(w);
        loaded.days.truncate(w.min(loaded.days.len()));
        loaded.item_ids = items.ids.clone();
        o.als.factors = items.dim;
        o.tune = false;
    }
    let o = o;
    let read_s = t0.elapsed().as_secs_f64();
    let (n_users, n_items) = (loaded.user_ids.len(), loaded.item_ids.len());
    let est = estimate_bytes(loaded.rows.len() as u64, loaded.rows.len() as u64, n_users as u64, n_items as u64, f, threads as u64) * copies
        + loaded.rows.len() as u64 * social_rows;
    if est > budget {
        return Err(RecsysError::OverBudget { needed: est, budget, what: "recsys_train" });
    }
    let ui = Csr::from_triplets(n_users, n_items, &loaded.rows, &loaded.cols, &loaded.vals);
    if ui.nnz() == 0 {
        return Err(CoreError::EmptyInput.into());
    }
    // Trending popularity: engagement decayed by age (relative to the newest interaction).
    let h = &o.hybrid;
    let days = |k: usize| loaded.days.get(k).copied().unwrap_or(f32::NAN);
    let mut popularity = hybrid::trending(n_items, loaded.cols.iter().enumerate().map(|(k, &i)| (i, days(k))), h.popularity_half_life_days);
    // Followers per followed user (degree damping); the followees' engagement itself is read
    // per request, so a like a second ago counts.
    let followers = match &follows_t {
        Some(t) => source::read_follower_counts(client, t, budget)?,
        None => vec![],
    };
    pgrx::check_for_interrupts!();
    // Kept for tuning only (a second copy of the triplets).
    let events: Option<Vec<(u32, hybrid::Event)>> = o
        .tune
        .then(|| (0..loaded.rows.len()).map(|k| (loaded.rows[k], hybrid::Event { item: loaded.cols[k], weight: loaded.vals[k], day: days(k) })).collect());
    drop((loaded.rows, loaded.cols, loaded.vals, loaded.days));
    pgrx::check_for_interrupts!();
    let pool = als::pool(threads, Some(block_signals))?;
    let t1 = Instant::now();
    crate::progress::phase(if imported.is_some() { "importing factors" } else { "als" });
    let (mut m, stats) = match imported {
        None => als::train(&ui, &o.als, &pool, &mut TrainProgress { iterations: o.als.iterations, quiet: false })?,
        Some((users, items)) => {
            let f = items.dim;
            let uindex = recsys_core::ids::IdIndex::positions(&users.ids);
            let mut uf = vec![0f32; n_users * f];
            for (u, id) in loaded.user_ids.iter().enumerate() {
                if let Some(k) = uindex.get(*id).map(|k| k as usize) {
                    uf[u * f..(u + 1) * f].copy_from_slice(&users.data[k * f..(k + 1) * f]);
                }
            }
            (als::AlsModel { factors: f, users: n_users, items: n_items, user_factors: uf, item_factors: items.data }, vec![])
        }
    };
    let train_s = t1.elapsed().as_secs_f64();
    crate::progress::phase("graph");
    let (graph, graph_report) = build_graph(&ui, &o, budget, &pool)?;
    // Content model over every post, interactions or not (skipped when there is no posts table).
    let t_content = Instant::now();
    crate::progress::phase("content");
    let content = posts_t.as_ref().map(|t| read_content(client, t, budget)).transpose()?;
    // Posts with text but no interactions get factors from their content neighbours, so a new
    // post can be recommended before anyone has seen it.
    let mut item_ids = loaded.item_ids;
    let mut placed = 0usize;
    let mut to_item: Vec<Option<u32>> = vec![];
    if let Some((text, tfidf, _, _)) = &content {
        let index = recsys_core::ids::IdIndex::positions(&item_ids);
        to_item = text.ids.iter().map(|&p| index.get(p)).collect();
        let new = pool.install(|| recsys_core::tfidf::place_by_content(tfidf, &to_item, &m.item_factors, m.factors, recsys_core::tfidf::PLACEMENT_NEIGHBOURS));
        pgrx::check_for_interrupts!();
        placed = new.len();
        for (d, v) in new {
            to_item[d] = Some(item_ids.len() as u32);
            item_ids.push(text.ids[d]);
            m.item_factors.extend_from_slice(&v);
            popularity.push(0.0);
        }
        m.items = item_ids.len();
    }
    let n_all = item_ids.len();
    // Per item: creation day and owner, from the posts table.
    let mut created = vec![f32::NAN; n_all];
    let mut owner: Vec<Option<i64>> = vec![None; n_all];
    if let Some((text, _, _, _)) = &content {
        for (d, i) in to_item.iter().enumerate() {
            if let Some(i) = i {
                created[*i as usize] = text.created[d];
                owner[*i as usize] = text.owners[d];
            }
        }
    }
    let freshness = hybrid::freshness(&created, h.freshness_half_life_days);
    let newest_day = hybrid::newest_day(&created);
    let gram = als::gram(&m.item_factors, m.factors, o.als.regularization, &pool);
    let content_s = t_content.elapsed().as_secs_f64();
    // Demographic segments over the users with interactions.
    let t_social = Instant::now();
    crate::progress::phase("social");
    let user_keys = match &users_t {
        Some(t) => Some(source::read_user_keys(client, t, budget)?),
        None => None,
    };
    let segments = user_keys.as_ref().map(|(dict, by_id)| {
        let keys: Vec<[u32; 3]> = loaded.user_ids.iter().map(|u| by_id.get(u).copied().unwrap_or([0; 3])).collect();
        hybrid::Segments::build(dict, &keys, &ui)
    });
    let social_s = t_social.elapsed().as_secs_f64();
    // Fusion weights: the options', or tuned on a seeded holdout of this very data.
    let mut o = o;
    let mut tuned = serde_json::Value::Null;
    if let Some(events) = events {
        let t_tune = Instant::now();
        crate::progress::phase("tuning");
        let follows = match &follows_t {
            Some(t) => source::read_follows(client, t, budget)?,
            None => vec![],
        };
        let world = tuning_world(&loaded.user_ids, n_all, events, &follows, &owner, user_keys.as_ref(), content.as_ref().map(|c| (&c.1, &to_item)), created);
        drop(follows);
        pgrx::check_for_interrupts!();
        let (weights, report) = tune(&world, &o, &pool, t_tune)?;
        o.hybrid.weights = weights;
        tuned = report;
        pgrx::check_for_interrupts!();
    }
    // Explicit feedback: a rating model beside the ranking model, over the same post index.
    let mut rating_report = serde_json::Value::Null;
    let rating = if o.explicit {
        let (r, report) = rating_model(client, &table, &o, threads, budget, &loaded.user_ids, &item_ids[..n_items])?;
        rating_report = report;
        Some(r)
    } else {
        None
    };
    drop(pool);
    crate::progress::phase("saving");
    let t2 = Instant::now();
    let mut report = json!({
        "users": n_users,
        "posts": n_items,
        "interactions": loaded.read,
        "skipped_rows": loaded.skipped,
        "nonzeros": ui.nnz(),
        "factors": m.factors,
        "iterations": stats.len(),
        "loss": stats.iter().map(|s| s.loss).collect::<Vec<_>>(),
        "threads": threads,
        "memory_estimate_mb": est.div_ceil(1 << 20),
        "content_posts": content.as_ref().map(|c| c.0.ids.len()),
        "content_terms": content.as_ref().map(|c| c.1.vocab.len()),
        "placed_by_content": placed,
        "segments": segments.as_ref().map(|s| s.lists.len()),
        "followed_users": followers.len(),
        "fusion": o.hybrid.weights,
        "tuned": tuned,
        "rating_model": rating_report,
        "graph": graph_report,
        "missing_indexes": missing.iter().map(|(stmt, _)| stmt.as_str()).collect::<Vec<_>>(),
    });
    let owner_ids: Vec<i64> = owner.iter().map(|x| x.unwrap_or(i64::MIN)).collect();
    let new = model::NewModel {
        options: &o,
        user_ids: &loaded.user_ids,
        item_ids: &item_ids,
        user_factors: &m.user_factors,
        item_factors: &m.item_factors,
        item_popularity: &popularity,
        gram: &gram,
        content: content.as_ref().map(|(t, tf, _, _)| (t.ids.as_slice(), tf)),
        attrs: content.as_ref().map(|(_, _, codes, dict)| (codes.as_slice(), dict.as_slice())),
        interacted_items: n_items,
        freshness: &freshness,
        newest_day,
        owners: if owner.iter().any(|x| x.is_some()) { &owner_ids } else { &[] },
        segments: segments.as_ref(),
        followers: &followers,
        rating: rating.as_ref().map(|(m, k)| (m, k.as_ref())),
        graph: graph.as_ref(),
    };
    let id = model::save(client, &schema, &new, report.clone(), gucs::keep_models())?;
    report["model_id"] = json!(id);
    report["seconds"] = json!({
        "read": round3(read_s),
        "train": round3(train_s),
        "content": round3(content_s),
        "social": round3(social_s),
        "save": round3(t2.elapsed().as_secs_f64()),
        "total": round3(t0.elapsed().as_secs_f64()),
    });
    model::update_report(client, &schema, id, report.clone())?;
    Ok(report)
}

/// Fusion weights tuned on seeded holdouts of the training data (kept only when they do at
/// least as well as the options' on a split the search never saw), and the report.
fn tune(
    world: &recsys_core::world::World,
    o: &TrainOptions,
    pool: &rayon::ThreadPool,
    t0: Instant,
) -> Result<(recsys_core::hybrid::Weights, serde_json::Value)> {
    let cfg = recsys_core::world::EvalConfig { cold_fraction: 0.1, seed: o.als.seed, ..Default::default() };
    notice!("recsys_train: tuning fusion weights on a seeded holdout ({} users)", cfg.max_users);
    // Cancel and statement_timeout reach the tuning splits too (checks between blocks).
    let r = recsys_core::tuning::tune_checked(world, &o.als, &o.hybrid, &cfg, &o.hybrid.weights, pool, &mut TrainProgress { iterations: 0, quiet: true })?;
    // ndcg_at_10 is the chosen weights' NDCG on the split the tuner never saw (what
    // recsys_models shows as holdout_ndcg and recsys_deploy 'best' ranks by).
    let report = json!({
        "weights": r.weights,
        "kept": if r.kept_tuned { "tuned" } else { "start" },
        "ndcg_at_10": round3(r.holdout_ndcg),
        "ndcg_at_10_start": round3(r.holdout_ndcg_start),
        "ndcg_at_10_tuned": round3(r.holdout_ndcg_tuned),
        "ndcg_at_10_als_only": round3(r.holdout_ndcg_als_only),
        "tuning_split": {"ndcg_at_10_start": round3(r.tuning_ndcg_start), "ndcg_at_10_tuned": round3(r.tuning_ndcg_tuned)},
        "users": r.users,
        "seconds": round3(t0.elapsed().as_secs_f64()),
    });
    Ok((r.weights, report))
}

/// Explicit feedback: the rating model beside the ranking model, over the same post index
/// (`item_ids`: the posts trained from interactions), and its report.
fn rating_model(
    client: &pgrx::spi::SpiClient<'_>,
    table: &source::Resolved,
    o: &TrainOptions,
    threads: usize,
    budget: u64,
    user_ids: &[i64],
    item_ids: &[i64],
) -> Result<(crate::store::serving::RatingParts, serde_json::Value)> {
    let t_r = Instant::now();
    crate::progress::phase("rating model");
    let rows = source::read_ratings(client, table, o.rating_kind.as_deref(), budget)?;
    let (n_users, n_items) = (user_ids.len(), item_ids.len());
    let users = recsys_core::ids::IdIndex::positions(user_ids);
    let items = recsys_core::ids::IdIndex::positions(item_ids);
    // One rating per (user, post): the mean of its rows.
    let known = rows.into_iter().filter_map(|(u, p, v)| Some((users.get(u)?, items.get(p)?, v)));
    let ratings = recsys_core::explicit::mean_ratings(n_users, n_items, known).ok_or_else(|| RecsysError::InvalidArgument {
        message: "feedback \"explicit\" found no ratings".into(),
        hint: format!(
            "ratings are rows of kind {} with a non-NULL value; set \"rating_kind\" (null = every row with a value)",
            o.rating_kind.as_deref().map(|k| format!("'{k}'")).unwrap_or_else(|| "any".into())
        ),
    })?;
    let pool = als::pool(threads, Some(block_signals))?;
    let model = recsys_core::explicit::train(&ratings, &o.rating, &pool, &mut || {
        pgrx::check_for_interrupts!();
        Ok(())
    })?;
    let knn = (o.rating.knn_weight > 0.0).then(|| recsys_core::explicit::Knn::fit(&ratings, o.rating.knn_k, &pool));
    pgrx::check_for_interrupts!();
    let report = json!({
        "ratings": ratings.nnz(),
        "mean": model.mu,
        "range": [model.min, model.max],
        "seconds": round3(t_r.elapsed().as_secs_f64()),
    });
    Ok(((model, knn), report))
}

/// The posts' text, TF-IDF and dictionary-encoded filter attributes (code 0 = NULL).
fn read_content(
    client: &pgrx::spi::SpiClient<'_>,
    t: &source::Resolved,
    budget: u64,
) -> Result<(source::PostText, recsys_core::tfidf::Tfidf, Vec<u32>, Vec<String>)> {
    let text = source::read_posts(client, t, budget)?;
    let est = text.token_count * 40 + text.ids.len() as u64 * 64;
    if est > budget {
        return Err(RecsysError::OverBudget { needed: est, budget, what: "the content model" });
    }
    let tfidf = recsys_core::tfidf::Tfidf::fit(&text.tokens);
    let mut dict = recsys_core::ids::Dict::default();
    let codes: Vec<u32> = text.attrs.iter().flatten().map(|v| dict.code(v.as_deref())).collect();
    Ok((text, tfidf, codes, dict.into_values()))
}

/// The training data as a [`recsys_core::world::World`] for tuning. Users who only follow (no
/// interactions) get indices after the model's users.
#[allow(clippy::too_many_arguments)]
pub(super) fn tuning_world(
    user_ids: &[i64],
    n_items: usize,
    events: Vec<(u32, hybrid::Event)>,
    follows: &[(i64, i64)],
    owner: &[Option<i64>],
    keys: Option<&(Vec<String>, HashMap<i64, [u32; 3]>)>,
    content: Option<(&recsys_core::tfidf::Tfidf, &Vec<Option<u32>>)>,
    created: Vec<f32>,
) -> recsys_core::world::World {
    let mut index: HashMap<i64, u32> = user_ids.iter().enumerate().map(|(i, u)| (*u, i as u32)).collect();
    let mut ids = user_ids.to_vec();
    let mut idx = |u: i64| {
        let next = ids.len() as u32;
        *index.entry(u).or_insert_with(|| {
            ids.push(u);
            next
        })
    };
    let pairs: Vec<(u32, u32)> = follows.iter().map(|&(a, b)| (idx(a), idx(b))).collect();
    let owners: Vec<Option<u32>> = owner.iter().map(|o| o.and_then(|u| index.get(&u).copied())).collect();
    let (dict, codes) = match keys {
        Some((dict, by_id)) => (dict.clone(), ids.iter().map(|u| by_id.get(u).copied().unwrap_or([0; 3])).collect()),
        None => (vec![String::new()], vec![[0u32; 3]; ids.len()]),
    };
    let (tfidf, to_item) = match content {
        Some((t, m)) => (Some(t.clone()), m.clone()),
        None => (None, vec![]),
    };
    recsys_core::world::World::new(ids.len(), n_items, events, &pairs, &owners, codes, dict, tfidf, to_item, created)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
