//! The key hierarchy on disk: the master slot and the key ring file. Nothing
//! here touches sled: period keys live only in the key ring, sealed under
//! the master key, so destroying a period means rewriting the ring without
//! its key under a *new* master key and destroying the old one.
//!
//! Files in the vault directory:
//! - `master.slot` — the master key, wrapped (see [`master`]);
//! - `keyring.<v>.sealed` — the key ring sealed under master version `v`.
//!
//! Rotation is crash-safe because the master slot is the single commit
//! point: the new ring is written under a new name first, then the slot is
//! replaced, then the old ring is removed. At open, the ring whose version
//! matches the slot is the truth and any other ring file is debris.
//!
//! Several nodes keep the ring and the master slot as shared rows instead
//! ([`shared`]), with the same commit point.

/// Durable writes, also reachable under their older path `vault::fsutil`.
pub use crate::fsutil;
pub mod keyring;
pub mod master;
pub mod pkcs11;
pub mod shared;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyring::KeyRing;
use master::MasterKeyProvider;
use shared::SharedHome;

use crate::crypto::secret::MasterKey;
use crate::crypto::{CryptoError, kdf, seal};

/// Why the vault could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The passphrase does not unwrap the master slot.
    #[error("wrong passphrase for the master slot")]
    WrongPassphrase,
    /// There is no master slot yet.
    #[error("the vault has not been initialised")]
    NotInitialised,
    /// A master slot already exists; refusing to overwrite it.
    #[error("a master slot already exists")]
    AlreadyInitialised,
    /// The vault's master key is in a PKCS#11 token (`vault/master.pkcs11`):
    /// it opens only with that token, never with a passphrase.
    #[error(
        "this vault's master key is in a PKCS#11 token (vault/master.pkcs11); open it with \
         --master pkcs11:…, not with a passphrase"
    )]
    MasterInToken,
    /// A vault file is damaged, truncated or was tampered with.
    #[error("vault file is corrupt or was tampered with: {0}")]
    Corrupt(&'static str),
    /// A test asked for a simulated crash at this point.
    #[error("injected fault at {0:?}")]
    InjectedFault(FaultPoint),
    /// The file system failed.
    #[error("vault I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Sealing or opening failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The PKCS#11 token holding the master key refused or failed.
    #[error(transparent)]
    Token(#[from] pkcs11::TokenError),
    /// The shared rows (several nodes) could not be read or written.
    #[error("shared key ring: {0}")]
    Shared(String),
}

/// Points in a key-ring replace or a period destruction where tests can
/// simulate a crash (the operation stops there, as if the process died).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// After the destruction intent is recorded, before anything else.
    AfterIntent,
    /// After the provider made room for the new master key (a token
    /// generated its new key), before the new ring is written.
    AfterNewMasterPrepared,
    /// After the new ring file is durable, before the master slot changes.
    AfterNewRingWritten,
    /// After the master slot holds the new key, before the provider
    /// destroys the old one (a token's old key) and the old ring is removed.
    AfterMasterReplaced,
    /// After the key is gone, before the period's sled data is purged.
    BeforePurge,
}

/// Where the ring and the master slot are kept.
#[derive(Clone)]
enum Home {
    /// Files of one data directory's `vault/`.
    Dir(PathBuf),
    /// Rows several nodes share.
    Shared(Arc<dyn SharedHome>),
}

/// The opened vault: the master key in memory and the decrypted ring.
pub struct Vault {
    home: Home,
    provider: Box<dyn MasterKeyProvider>,
    version: u64,
    master: MasterKey,
    ring: KeyRing,
    /// Counts the changes to `ring` since this handle was opened; shared,
    /// the row's generation.
    generation: u64,
    fault: Option<FaultPoint>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let home = match &self.home {
            Home::Dir(dir) => dir.display().to_string(),
            Home::Shared(_) => "shared".to_owned(),
        };
        f.debug_struct("Vault")
            .field("home", &home)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn ring_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("keyring.{version}.sealed"))
}

fn ring_aad(version: u64) -> Vec<u8> {
    let mut aad = b"blindpass-keyring-v1".to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn ring_versions(dir: &Path) -> Result<Vec<u64>, VaultError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(v) = name
            .strip_prefix("keyring.")
            .and_then(|rest| rest.strip_suffix(".sealed"))
            .and_then(|v| v.parse().ok())
        {
            out.push(v);
        }
    }
    Ok(out)
}

impl Vault {
    /// Starts a vault in `dir` with an empty key ring under the provider's
    /// current master key.
    pub fn create(dir: &Path, provider: Box<dyn MasterKeyProvider>) -> Result<Self, VaultError> {
        fsutil::create_private_dir(dir)?;
        let (version, master) = provider.load()?;
        if ring_path(dir, version).exists() {
            return Err(VaultError::AlreadyInitialised);
        }
        let vault = Self {
            home: Home::Dir(dir.to_owned()),
            provider,
            version,
            master,
            ring: KeyRing::new(),
            generation: 0,
            fault: None,
        };
        vault.write_ring(version, &vault.master, &vault.ring)?;
        Ok(vault)
    }

    /// Opens the vault: loads the master key, opens the matching ring, and
    /// removes ring files left by an interrupted rotation.
    pub fn open(dir: &Path, provider: Box<dyn MasterKeyProvider>) -> Result<Self, VaultError> {
        let vault = Self::open_read_only(dir, provider)?;
        vault.provider.destroy_others(vault.version)?;
        for stale in ring_versions(dir)?
            .into_iter()
            .filter(|v| *v != vault.version)
        {
            fsutil::scrub_and_remove(&ring_path(dir, stale))?;
        }
        Ok(vault)
    }

    /// Opens the vault without changing any file (for on-site inspection).
    pub fn open_read_only(
        dir: &Path,
        provider: Box<dyn MasterKeyProvider>,
    ) -> Result<Self, VaultError> {
        let (version, master) = provider.load()?;
        let sealed = match fs::read(ring_path(dir, version)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VaultError::Corrupt(
                    "no key ring for the current master key",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let ring = open_ring(version, &master, &sealed)?;
        Ok(Self {
            home: Home::Dir(dir.to_owned()),
            provider,
            version,
            master,
            ring,
            generation: 0,
            fault: None,
        })
    }

    /// The decrypted key ring.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Changes to the ring since this handle was opened: a cheap way for a
    /// holder of a copy of (part of) the ring to tell that it is stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The master key version (it goes up by one at every rotation).
    pub fn master_version(&self) -> u64 {
        self.version
    }

    /// Versions of every key-ring file present (debris included); shared,
    /// the ring's master version and a staged one's.
    pub fn ring_files(&self) -> Result<Vec<u64>, VaultError> {
        match &self.home {
            Home::Dir(dir) => ring_versions(dir),
            Home::Shared(home) => Ok(home
                .ring()?
                .map(|r| std::iter::once(r.master_version).chain(r.staged.map(|(v, _)| v)))
                .into_iter()
                .flatten()
                .collect()),
        }
    }

    /// The directory holding the vault files (none when shared).
    pub fn dir(&self) -> Option<&Path> {
        match &self.home {
            Home::Dir(dir) => Some(dir),
            Home::Shared(_) => None,
        }
    }

    /// Tests only: make the next rotation stop at `point` as if the process
    /// died there.
    pub fn dangerous_inject_fault(&mut self, point: Option<FaultPoint>) {
        self.fault = point;
    }

    pub(crate) fn check_fault(&self, point: FaultPoint) -> Result<(), VaultError> {
        if self.fault == Some(point) {
            return Err(VaultError::InjectedFault(point));
        }
        Ok(())
    }

    fn write_ring(
        &self,
        version: u64,
        master: &MasterKey,
        ring: &KeyRing,
    ) -> Result<(), VaultError> {
        let Home::Dir(dir) = &self.home else {
            return Err(VaultError::Shared("a ring file for a shared vault".into()));
        };
        let sealed = seal_ring(version, master, ring)?;
        fsutil::atomic_write(&ring_path(dir, version), &sealed)?;
        Ok(())
    }

    /// Changes the ring and durably replaces the ring file under the same
    /// master key. If writing fails, the in-memory ring is left unchanged.
    /// Shared: under the lock, after taking in every change another node
    /// made, by compare-and-swap of the row.
    pub fn update(&mut self, change: impl FnOnce(&mut KeyRing)) -> Result<(), VaultError> {
        let locked = self.lock_and_settle()?;
        let mut next = self.ring.clone();
        change(&mut next);
        match &locked {
            None => self.write_ring(self.version, &self.master, &next)?,
            Some(Locked { home, .. }) => {
                let sealed = seal_ring(self.version, &self.master, &next)?;
                if !home.replace_ring(self.generation, &sealed)? {
                    return Err(moved_under_lock());
                }
            }
        }
        self.ring = next;
        self.generation += 1;
        Ok(())
    }

    /// Changes the ring and commits it under a brand-new master key, so every
    /// earlier copy of the ring — on disk, in backups, in freed blocks — is
    /// sealed under a master key that no longer exists anywhere.
    ///
    /// Order: the provider prepares for `v+1` (a token generates its new
    /// key); write `keyring.<v+1>` under `M_{v+1}` and make it durable;
    /// replace the master slot (the commit point); the provider destroys
    /// what it holds for `v` (a token's old key); remove `keyring.<v>`;
    /// drop the old master from memory (it is zeroized on drop).
    pub fn rotate(&mut self, change: impl FnOnce(&mut KeyRing)) -> Result<(), VaultError> {
        // Shared: the staged row takes the new ring file's place, the master
        // slot row the slot file's, and the staged ring is committed (and
        // announced) after it.
        let locked = self.lock_and_settle()?;
        let mut next = self.ring.clone();
        change(&mut next);
        let new_version = self.version + 1;
        self.provider.prepare(new_version)?;
        self.check_fault(FaultPoint::AfterNewMasterPrepared)?;
        let new_master = MasterKey::generate();
        match &locked {
            None => self.write_ring(new_version, &new_master, &next)?,
            Some(Locked { home, .. }) => {
                let sealed = seal_ring(new_version, &new_master, &next)?;
                if !home.stage_ring(self.generation, new_version, &sealed)? {
                    return Err(moved_under_lock());
                }
            }
        }
        self.check_fault(FaultPoint::AfterNewRingWritten)?;
        self.provider.replace(new_version, &new_master)?;
        let (old_version, seen) = (self.version, self.generation);
        self.version = new_version;
        self.master = new_master;
        self.ring = next;
        self.generation += 1;
        self.check_fault(FaultPoint::AfterMasterReplaced)?;
        if let Some(Locked { home, .. }) = &locked {
            if !home.commit_ring(seen, new_version)? {
                return Err(moved_under_lock());
            }
        }
        self.provider.destroy_others(new_version)?;
        if let Home::Dir(dir) = &self.home {
            fsutil::scrub_and_remove(&ring_path(dir, old_version))?;
        }
        Ok(())
    }

    /// Shared: takes the lock every change is made under and settles this
    /// handle on the row as it is now (another node may have changed it).
    /// Files: nothing to take.
    fn lock_and_settle(&mut self) -> Result<Option<Locked>, VaultError> {
        let Home::Shared(home) = self.home.clone() else {
            return Ok(None);
        };
        let lock = home.lock()?;
        self.settle(home.as_ref())?;
        Ok(Some(Locked { home, _lock: lock }))
    }

    /// Starts a shared vault: an empty ring under the provider's current
    /// master, as the row at generation 1. The caller holds the lock.
    pub fn create_shared(
        home: Arc<dyn SharedHome>,
        provider: Box<dyn MasterKeyProvider>,
    ) -> Result<Self, VaultError> {
        let (version, master) = provider.load()?;
        let ring = KeyRing::new();
        if !home.create_ring(version, &seal_ring(version, &master, &ring)?)? {
            return Err(VaultError::AlreadyInitialised);
        }
        Ok(Self {
            home: Home::Shared(home),
            provider,
            version,
            master,
            ring,
            generation: 1,
            fault: None,
        })
    }

    /// Opens a shared vault: finishes a rotation that passed its commit
    /// point, drops one that did not, and has the provider destroy what it
    /// holds for other versions. The caller holds the lock.
    pub fn open_shared(
        home: Arc<dyn SharedHome>,
        provider: Box<dyn MasterKeyProvider>,
    ) -> Result<Self, VaultError> {
        let (version, master) = provider.load()?;
        let mut vault = Self {
            home: Home::Shared(home.clone()),
            provider,
            version,
            master,
            ring: KeyRing::new(),
            generation: 0,
            fault: None,
        };
        vault.settle(home.as_ref())?;
        Ok(vault)
    }

    /// Opens a shared vault without writing anything (for an inspection):
    /// the ring the master slot's version names, committed or staged.
    pub fn open_shared_read_only(
        home: Arc<dyn SharedHome>,
        provider: Box<dyn MasterKeyProvider>,
    ) -> Result<Self, VaultError> {
        let (version, master) = provider.load()?;
        let stored = home
            .ring()?
            .ok_or(VaultError::Corrupt("the shared key ring is missing"))?;
        let generation = stored.generation;
        let (RowRing::Current { sealed, .. } | RowRing::Staged { sealed }) =
            RowRing::for_master(stored, version)?;
        let ring = open_ring(version, &master, &sealed)?;
        Ok(Self {
            home: Home::Shared(home),
            provider,
            version,
            master,
            ring,
            generation,
            fault: None,
        })
    }

    /// Shared, with the lock held: reads the master and the row afresh,
    /// finishes or drops an interrupted rotation, destroys what the
    /// provider holds for other versions, and takes the result as this
    /// handle's ring.
    fn settle(&mut self, home: &dyn SharedHome) -> Result<(), VaultError> {
        let (version, master) = self.provider.load()?;
        let stored = home
            .ring()?
            .ok_or(VaultError::Corrupt("the shared key ring is missing"))?;
        let seen = stored.generation;
        let (generation, sealed) = match RowRing::for_master(stored, version)? {
            RowRing::Current {
                sealed,
                stale_stage,
            } => {
                if stale_stage {
                    // A rotation that stopped before its commit point.
                    home.clear_stage()?;
                }
                (seen, sealed)
            }
            // One that stopped after it: finish it.
            RowRing::Staged { sealed } => {
                if !home.commit_ring(seen, version)? {
                    return Err(moved_under_lock());
                }
                (seen + 1, sealed)
            }
        };
        let ring = open_ring(version, &master, &sealed)?;
        self.provider.destroy_others(version)?;
        self.version = version;
        self.master = master;
        self.ring = ring;
        self.generation = generation;
        Ok(())
    }

    /// Shared: takes in a change another node committed, if the row moved
    /// on; true if the ring changed. Never writes, and never destroys a
    /// token key (only a node holding the lock does). A row whose master
    /// the provider does not name yet (a rotation between its commit point
    /// and its ring's commit) is left for the next call.
    pub fn refresh(&mut self) -> Result<bool, VaultError> {
        let Home::Shared(home) = self.home.clone() else {
            return Ok(false);
        };
        if home.generation()? == Some(self.generation) {
            return Ok(false);
        }
        let Some(stored) = home.ring()? else {
            return Ok(false);
        };
        if stored.generation == self.generation {
            return Ok(false);
        }
        let (version, master) = if stored.master_version == self.version {
            (self.version, self.master.clone())
        } else {
            self.provider.load()?
        };
        if version != stored.master_version {
            return Ok(false);
        }
        let ring = open_ring(version, &master, &stored.sealed)?;
        self.version = version;
        self.master = master;
        self.ring = ring;
        self.generation = stored.generation;
        Ok(true)
    }
}

/// A shared home with its lock held (dropped with it).
struct Locked {
    home: Arc<dyn SharedHome>,
    _lock: shared::RingLock,
}

/// Which of the row's rings master `version` opens.
enum RowRing {
    /// The committed one; `stale_stage` if a rotation stopped before its
    /// commit point left a staged ring beside it.
    Current { sealed: Vec<u8>, stale_stage: bool },
    /// The staged one: a rotation passed its commit point (the master slot
    /// names it) and stopped before committing the ring.
    Staged { sealed: Vec<u8> },
}

impl RowRing {
    fn for_master(stored: shared::StoredRing, version: u64) -> Result<Self, VaultError> {
        if stored.master_version == version {
            return Ok(Self::Current {
                sealed: stored.sealed,
                stale_stage: stored.staged.is_some(),
            });
        }
        match stored.staged {
            Some((staged, sealed)) if staged == version => Ok(Self::Staged { sealed }),
            _ => Err(VaultError::Corrupt(
                "no shared key ring for the current master key",
            )),
        }
    }
}

fn moved_under_lock() -> VaultError {
    VaultError::Corrupt("the shared key ring changed while this node held its lock")
}

/// The ring sealed under master `version`.
fn seal_ring(version: u64, master: &MasterKey, ring: &KeyRing) -> Result<Vec<u8>, VaultError> {
    let ring_key = kdf::derive(master.expose_secret(), "keyring", &version.to_be_bytes());
    let plain = ring.to_bytes()?;
    Ok(seal::seal(
        ring_key.expose_secret(),
        &ring_aad(version),
        plain.expose_secret(),
    )?)
}

/// Opens a ring sealed under master `version`.
fn open_ring(version: u64, master: &MasterKey, sealed: &[u8]) -> Result<KeyRing, VaultError> {
    let ring_key = kdf::derive(master.expose_secret(), "keyring", &version.to_be_bytes());
    let plain = seal::open(ring_key.expose_secret(), &ring_aad(version), sealed)
        .map_err(|_| VaultError::Corrupt("key ring does not open under the master key"))?;
    KeyRing::from_bytes(plain.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kdf::Argon2Params;
    use crate::crypto::secret::{Passphrase, PeriodKey};
    use crate::ids::PeriodId;
    use keyring::LivePeriod;
    use master::PassphraseSlot;
    use time::OffsetDateTime;

    fn slot(dir: &Path) -> Box<dyn MasterKeyProvider> {
        let path = dir.join("master.slot");
        let pass = Passphrase::new("pass".into());
        let slot = if path.exists() {
            PassphraseSlot::open(&path, &pass).unwrap()
        } else {
            PassphraseSlot::create(&path, &pass, Argon2Params::INSECURE_FAST_FOR_TESTS).unwrap()
        };
        Box::new(slot)
    }

    fn period() -> LivePeriod {
        let now = OffsetDateTime::now_utc();
        LivePeriod {
            id: PeriodId::generate(),
            name: "p".into(),
            opened_at: now,
            ends_at: now,
            grace_s: 0,
            key: PeriodKey::generate(),
            destroy_pending: false,
        }
    }

    #[test]
    fn update_and_rotate_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut vault = Vault::create(dir.path(), slot(dir.path())).unwrap();
        let p = period();
        vault.update(|r| r.periods.push(p.clone())).unwrap();
        vault.rotate(|_| {}).unwrap();
        assert_eq!(vault.master_version(), 2);
        drop(vault);
        let vault = Vault::open(dir.path(), slot(dir.path())).unwrap();
        assert_eq!(vault.ring().period(&p.id).unwrap().key, p.key);
        assert_eq!(ring_versions(dir.path()).unwrap(), vec![2]);
    }

    /// A provider that keeps its key in memory and records the calls the
    /// vault makes, to check their order around the commit point.
    struct Recording {
        key: std::sync::Mutex<(u64, MasterKey)>,
        calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl MasterKeyProvider for Recording {
        fn load(&self) -> Result<(u64, MasterKey), VaultError> {
            Ok(self.key.lock().unwrap().clone())
        }
        fn prepare(&self, version: u64) -> Result<(), VaultError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("prepare {version}"));
            Ok(())
        }
        fn replace(&self, version: u64, key: &MasterKey) -> Result<(), VaultError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("replace {version}"));
            *self.key.lock().unwrap() = (version, key.clone());
            Ok(())
        }
        fn destroy_others(&self, current: u64) -> Result<(), VaultError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("destroy others {current}"));
            Ok(())
        }
    }

    #[test]
    fn the_provider_prepares_before_and_destroys_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let provider = Recording {
            key: std::sync::Mutex::new((1, MasterKey::generate())),
            calls: calls.clone(),
        };
        let mut vault = Vault::create(dir.path(), Box::new(provider)).unwrap();
        vault.rotate(|_| {}).unwrap();
        assert_eq!(
            *calls.lock().unwrap(),
            ["prepare 2", "replace 2", "destroy others 2"]
        );
        // Stopped right after the preparation: nothing was committed.
        calls.lock().unwrap().clear();
        vault.dangerous_inject_fault(Some(FaultPoint::AfterNewMasterPrepared));
        vault.rotate(|_| {}).unwrap_err();
        assert_eq!(*calls.lock().unwrap(), ["prepare 3"]);
        assert_eq!(vault.master_version(), 2);
        // Every open clears what a crash left behind.
        calls.lock().unwrap().clear();
        let Vault { provider, .. } = vault;
        let vault = Vault::open(dir.path(), provider).unwrap();
        assert_eq!(vault.master_version(), 2);
        assert_eq!(*calls.lock().unwrap(), ["destroy others 2"]);
    }

    #[test]
    fn truncated_or_flipped_ring_is_a_clean_error() {
        let dir = tempfile::tempdir().unwrap();
        Vault::create(dir.path(), slot(dir.path())).unwrap();
        let path = ring_path(dir.path(), 1);
        let good = fs::read(&path).unwrap();
        fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(matches!(
            Vault::open(dir.path(), slot(dir.path())),
            Err(VaultError::Corrupt(_))
        ));
        let mut flipped = good.clone();
        flipped[40] ^= 0x10;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            Vault::open(dir.path(), slot(dir.path())),
            Err(VaultError::Corrupt(_))
        ));
        fs::write(&path, &good).unwrap();
        Vault::open(dir.path(), slot(dir.path())).unwrap();
    }

    #[test]
    fn interrupted_rotation_keeps_a_consistent_ring() {
        for point in [
            FaultPoint::AfterNewRingWritten,
            FaultPoint::AfterMasterReplaced,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut vault = Vault::create(dir.path(), slot(dir.path())).unwrap();
            let keep = period();
            let gone = period();
            vault
                .update(|r| r.periods.extend([keep.clone(), gone.clone()]))
                .unwrap();
            vault.dangerous_inject_fault(Some(point));
            let err = vault
                .rotate(|r| r.periods.retain(|p| p.id != gone.id))
                .unwrap_err();
            assert!(matches!(err, VaultError::InjectedFault(_)));
            drop(vault);
            let vault = Vault::open(dir.path(), slot(dir.path())).unwrap();
            assert!(vault.ring().period(&keep.id).is_some(), "{point:?}");
            match point {
                // Before the commit point the rotation did not happen.
                FaultPoint::AfterNewRingWritten => {
                    assert_eq!(vault.master_version(), 1);
                    assert!(vault.ring().period(&gone.id).is_some());
                }
                // After it, the rotation did.
                _ => {
                    assert_eq!(vault.master_version(), 2);
                    assert!(vault.ring().period(&gone.id).is_none());
                }
            }
            assert_eq!(
                ring_versions(dir.path()).unwrap().len(),
                1,
                "debris removed"
            );
        }
    }
}
