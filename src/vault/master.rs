//! The master key `M_v` and where it lives. [`MasterKeyProvider`] is the seam
//! for a TPM, PKCS#11 HSM or cloud KMS; [`PassphraseSlot`] is the built-in
//! provider: a small file holding `M_v` wrapped with Argon2id(passphrase).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::VaultError;
use super::fsutil;
use crate::crypto::kdf::{Argon2Params, argon2id};
use crate::crypto::seal;
use crate::crypto::secret::{DerivedKey, MasterKey, Passphrase, random_32};

/// Holds the one secret whose erasure must be trusted.
///
/// Security contract: after [`MasterKeyProvider::replace`] returns `Ok`, the
/// new key at the new version is the one that loads, and survives a crash;
/// if it returns `Err`, the previous key is still the one that loads. Once
/// [`MasterKeyProvider::destroy_others`] has returned `Ok`, nothing the
/// provider holds opens a master key of any other version — not even an old
/// copy of a file it wrote (a token's key for that version is gone).
pub trait MasterKeyProvider: Send + Sync {
    /// The current master key and its version.
    fn load(&self) -> Result<(u64, MasterKey), VaultError>;
    /// Readies the provider for master `version`, before a rotation writes
    /// anything (a token generates the key that will wrap it). Whatever
    /// this leaves behind if the rotation stops short of its commit is
    /// removed by [`MasterKeyProvider::destroy_others`] at the next open.
    fn prepare(&self, _version: u64) -> Result<(), VaultError> {
        Ok(())
    }
    /// Durably replaces the stored master key with `key` at `version`: the
    /// commit point of a rotation.
    fn replace(&self, version: u64, key: &MasterKey) -> Result<(), VaultError>;
    /// Destroys whatever the provider still holds for versions other than
    /// `current`: after a rotation's commit, and at every open (a crash may
    /// have come between the commit and the destruction). The passphrase
    /// slot holds one wrapped key, overwritten by `replace`: nothing to do.
    fn destroy_others(&self, _current: u64) -> Result<(), VaultError> {
        Ok(())
    }
}

const SLOT_FORMAT: &str = "blindpass-master-slot-v1";

/// The master slot file as stored: the wrapped key and how to unwrap it.
#[derive(Serialize, Deserialize)]
pub struct SlotFile {
    format: String,
    argon2: Argon2Params,
    salt: String,
    version: u64,
    wrapped: String,
}

/// The master key wrapped under Argon2id(operator passphrase) in a file.
pub struct PassphraseSlot {
    path: PathBuf,
    kek: DerivedKey,
    salt: [u8; 32],
    params: Argon2Params,
}

impl std::fmt::Debug for PassphraseSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassphraseSlot")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn slot_aad(version: u64) -> Vec<u8> {
    let mut aad = SLOT_FORMAT.as_bytes().to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

impl PassphraseSlot {
    /// Creates a new slot holding a fresh master key at version 1. Refuses
    /// to overwrite an existing slot.
    pub fn create(
        path: &Path,
        passphrase: &Passphrase,
        params: Argon2Params,
    ) -> Result<Self, VaultError> {
        // A vault whose master key lives in a token has no slot file, but it
        // is initialised all the same: a new slot beside it would start a
        // second, empty vault over the first one's files.
        if path.with_file_name(super::pkcs11::MASTER_FILE).exists() {
            return Err(VaultError::MasterInToken);
        }
        if path.exists() {
            return Err(VaultError::AlreadyInitialised);
        }
        let salt = random_32();
        let slot = Self {
            path: path.to_owned(),
            kek: argon2id(passphrase, &salt, params)?,
            salt,
            params,
        };
        slot.write(1, &MasterKey::generate())?;
        Ok(slot)
    }

    /// Opens an existing slot and checks the passphrase by unwrapping the
    /// key. A wrong passphrase is [`VaultError::WrongPassphrase`]; nothing
    /// on disk is touched.
    pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Self, VaultError> {
        let file = read_slot(path)?;
        let salt: [u8; 32] = hex::decode(&file.salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(VaultError::Corrupt("master slot salt"))?;
        let slot = Self {
            path: path.to_owned(),
            kek: argon2id(passphrase, &salt, file.argon2)?,
            salt,
            params: file.argon2,
        };
        slot.load()?;
        Ok(slot)
    }

    fn write(&self, version: u64, key: &MasterKey) -> Result<(), VaultError> {
        let wrapped = seal::seal(
            self.kek.expose_secret(),
            &slot_aad(version),
            key.expose_secret(),
        )?;
        let file = SlotFile {
            format: SLOT_FORMAT.into(),
            argon2: self.params,
            salt: hex::encode(self.salt),
            version,
            wrapped: hex::encode(wrapped),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|_| VaultError::Corrupt("slot"))?;
        // Hold the old slot open so its blocks can be overwritten in place
        // once the new slot is durable: the rename alone would leave the old
        // wrapped key in freed blocks of the file system.
        let old = OpenOptions::new().write(true).open(&self.path).ok();
        fsutil::atomic_write(&self.path, &bytes)?;
        if let Some(mut old) = old {
            let len = old.metadata().map(|m| m.len()).unwrap_or(0);
            let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
            old.write_all(&zeros)?;
            old.sync_all()?;
        }
        Ok(())
    }
}

impl SlotFile {
    /// Parses a master slot file's bytes; anything that is not a slot of
    /// this format is [`VaultError::Corrupt`]. Nothing is unwrapped.
    pub fn decode(bytes: &[u8]) -> Result<Self, VaultError> {
        let file: SlotFile =
            serde_json::from_slice(bytes).map_err(|_| VaultError::Corrupt("master slot"))?;
        if file.format != SLOT_FORMAT {
            return Err(VaultError::Corrupt("master slot format"));
        }
        if !file.argon2.within_max() {
            return Err(VaultError::Corrupt("master slot Argon2 parameters"));
        }
        Ok(file)
    }

    /// The master key version the slot holds.
    pub fn version(&self) -> u64 {
        self.version
    }
}

fn read_slot(path: &Path) -> Result<SlotFile, VaultError> {
    match fs::read(path) {
        Ok(bytes) => SlotFile::decode(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(VaultError::NotInitialised),
        Err(e) => Err(e.into()),
    }
}

impl MasterKeyProvider for PassphraseSlot {
    fn load(&self) -> Result<(u64, MasterKey), VaultError> {
        let file = read_slot(&self.path)?;
        let wrapped = hex::decode(&file.wrapped).map_err(|_| VaultError::Corrupt("master slot"))?;
        let plain = seal::open(self.kek.expose_secret(), &slot_aad(file.version), &wrapped)
            .map_err(|_| VaultError::WrongPassphrase)?;
        let key = MasterKey::from_slice(plain.expose_secret())
            .ok_or(VaultError::Corrupt("master key length"))?;
        Ok((file.version, key))
    }

    fn replace(&self, version: u64, key: &MasterKey) -> Result<(), VaultError> {
        self.write(version, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Argon2Params = Argon2Params::INSECURE_FAST_FOR_TESTS;

    #[test]
    fn create_open_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.slot");
        let pass = Passphrase::new("correct horse".into());
        let slot = PassphraseSlot::create(&path, &pass, FAST).unwrap();
        let (v1, m1) = slot.load().unwrap();
        assert_eq!(v1, 1);
        let m2 = MasterKey::generate();
        slot.replace(2, &m2).unwrap();
        let reopened = PassphraseSlot::open(&path, &pass).unwrap();
        let (v2, loaded) = reopened.load().unwrap();
        assert_eq!((v2, &loaded), (2, &m2));
        assert_ne!(loaded, m1);
    }

    #[test]
    fn absurd_argon2_costs_in_a_slot_are_corruption_not_an_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.slot");
        let pass = Passphrase::new("right".into());
        PassphraseSlot::create(&path, &pass, FAST).unwrap();
        let sane: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        for (field, value) in [
            ("m_cost_kib", u64::from(u32::MAX)),
            ("t_cost", 1_000_000),
            ("p_cost", 1000),
        ] {
            let mut damaged = sane.clone();
            damaged["argon2"][field] = value.into();
            let bytes = serde_json::to_vec(&damaged).unwrap();
            assert!(
                matches!(SlotFile::decode(&bytes), Err(VaultError::Corrupt(_))),
                "{field} = {value} was accepted"
            );
            fs::write(&path, &bytes).unwrap();
            assert!(matches!(
                PassphraseSlot::open(&path, &pass),
                Err(VaultError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn wrong_passphrase_is_clear_and_overwrites_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.slot");
        PassphraseSlot::create(&path, &Passphrase::new("right".into()), FAST).unwrap();
        let before = fs::read(&path).unwrap();
        let err = PassphraseSlot::open(&path, &Passphrase::new("wrong".into())).unwrap_err();
        assert!(matches!(err, VaultError::WrongPassphrase));
        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(matches!(
            PassphraseSlot::create(&path, &Passphrase::new("x".into()), FAST),
            Err(VaultError::AlreadyInitialised)
        ));
    }
}
