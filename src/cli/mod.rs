//! Command-line faces of blindpass: one binary, one subcommand per role.
//! This is the only module that reads argv, the environment or stdin.

/// `print!` for command output, through [`output::write`]: a closed
/// stdout does not panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*), false)
    };
}

/// `println!` for command output, through [`output::write`]: a closed
/// stdout does not panic.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*), true)
    };
}

pub mod output;

pub mod admin;
pub mod audit;
mod hardening;
pub mod master;
pub mod serve;
pub mod verify;
pub mod wallet;
pub mod witness;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Privacy-preserving movement permits with auto-expiring personal data.
#[derive(Debug, Parser)]
#[command(name = "blindpass", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The faces.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the issuer service (operator).
    Serve(serve::ServeArgs),
    /// Operator's client for the admin endpoints.
    Admin(admin::AdminArgs),
    /// Resident's wallet: enrol, log in, obtain and show passes.
    Wallet(wallet::WalletArgs),
    /// Verifier: sync the key directory, check passes offline.
    Verify(verify::VerifyArgs),
    /// Auditor: check the public log; inspect a data directory on site.
    Audit(audit::AuditArgs),
    /// Witness: cosign issuers' audit-log checkpoints (C2SP tlog-witness).
    Witness(witness::WitnessArgs),
}

/// An error for a person at a terminal: what went wrong and what to do next.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// An error with a hint.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// The first line of a small key file (a log key, a witness key), trimmed;
/// an unreadable or empty file is a `CliError` that names `what` belongs there.
pub(crate) fn first_line(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            format!("cannot read {}: {e}", path.display()),
            "check the path and its permissions",
        )
    })?;
    let line = text.lines().next().unwrap_or("").trim().to_owned();
    if line.is_empty() {
        return Err(CliError::new(
            format!("{} is empty", path.display()),
            format!("put the {what} on its first line"),
        )
        .into());
    }
    Ok(line)
}

/// Exit code for usage errors (bad flags, unreadable input files).
pub const EXIT_USAGE: u8 = 2;

/// Parses argv and runs the chosen face.
pub fn main() -> ExitCode {
    finish(run(Cli::parse().command))
}

/// Parses argv with the subcommands of `E` added after the faces (the
/// binary adds `bench` this way, which is not part of the library), and
/// runs the chosen one: a face, or `extra` for one of `E`'s.
pub fn main_with<E: Subcommand + FromArgMatches>(
    extra: impl FnOnce(E) -> anyhow::Result<ExitCode>,
) -> ExitCode {
    let command = || E::augment_subcommands(Cli::command());
    let matches = command().get_matches();
    let result = match matches.subcommand_name() {
        Some(name) if E::has_subcommand(name) => match E::from_arg_matches(&matches) {
            Ok(chosen) => extra(chosen),
            Err(e) => e.format(&mut command()).exit(),
        },
        _ => match Cli::from_arg_matches(&matches) {
            Ok(cli) => run(cli.command),
            Err(e) => e.format(&mut command()).exit(),
        },
    };
    finish(result)
}

/// Runs one face.
fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Wallet(args) => wallet::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Witness(args) => witness::run(args),
    }
}

/// The exit code of a command's outcome; an error and its hint go to stderr.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if let Some(hint) = err.downcast_ref::<CliError>().and_then(|e| e.hint.as_ref()) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(EXIT_USAGE)
        }
    };
    match output::failure() {
        // A reader that went away (`| head`) is normal; anything else means
        // the output the user asked for is incomplete.
        Some(kind) if kind != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: the output could not be written ({kind})");
            ExitCode::from(EXIT_USAGE)
        }
        _ => code,
    }
}
