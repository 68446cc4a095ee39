//! The backend's helper thread: one per backend, started on first use and kept for the
//! backend's life, that scores a user's history while the backend thread reads the followees
//! (see `api::score`).
//!
//! Work is handed over through one slot and an atomic state, and each side waits for the
//! other awake for a while before it sleeps, yielding the CPU between checks (`sched_yield`,
//! so that other backends run on a busy machine; spinning without yielding cost 30% of the
//! throughput at 2 clients). A sleeping thread takes 70–100 µs to wake on a virtual machine
//! (the idle virtual CPU is halted), once to start the work and once to see it finished: a
//! fifth of a hybrid feed call at 100K posts. So:
//! - the backend thread waits awake for the helper's result for up to [`WAIT_SPIN`] (the
//!   helper's work is a fraction of a millisecond, and usually ends soon after the reads);
//! - when the backend thread's part ends before the helper has started (no CPU was free for
//!   it: a busy machine, or the helper queued on the backend thread's CPU), the backend thread
//!   takes the work back and runs it itself: whichever thread claims it first runs it;
//! - [`prewake`], called as a call starts, wakes the helper to wait awake for up to
//!   [`READY_SPIN`] for the work that call is about to hand over, so the wake-up overlaps the
//!   call's first reads. It is called only when the previous call used the helper, so a
//!   backend that does not need it (ALS-only feeds, other functions) never wakes it; the
//!   helper waits awake only on another CPU than the backend thread's.
//!
//! The helper starts with every signal blocked (PostgreSQL's handlers belong to the backend
//! thread) and never calls into PostgreSQL. A panic in its work is caught there and resumed on
//! the backend thread; an ERROR in the backend's part unwinds only after the helper's work has
//! finished, so whatever that work borrows outlives it.
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long the backend thread waits awake for the helper's result before it sleeps.
const WAIT_SPIN: Duration = Duration::from_micros(400);
/// How long a prewoken helper waits awake for its work before it sleeps again.
const READY_SPIN: Duration = Duration::from_micros(400);
/// The same, for a helper started by a backend's first call, which opens the model first.
const FIRST_SPIN: Duration = Duration::from_millis(3);
/// The most calls run without the helper after it found no CPU for their work.
const MAX_BACKOFF: u32 = 32;

const IDLE: u8 = 0;
const POSTED: u8 = 1;
const DONE: u8 = 2;
/// The helper took the posted work and is running it.
const RUNNING: u8 = 3;

/// A type-erased piece of work: `run(data)` runs it and stores its result where `data` says.
struct Job {
    data: *mut (),
    run: unsafe fn(*mut ()),
}

struct Shared {
    state: AtomicU8,
    /// Written by the backend thread before it publishes POSTED, taken by whichever thread
    /// moves POSTED on (the helper to RUNNING, the backend thread back to IDLE): never both.
    job: UnsafeCell<Option<Job>>,
    /// Until when (µs since `epoch`) a prewoken helper waits awake for work.
    spin_until: AtomicU64,
    epoch: Instant,
    backend: Thread,
    /// Whether the last hand-over used the helper (what [`prewake`] goes by).
    used: AtomicBool,
    /// The CPU the backend thread was on when it last woke the helper or handed it work.
    backend_cpu: AtomicI32,
    /// Calls left to run without the helper, and how many the next back-off skips (see
    /// `alongside`). Only the backend thread uses them.
    skip_left: AtomicU32,
    skip_next: AtomicU32,
}

// SAFETY: `job` is accessed by one thread at a time, ordered by `state` (release/acquire); the
// pointer it holds is only dereferenced by the thread that claimed the job, while the
// backend thread keeps the pointee alive and untouched (see `alongside`).
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

struct Helper {
    shared: &'static Shared,
    thread: Thread,
}

impl Shared {
    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// The backend's helper (None: it could not be started).
static HELPER: OnceLock<Option<Helper>> = OnceLock::new();

/// The helper, started now if it was not yet.
fn helper() -> Option<&'static Helper> {
    HELPER.get_or_init(start).as_ref()
}

/// The helper if it was started already: [`prewake`] and a call without it never start it.
fn started() -> Option<&'static Helper> {
    HELPER.get().and_then(|h| h.as_ref())
}

fn start() -> Option<Helper> {
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        state: AtomicU8::new(IDLE),
        job: UnsafeCell::new(None),
        spin_until: AtomicU64::new(0),
        epoch: Instant::now(),
        backend: std::thread::current(),
        used: AtomicBool::new(false),
        backend_cpu: AtomicI32::new(-1),
        skip_left: AtomicU32::new(0),
        skip_next: AtomicU32::new(1),
    }));
    // SAFETY: plain libc calls on this thread's signal mask: the helper starts with every
    // signal blocked, and this thread's mask is restored at once.
    let handle = unsafe {
        let (mut all, mut old): (libc::sigset_t, libc::sigset_t) = (std::mem::zeroed(), std::mem::zeroed());
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let h = std::thread::Builder::new().name("recsys-serve".into()).spawn(move || serve(shared));
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        h
    };
    handle.ok().map(|h| Helper { shared, thread: h.thread().clone() })
}

/// The helper's loop: wait for work (awake while prewoken), run it, publish DONE.
fn serve(s: &'static Shared) {
    loop {
        // The work is taken by whichever side claims it first: the backend thread runs it
        // itself when its own part ends before the helper started (see `alongside`).
        while held() || s.state.compare_exchange(POSTED, RUNNING, Ordering::Acquire, Ordering::Relaxed).is_err() {
            // Waiting awake only helps on another CPU than the backend thread's: on the same
            // one, a yielding helper runs only when the backend thread blocks, often after the
            // reads it was meant to overlap, while a sleeping one is woken onto an idle CPU.
            // SAFETY: sched_getcpu has no arguments and no side effect.
            let apart = unsafe { libc::sched_getcpu() } != s.backend_cpu.load(Ordering::Relaxed);
            if apart && s.micros() < s.spin_until.load(Ordering::Relaxed) {
                std::thread::yield_now();
            } else {
                std::thread::park();
            }
        }
        // SAFETY: POSTED was published (release) after the job was written, and this thread
        // moved it to RUNNING (acquire): the backend thread does not touch the job until DONE.
        let job = unsafe { (*s.job.get()).take() };
        if let Some(job) = job {
            // SAFETY: the backend thread keeps `data` alive until it sees DONE; `run` catches
            // any panic of the work.
            unsafe { (job.run)(job.data) };
        }
        s.spin_until.store(0, Ordering::Relaxed);
        s.state.store(DONE, Ordering::Release);
        s.backend.unpark();
    }
}

/// Tests only: while set, the helper does not take posted work (so the backend thread does).
#[cfg(any(test, feature = "pg_test"))]
pub static HOLD: AtomicBool = AtomicBool::new(false);

/// Tests only: starts the helper now, however busy the machine is.
#[cfg(any(test, feature = "pg_test"))]
pub fn start_now() {
    let _ = helper();
}

/// Tests only: ends a back-off (the next call that wants the helper uses it).
#[cfg(any(test, feature = "pg_test"))]
pub fn reset_backoff() {
    if let Some(h) = started() {
        h.shared.skip_left.store(0, Ordering::Relaxed);
        h.shared.skip_next.store(1, Ordering::Relaxed);
    }
}

#[cfg(any(test, feature = "pg_test"))]
fn held() -> bool {
    HOLD.load(Ordering::Relaxed)
}

#[cfg(not(any(test, feature = "pg_test")))]
fn held() -> bool {
    false
}

/// Wakes the helper to wait awake for work a call is about to hand over, when the last
/// hand-over used it (see the module doc). Cheap when the helper is already awake.
///
/// The first call in a backend (with `recsys.serving_helper` on) starts the helper here, so
/// that the new thread is created, scheduled and awake while the call opens the model,
/// instead of when its work is handed over: a thread created then often ran only once the
/// backend thread yielded, 0.3–1.4 ms later, after the reads it was meant to overlap.
pub fn prewake() {
    if HELPER.get().is_none() {
        if crate::gucs::serving_helper() && cpu_free() {
            if let Some(h) = helper() {
                h.shared.used.store(true, Ordering::Relaxed);
                wake(h, FIRST_SPIN);
            }
        }
        return;
    }
    if let Some(h) = started() {
        if h.shared.used.load(Ordering::Relaxed) && h.shared.state.load(Ordering::Relaxed) == IDLE {
            wake(h, READY_SPIN);
        }
    }
}

/// Whether a CPU is idle now: fewer runnable threads on the machine (this one included) than
/// online CPUs, from `/proc/loadavg`. Asked only before the helper is started, so that a busy
/// machine (20 new connections at once on 2 cores) does not pay for threads that would find
/// no CPU. Where it cannot be read, the helper is started as before. A busy answer stands for
/// [`BUSY_STANDS`]: a backend on a busy machine reads the file at most that often, not twice a
/// call (that cost 2.5% of a hybrid call under load).
fn cpu_free() -> bool {
    cpu_free_by(read_loadavg)
}

thread_local! {
    /// When [`cpu_free`] last found no idle CPU.
    static BUSY_AT: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// See [`cpu_free`].
const BUSY_STANDS: Duration = Duration::from_millis(50);

/// [`cpu_free`] with its reading of the machine's load passed in.
pub(crate) fn cpu_free_by(read: impl FnOnce() -> bool) -> bool {
    if BUSY_AT.get().is_some_and(|at| at.elapsed() < BUSY_STANDS) {
        return false;
    }
    let free = read();
    BUSY_AT.set((!free).then(Instant::now));
    free
}

/// Tests only: when [`cpu_free`] last found no idle CPU (None: it found one, or never asked).
#[cfg(any(test, feature = "pg_test"))]
pub fn busy_at() -> Option<Instant> {
    BUSY_AT.get()
}

/// Tests only: sets what [`busy_at`] returns.
#[cfg(any(test, feature = "pg_test"))]
pub fn set_busy_at(at: Option<Instant>) {
    BUSY_AT.set(at)
}

/// `/proc/loadavg` read once into a small buffer (it is under 64 bytes): open, read, close.
fn read_loadavg() -> bool {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let Ok(n) = std::fs::File::open("/proc/loadavg").and_then(|mut f| f.read(&mut buf)) else { return true };
    let Ok(text) = std::str::from_utf8(&buf[..n]) else { return true };
    // SAFETY: sysconf has no side effect.
    free_by_loadavg(text, unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) })
}

/// Whether `/proc/loadavg`'s runnable count (its fourth field, `running/total`) is below
/// `cpus`; true when either cannot be read.
pub(crate) fn free_by_loadavg(text: &str, cpus: i64) -> bool {
    let running = text.split_whitespace().nth(3).and_then(|f| f.split('/').next()).and_then(|r| r.parse::<i64>().ok());
    running.is_none_or(|r| cpus < 1 || r < cpus)
}

/// The helper for a call that wants it: None while a back-off runs, or when it is not started
/// and no CPU is idle (then it is started by a later call).
fn available() -> Option<&'static Helper> {
    match HELPER.get() {
        Some(h) => {
            let h = h.as_ref()?;
            let left = h.shared.skip_left.load(Ordering::Relaxed);
            if left > 0 {
                h.shared.skip_left.store(left - 1, Ordering::Relaxed);
                return None;
            }
            Some(h)
        }
        None => cpu_free().then(helper).flatten(),
    }
}

/// Wakes the helper to wait awake for work for up to `awake`.
fn wake(h: &Helper, awake: Duration) {
    note_cpu(h.shared);
    h.shared.spin_until.store(h.shared.micros() + awake.as_micros() as u64, Ordering::Relaxed);
    h.thread.unpark();
}

/// Records the CPU the backend thread is on (see `serve`).
fn note_cpu(s: &Shared) {
    // SAFETY: sched_getcpu has no arguments and no side effect.
    s.backend_cpu.store(unsafe { libc::sched_getcpu() }, Ordering::Relaxed);
}

/// The slot a job's work and result live in, on the backend thread's stack.
struct Slot<W, A> {
    work: Option<W>,
    out: Option<std::thread::Result<A>>,
}

/// Runs the work in `data` (a `Slot<W, A>`) and stores its result or panic.
unsafe fn run_slot<W: FnOnce() -> A, A>(data: *mut ()) {
    // SAFETY: `data` is the `Slot<W, A>` `alongside` posted, alive until DONE.
    let slot = unsafe { &mut *(data as *mut Slot<W, A>) };
    if let Some(w) = slot.work.take() {
        slot.out = Some(catch_unwind(AssertUnwindSafe(w)));
    }
}

/// Runs `work` on the backend's helper thread while `here` runs on the backend thread, and
/// returns both results. `work` must not call into PostgreSQL; `here` may. Without `helper`,
/// or when no helper can be started, `work` runs here first.
///
/// When `here` ends before the helper has taken the work, the work runs here; the next calls
/// then run without the helper (1, 2, 4 … up to [`MAX_BACKOFF`] calls while that repeats), so
/// that on a machine with no idle CPU a call does not wake a thread that finds none.
pub fn alongside<A: Send, B, W: FnOnce() -> A + Send>(helper_wanted: bool, work: W, here: impl FnOnce() -> B) -> (A, B) {
    let h = match helper_wanted.then(available).flatten() {
        Some(h) if h.shared.state.load(Ordering::Acquire) == IDLE => h,
        _ => {
            if let Some(h) = started() {
                h.shared.used.store(false, Ordering::Relaxed);
            }
            return (work(), here());
        }
    };
    let s = h.shared;
    s.used.store(true, Ordering::Relaxed);
    let mut slot: Slot<W, A> = Slot { work: Some(work), out: None };
    // SAFETY: the helper is IDLE (it takes the job only by moving POSTED to RUNNING); `slot`
    // outlives the job: this function does not return or unwind before it has taken the job
    // back or seen DONE.
    unsafe { *s.job.get() = Some(Job { data: &mut slot as *mut Slot<W, A> as *mut (), run: run_slot::<W, A> }) };
    note_cpu(s);
    s.state.store(POSTED, Ordering::Release);
    h.thread.unpark();
    let b = catch_unwind(AssertUnwindSafe(here));
    if s.state.compare_exchange(POSTED, IDLE, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        // The helper has not started (no CPU for it yet: on a busy machine, or on this
        // thread's CPU): the work runs here now rather than after a wake-up and a switch.
        // SAFETY: the job was written by this thread and the helper never took it (it takes
        // it only by moving POSTED to RUNNING); `slot` is alive here.
        let job = unsafe { (*s.job.get()).take() };
        s.used.store(false, Ordering::Relaxed);
        let n = s.skip_next.load(Ordering::Relaxed);
        s.skip_left.store(n, Ordering::Relaxed);
        s.skip_next.store((n * 2).min(MAX_BACKOFF), Ordering::Relaxed);
        // After a panic here the work is not run at all (the panic is resumed at once).
        if let Some(job) = job.filter(|_| b.is_ok()) {
            // SAFETY: `job.data` is `slot`, alive; `run` catches any panic of the work.
            unsafe { (job.run)(job.data) };
        }
        return finish(b, &mut slot);
    }
    let t0 = Instant::now();
    while s.state.load(Ordering::Acquire) != DONE {
        if t0.elapsed() < WAIT_SPIN {
            std::thread::yield_now();
        } else {
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }
    s.state.store(IDLE, Ordering::Release);
    s.skip_next.store(1, Ordering::Relaxed);
    finish(b, &mut slot)
}

/// Both results of `alongside`, or the first panic (the backend thread's own first).
fn finish<W, A, B>(b: std::thread::Result<B>, slot: &mut Slot<W, A>) -> (A, B) {
    let b = b.unwrap_or_else(|p| resume_unwind(p));
    match slot.out.take() {
        Some(Ok(a)) => (a, b),
        Some(Err(p)) => resume_unwind(p),
        None => unreachable!("the work ran"),
    }
}
