//! The witness's durable memory: per log, the latest checkpoint it cosigned
//! (size, root and the note as received), one small file per log, replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory).
//!
//! The contract that makes a witness worth asking: a cosignature leaves the
//! witness only after the checkpoint it covers is on disk, and the size
//! check and the write happen under one lock (compare-and-swap on the
//! stored size), so that neither a crash nor two racing requests can make
//! it cosign two different trees of one size, or roll a log back.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tlog_tiles::Hash;

use crate::fsutil;

/// What the witness remembers of one log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogState {
    /// Tree size of the latest cosigned checkpoint.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

#[derive(Serialize, Deserialize)]
struct LogFile {
    origin: String,
    size: u64,
    root: String,
    /// The checkpoint as received, as evidence.
    note: String,
}

/// Failures of the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing a state file failed.
    #[error("witness state {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A state file does not parse or belongs to another origin.
    #[error("witness state {} is damaged: {detail}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: &'static str,
    },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct WitnessStore {
    dir: PathBuf,
}

impl WitnessStore {
    /// State kept in `dir`, created (owner-only) if missing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fsutil::create_private_dir(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The file of `origin`: named by a hash, since an origin may hold
    /// characters a file name cannot.
    fn path(&self, origin: &str) -> PathBuf {
        let digest = Sha256::digest(origin.as_bytes());
        self.dir
            .join(format!("log-{}.json", hex::encode(&digest[..16])))
    }

    /// The latest checkpoint cosigned for `origin`, if any.
    pub fn load(&self, origin: &str) -> Result<Option<LogState>, StoreError> {
        let path = self.path(origin);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let damaged = |detail| StoreError::Damaged {
            path: path.clone(),
            detail,
        };
        let file: LogFile = serde_json::from_slice(&bytes).map_err(|_| damaged("not JSON"))?;
        if file.origin != origin {
            return Err(damaged("it names another origin"));
        }
        let root: [u8; 32] = STANDARD
            .decode(&file.root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| damaged("its root is not a base64 hash"))?;
        Ok(Some(LogState {
            size: file.size,
            root: Hash(root),
        }))
    }

    /// Durably replaces the state of `origin`; returns once it is on disk.
    pub fn save(&self, origin: &str, state: &LogState, note: &[u8]) -> Result<(), StoreError> {
        let path = self.path(origin);
        let file = LogFile {
            origin: origin.to_owned(),
            size: state.size,
            root: STANDARD.encode(state.root.0),
            note: String::from_utf8_lossy(note).into_owned(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|_| StoreError::Damaged {
            path: path.clone(),
            detail: "cannot encode",
        })?;
        fsutil::atomic_write(&path, &json).map_err(|source| StoreError::Io { path, source })
    }
}
