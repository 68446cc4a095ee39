//! A cluster-wide cache of small ranked lists, as files under `$PGDATA/pg_recsys/cache/`: what
//! one backend computed (trending, an aggregate over every interaction of the window) the next
//! connection reads instead of computing it again. Without it every new connection paid the
//! aggregation once (330 ms of the first feed call at 100K posts, 1M interactions ending now).
//!
//! A file holds its full key (so a hash collision is a miss, never a wrong answer), the wall
//! clock time it was computed at, and the (id, score) rows. It is written to a temporary file
//! and renamed, so a reader sees a whole file or none. Any error is a miss: the caller computes.
//! The key carries everything the result depends on, including the role and row security, so
//! one role never reads what another role's query could see.
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"RECSYSC1";
/// Files older than this are removed when a new one is written.
const STALE: Duration = Duration::from_secs(3600);

pub fn dir() -> PathBuf {
    // SAFETY: DataDir is set at postmaster start; read on the backend thread.
    let data = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir).to_string_lossy().into_owned() };
    PathBuf::from(data).join("pg_recsys").join("cache")
}

fn path(kind: &str, key: &str) -> PathBuf {
    dir().join(file_name(kind, key, "bin"))
}

/// The name of the file for `key` (hashed) in this database, `{kind}_{db}_{hash}.{ext}`.
pub fn file_name(kind: &str, key: &str, ext: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    // SAFETY: MyDatabaseId is set at backend start.
    let db = unsafe { pgrx::pg_sys::MyDatabaseId.to_u32() };
    format!("{kind}_{db}_{:016x}.{ext}", h.finish())
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A file's header for `key` (magic, key length, key, write time), when it is that key's: the
/// rows' age and the bytes after the header.
fn header<'a>(b: &'a [u8], key: &str) -> Option<(Duration, &'a [u8])> {
    let (magic, rest) = b.split_at_checked(8)?;
    if magic != MAGIC {
        return None;
    }
    let klen = u64_at(rest, 0)? as usize;
    let stored = rest.get(8..8usize.checked_add(klen)?)?;
    if stored != key.as_bytes() {
        return None;
    }
    let at = 8 + klen;
    let age = Duration::from_micros(now_micros().saturating_sub(u64_at(rest, at)?));
    Some((age, rest.get(at + 8..)?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?).map(|x| u64::from_le_bytes(x.try_into().unwrap_or([0; 8])))
}

/// The rows stored under `key` and their age, when younger than `ttl`.
pub fn get(kind: &str, key: &str, ttl: Duration) -> Option<(Duration, Vec<(i64, f32)>)> {
    let b = std::fs::read(path(kind, key)).ok()?;
    let (age, rest) = header(&b, key)?;
    let n = u64_at(rest, 0)? as usize;
    let rows = rest.get(8..)?;
    if age >= ttl || rows.len() != n.checked_mul(12)? {
        return None;
    }
    let out = rows.chunks_exact(12).map(|c| (i64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8])), f32::from_le_bytes(c[8..].try_into().unwrap_or([0; 4]))));
    Some((age, out.collect()))
}

/// The age of the rows stored under `key`, from the file's header alone (the rows are not
/// read: a window's scores are half a megabyte at 100K engaged posts).
pub fn age(kind: &str, key: &str) -> Option<Duration> {
    use std::io::Read;
    // Magic, key length, key, write time.
    let mut b = vec![0u8; 8 + 8 + key.len() + 8];
    std::fs::File::open(path(kind, key)).ok()?.read_exact(&mut b).ok()?;
    header(&b, key).map(|(age, _)| age)
}

/// Stores `rows` under `key` (best effort: a failure leaves the cache as it was).
pub fn put(kind: &str, key: &str, rows: &[(i64, f32)]) {
    let _ = write(kind, key, rows);
}

fn write(kind: &str, key: &str, rows: &[(i64, f32)]) -> std::io::Result<()> {
    let d = dir();
    std::fs::create_dir_all(&d)?;
    let target = path(kind, key);
    // SAFETY: reads the backend's pid.
    let tmp = target.with_extension(format!("tmp{}", unsafe { pgrx::pg_sys::MyProcPid }));
    let mut b = Vec::with_capacity(40 + key.len() + rows.len() * 12);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&now_micros().to_le_bytes());
    b.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    for (id, s) in rows {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::File::create(&tmp)?.write_all(&b)?;
    std::fs::rename(&tmp, &target)?;
    // Results of keys nobody asks for any more (other windows, roles, models) go away.
    for e in std::fs::read_dir(&d)?.flatten() {
        if e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > STALE)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}
