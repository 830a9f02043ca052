//! `blindpass bench`: the load generator and micro-benchmarks
//! (`crate::bench`). Parses the flags, runs one mode, prints its report as
//! a table or as JSON. Part of the binary, not of the library: `src/main.rs`
//! declares it, and adds `bench` to the library's commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::bench::server::{Target, bench_http_config};
use crate::bench::{destroy, enrol, issue, raw, scale, verify};
use blindpass::cli::CliError;

// The binary's own command, added to the library's faces. (A plain
// comment: clap would take a doc comment here as the whole program's about.)
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load generator and micro-benchmarks against a running issuer.
    Bench(BenchArgs),
}

/// Runs `blindpass bench`.
pub fn run_command(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Bench(args) => run(args),
    }
}

/// Arguments of `blindpass bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print the report as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// What to measure.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The modes of `blindpass bench`.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Passes over HTTP for a fixed time at a fixed concurrency.
    Issue(IssueArgs),
    /// Enrolment and login over HTTP.
    Enrol(EnrolArgs),
    /// The verifier's offline check, one core, per backend (in-process).
    Verify(VerifyArgs),
    /// Destruction of a period of N records (in-process).
    Destroy(DestroyArgs),
    /// Raw blind signing per backend, on one and on every core.
    Sign(SignArgs),
    /// A real `blindpass serve` over N enrolled residents: start time, memory
    /// under load, the stall while a period of M residents is destroyed,
    /// size on disk per resident.
    Scale(ScaleArgs),
}

/// Which server to load.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// A running `blindpass serve`, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: Option<String>,
    /// Start an issuer in this process on 127.0.0.1:0 over a temporary data
    /// directory, with the per-address rate limit off.
    #[arg(long)]
    pub in_process: bool,
}

/// Settings of an in-process server.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// File holding the admin token (first line), to open a period on an
    /// external server when none is open.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// In-process server: concurrent RSA signatures (default: cores).
    #[arg(long)]
    pub sign_permits: Option<usize>,
    /// In-process server: concurrent Argon2id computations (default: cores / 2).
    #[arg(long)]
    pub argon2_permits: Option<usize>,
    /// Where temporary data directories go (default: the system temp dir).
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
}

/// `bench issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    server: ServerArgs,
    /// Residents enrolled and logged in before the timed phase.
    #[arg(long, default_value_t = 100)]
    residents: usize,
    /// Client threads.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Length of the timed phase, seconds.
    #[arg(long, default_value_t = 20.0)]
    duration_s: f64,
    /// Untimed warm-up before it, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Permit class (medical has no quota).
    #[arg(long, default_value = "medical")]
    class: String,
    /// Token requests to prepare (default: enough for the raw signing rate).
    #[arg(long)]
    requests: Option<usize>,
    /// Seconds per operation of `openssl speed -multi <cores> rsa2048`; 0 skips it.
    #[arg(long, default_value_t = 5)]
    openssl_seconds: u32,
    /// Seconds of raw blind signing measured before, and again after, the timed phase.
    #[arg(long, default_value_t = 2.0)]
    calibrate_s: f64,
}

/// `bench enrol`.
#[derive(Debug, Args)]
pub struct EnrolArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    server: ServerArgs,
    /// Client threads.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Residents to enrol, then log in.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Seconds of raw Argon2id measurement, half before and half after the
    /// HTTP phases.
    #[arg(long, default_value_t = 4.0)]
    raw_seconds: f64,
}

/// `bench verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verifications per figure.
    #[arg(long, default_value_t = 20_000)]
    tokens: usize,
    /// Seconds per operation of `openssl speed rsa2048`; 0 skips it.
    #[arg(long, default_value_t = 2)]
    openssl_seconds: u32,
    /// Interleaved rounds; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// `bench destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Residents in the period.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Where the temporary data directories go (default: the system temp dir).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
}

/// `bench scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Residents enrolled in the current period (in-process, before the
    /// server starts).
    #[arg(long, default_value_t = 1_000_000)]
    residents: usize,
    /// How many of them get a password, log in over HTTP and ask for passes.
    #[arg(long, default_value_t = 100)]
    with_passwords: usize,
    /// Residents of the period destroyed under load [default: --residents].
    #[arg(long)]
    doomed: Option<usize>,
    /// Client threads asking for passes.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Length of the timed phase of the load, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration_s: f64,
    /// Untimed warm-up before it, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Seconds into the timed phase at which the doomed period is ended
    /// [default: a third of --duration-s].
    #[arg(long)]
    end_after_s: Option<f64>,
    /// The server's sled page cache, MiB (passed to `serve --cache-mib`).
    #[arg(long, default_value_t = 64)]
    cache_mib: u64,
    /// Token requests to prepare (default: 1.5 times what a short probe of
    /// the server says the load will use).
    #[arg(long)]
    requests: Option<usize>,
    /// Where the temporary data directory goes (default: the system temp dir).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
    /// Keep the server's log (stdout and stderr) in this file (default: in
    /// the temporary directory, removed with it).
    #[arg(long)]
    server_log: Option<PathBuf>,
}

/// `bench sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Seconds per figure per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Seconds per operation of `openssl speed rsa2048` (and `-multi`); 0 skips it.
    #[arg(long, default_value_t = 2)]
    openssl_seconds: u32,
    /// Interleaved rounds; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn scratch(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(std::env::temp_dir)
}

fn target(target: TargetArgs, server: ServerArgs) -> anyhow::Result<Target> {
    if let Some(url) = target.server {
        let admin_token = match &server.admin_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
            )
            .filter(|t| !t.is_empty()),
            None => None,
        };
        if server.sign_permits.is_some() || server.argon2_permits.is_some() {
            return Err(CliError::new(
                "--sign-permits and --argon2-permits only apply to --in-process",
                "drop them, or use --in-process",
            )
            .into());
        }
        return Ok(Target::External { url, admin_token });
    }
    let mut http = bench_http_config();
    if let Some(p) = server.sign_permits {
        http.sign_permits = p.max(1);
    }
    if let Some(p) = server.argon2_permits {
        http.argon2_permits = p.max(1);
    }
    Ok(Target::InProcess {
        scratch_parent: scratch(server.scratch_dir),
        http,
    })
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        CliError::new(
            format!("{what} must be a non-negative number of seconds"),
            "e.g. --duration-s 20",
        )
        .into()
    })
}

fn scale_settings(a: ScaleArgs, quiet: bool) -> anyhow::Result<scale::ScaleSettings> {
    if a.concurrency == 0 || a.with_passwords == 0 || a.with_passwords > a.residents {
        return Err(CliError::new(
            "--concurrency must be at least 1, and --with-passwords from 1 to --residents",
            "e.g. --residents 100000 --with-passwords 100 --concurrency 16",
        )
        .into());
    }
    let duration = seconds(a.duration_s, "--duration-s")?;
    let end_after = match a.end_after_s {
        Some(s) => seconds(s, "--end-after-s")?,
        None => duration / 3,
    };
    if end_after >= duration {
        return Err(CliError::new(
            "--end-after-s must fall inside the timed phase",
            "make it smaller than --duration-s",
        )
        .into());
    }
    Ok(scale::ScaleSettings {
        residents: a.residents,
        with_passwords: a.with_passwords,
        doomed: a.doomed.unwrap_or(a.residents),
        concurrency: a.concurrency,
        warmup: seconds(a.warmup_s, "--warmup-s")?,
        duration,
        end_after,
        cache_mib: a.cache_mib,
        requests: a.requests,
        // The server measured is this very binary, run as `serve`.
        serve_exe: std::env::current_exe().context("finding this executable")?,
        scratch_parent: scratch(a.scratch_dir),
        server_log: a.server_log,
        quiet,
    })
}

/// Runs `blindpass bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    let report = match args.mode {
        Mode::Issue(a) => {
            if a.concurrency == 0 || a.residents == 0 {
                return Err(CliError::new(
                    "--concurrency and --residents must be at least 1",
                    "e.g. --concurrency 16 --residents 100",
                )
                .into());
            }
            issue::run(&issue::IssueSettings {
                target: target(a.target, a.server)?,
                residents: a.residents,
                concurrency: a.concurrency,
                duration: seconds(a.duration_s, "--duration-s")?,
                warmup: seconds(a.warmup_s, "--warmup-s")?,
                class: a.class,
                requests: a.requests,
                openssl_seconds: a.openssl_seconds,
                calibration: seconds(a.calibrate_s, "--calibrate-s")?,
                quiet,
            })
        }
        Mode::Enrol(a) => enrol::run(&enrol::EnrolSettings {
            target: target(a.target, a.server)?,
            concurrency: a.concurrency.max(1),
            count: a.count,
            raw_seconds: a.raw_seconds,
            quiet,
        }),
        Mode::Verify(a) => verify::run(&verify::VerifySettings {
            tokens: a.tokens,
            openssl_seconds: a.openssl_seconds,
            rounds: a.rounds,
        }),
        Mode::Destroy(a) => destroy::run(&destroy::DestroySettings {
            records: a.records,
            scratch_parent: scratch(a.scratch_dir),
            quiet,
        }),
        Mode::Scale(a) => scale::run(&scale_settings(a, quiet)?),
        Mode::Sign(a) => raw::sign(&raw::SignSettings {
            seconds: a.seconds,
            openssl_seconds: a.openssl_seconds,
            rounds: a.rounds,
        }),
    }
    .context("benchmark")?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)?;
        blindpass::cli::output::write(format_args!("{json}"), true);
    } else {
        blindpass::cli::output::write(format_args!("{report}"), false);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: BenchCommand,
    }

    /// The `bench` commands in a document's shell blocks (```` ```sh ````),
    /// continuation lines joined and comments dropped, as argument lists
    /// starting at `bench`.
    fn documented_commands(doc: &str) -> Vec<Vec<String>> {
        let mut commands = Vec::new();
        let mut in_shell = false;
        for line in doc.replace("\\\n", " ").lines() {
            if line.trim_start().starts_with("```") {
                in_shell = !in_shell && line.trim() == "```sh";
                continue;
            }
            let code = line.split(" #").next().unwrap_or("");
            let words: Vec<&str> = code.split_whitespace().collect();
            // `$B bench …`, `$CLIENT bench …`, `blindpass bench …`; not `cargo bench`.
            let at = words.iter().position(|w| *w == "bench");
            if let (true, Some(at @ 1..)) = (in_shell, at) {
                let before = words[at - 1];
                if before.starts_with('$') || before.ends_with("blindpass") {
                    commands.push(words[at..].iter().map(|w| w.to_string()).collect());
                }
            }
        }
        commands
    }

    #[test]
    fn every_documented_bench_command_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for doc in ["docs/benchmarks.md", "docs/auditor.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for args in documented_commands(&text) {
                let argv = std::iter::once("blindpass".to_owned()).chain(args.iter().cloned());
                if let Err(e) = Wrapper::try_parse_from(argv) {
                    panic!("{doc}: `{}` does not parse:\n{e}", args.join(" "));
                }
                seen += 1;
            }
        }
        // The reproduction block alone has fifteen.
        assert!(seen >= 15, "only {seen} commands found");
    }
}
