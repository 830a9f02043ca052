//! `blindpass bench` (being written).

use std::process::ExitCode;

/// Arguments of `blindpass bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs `blindpass bench`.
pub fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
