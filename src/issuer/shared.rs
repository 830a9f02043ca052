//! Several issuer nodes on one PostgreSQL database, with the master key in a
//! PKCS#11 token they share: the store's shared rows adapted to the vault's
//! and the audit log's seams, the open of a node, and how a ring change
//! made by one node reaches the others.
//!
//! How a change reaches a node: the committing node announces it (`NOTIFY`,
//! delivered at commit); every node listens, and also polls the ring's
//! generation every `poll` in case a notification was lost; on either it
//! re-reads the row and swaps its in-memory ring (the period keys no longer
//! in it are dropped and zeroized). A node that has not confirmed the
//! ring's generation for `lease` uses no key at all
//! ([`IssuerError::RingStale`]) until it has: a node cut off from the
//! database cannot go on using a key the others destroyed.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Authority, IssuerError};
use crate::audit::{AuditError, SharedEntries};
use crate::store::{Shared, SharedLock, StoreError};
use crate::vault::VaultError;
use crate::vault::shared::{RingLock, SharedHome, StoredRing};

/// The store's shared rows, as the vault and the audit log see them.
#[derive(Debug, Clone)]
pub(super) struct SharedRows(pub(super) Shared);

fn vault_err(e: StoreError) -> VaultError {
    VaultError::Shared(e.to_string())
}

impl SharedHome for SharedRows {
    fn lock(&self) -> Result<RingLock, VaultError> {
        let held = self
            .0
            .lock(SharedLock::Ring, true)
            .map_err(vault_err)?
            .ok_or_else(|| VaultError::Shared("the ring lock was not granted".into()))?;
        Ok(Box::new(held))
    }

    fn ring(&self) -> Result<Option<StoredRing>, VaultError> {
        Ok(self.0.ring().map_err(vault_err)?.map(|r| StoredRing {
            generation: r.generation,
            master_version: r.master_version,
            sealed: r.sealed,
            staged: r.staged,
        }))
    }

    fn generation(&self) -> Result<Option<u64>, VaultError> {
        self.0.ring_generation().map_err(vault_err)
    }

    fn create_ring(&self, master_version: u64, sealed: &[u8]) -> Result<bool, VaultError> {
        self.0
            .create_ring(master_version, sealed)
            .map_err(vault_err)
    }

    fn replace_ring(&self, generation: u64, sealed: &[u8]) -> Result<bool, VaultError> {
        self.0.replace_ring(generation, sealed).map_err(vault_err)
    }

    fn stage_ring(
        &self,
        generation: u64,
        master_version: u64,
        sealed: &[u8],
    ) -> Result<bool, VaultError> {
        self.0
            .stage_ring(generation, master_version, sealed)
            .map_err(vault_err)
    }

    fn commit_ring(&self, generation: u64, master_version: u64) -> Result<bool, VaultError> {
        self.0
            .commit_ring(generation, master_version)
            .map_err(vault_err)
    }

    fn clear_stage(&self) -> Result<(), VaultError> {
        self.0.clear_stage().map_err(vault_err)
    }

    fn master_slot(&self) -> Result<Option<Vec<u8>>, VaultError> {
        self.0.master_slot().map_err(vault_err)
    }

    fn put_master_slot(&self, slot: &[u8]) -> Result<(), VaultError> {
        self.0.put_master_slot(slot).map_err(vault_err)
    }
}

impl SharedEntries for SharedRows {
    fn entries_from(&self, from: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.0
            .audit_entries_from(from)
            .map_err(|e| AuditError::Shared(e.to_string()))
    }

    fn insert(&self, seq: u64, entry: &[u8]) -> Result<bool, AuditError> {
        self.0
            .audit_insert(seq, entry)
            .map_err(|e| AuditError::Shared(e.to_string()))
    }
}

/// How a node keeps up with the shared ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFollow {
    /// Re-read the ring's generation at least this often (a notification
    /// may be lost with its connection).
    pub poll: Duration,
    /// Use no key once the generation has not been confirmed for this long.
    pub lease: Duration,
}

impl Default for RingFollow {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            lease: Duration::from_secs(10),
        }
    }
}

/// When this node last confirmed the shared ring's generation.
#[derive(Debug)]
pub(super) struct Lease {
    confirmed: Mutex<Instant>,
    length: Duration,
}

impl Lease {
    pub(super) fn new(length: Duration) -> Self {
        Self {
            confirmed: Mutex::new(Instant::now()),
            length,
        }
    }

    fn confirm(&self) {
        *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub(super) fn check(&self) -> Result<(), IssuerError> {
        let confirmed = *self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        if confirmed.elapsed() > self.length {
            return Err(IssuerError::RingStale);
        }
        Ok(())
    }
}

impl Authority {
    /// Takes in a ring change another node committed, if any; true if the
    /// ring changed. Confirms the lease either way. One node only (no
    /// shared ring): nothing to do.
    pub fn refresh_ring(&self) -> Result<bool, IssuerError> {
        let (Some(lease), Some(shared)) = (&self.lease, self.store.shared()) else {
            return Ok(false);
        };
        // The generation alone first, without the vault's lock: request
        // paths take that lock to read keys, and most polls find nothing new.
        let changed =
            shared.ring_generation()? != Some(self.ring_generation()) && self.vault().refresh()?;
        lease.confirm();
        Ok(changed)
    }

    /// The generation of the key ring this node uses (shared: the row's,
    /// the same on every node once a change has reached it).
    pub fn ring_generation(&self) -> u64 {
        self.live().generation
    }

    /// Whether the key ring is shared with other nodes.
    pub fn ring_is_shared(&self) -> bool {
        self.lease.is_some()
    }

    /// Shared: takes the expiry pass's lock, waiting for it with `wait`,
    /// else only if no pass holds it (`Ok(None)`: another pass is running,
    /// on another node or this one). One node: a lock of nothing.
    pub(super) fn expiry_pass_lock(
        &self,
        wait: bool,
    ) -> Result<Option<Option<crate::store::HeldLock>>, IssuerError> {
        match self.store.shared() {
            None => Ok(Some(None)),
            Some(shared) => Ok(shared.lock(SharedLock::ExpiryPass, wait)?.map(Some)),
        }
    }
}

/// Starts the thread that keeps `authority`'s ring in step with the shared
/// row: woken by every announced change, and every `follow.poll` anyway.
/// It ends when the authority is dropped. Nothing to do (and `None`) when
/// the ring is not shared.
pub fn follow_ring(
    authority: &Arc<Authority>,
    follow: RingFollow,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(shared) = authority.store().shared() else {
        return Ok(None);
    };
    let wake = shared.watch_ring();
    let weak: Weak<Authority> = Arc::downgrade(authority);
    std::thread::Builder::new()
        .name("blindpass-ring".into())
        .spawn(move || {
            loop {
                match wake.recv_timeout(follow.poll) {
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                // Several wake-ups in a row need one re-read.
                while wake.try_recv().is_ok() {}
                let Some(authority) = weak.upgrade() else {
                    return;
                };
                match authority.refresh_ring() {
                    Ok(true) => tracing::info!(
                        generation = authority.ring_generation(),
                        "took in a key ring change made by another node"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "could not re-read the shared key ring"),
                }
            }
        })
        .map(Some)
}
