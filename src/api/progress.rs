//! `_recsys_progress()`: the training progress files, behind the `recsys_progress` view
//! (sql/finalize.sql), which keeps those of statements still running.
use pgrx::prelude::*;

#[pg_extern(volatile)]
fn _recsys_progress() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(database, pgrx::pg_sys::Oid),
        name!(phase, String),
        name!(iteration, i32),
        name!(iterations, i32),
        name!(rows_read, i64),
        name!(started, f64),
        name!(updated, f64),
    ),
> {
    TableIterator::new(
        crate::progress::all()
            .into_iter()
            .map(|s| (s.pid, pgrx::pg_sys::Oid::from(s.database), s.phase, s.iteration, s.iterations, s.rows_read, s.started, s.updated)),
    )
}
