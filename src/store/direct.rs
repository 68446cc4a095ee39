//! Per-call reads by key through a btree index without the executor: a user's followees (and
//! which of them follow back), the followees' newest engagements and their newest posts. Each
//! returns the rows its SQL statement in `source` returns, in the same order, for a fraction of
//! the cost: no plan to revalidate and start, no expression evaluated and no result slot formed
//! per row; an index-only read when the index holds the columns (as the executor's, visiting the
//! heap only on pages not all-visible).
//!
//! A read here applies only when its rows cannot differ from the statement's; otherwise it
//! answers None and the caller runs the statement (which also raises any error the caller's
//! rights call for): a plain table without children, SELECT granted on the table itself to the
//! current user, no row-level security for them, a valid btree index without predicate led by
//! the key (and the order column) under the default integer and date-time operator families,
//! a transaction that has written nothing (the statement would read through a new snapshot to
//! see its own writes) and is not serializable (the statement would take predicate locks), and
//! column types whose conversion is exact (checked at model load, [`Shape`]).
use crate::options::TrainOptions;
use crate::store::source::{self, Resolved};
use pgrx::datum::FromDatum;
use pgrx::pg_sys;
use recsys_core::fasthash::IndexSet;

const INTEGER_FAM: pg_sys::Oid = pg_sys::INTEGER_BTREE_FAM_OID;
/// `datetime_ops`: date, timestamp and timestamptz (pg_opfamily.dat).
const DATETIME_FAM: pg_sys::Oid = pg_sys::Oid::from_u32(434);
/// `text_ops` (text and varchar).
const TEXT_FAM: pg_sys::Oid = pg_sys::TEXT_BTREE_FAM_OID;

/// Whether this statement's reads may go direct at all (the table-level checks are in
/// [`Table::open`]).
pub fn usable() -> bool {
    // SAFETY: reads of backend-global transaction state on the backend thread.
    unsafe {
        crate::gucs::direct_reads()
            && pg_sys::ActiveSnapshotSet()
            && pg_sys::GetCurrentTransactionIdIfAny() == pg_sys::InvalidTransactionId
            && pg_sys::XactIsoLevel != pg_sys::XACT_SERIALIZABLE as i32
    }
}

/// A column of a mapped table as the direct reads use it: its name as stored (unquoted) and
/// how its values convert.
#[derive(Clone, Debug)]
pub struct Col {
    name: String,
    kind: Kind,
}

/// The column types a direct read converts exactly as the statement's cast does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// int2, int4, int8 (`::int8`).
    Int(pg_sys::Oid),
    /// timestamptz (`::timestamptz` is the identity); timestamp and date only order rows.
    Time(pg_sys::Oid),
    /// text, varchar (`::text` keeps the bytes).
    Text,
    /// int2/4/8, float4/8, numeric (`::float8`).
    Float(pg_sys::Oid),
}

fn col(t: &Resolved, role: &str) -> Option<Col> {
    let quoted = t.col(role)?;
    let name = match quoted.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => quoted.to_string(),
    };
    let kind = match t.types.get(role)?.as_str() {
        "int2" => Kind::Int(pg_sys::INT2OID),
        "int4" => Kind::Int(pg_sys::INT4OID),
        "int8" => Kind::Int(pg_sys::INT8OID),
        "timestamptz" => Kind::Time(pg_sys::TIMESTAMPTZOID),
        "timestamp" => Kind::Time(pg_sys::TIMESTAMPOID),
        "date" => Kind::Time(pg_sys::DATEOID),
        "text" => Kind::Text,
        "varchar" => Kind::Text,
        "float4" => Kind::Float(pg_sys::FLOAT4OID),
        "float8" => Kind::Float(pg_sys::FLOAT8OID),
        "numeric" => Kind::Float(pg_sys::NUMERICOID),
        _ => return None,
    };
    Some(Col { name, kind })
}

/// What the direct reads of one model need from its tables, worked out at load: None for a
/// read whose columns do not all convert exactly (that read always runs its statement).
#[derive(Clone, Debug, Default)]
pub struct Shape {
    follows: Option<Follows>,
    events: Option<Events>,
    posts: Option<Posts>,
    live: Option<Live>,
    /// The posts table and its id column, for the newest id.
    max_id: Option<(String, Col)>,
    users: Option<Users>,
}

/// The users table as the demographics read uses it.
#[derive(Clone, Debug)]
struct Users {
    table: String,
    id: Col,
    /// age (numeric), gender, location (text), each when the table maps it.
    cols: [Option<Col>; 3],
}

#[derive(Clone, Debug)]
struct Follows {
    table: String,
    follower: Col,
    followee: Col,
    time: Option<Col>,
}

#[derive(Clone, Debug)]
struct Events {
    table: String,
    user: Col,
    post: Col,
    /// timestamptz (a timestamp or date column's cast depends on the session's time zone).
    time: Option<Col>,
    kind: Option<Col>,
    value: Option<Col>,
}

impl Events {
    /// The columns read per event (post, time, kind, value; those the table has) and where
    /// kind and value are among them.
    fn columns(&self, table: &Table) -> Option<(Vec<i16>, Vec<Kind>, Option<usize>, Option<usize>)> {
        let (mut atts, mut kinds) = (vec![], vec![]);
        let mut at = [None; 4];
        for (i, c) in [Some(&self.post), self.time.as_ref(), self.kind.as_ref(), self.value.as_ref()].into_iter().enumerate() {
            if let Some(c) = c {
                at[i] = Some(atts.len());
                atts.push(table.attnum(c)?);
                kinds.push(c.kind);
            }
        }
        Some((atts, kinds, at[2], at[3]))
    }

    /// An event row's weight and day as `request::weight_and_day` computes them from the
    /// statement's columns (`time` None: no time column, or NULL).
    fn weight_and_day(o: &TrainOptions, v: &Vals<'_>, time: Option<i64>, kind: Option<usize>, value: Option<usize>) -> Option<(f32, f32)> {
        let w = source::event_weight(o, kind.and_then(|i| v.text(i)), value.and_then(|i| v.float(i)));
        source::finite_weight(Some(w)).zip(source::finite_day(Some(source::epoch_day(time))))
    }
}

/// The posts table as the visibility check reads it (no `visible` predicate: that is SQL).
#[derive(Clone, Debug)]
struct Live {
    table: String,
    id: Col,
    title: Option<Col>,
    /// category, project_code, mood when text or varchar (a feed's filters).
    attrs: [Option<Col>; 3],
}

#[derive(Clone, Debug)]
struct Posts {
    table: String,
    id: Col,
    owner: Col,
    time: Col,
}

fn is_int(c: &Col) -> bool {
    matches!(c.kind, Kind::Int(_))
}

impl Shape {
    /// `visible`: the posts' visibility predicate (a check with one always runs its statement).
    pub fn new(interactions: &Resolved, follows: Option<&Resolved>, posts: Option<&Resolved>, users: Option<&Resolved>, visible: Option<&str>) -> Shape {
        let users = users.filter(|u| u.heap).and_then(|u| {
            let id = col(u, "id").filter(is_int)?;
            // A column of another type would be cast by the statement: then it runs.
            let one = |role: &str, ok: fn(Kind) -> bool| match u.col(role) {
                Some(_) => col(u, role).filter(|c| ok(c.kind)).map(Some),
                None => Some(None),
            };
            let cols =
                [one("age", |k| matches!(k, Kind::Int(_) | Kind::Float(_)))?, one("gender", |k| k == Kind::Text)?, one("location", |k| k == Kind::Text)?];
            Some(Users { table: u.table.clone(), id, cols })
        });
        let follows = follows.filter(|f| f.heap).and_then(|f| {
            let (follower, followee) = (col(f, "follower")?, col(f, "followee")?);
            let time = match f.col("time") {
                Some(_) => Some(col(f, "time").filter(|c| matches!(c.kind, Kind::Time(_)))?),
                None => None,
            };
            (is_int(&follower) && is_int(&followee)).then(|| Follows { table: f.table.clone(), follower, followee, time })
        });
        let t = interactions;
        let events = t.heap.then_some(()).and_then(|_| {
            let (user, post) = (col(t, "user")?, col(t, "post")?);
            let time = match t.col("time") {
                Some(_) => Some(col(t, "time").filter(|c| c.kind == Kind::Time(pg_sys::TIMESTAMPTZOID))?),
                None => None,
            };
            let kind = match t.col("kind") {
                Some(_) => Some(col(t, "kind").filter(|c| c.kind == Kind::Text)?),
                None => None,
            };
            let value = match t.col("value") {
                Some(_) => Some(col(t, "value").filter(|c| matches!(c.kind, Kind::Float(_) | Kind::Int(_)))?),
                None => None,
            };
            (is_int(&user) && is_int(&post)).then(|| Events { table: t.table.clone(), user, post, time, kind, value })
        });
        let live = posts.filter(|p| p.heap && visible.is_none()).and_then(|p| {
            let id = col(p, "id").filter(is_int)?;
            let title = match p.col("title") {
                Some(_) => Some(col(p, "title").filter(|c| c.kind == Kind::Text)?),
                None => None,
            };
            let attrs = ["category", "project_code", "mood"].map(|r| col(p, r).filter(|c| c.kind == Kind::Text));
            Some(Live { table: p.table.clone(), id, title, attrs })
        });
        let max_id = posts.filter(|p| p.heap).and_then(|p| Some((p.table.clone(), col(p, "id").filter(is_int)?)));
        let posts = posts.filter(|p| p.heap).and_then(|p| {
            let (id, owner, time) = (col(p, "id")?, col(p, "owner")?, col(p, "time")?);
            (is_int(&id) && is_int(&owner) && matches!(time.kind, Kind::Time(_))).then(|| Posts { table: p.table.clone(), id, owner, time })
        });
        Shape { follows, events, posts, live, max_id, users }
    }
}

/// A table opened for direct reads (AccessShareLock, held to the transaction's end as a
/// statement's is).
struct Table(pg_sys::Relation);

impl Table {
    /// `name` (schema-qualified and quoted, as resolved at load) opened, or None when a direct
    /// read of it might differ from the statement's (see the module's doc).
    fn open(name: &str) -> Option<Table> {
        let cname = std::ffi::CString::new(name).ok()?;
        // SAFETY: on the backend thread inside a transaction. The name list and range var live
        // in the current memory context; the lookup locks the relation (AccessShareLock) as a
        // statement's parse does, or finds nothing; a missing schema or no USAGE on it raises
        // the error the statement would.
        unsafe {
            let rv = pg_sys::makeRangeVarFromNameList(pg_sys::stringToQualifiedNameList(cname.as_ptr()));
            let oid = pg_sys::RangeVarGetRelidExtended(rv, pg_sys::AccessShareLock as i32, pg_sys::RVROption::RVR_MISSING_OK, None, std::ptr::null_mut());
            if oid == pg_sys::InvalidOid {
                return None;
            }
            let rel = Table(pg_sys::table_open(oid, pg_sys::NoLock as i32));
            let form = &*(*rel.0).rd_rel;
            let plain = form.relkind as u8 == pg_sys::RELKIND_RELATION && form.relam == pg_sys::HEAP_TABLE_AM_OID && !form.relhassubclass;
            let granted = pg_sys::pg_class_aclcheck(oid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as pg_sys::AclMode) == pg_sys::AclResult::ACLCHECK_OK;
            let no_rls = pg_sys::check_enable_rls(oid, pg_sys::InvalidOid, true) == pg_sys::CheckEnableRlsResult::RLS_NONE as i32;
            (plain && granted && no_rls).then_some(rel)
        }
    }

    /// The attribute number of column `name` when its type is `typ`.
    fn attnum_of(&self, name: &str, typ: pg_sys::Oid) -> Option<i16> {
        // SAFETY: the relation is open; its descriptor holds `natts` attributes.
        unsafe {
            let desc = (*self.0).rd_att;
            let attrs = (*desc).attrs.as_slice((*desc).natts as usize);
            let a = attrs.iter().find(|a| !a.attisdropped && std::ffi::CStr::from_ptr(a.attname.data.as_ptr()).to_bytes() == name.as_bytes())?;
            (a.atttypid == typ).then_some(a.attnum)
        }
    }

    /// The collation of attribute `att`.
    fn collation(&self, att: i16) -> pg_sys::Oid {
        // SAFETY: the relation is open and `att` one of its attribute numbers (from `attnum`).
        unsafe {
            let desc = (*self.0).rd_att;
            (*desc).attrs.as_slice((*desc).natts as usize)[(att - 1) as usize].attcollation
        }
    }

    /// The attribute number of `c` when it has the type it had at load.
    fn attnum(&self, c: &Col) -> Option<i16> {
        match c.kind {
            Kind::Int(t) | Kind::Time(t) | Kind::Float(t) => self.attnum_of(&c.name, t),
            Kind::Text => self.attnum_of(&c.name, pg_sys::TEXTOID).or_else(|| self.attnum_of(&c.name, pg_sys::VARCHAROID)),
        }
    }

    /// A usable btree index whose leading key columns are `lead` (attribute numbers) under
    /// `families`; among several, one holding all of `want` (an index-only read), then the
    /// narrowest. Chosen from the catalogues, so only that index is opened (in a new
    /// connection, building an index's relation cache entry is most of its cost); checked
    /// again once open: None (the caller's statement, or its other index) when it no longer
    /// fits (a concurrent change of the index).
    fn index(&self, lead: &[(i16, pg_sys::Oid)], want: &[i16]) -> Option<Index> {
        let mut best: Option<(pg_sys::Oid, bool, i16)> = None;
        // SAFETY: the relation is open; the index list is a copy, freed here; the catalogue
        // rows are read through the syscache (`fits_by_catalog`); the chosen index is opened
        // with AccessShareLock and kept.
        unsafe {
            let list = pg_sys::RelationGetIndexList(self.0);
            let n = if list.is_null() { 0 } else { (*list).length as usize };
            for i in 0..n {
                let oid = (*(*list).elements.add(i)).oid_value;
                let Some((covers, natts)) = fits_by_catalog(oid, lead, want) else { continue };
                if best.is_none_or(|(_, c, w)| (covers, -natts) > (c, -w)) {
                    best = Some((oid, covers, natts));
                }
            }
            if !list.is_null() {
                pg_sys::list_free(list);
            }
            let (oid, covers, natts) = best?;
            let idx = Index(pg_sys::index_open(oid, pg_sys::AccessShareLock as i32));
            (idx.fits(lead, want) == Some((covers, natts))).then_some(idx)
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // On an ERROR the transaction's abort releases the relation; nothing is called then.
        if !std::thread::panicking() {
            // SAFETY: opened by `open`, closed once; the lock is kept to the transaction's end.
            unsafe { pg_sys::table_close(self.0, pg_sys::NoLock as i32) };
        }
    }
}

/// [`Index::fits`] for index `oid` from its pg_index, pg_class and pg_opclass rows (the
/// syscache), without opening it.
///
/// # Safety
/// On the backend thread inside a transaction.
unsafe fn fits_by_catalog(oid: pg_sys::Oid, lead: &[(i16, pg_sys::Oid)], want: &[i16]) -> Option<(bool, i16)> {
    // SAFETY: syscache lookups on the backend thread; each tuple is released before return and
    // read only while held; `indclass` is a non-null oidvector of `indnatts` entries.
    unsafe {
        let am = {
            let t = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(oid.to_u32()));
            if t.is_null() {
                return None;
            }
            let am = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(t)).relam;
            pg_sys::ReleaseSysCache(t);
            am
        };
        if am != pg_sys::BTREE_AM_OID {
            return None;
        }
        let t = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::INDEXRELID as i32, pg_sys::Datum::from(oid.to_u32()));
        if t.is_null() {
            return None;
        }
        let fits = (|| {
            let ix = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_index>(t);
            let usable = ix.indisvalid && ix.indisready && ix.indislive && !ix.indcheckxmin;
            let partial = !pg_sys::heap_attisnull(t, pg_sys::Anum_pg_index_indpred as i32, std::ptr::null_mut());
            if !usable || partial || (ix.indnkeyatts as usize) < lead.len() {
                return None;
            }
            let keys = ix.indkey.values.as_slice(ix.indnatts as usize);
            let mut isnull = false;
            let d =
                pg_sys::SysCacheGetAttr(pg_sys::SysCacheIdentifier::INDEXRELID as i32, t, pg_sys::Anum_pg_index_indclass as pg_sys::AttrNumber, &mut isnull);
            if isnull {
                return None;
            }
            let classes = (*(d.cast_mut_ptr::<pg_sys::oidvector>())).values.as_slice(ix.indnatts as usize);
            for (i, (att, fam)) in lead.iter().enumerate() {
                if keys[i] != *att || pg_sys::get_opclass_family(classes[i]) != *fam {
                    return None;
                }
            }
            Some((want.iter().all(|a| keys.contains(a)), ix.indnatts))
        })();
        pg_sys::ReleaseSysCache(t);
        fits
    }
}

struct Index(pg_sys::Relation);

impl Index {
    /// (holds every column of `want`, its column count) when this index can serve a read led
    /// by `lead`.
    fn fits(&self, lead: &[(i16, pg_sys::Oid)], want: &[i16]) -> Option<(bool, i16)> {
        // SAFETY: the index is open; its pg_index row, operator families and options arrays
        // hold `indnkeyatts` key columns.
        unsafe {
            let r = self.0;
            let ix = &*(*r).rd_index;
            let usable = (*(*r).rd_rel).relam == pg_sys::BTREE_AM_OID && ix.indisvalid && ix.indisready && ix.indislive && !ix.indcheckxmin;
            if !usable || (ix.indnkeyatts as usize) < lead.len() || !pg_sys::RelationGetIndexPredicate(r).is_null() {
                return None;
            }
            let keys = ix.indkey.values.as_slice(ix.indnatts as usize);
            for (i, (att, fam)) in lead.iter().enumerate() {
                if keys[i] != *att || *(*r).rd_opfamily.add(i) != *fam {
                    return None;
                }
            }
            Some((want.iter().all(|a| keys.contains(a)), ix.indnatts))
        }
    }

    /// Whether key column `i` (from 0) is stored descending.
    fn descending(&self, i: usize) -> bool {
        // SAFETY: the index is open and `i` is one of the key columns checked by `fits`.
        unsafe { (*(*self.0).rd_indoption.add(i) as u32 & pg_sys::INDOPTION_DESC) != 0 }
    }

    /// The collation of key column `i` (from 0).
    fn collation(&self, i: usize) -> pg_sys::Oid {
        // SAFETY: the index is open and `i` is one of the key columns checked by `fits`.
        unsafe { *(*self.0).rd_indcollation.add(i) }
    }

    /// Index column position (from 0) of attribute `att`.
    fn position(&self, att: i16) -> Option<usize> {
        // SAFETY: the index is open; `indkey` holds `indnatts` entries.
        unsafe {
            let ix = &*(*self.0).rd_index;
            ix.indkey.values.as_slice(ix.indnatts as usize).iter().position(|a| *a == att)
        }
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: opened by `Table::index`, closed once, keeping the lock.
            unsafe { pg_sys::index_close(self.0, pg_sys::NoLock as i32) };
        }
    }
}

/// One row's columns as read, in the order asked.
struct Vals<'a> {
    values: &'a [pg_sys::Datum],
    nulls: &'a [bool],
    kinds: &'a [Kind],
    /// Where the row is (`ctid`) when it was read from the heap.
    tid: Option<pg_sys::ItemPointerData>,
}

impl Vals<'_> {
    /// An integer column's value, or a time column's as an ordering key: microseconds
    /// (timestamptz, timestamp) or days (date).
    fn int(&self, i: usize) -> Option<i64> {
        if self.nulls[i] {
            return None;
        }
        let d = self.values[i];
        Some(match self.kinds[i] {
            Kind::Int(pg_sys::INT2OID) => d.value() as i16 as i64,
            Kind::Int(pg_sys::INT4OID) | Kind::Time(pg_sys::DATEOID) => d.value() as i32 as i64,
            _ => d.value() as i64,
        })
    }

    fn text(&self, i: usize) -> Option<&str> {
        // SAFETY: a text or varchar datum of the row being read (detoasted into the current
        // memory context if needed), borrowed only while the row is.
        unsafe { <&str>::from_polymorphic_datum(self.values[i], self.nulls[i], pg_sys::TEXTOID) }
    }

    fn float(&self, i: usize) -> Option<f64> {
        if self.nulls[i] {
            return None;
        }
        let d = self.values[i];
        Some(match self.kinds[i] {
            Kind::Float(pg_sys::FLOAT4OID) => f32::from_bits(d.value() as u32) as f64,
            Kind::Float(pg_sys::FLOAT8OID) => f64::from_bits(d.value() as u64),
            // numeric_float8, as the `::float8` cast calls it.
            Kind::Float(_) => unsafe { pgrx::direct_function_call::<f64>(pg_sys::numeric_float8, &[Some(d)])? },
            Kind::Int(_) => self.int(i)? as f64,
            _ => return None,
        })
    }
}

/// The key `v` as a datum of the column's integer type; None when no value of that type
/// equals it (nothing can match).
fn key_datum(kind: Kind, v: i64) -> Option<Key> {
    match kind {
        Kind::Int(pg_sys::INT2OID) => i16::try_from(v).ok().map(|x| (pg_sys::Datum::from(x), pg_sys::F_INT2EQ, pg_sys::InvalidOid)),
        Kind::Int(pg_sys::INT4OID) => i32::try_from(v).ok().map(|x| (pg_sys::Datum::from(x), pg_sys::F_INT4EQ, pg_sys::InvalidOid)),
        _ => Some((pg_sys::Datum::from(v), pg_sys::F_INT8EQ, pg_sys::InvalidOid)),
    }
}

/// An equality key: the value, its equality function, its collation (text only).
type Key = (pg_sys::Datum, u32, pg_sys::Oid);

/// A read of `table` through `index`: the rows whose leading key columns equal `keys`, in
/// `dir` order of the index, each handed to `each` with the attributes `atts` (whose kinds are
/// `kinds`) until it answers false.
struct Scan<'a> {
    table: &'a Table,
    index: &'a Index,
    atts: &'a [i16],
    kinds: &'a [Kind],
    /// Index positions of `atts` when the index holds them all (an index-only read).
    at: Option<Vec<usize>>,
}

impl<'a> Scan<'a> {
    fn new(table: &'a Table, index: &'a Index, atts: &'a [i16], kinds: &'a [Kind]) -> Scan<'a> {
        let at = atts.iter().map(|a| index.position(*a)).collect::<Option<Vec<_>>>();
        Scan { table, index, atts, kinds, at }
    }

    /// A scan that reads every row from the heap (each with its place), index-only or not.
    fn from_heap(table: &'a Table, index: &'a Index, atts: &'a [i16], kinds: &'a [Kind]) -> Scan<'a> {
        let at = None;
        Scan { table, index, atts, kinds, at }
    }

    fn run(&self, keys: &[Key], backward: bool, mut each: impl FnMut(&Vals<'_>) -> bool) {
        let dir = if backward { pg_sys::ScanDirection::BackwardScanDirection } else { pg_sys::ScanDirection::ForwardScanDirection };
        let n = self.atts.len();
        let mut values = vec![pg_sys::Datum::from(0usize); n];
        let mut nulls = vec![true; n];
        // SAFETY: on the backend thread in a transaction with an active snapshot (`usable`);
        // the table and index are open and locked. The scan keys, slot and visibility-map
        // buffer live until the scan ends here; every row's values are read before the next
        // row is fetched. An ERROR unwinds through pgrx's guard and the transaction's abort
        // releases the scan's pins and memory.
        unsafe {
            let scan = pg_sys::index_beginscan(self.table.0, self.index.0, pg_sys::GetActiveSnapshot(), keys.len() as i32, 0);
            let mut sk: Vec<pg_sys::ScanKeyData> = vec![std::mem::zeroed(); keys.len()];
            for (i, (d, proc_, collation)) in keys.iter().enumerate() {
                pg_sys::ScanKeyInit(&mut sk[i], (i + 1) as i16, pg_sys::BTEqualStrategyNumber as u16, pg_sys::Oid::from_u32(*proc_), *d);
                sk[i].sk_collation = *collation;
            }
            let slot = pg_sys::table_slot_create(self.table.0, std::ptr::null_mut());
            let mut vm: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
            match &self.at {
                Some(at) => {
                    (*scan).xs_want_itup = true;
                    pg_sys::index_rescan(scan, sk.as_mut_ptr(), keys.len() as i32, std::ptr::null_mut(), 0);
                    let natts = (*(*scan).xs_itupdesc).natts as usize;
                    let (mut iv, mut inull) = (vec![pg_sys::Datum::from(0usize); natts], vec![true; natts]);
                    loop {
                        let tid = pg_sys::index_getnext_tid(scan, dir);
                        if tid.is_null() {
                            break;
                        }
                        let blk = ((*tid).ip_blkid.bi_hi as u32) << 16 | (*tid).ip_blkid.bi_lo as u32;
                        // As the executor's index-only scan: the heap decides visibility unless
                        // the page is all-visible.
                        if pg_sys::visibilitymap_get_status(self.table.0, blk, &mut vm) as u32 & pg_sys::VISIBILITYMAP_ALL_VISIBLE == 0
                            && !pg_sys::index_fetch_heap(scan, slot)
                        {
                            continue;
                        }
                        pg_sys::index_deform_tuple((*scan).xs_itup, (*scan).xs_itupdesc, iv.as_mut_ptr(), inull.as_mut_ptr());
                        for (j, p) in at.iter().enumerate() {
                            (values[j], nulls[j]) = (iv[*p], inull[*p]);
                        }
                        if !each(&Vals { values: &values, nulls: &nulls, kinds: self.kinds, tid: None }) {
                            break;
                        }
                    }
                }
                None => {
                    pg_sys::index_rescan(scan, sk.as_mut_ptr(), keys.len() as i32, std::ptr::null_mut(), 0);
                    while pg_sys::index_getnext_slot(scan, dir, slot) {
                        pg_sys::slot_getallattrs(slot);
                        for (j, a) in self.atts.iter().enumerate() {
                            let k = (*a - 1) as usize;
                            (values[j], nulls[j]) = (*(*slot).tts_values.add(k), *(*slot).tts_isnull.add(k));
                        }
                        if !each(&Vals { values: &values, nulls: &nulls, kinds: self.kinds, tid: Some((*slot).tts_tid) }) {
                            break;
                        }
                    }
                }
            }
            if vm != pg_sys::InvalidBuffer as pg_sys::Buffer {
                pg_sys::ReleaseBuffer(vm);
            }
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::index_endscan(scan);
        }
    }
}

/// [`source::followees_query`]'s rows, (followee, follows back), read direct; None: run it.
pub fn followees(shape: &Shape, user_id: i64, limit: usize) -> Option<Vec<(i64, bool)>> {
    let f = shape.follows.as_ref()?;
    let table = Table::open(&f.table)?;
    let (a, b) = (table.attnum(&f.follower)?, table.attnum(&f.followee)?);
    let t = match &f.time {
        Some(c) => Some(table.attnum(c)?),
        None => None,
    };
    let mut atts = vec![b];
    let mut kinds = vec![f.followee.kind];
    if let (Some(t), Some(c)) = (t, &f.time) {
        atts.push(t);
        kinds.push(c.kind);
    }
    let index = table.index(&[(a, INTEGER_FAM)], &atts)?;
    let mut rows: Vec<(Option<i64>, i64)> = vec![];
    if let Some(key) = key_datum(f.follower.kind, user_id) {
        Scan::new(&table, &index, &atts, &kinds).run(&[key], false, |v| {
            if let Some(id) = v.int(0).filter(|id| *id != user_id) {
                rows.push((if atts.len() > 1 { v.int(1) } else { None }, id));
            }
            true
        });
    }
    // ORDER BY time DESC NULLS LAST, followee; LIMIT.
    rows.sort_by(|x, y| match (x.0, y.0) {
        (Some(p), Some(q)) => q.cmp(&p).then(x.1.cmp(&y.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => x.1.cmp(&y.1),
    });
    rows.truncate(limit);
    // Follows back: an edge (followee → user), looked up by the (follower, followee) index
    // when there is one.
    let both = table.index(&[(a, INTEGER_FAM), (b, INTEGER_FAM)], &[b]);
    let probe = both.as_ref().unwrap_or(&index);
    let back = [b];
    let back_kind = [f.followee.kind];
    let scan = Scan::new(&table, probe, &back, &back_kind);
    let me = key_datum(f.followee.kind, user_id);
    Some(
        rows.into_iter()
            .map(|(_, id)| {
                let mut found = false;
                if let Some(k) = key_datum(f.follower.kind, id) {
                    match (&both, me) {
                        (Some(_), Some(m)) => scan.run(&[k, m], false, |_| {
                            found = true;
                            false
                        }),
                        (Some(_), None) => {}
                        (None, _) => scan.run(&[k], false, |v| {
                            found = v.int(0) == Some(user_id);
                            !found
                        }),
                    }
                }
                (id, found)
            })
            .collect(),
    )
}

/// [`source::user_history_query`]'s rows, (post, weight and day when the row counts), read
/// direct; None: run it.
pub fn history(shape: &Shape, o: &TrainOptions, user_id: i64) -> Option<Vec<(i64, Option<(f32, f32)>)>> {
    let e = shape.events.as_ref()?;
    let table = Table::open(&e.table)?;
    let u = table.attnum(&e.user)?;
    let (atts, kinds, ki, vi) = e.columns(&table)?;
    let index = table.index(&[(u, INTEGER_FAM)], &atts)?;
    let mut out = vec![];
    let Some(key) = key_datum(e.user.kind, user_id) else { return Some(out) };
    let timed = e.time.is_some();
    Scan::new(&table, &index, &atts, &kinds).run(&[key], false, |v| {
        if let Some(p) = v.int(0) {
            let time = if timed { v.int(1) } else { None };
            out.push((p, Events::weight_and_day(o, v, time, ki, vi)));
        }
        true
    });
    Some(out)
}

/// [`source::followee_events_query`]'s rows, (followee, post, weight, day) with the rows
/// `weight_and_day` would skip left out, read direct; None: run it.
pub fn followee_events(shape: &Shape, o: &TrainOptions, ids: &[i64], limit: usize) -> Option<Vec<(i64, i64, f32, f32)>> {
    let e = shape.events.as_ref()?;
    let table = Table::open(&e.table)?;
    // Without a time column the statement takes any `limit` rows: run it.
    let (u, t) = (table.attnum(&e.user)?, table.attnum(e.time.as_ref()?)?);
    let (atts, kinds, ki, vi) = e.columns(&table)?;
    let index = table.index(&[(u, INTEGER_FAM), (t, DATETIME_FAM)], &atts)?;
    // Newest first: backwards through an ascending time column.
    let backward = !index.descending(1);
    let scan = Scan::new(&table, &index, &atts, &kinds);
    let mut out = vec![];
    for &id in ids {
        let Some(key) = key_datum(e.user.kind, id) else { continue };
        let mut taken = 0;
        scan.run(&[key], backward, |v| {
            let (Some(p), Some(time)) = (v.int(0), v.int(1)) else { return true };
            // WHERE post IS NOT NULL AND time IS NOT NULL ... LIMIT counts these rows.
            taken += 1;
            if let Some((w, d)) = Events::weight_and_day(o, v, Some(time), ki, vi) {
                out.push((id, p, w, d));
            }
            taken < limit
        });
    }
    Some(out)
}

/// [`source::owned_posts_query`]'s rows, (owner, post), read direct; None: run it.
pub fn followee_posts(shape: &Shape, ids: &[i64], limit: usize) -> Option<Vec<(i64, i64)>> {
    let p = shape.posts.as_ref()?;
    let table = Table::open(&p.table)?;
    let (owner, t) = (table.attnum(&p.owner)?, table.attnum(&p.time)?);
    let atts = [table.attnum(&p.id)?, t];
    let kinds = [p.id.kind, p.time.kind];
    let index = table.index(&[(owner, INTEGER_FAM), (t, DATETIME_FAM)], &atts)?;
    let backward = !index.descending(1);
    let scan = Scan::new(&table, &index, &atts, &kinds);
    let mut out = vec![];
    for &id in ids {
        let Some(key) = key_datum(p.owner.kind, id) else { continue };
        // ORDER BY time DESC NULLS LAST LIMIT: the newest timed posts, then untimed ones
        // (which this direction may meet first).
        let (mut timed, mut untimed) = (vec![], vec![]);
        scan.run(&[key], backward, |v| {
            // A NULL id (None) still takes its place in the statement's order.
            let post = v.int(0);
            if v.int(1).is_some() {
                timed.push(post);
            } else if untimed.len() < limit {
                untimed.push(post);
            }
            timed.len() < limit
        });
        timed.extend(untimed);
        out.extend(timed.into_iter().take(limit).flatten().map(|post| (id, post)));
    }
    Some(out)
}

/// [`crate::store::live`]'s check of posts read direct: the rows now at the places `tids`
/// (as a TID scan reads them) and the rows whose id is one of `ids` (as an index scan),
/// each handed to `each` with its place, id and title; None (nothing handed): run the
/// statement.
pub fn posts_at(shape: &Shape, tids: &[pg_sys::ItemPointerData], ids: &[i64], mut each: impl FnMut(pg_sys::ItemPointerData, i64, Option<&str>)) -> Option<()> {
    let l = shape.live.as_ref()?;
    let table = Table::open(&l.table)?;
    let id = table.attnum(&l.id)?;
    let title = match &l.title {
        Some(c) => Some(table.attnum(c)?),
        None => None,
    };
    let atts: Vec<i16> = [Some(id), title].into_iter().flatten().collect();
    let kinds: Vec<Kind> = [Some(l.id.kind), title.map(|_| Kind::Text)].into_iter().flatten().collect();
    let index = table.index(&[(id, INTEGER_FAM)], &atts)?;
    if !tids.is_empty() {
        // SAFETY: on the backend thread in a transaction with an active snapshot (`usable`);
        // the table is open and locked. A place beyond the table's end is skipped, as a TID
        // scan skips it (reading it would be an ERROR); a fetched row is read and its buffer
        // released before the next fetch. The descriptor holds `natts` attributes.
        unsafe {
            let rel = table.0;
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let (mut values, mut nulls) = (vec![pg_sys::Datum::from(0usize); natts], vec![true; natts]);
            let blocks = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
            let snapshot = pg_sys::GetActiveSnapshot();
            for tid in tids {
                let blk = (tid.ip_blkid.bi_hi as u32) << 16 | tid.ip_blkid.bi_lo as u32;
                if blk >= blocks || tid.ip_posid == 0 {
                    continue;
                }
                let mut tuple = pg_sys::HeapTupleData { t_self: *tid, ..Default::default() };
                let mut buf: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
                if !pg_sys::heap_fetch(rel, snapshot, &mut tuple, &mut buf, false) {
                    continue;
                }
                pg_sys::heap_deform_tuple(&mut tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                let rv: Vec<pg_sys::Datum> = atts.iter().map(|a| values[(*a - 1) as usize]).collect();
                let rn: Vec<bool> = atts.iter().map(|a| nulls[(*a - 1) as usize]).collect();
                let v = Vals { values: &rv, nulls: &rn, kinds: &kinds, tid: Some(*tid) };
                if let Some(pid) = v.int(0) {
                    each(*tid, pid, if title.is_some() { v.text(1) } else { None });
                }
                pg_sys::ReleaseBuffer(buf);
            }
        }
    }
    let scan = Scan::from_heap(&table, &index, &atts, &kinds);
    let mut seen = IndexSet::default();
    for &want in ids {
        let Some(key) = key_datum(l.id.kind, want).filter(|_| seen.insert(want)) else { continue };
        scan.run(&[key], false, |v| {
            if let (Some(pid), Some(tid)) = (v.int(0), v.tid) {
                each(tid, pid, if title.is_some() { v.text(1) } else { None });
            }
            true
        });
    }
    Some(())
}

/// A model row's key as `store::model`'s key statement returns it: id, creation time in µs,
/// the table's OID (`serving::ModelKey`'s fields).
pub type RowKey = (i64, i64, u32);

/// A jsonb value copied out of its row as stored (detoasted): converting it to text and
/// parsing that, which a caller may not need, costs a new connection ~0.1 ms.
pub struct RawJsonb(Vec<u64>);

impl RawJsonb {
    /// # Safety
    /// `d` is a non-null jsonb datum of a tuple being read.
    unsafe fn copy(d: pg_sys::Datum) -> RawJsonb {
        // SAFETY: a jsonb varlena (the caller's promise), detoasted here (a copy when it was
        // toasted or compressed); its VARSIZE_ANY bytes are copied into 8-byte aligned words.
        unsafe {
            let p = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            let len = pgrx::varlena::varsize_any(p);
            let mut words = vec![0u64; len.div_ceil(8)];
            std::ptr::copy_nonoverlapping(p as *const u8, words.as_mut_ptr() as *mut u8, len);
            if p != d.cast_mut_ptr() {
                pg_sys::pfree(p.cast());
            }
            RawJsonb(words)
        }
    }

    /// The value, through jsonb's text form (as pgrx's `JsonB` reads a datum).
    pub fn to_json(&self) -> pgrx::JsonB {
        // SAFETY: the words hold a whole jsonb varlena (`copy`), alive for the call.
        unsafe { pgrx::JsonB::from_polymorphic_datum(pg_sys::Datum::from(self.0.as_ptr()), false, pg_sys::JSONBOID) }
            .unwrap_or(pgrx::JsonB(serde_json::Value::Null))
    }
}

/// The row of model `name` in `models` (`_recsys_model`, schema-qualified) deployed last, as
/// `store::model`'s key statement returns it: its key and, when `options_for(key)`, its
/// options. Some(None): no such row; None: run the statement.
pub fn deployed(models: &str, name: &str, options_for: impl Fn(RowKey) -> bool) -> Option<Option<(RowKey, Option<RawJsonb>)>> {
    let table = Table::open(models)?;
    let (id, nm, created, deployed, options) = (
        table.attnum_of("id", pg_sys::INT8OID)?,
        table.attnum_of("name", pg_sys::TEXTOID)?,
        table.attnum_of("created_at", pg_sys::TIMESTAMPTZOID)?,
        table.attnum_of("deployed_at", pg_sys::TIMESTAMPTZOID)?,
        table.attnum_of("options", pg_sys::JSONBOID)?,
    );
    let at = |a: i16| (a - 1) as usize;
    // WHERE name = $1 AND deployed_at IS NOT NULL ORDER BY deployed_at DESC, id DESC LIMIT 1,
    // over every row: the table holds a few versions per model name.
    let mut best: Option<((i64, i64), RowKey, Option<RawJsonb>)> = None;
    // SAFETY: on the backend thread in a transaction with an active snapshot (`usable`); the
    // table is open, locked and a heap (`Table::open`). Every tuple is read (its options
    // copied out) before the next is fetched; the scan ends here. The descriptor holds
    // `natts` attributes.
    unsafe {
        let rel = table.0;
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let (mut values, mut nulls) = (vec![pg_sys::Datum::from(0usize); natts], vec![true; natts]);
        let flags = pg_sys::ScanOptions::SO_TYPE_SEQSCAN
            | pg_sys::ScanOptions::SO_ALLOW_STRAT
            | pg_sys::ScanOptions::SO_ALLOW_SYNC
            | pg_sys::ScanOptions::SO_ALLOW_PAGEMODE;
        let scan = pg_sys::heap_beginscan(rel, pg_sys::GetActiveSnapshot(), 0, std::ptr::null_mut(), std::ptr::null_mut(), flags);
        let mut unreadable = false;
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            if nulls[at(nm)] || nulls[at(deployed)] || nulls[at(id)] || <&str>::from_polymorphic_datum(values[at(nm)], false, pg_sys::TEXTOID) != Some(name) {
                continue;
            }
            let order = (values[at(deployed)].value() as i64, values[at(id)].value() as i64);
            if best.as_ref().is_some_and(|b| b.0 >= order) {
                continue;
            }
            // (date_part('epoch', created_at) * 1000000)::int8; NULL reads as 0.
            let created_us = if nulls[at(created)] { Some(0) } else { source::epoch_micros(values[at(created)].value() as i64) };
            let Some(created_us) = created_us else {
                // The statement's cast raises an error here: let it.
                unreadable = true;
                break;
            };
            let key = (order.1, created_us, (*rel).rd_id.to_u32());
            let opts = if options_for(key) && !nulls[at(options)] { Some(RawJsonb::copy(values[at(options)])) } else { None };
            best = Some((order, key, opts));
        }
        pg_sys::heap_endscan(scan);
        if unreadable {
            return None;
        }
    }
    Some(best.map(|(_, key, opts)| (key, opts)))
}

/// `COALESCE((SELECT max(id) FROM posts) > after, false)` (`store::new_posts`), read through an
/// index led by the id; None: run the statement.
pub fn posts_above(shape: &Shape, after: i64) -> Option<bool> {
    let (name, id) = shape.max_id.as_ref()?;
    let posts = Table::open(name)?;
    let pid = posts.attnum(id)?;
    let index = posts.index(&[(pid, INTEGER_FAM)], &[pid])?;
    let (ids, kinds) = ([pid], [id.kind]);
    let mut max = None;
    // max() skips NULLs, which an ascending index keeps at its end (a descending one at its
    // start): read from the highest end until the first id.
    Scan::new(&posts, &index, &ids, &kinds).run(&[], !index.descending(0), |v| {
        max = v.int(0);
        max.is_none()
    });
    Some(max.is_some_and(|m| m > after))
}

/// [`source::demographics_query`]'s row, (age, gender, location), read direct: Some(None) when
/// the user has no row; None: run it.
#[allow(clippy::type_complexity)]
pub fn demographics(shape: &Shape, user_id: i64) -> Option<Option<(Option<f64>, Option<String>, Option<String>)>> {
    let u = shape.users.as_ref()?;
    let table = Table::open(&u.table)?;
    let id = table.attnum(&u.id)?;
    let (mut atts, mut kinds, mut at) = (vec![], vec![], [None; 3]);
    for (i, c) in u.cols.iter().enumerate() {
        if let Some(c) = c {
            at[i] = Some(atts.len());
            atts.push(table.attnum(c)?);
            kinds.push(c.kind);
        }
    }
    let index = table.index(&[(id, INTEGER_FAM)], &atts)?;
    let Some(key) = key_datum(u.id.kind, user_id) else { return Some(None) };
    let mut row = None;
    // LIMIT 1: the first row found.
    Scan::new(&table, &index, &atts, &kinds).run(&[key], false, |v| {
        let text = |i: Option<usize>| i.and_then(|i| v.text(i)).map(str::to_string);
        row = Some((at[0].and_then(|i| v.float(i)), text(at[1]), text(at[2])));
        false
    });
    Some(row)
}

/// [`crate::store::live`]'s filter statement for one attribute (`attr`: 0 category,
/// 1 project_code, 2 mood) equal to `value`: the ids of the posts that match now, read through
/// an index led by that column (under its collation); None: run the statement.
pub fn matching(shape: &Shape, attr: usize, value: &str) -> Option<Vec<i64>> {
    let l = shape.live.as_ref()?;
    let c = l.attrs.get(attr)?.as_ref()?;
    let table = Table::open(&l.table)?;
    let (a, id) = (table.attnum(c)?, table.attnum(&l.id)?);
    let index = table.index(&[(a, TEXT_FAM)], &[id])?;
    // `(c)::text = $1` compares under the column's collation: the index must order by it.
    if index.collation(0) != table.collation(a) {
        return None;
    }
    let key = (pgrx::IntoDatum::into_datum(value)?, pg_sys::F_TEXTEQ, index.collation(0));
    let (atts, kinds) = ([id], [l.id.kind]);
    let mut out = vec![];
    Scan::new(&table, &index, &atts, &kinds).run(&[key], false, |v| {
        out.extend(v.int(0));
        true
    });
    Some(out)
}
