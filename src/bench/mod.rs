//! Load generation and measurement behind `blindpass bench`: each mode
//! measures one cost of the service and, in the same run, the limit it is
//! compared with, so that the figure that matters is a ratio measured on one
//! noisy machine at one moment.
//!
//! - [`issue`]: passes over HTTP at a fixed concurrency for a fixed time,
//!   with everything a resident would do beforehand (enrolment, login,
//!   blinding) done before the clock starts; against the raw blind-signing
//!   rate and `openssl speed -multi`.
//! - [`enrol`]: enrolment and login over HTTP, against raw Argon2id.
//! - [`verify`]: the verifier's offline check, one core, per backend,
//!   against `openssl speed` verify/s.
//! - [`destroy`]: a period of N records destroyed: time until the key is
//!   gone, and the purge against sled removing the same entries one by one.
//! - [`raw`]: raw blind signing per backend on one and on every core.
//! - [`scale`]: a real `blindpass serve` over a data directory of a city's
//!   size: start time, memory under load, the stall a period's destruction
//!   causes, size on disk per resident.
//!
//! Only the command line reads argv and the environment: every mode takes
//! its settings as a plain struct and returns a [`report::Report`].

pub mod destroy;
pub mod enrol;
pub mod issue;
pub mod openssl_speed;
pub mod raw;
pub mod report;
pub mod scale;
pub mod server;
pub mod verify;

mod client;
mod cpu;
mod people;
mod progress;
mod spawned;
mod stats;

use std::path::{Path, PathBuf};

/// Why a benchmark could not run (as opposed to a figure that misses its
/// target, which is a result, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The server or the workload could not be prepared before the timed phase.
    #[error("setting up: {0}")]
    Setup(String),
    /// The issuer core failed (in-process modes).
    #[error(transparent)]
    Issuer(#[from] blindpass::issuer::IssuerError),
    /// A cryptographic operation failed while preparing the workload.
    #[error(transparent)]
    Crypto(#[from] blindpass::crypto::CryptoError),
    /// The file system failed (scratch directories).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The in-process server did not start.
    #[error("starting the server: {0}")]
    Service(#[from] blindpass::service::ServiceError),
}

/// The machine a figure was measured on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// The CPU model, from `/proc/cpuinfo` when readable.
    pub cpu: String,
    /// The kernel release, when readable.
    pub kernel: String,
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Self {
            cores: cores(),
            cpu,
            kernel,
        }
    }
}

/// Logical CPUs available to this process (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A directory of its own under a parent, removed with everything in it
/// when dropped: benchmarks leave nothing behind.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `parent/blindpass-bench-<what>-<random>`.
    pub fn create(parent: &Path, what: &str) -> Result<Self, BenchError> {
        let tag = hex::encode(&blindpass::crypto::secret::random_32()[..6]);
        let path = parent.join(format!("blindpass-bench-{what}-{tag}"));
        blindpass::vault::fsutil::create_private_dir(&path)?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover temporary directory is not worth a panic.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A random tag for one run, so that repeated runs against the same server
/// enrol different documents.
pub(crate) fn run_tag() -> String {
    hex::encode(&blindpass::crypto::secret::random_32()[..3]).to_uppercase()
}
