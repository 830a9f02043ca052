//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary
//! directory, a private Unix socket directory and port, no TCP listener,
//! and one fresh database per test. The cluster is shared by the tests of
//! one test binary while any of them holds a database, and is stopped and
//! removed when the last one lets go, on panic too.
//!
//! PostgreSQL comes from the distribution (`/usr/lib/postgresql/<N>/bin`,
//! installed by `.ci/run`). Without it, [`database`] fails the test under
//! `CI=true` and skips it otherwise, saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The user that owns the cluster when the tests run as root: PostgreSQL
/// refuses to run as root, and the distribution's package creates this one.
const CLUSTER_USER: &str = "postgres";

/// A running cluster; stopped (`pg_ctl stop -m immediate`) and its
/// directory removed on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// From `initdb` to `pg_ctl start -w` returning.
    pub started_in: Duration,
}

/// A fresh database `t_<random>` in the shared cluster; dropped with the
/// cluster's last user.
pub struct Database {
    cluster: Arc<Cluster>,
    name: String,
}

/// The cluster the tests of this binary share while one of them holds a
/// [`Database`]. A `Weak`, so the last database's drop stops it.
static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

/// A fresh database, or `None` (with the reason printed) when PostgreSQL is
/// not installed and `CI` is not `true`.
pub fn database() -> Option<Database> {
    let bin = installed()?;
    let cluster = {
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match shared.upgrade() {
            Some(cluster) => cluster,
            None => {
                let cluster = Arc::new(Cluster::start(bin));
                *shared = Arc::downgrade(&cluster);
                cluster
            }
        }
    };
    let name = format!("t_{}", random_hex());
    cluster.sql("postgres", &format!("CREATE DATABASE {name}"));
    Some(Database { cluster, name })
}

impl Cluster {
    /// A new cluster of its own, not shared: for a test that stops it or
    /// times its start.
    pub fn start(bin: PathBuf) -> Cluster {
        let t0 = Instant::now();
        // In /tmp whatever TMPDIR says: the postgres user must be able to
        // reach it, and a socket path must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("blindpass-pg-")
            .tempdir_in("/tmp")
            .expect("a temporary directory for the cluster");
        if as_root() {
            run(Command::new("chown")
                .arg(format!("{CLUSTER_USER}:"))
                .arg(dir.path()));
        }
        // The port only names the socket file; the directory is ours, so any
        // port is free there.
        let port = 20_000 + (u16::from_be_bytes(random_bytes()) % 40_000);
        let data = dir.path().join("data");
        let mut cluster = Cluster {
            dir,
            bin,
            port,
            started_in: Duration::ZERO,
        };
        run(cluster
            .tool("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"]));
        // No TCP listener; fsync off because the cluster dies with the test
        // (a figure measured on it says so); connections for a few tests
        // that each race 64 at once.
        let options = format!(
            "-k {} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=300",
            cluster.socket_dir().display()
        );
        run(cluster
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]));
        cluster.started_in = t0.elapsed();
        cluster
    }

    /// The directory of the cluster's Unix socket (`host=` in a conninfo).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (its tables' files and its WAL).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `statement` in `database` with `psql`, as the superuser.
    pub fn sql(&self, database: &str, statement: &str) -> String {
        let out = run(self
            .tool("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-c", statement]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// One of the cluster's programs, as [`CLUSTER_USER`] when we are root.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", CLUSTER_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Immediate: nothing in a throwaway cluster needs a checkpoint. The
        // TempDir then removes the directory.
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

impl Database {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// A libpq-style connection string (`tokio_postgres::Config` parses it).
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            self.cluster.socket_dir().display(),
            self.cluster.port,
            self.name
        )
    }

    /// Runs `statement` in this database with `psql`.
    pub fn sql(&self, statement: &str) -> String {
        self.cluster.sql(&self.name, statement)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // The cluster may serve other tests for a while yet; FORCE ends any
        // connection the test left open. Best effort: the cluster goes anyway.
        let _ = self
            .cluster
            .tool("psql")
            .args(["-X", "-q", "-h"])
            .arg(self.cluster.socket_dir())
            .args(["-p", &self.cluster.port.to_string(), "-U", "postgres"])
            .args(["-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// PostgreSQL's program directory, or `None` (with the reason printed) when
/// it is not installed and `CI` is not `true`; under `CI=true` its absence
/// fails the test.
pub fn installed() -> Option<PathBuf> {
    let bin = find_bin();
    if bin.is_none() {
        let reason = "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin \
                      or on PATH); `apt-get install postgresql`, or run .ci/run";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason}");
        }
        eprintln!("skipped: {reason}");
    }
    bin
}

/// The newest `/usr/lib/postgresql/<N>/bin` with an `initdb`, else the
/// directory of an `initdb` on `PATH`.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `command`; panics with its output if it fails.
fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

fn random_hex() -> String {
    hex::encode(random_bytes::<8>())
}
