//! A statement prepared once per backend and kept (SPI_keepplan), planned generically from its
//! first execution.
//!
//! PostgreSQL plans a kept statement with parameters afresh for each of its first five
//! executions (custom plans for the values given) before it settles on one generic plan. The
//! per-call statements here are lookups by key (a user id, a list of ids) whose generic plan is
//! the one a warm connection settles on anyway; planning it once from the start saves a new
//! connection those replans on its second to sixth call. pgrx's prepared statement does not
//! take cursor options, so this is the small part of it the serving path needs.
use crate::error::{RecsysError, Result};
use crate::store::source::Row;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;

pub struct KeptPlan(pg_sys::SPIPlanPtr);

impl KeptPlan {
    /// Parses and analyses `sql` with parameter types `types` and keeps the result for the
    /// backend's lifetime (until dropped). `_client` proves an SPI connection is open.
    pub fn prepare(_client: &SpiClient<'_>, sql: &str, types: &[pgrx::PgOid]) -> Result<KeptPlan> {
        let sql = std::ffi::CString::new(sql).map_err(|_| RecsysError::Spi("query contains a NUL byte".into()))?;
        let mut oids: Vec<pg_sys::Oid> = types.iter().map(|t| t.value()).collect();
        // SAFETY: on the backend thread inside an SPI connection; the text and the type array
        // outlive the call (SPI copies what it keeps). An ERROR unwinds through pgrx's guard.
        let plan = unsafe { pg_sys::SPI_prepare_cursor(sql.as_ptr(), oids.len() as i32, oids.as_mut_ptr(), pg_sys::CURSOR_OPT_GENERIC_PLAN as i32) };
        if plan.is_null() {
            // SAFETY: reads SPI's last result code.
            return Err(RecsysError::Spi(format!("SPI_prepare_cursor failed: {}", unsafe { pg_sys::SPI_result })));
        }
        // SAFETY: `plan` was just prepared in this SPI connection and is kept exactly once.
        match unsafe { pg_sys::SPI_keepplan(plan) } {
            0 => Ok(KeptPlan(plan)),
            code => {
                // SAFETY: not kept, so still owned by the SPI connection's memory; freeing it
                // now is allowed.
                unsafe { pg_sys::SPI_freeplan(plan) };
                Err(RecsysError::Spi(format!("SPI_keepplan failed: {code}")))
            }
        }
    }

    /// Runs the plan with `args` (as many as it has parameters); the rows are in
    /// `SPI_tuptable` until the next SPI call. Returns their number. Read-only (the
    /// transaction's snapshot, no command-counter bump) unless this transaction has written,
    /// in which case its own writes are seen, as pgrx's `select` does.
    pub fn run(&self, _client: &SpiClient<'_>, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<usize> {
        // SAFETY: the plan is kept and valid; reading its parameter count has no side effect.
        let expected = unsafe { pg_sys::SPI_getargcount(self.0) } as usize;
        if expected != args.len() {
            return Err(RecsysError::Spi(format!("kept plan takes {expected} arguments, got {}", args.len())));
        }
        let (mut values, nulls): (Vec<pg_sys::Datum>, Vec<std::ffi::c_char>) = args
            .iter()
            .map(|a| match a.datum() {
                Some(d) => (d.sans_lifetime(), b' ' as std::ffi::c_char),
                None => (pg_sys::Datum::from(0usize), b'n' as std::ffi::c_char),
            })
            .unzip();
        // SAFETY: on the backend thread inside an SPI connection; the arrays match the plan's
        // parameter count (checked above) and outlive the call.
        let status = unsafe {
            pg_sys::SPI_tuptable = std::ptr::null_mut();
            let read_only = pg_sys::GetCurrentTransactionIdIfAny() == pg_sys::InvalidTransactionId;
            pg_sys::SPI_execute_plan(self.0, values.as_mut_ptr(), nulls.as_ptr(), read_only, 0)
        };
        if status != pg_sys::SPI_OK_SELECT as i32 {
            return Err(RecsysError::Spi(format!("kept plan returned SPI status {status}")));
        }
        // SAFETY: set by the execution above.
        Ok(unsafe { pg_sys::SPI_processed } as usize)
    }

    /// Runs the plan and calls `each` on every row, read in place from SPI's tuple table
    /// ([`Row`]); keeps what it returns.
    pub fn select<T>(&self, client: &SpiClient<'_>, args: &[pgrx::datum::DatumWithOid<'_>], mut each: impl FnMut(&Row) -> Result<Option<T>>) -> Result<Vec<T>> {
        let rows = self.run(client, args)?;
        let mut out = vec![];
        // SAFETY: `run` just set SPI's current tuple table (`rows` tuples and their
        // descriptor); it stays valid until the next SPI call, and none runs in `each`.
        unsafe {
            let table = pg_sys::SPI_tuptable;
            if table.is_null() || rows == 0 {
                return Ok(out);
            }
            let desc = (*table).tupdesc;
            for &tuple in std::slice::from_raw_parts((*table).vals, rows.min((*table).numvals as usize)) {
                if let Some(x) = each(&Row::new(tuple, desc))? {
                    out.push(x);
                }
            }
        }
        Ok(out)
    }
}

impl Drop for KeptPlan {
    fn drop(&mut self) {
        // SAFETY: kept by `prepare` and freed only here.
        unsafe { pg_sys::SPI_freeplan(self.0) };
    }
}
