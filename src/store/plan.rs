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
use pgrx::pg_guard;
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

    /// Runs the plan with `args` (as many as it has parameters) and calls `each` on every row
    /// as the executor produces it, read in place from its result slot ([`Row`]); keeps what
    /// `each` returns. No result tuple is formed, copied or stored (SPI's tuple table is not
    /// used). Read-only (the transaction's snapshot, no command-counter bump) unless this
    /// transaction has written, in which case its own writes are seen, as pgrx's `select` does.
    pub fn select<T>(
        &self,
        _client: &SpiClient<'_>,
        args: &[pgrx::datum::DatumWithOid<'_>],
        mut each: impl FnMut(&Row) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        // SAFETY: the plan is kept and valid; reading its parameter count has no side effect.
        let expected = unsafe { pg_sys::SPI_getargcount(self.0) } as usize;
        if expected != args.len() {
            return Err(RecsysError::Spi(format!("kept plan takes {expected} arguments, got {}", args.len())));
        }
        let mut out = vec![];
        let mut on_row = |row: &Row| -> Result<()> {
            if let Some(x) = each(row)? {
                out.push(x);
            }
            Ok(())
        };
        let on_row: &mut dyn FnMut(&Row) -> Result<()> = &mut on_row;
        // SAFETY: only the lifetime is erased: the receiver holding this pointer lives on this
        // stack frame and is used only by the execution below, which ends before `on_row` does.
        let on_row: *mut (dyn FnMut(&Row) -> Result<()> + 'static) = unsafe { std::mem::transmute(on_row) };
        let mut receiver = Receiver {
            dest: pg_sys::DestReceiver {
                receiveSlot: Some(receive_slot),
                rStartup: Some(startup),
                rShutdown: Some(shutdown),
                rDestroy: Some(shutdown),
                // As PL/pgSQL's RETURN QUERY passes its receiver (SPI then reports a SELECT).
                mydest: pg_sys::CommandDest::DestTuplestore,
            },
            on_row,
            error: None,
        };
        // SAFETY: on the backend thread inside an SPI connection. The parameter list is
        // allocated in the current (SPI procedure) memory context and filled for exactly the
        // plan's parameter count (checked above); the datums it points to live in `args`,
        // which outlives the call. The receiver outlives the execution. An ERROR unwinds
        // through pgrx's guard.
        let status = unsafe {
            let params = pg_sys::makeParamList(expected as i32);
            for (i, a) in args.iter().enumerate() {
                let p = &mut *(*params).params.as_mut_ptr().add(i);
                match a.datum() {
                    Some(d) => (p.value, p.isnull) = (d.sans_lifetime(), false),
                    None => (p.value, p.isnull) = (pg_sys::Datum::from(0usize), true),
                }
                p.pflags = pg_sys::PARAM_FLAG_CONST as u16;
                p.ptype = pg_sys::SPI_getargtypeid(self.0, i as i32);
            }
            let options = pg_sys::SPIExecuteOptions {
                params,
                read_only: pg_sys::GetCurrentTransactionIdIfAny() == pg_sys::InvalidTransactionId,
                allow_nonatomic: false,
                must_return_tuples: true,
                tcount: 0,
                dest: &mut receiver.dest,
                owner: std::ptr::null_mut(),
            };
            pg_sys::SPI_execute_plan_extended(self.0, &options)
        };
        if let Some(e) = receiver.error.take() {
            return Err(e);
        }
        if status != pg_sys::SPI_OK_SELECT as i32 {
            return Err(RecsysError::Spi(format!("kept plan returned SPI status {status}")));
        }
        Ok(out)
    }
}

/// A destination for a kept plan's rows that hands each result slot to a Rust closure.
#[repr(C)]
struct Receiver {
    /// First, so that a `*mut DestReceiver` is a `*mut Receiver`.
    dest: pg_sys::DestReceiver,
    on_row: *mut dyn FnMut(&Row) -> Result<()>,
    /// The first error `on_row` returned (the execution stops there).
    error: Option<RecsysError>,
}

#[pg_guard]
unsafe extern "C-unwind" fn receive_slot(slot: *mut pg_sys::TupleTableSlot, dest: *mut pg_sys::DestReceiver) -> bool {
    // SAFETY: `dest` is the `Receiver` that `select` passed (its first field), alive for the
    // execution; the slot is the executor's current result row.
    let r = unsafe { &mut *(dest as *mut Receiver) };
    if r.error.is_some() {
        return false;
    }
    // SAFETY: deforms the slot's columns into its value arrays, which `Row` reads.
    unsafe { pg_sys::slot_getallattrs(slot) };
    // SAFETY: `on_row` points to `select`'s closure, alive for the execution.
    match unsafe { (*r.on_row)(&Row::new(slot)) } {
        Ok(()) => true,
        Err(e) => {
            r.error = Some(e);
            false
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup(_dest: *mut pg_sys::DestReceiver, _operation: std::ffi::c_int, _typeinfo: pg_sys::TupleDesc) {}

#[pg_guard]
unsafe extern "C-unwind" fn shutdown(_dest: *mut pg_sys::DestReceiver) {}

impl Drop for KeptPlan {
    fn drop(&mut self) {
        // SAFETY: kept by `prepare` and freed only here.
        unsafe { pg_sys::SPI_freeplan(self.0) };
    }
}
