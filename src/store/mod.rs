//! All SPI: the app's tables in, the model tables in and out, and the per-backend cache.
pub mod direct;
pub mod filecache;
pub mod image;
pub mod live;
pub mod model;
pub mod new_posts;
pub mod plan;
pub mod request;
pub mod serving;
pub mod snapshot;
pub mod source;

use crate::error::Result;
use pgrx::spi::SpiClient;

use crate::backend::{CALLER_NSP, CALLER_SCHEMA, SCHEMA};

/// While alive, [`schema`] is the namespace of the extension function being called (taken
/// from its `fcinfo`): a function of the extension lives in the extension's schema, so the
/// lookup of the extension by name (a read of pg_extension, ~0.1 ms in a new connection) is
/// not needed. Used where a call's latency matters (`recsys_recommend`).
pub struct Caller(Option<pgrx::pg_sys::Oid>);

impl Caller {
    pub fn of(fcinfo: pgrx::pg_sys::FunctionCallInfo) -> Caller {
        // SAFETY: `fcinfo` is the running call's, with its flinfo set by the executor;
        // get_func_namespace reads the (cached) pg_proc row on the backend thread.
        let nsp = unsafe {
            let fl = if fcinfo.is_null() { std::ptr::null_mut() } else { (*fcinfo).flinfo };
            let f = if fl.is_null() { pgrx::pg_sys::InvalidOid } else { (*fl).fn_oid };
            if f == pgrx::pg_sys::InvalidOid {
                pgrx::pg_sys::InvalidOid
            } else {
                pgrx::pg_sys::get_func_namespace(f)
            }
        };
        Caller(CALLER_NSP.replace((nsp != pgrx::pg_sys::InvalidOid).then_some(nsp)))
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        CALLER_NSP.set(self.0);
    }
}

/// The quoted name of namespace `nsp` when it holds the extension's model table (a C
/// function of the library declared elsewhere by hand does not make its schema ours).
fn caller_schema(nsp: pgrx::pg_sys::Oid) -> Option<String> {
    // The model table may also have gone with a dropped extension: then the general path.
    // SAFETY: a syscache lookup on the backend thread inside a transaction.
    if unsafe { pgrx::pg_sys::get_relname_relid(c"_recsys_model".as_ptr(), nsp) } == pgrx::pg_sys::InvalidOid {
        return None;
    }
    if let Some(s) = CALLER_SCHEMA.with(|c| c.borrow().as_ref().filter(|(o, _)| *o == nsp).map(|(_, s)| s.clone())) {
        return Some(s);
    }
    let s = quoted_namespace(nsp)?;
    CALLER_SCHEMA.with(|c| *c.borrow_mut() = Some((nsp, s.clone())));
    Some(s)
}

/// The name of namespace `nsp`, quoted by the server; None when there is no such namespace.
fn quoted_namespace(nsp: pgrx::pg_sys::Oid) -> Option<String> {
    // SAFETY: syscache lookups on the backend thread inside a transaction; the name is
    // palloc'd and copied out.
    unsafe {
        let name = pgrx::pg_sys::get_namespace_name(nsp);
        if name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(pgrx::pg_sys::quote_identifier(name)).to_string_lossy().into_owned())
    }
}

/// The extension's schema, quoted by the server (safe to splice into SQL text). Cached per
/// backend under the extension's OID, since it is on every call's path.
pub fn schema() -> Result<String> {
    if let Some(s) = CALLER_NSP.get().and_then(caller_schema) {
        return Ok(s);
    }
    // SAFETY: a catalog lookup on the backend thread inside a transaction.
    let ext = unsafe { pgrx::pg_sys::get_extension_oid(c"pg_recsys".as_ptr(), true) };
    if let Some(s) = SCHEMA.with(|c| c.borrow().as_ref().filter(|(oid, _)| *oid == ext).map(|(_, s)| s.clone())) {
        return Ok(s);
    }
    let s = extension_schema(ext).ok_or_else(|| crate::error::RecsysError::Spi("extension pg_recsys is not installed in this database".into()))?;
    SCHEMA.with(|c| *c.borrow_mut() = Some((ext, s.clone())));
    Ok(s)
}

/// The schema of extension `ext`, quoted, read from pg_extension through its OID index (as
/// the server's own get_extension_schema does): no statement to parse and plan, which in a new
/// connection cost a tenth of the first call. None when there is no such extension.
fn extension_schema(ext: pgrx::pg_sys::Oid) -> Option<String> {
    use pgrx::pg_sys;
    if ext == pg_sys::InvalidOid {
        return None;
    }
    // SAFETY: on the backend thread inside a transaction; the relation is opened and closed
    // here, the scan ended before it is closed, and the tuple read before the scan ends.
    unsafe {
        let rel = pg_sys::table_open(pg_sys::ExtensionRelationId, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_oid as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(pg_sys::F_OIDEQ),
            pg_sys::Datum::from(ext.to_u32()),
        );
        let scan = pg_sys::systable_beginscan(rel, pg_sys::Oid::from(pg_sys::ExtensionOidIndexId), true, std::ptr::null_mut(), 1, &mut key);
        let tuple = pg_sys::systable_getnext(scan);
        let nsp = (!tuple.is_null()).then(|| (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_extension>(tuple)).extnamespace);
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        quoted_namespace(nsp?)
    }
}

/// First row of a query as up to three columns; `None` when there is no row.
pub fn first_row<A, B, C>(client: &SpiClient<'_>, sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<Option<(Option<A>, Option<B>, Option<C>)>>
where
    A: pgrx::FromDatum + pgrx::IntoDatum,
    B: pgrx::FromDatum + pgrx::IntoDatum,
    C: pgrx::FromDatum + pgrx::IntoDatum,
{
    let t = client.select(sql, Some(1), args)?;
    if t.is_empty() {
        return Ok(None);
    }
    let t = t.first();
    let n = t.columns()?;
    let a = t.get::<A>(1)?;
    let b = if n >= 2 { t.get::<B>(2)? } else { None };
    let c = if n >= 3 { t.get::<C>(3)? } else { None };
    Ok(Some((a, b, c)))
}

/// First column of the first row; `None` when there is no row or it is NULL.
pub fn one<A: pgrx::FromDatum + pgrx::IntoDatum>(client: &SpiClient<'_>, sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<Option<A>> {
    Ok(first_row::<A, bool, bool>(client, sql, args)?.and_then(|r| r.0))
}
