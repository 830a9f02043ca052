//! `blindpass audit` (being written).

use std::process::ExitCode;

/// Arguments of `blindpass audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {}

/// Runs `blindpass audit`.
pub fn run(_args: AuditArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
