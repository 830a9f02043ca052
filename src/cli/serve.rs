//! `blindpass serve` (being written).

use std::process::ExitCode;

/// Arguments of `blindpass serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Runs `blindpass serve`.
pub fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
