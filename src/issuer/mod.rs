//! The issuer's core, with no HTTP: isolation periods and their keys,
//! enrolment into sealed records, signing keys per `(class, window)`, and
//! the destruction of a period (crypto-shredding).
//!
//! [`Authority`] owns the three stores and keeps them consistent:
//! the [`Vault`] (keys), the [`Store`] (ciphertext in sled) and the
//! [`Journal`] (public audit log). This file opens them, in that order, and
//! holds what every job shares; each job has its own file:
//!
//! - `periods.rs`: opening, extending and ending isolation periods;
//! - `records.rs`: enrolment into sealed records, reading and erasing them;
//! - `destruction.rs`: destroying a period's key, recovery at open, the purge;
//! - `expiry.rs`: the deadline-driven pass that calls destruction;
//! - `signing_keys.rs`: blind-signing keys per `(class, window)`, the directory;
//! - `accounts.rs`: passwords and sessions;
//! - `issuance.rs`: eligibility, quota and idempotent issuance;
//! - `resident.rs`: personal data and its validation;
//! - `data_dir.rs`: the data directory's layout;
//! - `inspect.rs`: the on-site summary of a vault, without key material
//!   (opened with the passphrase or with any master-key provider);
//! - `shared.rs`: several nodes on one database (the key ring, master slot
//!   and audit log as shared rows, and how a ring change reaches every
//!   node).

pub mod accounts;
mod data_dir;
mod destruction;
pub mod expiry;
mod inspect;
pub mod issuance;
mod periods;
mod records;
pub mod resident;
mod shared;
mod signing_keys;

pub use data_dir::DataDir;
pub use destruction::DestroyReport;
pub use inspect::{
    VaultSummary, inspect_vault, shared_log_entries, shared_vault_home, summarise_shared_vault,
    summarise_vault,
};
pub use periods::{PeriodInfo, key_commitment};
pub use records::ResidentRecord;
pub use shared::{RingFollow, follow_ring};

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use time::OffsetDateTime;

use crate::audit::tlog::LogSigner;
use crate::audit::{AuditError, Event, Journal};
use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::kdf::Argon2Params;
use crate::crypto::secret::Passphrase;
use crate::protocol::permit::ClassConfig;
use crate::store::{Store, StoreConfig, StoreError, StoreSpec};
use crate::vault::master::{MasterKeyProvider, PassphraseSlot};
use crate::vault::pkcs11::{TokenMaster, TokenPin, TokenUri};
use crate::vault::{FaultPoint, Vault, VaultError};
use resident::FieldError;

/// Issuer failures. Messages never include personal data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// Input broke a validation rule.
    #[error("invalid input: {0}")]
    Invalid(#[from] FieldError),
    /// This document is already enrolled in the period.
    #[error("this document is already enrolled in this period")]
    DuplicateDocument,
    /// No live period with that id.
    #[error("unknown or destroyed isolation period")]
    UnknownPeriod,
    /// No isolation period is open for enrolment.
    #[error("no isolation period is open")]
    NoOpenPeriod,
    /// The period's end has passed; it no longer accepts changes.
    #[error("the isolation period has ended")]
    PeriodEnded,
    /// No resident with that id in the period.
    #[error("unknown resident")]
    UnknownResident,
    /// No signing key for that class and window.
    #[error("no signing key for that class and window")]
    NoSigningKey,
    /// The class is not configured.
    #[error("unknown permit class")]
    UnknownClass,
    /// The window is in the past, of the wrong kind, or beyond the published keys.
    #[error("no passes can be issued for that window")]
    WindowOutOfRange,
    /// The resident lacks data the class requires.
    #[error("not eligible for this class")]
    NotEligible,
    /// The weekly quota is used up.
    #[error("weekly quota exceeded")]
    QuotaExceeded,
    /// The token request does not fit the key (wrong size, wrong key id,
    /// not a valid RSA input).
    #[error("the token request does not match the key")]
    BadTokenRequest,
    /// The session has expired.
    #[error("session expired")]
    SessionExpired,
    /// No key could be generated whose truncated key id differs from every
    /// kept key's: far more keys are configured than 256 ids can tell apart.
    #[error("no free truncated key id; fewer classes or a shorter key horizon are needed")]
    TruncatedIdsExhausted,
    /// A cryptographic check failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// This node (one of several) has not confirmed the shared key ring
    /// within its lease: it uses no key until it has.
    #[error("this node has not confirmed the shared key ring lately; it uses no key until it has")]
    RingStale,
    /// The key vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The store (sled or PostgreSQL) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Settings of an issuer.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    /// The issuer name in the permit challenge and directory.
    pub issuer_name: String,
    /// Where clients send token requests (published in the directory).
    pub issuer_request_uri: String,
    /// The permit classes offered.
    pub classes: ClassConfig,
    /// How many days of windows to keep signing keys for, from today.
    pub key_horizon_days: u32,
    /// How long verifiers may cache the directory.
    pub directory_max_age_s: u64,
    /// Which engine holds the per-period data (sled in the data
    /// directory by default).
    pub store_spec: StoreSpec,
    /// sled tuning.
    pub store: StoreConfig,
    /// Start even if the sled store has lost acknowledged writes (see
    /// [`Store::open_watched`]); the acceptance is written to the audit log.
    /// PostgreSQL has no such check: its own recovery and replication
    /// answer for acknowledged commits.
    pub accept_store_loss: bool,
    /// Several nodes: how often to re-read the shared key ring, and how
    /// long to go on using keys without confirming it.
    pub ring_follow: RingFollow,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        Self {
            issuer_name: "blindpass.local".into(),
            issuer_request_uri: "http://127.0.0.1:8080/token-request".into(),
            classes: ClassConfig::default(),
            key_horizon_days: 7,
            directory_max_age_s: 3600,
            store_spec: StoreSpec::default(),
            store: StoreConfig::default(),
            accept_store_loss: false,
            ring_follow: RingFollow::default(),
        }
    }
}

/// The issuer core.
pub struct Authority {
    vault: Mutex<Vault>,
    /// The live periods without their keys, refreshed whenever a vault
    /// guard that changed the ring is dropped: request paths read period
    /// metadata here and never wait on the vault's lock, which key
    /// destruction holds through several fsyncs.
    live: RwLock<LiveSnapshot>,
    store: Store,
    journal: Arc<Journal>,
    clock: Arc<dyn Clock>,
    config: AuthorityConfig,
    data_dir: DataDir,
    last_expiry_pass: Mutex<Option<OffsetDateTime>>,
    /// Several nodes: when the shared ring was last confirmed (`None`: one
    /// node, whose ring nobody else changes).
    lease: Option<shared::Lease>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

impl Authority {
    /// Initialises a new data directory: master slot, empty key ring, sled,
    /// audit log. Fails if one already exists.
    pub fn init(
        root: &Path,
        passphrase: &Passphrase,
        argon2: Argon2Params,
        config: AuthorityConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IssuerError> {
        let data_dir = DataDir::new(root);
        crate::vault::fsutil::create_private_dir(&data_dir.vault()).map_err(VaultError::from)?;
        let slot = PassphraseSlot::create(&data_dir.master_slot(), passphrase, argon2)?;
        let vault = Vault::create(&data_dir.vault(), Box::new(slot))?;
        Self::assemble(data_dir, vault, config, clock, None)
    }

    /// Opens an existing data directory with the operator's passphrase.
    pub fn open(
        root: &Path,
        passphrase: &Passphrase,
        config: AuthorityConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IssuerError> {
        let data_dir = DataDir::new(root);
        let slot = PassphraseSlot::open(&data_dir.master_slot(), passphrase)?;
        Self::open_with_provider(root, Box::new(slot), config, clock)
    }

    /// Opens an existing data directory with any master-key provider.
    pub fn open_with_provider(
        root: &Path,
        provider: Box<dyn MasterKeyProvider>,
        config: AuthorityConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IssuerError> {
        let data_dir = DataDir::new(root);
        let vault = Vault::open(&data_dir.vault(), provider)?;
        Self::assemble(data_dir, vault, config, clock, None)
    }

    /// One of several nodes on the PostgreSQL database `config.store_spec`
    /// names, with the master key in the PKCS#11 token `uri` they share:
    /// the key ring, the token-wrapped master key and the audit log are
    /// rows of the database, and `root` keeps only this node's admin token
    /// and a copy of the log's public key. The first node to open an empty
    /// database creates the master key and the ring (under the ring lock, so
    /// two first nodes cannot both); returns whether this one did.
    pub fn open_shared(
        root: &Path,
        uri: &TokenUri,
        pin: &TokenPin,
        config: AuthorityConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, bool), IssuerError> {
        let StoreSpec::Postgres { url, pool_size } = &config.store_spec else {
            return Err(VaultError::Shared("several nodes need a PostgreSQL store".into()).into());
        };
        let store = Store::open_postgres_shared(url, *pool_size)?;
        let Some(rows) = store.shared().map(shared::SharedRows) else {
            return Err(VaultError::Shared("the store was not opened shared".into()).into());
        };
        let home: Arc<dyn crate::vault::shared::SharedHome> = Arc::new(rows);
        let (vault, created) = {
            let _lock = home.lock()?;
            if home.master_slot()?.is_none() {
                tracing::info!("initialising the shared key ring (master key in a PKCS#11 token)");
                let master = TokenMaster::create_shared(home.clone(), uri, pin)?;
                (Vault::create_shared(home.clone(), Box::new(master))?, true)
            } else {
                let master = TokenMaster::open_shared(home.clone(), uri, pin)?;
                if home.ring()?.is_none() {
                    // The first node stopped between the master slot and the
                    // ring: the ring is still to be made.
                    (Vault::create_shared(home.clone(), Box::new(master))?, true)
                } else {
                    (Vault::open_shared(home.clone(), Box::new(master))?, false)
                }
            }
        };
        crate::vault::fsutil::create_private_dir(root).map_err(VaultError::from)?;
        let authority = Self::assemble(DataDir::new(root), vault, config, clock, Some(store))?;
        Ok((authority, created))
    }

    /// Opens the audit log and the store (unless `shared` brings the store
    /// several nodes share), then recovers.
    fn assemble(
        data_dir: DataDir,
        vault: Vault,
        config: AuthorityConfig,
        clock: Arc<dyn Clock>,
        shared: Option<Store>,
    ) -> Result<Self, IssuerError> {
        // The vault is open; the audit log comes next, so that a refusal of
        // either happens before sled is opened (and recovers, and writes).
        let origin = format!("{}/audit", config.issuer_name);
        let signer = LogSigner::new(&origin, vault.ring().log_seed.expose_secret());
        let rows = shared.as_ref().and_then(Store::shared);
        let journal = match &rows {
            Some(rows) => Journal::open_shared(Arc::new(shared::SharedRows(rows.clone())), signer)?,
            None => Journal::open(&data_dir.audit_log(), signer)?,
        };
        let lease = rows
            .as_ref()
            .map(|_| shared::Lease::new(config.ring_follow.lease));
        let (store, loss) = match (shared, &config.store_spec) {
            (Some(store), _) => (store, None),
            (None, StoreSpec::Sled) => Store::open_watched(
                &data_dir.sled(),
                &data_dir.store_generation(),
                config.store,
                config.accept_store_loss,
            )?,
            // The database is bound to this data directory by the audit
            // log's (public) key.
            (None, StoreSpec::Postgres { url, pool_size }) => (
                Store::open_postgres(url, *pool_size, &journal.verifier_key())?,
                None,
            ),
        };
        tracing::info!(engine = store.engine_name(), "store open");
        if let Some(loss) = loss {
            tracing::warn!(loss = %loss, "starting with a store that lost acknowledged writes, as the operator accepted");
            journal.append(
                clock.now(),
                Event::StoreLossAccepted {
                    loss: loss.kind().to_owned(),
                },
            )?;
        }
        let key_line = format!("{}\n", journal.verifier_key());
        if let Some(dir) = data_dir.audit_key().parent() {
            // A node sharing the log keeps no entries file that made it.
            std::fs::create_dir_all(dir).map_err(VaultError::from)?;
        }
        if std::fs::read_to_string(data_dir.audit_key())
            .ok()
            .as_deref()
            != Some(key_line.as_str())
        {
            crate::vault::fsutil::atomic_write(&data_dir.audit_key(), key_line.as_bytes())
                .map_err(VaultError::from)?;
        }
        let live = RwLock::new(LiveSnapshot::of(&vault));
        let authority = Self {
            vault: Mutex::new(vault),
            live,
            store,
            journal: Arc::new(journal),
            clock,
            config,
            data_dir,
            last_expiry_pass: Mutex::new(None),
            lease,
        };
        authority.recover()?;
        Ok(authority)
    }

    fn vault(&self) -> VaultGuard<'_> {
        // A panic while holding the lock cannot leave the vault half-written:
        // every change goes through Vault::update/rotate, which only swap
        // the in-memory ring after the file is durable.
        VaultGuard {
            vault: self.vault.lock().unwrap_or_else(|e| e.into_inner()),
            live: &self.live,
        }
    }

    fn live(&self) -> std::sync::RwLockReadGuard<'_, LiveSnapshot> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The injected clock's now.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The configuration.
    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    /// The data directory layout.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// The store (for the service's short-lived state).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The audit journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The master key version.
    pub fn master_version(&self) -> u64 {
        self.vault().master_version()
    }

    /// Tests only: make the next destruction stop at `point`.
    pub fn dangerous_inject_fault(&self, point: Option<FaultPoint>) {
        self.vault().dangerous_inject_fault(point);
    }
}

/// The live periods' metadata as of one generation of the key ring.
#[derive(Debug)]
struct LiveSnapshot {
    generation: u64,
    periods: Vec<PeriodInfo>,
}

impl LiveSnapshot {
    fn of(vault: &Vault) -> Self {
        Self {
            generation: vault.generation(),
            periods: vault.ring().periods.iter().map(PeriodInfo::from).collect(),
        }
    }
}

/// The vault's lock, held. On release, if the ring changed while it was
/// held, the live-period snapshot is replaced, so no change to the ring
/// can leave the snapshot stale.
struct VaultGuard<'a> {
    vault: MutexGuard<'a, Vault>,
    live: &'a RwLock<LiveSnapshot>,
}

impl std::ops::Deref for VaultGuard<'_> {
    type Target = Vault;
    fn deref(&self) -> &Vault {
        &self.vault
    }
}

impl std::ops::DerefMut for VaultGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vault {
        &mut self.vault
    }
}

impl Drop for VaultGuard<'_> {
    fn drop(&mut self) {
        let generation = self.vault.generation();
        let stale = self
            .live
            .read()
            .map_or(true, |live| live.generation != generation);
        if stale {
            let fresh = LiveSnapshot::of(&self.vault);
            *self.live.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
    }
}

/// A fresh issuer in `dir` on a manual clock, for the unit tests of this
/// module's files.
#[cfg(test)]
fn test_authority(dir: &Path) -> (Authority, crate::clock::ManualClock) {
    let clock = crate::clock::ManualClock::new(OffsetDateTime::now_utc());
    let authority = Authority::init(
        dir,
        &Passphrase::new("issuer unit tests".into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
        AuthorityConfig::default(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    (authority, clock)
}
