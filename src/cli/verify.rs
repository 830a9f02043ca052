//! `blindpass verify` (being written).

use std::process::ExitCode;

/// Arguments of `blindpass verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}

/// Runs `blindpass verify`.
pub fn run(_args: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
