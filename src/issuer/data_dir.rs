//! The layout of a data directory: where the vault, the store and the
//! audit log live under its root.

use std::path::{Path, PathBuf};

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Master slot and key ring.
    pub fn vault(&self) -> PathBuf {
        self.root.join("vault")
    }
    /// The master slot file.
    pub fn master_slot(&self) -> PathBuf {
        self.vault().join("master.slot")
    }
    /// The sled database.
    pub fn sled(&self) -> PathBuf {
        self.root.join("sled")
    }
    /// The store's last acknowledged generation, kept outside the sled
    /// directory so that a lost or damaged store is noticed at start.
    pub fn store_generation(&self) -> PathBuf {
        self.root.join("sled.generation")
    }
    /// The audit log's entries.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit").join("entries.log")
    }
    /// The audit log's verifier key (public; for auditors to pin).
    pub fn audit_key(&self) -> PathBuf {
        self.root.join("audit").join("log.pub")
    }
}
