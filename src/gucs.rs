//! Every `recsys.*` setting. Query-time knobs only: a model's recipe is stored with the model.
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Largest `k` a serving function accepts.
static MAX_K: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Worker threads for training; 0 = one per CPU core.
static THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// How many trained models to keep (the served one included); older ones are deleted by train.
static KEEP_MODELS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// Share of content (TF-IDF) cosine in recsys_similar's blend with ALS cosine.
static SIMILAR_CONTENT_WEIGHT: GucSetting<f64> = GucSetting::<f64>::new(0.3);
/// Half-life, in hours, of an interaction's weight in recsys_trending.
static TRENDING_HALF_LIFE_HOURS: GucSetting<f64> = GucSetting::<f64>::new(24.0);

/// Seconds a backend reuses a recsys_trending result for the same arguments; 0 = off.
static TRENDING_CACHE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(10);
/// Which custom settings tell tenants apart ('*' = every one, '' = none, else a list).
static TENANT_SETTINGS: GucSetting<Option<std::ffi::CString>> = GucSetting::<Option<std::ffi::CString>>::new(Some(c"*"));

/// Force the exact f32 catalogue scan in recsys_recommend (off: int8 scan + exact re-score
/// from 20,000 posts on).
static EXACT_SCAN: GucSetting<bool> = GucSetting::<bool>::new(false);
static SHARED_MODELS: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Rank ALS-only feeds through the model's partition of the post factors (exact top-k).
static PARTITION_SCAN: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Compute a feed's history-based scores on a helper thread while the backend reads followees.
static SERVING_HELPER: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Read a feed's followees, their engagement and posts through their indexes directly.
static DIRECT_READS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Longest recsys_search query accepted, in bytes.
static MAX_QUERY_BYTES: GucSetting<i32> = GucSetting::<i32>::new(10_000);

// One function on purpose (issue 14): a flat list with one registration per GUC (name, texts,
// default, bounds); splitting it would only scatter the list.
pub fn init() {
    GucRegistry::define_int_guc(
        c"recsys.max_query_bytes",
        c"Longest recsys_search query accepted, in bytes.",
        c"A longer query is an error (54000): search time grows with the query's terms.",
        &MAX_QUERY_BYTES,
        1,
        10_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"recsys.exact_scan",
        c"Score every post in f32 in recsys_recommend and recsys_similar instead of the int8 scan with exact re-scoring.",
        c"The int8 scan is used from 20,000 posts on; results are re-scored exactly over a pool of 8 x (offset + k) + 64.",
        &EXACT_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"recsys.partition_scan",
        c"Rank ALS-only feeds through the model's partition of the post factors instead of scanning every post.",
        c"Exact: clusters are visited best bound first and the walk stops when no member can enter the top k. Models of 10,000 posts and more.",
        &PARTITION_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"recsys.serving_helper",
        c"Score a user's history on a helper thread while the backend reads the followees and demographics.",
        c"One thread per backend, started on first use while a CPU is idle; it runs no PostgreSQL code. Work it has not taken when the backend thread is done runs on the backend thread. Off: everything on the backend thread.",
        &SERVING_HELPER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"recsys.direct_reads",
        c"Read a feed's followees, their engagement and their posts through their btree indexes, without the executor.",
        c"The same rows as the statements, which still run whenever a direct read could differ (a view, a partitioned or inherited table, row-level security, column-only grants, no suitable index, a transaction that has written, serializable isolation). Off: always the statements.",
        &DIRECT_READS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"recsys.similar_content_weight",
        c"Weight of content (TF-IDF) cosine in recsys_similar; the rest is ALS cosine.",
        c"0 = ALS only, 1 = content only. Posts without interactions always use content only.",
        &SIMILAR_CONTENT_WEIGHT,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"recsys.trending_half_life_hours",
        c"Half-life of an interaction's weight in recsys_trending, in hours.",
        c"An interaction this old counts half as much as one made now.",
        &TRENDING_HALF_LIFE_HOURS,
        0.01,
        100000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"recsys.trending_cache_seconds",
        c"Seconds a backend reuses a recsys_trending result for the same arguments (0 = off).",
        c"Trending aggregates every interaction in its window; a few seconds of staleness turns that into a lookup.",
        &TRENDING_CACHE_SECONDS,
        0,
        86_400,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"recsys.tenant_settings",
        c"Custom settings that tell tenants apart in shared trending results ('*' = every one, '' = none, or a comma-separated list).",
        c"They count only where row-level security applies to the caller on the interactions or posts table, where either is a view or another non-table, or where the visible predicate reads a setting. Narrow it to what your policies read when a client sets per-request values (PostgREST's request.headers).",
        &TENANT_SETTINGS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"recsys.max_k",
        c"Largest k accepted by recsys_recommend and recsys_similar.",
        c"Requests for more rows raise an error; this bounds the work of one call.",
        &MAX_K,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"recsys.threads",
        c"Worker threads recsys_train uses (0 = one per CPU core).",
        c"Overridden by the \"threads\" train option.",
        &THREADS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"recsys.keep_models",
        c"Model versions kept per name; recsys_train deletes older ones (never the served or a pinned one).",
        c"At least 1: the model being served.",
        &KEEP_MODELS,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"recsys.shared_models",
        c"Serve models from an image file mapped by every backend (one copy per cluster).",
        c"off: each backend decodes its own copy from the model tables (more memory, slower first call).",
        &SHARED_MODELS,
        GucContext::Userset,
        GucFlags::default(),
    );
    // The prefix is ours: a misspelt `SET recsys.trending_cache_second = 0` is an error rather
    // than a silently ignored placeholder (and existing placeholders get a WARNING).
    // SAFETY: called from _PG_init on the backend thread with a static NUL-terminated string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"recsys".as_ptr()) };
}

pub fn max_k() -> i32 {
    MAX_K.get().max(1)
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Resolved thread count (never 0).
pub fn threads() -> usize {
    clamp_threads(THREADS.get().max(0) as usize)
}

/// A requested thread count (0 = one per core), clamped to the machine's cores: more threads
/// than cores only adds switching and memory (each holds an f x f system).
pub fn clamp_threads(n: usize) -> usize {
    if n == 0 {
        cores()
    } else {
        n.min(cores())
    }
}

pub fn keep_models() -> i64 {
    KEEP_MODELS.get().max(1) as i64
}

/// `maintenance_work_mem` in bytes: the memory budget of a training run.
pub fn maintenance_work_mem_bytes() -> u64 {
    // SAFETY: a plain int GUC variable read on the backend thread.
    let kb = unsafe { pgrx::pg_sys::maintenance_work_mem };
    (kb.max(0) as u64) * 1024
}

pub fn similar_content_weight() -> f32 {
    SIMILAR_CONTENT_WEIGHT.get().clamp(0.0, 1.0) as f32
}

pub fn trending_half_life_seconds() -> f64 {
    TRENDING_HALF_LIFE_HOURS.get().max(0.01) * 3600.0
}

pub fn shared_models() -> bool {
    SHARED_MODELS.get()
}

pub fn exact_scan() -> bool {
    EXACT_SCAN.get()
}

pub fn partition_scan() -> bool {
    PARTITION_SCAN.get()
}

pub fn serving_helper() -> bool {
    SERVING_HELPER.get()
}

pub fn direct_reads() -> bool {
    DIRECT_READS.get()
}

pub fn trending_cache_seconds() -> u64 {
    TRENDING_CACHE_SECONDS.get().max(0) as u64
}

pub fn max_query_bytes() -> usize {
    MAX_QUERY_BYTES.get().max(1) as usize
}

/// This session's custom settings (names with a dot, not `recsys.*`, among
/// `recsys.tenant_settings`) that a session may change and that are not at their built-in
/// default, sorted by name: what a row-level security
/// policy, a view or the `visible` predicate may read through `current_setting` beyond the role
/// and search_path (`app.tenant`, PostgREST's `request.jwt.claims`). Results shared between
/// connections, and how far a backend has read new posts, are kept apart by them.
pub fn custom_settings() -> Vec<(String, String)> {
    use pgrx::pg_sys;
    let mut out = vec![];
    // None: every custom setting; Some(list): those named (empty: none).
    let wanted: Option<Vec<String>> = match TENANT_SETTINGS.get() {
        Some(v) if v.to_bytes().trim_ascii() == b"*" => None,
        Some(v) => Some(v.to_string_lossy().split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()),
        None => Some(vec![]),
    };
    if wanted.as_ref().is_some_and(|w| w.is_empty()) {
        return out;
    }
    // SAFETY: PostgreSQL's table of settings, read on the backend thread; every entry and name
    // is valid for the backend's life, and GetConfigOption's value is copied at once.
    unsafe {
        let vars = pg_sys::get_guc_variables();
        let n = pg_sys::GetNumConfigOptions().max(0) as usize;
        if vars.is_null() {
            return out;
        }
        for k in 0..n {
            let g = *vars.add(k);
            if g.is_null() || (*g).name.is_null() {
                continue;
            }
            let settable = (*g).context == pg_sys::GucContext::PGC_USERSET || (*g).context == pg_sys::GucContext::PGC_SUSET;
            if !settable || (*g).source == pg_sys::GucSource::PGC_S_DEFAULT {
                continue;
            }
            let name = std::ffi::CStr::from_ptr((*g).name).to_bytes();
            if !name.contains(&b'.') || name.get(..7).is_some_and(|p| p.eq_ignore_ascii_case(b"recsys.")) {
                continue;
            }
            if let Some(list) = &wanted {
                if !list.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(name)) {
                    continue;
                }
            }
            let v = pg_sys::GetConfigOption((*g).name, true, false);
            let value = if v.is_null() { String::new() } else { std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned() };
            out.push((String::from_utf8_lossy(name).into_owned(), value));
        }
    }
    out.sort();
    out
}

/// A 128-bit fingerprint of [`custom_settings`] (0 when there are none), for cache keys: the
/// values themselves (a JWT's claims) are not written into the cache's files.
pub fn custom_settings_fingerprint() -> u128 {
    use std::hash::{Hash, Hasher};
    let s = custom_settings();
    if s.is_empty() {
        return 0;
    }
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        s.hash(&mut h);
        h.finish() as u128
    };
    (half(1) << 64) | half(2)
}

/// The session's search_path as set (`namespace_search_path`; empty when unset): unqualified
/// table names resolve through it.
pub fn search_path() -> String {
    // SAFETY: a GUC string of the backend, read on the backend thread (NULL-checked).
    unsafe {
        let p = pgrx::pg_sys::namespace_search_path;
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}
