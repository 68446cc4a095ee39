//! The served model's types: what a backend holds for one model version (its arrays, borrowed
//! from an image or decoded, and its call-time queries) and the small structs around it. Loading
//! and caching are in `store::model`, the image file in `store::image`.
use crate::error::{RecsysError, Result};
use crate::options::TrainOptions;
use crate::store::source::{self, Resolved};
use recsys_core::buf::Buf;
use recsys_core::explicit::{ExplicitModel, Knn};
use recsys_core::hybrid::Segments;
use recsys_core::ids::{IdIndex, IdLists, RowMap};
use recsys_core::tfidf::Tfidf;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The rating model as served: item side only (users are folded in from their ratings now).
pub struct Rating {
    pub model: ExplicitModel,
    pub knn: Option<Knn>,
    /// One user's ratings: `$1` kind, `$2` user id.
    pub query: String,
}

/// What serving needs, decoded once per backend and model.
pub struct Serving {
    /// What the per-backend cache is keyed by (see [`ModelKey`]).
    pub key: ModelKey,
    pub options: TrainOptions,
    /// The model's arrays (borrowed from its image, or decoded); `m.item_factors` etc. read
    /// through `Deref`.
    pub data: Data,
    /// The fold-in query over the interactions table, resolved at load.
    pub history_query: String,
    /// Posts created after training, read and placed at call time (None without a posts table).
    pub new_posts: Option<NewPosts>,
    /// Call-time queries over the posts table (None when no posts table is mapped).
    pub live: Option<LiveQueries>,
    /// Request-time queries over the app's tables (None when the table is not mapped).
    pub followees_query: Option<String>,
    pub second_hop_query: Option<String>,
    /// Followees' latest engagements, read per request: `$1` weights, `$2` default weight,
    /// `$3` followee ids.
    pub followee_events_query: String,
    /// Posts owned by followees, newest first, read per request (`$1` owner ids); None without
    /// an owner column.
    pub followee_posts_query: Option<String>,
    /// Explicit mode's rating model.
    pub rating: Option<Rating>,
    pub demographics_query: Option<String>,
    /// What the followees' reads need to go direct (`store::direct`).
    pub direct: super::direct::Shape,
    /// Their plans, prepared on first use.
    pub plans: RefCell<HashMap<&'static str, super::plan::KeptPlan>>,
    /// Where this connection last found posts (see [`Tids`]).
    pub tids: RefCell<Tids>,
}

impl std::ops::Deref for Serving {
    type Target = Data;
    fn deref(&self) -> &Data {
        &self.data
    }
}

impl std::ops::DerefMut for Serving {
    fn deref_mut(&mut self) -> &mut Data {
        &mut self.data
    }
}

impl Serving {
    /// Runs one of the request-time queries through its kept plan; `each` reads the rows in
    /// place ([`super::source::Row`]).
    pub fn run<'c, T>(
        &self,
        client: &pgrx::spi::SpiClient<'c>,
        name: &'static str,
        sql: &str,
        types: &[pgrx::PgOid],
        args: &[pgrx::datum::DatumWithOid<'_>],
        each: impl FnMut(&super::source::Row) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        if !self.plans.borrow().contains_key(name) {
            let plan = super::plan::KeptPlan::prepare(client, sql, types)?;
            self.plans.borrow_mut().insert(name, plan);
        }
        let plans = self.plans.borrow();
        let plan = plans.get(name).ok_or_else(|| RecsysError::Spi(format!("{name} plan missing")))?;
        plan.select(client, args, each)
    }

    /// The category of an item's post, if known.
    pub fn category(&self, item: u32) -> Option<&str> {
        let c = self.content.as_ref()?;
        let row = c.from_item.get(item as usize)?;
        let code = c.attr(row as usize)[0];
        (code != 0).then(|| c.dict_list.get(code as usize).map(|s| s.as_str())).flatten()
    }

    /// The model-wide side of scoring, with the demographic lists of `segments` (one user's:
    /// [`LazySegments::of`]).
    pub fn catalog<'a>(&'a self, segments: &'a Segments) -> recsys_core::hybrid::Catalog<'a> {
        static NONE: RowMap = RowMap::Prefix { mapped: 0, len: 0 };
        let (tfidf, to_item, from_item): (Option<&Tfidf>, &RowMap, &RowMap) = match &self.content {
            Some(c) => (Some(&c.tfidf), &c.to_item, &c.from_item),
            None => (None, &NONE, &NONE),
        };
        recsys_core::hybrid::Catalog {
            factors: self.factors,
            item_factors: &self.item_factors,
            gram: &self.gram,
            alpha: self.options.als.alpha,
            quantized: self.quantized.as_ref().filter(|_| !crate::gucs::exact_scan()),
            tfidf,
            to_item,
            from_item,
            popularity: &self.popularity,
            freshness: &self.freshness,
            segments,
            owners: &self.owners,
            graph: self.graph.as_ref(),
            ivf: self.ivf.as_ref().filter(|_| crate::gucs::partition_scan()),
        }
    }
}

/// The TF-IDF side of a model: every post of the posts table, interactions or not.
pub struct Content {
    pub ids: Buf<i64>,
    pub index: IdIndex,
    pub tfidf: Tfidf,
    /// Content row → ALS item index, when the post has factors. Training stores the documents
    /// in item order, so this is a prefix of the identity (no table) unless posts placed later
    /// broke the order.
    pub to_item: RowMap,
    /// ALS item index → content row, when the post is in the posts table (its inverse).
    pub from_item: RowMap,
    /// Per content row: category, project_code, mood as codes into `dict` (0 = NULL), three a row.
    pub attrs: Buf<u32>,
    pub dict: HashMap<String, u32>,
    pub dict_list: Vec<String>,
}

impl Content {
    /// The attribute codes a filter asks for: None = no filter on that attribute;
    /// Some(None) = a value no post has (the filter matches nothing).
    pub fn filter_codes(&self, wanted: [Option<&str>; 3]) -> [Option<Option<u32>>; 3] {
        wanted.map(|w| w.map(|v| self.dict.get(v).copied()))
    }

    /// Row `row`'s codes (all 0 when the row has none).
    pub fn attr(&self, row: usize) -> [u32; 3] {
        self.attrs.get(row * 3..row * 3 + 3).map_or([0; 3], |c| [c[0], c[1], c[2]])
    }

    pub fn matches(&self, row: usize, codes: &[Option<Option<u32>>; 3]) -> bool {
        codes.iter().zip(&self.attr(row)).all(|(want, have)| match want {
            None => true,
            Some(Some(c)) => c == have,
            Some(None) => false,
        })
    }
}

/// Identifies a stored model beyond its id: a dropped and recreated extension restarts the id
/// sequence, so a backend's cache must not take the new model 1 for the old one. The id, the
/// row's creation time (microseconds) and the model table's OID never repeat together.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ModelKey {
    pub id: i64,
    pub created_us: i64,
    pub table: u32,
}

/// The demographic segments. A call reads only the lists of its user's keys: from an image's
/// packed arrays those are copied out per call (nothing else parsed, nothing kept per
/// connection); a decoded model or an image written before the packed form holds them parsed.
pub enum LazySegments {
    /// A decoded model's lists.
    Ready(Segments),
    /// An older image's JSON over `items` model items, parsed (and checked) on first use.
    Json {
        json: Buf<u8>,
        items: usize,
        parsed: std::sync::OnceLock<Segments>,
    },
    Packed(PackedSegments),
}

/// [`Segments::pack`]'s arrays in an image: the key index (JSON, parsed on first use) and the
/// posts and scores, borrowed from the mapping.
pub struct PackedSegments {
    index: Buf<u8>,
    items: Buf<u32>,
    scores: Buf<f32>,
    /// Model items (every listed post must be one).
    n: usize,
    parsed: std::sync::OnceLock<Option<Vec<(String, u32, u32)>>>,
    /// A damaged list has been reported (once per connection, not once per call).
    warned: std::sync::atomic::AtomicBool,
}

impl PackedSegments {
    pub fn new(index: Buf<u8>, items: Buf<u32>, scores: Buf<f32>, n: usize) -> PackedSegments {
        PackedSegments { index, items, scores, n, parsed: std::sync::OnceLock::new(), warned: std::sync::atomic::AtomicBool::new(false) }
    }

    /// The key index, parsed on first use (empty, reported, when damaged).
    fn keys(&self) -> &[(String, u32, u32)] {
        let index = self.parsed.get_or_init(|| {
            let k = serde_json::from_slice::<Vec<(String, u32, u32)>>(&self.index).ok().filter(|k| k.windows(2).all(|w| w[0].0 < w[1].0));
            if k.is_none() {
                damaged();
                self.warned.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            k
        });
        index.as_deref().unwrap_or(&[])
    }

    /// The lists of `keys`; none when the arrays do not hold what the index says.
    fn of(&self, keys: &[String]) -> Segments {
        Segments::unpack(self.keys(), &self.items, &self.scores, keys, self.n).unwrap_or_else(|| {
            if self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                Segments::default()
            } else {
                damaged()
            }
        })
    }
}

fn damaged() -> Segments {
    // Written by this extension and checked when the image was made: a damaged image loses
    // the demographic signal, not the call.
    pgrx::warning!("pg_recsys: the model image's demographic segments are damaged; serving without them");
    Segments::default()
}

impl LazySegments {
    /// From an older image's JSON over `items` model items (checked when parsed).
    pub fn raw(json: Buf<u8>, items: usize) -> LazySegments {
        LazySegments::Json { json, items, parsed: std::sync::OnceLock::new() }
    }

    /// Every list (to write an image; the decoded model holds them parsed already).
    pub fn all(&self) -> std::borrow::Cow<'_, Segments> {
        match self.whole() {
            Ok(all) => std::borrow::Cow::Borrowed(all),
            Err(p) => {
                let keys: Vec<String> = p.keys().iter().map(|k| k.0.clone()).collect();
                std::borrow::Cow::Owned(p.of(&keys))
            }
        }
    }

    /// The lists of `keys` (a user's segments), no other.
    pub fn of(&self, keys: &[String]) -> Segments {
        if keys.is_empty() {
            return Segments::default();
        }
        match self.whole() {
            Ok(all) => Segments { lists: keys.iter().filter_map(|k| all.lists.get(k).map(|l| (k.clone(), l.clone()))).collect() },
            Err(p) => p.of(keys),
        }
    }

    /// Every list, parsed (an older image's JSON on first use); a packed image is never parsed
    /// whole: its arrays instead.
    fn whole(&self) -> std::result::Result<&Segments, &PackedSegments> {
        match self {
            LazySegments::Ready(s) => Ok(s),
            LazySegments::Json { json, items, parsed } => Ok(parsed.get_or_init(|| match serde_json::from_slice::<Segments>(json) {
                Ok(s) if s.fits(*items) => s,
                _ => damaged(),
            })),
            LazySegments::Packed(p) => Err(p),
        }
    }
}

/// Everything of a served model that is data: what the stored parts decode to and what a model
/// image holds. The rest of [`Serving`] (queries, plans) is built from the options at load.
pub struct Data {
    pub factors: usize,
    pub item_ids: Buf<i64>,
    pub item_index: IdIndex,
    pub item_factors: Buf<f32>,
    pub item_norms: Buf<f32>,
    /// Distinct users per post at training time, scaled to [0, 1].
    pub popularity: Buf<f32>,
    /// YᵀY + λI, for fold-in.
    pub gram: Buf<f32>,
    pub content: Option<Content>,
    /// int8 copy of the item factors for the full scan of large catalogues.
    pub quantized: Option<recsys_core::kernels::QuantizedRows>,
    /// Item indices by popularity (best first, ties by post id): the cold-start feed is a walk.
    pub popularity_order: Buf<u32>,
    /// Items 0..interacted_items had interactions; the rest were placed by content.
    pub interacted_items: usize,
    /// Per item, in [0, 1]; empty when posts have no creation time.
    pub freshness: Buf<f32>,
    /// The newest post's creation day at training (NaN = unknown or an older model).
    pub newest_day: f32,
    /// Items per owner (user id).
    pub owned: IdLists,
    /// Per item: owner user id (i64::MIN = unknown; empty = no owner column).
    pub owners: Buf<i64>,
    /// Followers per followed user at training time (degree damping).
    pub followers: IdIndex,
    pub segments: LazySegments,
    pub graph: Option<recsys_core::graph::ItemGraph>,
    /// The partition of the item factors (exact ALS-only top-k without a full scan).
    pub ivf: Option<recsys_core::ivf::Ivf>,
}

/// The explicit-mode rating model as decoded (its query is built at load).
pub type RatingParts = (ExplicitModel, Option<Knn>);

/// The model's tables as the catalog has them: (interactions, follows, users, posts).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Tables {
    pub interactions: source::Resolved,
    pub follows: Option<source::Resolved>,
    pub users: Option<source::Resolved>,
    pub posts: Option<source::Resolved>,
}

/// Where this connection last found posts: post id → the ctid of the row version it read.
///
/// A place is only a hint. The check reads the row there under the call's snapshot, predicate
/// and row-level security, like any other row: what comes back is a visible post with its
/// title now, whichever post that is. A hinted post that does not come back (updated, deleted,
/// hidden, the table rewritten) is looked up by id in a second statement, and its hint is
/// replaced or dropped. So the answer is the id lookup's answer; the hint saves the index
/// descent. When more than a quarter of the calls need the second statement (e.g. posts rows
/// updated all the time), the connection stops using hints for this model version.
#[derive(Default)]
pub struct Tids {
    pub(crate) at: recsys_core::fasthash::IndexMap<i64, pgrx::pg_sys::ItemPointerData>,
    pub(crate) calls: u32,
    pub(crate) rechecks: u32,
}

/// Hints kept per connection and model version (about 32 bytes each): a bound on private
/// memory; the map starts over when full.
pub(crate) const MAX_TIDS: usize = 16_384;

impl Tids {
    pub(crate) fn in_use(&self) -> bool {
        self.calls < 64 || u64::from(self.rechecks) * 4 <= u64::from(self.calls)
    }
}

/// The call-time queries over the posts table, built at model load from server-quoted names.
pub struct LiveQueries {
    /// (id, title) of the visible posts among `$1::int8[]`.
    pub check: String,
    /// (ctid, id, title) of the visible rows at `$1::tid[]` and of the visible posts among
    /// `$2::int8[]` (None unless the posts table is a plain table; `check` then returns the
    /// ctid first too).
    pub check_tids: Option<String>,
    /// Visible post ids matching the feed filters: one statement per combination of the three
    /// filters (bit 0 category, 1 project_code, 2 mood), each `$n` a text; index-friendly.
    pub filters: [Option<String>; 8],
}

/// Posts created after training, read at call time (see store::new_posts).
pub struct NewPosts {
    /// Posts with an id above `$1`, lowest first, at most `$2`.
    pub(crate) query: String,
    /// Whether a post has an id above `$2`: an SQL boolean expression.
    pub(crate) exists: String,
    /// The highest post id the stored model knows.
    pub(crate) trained_max: i64,
    /// The highest id read so far, and by whom.
    pub(crate) read: Cell<Option<(Reader, i64)>>,
}

impl NewPosts {
    /// `known`: the id indexes of the posts the model knows (their largest ids are read, no
    /// scan: a new connection opens the model without touching every id).
    pub fn new(t: &Resolved, known: [&IdIndex; 2]) -> NewPosts {
        let trained_max = known.iter().filter_map(|x| x.max_id()).max().unwrap_or(i64::MIN);
        NewPosts { query: source::new_posts_query(t), exists: source::new_posts_exist(t), trained_max, read: Cell::new(None) }
    }
}

/// Who reads: the new-posts query runs under the caller's rights (row-level security applies),
/// so how far a backend has read is kept per (role, row_security, custom settings'
/// fingerprint). A post hidden from one role, or from one tenant of a role whose policy reads a
/// setting, is read again when another calls.
pub type Reader = (u32, bool, u128);
