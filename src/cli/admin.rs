//! `blindpass admin` (being written).

use std::process::ExitCode;

/// Arguments of `blindpass admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {}

/// Runs `blindpass admin`.
pub fn run(_args: AdminArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
