//! Model tables in and out, and the per-backend cache.
//!
//! A model is one row of `_recsys_model` plus its arrays in `_recsys_model_data` as
//! little-endian bytea chunks (compact, fast to read, kept by pg_dump). Both are written in the
//! training transaction, so a ROLLBACK leaves the previous model in service and a COMMIT makes
//! the new one visible to every connection; a backend notices through the model id.
use crate::error::{RecsysError, Result};
use crate::options::{TrainOptions, FOLLOWS, INTERACTIONS, POSTS, USERS};
use crate::store::serving::{Content, Data, ModelKey, Rating, RatingParts, Serving, Tables};
use crate::store::source;
use crate::store::source::Columns;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use recsys_core::csr::Csr;
use recsys_core::explicit::{ExplicitModel, Knn};
use recsys_core::hybrid::Segments;
use recsys_core::ids::{IdIndex, IdLists, RowMap};
use recsys_core::tfidf::Tfidf;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const CHUNK_BYTES: usize = 8 << 20;

/// A stored model's parts by name (little-endian arrays, JSON).
type Parts = HashMap<String, Vec<u8>>;

/// Followees of followees read per request when the second hop is on.
pub const SECOND_HOP_USERS: usize = 200;

pub struct NewModel<'a> {
    pub options: &'a TrainOptions,
    pub user_ids: &'a [i64],
    pub item_ids: &'a [i64],
    pub user_factors: &'a [f32],
    pub item_factors: &'a [f32],
    pub item_popularity: &'a [f32],
    /// YᵀY + λI, for fold-in.
    pub gram: &'a [f32],
    /// TF-IDF over the posts table (all posts, with or without interactions).
    pub content: Option<(&'a [i64], &'a Tfidf)>,
    /// Per content post: codes of category, project_code, mood into `attr_dict` (0 = NULL).
    pub attrs: Option<(&'a [u32], &'a [String])>,
    /// Items with interactions (the first ones; the rest were placed by content).
    pub interacted_items: usize,
    /// Per item: freshness in [0, 1] (empty = no creation times).
    pub freshness: &'a [f32],
    /// The newest post's creation day (NaN = unknown): posts created after training get their
    /// freshness against it.
    pub newest_day: f32,
    /// Per item: owner user id (i64::MIN = unknown; empty = no owner column).
    pub owners: &'a [i64],
    pub segments: Option<&'a Segments>,
    /// Followers per followed user.
    pub followers: &'a [(i64, u32)],
    /// Explicit mode: the rating model and its neighbourhood part.
    pub rating: Option<(&'a ExplicitModel, Option<&'a Knn>)>,
    /// The item-item graph over the items with interactions.
    pub graph: Option<&'a recsys_core::graph::ItemGraph>,
    /// The partition of the item factors.
    pub ivf: Option<&'a recsys_core::ivf::Ivf>,
}

impl<'a> NewModel<'a> {
    /// The model `recsys_core::build` made, saved with options `o` (its fusion weights applied).
    pub fn from_built(o: &'a TrainOptions, b: &'a recsys_core::build::Built) -> NewModel<'a> {
        NewModel {
            options: o,
            user_ids: &b.user_ids,
            item_ids: &b.item_ids,
            user_factors: &b.als.user_factors,
            item_factors: &b.als.item_factors,
            item_popularity: &b.popularity,
            gram: &b.gram,
            content: b.content.as_ref().map(|c| (c.ids.as_slice(), &c.tfidf)),
            attrs: b.content.as_ref().map(|c| (c.codes.as_slice(), c.dict.as_slice())),
            interacted_items: b.interacted_items,
            freshness: &b.freshness,
            newest_day: b.newest_day,
            owners: &b.owners,
            segments: b.segments.as_ref(),
            followers: &b.followers,
            rating: b.rating.as_ref().map(|(m, k)| (m, k.as_ref())),
            graph: b.graph.as_ref(),
            ivf: b.ivf.as_ref(),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RatingMeta {
    mu: f32,
    min: f32,
    max: f32,
    factors: usize,
    items: usize,
    knn_mu: Option<f32>,
    knn_k: usize,
}

fn f32_bytes(v: &[f32]) -> impl Iterator<Item = Vec<u8>> + '_ {
    v.chunks(CHUNK_BYTES / 4).map(|c| c.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn i64_bytes(v: &[i64]) -> impl Iterator<Item = Vec<u8>> + '_ {
    v.chunks(CHUNK_BYTES / 8).map(|c| c.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn u32_bytes(v: &[u32]) -> impl Iterator<Item = Vec<u8>> + '_ {
    v.chunks(CHUNK_BYTES / 4).map(|c| c.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Decodes a little-endian array; a length that is not a whole number of elements is
/// corruption (never silently truncated).
fn decode<const W: usize, T>(b: &[u8], f: fn([u8; W]) -> T) -> Result<Vec<T>> {
    if !b.len().is_multiple_of(W) {
        return Err(RecsysError::Corrupt(format!("an array of {} bytes is not a whole number of {W}-byte values", b.len())));
    }
    Ok(b.chunks_exact(W).map(|c| f(c.try_into().unwrap_or([0; W]))).collect())
}

/// The stored model layout this build writes; loading refuses any other (a newer build's model,
/// or a crafted row), so a mismatch is an ERROR naming the fix, not a misread.
pub const MODEL_FORMAT: i64 = 2;
/// Format 2 plus the rating model's implicit (SVD++) term: a build that reads only format 2
/// would ignore that part and serve other ratings, so explicit models with it are marked 3.
pub const RATING_IMPLICIT_FORMAT: i64 = 3;
/// Models written before the format part existed (same layout minus the part).
const LEGACY_FORMAT: i64 = 1;

/// Checks a stored recipe before anything is sized from it: every dimension within the
/// limits recsys_train enforces, so a crafted or damaged row is an ERROR, never an abort.
fn check_stored_options(id: i64, o: &TrainOptions) -> Result<()> {
    let bad = |what: String| Err(RecsysError::Corrupt(format!("model {id}: {what}")));
    if !(1..=1024).contains(&o.als.factors) {
        return bad(format!("factors = {} is outside 1..1024", o.als.factors));
    }
    if !(1..=1024).contains(&o.rating.factors) {
        return bad(format!("rating factors = {} is outside 1..1024", o.rating.factors));
    }
    if !o.als.alpha.is_finite() || !o.als.regularization.is_finite() {
        return bad("alpha and regularization must be finite".into());
    }
    if o.hybrid.profile_terms > 100_000 {
        return bad(format!("profile_terms = {} is above 100000", o.hybrid.profile_terms));
    }
    Ok(())
}

/// `a * b`, or a corruption error when it overflows.
fn product(id: i64, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| RecsysError::Corrupt(format!("model {id}: array size {a} x {b} overflows")))
}

/// Inserts the model and returns its id. Older models beyond `keep` are deleted.
pub fn save(client: &mut SpiClient<'_>, schema: &str, m: &NewModel<'_>, report: serde_json::Value, keep: i64) -> Result<i64> {
    let id = insert_model(client, schema, m, report)?;
    let insert = format!("INSERT INTO {schema}._recsys_model_data (model_id, part, chunk, data) VALUES ($1, $2, $3, $4)");
    let put = |part: &str, chunks: &mut dyn Iterator<Item = Vec<u8>>| -> Result<()> {
        for (n, bytes) in chunks.enumerate() {
            // A nested SPI connection per chunk: its context, holding the bytea copy, is freed
            // when it ends, so writing a model costs one chunk of memory, not a model's worth.
            pgrx::Spi::connect_mut(|c| c.update(insert.as_str(), None, &[id.into(), part.into(), (n as i32).into(), bytes.into()]).map(|_| ()))?;
            pgrx::check_for_interrupts!();
        }
        Ok(())
    };
    let format = match m.rating {
        Some((rm, _)) if !rm.implicit_factors.is_empty() => RATING_IMPLICIT_FORMAT,
        _ => MODEL_FORMAT,
    };
    put("format", &mut i64_bytes(&[format]))?;
    put("user_ids", &mut i64_bytes(m.user_ids))?;
    put("item_ids", &mut i64_bytes(m.item_ids))?;
    put("user_factors", &mut f32_bytes(m.user_factors))?;
    put("item_factors", &mut f32_bytes(m.item_factors))?;
    put("item_popularity", &mut f32_bytes(m.item_popularity))?;
    put("gram", &mut f32_bytes(m.gram))?;
    if let Some(c) = m.content {
        put_content(&put, c)?;
    }
    if let Some((codes, dict)) = m.attrs {
        put("attr_codes", &mut u32_bytes(codes))?;
        let dict = serde_json::to_vec(dict).map_err(|e| RecsysError::Encode(e.to_string()))?;
        put("attr_dict", &mut dict.chunks(CHUNK_BYTES).map(|c| c.to_vec()))?;
    }
    let json = |v: &dyn erased::Json| -> Result<Vec<u8>> { v.bytes() };
    put("interacted_items", &mut i64_bytes(&[m.interacted_items as i64]))?;
    put("newest_day", &mut f32_bytes(&[m.newest_day]))?;
    if let Some(g) = m.graph {
        put("graph_items", &mut i64_bytes(&[g.items as i64]))?;
        put("graph_ptr", &mut u32_bytes(&g.ptr))?;
        put("graph_nbr", &mut u32_bytes(&g.nbr))?;
        put("graph_weight", &mut f32_bytes(&g.weight))?;
    }
    if let Some(p) = m.ivf {
        put("ivf_items", &mut i64_bytes(&[p.items as i64]))?;
        put("ivf_centroids", &mut f32_bytes(&p.centroids))?;
        put("ivf_radius", &mut f32_bytes(&p.radius))?;
        put("ivf_order", &mut u32_bytes(&p.order))?;
        put("ivf_offsets", &mut u32_bytes(&p.offsets))?;
        if let Some(d) = &p.dist {
            put("ivf_dist", &mut f32_bytes(d))?;
        }
    }
    if !m.freshness.is_empty() {
        put("item_freshness", &mut f32_bytes(m.freshness))?;
    }
    if !m.owners.is_empty() {
        put("item_owner", &mut i64_bytes(m.owners))?;
    }
    if let Some(seg) = m.segments {
        let b = json(&seg)?;
        put("segments", &mut b.chunks(CHUNK_BYTES).map(|c| c.to_vec()))?;
    }
    if let Some(r) = m.rating {
        put_rating(&put, r)?;
    }
    if !m.followers.is_empty() {
        let ids: Vec<i64> = m.followers.iter().map(|x| x.0).collect();
        let counts: Vec<u32> = m.followers.iter().map(|x| x.1).collect();
        put("follower_ids", &mut i64_bytes(&ids))?;
        put("follower_counts", &mut u32_bytes(&counts))?;
    }
    prune(client, schema, &m.options.model, keep)?;
    Ok(id)
}

/// Writes one named part as numbered chunks.
type Put<'a> = dyn Fn(&str, &mut dyn Iterator<Item = Vec<u8>>) -> Result<()> + 'a;

/// The `_recsys_model` row of a new model (deployed now unless the options say not); its id.
fn insert_model(client: &mut SpiClient<'_>, schema: &str, m: &NewModel<'_>, report: serde_json::Value) -> Result<i64> {
    let opts = serde_json::to_value(m.options).map_err(|e| RecsysError::Encode(e.to_string()))?;
    let id: Option<i64> = client
        .update(
            &format!(
                "INSERT INTO {schema}._recsys_model (kind, options, report, n_users, n_items, factors, name, deployed_at) \
                 VALUES ('implicit_als', $1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN pg_catalog.clock_timestamp() END) RETURNING id"
            ),
            Some(1),
            &[
                JsonB(opts).into(),
                JsonB(report).into(),
                (m.user_ids.len() as i64).into(),
                (m.item_ids.len() as i64).into(),
                (m.options.als.factors as i32).into(),
                m.options.model.as_str().into(),
                m.options.deploy.into(),
            ],
        )?
        .first()
        .get_one()?;
    id.ok_or_else(|| RecsysError::Spi("insert into _recsys_model returned no id".into()))
}

/// The TF-IDF parts: post ids, the document rows (CSR), idf and the vocabulary.
fn put_content(put: &Put<'_>, (ids, t): (&[i64], &Tfidf)) -> Result<()> {
    let indptr: Vec<i64> = t.docs.indptr.iter().map(|x| *x as i64).collect();
    put("content_ids", &mut i64_bytes(ids))?;
    put("content_indptr", &mut i64_bytes(&indptr))?;
    put("content_terms", &mut u32_bytes(&t.docs.indices))?;
    put("content_values", &mut f32_bytes(&t.docs.data))?;
    put("content_idf", &mut f32_bytes(&t.idf))?;
    let vocab = (0..t.vocab.len() as u32).map(|i| t.vocab.term(i)).collect::<Vec<_>>().join("\n").into_bytes();
    put("content_vocab", &mut vocab.chunks(CHUNK_BYTES).map(|c| c.to_vec()))?;
    Ok(())
}

/// The rating model's parts (explicit mode): biases, item factors, and the neighbourhood.
fn put_rating(put: &Put<'_>, (rm, knn): (&ExplicitModel, Option<&Knn>)) -> Result<()> {
    let meta = RatingMeta {
        mu: rm.mu,
        min: rm.min,
        max: rm.max,
        factors: rm.factors,
        items: rm.item_bias.len(),
        knn_mu: knn.map(|k| k.mu),
        knn_k: knn.map_or(0, |k| k.k),
    };
    let b = serde_json::to_vec(&meta).map_err(|e| RecsysError::Encode(e.to_string()))?;
    put("rating_meta", &mut b.chunks(CHUNK_BYTES).map(|c| c.to_vec()))?;
    put("rating_item_factors", &mut f32_bytes(&rm.item_factors))?;
    put("rating_item_bias", &mut f32_bytes(&rm.item_bias))?;
    if !rm.implicit_factors.is_empty() {
        put("rating_implicit_factors", &mut f32_bytes(&rm.implicit_factors))?;
    }
    if let Some(k) = knn {
        let mut ptr = vec![0u32];
        let (mut nbr, mut sim) = (vec![], vec![]);
        for list in &k.neighbours {
            for &(j, s) in list.iter().take(k.k) {
                nbr.push(j);
                sim.push(s);
            }
            ptr.push(nbr.len() as u32);
        }
        put("knn_item_bias", &mut f32_bytes(&k.bi))?;
        put("knn_ptr", &mut u32_bytes(&ptr))?;
        put("knn_neighbours", &mut u32_bytes(&nbr))?;
        put("knn_similarities", &mut f32_bytes(&sim))?;
    }
    Ok(())
}

mod erased {
    /// serde_json for a few concrete types behind one `dyn`.
    pub trait Json {
        fn bytes(&self) -> crate::error::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Json for T {
        fn bytes(&self) -> crate::error::Result<Vec<u8>> {
            serde_json::to_vec(self).map_err(|e| crate::error::RecsysError::Encode(e.to_string()))
        }
    }
}

/// Keeps the `keep` newest versions of a model name, plus its served version and pinned ones.
pub fn prune(client: &mut SpiClient<'_>, schema: &str, name: &str, keep: i64) -> Result<()> {
    client.update(
        &format!(
            "DELETE FROM {schema}._recsys_model m WHERE m.name OPERATOR(pg_catalog.=) $2 AND NOT m.pinned \
             AND m.id NOT IN (SELECT id FROM {schema}._recsys_model WHERE name OPERATOR(pg_catalog.=) $2 ORDER BY id DESC LIMIT $1) \
             AND m.id IS DISTINCT FROM (SELECT id FROM {schema}._recsys_model WHERE name OPERATOR(pg_catalog.=) $2 \
               AND deployed_at IS NOT NULL ORDER BY deployed_at DESC, id DESC LIMIT 1)"
        ),
        None,
        &[keep.into(), name.into()],
    )?;
    Ok(())
}

pub fn update_report(client: &mut SpiClient<'_>, schema: &str, id: i64, report: serde_json::Value) -> Result<()> {
    client.update(&format!("UPDATE {schema}._recsys_model SET report = $2 WHERE id = $1"), None, &[id.into(), JsonB(report).into()])?;
    Ok(())
}

/// From this many posts on, recsys_recommend scans int8 factors and re-scores a candidate pool
/// exactly: below it the f32 scan is already cheap.
pub const QUANTIZE_MIN_ITEMS: usize = 20_000;

use crate::backend::{LATEST, MODELS as CACHE};

/// A version's stored options as read with its key: converted only when used.
pub enum StoredOptions {
    Json(JsonB),
    Raw(super::direct::RawJsonb),
}

impl StoredOptions {
    fn parse(self, id: i64) -> Result<TrainOptions> {
        let json = match self {
            StoredOptions::Json(j) => j,
            StoredOptions::Raw(r) => r.to_json(),
        };
        serde_json::from_value(json.0).map_err(|e| RecsysError::Corrupt(format!("options of model {id}: {e}")))
    }
}

/// The served version of model `name` (the one deployed last) and, unless `skip_options` says
/// they are not needed (this backend holds that version already), its stored options: read
/// together, so a new connection's first call runs one statement fewer.
fn newest_key(client: &SpiClient<'_>, schema: &str, name: &str, skip_options: impl Fn(&ModelKey) -> bool) -> Result<Option<(ModelKey, Option<StoredOptions>)>> {
    // The row is read directly where that gives the statement's.
    if super::direct::usable() {
        if let Some(found) = super::direct::deployed(&format!("{schema}._recsys_model"), name, |k| !skip_options(&row_key(k))) {
            return Ok(found.map(|(k, options)| (row_key(k), options.map(StoredOptions::Raw))));
        }
    }
    let fresh = LATEST.with(|l| l.borrow().as_ref().is_none_or(|(s, _)| s != schema));
    if fresh {
        // One table, no join back for the options: this is the first statement a new
        // connection plans (0.2 ms less than the join in a new backend).
        let sql = newest_key_sql(schema, ", options");
        let plan = super::plan::KeptPlan::prepare(client, &sql, &[pgrx::PgOid::BuiltIn(pgrx::PgBuiltInOids::TEXTOID)])?;
        LATEST.with(|l| *l.borrow_mut() = Some((schema.to_string(), plan)));
    }
    LATEST.with(|l| -> Result<Option<(ModelKey, Option<StoredOptions>)>> {
        let l = l.borrow();
        let (_, plan) = l.as_ref().ok_or_else(|| RecsysError::Spi("model-id plan missing".into()))?;
        let rows = plan.select(client, &[name.into()], |r| {
            Ok(key_of(r)?.map(|k| (k, if skip_options(&k) { Ok(None) } else { r.get::<JsonB>(4).map(|j| j.map(StoredOptions::Json)) })))
        })?;
        match rows.into_iter().next() {
            Some((key, options)) => Ok(Some((key, options?))),
            None => Ok(None),
        }
    })
}

/// The served version of model `$1`: (id, created_at in µs, table oid, then the `more`
/// columns), no row when none.
fn newest_key_sql(schema: &str, more: &str) -> String {
    format!(
        "SELECT id, (pg_catalog.date_part('epoch', created_at) OPERATOR(pg_catalog.*) 1000000::float8)::int8 AS created_us, \
         tableoid::pg_catalog.oid::int8 AS table_oid{more} \
         FROM {schema}._recsys_model WHERE name OPERATOR(pg_catalog.=) $1 AND deployed_at IS NOT NULL \
         ORDER BY deployed_at DESC, id DESC LIMIT 1"
    )
}

fn row_key((id, created_us, table): super::direct::RowKey) -> ModelKey {
    ModelKey { id, created_us, table }
}

fn key_of(r: &impl Columns) -> Result<Option<ModelKey>> {
    let (Some(id), created, table) = (r.get::<i64>(1)?, r.get::<i64>(2)?, r.get::<i64>(3)?) else { return Ok(None) };
    Ok(Some(ModelKey { id, created_us: created.unwrap_or(0), table: table.unwrap_or(0) as u32 }))
}

/// The cached model when it is still the served version, asking in the same statement whether
/// posts were created since (one statement per call instead of two); None to take the general
/// path (nothing cached, no posts table, or another version served).
fn still_current(client: &SpiClient<'_>, schema: &str, name: &str) -> Result<Option<Rc<Serving>>> {
    let Some(hit) = CACHE.with(|c| c.borrow().get(name).cloned()) else { return Ok(None) };
    let Some(np) = &hit.new_posts else { return Ok(None) };
    let sql = newest_key_sql(schema, &format!(", {}", np.exists));
    let (text, int8) = (pgrx::PgOid::BuiltIn(pgrx::PgBuiltInOids::TEXTOID), pgrx::PgOid::BuiltIn(pgrx::PgBuiltInOids::INT8OID));
    let after = super::new_posts::after(&hit);
    // The same two answers read directly where that gives the statement's.
    if super::direct::usable() {
        let models = format!("{schema}._recsys_model");
        if let Some((found, above)) = super::direct::deployed(&models, name, |_| false).zip(super::direct::posts_above(&hit.direct, after)) {
            return match found.map(|(k, _)| row_key(k)) {
                Some(key) if key == hit.key && !above => Ok(Some(hit)),
                Some(key) if key == hit.key => catch_up(client, hit).map(Some),
                _ => Ok(None),
            };
        }
    }
    let rows = hit.run(client, "key_and_new_posts", &sql, &[text, int8], &[name.into(), after.into()], |r| Ok(Some((key_of(r)?, r.get::<bool>(4)?))))?;
    match rows.first() {
        Some((Some(key), Some(false))) if *key == hit.key => Ok(Some(hit)),
        Some((Some(key), _)) if *key == hit.key => catch_up(client, hit).map(Some),
        _ => Ok(None),
    }
}

/// Whether this backend holds version `k` of model `name`.
fn cached(name: &str, k: &ModelKey) -> bool {
    CACHE.with(|c| c.borrow().get(name).is_some_and(|m| m.key == *k))
}

/// The served version of model `name`, from the cache when it is still the served one.
pub fn current(client: &SpiClient<'_>, name: &str) -> Result<Rc<Serving>> {
    let schema = super::schema()?;
    if let Some(m) = still_current(client, &schema, name)? {
        return Ok(m);
    }
    // Only the key on the hot path; the options are read on a cache miss, and converted only
    // when the version's image does not keep them (converting the row's jsonb cost a new
    // connection ~0.1 ms).
    let Some((key, options)) = newest_key(client, &schema, name, |k| cached(name, k))? else {
        return Err(if name == crate::options::DEFAULT_MODEL { RecsysError::NotTrained } else { RecsysError::UnknownModel(name.to_string()) });
    };
    if let Some(hit) = CACHE.with(|c| c.borrow().get(name).filter(|m| m.key == key).cloned()) {
        return catch_up(client, hit);
    }
    let options = options.ok_or(RecsysError::NotTrained)?;
    // The old version is dropped before the new one is decoded (peak memory: one model).
    CACHE.with(|c| c.borrow_mut().remove(name));
    let model = Rc::new(if crate::gucs::shared_models() {
        // Not for a private copy: its decode's temporaries, reused from the heap between the
        // model's own arrays, would stay allocated as holes (+22 MB per backend at 200K x 20K).
        crate::backend::serving_malloc();
        shared(client, &schema, key, options)?
    } else {
        load(client, &schema, key, options.parse(key.id)?)?
    });
    CACHE.with(|c| c.borrow_mut().insert(name.to_string(), model));
    // The per-call probe (served version and "any post newer than the model?"), planned now
    // instead of on the next call: when nothing is new, the new-posts read is neither planned
    // nor run in this connection. The cache holds the only reference, so new posts can be
    // added in place.
    match still_current(client, &schema, name)? {
        Some(m) => Ok(m),
        None => {
            let model = CACHE.with(|c| c.borrow().get(name).cloned()).ok_or(RecsysError::NotTrained)?;
            catch_up(client, model)
        }
    }
}

/// The served version of model `name` and its options, without loading the model (None when
/// no version is served): what a background trending refresh needs to rebuild a result's key.
pub fn served_options(client: &SpiClient<'_>, name: &str) -> Result<Option<(ModelKey, TrainOptions)>> {
    let schema = super::schema()?;
    let Some((key, options)) = newest_key(client, &schema, name, |k| cached(name, k))? else { return Ok(None) };
    let options = match options {
        Some(o) => o.parse(key.id)?,
        // Not read: this backend holds that version already.
        None => CACHE.with(|c| c.borrow().get(name).map(|m| m.options.clone())).ok_or(RecsysError::NotTrained)?,
    };
    Ok(Some((key, options)))
}

/// The model from its image, mapped (written first from the stored rows when there is none).
/// An image that cannot be written (disk full, permissions) leaves the decoded private copy in
/// service, with a WARNING: serving never fails for the cache's sake. `options`: the version's
/// stored options, converted only when the image does not keep them.
fn shared(client: &SpiClient<'_>, schema: &str, key: ModelKey, options: StoredOptions) -> Result<Serving> {
    let path = super::image::path(key);
    let mapped = match super::image::Image::open(&path) {
        Ok(m) => m,
        Err(e) => {
            // A damaged image is rebuilt below from the rows.
            pgrx::warning!("pg_recsys: {e:?}; rebuilding it");
            let _ = std::fs::remove_file(&path);
            None
        }
    };
    if let Some(img) = mapped {
        let options = match super::image::options(&img) {
            Some(o) => o,
            None => options.parse(key.id)?,
        };
        check_stored_options(key.id, &options)?;
        let t0 = std::time::Instant::now();
        let data = super::image::read(&img, key.id)?;
        if data.factors != options.als.factors {
            return Err(RecsysError::Corrupt(format!("model {}: the image has {} factors, the options {}", key.id, data.factors, options.als.factors)));
        }
        let t1 = std::time::Instant::now();
        // The tables as the image's writer resolved them (a schema change since then shows
        // as the serving queries' own errors; a retrain resolves again).
        let m = match super::image::tables(&img)? {
            Some(t) => attach_resolved(key, options, data, None, t),
            None => attach(client, key, options, data, None),
        };
        pgrx::debug1!(
            "pg_recsys: model {} opened from its image: read {:.2} ms, attach {:.2} ms",
            key.id,
            (t1 - t0).as_secs_f64() * 1e3,
            t1.elapsed().as_secs_f64() * 1e3
        );
        return m;
    }
    let options = options.parse(key.id)?;
    let (data, rating) = decode_parts(client, schema, key.id, &options)?;
    if rating.is_some() {
        return attach(client, key, options, data, rating);
    }
    let tables = resolve_tables(client, &options)?;
    if let Err(e) = super::image::write(&path, &data, &tables, &options) {
        pgrx::warning!("pg_recsys: could not write the model image {}: {e}; serving from private memory", path.display());
        return attach(client, key, options, data, None);
    }
    drop(data);
    let keep: Vec<i64> = client.select(&format!("SELECT id FROM {schema}._recsys_model"), None, &[])?.filter_map(|r| r.get::<i64>(1).ok().flatten()).collect();
    super::image::remove_others(key, &keep);
    let img = super::image::Image::open(&path)?.ok_or_else(|| RecsysError::Corrupt(format!("model image {} vanished", path.display())))?;
    attach_resolved(key, options, super::image::read(&img, key.id)?, None, tables)
}

/// Adds the posts created since training (or since the last call) to the cached model, placed
/// by content, so they are served without a retrain. The model is extended in place when this
/// call holds the only other reference to it (always, between statements); otherwise the new
/// posts wait for the next call.
fn catch_up(client: &SpiClient<'_>, model: Rc<Serving>) -> Result<Rc<Serving>> {
    let Some(pending) = super::new_posts::pending(client, &model)? else { return Ok(model) };
    let name = model.options.model.clone();
    CACHE.with(|c| c.borrow_mut().remove(&name));
    let model = match Rc::try_unwrap(model) {
        Ok(mut m) => {
            m.add_posts(pending);
            Rc::new(m)
        }
        Err(shared) => shared,
    };
    CACHE.with(|c| c.borrow_mut().insert(name, model.clone()));
    Ok(model)
}

fn load(client: &SpiClient<'_>, schema: &str, key: ModelKey, options: TrainOptions) -> Result<Serving> {
    let (data, rating) = decode_parts(client, schema, key.id, &options)?;
    attach(client, key, options, data, rating)
}

/// Reads model `id`'s parts and decodes them, checking every size.
pub fn decode_parts(client: &SpiClient<'_>, schema: &str, id: i64, options: &TrainOptions) -> Result<(Data, Option<RatingParts>)> {
    // Serving never reads the user side.
    let parts = read_parts(client, schema, id, false)?;
    let take = |name: &str| parts.get(name).ok_or_else(|| RecsysError::Corrupt(format!("model {id} has no {name}")));
    let format = match parts.get("format") {
        None => LEGACY_FORMAT,
        Some(b) => match decode(b, i64::from_le_bytes)?.as_slice() {
            [v] => *v,
            _ => return Err(RecsysError::Corrupt(format!("model {id}: the format part must hold one value"))),
        },
    };
    if ![LEGACY_FORMAT, MODEL_FORMAT, RATING_IMPLICIT_FORMAT].contains(&format) {
        return Err(RecsysError::Corrupt(format!(
            "model {id} has storage format {format}; this build reads {LEGACY_FORMAT}, {MODEL_FORMAT} and {RATING_IMPLICIT_FORMAT}"
        )));
    }
    check_stored_options(id, options)?;
    let item_ids: Vec<i64> = decode(take("item_ids")?, i64::from_le_bytes)?;
    let f32s = |b: &Vec<u8>| -> Result<Vec<f32>> { decode(b, f32::from_le_bytes) };
    let item_factors = f32s(take("item_factors")?)?;
    let mut popularity = f32s(take("item_popularity")?)?;
    let gram = f32s(take("gram")?)?;
    let f = options.als.factors;
    if item_factors.len() != product(id, item_ids.len(), f)? || popularity.len() != item_ids.len() || gram.len() != product(id, f, f)? {
        return Err(RecsysError::Corrupt(format!("model {id} arrays have inconsistent sizes")));
    }
    let max = popularity.iter().cloned().fold(0f32, f32::max).max(1e-12);
    popularity.iter_mut().for_each(|p| *p /= max);
    let item_norms = item_factors.chunks_exact(f).map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
    let item_index = IdIndex::positions(&item_ids);
    let content = decode_content(id, &parts, &item_index, item_ids.len())?;
    let quantized = (item_ids.len() >= QUANTIZE_MIN_ITEMS).then(|| recsys_core::kernels::QuantizedRows::new(&item_factors, f));
    let mut order: Vec<recsys_core::topk::Scored> =
        popularity.iter().enumerate().map(|(i, &p)| recsys_core::topk::Scored { score: p, id: item_ids[i], index: i as u32 }).collect();
    order.sort_by(recsys_core::topk::rank_order);
    let popularity_order = order.into_iter().map(|s| s.index).collect();
    let empty = Vec::new();
    let opt = |name: &str| parts.get(name).unwrap_or(&empty);
    let segments: Segments = match json_part(id, &parts, "segments")? {
        Some(v) => serde_json::from_value(v).map_err(|e| RecsysError::Corrupt(e.to_string()))?,
        None => Segments::default(),
    };
    let freshness = f32s(opt("item_freshness"))?;
    let newest_day = f32s(opt("newest_day"))?.first().copied().unwrap_or(f32::NAN);
    // Models written before this part existed: every item counts as interacted.
    let interacted_items = decode(opt("interacted_items"), i64::from_le_bytes)?.first().map(|n| *n as usize).unwrap_or(item_ids.len());
    if interacted_items > item_ids.len() || !segments.fits(item_ids.len()) {
        return Err(RecsysError::Corrupt(format!("model {id} per-post arrays have inconsistent sizes")));
    }
    let owners: Vec<i64> = decode(opt("item_owner"), i64::from_le_bytes)?;
    let owned = IdLists::build(owners.iter().enumerate().filter(|(_, o)| **o != i64::MIN).map(|(i, o)| (*o, i as u32)));
    let fids: Vec<i64> = decode(opt("follower_ids"), i64::from_le_bytes)?;
    let fcounts: Vec<u32> = decode(opt("follower_counts"), u32::from_le_bytes)?;
    let followers = IdIndex::build(fids.into_iter().zip(fcounts));
    if (!freshness.is_empty() && freshness.len() != item_ids.len()) || (!owners.is_empty() && owners.len() != item_ids.len()) {
        return Err(RecsysError::Corrupt(format!("model {id} per-post arrays have inconsistent sizes")));
    }
    let rating = decode_rating(id, &parts, item_ids.len())?;
    let graph = decode_graph(id, &parts, item_ids.len())?;
    let ivf = decode_ivf(id, &parts, f, item_ids.len())?;
    let data = Data {
        factors: f,
        item_ids: item_ids.into(),
        item_index,
        item_factors: item_factors.into(),
        item_norms,
        popularity: popularity.into(),
        gram: gram.into(),
        content,
        quantized,
        popularity_order,
        interacted_items,
        freshness: freshness.into(),
        newest_day,
        owned,
        owners: owners.into(),
        followers,
        segments: crate::store::serving::LazySegments::Ready(segments),
        graph,
        ivf,
    };
    Ok((data, rating))
}

/// A JSON part of model `id` (None when absent).
fn json_part(id: i64, parts: &Parts, name: &str) -> Result<Option<serde_json::Value>> {
    match parts.get(name) {
        None => Ok(None),
        Some(b) => serde_json::from_slice(b).map(Some).map_err(|e| RecsysError::Corrupt(format!("{name} of model {id}: {e}"))),
    }
}

/// The content part of model `id` (None when it was trained without a posts table).
fn decode_content(id: i64, parts: &Parts, item_index: &IdIndex, n_items: usize) -> Result<Option<Content>> {
    let take = |name: &str| parts.get(name).ok_or_else(|| RecsysError::Corrupt(format!("model {id} has no {name}")));
    let f32s = |b: &Vec<u8>| -> Result<Vec<f32>> { decode(b, f32::from_le_bytes) };
    Ok(match parts.get("content_ids") {
        None => None,
        Some(ids) => {
            let ids: Vec<i64> = decode(ids, i64::from_le_bytes)?;
            let indptr: Vec<usize> = decode(take("content_indptr")?, i64::from_le_bytes)?.into_iter().map(|x| x as usize).collect();
            // Arrays that were empty (posts without any token) have no chunk at all.
            let empty = Vec::new();
            let opt = |name: &str| parts.get(name).unwrap_or(&empty);
            let terms: Vec<u32> = decode(opt("content_terms"), u32::from_le_bytes)?;
            let values = f32s(opt("content_values"))?;
            let idf = f32s(opt("content_idf"))?;
            let vocab_text = String::from_utf8(opt("content_vocab").clone()).map_err(|e| RecsysError::Corrupt(e.to_string()))?;
            let vocab: Vec<String> = if vocab_text.is_empty() { vec![] } else { vocab_text.split('\n').map(String::from).collect() };
            let monotone = indptr.first() == Some(&0) && indptr.windows(2).all(|w| w[0] <= w[1]) && indptr.last() == Some(&terms.len());
            if indptr.len() != ids.len() + 1
                || terms.len() != values.len()
                || vocab.len() != idf.len()
                || !monotone
                || terms.iter().any(|&t| t as usize >= vocab.len())
            {
                return Err(RecsysError::Corrupt(format!("model {id} content arrays have inconsistent sizes")));
            }
            let docs = Csr { rows: ids.len(), cols: vocab.len(), indptr: indptr.into(), indices: terms.into(), data: values.into() };
            let postings = docs.transpose();
            let index: HashMap<String, u32> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
            let to_item = RowMap::collect(ids.iter().map(|&p| item_index.get(p)));
            let from_item = to_item.inverse(n_items);
            let cindex = IdIndex::positions(&ids);
            let codes: Vec<u32> = decode(opt("attr_codes"), u32::from_le_bytes)?;
            let dict_list: Vec<String> = if opt("attr_dict").is_empty() {
                vec![String::new()]
            } else {
                serde_json::from_slice(opt("attr_dict")).map_err(|e| RecsysError::Corrupt(format!("attribute dictionary: {e}")))?
            };
            if codes.iter().any(|&c| c as usize >= dict_list.len()) {
                return Err(RecsysError::Corrupt(format!("model {id}: an attribute code is outside its dictionary")));
            }
            let attrs: Vec<u32> = if codes.len() == product(id, ids.len(), 3)? { codes } else { vec![0; ids.len() * 3] };
            let dict = dict_list.iter().enumerate().skip(1).map(|(i, v)| (v.clone(), i as u32)).collect();
            Some(Content {
                ids: ids.into(),
                index: cindex,
                tfidf: Tfidf { vocab: recsys_core::tfidf::Vocab::Owned { terms: vocab, index }, idf: idf.into(), docs, postings },
                to_item,
                from_item,
                attrs: attrs.into(),
                dict,
                dict_list,
            })
        }
    })
}

/// The rating model of model `id` (explicit mode; None otherwise), over its first items.
fn decode_rating(id: i64, parts: &Parts, n_items: usize) -> Result<Option<RatingParts>> {
    let empty = Vec::new();
    let opt = |name: &str| parts.get(name).unwrap_or(&empty);
    let f32s = |b: &Vec<u8>| -> Result<Vec<f32>> { decode(b, f32::from_le_bytes) };
    Ok(match json_part(id, parts, "rating_meta")? {
        None => None,
        Some(v) => {
            let meta: RatingMeta = serde_json::from_value(v).map_err(|e| RecsysError::Corrupt(e.to_string()))?;
            let item_factors = f32s(opt("rating_item_factors"))?;
            let item_bias = f32s(opt("rating_item_bias"))?;
            // SVD++'s y_j; absent in models stored before it (plain biased MF).
            let implicit_factors = f32s(opt("rating_implicit_factors"))?;
            if !(1..=1024).contains(&meta.factors)
                || item_bias.len() != meta.items
                || item_factors.len() != product(id, meta.items, meta.factors)?
                || !(implicit_factors.is_empty() || implicit_factors.len() == item_factors.len())
                || meta.items > n_items
            {
                return Err(RecsysError::Corrupt(format!("model {id} rating arrays have inconsistent sizes")));
            }
            let model = ExplicitModel {
                factors: meta.factors,
                mu: meta.mu,
                user_bias: vec![],
                item_bias,
                user_factors: vec![],
                item_factors,
                implicit_factors,
                min: meta.min,
                max: meta.max,
            };
            let knn = match meta.knn_mu {
                None => None,
                Some(mu) => {
                    let bi = f32s(opt("knn_item_bias"))?;
                    let ptr: Vec<u32> = decode(opt("knn_ptr"), u32::from_le_bytes)?;
                    let nbr: Vec<u32> = decode(opt("knn_neighbours"), u32::from_le_bytes)?;
                    let sim = f32s(opt("knn_similarities"))?;
                    let ok_ptr = ptr.first() == Some(&0) && ptr.windows(2).all(|w| w[0] <= w[1]);
                    if bi.len() != meta.items
                        || ptr.len() != meta.items + 1
                        || nbr.len() != sim.len()
                        || ptr.last().copied() != Some(nbr.len() as u32)
                        || !ok_ptr
                        || nbr.iter().any(|&j| j as usize >= meta.items)
                    {
                        return Err(RecsysError::Corrupt(format!("model {id} neighbourhood arrays have inconsistent sizes")));
                    }
                    let neighbours = (0..meta.items).map(|i| (ptr[i] as usize..ptr[i + 1] as usize).map(|k| (nbr[k], sim[k])).collect()).collect();
                    Some(Knn { k: meta.knn_k, mu, bu: vec![], bi, neighbours })
                }
            };
            Some((model, knn))
        }
    })
}

/// The partition of model `id`'s item factors (None: a small catalogue, or an older model).
fn decode_ivf(id: i64, parts: &Parts, f: usize, n_items: usize) -> Result<Option<recsys_core::ivf::Ivf>> {
    let Some(items) = parts.get("ivf_items") else { return Ok(None) };
    let empty = Vec::new();
    let opt = |name: &str| parts.get(name).unwrap_or(&empty);
    let p = recsys_core::ivf::Ivf::from_parts(
        f,
        decode(items, i64::from_le_bytes)?.first().map_or(usize::MAX, |&n| n as usize),
        decode(opt("ivf_centroids"), f32::from_le_bytes)?.into(),
        decode(opt("ivf_radius"), f32::from_le_bytes)?.into(),
        decode(opt("ivf_order"), u32::from_le_bytes)?.into(),
        decode(opt("ivf_offsets"), u32::from_le_bytes)?.into(),
        parts.get("ivf_dist").map(|d| decode(d, f32::from_le_bytes)).transpose()?.map(Into::into),
    );
    if !p.is_consistent(n_items) {
        return Err(RecsysError::Corrupt(format!("model {id}: the post partition has inconsistent sizes")));
    }
    Ok(Some(p))
}

/// The item graph of model `id` (None when it was trained without one).
fn decode_graph(id: i64, parts: &Parts, n_items: usize) -> Result<Option<recsys_core::graph::ItemGraph>> {
    let empty = Vec::new();
    let opt = |name: &str| parts.get(name).unwrap_or(&empty);
    let f32s = |b: &Vec<u8>| -> Result<Vec<f32>> { decode(b, f32::from_le_bytes) };
    Ok(match parts.get("graph_ptr") {
        None => None,
        Some(ptr) => {
            let items = decode(opt("graph_items"), i64::from_le_bytes)?.first().copied().unwrap_or(-1);
            if items < 0 || items as usize > n_items {
                return Err(RecsysError::Corrupt(format!("model {id}: the item graph has an invalid size")));
            }
            let g = recsys_core::graph::ItemGraph::from_parts(
                items as usize,
                decode(ptr, u32::from_le_bytes)?.into(),
                decode(opt("graph_nbr"), u32::from_le_bytes)?.into(),
                f32s(opt("graph_weight"))?.into(),
            )
            .map_err(|e| RecsysError::Corrupt(format!("model {id}: {e}")))?;
            Some(g)
        }
    })
}

/// Resolves a model's mapped tables in the catalog (names, columns, types checked).
pub fn resolve_tables(client: &SpiClient<'_>, options: &TrainOptions) -> Result<Tables> {
    Ok(Tables {
        interactions: source::resolve(client, "interactions", &options.interactions, INTERACTIONS)?,
        posts: options.posts.as_ref().map(|map| source::resolve(client, "posts", map, POSTS)).transpose()?,
        users: options.users.as_ref().map(|m| source::resolve(client, "users", m, USERS)).transpose()?,
        follows: options.follows.as_ref().map(|m| source::resolve(client, "follows", m, FOLLOWS)).transpose()?,
    })
}

/// A served model from its data: the tables resolved in the catalog as they are now, the
/// call-time queries built.
pub fn attach(client: &SpiClient<'_>, key: ModelKey, options: TrainOptions, d: Data, rating: Option<RatingParts>) -> Result<Serving> {
    let tables = resolve_tables(client, &options)?;
    attach_resolved(key, options, d, rating, tables)
}

/// A served model from its data and its resolved tables: the call-time queries built.
pub fn attach_resolved(key: ModelKey, options: TrainOptions, d: Data, rating: Option<RatingParts>, tables: Tables) -> Result<Serving> {
    let Tables { interactions: resolved, follows, users, posts } = tables;
    let history_query = source::user_history_query(&resolved);
    let live = posts.as_ref().zip(options.posts.as_ref()).map(|(t, map)| super::live::queries(t, map.visible.as_deref()));
    let new_posts = posts.as_ref().zip(d.content.as_ref()).map(|(t, c)| crate::store::serving::NewPosts::new(t, [&c.index, &d.item_index]));
    let rating = match rating {
        None => None,
        Some((model, knn)) => Some(Rating { model, knn, query: source::user_ratings_query(&resolved, options.rating_kind.as_deref())? }),
    };
    let followees_query = follows.as_ref().map(|t| source::followees_query(t, recsys_core::world::MAX_FOLLOWEES));
    let second_hop_query = follows.as_ref().map(|t| source::second_hop_query(t, SECOND_HOP_USERS));
    let followee_events_query = source::followee_events_query(&resolved, recsys_core::hybrid::SOCIAL_EVENTS);
    let followee_posts_query = posts.as_ref().and_then(|t| source::owned_posts_query(t, recsys_core::hybrid::SOCIAL_EVENTS));
    let demographics_query = users.as_ref().map(source::demographics_query);
    let visible = options.posts.as_ref().and_then(|p| p.visible.as_deref());
    let direct = super::direct::Shape::new(&resolved, follows.as_ref(), posts.as_ref(), users.as_ref(), visible);
    Ok(Serving {
        key,
        options,
        data: d,
        history_query,
        new_posts,
        live,
        followees_query,
        second_hop_query,
        followee_events_query,
        followee_posts_query,
        rating,
        demographics_query,
        direct,
        plans: RefCell::new(HashMap::new()),
        tids: RefCell::default(),
    })
}

/// The factors of a stored model for a refresh: (user ids, user factors, item ids, item
/// factors), items limited to those trained from interactions (content-placed posts are placed
/// again from the posts table as it is now).
pub fn read_factors(client: &SpiClient<'_>, schema: &str, id: i64, factors: usize, interacted: usize) -> Result<(Vec<i64>, Vec<f32>, Vec<i64>, Vec<f32>)> {
    let parts = read_parts(client, schema, id, true)?;
    let take = |name: &str| parts.get(name).ok_or_else(|| RecsysError::Corrupt(format!("model {id} has no {name}")));
    let user_ids = decode(take("user_ids")?, i64::from_le_bytes)?;
    let user_factors = decode(take("user_factors")?, f32::from_le_bytes)?;
    let mut item_ids = decode(take("item_ids")?, i64::from_le_bytes)?;
    let mut item_factors = decode(take("item_factors")?, f32::from_le_bytes)?;
    if user_factors.len() != product(id, user_ids.len(), factors)? || item_factors.len() != product(id, item_ids.len(), factors)? || interacted > item_ids.len()
    {
        return Err(RecsysError::Corrupt(format!("model {id} factor arrays have inconsistent sizes")));
    }
    item_ids.truncate(interacted);
    item_factors.truncate(interacted * factors);
    Ok((user_ids, user_factors, item_ids, item_factors))
}

/// A model's parts, chunks concatenated: with `factors_only` the two factor matrices and their
/// ids; otherwise every part but the user side (which serving never reads).
fn read_parts(client: &SpiClient<'_>, schema: &str, id: i64, factors_only: bool) -> Result<HashMap<String, Vec<u8>>> {
    let which = if factors_only { "" } else { "NOT" };
    let rows = client.select(
        &format!(
            "SELECT part, data FROM {schema}._recsys_model_data WHERE model_id OPERATOR(pg_catalog.=) $1 \
             AND {which} (part OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])) ORDER BY part, chunk"
        ),
        None,
        &[id.into(), if factors_only { vec!["user_ids", "user_factors", "item_ids", "item_factors"] } else { vec!["user_ids", "user_factors"] }.into()],
    )?;
    let mut parts: HashMap<String, Vec<u8>> = HashMap::new();
    for row in rows {
        let part: String = row.get(1)?.unwrap_or_default();
        let data: Vec<u8> = row.get(2)?.unwrap_or_default();
        parts.entry(part).or_default().extend_from_slice(&data);
    }
    Ok(parts)
}
