//! An on-site inspection of a data directory's vault, read-only: what it
//! holds, with commitments in place of keys.

use std::path::Path;

use super::{DataDir, IssuerError, key_commitment};
use crate::crypto::secret::Passphrase;
use crate::ids::PeriodId;
use crate::vault::Vault;
use crate::vault::master::{MasterKeyProvider, PassphraseSlot};

/// What an on-site inspection of the vault sees, with no key material.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VaultSummary {
    /// The master key version.
    pub master_version: u64,
    /// Key-ring files present, by master version (only the current one should be).
    pub ring_files: Vec<u64>,
    /// Live periods with the commitment to their key.
    pub live: Vec<(PeriodId, String)>,
    /// Destroyed periods (tombstones).
    pub destroyed: Vec<PeriodId>,
    /// Signing key ids held.
    pub signing_keys: Vec<String>,
}

/// Opens a data directory's vault read-only with the passphrase and
/// summarises it: commitments instead of keys, so the summary can be shown
/// and compared with the audit log's `period-key-created` entries.
pub fn inspect_vault(root: &Path, passphrase: &Passphrase) -> Result<VaultSummary, IssuerError> {
    let slot = PassphraseSlot::open(&DataDir::new(root).master_slot(), passphrase)?;
    summarise_vault(root, Box::new(slot))
}

/// As [`inspect_vault`], with the master key from `provider` (a PKCS#11
/// token: `audit inspect --master`).
pub fn summarise_vault(
    root: &Path,
    provider: Box<dyn MasterKeyProvider>,
) -> Result<VaultSummary, IssuerError> {
    let vault = Vault::open_read_only(&DataDir::new(root).vault(), provider)?;
    let ring = vault.ring();
    Ok(VaultSummary {
        master_version: vault.master_version(),
        ring_files: vault.ring_files()?,
        live: ring
            .periods
            .iter()
            .map(|p| (p.id, key_commitment(&p.key)))
            .collect(),
        destroyed: ring.destroyed.iter().map(|d| d.id).collect(),
        signing_keys: ring
            .signing_keys
            .iter()
            .map(|k| k.key.public().key_id().to_hex())
            .collect(),
    })
}
