//! Training progress that other sessions can see (`recsys_progress`). A train is one statement:
//! its NOTICEs reach only its caller (and pg_cron drops them), and nothing it writes to a table
//! is visible before it commits. So the training backend keeps its state in a small file of the
//! data directory, `$PGDATA/pg_recsys_progress/<pid>.json`, replaced atomically (written beside,
//! then renamed) at each phase change and at most every [`WRITE_EVERY`] otherwise. The view
//! reads the files and keeps those of backends still running the statement that wrote them, so
//! a train that failed or was cancelled disappears from it at once; the file is removed when the
//! train returns and overwritten by the backend's next train.
//!
//! Best effort by design: progress must never fail a train, so file errors are ignored.
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WRITE_EVERY: Duration = Duration::from_millis(250);

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct State {
    pub pid: i32,
    pub database: u32,
    pub phase: String,
    pub iteration: i32,
    pub iterations: i32,
    pub rows_read: i64,
    /// Seconds since the Unix epoch.
    pub started: f64,
    pub updated: f64,
}

thread_local! {
    /// The running train's progress and when it was last written to its file (sound for the
    /// reasons given in `backend`: one backend thread, replaced whole).
    static CURRENT: std::cell::RefCell<Option<(State, Instant)>> = const { std::cell::RefCell::new(None) };
}

fn dir() -> PathBuf {
    // SAFETY: DataDir is set once at postmaster start and never changes; read on the backend thread.
    let data = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) };
    PathBuf::from(data.to_string_lossy().into_owned()).join("pg_recsys_progress")
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn write(s: &State) {
    let dir = dir();
    let _ = std::fs::create_dir_all(&dir);
    let tmp = dir.join(format!("{}.tmp", s.pid));
    if let Ok(bytes) = serde_json::to_vec(s) {
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join(format!("{}.json", s.pid)));
        }
    }
}

fn update(force: bool, f: impl FnOnce(&mut State)) {
    CURRENT.with(|c| {
        if let Some((s, last)) = c.borrow_mut().as_mut() {
            f(s);
            if force || last.elapsed() >= WRITE_EVERY {
                s.updated = now();
                write(s);
                *last = Instant::now();
            }
        }
    });
}

/// A train starts in this backend (also removes files of backends that no longer exist).
pub fn start(phase: &str) {
    // SAFETY: plain reads of backend globals on the backend thread.
    let (pid, database) = unsafe { (pgrx::pg_sys::MyProcPid, pgrx::pg_sys::MyDatabaseId.to_u32()) };
    if let Ok(entries) = std::fs::read_dir(dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let other = name.split('.').next().and_then(|p| p.parse::<i32>().ok());
            // SAFETY: kill with signal 0 only checks that the process exists.
            if other.is_some_and(|p| p != pid && unsafe { libc::kill(p, 0) } != 0) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let t = now();
    let s = State { pid, database, phase: phase.into(), started: t, updated: t, ..State::default() };
    write(&s);
    CURRENT.with(|c| *c.borrow_mut() = Some((s, Instant::now())));
}

pub fn phase(name: &str) {
    update(true, |s| {
        s.phase = name.into();
        s.iteration = 0;
        s.iterations = 0;
    });
}

pub fn iteration(it: usize, of: usize) {
    update(false, |s| {
        s.iteration = it as i32;
        s.iterations = of as i32;
    });
}

/// Rows fetched by the batch reader (any input table).
pub fn rows_read(n: usize) {
    update(false, |s| s.rows_read += n as i64);
}

/// Removes the backend's progress file when dropped: on return and on an ERROR alike.
pub struct Guard;

impl Guard {
    pub fn start(phase: &str) -> Guard {
        start(phase);
        Guard
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        finish();
    }
}

/// The train returned (committed or not, the statement is over).
pub fn finish() {
    if let Some((s, _)) = CURRENT.with(|c| c.borrow_mut().take()) {
        let _ = std::fs::remove_file(dir().join(format!("{}.json", s.pid)));
    }
}

/// Every progress file, as written (the view filters out finished statements).
pub fn all() -> Vec<State> {
    let Ok(entries) = std::fs::read_dir(dir()) else { return vec![] };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<State>(&b).ok())
        .collect()
}
