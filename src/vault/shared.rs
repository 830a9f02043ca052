//! The vault's seam for several nodes: where the sealed ring and the wrapped
//! master key live when they are shared (rows of a database) rather than
//! files of one data directory. The vault knows nothing of the database;
//! the issuer adapts the store's rows to this trait.
//!
//! The protocol is the files' one, with the rows in their place:
//!
//! - every change is made under [`SharedHome::lock`] (one node at a time),
//!   after re-reading the row, and written by compare-and-swap of the
//!   ring's generation;
//! - a rotation stages the ring sealed under `M_{v+1}` beside the current
//!   one, then replaces the master slot (the commit point, as the file's
//!   replacement is), then commits the staged ring, then destroys the old
//!   master's token key;
//! - a node that opens finds the ring whose master version the slot names,
//!   finishing a commit or dropping a stale stage;
//! - the other nodes re-read the row when it is announced (or polled) and
//!   swap their in-memory ring and master: [`super::Vault::refresh`].

use super::VaultError;

/// The ring's row.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRing {
    /// Goes up by one at every committed change (staging does not count).
    pub generation: u64,
    /// The master version the ring is sealed under.
    pub master_version: u64,
    /// The sealed ring.
    pub sealed: Vec<u8>,
    /// A ring sealed under the next master version, during a rotation.
    pub staged: Option<(u64, Vec<u8>)>,
}

/// The lock every change is made under, held until dropped.
pub type RingLock = Box<dyn std::any::Any + Send>;

/// Where a shared vault keeps its ring and its master slot. Writes return
/// `Ok(false)` when the row is no longer at the generation given (another
/// node changed it: with the lock held, a bug, refused rather than merged).
pub trait SharedHome: Send + Sync {
    /// Takes the lock every change is made under; released on drop.
    fn lock(&self) -> Result<RingLock, VaultError>;
    /// The ring's row, if there is one yet.
    fn ring(&self) -> Result<Option<StoredRing>, VaultError>;
    /// The row's generation alone.
    fn generation(&self) -> Result<Option<u64>, VaultError>;
    /// Creates the row at generation 1; false if there is one.
    fn create_ring(&self, master_version: u64, sealed: &[u8]) -> Result<bool, VaultError>;
    /// Replaces the ring at `generation` (then at `generation + 1`).
    fn replace_ring(&self, generation: u64, sealed: &[u8]) -> Result<bool, VaultError>;
    /// Stages a ring under `master_version` beside the ring at `generation`.
    fn stage_ring(
        &self,
        generation: u64,
        master_version: u64,
        sealed: &[u8],
    ) -> Result<bool, VaultError>;
    /// The staged ring under `master_version` becomes the ring.
    fn commit_ring(&self, generation: u64, master_version: u64) -> Result<bool, VaultError>;
    /// Drops a staged ring that was never committed.
    fn clear_stage(&self) -> Result<(), VaultError>;
    /// The master slot's bytes (what a provider would keep in its file).
    fn master_slot(&self) -> Result<Option<Vec<u8>>, VaultError>;
    /// Replaces the master slot's bytes: a rotation's commit point.
    fn put_master_slot(&self, slot: &[u8]) -> Result<(), VaultError>;
}
