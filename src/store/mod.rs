//! All SPI: the app's tables in, the model tables in and out, and the per-backend cache.
pub mod filecache;
pub mod image;
pub mod live;
pub mod model;
pub mod new_posts;
pub mod request;
pub mod serving;
pub mod snapshot;
pub mod source;

use crate::error::Result;
use pgrx::spi::SpiClient;

use crate::backend::SCHEMA;

/// The extension's schema, quoted by the server (safe to splice into SQL text). Cached per
/// backend under the extension's OID, since it is on every call's path.
pub fn schema(client: &SpiClient<'_>) -> Result<String> {
    // SAFETY: a catalog lookup on the backend thread inside a transaction.
    let ext = unsafe { pgrx::pg_sys::get_extension_oid(c"pg_recsys".as_ptr(), true) };
    if let Some(s) = SCHEMA.with(|c| c.borrow().as_ref().filter(|(oid, _)| *oid == ext).map(|(_, s)| s.clone())) {
        return Ok(s);
    }
    let s: Option<String> = one(
        client,
        "SELECT pg_catalog.quote_ident(n.nspname::text) FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_recsys'",
        &[],
    )?;
    let s = s.ok_or_else(|| crate::error::RecsysError::Spi("extension pg_recsys is not installed in this database".into()))?;
    SCHEMA.with(|c| *c.borrow_mut() = Some((ext, s.clone())));
    Ok(s)
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
