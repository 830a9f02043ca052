//! A real `blindpass serve` in a child process, for measurements that must
//! see the server as shipped — its start-up and its memory — rather than
//! an issuer inside the benchmark's own process. The child is killed when
//! the handle drops, on every path out of a benchmark; its memory is read
//! from `/proc/<pid>/status` (Linux only).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::BenchError;
use blindpass::client::Client;
use blindpass::protocol::api::paths;

/// How to start the child.
#[derive(Debug, Clone)]
pub(crate) struct ServeCommand {
    /// The `blindpass` executable.
    pub(crate) exe: PathBuf,
    /// An initialised data directory.
    pub(crate) data_dir: PathBuf,
    /// The operator passphrase, on the first line of a 0600 file.
    pub(crate) passphrase_file: PathBuf,
    /// Further `serve` flags (cache size, limits).
    pub(crate) flags: Vec<String>,
    /// Where the child's stdout and stderr go.
    pub(crate) log: PathBuf,
    /// How long to wait for its first healthy answer.
    pub(crate) ready_within: Duration,
}

/// A running `blindpass serve`; killed (and reaped) when dropped.
#[derive(Debug)]
pub(crate) struct SpawnedServer {
    child: Child,
    url: String,
}

impl SpawnedServer {
    /// Starts the child on a free local port and waits for `GET /healthz`
    /// to answer 200. Returns the server and the time from the spawn to
    /// that answer.
    pub(crate) fn start(command: &ServeCommand) -> Result<(Self, Duration), BenchError> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let log = File::create(&command.log)?;
        let started = Instant::now();
        let child = Command::new(&command.exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(&command.data_dir)
            .arg("--passphrase-file")
            .arg(&command.passphrase_file)
            .args(["--listen", &listen])
            .args(&command.flags)
            // The flags above decide; nothing from this environment may.
            .env_remove("BLINDPASS_PASSPHRASE")
            .env_remove("BLINDPASS_DATA_DIR")
            .env_remove("BLINDPASS_LISTEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        // From here on the guard kills the child on every way out.
        let mut server = Self {
            child,
            url: format!("http://{listen}"),
        };
        server.wait_healthy(started + command.ready_within, &command.log)?;
        Ok((server, started.elapsed()))
    }

    fn wait_healthy(&mut self, deadline: Instant, log: &Path) -> Result<(), BenchError> {
        let client = Client::new(&self.url).with_timeout(Duration::from_secs(1));
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(BenchError::Setup(format!(
                    "blindpass serve exited ({status}) before it was healthy; its log ends:\n{}",
                    tail(log, 15)
                )));
            }
            if matches!(client.get_raw(paths::HEALTHZ, None), Ok(r) if r.status == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Setup(format!(
                    "blindpass serve was not healthy in time; its log ends:\n{}",
                    tail(log, 15)
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // SIGKILL: what it had acknowledged is durable, and the data
        // directory is thrown away next.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (the child binds it a moment later).
fn free_port() -> Result<u16, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub(crate) rss_kib: u64,
    /// `VmHWM`: the most it has been resident since it started, KiB.
    pub(crate) hwm_kib: u64,
}

/// Reads a process's memory, or `None` if it is gone (or not on Linux).
pub(crate) fn memory(pid: u32) -> Option<Memory> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// One reading of the sampler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemorySample {
    pub(crate) at: Instant,
    pub(crate) memory: Memory,
}

/// Reads a process's memory at a fixed interval on a thread of its own.
pub(crate) struct MemorySampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<MemorySample>>>,
}

impl MemorySampler {
    /// Starts sampling `pid` every `every`.
    pub(crate) fn start(pid: u32, every: Duration) -> Result<Self, BenchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-memory".into())
            .spawn(move || {
                let mut samples = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    let Some(memory) = memory(pid) else { break };
                    samples.push(MemorySample {
                        at: Instant::now(),
                        memory,
                    });
                    std::thread::sleep(every);
                }
                samples
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and returns every sample, oldest first.
    pub(crate) fn finish(mut self) -> Vec<MemorySample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for MemorySampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until this process no longer holds a lock on `file` (Linux:
/// read from `/proc/locks`), at most `timeout`; whether it is free. sled
/// releases its lock from a background thread a moment after the database
/// is dropped, and a child that found it held would wait for it inside the
/// start-up being timed.
pub(crate) fn wait_until_unlocked(file: &Path, timeout: Duration) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(file) else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    loop {
        let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
            return true;
        };
        if !holds_lock(&locks, std::process::id(), meta.ino()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `/proc/locks` lists a lock held by `pid` on inode `ino`. Lines
/// read `1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF`;
/// the device is not compared, because `stat` and the lock table name it
/// differently on overlay file systems.
fn holds_lock(locks: &str, pid: u32, ino: u64) -> bool {
    let (pid, ino) = (pid.to_string(), ino.to_string());
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.windows(2).any(|w| {
            w[0] == pid && w[1].rsplit(':').next() == Some(ino.as_str()) && w[1].contains(':')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tblindpass\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\n\
                      VmRSS:\t   65432 kB\nThreads:\t12\n";
        assert_eq!(
            parse_status(status),
            Some(Memory {
                rss_kib: 65432,
                hwm_kib: 123456
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_memory_and_a_sampler_sees_it() {
        let mine = memory(std::process::id()).unwrap();
        assert!(mine.rss_kib > 0 && mine.hwm_kib >= mine.rss_kib);
        let sampler = MemorySampler::start(std::process::id(), Duration::from_millis(5)).unwrap();
        // Long enough for two samples even when a loaded machine is slow to
        // schedule the sampler's thread (50 ms was not, once in a while).
        std::thread::sleep(Duration::from_secs(1));
        let samples = sampler.finish();
        assert!(samples.len() >= 2, "{}", samples.len());
        assert!(samples.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn proc_locks_lines_are_read_by_pid_and_inode() {
        let locks = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF\n\
                     2: POSIX  ADVISORY  READ 77 00:1a:99 0 EOF\n";
        assert!(holds_lock(locks, 4242, 1_234_567));
        assert!(!holds_lock(locks, 4242, 99));
        assert!(!holds_lock(locks, 77, 1_234_567));
        assert!(holds_lock(locks, 77, 99));
        assert!(!holds_lock("", 1, 1));
    }

    #[test]
    fn a_dropped_store_is_seen_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            blindpass::store::Store::open(dir.path(), blindpass::store::StoreConfig::default())
                .unwrap();
        drop(store);
        assert!(wait_until_unlocked(
            &dir.path().join("db"),
            Duration::from_secs(10)
        ));
    }
}
