//! `blindpass verify`: sync the issuer's key directory while online, then
//! check passes offline — from the payload text, stdin, or a photo of the QR
//! code. Exit status: 0 valid, 1 invalid, 2 could not check.

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::CliError;
use crate::verifier::{
    CheckReport, DirectoryCache, Staleness, SyncOutcome, Verdict, VerifierError, scan,
};

/// Server used by `sync` when neither `--server` nor the cache names one.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Exit status of a check that found the pass invalid.
const EXIT_INVALID: u8 = 1;

/// Arguments of `blindpass verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Directory holding the cached key directory (`directory.json`).
    #[arg(
        long,
        env = "BLINDPASS_VERIFIER_CACHE",
        default_value = "blindpass-verifier"
    )]
    pub cache: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: VerifyCommand,
}

/// Subcommands of `blindpass verify`.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Fetch the issuer's key directory and cache it for offline checks.
    Sync(SyncArgs),
    /// Check a pass offline against the cached directory.
    ///
    /// Prints `VALID <class> <window>` or `INVALID: <reason>`, and a warning
    /// on stderr when the cached directory is older than its max-age (the
    /// check still uses it). Exit status: 0 valid, 1 invalid, 2 error.
    Check(CheckArgs),
}

/// Arguments of `blindpass verify sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Issuer base URL [default: the server the cache came from, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "BLINDPASS_SERVER")]
    pub server: Option<String>,
    /// Witness policy file (docs/witness.md): store the directory only if
    /// the issuer's audit log, under a checkpoint cosigned by a quorum of
    /// its witnesses, publishes every key in it. Needs --log-key.
    #[arg(
        long,
        env = "BLINDPASS_WITNESS_POLICY",
        value_name = "FILE",
        requires = "log_key"
    )]
    pub witness_policy: Option<PathBuf>,
    /// The issuer's audit log key, as `blindpass serve` prints it.
    #[arg(long, env = "BLINDPASS_LOG_KEY", value_name = "VKEY")]
    pub log_key: Option<String>,
}

/// Arguments of `blindpass verify check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The QR payload text (`BP1:…`). Read from stdin when neither this nor
    /// --image is given.
    #[arg(conflicts_with = "image")]
    pub payload: Option<String>,
    /// Read the pass from a PNG or JPEG picture of its QR code.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Check as of this time (RFC 3339, e.g. 2026-12-01T12:00:00Z) instead
    /// of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub at: Option<OffsetDateTime>,
    /// Clock difference to tolerate at the window's edges, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub skew_s: u32,
    /// Print one JSON object: {"valid", "class", "window", "reason",
    /// "detail", "stale"}.
    #[arg(long)]
    pub json: bool,
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-12-01T12:00:00Z)"))
}

/// Runs `blindpass verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        VerifyCommand::Sync(sync) => run_sync(&args.cache, sync),
        VerifyCommand::Check(check) => run_check(&args.cache, check),
    }
}

fn run_sync(cache_dir: &Path, args: SyncArgs) -> anyhow::Result<ExitCode> {
    let server = args
        .server
        .or_else(|| {
            DirectoryCache::load(cache_dir)
                .ok()
                .and_then(|c| c.source().map(str::to_owned))
        })
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let policy = args
        .witness_policy
        .as_deref()
        .map(super::witness::read_policy)
        .transpose()?;
    let (cache, outcome) =
        DirectoryCache::sync_checked(cache_dir, &server, OffsetDateTime::now_utc(), |dir| match (
            &policy,
            &args.log_key,
        ) {
            (Some(policy), Some(log_key)) => {
                crate::verifier::witnessed::check_directory(&server, log_key.trim(), policy, dir)
            }
            _ => Ok(()),
        })
        .map_err(|e| explain(e, cache_dir))?;
    let dir = cache.directory();
    match outcome {
        SyncOutcome::Updated => outln!(
            "synced {} keys from {server} (issuer {}, max-age {} s)",
            dir.keys.len(),
            dir.issuer_name,
            dir.max_age_s
        ),
        SyncOutcome::NotModified => outln!(
            "directory unchanged at {server}; {} keys, fetch time refreshed",
            dir.keys.len()
        ),
    }
    outln!("{:<12} {:<10} KEY ID", "CLASS", "WINDOW");
    for key in &dir.keys {
        let short = key.key_id.get(..16).unwrap_or(&key.key_id);
        outln!(
            "{:<12} {:<10} {short}…",
            key.class.as_str(),
            key.window.to_string()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_check(cache_dir: &Path, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cache = DirectoryCache::load(cache_dir).map_err(|e| explain(e, cache_dir))?;
    let payload = match (args.payload, &args.image) {
        (Some(text), _) => text,
        (None, Some(path)) => {
            scan::payload_from_image_file(path).map_err(|e| explain(e, cache_dir))?
        }
        (None, None) => read_stdin_payload()?,
    };
    let at = args.at.unwrap_or_else(OffsetDateTime::now_utc);
    let report = cache.check(&payload, at, Duration::seconds(i64::from(args.skew_s)));
    if let Some(stale) = &report.staleness {
        eprintln!("{}", stale_warning(stale));
    }
    if args.json {
        outln!("{}", report_json(&report));
    } else {
        match &report.verdict {
            Verdict::Valid(pass) => outln!("VALID {} {}", pass.class(), pass.window()),
            Verdict::Invalid(reason) => outln!("INVALID: {reason}"),
        }
    }
    Ok(if report.verdict.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

fn read_stdin_payload() -> anyhow::Result<String> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("paste the pass payload (BP1:…), then press Enter and Ctrl-D:");
    }
    let mut text = String::new();
    // A payload is 535 characters; a bound keeps a runaway pipe harmless.
    stdin
        .by_ref()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| {
            CliError::new(
                format!("cannot read stdin: {e}"),
                "pipe the payload text in, or pass it as an argument",
            )
        })?;
    if text.trim().is_empty() {
        return Err(CliError::new(
            "no payload given",
            "pass the payload as an argument, pipe it on stdin, or use --image FILE",
        )
        .into());
    }
    Ok(text)
}

fn stale_warning(stale: &Staleness) -> String {
    let at = stale.fetched_at;
    let at = at.replace_nanosecond(0).unwrap_or(at);
    let fetched = at.format(&Rfc3339).unwrap_or_else(|_| at.to_string());
    format!(
        "warning: directory is stale (fetched {fetched}, max-age {} s, overdue by {} s); run `blindpass verify sync` when online",
        stale.max_age_s,
        stale.overdue.whole_seconds()
    )
}

fn report_json(report: &CheckReport) -> serde_json::Value {
    match &report.verdict {
        Verdict::Valid(pass) => serde_json::json!({
            "valid": true,
            "class": pass.class().as_str(),
            "window": pass.window().to_string(),
            "reason": null,
            "detail": null,
            "stale": report.stale(),
        }),
        Verdict::Invalid(reason) => {
            let (class, window) = match reason.class_and_window() {
                Some((c, w)) => (Some(c.to_string()), Some(w.to_string())),
                None => (None, None),
            };
            serde_json::json!({
                "valid": false,
                "class": class,
                "window": window,
                "reason": reason.code(),
                "detail": reason.to_string(),
                "stale": report.stale(),
            })
        }
    }
}

/// Turns a verifier error into a message with what to do next.
fn explain(err: VerifierError, cache_dir: &Path) -> anyhow::Error {
    let cache = cache_dir.display();
    let hint = match &err {
        VerifierError::NoCache(_) => format!(
            "sync the key directory first, while online: blindpass verify --cache {cache} sync --server URL"
        ),
        VerifierError::BadDirectory(_) => {
            format!("sync again: blindpass verify --cache {cache} sync --server URL")
        }
        VerifierError::Network { .. } => {
            "check that the issuer is running and --server is right; cached keys are kept".into()
        }
        VerifierError::Server { .. } => "check --server: it must be the issuer's base URL".into(),
        VerifierError::Image { .. } => "give a PNG or JPEG picture of the pass".into(),
        VerifierError::ImageTooLarge { .. } => {
            "crop or scale the picture to the pass (a few megapixels is plenty), or pass the payload text"
                .into()
        }
        VerifierError::NoQrCode(_) => {
            "take a sharper, straight picture with the whole code in it, or pass the payload text"
                .into()
        }
        VerifierError::Io { .. } => "check the path and its permissions".into(),
        VerifierError::Unwitnessed(_) => {
            "the cached keys were kept; report this issuer to an auditor (blindpass audit verify)"
                .into()
        }
    };
    CliError::new(err.to_string(), hint).into()
}
