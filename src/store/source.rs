//! Reading the app's tables. Names from options are resolved by the server (`to_regclass`,
//! `pg_attribute`, `quote_ident`) and only the server's quoted output is put into SQL text;
//! values always travel as `$n` parameters.
use crate::error::{RecsysError, Result};
use crate::options::{Spec, TableMap, TrainOptions};
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use std::collections::{BTreeMap, HashMap};

/// A table whose name and columns were checked and quoted by the server.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    /// `regclass::text`: quoted and schema-qualified as needed.
    pub table: String,
    /// role → quoted column name (roles whose column is unused are absent).
    pub cols: BTreeMap<String, String>,
    /// role → type name (pg_type.typname).
    pub types: BTreeMap<String, String>,
    /// A plain table (relkind `r`), whose rows a TID scan can fetch by ctid. False for views,
    /// partitioned and foreign tables, and in images written before this was kept.
    #[serde(default)]
    pub heap: bool,
}

impl Resolved {
    pub fn col(&self, role: &str) -> Option<&str> {
        self.cols.get(role).map(|s| s.as_str())
    }
}

/// What a role's column must hold.
fn expected_type(role: &str) -> (&'static str, &'static [&'static str]) {
    match role {
        "user" | "post" | "id" | "owner" | "follower" | "followee" => ("an integer type (smallint, integer, bigint)", &["int2", "int4", "int8"]),
        "value" | "age" => ("a numeric type", &["int2", "int4", "int8", "float4", "float8", "numeric"]),
        "time" => ("timestamp with time zone, timestamp or date", &["timestamptz", "timestamp", "date"]),
        "tags" => ("text[] or text", &["_text", "_varchar", "text", "varchar"]),
        _ => ("any type castable to text", &[]),
    }
}

/// True when `s` is a syntactically valid, possibly schema-qualified SQL name (`a`, `s.a`,
/// `"My Table"`), checked here so a malformed name gets an error naming the option rather
/// than a bare "invalid name syntax" from the server.
pub fn valid_qualified_name(s: &str) -> bool {
    let mut parts = 0;
    let mut chars = s.chars().peekable();
    loop {
        match chars.peek() {
            Some('"') => {
                chars.next();
                let mut len = 0;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            len += 1;
                        }
                        Some('"') => break,
                        Some(_) => len += 1,
                        None => return false,
                    }
                }
                if len == 0 {
                    return false;
                }
            }
            Some(c) if c.is_alphabetic() || *c == '_' => {
                while let Some(c) = chars.peek() {
                    if c.is_alphanumeric() || *c == '_' || *c == '$' {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            _ => return false,
        }
        parts += 1;
        match chars.next() {
            None => return parts <= 3,
            Some('.') => continue,
            Some(_) => return false,
        }
    }
}

pub fn resolve(client: &SpiClient<'_>, role_name: &'static str, map: &TableMap, spec: Spec) -> Result<Resolved> {
    if !valid_qualified_name(&map.table) {
        return Err(RecsysError::InvalidArgument {
            message: format!("invalid table name {:?} in option \"{role_name}.table\"", map.table),
            hint: "give a table name as in SQL: events, app.events or \"My Events\"".into(),
        });
    }
    // Schema-qualified whatever the search_path: the name is stored with the model and read
    // by every session, whose search_path may differ from the trainer's.
    // (name, relpersistence and relkind as two letters, oid)
    let found = super::first_row::<String, String, i64>(
        client,
        "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text), \
                c.relpersistence::pg_catalog.text OPERATOR(pg_catalog.||) c.relkind::pg_catalog.text, c.oid::pg_catalog.int8 \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid \
           AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,v,m,p,f}'::pg_catalog.\"char\"[])",
        &[map.table.as_str().into()],
    )?;
    let Some((Some(table), Some(kind), Some(oid))) = found else {
        return Err(RecsysError::UndefinedTable { role: role_name, name: map.table.clone() });
    };
    let (temp, heap) = (kind.starts_with('t'), kind.ends_with('r'));
    if temp {
        return Err(RecsysError::InvalidArgument {
            message: format!("table {table} of option \"{role_name}.table\" is a temporary table"),
            hint: "a model is served to every session, and a temporary table is visible in one: map a regular table".into(),
        });
    }
    let mut cols = BTreeMap::new();
    let mut types = BTreeMap::new();
    // Every column of the table in one query (a model load resolves up to four tables).
    let mut all: HashMap<String, (Option<String>, Option<String>, Option<String>)> = HashMap::new();
    for row in client.select(
        "SELECT a.attname::pg_catalog.text, pg_catalog.quote_ident(a.attname::pg_catalog.text), t.typname::pg_catalog.text, \
                pg_catalog.format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid \
         WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid \
           AND a.attnum OPERATOR(pg_catalog.>) 0::pg_catalog.int2 AND NOT a.attisdropped",
        None,
        &[oid.into()],
    )? {
        if let Some(name) = row.get::<String>(1)? {
            all.insert(name, (row.get::<String>(2)?, row.get::<String>(3)?, row.get::<String>(4)?));
        }
    }
    for (role, _, required) in spec.iter() {
        let Some(col) = map.column(role) else { continue };
        let found = all.get(col).cloned();
        match found {
            Some((Some(quoted), Some(typname), Some(pretty))) => {
                let (expected, allowed) = expected_type(role);
                if !allowed.is_empty() && !allowed.contains(&typname.as_str()) {
                    return Err(RecsysError::WrongColumnType { table, column: col.into(), found: pretty, expected });
                }
                cols.insert(role.to_string(), quoted);
                types.insert(role.to_string(), typname);
            }
            _ if *required || map.is_explicit(role) => {
                return Err(RecsysError::UndefinedColumn { table, column: col.into(), option: format!("{{\"{role_name}\": {{\"{role}\": \"...\"}}}}") })
            }
            _ => {} // an optional default column the app does not have: not used
        }
    }
    Ok(Resolved { table, cols, types, heap })
}

/// The planner's row estimate, for the memory pre-check (None when unknown, e.g. a view).
pub fn estimated_rows(client: &SpiClient<'_>, t: &Resolved) -> Result<Option<f64>> {
    let r: Option<f32> = super::one(
        client,
        "SELECT c.reltuples FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid",
        &[t.table.as_str().into()],
    )?;
    Ok(r.map(|x| x as f64).filter(|x| *x > 0.0))
}

/// SELECT list computing one weight per row: weight(kind) × coalesce(value, 1), as float8
/// (a float4 could overflow on one bad row and fail the whole read; readers convert and skip
/// what is not a finite float4). `$1` is the weights as jsonb, `$2` the default weight.
/// Every operator is schema-qualified: an operator in the caller's search_path never runs.
pub fn weight_expr(t: &Resolved) -> String {
    weight_expr_for(t, "")
}

/// [`weight_expr`] with the columns qualified by a table alias (`"i."`).
pub fn weight_expr_for(t: &Resolved, alias: &str) -> String {
    let w = match t.col("kind") {
        Some(k) => format!("COALESCE(($1::pg_catalog.jsonb OPERATOR(pg_catalog.->>) ({alias}{k})::pg_catalog.text)::pg_catalog.float8, $2::pg_catalog.float8)"),
        None => "$2::pg_catalog.float8".to_string(),
    };
    let v = match t.col("value") {
        Some(v) => format!("COALESCE(({alias}{v})::pg_catalog.float8, 1::pg_catalog.float8)"),
        None => "1::pg_catalog.float8".to_string(),
    };
    format!("({w} OPERATOR(pg_catalog.*) {v})")
}

/// SELECT-list expression for a time column as float4 days since the Unix epoch (NULL when
/// the table has no time column).
pub fn day_expr(t: &Resolved, alias: &str) -> String {
    match t.col("time") {
        Some(c) => {
            format!("(pg_catalog.date_part('epoch', ({alias}{c})::pg_catalog.timestamptz) OPERATOR(pg_catalog./) 86400::pg_catalog.float8)::pg_catalog.float4")
        }
        None => "NULL::pg_catalog.float4".into(),
    }
}

/// A weight read as float8, as the model uses it: None (skip the row) unless it is a finite
/// float4.
pub fn finite_weight(w: Option<f64>) -> Option<f32> {
    w.map(|w| w as f32).filter(|w| w.is_finite())
}

/// A time read as days: ±infinity (e.g. created_at = 'infinity') is not a time.
pub fn finite_day(d: Option<f32>) -> Option<f32> {
    d.filter(|d| !d.is_infinite())
}

pub fn weight_args(o: &TrainOptions) -> (JsonB, f32) {
    (JsonB(serde_json::to_value(&o.weights).unwrap_or_default()), o.default_weight)
}

/// Frees the tuple table of the last cursor fetch. pgrx leaves fetched batches in SPI's
/// context until the connection ends, which for a 10M-row read is gigabytes.
fn free_batch() {
    // SAFETY: the batch was consumed by the loop above; nothing refers to it any more, and
    // SPI_tuptable is the table of that last fetch.
    unsafe { pgrx::pg_sys::SPI_freetuptable(pgrx::pg_sys::SPI_tuptable) };
}

/// Streams a query through a cursor: `each` gets every batch of up to `size` rows (and may stop
/// with an error, e.g. over budget); each batch is freed after it and interrupts are checked
/// between batches.
pub fn for_each_batch<'c>(
    client: &SpiClient<'c>,
    query: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
    size: i64,
    mut each: impl FnMut(pgrx::spi::SpiTupleTable<'_>) -> Result<()>,
) -> Result<()> {
    let mut cursor = client.try_open_cursor(query, args)?;
    loop {
        let batch = cursor.fetch(size)?;
        if batch.is_empty() {
            return Ok(());
        }
        crate::progress::rows_read(batch.len());
        each(batch)?;
        free_batch();
        pgrx::check_for_interrupts!();
    }
}

/// All interactions, as dense triplets. Ids are mapped to dense indices in first-seen order.
pub use recsys_core::build::Interactions as Loaded;

/// Bytes one streamed row costs while loading (triplet + amortised id maps).
pub const BYTES_PER_ROW: u64 = 12;
pub const BYTES_PER_ID: u64 = 48;

pub fn read_interactions(client: &SpiClient<'_>, t: &Resolved, o: &TrainOptions, budget: u64) -> Result<Loaded> {
    let (u, p) = (t.col("user").unwrap_or("NULL"), t.col("post").unwrap_or("NULL"));
    let query = format!(
        "SELECT ({u})::pg_catalog.int8, ({p})::pg_catalog.int8, {w}, {d} FROM {tbl} WHERE ({u}) IS NOT NULL AND ({p}) IS NOT NULL",
        w = weight_expr(t),
        d = day_expr(t, ""),
        tbl = t.table
    );
    let timed = t.col("time").is_some();
    let (weights, default_weight) = weight_args(o);
    let mut users: HashMap<i64, u32> = HashMap::new();
    let mut items: HashMap<i64, u32> = HashMap::new();
    let mut l = Loaded::default();
    for_each_batch(client, &query, &[weights.into(), default_weight.into()], 20_000, |batch| {
        for row in batch {
            let (Some(uid), Some(pid), w) = (row.get::<i64>(1)?, row.get::<i64>(2)?, row.get::<f64>(3)?) else { continue };
            l.read += 1;
            let day = if timed { finite_day(row.get::<f32>(4)?.or(Some(f32::NAN))) } else { Some(f32::NAN) };
            // NaN, ±Infinity, beyond float4 or an infinite time: skipped and counted, never an
            // error for everyone.
            let (Some(w), Some(day)) = (finite_weight(w), day) else {
                l.skipped += 1;
                continue;
            };
            let next = l.user_ids.len() as u32;
            let ui = *users.entry(uid).or_insert_with(|| {
                l.user_ids.push(uid);
                next
            });
            let next = l.item_ids.len() as u32;
            let ii = *items.entry(pid).or_insert_with(|| {
                l.item_ids.push(pid);
                next
            });
            l.rows.push(ui);
            l.cols.push(ii);
            l.vals.push(w);
            if timed {
                l.days.push(day);
            }
        }
        let used = l.rows.len() as u64 * (BYTES_PER_ROW + 4 * timed as u64) + (l.user_ids.len() + l.item_ids.len()) as u64 * BYTES_PER_ID;
        if used > budget {
            return Err(RecsysError::OverBudget { needed: used, budget, what: "reading the interactions" });
        }
        Ok(())
    })?;
    Ok(l)
}

/// The raw parts of an interaction's weight and time as request-time SELECT columns: kind as
/// text, value as float8, time as timestamptz (NULL when the table has no such column). The
/// request path computes weight and day from them with [`event_weight`] and [`epoch_day`]
/// (exactly as [`weight_expr`] and [`day_expr`] do in SQL for training), instead of a jsonb
/// lookup, a numeric-to-text-to-float8 conversion and a unit-string parse per row.
fn event_columns(t: &Resolved) -> String {
    let k = t.col("kind").map(|k| format!("({k})::pg_catalog.text")).unwrap_or_else(|| "NULL::pg_catalog.text".into());
    let v = t.col("value").map(|v| format!("({v})::pg_catalog.float8")).unwrap_or_else(|| "NULL::pg_catalog.float8".into());
    let c = t.col("time").map(|c| format!("({c})::pg_catalog.timestamptz")).unwrap_or_else(|| "NULL::pg_catalog.timestamptz".into());
    format!("{k} AS k, {v} AS v, {c} AS t")
}

/// [`weight_expr`] in Rust: weights(kind) (the default weight when the kind is NULL or not in
/// the map) × coalesce(value, 1), in float8 as the SQL computes it (the map's float4 weights
/// widened exactly, as they arrive through jsonb).
pub fn event_weight(o: &TrainOptions, kind: Option<&str>, value: Option<f64>) -> f64 {
    let w = kind.and_then(|k| o.weights.get(k)).map_or(o.default_weight as f64, |w| *w as f64);
    w * value.unwrap_or(1.0)
}

/// [`day_expr`] in Rust: `(date_part('epoch', t) / 86400)::float4` for a timestamptz in
/// microseconds since 2000-01-01, the same operations in the same order as PostgreSQL 15's
/// timestamptz_part (±infinity for the infinite timestamps); NaN without a time.
pub fn epoch_day(t: Option<i64>) -> f32 {
    let Some(t) = t else { return f32::NAN };
    (epoch_seconds(t) / 86400.0) as f32
}

/// `date_part('epoch', t)` for a timestamptz in microseconds since 2000-01-01, as PostgreSQL
/// 15's timestamptz_part computes it.
fn epoch_seconds(t: i64) -> f64 {
    /// 1970-01-01 in microseconds since 2000-01-01 (SetEpochTimestamp).
    const EPOCH: i64 = -946_684_800_000_000;
    match t {
        i64::MAX => f64::INFINITY,
        i64::MIN => f64::NEG_INFINITY,
        t if t < i64::MAX + EPOCH => (t - EPOCH) as f64 / 1_000_000.0,
        t => (t as f64 - EPOCH as f64) / 1_000_000.0,
    }
}

/// `(date_part('epoch', t) * 1000000::float8)::int8` (a model row's creation time as its
/// key holds it): None where the cast would be an error.
pub fn epoch_micros(t: i64) -> Option<i64> {
    let x = (epoch_seconds(t) * 1_000_000.0).round_ties_even();
    // dtoi8's range check: [-2^63, 2^63).
    (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x).then_some(x as i64)
}

/// The fold-in query for one user: (post id, kind, value, time) rows. `$1` is the user id.
pub fn user_history_query(t: &Resolved) -> String {
    let (u, p) = (t.col("user").unwrap_or("NULL"), t.col("post").unwrap_or("NULL"));
    format!(
        "SELECT ({p})::pg_catalog.int8, {e} FROM {tbl} WHERE {u} OPERATOR(pg_catalog.=) $1::pg_catalog.int8 AND ({p}) IS NOT NULL",
        e = event_columns(t),
        tbl = t.table
    )
}

/// The latest `limit` timed engagements of each of `$1::int8[]` users: (user, post, kind,
/// value, time) rows. One index scan per followee with an index on (user column, time
/// column) — documented in the README.
pub fn followee_events_query(t: &Resolved, limit: usize) -> String {
    let (u, p) = (t.col("user").unwrap_or("NULL"), t.col("post").unwrap_or("NULL"));
    // Rows with a time only, newest first: with `IS NOT NULL` an index on (user, time) returns
    // them in order, scanned backwards (`DESC NULLS LAST` would sort every row of the followee).
    let order = t.col("time").map(|c| format!("AND {c} IS NOT NULL ORDER BY {c} DESC")).unwrap_or_default();
    format!(
        "SELECT rf_.id, x_.p, x_.k, x_.v, x_.t FROM pg_catalog.unnest($1::pg_catalog.int8[]) AS rf_(id) \
         CROSS JOIN LATERAL (SELECT ({p})::pg_catalog.int8 AS p, {e} FROM {tbl} \
           WHERE {u} OPERATOR(pg_catalog.=) rf_.id AND ({p}) IS NOT NULL {order} LIMIT {limit}) x_",
        e = event_columns(t),
        tbl = t.table
    )
}

/// The newest `limit` posts of each of `$1::int8[]` owners: (owner, post) rows (None when the
/// posts table has no owner column).
pub fn owned_posts_query(t: &Resolved, limit: usize) -> Option<String> {
    let (id, owner) = (t.col("id")?, t.col("owner")?);
    let order = t.col("time").map(|c| format!("ORDER BY {c} DESC NULLS LAST")).unwrap_or_default();
    Some(format!(
        "SELECT ro_.id, x_.p FROM pg_catalog.unnest($1::pg_catalog.int8[]) AS ro_(id) \
         CROSS JOIN LATERAL (SELECT ({id})::pg_catalog.int8 AS p FROM {tbl} WHERE {owner} OPERATOR(pg_catalog.=) ro_.id {order} LIMIT {limit}) x_",
        tbl = t.table
    ))
}

/// A user's followees: (followee, mutual) rows, most recent follows first when the table has
/// a time column, at most `limit` (duplicate edges are merged by the caller). `$1` is the user id.
pub fn followees_query(f: &Resolved, limit: usize) -> String {
    let (a, b) = (f.col("follower").unwrap_or("NULL"), f.col("followee").unwrap_or("NULL"));
    let order = f.col("time").map(|t| format!("ORDER BY f.{t} DESC NULLS LAST, 1")).unwrap_or_else(|| "ORDER BY 1".into());
    format!(
        "SELECT (f.{b})::pg_catalog.int8, EXISTS (SELECT 1 FROM {tbl} r WHERE r.{a} OPERATOR(pg_catalog.=) (f.{b})::pg_catalog.int8 \
                AND r.{b} OPERATOR(pg_catalog.=) (f.{a})::pg_catalog.int8) \
         FROM {tbl} f WHERE f.{a} OPERATOR(pg_catalog.=) $1::pg_catalog.int8 AND f.{b} IS NOT NULL \
           AND f.{b} OPERATOR(pg_catalog.<>) $1::pg_catalog.int8 {order} LIMIT {limit}",
        tbl = f.table
    )
}

/// Followees of followees that the user does not follow: (user, paths) rows, most paths
/// first, at most `limit`. `$1` is the user id.
pub fn second_hop_query(f: &Resolved, limit: usize) -> String {
    let (a, b) = (f.col("follower").unwrap_or("NULL"), f.col("followee").unwrap_or("NULL"));
    format!(
        "SELECT (f2.{b})::pg_catalog.int8, pg_catalog.count(*)::pg_catalog.int4 FROM {tbl} f1 \
         JOIN {tbl} f2 ON f2.{a} OPERATOR(pg_catalog.=) (f1.{b})::pg_catalog.int8 \
         WHERE f1.{a} OPERATOR(pg_catalog.=) $1::pg_catalog.int8 AND f2.{b} IS NOT NULL \
           AND f2.{b} OPERATOR(pg_catalog.<>) $1::pg_catalog.int8 \
           AND NOT EXISTS (SELECT 1 FROM {tbl} d WHERE d.{a} OPERATOR(pg_catalog.=) $1::pg_catalog.int8 \
                           AND d.{b} OPERATOR(pg_catalog.=) (f2.{b})::pg_catalog.int8) \
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {limit}",
        tbl = f.table
    )
}

/// Ratings for the explicit model: (user, post, value) rows whose value is not NULL, of kind
/// `$1` when a kind is given and the table has a kind column.
pub fn ratings_query(t: &Resolved, kind: Option<&str>) -> Result<String> {
    let (u, p) = (t.col("user").unwrap_or("NULL"), t.col("post").unwrap_or("NULL"));
    let v = t.col("value").ok_or_else(|| RecsysError::MissingColumnFor { what: "explicit feedback", role: "value", table: t.table.clone() })?;
    let kind_filter = match (kind, t.col("kind")) {
        (Some(_), Some(k)) => format!(" AND ({k})::pg_catalog.text OPERATOR(pg_catalog.=) $1::pg_catalog.text"),
        // $1 is still referenced, so the statement takes the same parameters either way.
        _ => " AND ($1::pg_catalog.text IS NULL OR true)".into(),
    };
    Ok(format!(
        "SELECT ({u})::pg_catalog.int8, ({p})::pg_catalog.int8, ({v})::pg_catalog.float8 FROM {tbl} WHERE ({u}) IS NOT NULL AND ({p}) IS NOT NULL AND ({v}) IS NOT NULL{kind_filter}",
        tbl = t.table
    ))
}

/// Every rating, streamed: (user id, post id, value); non-finite values skipped.
pub fn read_ratings(client: &SpiClient<'_>, t: &Resolved, kind: Option<&str>, budget: u64) -> Result<Vec<(i64, i64, f32)>> {
    let query = ratings_query(t, kind)?;
    let mut out = vec![];
    for_each_batch(client, &query, &[kind.into()], 20_000, |batch| {
        for row in batch {
            if let (Some(u), Some(p), Some(v)) = (row.get::<i64>(1)?, row.get::<i64>(2)?, finite_weight(row.get::<f64>(3)?)) {
                out.push((u, p, v));
            }
        }
        if out.len() as u64 * 24 > budget {
            return Err(RecsysError::OverBudget { needed: out.len() as u64 * 24, budget, what: "reading the ratings" });
        }
        Ok(())
    })?;
    Ok(out)
}

/// One user's ratings: (post, value) rows; `$1` kind (or NULL), `$2` the user id.
pub fn user_ratings_query(t: &Resolved, kind: Option<&str>) -> Result<String> {
    let u = t.col("user").unwrap_or("NULL");
    Ok(ratings_query(t, kind)?.replacen(&format!("SELECT ({u})::pg_catalog.int8, "), "SELECT ", 1)
        + &format!(" AND {u} OPERATOR(pg_catalog.=) $2::pg_catalog.int8"))
}

/// A user's demographics: (age, gender, location). `$1` is the user id.
pub fn demographics_query(t: &Resolved) -> String {
    let id = t.col("id").unwrap_or("NULL");
    let num = |r: &str| t.col(r).map(|c| format!("({c})::pg_catalog.float8")).unwrap_or_else(|| "NULL::pg_catalog.float8".into());
    format!(
        "SELECT {age}, {g}, {l} FROM {tbl} WHERE {id} OPERATOR(pg_catalog.=) $1::pg_catalog.int8 LIMIT 1",
        age = num("age"),
        g = text_expr(t, "gender"),
        l = text_expr(t, "location"),
        tbl = t.table
    )
}

/// Every user's segment keys, dictionary-encoded: (user id, codes into dict; 0 = none).
pub fn read_user_keys(client: &SpiClient<'_>, t: &Resolved, budget: u64) -> Result<(Vec<String>, HashMap<i64, [u32; 3]>)> {
    let id = t.col("id").unwrap_or("NULL");
    let num = |r: &str| t.col(r).map(|c| format!("({c})::float8")).unwrap_or_else(|| "NULL::float8".into());
    let query = format!(
        "SELECT ({id})::int8, {age}, {g}, {l} FROM {tbl} WHERE ({id}) IS NOT NULL",
        age = num("age"),
        g = text_expr(t, "gender"),
        l = text_expr(t, "location"),
        tbl = t.table
    );
    let mut dict = recsys_core::ids::Dict::default();
    let mut out: HashMap<i64, [u32; 3]> = HashMap::new();
    for_each_batch(client, &query, &[], 20_000, |batch| {
        for row in batch {
            let Some(uid) = row.get::<i64>(1)? else { continue };
            let (age, g, l) = (row.get::<f64>(2)?, row.get::<String>(3)?, row.get::<String>(4)?);
            let keys = recsys_core::hybrid::segment_keys(age, g.as_deref(), l.as_deref());
            let mut codes = [0u32; 3];
            for (slot, k) in codes.iter_mut().zip(keys) {
                *slot = dict.code(Some(&k));
            }
            out.insert(uid, codes);
        }
        if out.len() as u64 * 64 > budget {
            return Err(RecsysError::OverBudget { needed: out.len() as u64 * 64, budget, what: "reading the users' demographics" });
        }
        Ok(())
    })?;
    Ok((dict.into_values(), out))
}

/// All (int8, int8) rows of a query, streamed in batches (freed as they go, interrupts checked);
/// at most `max_rows` of them (more is an over-budget error naming `what`).
fn read_pairs(client: &SpiClient<'_>, query: &str, max_rows: u64, what: &'static str) -> Result<Vec<(i64, i64)>> {
    let mut out = vec![];
    for_each_batch(client, query, &[], 50_000, |batch| {
        for row in batch {
            if let (Some(x), Some(y)) = (row.get::<i64>(1)?, row.get::<i64>(2)?) {
                out.push((x, y));
            }
        }
        if out.len() as u64 > max_rows {
            return Err(RecsysError::OverBudget { needed: out.len() as u64 * 16, budget: max_rows * 16, what });
        }
        Ok(())
    })?;
    Ok(out)
}

/// Followers per followed user: (user id, count) pairs.
pub fn read_follower_counts(client: &SpiClient<'_>, f: &Resolved, budget: u64) -> Result<Vec<(i64, u32)>> {
    let b = f.col("followee").unwrap_or("NULL");
    let query = format!("SELECT ({b})::pg_catalog.int8, pg_catalog.count(*) FROM {tbl} WHERE {b} IS NOT NULL GROUP BY 1", tbl = f.table);
    let pairs = read_pairs(client, &query, budget / 16, "reading the follower counts")?;
    Ok(pairs.into_iter().map(|(u, n)| (u, n.min(u32::MAX as i64) as u32)).collect())
}

/// Every follow edge (follower, followee), for tuning.
pub fn read_follows(client: &SpiClient<'_>, f: &Resolved, budget: u64) -> Result<Vec<(i64, i64)>> {
    let (a, b) = (f.col("follower").unwrap_or("NULL"), f.col("followee").unwrap_or("NULL"));
    let query = format!("SELECT ({a})::int8, ({b})::int8 FROM {tbl} WHERE {a} IS NOT NULL AND {b} IS NOT NULL", tbl = f.table);
    read_pairs(client, &query, budget / 16, "reading the follows for tuning")
}

/// Whether a table mapping exists (used for optional inputs such as posts).
pub fn table_exists(client: &SpiClient<'_>, name: &str) -> Result<bool> {
    if !valid_qualified_name(name) {
        return Ok(false);
    }
    Ok(super::one::<bool>(client, "SELECT pg_catalog.to_regclass($1::pg_catalog.text) IS NOT NULL", &[name.into()])?.unwrap_or(false))
}

/// Post text for the content model, one entry per post row.
pub use recsys_core::build::Posts as PostText;

fn text_expr(t: &Resolved, role: &str) -> String {
    t.col(role).map(|c| format!("({c})::pg_catalog.text")).unwrap_or_else(|| "NULL::pg_catalog.text".into())
}

/// The columns of one posts row as the content model reads them: `$table` rows of
/// (id, title, description, tags, category, project_code, mood, owner, created day), without a
/// WHERE clause (the callers add theirs).
fn posts_select(t: &Resolved) -> String {
    let id = t.col("id").unwrap_or("NULL");
    let tags = match (t.col("tags"), t.types.get("tags").map(|s| s.as_str())) {
        (Some(c), Some("_text" | "_varchar")) => format!("({c})::text[]"),
        (Some(c), _) => format!("pg_catalog.string_to_array(({c})::text, ',')"),
        (None, _) => "NULL::text[]".into(),
    };
    format!(
        "SELECT ({id})::int8, {title}, {descr}, {tags}, {cat}, {pc}, {mood}, {owner}, {day} FROM {tbl}",
        owner = t.col("owner").map(|c| format!("({c})::int8")).unwrap_or_else(|| "NULL::int8".into()),
        day = day_expr(t, ""),
        title = text_expr(t, "title"),
        descr = text_expr(t, "description"),
        cat = text_expr(t, "category"),
        pc = text_expr(t, "project_code"),
        mood = text_expr(t, "mood"),
        tbl = t.table
    )
}

/// Posts whose id is above `$1`, lowest first, at most `$2` (an index range scan on the id):
/// the posts created after a model was trained, read at call time.
pub fn new_posts_query(t: &Resolved) -> String {
    let id = t.col("id").unwrap_or("NULL");
    format!("{} WHERE {id} OPERATOR(pg_catalog.>) $1::pg_catalog.int8 ORDER BY {id} LIMIT $2::pg_catalog.int8", posts_select(t))
}

/// Whether the posts table has a post with an id above `$2` (an SQL boolean expression). Asked
/// as max(id), which the primary key answers from one end of the index whatever `$2` is: the
/// plan is kept and generic, and a generic `id > $2` would scan the table.
pub fn new_posts_exist(t: &Resolved) -> String {
    let id = t.col("id").unwrap_or("NULL");
    format!("COALESCE((SELECT pg_catalog.max({id}) FROM {}) OPERATOR(pg_catalog.>) $2::pg_catalog.int8, false)", t.table)
}

/// One row of [`posts_select`] appended to `out`; returns the bytes it holds (for the budget).
pub fn push_post_row(row: &impl Columns, out: &mut PostText) -> Result<u64> {
    let Some(pid) = row.get::<i64>(1)? else { return Ok(0) };
    let title = row.get::<String>(2)?.unwrap_or_default();
    let descr = row.get::<String>(3)?.unwrap_or_default();
    let tags: Vec<String> = row.get::<Vec<Option<String>>>(4)?.unwrap_or_default().into_iter().flatten().collect();
    let cat = row.get::<String>(5)?.unwrap_or_default();
    let attrs = [Some(cat.clone()).filter(|c| !c.is_empty()), row.get::<String>(6)?, row.get::<String>(7)?];
    let doc = recsys_core::tfidf::Doc { title: &title, description: &descr, tags: tags.iter().map(|s| s.as_str()).collect(), category: &cat };
    let toks = recsys_core::tfidf::tokens(&doc);
    out.token_count += toks.len() as u64;
    let bytes = toks.iter().map(|t| t.len() as u64 + 40).sum::<u64>() + attrs.iter().flatten().map(|a| a.len() as u64 + 24).sum::<u64>();
    out.ids.push(pid);
    out.tokens.push(toks);
    out.attrs.push(attrs);
    out.owners.push(row.get::<i64>(8)?);
    out.created.push(finite_day(row.get::<f32>(9)?).unwrap_or(f32::NAN));
    Ok(bytes)
}

pub fn read_posts(client: &SpiClient<'_>, t: &Resolved, budget: u64) -> Result<PostText> {
    let id = t.col("id").unwrap_or("NULL");
    let query = format!("{} WHERE ({id}) IS NOT NULL", posts_select(t));
    let mut out = PostText::default();
    let mut bytes = 0u64;
    for_each_batch(client, &query, &[], 5_000, |batch| {
        for row in batch {
            bytes += push_post_row(&row, &mut out)?;
        }
        if bytes > budget {
            return Err(RecsysError::OverBudget { needed: bytes, budget, what: "reading the posts' text" });
        }
        Ok(())
    })?;
    Ok(out)
}

/// Has the server parse and type-check the posts `visible` predicate against the posts table
/// (it must be a boolean expression over the row), so a typo fails the train, not every call.
pub fn check_visible(client: &SpiClient<'_>, t: &Resolved, pred: &str) -> Result<()> {
    // The predicate is one parenthesised expression (options::predicate_is_contained).
    client.select(&format!("SELECT 1 FROM {tbl} WHERE ({pred}) LIMIT 0", tbl = t.table), None, &[])?;
    Ok(())
}

/// Tables smaller than this are read whole cheaply; the missing-index warning starts here.
pub const INDEX_WARNING_BYTES: i64 = 1 << 20;

/// Per-call reads that need an index, as (table, leading column role, columns to suggest, what
/// reads it): serving would otherwise scan the table on every call.
pub fn per_call_reads<'a>(
    interactions: &'a Resolved,
    posts: Option<&'a Resolved>,
    follows: Option<&'a Resolved>,
) -> Vec<(&'a Resolved, &'static str, Vec<&'static str>, &'static str)> {
    let mut out = vec![];
    let with_time = if interactions.col("time").is_some() { vec!["user", "time"] } else { vec!["user"] };
    out.push((interactions, "user", with_time, "every call reads the user's history and the followees' latest engagement by user"));
    if interactions.col("time").is_some() {
        out.push((interactions, "time", vec!["time"], "recsys_trending and the feed's popularity read the last 7 days by time"));
    }
    if let Some(f) = follows {
        out.push((f, "follower", vec!["follower"], "every call reads the user's followees"));
    }
    if let Some(p) = posts {
        out.push((p, "id", vec!["id"], "every call checks its candidates and looks for new posts by id"));
        if p.col("owner").is_some() {
            out.push((p, "owner", vec!["owner"], "every call reads the followees' newest posts by owner"));
        }
        if p.col("category").is_some() {
            out.push((p, "category", vec!["category", "id"], "a feed filtered by category reads that category's posts as they are now"));
        }
    }
    out
}

/// For each per-call read whose table has no valid, non-partial index led by the column (and is
/// at least [`INDEX_WARNING_BYTES`]): the exact `CREATE INDEX` statement and why.
pub fn missing_indexes(client: &SpiClient<'_>, reads: &[(&Resolved, &'static str, Vec<&'static str>, &'static str)]) -> Result<Vec<(String, &'static str)>> {
    let mut out: Vec<(String, &'static str)> = vec![];
    for (t, role, suggest, why) in reads {
        let Some(col) = t.col(role) else { continue };
        let covered = super::one::<bool>(
            client,
            "SELECT pg_catalog.pg_relation_size(c.oid) OPERATOR(pg_catalog.<) $3::pg_catalog.int8 OR EXISTS ( \
               SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a \
                 ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] \
               WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisvalid AND i.indpred IS NULL \
                 AND pg_catalog.quote_ident(a.attname::pg_catalog.text) OPERATOR(pg_catalog.=) $2::pg_catalog.text) \
             FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid",
            &[t.table.as_str().into(), col.into(), INDEX_WARNING_BYTES.into()],
        )?
        .unwrap_or(true);
        if !covered {
            let cols: Vec<&str> = suggest.iter().filter_map(|r| t.col(r)).collect();
            let stmt = format!("CREATE INDEX ON {} ({})", t.table, cols.join(", "));
            if !out.iter().any(|(s, _)| *s == stmt) {
                out.push((stmt, why));
            }
        }
    }
    Ok(out)
}

/// One row of a request-time query, read in place from the executor's result slot as the
/// row is produced (see `KeptPlan::select`): no result tuple is formed or copied, and each
/// column is an array read. pgrx's row type first copies every column of every row (with its
/// type) into a vector.
pub struct Row {
    slot: *mut pgrx::pg_sys::TupleTableSlot,
}

impl Row {
    /// A result slot with all its columns deformed (see `KeptPlan::select`).
    pub(super) fn new(slot: *mut pgrx::pg_sys::TupleTableSlot) -> Row {
        Row { slot }
    }
}

/// Reading column `ordinal` (from 1) of a result row as `T`, checked against the column's type
/// as pgrx checks it: a [`Row`] or pgrx's own row type.
pub trait Columns {
    fn get<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(&self, ordinal: usize) -> std::result::Result<Option<T>, pgrx::spi::SpiError>;
}

impl Columns for Row {
    fn get<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(&self, ordinal: usize) -> std::result::Result<Option<T>, pgrx::spi::SpiError> {
        use pgrx::datum::TryFromDatumError;
        // SAFETY: the slot is the executor's current result row with every column deformed
        // (`slot_getallattrs`), valid for the duration of the receiver callback that made this
        // Row; the ordinal is checked against the slot's descriptor before any array read.
        // The type comes from the descriptor, and pgrx checks it against T.
        unsafe {
            let slot = self.slot;
            let desc = (*slot).tts_tupleDescriptor;
            let natts = usize::try_from((*desc).natts).unwrap_or(0).min(usize::try_from((*slot).tts_nvalid).unwrap_or(0));
            let Some(at) = std::num::NonZeroUsize::new(ordinal).filter(|a| a.get() <= natts) else {
                return Err(TryFromDatumError::NoSuchAttributeNumber(std::num::NonZeroUsize::MIN.saturating_add(ordinal.saturating_sub(1))).into());
            };
            let i = at.get() - 1;
            let oid = (*desc).attrs.as_slice(natts)[i].atttypid;
            let datum = *(*slot).tts_values.add(i);
            let is_null = *(*slot).tts_isnull.add(i);
            Ok(T::try_from_datum(datum, is_null, oid)?)
        }
    }
}

impl Columns for pgrx::spi::SpiHeapTupleData<'_> {
    fn get<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(&self, ordinal: usize) -> std::result::Result<Option<T>, pgrx::spi::SpiError> {
        pgrx::spi::SpiHeapTupleData::get(self, ordinal)
    }
}

/// What [`settings_may_filter`]'s answer depends on within a statement (a function's own `SET`
/// clause may change row_security or the search_path mid-statement): role, row_security,
/// search_path, table.
type FilterKey = (u32, bool, String, String);

thread_local! {
    /// Whether custom settings may filter a table for a caller ([`settings_may_filter`]), for the
    /// statement (local transaction id, command id) that asked. Kept here, not in `backend`,
    /// which depends on this module; like those caches it is only touched by the backend
    /// thread and never outlives the statement it describes.
    static SETTINGS_FILTER: std::cell::RefCell<((u32, u32), HashMap<FilterKey, bool>)> = std::cell::RefCell::new(((0, 0), HashMap::new()));
}

/// Whether this session's custom settings may change which rows of `table` the caller sees,
/// so that what is computed from them must be kept apart per setting: row-level security
/// applies to the caller there (a policy may read `current_setting`), the relation is not a
/// plain table (a view may read one) or is not found, or the `visible` predicate reads a
/// setting. Otherwise results are shared across settings: a client that sets per-request
/// values (PostgREST's `request.headers`) would else never find one. Remembered for the
/// statement (the same transaction and command).
pub fn settings_may_filter(table: &str, visible: Option<&str>) -> bool {
    if visible.is_some_and(|v| v.to_ascii_lowercase().contains("setting")) {
        return true;
    }
    use pgrx::pg_sys;
    // SAFETY: the backend's own PGPROC, transaction state and a GUC variable, read on the
    // backend thread.
    let (stmt, role, rls) = unsafe { (((*pg_sys::MyProc).lxid, pg_sys::GetCurrentCommandId(false)), pg_sys::GetUserId(), pg_sys::row_security) };
    let key: FilterKey = (role.to_u32(), rls, crate::gucs::search_path(), table.to_string());
    let memo = SETTINGS_FILTER.with(|m| {
        let m = m.borrow();
        (m.0 == stmt).then(|| m.1.get(&key).copied()).flatten()
    });
    if let Some(v) = memo {
        return v;
    }
    let Ok(name) = std::ffi::CString::new(table) else { return true };
    // SAFETY: PostgreSQL's name parsing and catalog lookups on the backend thread (an ERROR
    // becomes a Rust panic through pgrx's guard); the lists live in the call's memory context.
    let v = unsafe {
        let rv = pg_sys::makeRangeVarFromNameList(pg_sys::stringToQualifiedNameList(name.as_ptr()));
        let oid = pg_sys::RangeVarGetRelidExtended(rv, pg_sys::NoLock as pg_sys::LOCKMODE, pg_sys::RVROption::RVR_MISSING_OK, None, std::ptr::null_mut());
        oid == pg_sys::InvalidOid
            || pg_sys::get_rel_relkind(oid) as u8 != pg_sys::RELKIND_RELATION
            || pg_sys::check_enable_rls(oid, pg_sys::InvalidOid, true) == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    };
    SETTINGS_FILTER.with(|m| {
        let mut m = m.borrow_mut();
        if m.0 != stmt {
            *m = (stmt, HashMap::new());
        }
        m.1.insert(key, v);
    });
    v
}

#[cfg(test)]
mod unit {
    #[test]
    fn qualified_names() {
        use super::valid_qualified_name as v;
        for ok in ["events", "app.events", "\"My Events\"", "db.s.t", "\"a\"\"b\"", "événements", "_t$1"] {
            assert!(v(ok), "{ok}");
        }
        for bad in ["", "interactions; DROP TABLE users", "a.", ".a", "\"\"", "\"open", "a b", "1abc", "a.b.c.d", "t--"] {
            assert!(!v(bad), "{bad}");
        }
    }
}
