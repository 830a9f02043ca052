//! `blindpass wallet` (being written).

use std::process::ExitCode;

/// Arguments of `blindpass wallet`.
#[derive(Debug, clap::Args)]
pub struct WalletArgs {}

/// Runs `blindpass wallet`.
pub fn run(_args: WalletArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
