//! recsys_evaluate: offline evaluation inside the database. Reads the same tables as
//! recsys_train, splits in memory (seeded), trains on the training part and ranks with the
//! served scorer; it writes nothing and never touches the served model.
use crate::error::{OrRaise, RecsysError, Result};
use crate::gucs;
use crate::options::{int_in, num_in, object, TrainOptions, INTERACTIONS, TRAIN_KEYS};
use crate::store::snapshot::{self, Purpose};
use crate::store::source;
use pgrx::prelude::*;
use pgrx::JsonB;
use recsys_core::hybrid::{Weights, COMPONENTS};
use recsys_core::world::{EvalConfig, Outcome, World};
use serde_json::{Map, Value};
use std::collections::HashMap;

pub const EVAL_KEYS: &[&str] = &["k", "test_fraction", "folds", "min_value", "components", "cold_fraction", "max_users"];

/// recsys_evaluate's options: its own keys, the rest as for recsys_train.
pub struct EvalOptions {
    pub train: TrainOptions,
    pub cfg: EvalConfig,
    pub min_value: Option<f32>,
    pub components: Option<Vec<String>>,
}

fn all_keys() -> &'static [&'static str] {
    static KEYS: once_cell::sync::Lazy<Vec<&'static str>> = once_cell::sync::Lazy::new(|| EVAL_KEYS.iter().chain(TRAIN_KEYS).copied().collect());
    KEYS.as_slice()
}

impl EvalOptions {
    pub fn parse(v: &Value) -> Result<EvalOptions> {
        let obj = object(v)?;
        let mut rest = Map::new();
        let mut cfg = EvalConfig { max_users: 5_000, ..Default::default() };
        let (mut min_value, mut components) = (None, None);
        for (key, val) in obj {
            match key.as_str() {
                "k" => cfg.k = int_in(key, val, 1, 1000)? as usize,
                "test_fraction" => {
                    let f = num_in(key, val, 0.0, 1.0)?;
                    if f <= 0.0 || f >= 1.0 {
                        return Err(RecsysError::OptionType { key: key.clone(), expected: "a number strictly between 0 and 1".into(), got: val.to_string() });
                    }
                    cfg.test_fraction = f;
                }
                "folds" => cfg.folds = int_in(key, val, 2, 20)? as usize,
                "min_value" => min_value = Some(num_in(key, val, -1e9, 1e9)? as f32),
                "cold_fraction" => cfg.cold_fraction = num_in(key, val, 0.0, 0.9)?,
                "max_users" => cfg.max_users = int_in(key, val, 1, 10_000_000)? as usize,
                "components" => {
                    let list = val.as_array().filter(|a| !a.is_empty()).ok_or_else(|| RecsysError::OptionType {
                        key: key.clone(),
                        expected: format!("a non-empty array of {}", COMPONENTS.join(", ")),
                        got: val.to_string(),
                    })?;
                    let mut names = vec![];
                    for x in list {
                        match x.as_str().filter(|s| COMPONENTS.contains(s)) {
                            Some(s) => names.push(s.to_string()),
                            None => {
                                return Err(RecsysError::UnknownOption {
                                    key: format!("components: {x}"),
                                    valid: COMPONENTS.iter().map(|s| s.to_string()).collect(),
                                })
                            }
                        }
                    }
                    components = Some(names);
                }
                _ if TRAIN_KEYS.contains(&key.as_str()) => {
                    rest.insert(key.clone(), val.clone());
                }
                _ => return Err(RecsysError::UnknownOption { key: key.clone(), valid: all_keys().iter().map(|s| s.to_string()).collect() }),
            }
        }
        let train = TrainOptions::parse(&Value::Object(rest))?;
        train.notices.iter().for_each(|n| pgrx::notice!("{}", n.replace("recsys_train:", "recsys_evaluate:")));
        cfg.seed = train.als.seed;
        Ok(EvalOptions { train, cfg, min_value, components })
    }

    /// The fusion weights evaluated: the options' (or defaults), restricted to `components`.
    pub fn weights(&self) -> Weights {
        let mut w = self.train.hybrid.weights;
        if let Some(keep) = &self.components {
            for name in COMPONENTS {
                if !keep.iter().any(|k| k == name) {
                    *w.get_mut(name).expect("known component") = 0.0;
                }
            }
        }
        w
    }
}

/// The app's tables as a World, read the way recsys_train reads them.
fn load_world(client: &pgrx::spi::SpiClient<'_>, o: &TrainOptions, min_value: Option<f32>) -> Result<World> {
    let budget = gucs::maintenance_work_mem_bytes();
    let (o, tables) = snapshot::resolve(client, o)?;
    let data = snapshot::read(client, &o, &tables, budget, Purpose::Evaluate, |l| {
        // Two copies of the rows (events and the training split) plus the model.
        let (rows, users, items) = (l.rows.len() as u64, l.user_ids.len() as u64, l.item_ids.len() as u64);
        let est = super::train::estimate_bytes(rows, rows, users, items, o.als.factors as u64, 2) * 2;
        if est > budget {
            return Err(RecsysError::OverBudget { needed: est, budget, what: "recsys_evaluate" });
        }
        Ok(())
    })?;
    Ok(recsys_core::build::evaluation_world(data, min_value)?)
}

fn metric_rows(prefix: &str, k: usize, runs: &[Outcome]) -> Vec<(String, f64)> {
    let pick: [(&str, fn(&Outcome) -> f64); 5] =
        [("precision", |o| o.all.precision), ("recall", |o| o.all.recall), ("ndcg", |o| o.all.ndcg), ("map", |o| o.all.map), ("coverage", |o| o.coverage)];
    let mut out = vec![];
    for (name, f) in pick {
        let label = if name == "coverage" { format!("{prefix}coverage") } else { format!("{prefix}{name}@{k}") };
        let xs: Vec<f64> = runs.iter().map(f).collect();
        let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        out.push((label.clone(), mean));
        if xs.len() > 1 {
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
            out.push((format!("{label} stddev"), var.sqrt()));
        }
    }
    out
}

#[pg_extern(volatile)]
fn recsys_evaluate(options: default!(Option<JsonB>, "'{}'")) -> TableIterator<'static, (name!(metric, String), name!(value, f64))> {
    let opts = options.map(|j| j.0).unwrap_or_else(|| serde_json::json!({}));
    let o = EvalOptions::parse(&opts).or_raise();
    let rows = Spi::connect(|client| -> Result<Vec<(String, f64)>> {
        if o.train.explicit {
            return evaluate_ratings(client, &o);
        }
        let world = load_world(client, &o.train, o.min_value)?;
        let threads = o.train.threads.map(gucs::clamp_threads).unwrap_or_else(gucs::threads);
        let pool = recsys_core::als::pool(threads, Some(super::train::block_signals))?;
        let folds: Vec<usize> = if o.cfg.folds >= 2 { (0..o.cfg.folds).collect() } else { vec![0] };
        let weights = o.weights();
        let (mut model, mut baseline) = (vec![], vec![]);
        let mut users = 0usize;
        for fold in folds {
            pgrx::check_for_interrupts!();
            let cfg = EvalConfig { fold, ..o.cfg.clone() };
            let p = recsys_core::world::prepare_with(
                &world,
                &o.train.als,
                &o.train.hybrid,
                &cfg,
                &pool,
                &mut super::train::TrainProgress { iterations: 0, quiet: true },
            )?;
            users = p.warm_users + p.cold_users;
            model.push(p.evaluate(&weights));
            baseline.push(p.baseline());
        }
        let mut rows = vec![("users".to_string(), users as f64), ("folds".to_string(), model.len() as f64)];
        rows.extend(metric_rows("", o.cfg.k, &model));
        rows.extend(metric_rows("popularity ", o.cfg.k, &baseline));
        Ok(rows)
    })
    .or_raise();
    TableIterator::new(rows)
}

/// Explicit mode: k-fold (default 5) RMSE and MAE of the rating model, and of the baseline
/// μ + b_u + b_i, on the ratings recsys_train would use.
fn evaluate_ratings(client: &pgrx::spi::SpiClient<'_>, o: &EvalOptions) -> Result<Vec<(String, f64)>> {
    let budget = gucs::maintenance_work_mem_bytes();
    let t = &o.train;
    let table = source::resolve(client, "interactions", &t.interactions, INTERACTIONS)?;
    let rows = source::read_ratings(client, &table, t.rating_kind.as_deref(), budget)?;
    let (mut users, mut items): (HashMap<i64, u32>, HashMap<i64, u32>) = (HashMap::new(), HashMap::new());
    let mut entries = Vec::with_capacity(rows.len());
    for (u, p, v) in rows {
        if o.min_value.is_some_and(|m| v < m) {
            continue;
        }
        let n = users.len() as u32;
        let u = *users.entry(u).or_insert(n);
        let n = items.len() as u32;
        let i = *items.entry(p).or_insert(n);
        entries.push((u, i, v));
    }
    let ratings = recsys_core::explicit::mean_ratings(users.len(), items.len(), entries.into_iter()).ok_or(recsys_core::CoreError::EmptyInput)?;
    let threads = t.threads.map(gucs::clamp_threads).unwrap_or_else(gucs::threads);
    let pool = recsys_core::als::pool(threads, Some(super::train::block_signals))?;
    let folds = if o.cfg.folds >= 2 { o.cfg.folds } else { 5 };
    let mut opts = t.rating.clone();
    opts.seed = t.als.seed;
    let res = recsys_core::explicit::cross_validate(&ratings, &opts, folds, &pool)?;
    pgrx::check_for_interrupts!();
    let mut out = vec![("ratings".to_string(), ratings.nnz() as f64), ("folds".to_string(), folds as f64)];
    for (k, name) in [(0, "rmse"), (1, "mae"), (2, "baseline rmse"), (3, "baseline mae")] {
        let xs: Vec<f64> = res.iter().map(|f| f[k]).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len().max(2) - 1) as f64;
        out.push((name.to_string(), mean));
        out.push((format!("{name} stddev"), var.sqrt()));
    }
    Ok(out)
}
