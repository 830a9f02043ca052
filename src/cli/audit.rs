//! `blindpass audit`: the auditor's faces. `verify` checks the public audit
//! log of a running issuer against a pinned log key and the checkpoint seen
//! last time; `inspect` checks an issuer's data directory, or its running
//! process's memory, on site. Exit
//! status: 0 nothing found, 1 something found, 2 could not check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::{CliError, first_line};
use crate::auditor::memory::{MemoryReport, Progress};
use crate::auditor::periods::rfc3339;
use crate::auditor::{
    AuditReport, AuditorError, AuditorState, InspectError, InspectReport, PeriodStatus,
};
use crate::client::Client;
use crate::crypto::secret::Passphrase;

/// Exit status when the audit found something.
const EXIT_FAILED: u8 = 1;

/// Arguments of `blindpass audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Directory where the auditor remembers the last checkpoint it verified
    /// per server (so that a rolled-back or rewritten log is caught).
    #[arg(
        long,
        env = "BLINDPASS_AUDITOR_STATE",
        default_value = "blindpass-auditor",
        global = true
    )]
    pub state: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Subcommands of `blindpass audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an issuer's public audit log: checkpoint signature, entries,
    /// consistency with the last checkpoint seen, every period destroyed by
    /// its deadline, every directory key logged.
    ///
    /// Prints one row per period (PERIOD NAME OPENED DEADLINE DESTROYED
    /// LATE_BY STATUS), then the failures. Exit status: 0 passed, 1
    /// failures found, 2 could not check.
    Verify(VerifyArgs),
    /// Inspect an issuer on site: its data directory, or with --pid its
    /// running process's memory. Changes nothing.
    ///
    /// Data directory: no destroyed period's key in the key ring (needs the
    /// operator passphrase, from BLINDPASS_PASSPHRASE or --passphrase-file;
    /// without it that check is skipped), and no canary string in any file.
    ///
    /// Memory (--pid, as root): every mapping of the process (inaccessible
    /// ones too), read from /proc/PID/mem in 4 MiB chunks, is searched for period keys and
    /// canaries. A key is recognised by the commitment the audit log in
    /// --data-dir publishes for it: a destroyed period's key is a failure, a
    /// live period's key is reported only. Keys are tried as 32 raw bytes at
    /// 8-byte-aligned addresses (--all-offsets: every address) and as 64 hex
    /// digits at any address; only candidates that look random are
    /// HMAC-tested. Canaries are matched byte for byte at any address.
    /// Progress goes to stderr.
    ///
    /// What the memory scan cannot see: stale copies left on swap, kernel buffers
    /// (socket queues, the page cache of the data files), other processes
    /// and core dumps; keys held in another form (base64, split, XORed,
    /// inside an expanded cipher key schedule); raw copies at unaligned
    /// addresses unless --all-offsets; canaries in another encoding
    /// (UTF-16, JSON-escaped, lower case). The log is read from disk: run
    /// `audit verify` to check it is the signed one.
    ///
    /// Speed (release build, 2 shared cores, an issuer of 169 MiB mapped):
    /// 60-109 MiB/s at multiples of 8, 20 MiB/s with --all-offsets; the
    /// inspector itself needs about 12 MiB. See docs/auditor.md.
    ///
    /// Exit status: 0 passed, 1 failures found, 2 could not check.
    Inspect(InspectArgs),
}

/// Arguments of `blindpass audit verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["log_key", "log_key_file"])))]
pub struct VerifyArgs {
    /// Issuer base URL.
    #[arg(long, env = "BLINDPASS_SERVER")]
    pub server: String,
    /// The log's verifier key, `<name>+<hex id>+<base64 key>` (`blindpass
    /// serve` prints it and writes `audit/log.pub`). Get it from the
    /// operator out of band: a key fetched from the server proves nothing.
    #[arg(long, env = "BLINDPASS_LOG_KEY")]
    pub log_key: Option<String>,
    /// File holding the log's verifier key (first line).
    #[arg(long, value_name = "FILE")]
    pub log_key_file: Option<PathBuf>,
    /// Seconds past a deadline before a missing destruction counts as
    /// overdue.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub tolerance_s: u32,
    /// Audit as of this time (RFC 3339) instead of now. It is also recorded
    /// as the time this checkpoint was seen.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub at: Option<OffsetDateTime>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Witness policy file (docs/witness.md): refuse a checkpoint that
    /// lacks a quorum of its witnesses' cosignatures.
    #[arg(long, env = "BLINDPASS_WITNESS_POLICY", value_name = "FILE")]
    pub witness_policy: Option<PathBuf>,
}

/// Arguments of `blindpass audit inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The issuer's data directory.
    #[arg(long, env = "BLINDPASS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// A canary: a test value enrolled beforehand that must not appear in
    /// plain text in any file (with --pid: anywhere in the process's
    /// memory). Repeat for several.
    #[arg(long, value_name = "TEXT")]
    pub canary: Vec<String>,
    /// File holding the operator passphrase (first line). Without it, the
    /// passphrase is taken from BLINDPASS_PASSPHRASE; without either, the
    /// key-ring check is skipped. Not used with --pid.
    #[arg(long, env = "BLINDPASS_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The PKCS#11 token holding the master key (as for `serve --master`):
    /// also check that the token holds no key of a destroyed generation.
    #[arg(long, value_name = "PKCS11_URI", conflicts_with = "pid")]
    pub master: Option<String>,
    /// With --master, for nodes that share a PostgreSQL database: the
    /// database (postgres://user@host/dbname), where the key ring, the
    /// master slot and the audit log are; --data-dir is then one node's
    /// directory (scanned for the canaries).
    #[arg(long, value_name = "postgres://…", requires = "master")]
    pub store: Option<String>,
    /// Inspect the memory of this running issuer process instead of the
    /// files (needs root, or the right to trace it); --data-dir is where
    /// its audit log is.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// With --pid: try raw keys at every address, not only at multiples of
    /// 8 (several times slower where memory looks random).
    #[arg(long, requires = "pid")]
    pub all_offsets: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-12-01T12:00:00Z)"))
}

/// Runs `blindpass audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify(verify) => run_verify(&args.state, verify),
        AuditCommand::Inspect(inspect) => run_inspect(inspect),
    }
}

fn run_verify(state_dir: &Path, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let log_key = match (&args.log_key, &args.log_key_file) {
        (Some(key), _) => key.trim().to_owned(),
        (None, Some(path)) => first_line(path, "log key")?,
        // clap's required group makes one of them present.
        (None, None) => {
            return Err(CliError::new("give --log-key or --log-key-file", "see --help").into());
        }
    };
    let api = Client::new(&args.server);
    let state = AuditorState::new(state_dir);
    let now = args.at.unwrap_or_else(OffsetDateTime::now_utc);
    let tolerance = Duration::seconds(i64::from(args.tolerance_s));
    let policy = args
        .witness_policy
        .as_deref()
        .map(super::witness::read_policy)
        .transpose()?;
    let report =
        crate::auditor::verify_witnessed(&api, &log_key, policy.as_ref(), &state, now, tolerance)
            .map_err(|e| explain_verify(e, &args.server))?;
    finish(&report, args.json, print_verify, report.passed())
}

fn print_verify(report: &AuditReport) {
    match (&report.origin, report.checkpoint_size) {
        (Some(origin), Some(size)) => {
            outln!(
                "log {origin} at {}: {size} entries, checkpoint verified",
                report.server
            );
        }
        _ => outln!("log at {}: not verified", report.server),
    }
    match &report.previous {
        Some(previous) => outln!(
            "compared with the checkpoint of {} entries seen {}",
            previous.size,
            rfc3339(previous.seen_at)
        ),
        None => outln!("no earlier checkpoint for this server in the auditor state (first run)"),
    }
    if report.checkpoint_size.is_some() {
        outln!("directory: {} keys", report.directory_keys);
    }
    if !report.periods.is_empty() {
        outln!();
        print_periods(&report.periods);
    }
    outln!();
    if report.failures.is_empty() {
        outln!("PASSED: no failures");
    } else {
        outln!("FAILED: {} failure(s)", report.failures.len());
        for failure in &report.failures {
            outln!("  - {failure}");
        }
    }
    if report.saved {
        outln!("checkpoint remembered for the next run");
    } else {
        outln!("checkpoint NOT remembered: the log itself failed a check");
    }
}

fn print_periods(periods: &[PeriodStatus]) {
    let name_width = periods
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 24);
    outln!(
        "{:<32}  {:<name_width$}  {:<20}  {:<20}  {:<20}  {:<8}  STATUS",
        "PERIOD",
        "NAME",
        "OPENED",
        "DEADLINE",
        "DESTROYED",
        "LATE_BY"
    );
    for p in periods {
        let destroyed = p.destroyed_at.map(rfc3339).unwrap_or_else(|| "-".into());
        let late = p
            .late_by_s
            .map(|s| format!("{s} s"))
            .unwrap_or_else(|| "-".into());
        let name: String = p.name.chars().take(name_width).collect();
        outln!(
            "{:<32}  {:<name_width$}  {:<20}  {:<20}  {:<20}  {:<8}  {}",
            p.period.to_string(),
            name,
            rfc3339(p.opened_at),
            rfc3339(p.deadline),
            destroyed,
            late,
            p.status.word()
        );
    }
}

fn explain_verify(err: AuditorError, server: &str) -> anyhow::Error {
    let hint = match &err {
        AuditorError::BadLogKey(_) => {
            "give the key exactly as `blindpass serve` prints it (audit log key: …)".to_owned()
        }
        AuditorError::Transport(_) => {
            format!("check that the issuer is running at {server} and serves /audit/")
        }
        AuditorError::Io { .. } => "check --state and its permissions".to_owned(),
        AuditorError::BadState { .. } => "the state file is for another log key or was edited: \
             use another --state directory (keeping this one as evidence)"
            .to_owned(),
    };
    CliError::new(err.to_string(), hint).into()
}

fn passphrase(args: &InspectArgs) -> anyhow::Result<Option<Passphrase>> {
    if let Some(path) = &args.passphrase_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::new(
                format!("cannot read {}: {e}", path.display()),
                "check the path and its permissions",
            )
        })?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(CliError::new(
                format!("{} is empty", path.display()),
                "put the operator passphrase on its first line",
            )
            .into());
        }
        return Ok(Some(Passphrase::new(line.to_owned())));
    }
    Ok(std::env::var("BLINDPASS_PASSPHRASE")
        .ok()
        .filter(|v| !v.is_empty())
        .map(Passphrase::new))
}

/// Prints a report (as JSON, or with `print`) and turns its verdict into
/// the exit status: 0 passed, 1 failures found.
fn finish<R: serde::Serialize>(
    report: &R,
    json: bool,
    print: fn(&R),
    passed: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print(report);
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn run_inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    if let Some(pid) = args.pid {
        return run_inspect_memory(pid, &args);
    }
    let passphrase = passphrase(&args)?;
    let token = args
        .master
        .as_deref()
        .map(|spec| super::master::open_for_inspection(spec, &args.data_dir, args.store.as_deref()))
        .transpose()?;
    let shared_log = match &token {
        Some(token) => token.shared_log()?,
        None => None,
    };
    let report = match (&token, &shared_log) {
        (Some(token), Some(entries)) => crate::auditor::inspect_shared(
            &args.data_dir,
            entries,
            Some(|| token.summary()),
            &args.canary,
        ),
        (Some(token), None) => {
            crate::auditor::inspect_with(&args.data_dir, Some(|| token.summary()), &args.canary)
        }
        (None, _) => crate::auditor::inspect(&args.data_dir, passphrase.as_ref(), &args.canary),
    }
    .map_err(explain_inspect)?;
    let report = InspectWithToken {
        master_token: token.as_ref().map(|t| t.findings()).transpose()?,
        files: report,
    };
    let passed = report.files.passed() && report.master_token.as_ref().is_none_or(|t| t.passed());
    finish(&report, args.json, print_inspect_with_token, passed)
}

/// `audit inspect`'s report; with `--master`, what the token holds, in the
/// same JSON object.
#[derive(serde::Serialize)]
struct InspectWithToken {
    #[serde(flatten)]
    files: InspectReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    master_token: Option<super::master::TokenFindings>,
}

fn print_inspect_with_token(report: &InspectWithToken) {
    if let Some(token) = &report.master_token {
        token.print();
    }
    print_inspect(&report.files);
}

fn print_inspect(report: &InspectReport) {
    outln!("data directory {}", report.data_dir.display());
    outln!("{:<12} {:>6} {:>12}", "DIRECTORY", "FILES", "BYTES");
    for usage in &report.usage {
        outln!("{:<12} {:>6} {:>12}", usage.name, usage.files, usage.bytes);
    }
    out!(
        "audit log: {} entries, {} periods destroyed",
        report.log_entries,
        report.destroyed_in_log
    );
    if report.log_torn_tail_bytes > 0 {
        out!(
            " ({} bytes of a torn last append)",
            report.log_torn_tail_bytes
        );
    }
    outln!();
    match &report.vault {
        Some(v) => outln!(
            "key ring: master version {}, {} live periods, {} destroyed, {} signing keys, {} ring file(s)",
            v.master_version,
            v.live_periods,
            v.destroyed_periods,
            v.signing_keys,
            v.ring_files.len()
        ),
        None => outln!(
            "key ring: NOT checked (no passphrase; set BLINDPASS_PASSPHRASE or --passphrase-file)"
        ),
    }
    if report.canaries == 0 {
        outln!("canaries: none given (--canary TEXT)");
    } else {
        outln!(
            "canaries: {} searched for in {} files",
            report.canaries,
            report.files_scanned
        );
    }
    outln!();
    if report.failures.is_empty() {
        outln!("PASSED: no failures");
    } else {
        outln!("FAILED: {} failure(s)", report.failures.len());
        for failure in &report.failures {
            outln!("  - {failure}");
        }
    }
}

/// One progress line on stderr at most every two seconds, and the last.
fn progress_printer() -> impl FnMut(Progress) {
    let started = Instant::now();
    let mut last = started;
    move |p: Progress| {
        let now = Instant::now();
        if p.done < p.total && now.duration_since(last).as_secs_f64() < 2.0 {
            return;
        }
        last = now;
        let mib = |b: u64| b / (1024 * 1024);
        let rate = p.done as f64 / (1024.0 * 1024.0) / now.duration_since(started).as_secs_f64();
        eprintln!(
            "scanned {} of {} MiB ({rate:.0} MiB/s)",
            mib(p.done),
            mib(p.total)
        );
    }
}

fn run_inspect_memory(pid: u32, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let alignment = if args.all_offsets { 1 } else { 8 };
    let mut progress = progress_printer();
    let report = crate::auditor::memory::inspect_memory(
        pid,
        &args.data_dir,
        &args.canary,
        alignment,
        &mut progress,
    )
    .map_err(explain_inspect)?;
    finish(&report, args.json, print_memory, report.passed())
}

fn print_memory(report: &MemoryReport) {
    outln!(
        "process {}: {} mappings, {} MiB scanned in {:.1} s ({:.0} MiB/s), {} MiB unreadable",
        report.pid,
        report.mappings,
        report.bytes_scanned / (1024 * 1024),
        report.elapsed_ms as f64 / 1000.0,
        report.mib_per_s(),
        report.bytes_unreadable / (1024 * 1024)
    );
    outln!(
        "audit log: {} live and {} destroyed periods; raw keys tried at multiples of {} bytes, {} candidates HMAC-tested",
        report.live_periods,
        report.destroyed_periods,
        report.alignment,
        report.candidates_tested
    );
    if report.canaries == 0 {
        outln!("canaries: none given (--canary TEXT)");
    } else {
        outln!("canaries: {} searched for", report.canaries);
    }
    for live in &report.live_keys {
        outln!(
            "live: period {}'s key is in memory ({}), as expected while it runs",
            live.period,
            live.copies
        );
    }
    outln!();
    if report.failures.is_empty() {
        outln!("PASSED: no failures");
    } else {
        outln!("FAILED: {} failure(s)", report.failures.len());
        for failure in &report.failures {
            outln!("  - {failure}");
        }
    }
}

fn explain_inspect(err: InspectError) -> anyhow::Error {
    let hint = match &err {
        InspectError::NotADataDir(_) => "point --data-dir at the issuer's data directory",
        InspectError::Io { .. } => "check the path and its permissions",
        InspectError::EmptyCanary(_) => "give each --canary a non-empty value",
        InspectError::Vault(_) => {
            "check BLINDPASS_PASSPHRASE / --passphrase-file: it must open the master slot"
        }
        InspectError::Process { .. } => {
            "check the process id (pgrep -x blindpass) and run as root: reading another \
             process's memory needs the right to trace it"
        }
    };
    CliError::new(err.to_string(), hint).into()
}
