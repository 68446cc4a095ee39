use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::options::{TrainOptions, FOLLOWS, INTERACTIONS, POSTS, USERS};
use crate::store::{self, model, source};
use pgrx::prelude::*;
use pgrx::JsonB;
use recsys_core::als::{self, Progress};
use recsys_core::csr::Csr;
use recsys_core::CoreError;
use serde_json::json;
use std::time::Instant;

/// Between blocks of ALS work, on the backend thread: honour cancel/statement_timeout and
/// report progress.
struct Backend {
    iterations: usize,
}

impl Progress for Backend {
    fn check(&mut self) -> std::result::Result<(), CoreError> {
        // Raises the pending ERROR (query canceled, statement timeout) if there is one.
        pgrx::check_for_interrupts!();
        Ok(())
    }
    fn iteration(&mut self, it: usize, loss: Option<f64>, seconds: f64) {
        match loss {
            Some(l) => notice!("recsys_train: iteration {it}/{} loss {l:.6} elapsed {seconds:.2}s", self.iterations),
            None => notice!("recsys_train: iteration {it}/{} elapsed {seconds:.2}s", self.iterations),
        }
    }
}

/// Runs on each worker thread as it starts: only the backend thread may take Postgres's
/// signals (its handlers set flags the backend thread checks).
fn block_signals() {
    // SAFETY: plain libc calls on the current thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Content neighbours averaged to place a post that has no interactions.
const PLACEMENT_NEIGHBOURS: usize = 10;

/// Bytes a train of this shape holds at its peak (documented in the README).
pub fn estimate_bytes(rows: u64, nnz: u64, users: u64, items: u64, factors: u64, threads: u64) -> u64 {
    rows * 20 + nnz * 16 + (users + items) * (factors * 4 + source::BYTES_PER_ID) + factors * factors * 4 * (threads + 4)
}

#[pg_extern(volatile)]
fn recsys_train(options: default!(Option<JsonB>, "'{}'")) -> JsonB {
    let opts = options.map(|j| j.0).unwrap_or_else(|| json!({}));
    let opts = TrainOptions::parse(&opts).or_raise();
    JsonB(Spi::connect_mut(|client| train(client, &opts)).or_raise())
}

fn train(client: &mut pgrx::spi::SpiClient<'_>, o: &TrainOptions) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    // One train at a time per database: a second caller waits here, then trains on fresh data.
    client.update("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_recsys'), 1)", None, &[])?;
    let schema = store::schema(client)?;
    let table = source::resolve(client, "interactions", &o.interactions, INTERACTIONS)?;
    // Validate the other mappings now, so a typo fails before minutes of work.
    for (name, map, spec) in [("posts", &o.posts, POSTS), ("users", &o.users, USERS), ("follows", &o.follows, FOLLOWS)] {
        if let Some(m) = map {
            source::resolve(client, name, m, spec)?;
        }
    }
    let budget = gucs::maintenance_work_mem_bytes();
    let threads = o.threads.unwrap_or_else(gucs::threads);
    let f = o.als.factors as u64;
    if let Some(rows) = source::estimated_rows(client, &table)? {
        // Rough pre-check from the planner's row count: users and posts unknown yet, so
        // count only what grows with rows.
        let est = estimate_bytes(rows as u64, rows as u64, 0, 0, f, threads as u64);
        if est > budget {
            return Err(RecsysError::OverBudget { needed: est, budget, what: "recsys_train" });
        }
    }
    let loaded = source::read_interactions(client, &table, o, budget)?;
    let read_s = t0.elapsed().as_secs_f64();
    let (n_users, n_items) = (loaded.user_ids.len(), loaded.item_ids.len());
    let est = estimate_bytes(loaded.rows.len() as u64, loaded.rows.len() as u64, n_users as u64, n_items as u64, f, threads as u64);
    if est > budget {
        return Err(RecsysError::OverBudget { needed: est, budget, what: "recsys_train" });
    }
    let ui = Csr::from_triplets(n_users, n_items, &loaded.rows, &loaded.cols, &loaded.vals);
    drop((loaded.rows, loaded.cols, loaded.vals));
    if ui.nnz() == 0 {
        return Err(CoreError::EmptyInput.into());
    }
    pgrx::check_for_interrupts!();
    let pool = als::pool(threads, Some(block_signals))?;
    let t1 = Instant::now();
    let (mut m, stats) = als::train(&ui, &o.als, &pool, &mut Backend { iterations: o.als.iterations })?;
    let train_s = t1.elapsed().as_secs_f64();
    let mut popularity = vec![0f32; n_items];
    for &i in &ui.indices {
        popularity[i as usize] += 1.0;
    }
    // Content model over every post, interactions or not (skipped when there is no posts table).
    let t_content = Instant::now();
    let posts_map = match &o.posts {
        Some(m) => Some(m.clone()),
        None if source::table_exists(client, "posts")? => Some(crate::options::TableMap::defaults_for("posts", POSTS)),
        None => None,
    };
    let content = match posts_map {
        None => None,
        Some(map) => {
            let t = source::resolve(client, "posts", &map, POSTS)?;
            let text = source::read_posts(client, &t, budget)?;
            let est = text.token_count * 40 + text.ids.len() as u64 * 64;
            if est > budget {
                return Err(RecsysError::OverBudget { needed: est, budget, what: "the content model" });
            }
            let tfidf = recsys_core::tfidf::Tfidf::fit(&text.tokens);
            // Dictionary-encode the filter attributes: code 0 is NULL.
            let mut dict: Vec<String> = vec![String::new()];
            let mut lookup: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
            let mut codes = Vec::with_capacity(text.attrs.len() * 3);
            for a in &text.attrs {
                for v in a {
                    codes.push(match v {
                        None => 0,
                        Some(v) => *lookup.entry(v.clone()).or_insert_with(|| {
                            dict.push(v.clone());
                            dict.len() as u32 - 1
                        }),
                    });
                }
            }
            Some((text.ids, tfidf, codes, dict))
        }
    };
    // Posts with text but no interactions get factors from their content neighbours, so a new
    // post can be recommended before anyone has seen it.
    let mut item_ids = loaded.item_ids;
    let mut placed = 0usize;
    if let Some((ids, tfidf, _, _)) = &content {
        let index: std::collections::HashMap<i64, u32> = item_ids.iter().enumerate().map(|(i, p)| (*p, i as u32)).collect();
        let to_item: Vec<Option<u32>> = ids.iter().map(|p| index.get(p).copied()).collect();
        let new = pool.install(|| recsys_core::tfidf::place_by_content(tfidf, &to_item, &m.item_factors, m.factors, PLACEMENT_NEIGHBOURS));
        pgrx::check_for_interrupts!();
        placed = new.len();
        for (d, v) in new {
            item_ids.push(ids[d]);
            m.item_factors.extend_from_slice(&v);
            popularity.push(0.0);
        }
        m.items = item_ids.len();
    }
    let gram = als::gram(&m.item_factors, m.factors, o.als.regularization, &pool);
    drop(pool);
    let content_s = t_content.elapsed().as_secs_f64();
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
        "content_posts": content.as_ref().map(|c| c.0.len()),
        "content_terms": content.as_ref().map(|c| c.1.vocab.len()),
        "placed_by_content": placed,
    });
    let new = model::NewModel {
        options: o,
        user_ids: &loaded.user_ids,
        item_ids: &item_ids,
        user_factors: &m.user_factors,
        item_factors: &m.item_factors,
        item_popularity: &popularity,
        gram: &gram,
        content: content.as_ref().map(|(ids, t, _, _)| (ids.as_slice(), t)),
        attrs: content.as_ref().map(|(_, _, codes, dict)| (codes.as_slice(), dict.as_slice())),
    };
    let id = model::save(client, &schema, &new, report.clone(), gucs::keep_models())?;
    report["model_id"] = json!(id);
    report["seconds"] = json!({
        "read": round3(read_s),
        "train": round3(train_s),
        "content": round3(content_s),
        "save": round3(t2.elapsed().as_secs_f64()),
        "total": round3(t0.elapsed().as_secs_f64()),
    });
    model::update_report(client, &schema, id, report.clone())?;
    Ok(report)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
