//! `bench scale`: the issuer at a city's size, as shipped. A data directory
//! is filled in-process with N residents in the current period (R of them
//! with passwords) and M in a second, "doomed" period; then the real
//! `blindpass serve` is started on it as a child process and measured:
//!
//! - start time: from the spawn to the first `GET /healthz` 200;
//! - memory under load: the child's `VmRSS` every 100 ms and its `VmHWM`,
//!   while C clients ask for passes as the R residents;
//! - the stall a destruction causes: during that load the doomed period is
//!   ended through the admin API, which destroys its key and purges its
//!   sled trees at once; the p99 latency of requests in flight while that
//!   runs is divided by the p99 before it;
//! - size on disk per resident, before the destruction.
//!
//! Only the start-up, the load and the destruction are measured; the
//! set-up's rate is reported so a reader knows what filling took.

mod analysis;
mod destruction;
mod report;
mod setup;

use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::enrol::{Sessions, log_in};
use super::issue::{Load, blind_all, check_sample, issuer_key, timed_issuance, token_request_path};
use super::report::Report;
use super::spawned::{self, MemorySampler, ServeCommand, SpawnedServer};
use super::{BenchError, ScratchDir};
use blindpass::crypto::blind::{IssuerPublicKey, PendingToken};
use blindpass::issuer::DataDir;
use destruction::{Admin, issue_while_destroying, server_times};
use report::{Measured, report};
use setup::{Filled, populate};

/// Settings of `bench scale`.
#[derive(Debug, Clone)]
pub struct ScaleSettings {
    /// Residents enrolled in the current period.
    pub residents: usize,
    /// How many of them get a password, log in over HTTP and ask for passes.
    pub with_passwords: usize,
    /// Residents enrolled in the doomed period.
    pub doomed: usize,
    /// Client threads asking for passes.
    pub concurrency: usize,
    /// Untimed warm-up of the load.
    pub warmup: Duration,
    /// The timed phase of the load.
    pub duration: Duration,
    /// How far into the timed phase the doomed period is ended.
    pub end_after: Duration,
    /// The server's sled page cache (`serve --cache-mib`).
    pub cache_mib: u64,
    /// Token requests to prepare; by default 1.5 times what a short probe
    /// of the server says the load will use.
    pub requests: Option<usize>,
    /// The `blindpass` executable to run `serve` from.
    pub serve_exe: PathBuf,
    /// Where the scratch directory goes.
    pub scratch_parent: PathBuf,
    /// Where the server's own log goes (default: the scratch directory,
    /// removed with it).
    pub server_log: Option<PathBuf>,
    /// No progress lines.
    pub quiet: bool,
}

/// Target: from the spawn to the first healthy answer, at most this.
pub const TARGET_START_S: f64 = 10.0;
/// Target: the server's peak resident memory, at most this.
pub const TARGET_RSS_MIB: f64 = 300.0;
/// Target: p99 while a period is destroyed at most this multiple of p99 before.
pub const TARGET_STALL_RATIO: f64 = 2.0;

/// The class asked for: `medical` has no quota, so every request is a signature.
const CLASS: &str = "medical";
/// How often the child's memory is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long the child may take to become healthy before the run is abandoned
/// (well past the target, so that a slow start is measured, not hidden).
const READY_WITHIN: Duration = Duration::from_secs(300);
/// Large enough that one load generator is never rate-limited.
const NO_RATE_LIMIT: [&str; 4] = ["--rate-burst", "1000000000", "--rate-per-s", "1e9"];

/// Runs `bench scale`.
pub fn run(settings: &ScaleSettings) -> Result<Report, BenchError> {
    let scratch = ScratchDir::create(&settings.scratch_parent, "scale")?;
    let filled = populate(scratch.path(), settings)?;
    let lock_released = spawned::wait_until_unlocked(
        &DataDir::new(&filled.data_dir).sled().join("db"),
        Duration::from_secs(30),
    );

    let (server, start_time) = SpawnedServer::start(&serve_command(settings, &filled, &scratch))?;
    let sampler = MemorySampler::start(server.pid(), SAMPLE_EVERY)?;
    let at_ready = spawned::memory(server.pid()).unwrap_or_default();
    let admin = admin_token(&filled.data_dir)?;
    let log_key = log_key(&filled.data_dir)?;

    let prepared = prepare_load(settings, server.url(), &filled.tag)?;
    let before_load = spawned::memory(server.pid()).unwrap_or_default();

    let (issued, destruction) = issue_while_destroying(
        &prepared.path,
        &prepared.sessions.sessions,
        &prepared.requests,
        prepared.load,
        settings.warmup + settings.end_after,
        &Admin {
            base: server.url(),
            token: &admin,
            log_key: &log_key,
            period: filled.doomed,
        },
    );
    let samples = sampler.finish();
    let server_log = server_times(server.url(), &log_key, &filled.doomed);
    drop(server);
    drop(scratch);

    let (checked, answered) = check_sample(&prepared.key, &prepared.pending, &issued);
    let measured = Measured {
        filled,
        lock_released,
        start_time,
        at_ready,
        before_load,
        sessions: prepared.sessions,
        issued,
        destruction,
        samples,
        server_log,
        checked,
        answered,
    };
    Ok(report(settings, &measured))
}

/// Everything the load needs, ready before its clock starts.
struct Prepared {
    sessions: Sessions,
    key: IssuerPublicKey,
    /// Path and query of token requests of [`CLASS`] today.
    path: String,
    load: Load,
    /// Encoded token requests, blinded.
    requests: Vec<Vec<u8>>,
    /// The pending tokens of the first few, to finish and check.
    pending: Vec<PendingToken>,
}

/// Logs the residents with passwords in over HTTP (run `tag`), fetches
/// today's key, and blinds enough requests for the load.
fn prepare_load(
    settings: &ScaleSettings,
    base_url: &str,
    tag: &str,
) -> Result<Prepared, BenchError> {
    let sessions = log_in(
        base_url,
        tag,
        settings.with_passwords,
        settings.concurrency.clamp(1, 8),
        settings.quiet,
    );
    if sessions.sessions.is_empty() {
        return Err(BenchError::Setup(format!(
            "no resident could log in ({})",
            sessions.login.errors
        )));
    }
    let (key, window, digest) = issuer_key(base_url, CLASS)?;
    let load = Load {
        concurrency: settings.concurrency,
        warmup: settings.warmup,
        duration: settings.duration,
        quiet: settings.quiet,
    };
    let path = token_request_path(CLASS, &window);
    let wanted = match settings.requests {
        Some(n) => n,
        // The rate drifts by a third from one minute to the next here:
        // prepare half as much again as the probe suggests.
        None => load.requests_for(
            probe_rate(base_url, &path, &sessions.sessions, &key, digest, load)? * 1.5,
        ),
    };
    let (requests, pending) = blind_all(&key, digest, wanted, settings.quiet)?;
    Ok(Prepared {
        sessions,
        key,
        path,
        load,
        requests,
        pending,
    })
}

/// Passes/s of the real server, from a short burst (about a second's
/// worth of requests): sizes the requests to prepare without blinding far
/// more than the load can send. The burst also warms the server up.
fn probe_rate(
    base: &str,
    path: &str,
    sessions: &[String],
    key: &IssuerPublicKey,
    digest: [u8; 32],
    load: Load,
) -> Result<f64, BenchError> {
    let count = 100 * load.concurrency.max(1);
    let (requests, _) = blind_all(key, digest, count, true)?;
    let probe = Load {
        warmup: Duration::ZERO,
        duration: Duration::from_secs(60),
        quiet: true,
        ..load
    };
    let run = timed_issuance(base, path, sessions, &requests, probe);
    if run.ok == 0 {
        return Err(BenchError::Setup(format!(
            "no pass was issued in the probe ({})",
            run.errors
        )));
    }
    Ok(run.rate())
}

fn serve_command(settings: &ScaleSettings, filled: &Filled, scratch: &ScratchDir) -> ServeCommand {
    let mut flags = vec!["--cache-mib".to_owned(), settings.cache_mib.to_string()];
    flags.extend(NO_RATE_LIMIT.iter().map(|s| (*s).to_owned()));
    ServeCommand {
        exe: settings.serve_exe.clone(),
        data_dir: filled.data_dir.clone(),
        passphrase_file: filled.passphrase_file.clone(),
        flags,
        log: settings
            .server_log
            .clone()
            .unwrap_or_else(|| scratch.path().join("serve.log")),
        ready_within: READY_WITHIN,
    }
}

/// The admin token `serve` wrote into the data directory.
fn admin_token(data_dir: &Path) -> Result<Zeroizing<String>, BenchError> {
    let text = Zeroizing::new(std::fs::read_to_string(data_dir.join("admin.token"))?);
    let token = Zeroizing::new(text.lines().next().unwrap_or("").trim().to_owned());
    if token.is_empty() {
        return Err(BenchError::Setup(
            "the server wrote an empty admin token".into(),
        ));
    }
    Ok(token)
}

/// The audit log's public key, to verify what the server's log says.
fn log_key(data_dir: &Path) -> Result<String, BenchError> {
    Ok(std::fs::read_to_string(DataDir::new(data_dir).audit_key())?
        .trim()
        .to_owned())
}
