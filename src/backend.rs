//! Every per-backend cache, in one place (two other thread-locals sit below `store`: the
//! running train's progress record in `progress`, which the SPI reader updates, and the
//! statement's memo of which tables custom settings may filter in `store::source`).
//!
//! A PostgreSQL backend is one process running one statement at a time on one thread, so these
//! caches live in that thread's thread-local storage. Why this is sound:
//! - Only the backend thread touches them. Rayon worker threads (training, scoring) never call
//!   into the store or the API; if one did, it would see its own empty thread-locals, never
//!   another thread's data.
//! - Nothing here outlives what it describes. Every entry is checked against the database
//!   before use: the schema by the extension's OID; a model by (id, creation time, model table
//!   OID) and the name's deployed version, read per call; a trending result by role, row
//!   security, search_path, custom settings, model and arguments, with a time-to-live; a
//!   progress record by the statement that wrote it.
//! - No entry points into PostgreSQL memory that a transaction end frees: prepared statements
//!   are kept plans (SPI_keepplan, TopMemoryContext); everything else is Rust-owned, or borrows
//!   a read-only file mapping kept alive by the model that uses it.
//! - An ERROR unwinds through pgrx as a Rust panic, releasing any RefCell borrow on the way; a
//!   cache is only ever replaced whole, so an interrupted call leaves the previous entry or none.
//! - The caches that hold a model or per-post arrays are never dropped (`ManuallyDrop`, so the
//!   thread-local has no destructor): a backend's exit would otherwise free the served models
//!   entry by entry, unmap their images and free a kept plan after `proc_exit`, all work the
//!   kernel does anyway when the process ends (0.2–0.4 ms of CPU at every disconnect, measured
//!   in a profile of new connections). An entry replaced while the backend runs is dropped
//!   as usual.
use crate::store::serving::Serving;
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::time::Instant;

thread_local! {
    /// (extension OID, quoted schema): valid while the extension is not dropped and recreated.
    pub static SCHEMA: RefCell<Option<(pgrx::pg_sys::Oid, String)>> = const { RefCell::new(None) };
    /// The namespace of the extension function being called, while it runs (`store::Caller`).
    pub static CALLER_NSP: std::cell::Cell<Option<pgrx::pg_sys::Oid>> = const { std::cell::Cell::new(None) };
    /// (namespace OID, quoted name) of the last such namespace.
    pub static CALLER_SCHEMA: RefCell<Option<(pgrx::pg_sys::Oid, String)>> = const { RefCell::new(None) };
    /// The served version of each model name this backend has used.
    pub static MODELS: ManuallyDrop<RefCell<HashMap<String, Rc<Serving>>>> = ManuallyDrop::new(RefCell::new(HashMap::new()));
    /// The served-version query, prepared once per backend (and per extension schema).
    pub static LATEST: ManuallyDrop<RefCell<Option<(String, crate::store::plan::KeptPlan)>>> = const { ManuallyDrop::new(RefCell::new(None)) };
    /// Recent trending results by (role, row security, search_path, custom settings, model,
    /// table, weights, arguments), for recsys.trending_cache_seconds: a result computed under
    /// one role's rights, or one tenant's settings, is never served to another.
    pub static TRENDING: ManuallyDrop<RefCell<HashMap<String, (Instant, Rc<Vec<(i64, f32)>>)>>> = ManuallyDrop::new(RefCell::new(HashMap::new()));
    /// The feed's popularity component built from the last trending result (per model item),
    /// with that result and the model it was built for: reused while both are the same.
    pub static FEED_POPULARITY: ManuallyDrop<RefCell<Option<FeedPopularity>>> = const { ManuallyDrop::new(RefCell::new(None)) };
}

/// See [`FEED_POPULARITY`].
pub struct FeedPopularity {
    pub rows: Rc<Vec<(i64, f32)>>,
    pub model: crate::store::serving::ModelKey,
    pub built: Rc<(Vec<f32>, Vec<u32>)>,
}

/// Touches a thread-local with a destructor once, at library load. The first such touch in a
/// process registers the destructor with libc, whose registration resolves a dynamic symbol on
/// its first use: a lookup through every loaded library that cost about 0.1 ms of a new
/// connection's first call. When the library is preloaded the postmaster does it here once and
/// every backend it forks inherits the resolved symbol.
pub fn register_destructors() {
    SCHEMA.with(|_| ());
}

/// Detects the CPU's features (AVX2, FMA, AVX-512 VNNI) once, at library load: the standard
/// library caches them after its first query, which runs `cpuid` (a trap to the hypervisor on
/// a virtual machine; 0.09 ms of a new connection's first call in a profile). When the library
/// is preloaded, every backend the postmaster forks inherits the cached answer.
pub fn detect_cpu_features() {
    let _ = recsys_core::kernels::has_avx2_fma();
    let _ = recsys_core::kernels::has_avx512_vnni();
}

/// glibc's malloc thresholds for a backend that serves recommendations, set once, when it
/// first opens a model image (`recsys.shared_models`, the default).
///
/// A call's per-post arrays (content scores, the fused remainder of the partition walk: 4
/// bytes a post, 400 KB each at 100K posts) are above glibc's initial mmap threshold (128 KB),
/// so each was mapped, faulted in page by page and unmapped on every call. glibc raises its
/// thresholds by itself only after freeing a large mapped block, so this depended on what the
/// backend had done before (a heavy user's call, say). Fixed thresholds make every serving
/// backend reuse that memory: blocks under [`MMAP_THRESHOLD`] come from the heap, whose top is
/// returned to the kernel once more than [`TRIM_THRESHOLD`] of it is free. A backend keeps
/// about its per-call peak allocated. Backends that never serve are not touched.
pub fn serving_malloc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes the allocator's tuning parameters (under its own lock);
        // no pointer is involved.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    });
}

/// See [`serving_malloc`]: 8 MB (a call's arrays at 1M posts are 4 MB each).
const MMAP_THRESHOLD: i32 = 8 << 20;
/// See [`serving_malloc`].
const TRIM_THRESHOLD: i32 = 32 << 20;
