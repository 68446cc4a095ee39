//! A throwaway PostgreSQL 15 cluster for tests: initdb in a temp directory, a free port on
//! loopback, stopped on drop. Expects pg_recsys installed (scripts/install_ext.sh).
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn as_postgres(prog: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", prog]);
        c
    } else {
        Command::new(prog)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Cluster {
    /// Starts a new cluster named `name` (its directory is wiped first).
    pub fn start(name: &str) -> Cluster {
        Self::start_with(name, &[])
    }

    pub fn start_with(name: &str, settings: &[&str]) -> Cluster {
        let dir = PathBuf::from(format!("/tmp/pg_recsys_e2e/{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres", "/tmp/pg_recsys_e2e"]);
                    c
                },
                "chown",
            );
            let _ = Command::new("chmod").args(["755", "/tmp/pg_recsys_e2e"]).status();
        }
        let mut c = as_postgres(&format!("{BIN}/initdb"));
        c.arg("-D").arg(&dir).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
        run(c, "initdb");
        let port = free_port();
        let mut opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.display());
        for s in settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let mut c = as_postgres(&format!("{BIN}/pg_ctl"));
        c.arg("-D").arg(&dir).arg("-l").arg(dir.join("server.log")).args(["-w", "-o", &opts, "start"]);
        // Servers in the field do not run with Rust backtraces on; keep messages as users see them.
        c.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
        run(c, "pg_ctl start");
        Cluster { dir, port }
    }

    pub fn psql_cmd(&self, db: &str) -> Command {
        psql_at(self.port, db)
    }

    /// Runs SQL, panics on error, returns stdout (unaligned, tuples only).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_cmd(db).args(["-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql]).output().expect("psql");
        assert!(out.status.success(), "SQL failed: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Runs SQL that must fail; returns stderr.
    pub fn sql_err(&self, db: &str, sql: &str) -> String {
        let out = self.psql_cmd(db).args(["-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-c", sql]).output().expect("psql");
        assert!(!out.status.success(), "expected an error from: {sql}");
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// Runs a script file echoing statements, errors included, as a golden-file transcript.
    pub fn transcript(&self, db: &str, file: &Path) -> Output {
        // stderr is merged into stdout by the shell so errors stay next to their statements.
        Command::new("bash")
            .args(["-c", "exec \"$@\" 2>&1", "bash", "psql", "-X", "-q", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-a", "-v", "VERBOSITY=verbose", "-v", "SHOW_CONTEXT=never", "-f"])
            .arg(file)
            .env("PGTZ", "UTC")
            .env("PGOPTIONS", "-c lc_messages=C")
            .stdin(Stdio::null())
            .output()
            .expect("psql")
    }

    /// A hot standby of this cluster: pg_basebackup over streaming replication, started on a
    /// free port, replaying the primary's WAL.
    pub fn start_standby(&self, name: &str) -> Cluster {
        let dir = PathBuf::from(format!("/tmp/pg_recsys_e2e/{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = as_postgres("/usr/bin/pg_basebackup");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-R", "-X", "stream", "-D"]).arg(&dir);
        run(c, "pg_basebackup");
        let port = free_port();
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c hot_standby=on", dir.display());
        let mut c = as_postgres(&format!("{BIN}/pg_ctl"));
        c.arg("-D").arg(&dir).arg("-l").arg(dir.join("server.log")).args(["-w", "-o", &opts, "start"]);
        c.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
        run(c, "pg_ctl start (standby)");
        Cluster { dir, port }
    }

    /// Waits until the server accepts queries again (after a crash restart), up to `secs`.
    pub fn wait_ready(&self, secs: u64) -> bool {
        let t = std::time::Instant::now();
        while t.elapsed().as_secs() < secs {
            let ok = self.psql_cmd("postgres").args(["-A", "-t", "-c", "SELECT 1"]).output().map(|o| o.status.success()).unwrap_or(false);
            if ok {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    }

    pub fn createdb(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut c = as_postgres(&format!("{BIN}/pg_ctl"));
        c.arg("-D").arg(&self.dir).args(["-m", "immediate", "-w", "stop"]);
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// psql to `db` on the loopback `port` as postgres, UTC, messages in English.
fn psql_at(port: u16, db: &str) -> Command {
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", db]);
    c.env("PGTZ", "UTC").env("PGOPTIONS", "-c lc_messages=C");
    c
}

/// PgBouncer in front of a cluster (`scripts/setup.sh` installs it), transaction pooling with
/// `pool` server connections; stopped on drop.
pub struct Bouncer {
    dir: PathBuf,
    pub port: u16,
}

impl Bouncer {
    pub fn start(c: &Cluster, name: &str, pool: u32) -> Bouncer {
        let exe = "/usr/sbin/pgbouncer";
        assert!(Path::new(exe).exists(), "{exe} is missing: run scripts/setup.sh (it installs pgbouncer)");
        let dir = PathBuf::from(format!("/tmp/pg_recsys_e2e/{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let port = free_port();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("users.txt");
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {d}/users.txt\npool_mode = transaction\ndefault_pool_size = {pool}\n\
             ignore_startup_parameters = options,extra_float_digits\nlogfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n",
            c.port,
            d = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("pgbouncer.ini");
        if is_root() {
            let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
        }
        let mut cmd = as_postgres(exe);
        cmd.arg("-d").arg(dir.join("pgbouncer.ini"));
        run(cmd, "pgbouncer");
        let b = Bouncer { dir, port };
        let t = std::time::Instant::now();
        while b.try_sql("postgres", "SELECT 1").is_none() {
            assert!(t.elapsed().as_secs() < 20, "pgbouncer does not answer: {}", std::fs::read_to_string(b.dir.join("pgbouncer.log")).unwrap_or_default());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        b
    }

    fn output(&self, db: &str, sql: &str) -> Output {
        psql_at(self.port, db).args(["-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql]).output().expect("psql")
    }

    fn try_sql(&self, db: &str, sql: &str) -> Option<String> {
        let out = self.output(db, sql);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Runs SQL over a new client connection to the pooler; panics on error.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = self.output(db, sql);
        assert!(out.status.success(), "SQL through pgbouncer failed: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("root")
}

/// Normalises a transcript: drops LOCATION lines (source file:line of the server) and the
/// psql file prefix, so the golden files hold only what a user sees.
pub fn normalise(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("LOCATION:"))
        .map(|l| {
            if let Some(p) = l.find(".sql:") {
                if l.starts_with("psql:") {
                    // psql:/path/x.sql:12: ERROR: ... -> ERROR: ...
                    let rest = &l[p + 5..];
                    return rest.split_once(": ").map(|x| x.1).unwrap_or(rest).to_string();
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
