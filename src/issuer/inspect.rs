//! An on-site inspection of a data directory's vault, read-only: what it
//! holds, with commitments in place of keys.

use std::path::Path;
use std::sync::Arc;

use super::shared::SharedRows;
use super::{DataDir, IssuerError, key_commitment};
use crate::crypto::secret::Passphrase;
use crate::ids::PeriodId;
use crate::store::Store;
use crate::vault::master::{MasterKeyProvider, PassphraseSlot};
use crate::vault::shared::SharedHome;
use crate::vault::{Vault, VaultError};

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
    summarise(&Vault::open_read_only(
        &DataDir::new(root).vault(),
        provider,
    )?)
}

/// As [`summarise_vault`], for the key ring several nodes share in
/// `store` (opened with `Store::open_postgres_shared`), read without
/// writing anything.
pub fn summarise_shared_vault(
    store: &Store,
    provider: Box<dyn MasterKeyProvider>,
) -> Result<VaultSummary, IssuerError> {
    summarise(&Vault::open_shared_read_only(
        Arc::new(shared_rows(store)?),
        provider,
    )?)
}

/// The shared rows of `store` as the vault's seam (for a token provider
/// opened on them: `TokenMaster::open_shared`).
pub fn shared_vault_home(store: &Store) -> Result<Arc<dyn SharedHome>, IssuerError> {
    Ok(Arc::new(shared_rows(store)?))
}

/// Every entry of the audit log several nodes share in `store`.
pub fn shared_log_entries(store: &Store) -> Result<Vec<Vec<u8>>, IssuerError> {
    Ok(shared_rows(store)?.0.audit_entries_from(0)?)
}

fn shared_rows(store: &Store) -> Result<SharedRows, IssuerError> {
    store.shared().map(SharedRows).ok_or_else(|| {
        IssuerError::Vault(VaultError::Shared(
            "the store holds no shared key ring (a one-node database)".into(),
        ))
    })
}

fn summarise(vault: &Vault) -> Result<VaultSummary, IssuerError> {
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
