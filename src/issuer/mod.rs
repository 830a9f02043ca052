//! The issuer's core, with no HTTP: isolation periods and their keys,
//! enrolment into sealed records, signing keys per `(class, window)`, and
//! the destruction of a period (crypto-shredding).
//!
//! [`Authority`] owns the three stores and keeps them consistent:
//! the [`Vault`] (keys), the [`Store`] (ciphertext in sled) and the
//! [`Journal`] (public audit log).

pub mod accounts;
pub mod expiry;
pub mod resident;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use time::{Duration, OffsetDateTime};

use crate::audit::tlog::LogSigner;
use crate::audit::{AuditError, Event, Journal};
use crate::clock::Clock;
use crate::crypto::blind::{IssuerPublicKey, IssuerSigningKey};
use crate::crypto::kdf::{self, Argon2Params};
use crate::crypto::secret::{DerivedKey, Passphrase, PeriodKey, SecretBytes};
use crate::crypto::{CryptoError, seal};
use crate::ids::{PeriodId, ResidentId};
use crate::protocol::directory::{Directory, PublishedKey};
use crate::protocol::permit::{ClassConfig, ClassName, Window, range};
use crate::protocol::token::{KeyId, TokenRequest, TokenResponse};
use crate::store::{Purged, Store, StoreConfig, StoreError};
use crate::vault::keyring::{DestroyedPeriod, LivePeriod, SigningKeyEntry};
use crate::vault::master::{MasterKeyProvider, PassphraseSlot};
use crate::vault::{FaultPoint, Vault, VaultError};
use resident::{FieldError, PersonalData};

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
    /// The key vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// sled failed.
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
    /// sled tuning.
    pub store: StoreConfig,
    /// Start even if the store has lost acknowledged writes (see
    /// [`Store::open_watched`]); the acceptance is written to the audit log.
    pub accept_store_loss: bool,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        Self {
            issuer_name: "blindpass.local".into(),
            issuer_request_uri: "http://127.0.0.1:8080/token-request".into(),
            classes: ClassConfig::default(),
            key_horizon_days: 7,
            directory_max_age_s: 3600,
            store: StoreConfig::default(),
            accept_store_loss: false,
        }
    }
}

/// What a destruction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyReport {
    /// The period.
    pub period: PeriodId,
    /// Seconds after the deadline (0 if on time or early).
    pub late_by_s: i64,
    /// The master version after rotation.
    pub master_version: u64,
}

/// A decrypted resident record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResidentRecord {
    /// Personal data.
    pub personal: PersonalData,
    /// Argon2id PHC string of the resident's password, if one was set.
    pub password_hash: Option<String>,
}

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

/// A period end from outside: in the future and in the accepted range.
fn check_ends_at(ends_at: OffsetDateTime, now: OffsetDateTime) -> Result<(), FieldError> {
    if !range::instant_ok(ends_at) {
        return Err(FieldError {
            field: "ends_at",
            rule: range::DATE_RULE,
        });
    }
    if ends_at <= now {
        return Err(FieldError {
            field: "ends_at",
            rule: "must be in the future",
        });
    }
    Ok(())
}

fn record_aad(period: &PeriodId, id: &ResidentId) -> Vec<u8> {
    let mut aad = b"blindpass-record-v1".to_vec();
    aad.extend_from_slice(period.as_bytes());
    aad.extend_from_slice(id.as_bytes());
    aad
}

fn record_key(period_key: &PeriodKey, id: &ResidentId) -> DerivedKey {
    kdf::derive(period_key.expose_secret(), "record", id.as_bytes())
}

fn index_key(period_key: &PeriodKey, label: &str, value: &str) -> [u8; 32] {
    let key = kdf::derive(period_key.expose_secret(), "index", label.as_bytes());
    kdf::hmac_sha256(key.expose_secret(), &[value.as_bytes()])
}

/// A commitment to a key that reveals nothing about it.
pub fn key_commitment(key: &PeriodKey) -> String {
    hex::encode(kdf::hmac_sha256(
        key.expose_secret(),
        &[b"blindpass-key-commitment"],
    ))
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
        Self::assemble(data_dir, vault, config, clock)
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
        Self::assemble(data_dir, vault, config, clock)
    }

    fn assemble(
        data_dir: DataDir,
        vault: Vault,
        config: AuthorityConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IssuerError> {
        // The vault is open; the audit log comes next, so that a refusal of
        // either happens before sled is opened (and recovers, and writes).
        let origin = format!("{}/audit", config.issuer_name);
        let signer = LogSigner::new(&origin, vault.ring().log_seed.expose_secret());
        let journal = Journal::open(&data_dir.audit_log(), signer)?;
        let (store, loss) = Store::open_watched(
            &data_dir.sled(),
            &data_dir.store_generation(),
            config.store,
            config.accept_store_loss,
        )?;
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
        };
        authority.recover()?;
        Ok(authority)
    }

    /// Finishes what a crash interrupted: a destruction that was started is
    /// completed, and sled data of periods whose key is gone is queued for
    /// purging (in the background: a restart does not wait for it).
    fn recover(&self) -> Result<(), IssuerError> {
        // Older code accepted any end and grace; such a period must not stop
        // the service (its deadline is its end, see `LivePeriod::deadline`),
        // but the operator should know.
        for p in &self.vault().ring().periods {
            if !range::instant_ok(p.ends_at) || !range::grace_ok(p.grace_s) {
                tracing::warn!(
                    period = %p.id,
                    deadline = %rfc3339(p.deadline()),
                    "this period's end or grace is out of the accepted range; \
                     its key is destroyed at its end, without grace"
                );
            }
        }
        let pending: Vec<PeriodId> = self
            .vault()
            .ring()
            .periods
            .iter()
            .filter(|p| p.destroy_pending)
            .map(|p| p.id)
            .collect();
        for period in pending {
            self.destroy_period(&period)?;
        }
        // A crash between the commit of a rotation and its audit entries
        // leaves a tombstone the log does not show yet: log it now.
        let logged: Vec<PeriodId> = self
            .journal
            .entries()?
            .into_iter()
            .filter_map(|e| match e.event {
                Event::PeriodKeyDestroyed { period, .. } => Some(period),
                _ => None,
            })
            .collect();
        let (unlogged, version): (Vec<DestroyedPeriod>, u64) = {
            let vault = self.vault();
            let tombstones = vault.ring().destroyed.iter();
            let unlogged = tombstones
                .filter(|d| !logged.contains(&d.id))
                .cloned()
                .collect();
            (unlogged, vault.master_version())
        };
        // The entry carries the time it is written, not the (earlier)
        // rotation time: a log must never look backdated, and reporting the
        // destruction as confirmed later is the conservative side.
        let now = self.now();
        for gone in &unlogged {
            self.journal.append(
                now,
                Event::PeriodKeyDestroyed {
                    period: gone.id,
                    deadline: rfc3339(gone.deadline),
                    late_by_s: (now - gone.deadline).whole_seconds().max(0),
                },
            )?;
        }
        if !unlogged.is_empty() {
            self.journal
                .append(self.now(), Event::MasterRotated { version })?;
        }
        let live: Vec<PeriodId> = self.vault().ring().periods.iter().map(|p| p.id).collect();
        for period in self.store.periods_present() {
            if !live.contains(&period) {
                self.purge_later(&period);
            }
        }
        Ok(())
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

    /// The sled store (for the service's short-lived state).
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

    /// Opens an isolation period with a fresh period key.
    pub fn open_period(
        &self,
        name: &str,
        ends_at: OffsetDateTime,
        grace_s: u64,
    ) -> Result<PeriodId, IssuerError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(FieldError {
                field: "name",
                rule: "must be 1-64 printable characters",
            }
            .into());
        }
        let now = self.now();
        check_ends_at(ends_at, now)?;
        if !range::grace_ok(grace_s) {
            return Err(FieldError {
                field: "grace_s",
                rule: range::GRACE_RULE,
            }
            .into());
        }
        let period = LivePeriod {
            id: PeriodId::generate(),
            name: name.to_owned(),
            opened_at: now,
            ends_at,
            grace_s,
            key: PeriodKey::generate(),
            destroy_pending: false,
        };
        let commitment = key_commitment(&period.key);
        let (id, deadline) = (period.id, period.deadline());
        self.vault().update(|ring| ring.periods.push(period))?;
        self.journal.append(
            now,
            Event::PeriodOpened {
                period: id,
                name: name.to_owned(),
                ends_at: rfc3339(ends_at),
                deadline: rfc3339(deadline),
            },
        )?;
        self.journal.append(
            now,
            Event::PeriodKeyCreated {
                period: id,
                commitment,
            },
        )?;
        Ok(id)
    }

    /// Moves a period's end. Only possible before its destruction deadline,
    /// and never into the past; logged publicly.
    pub fn extend_period(
        &self,
        id: &PeriodId,
        ends_at: OffsetDateTime,
    ) -> Result<PeriodInfo, IssuerError> {
        let now = self.now();
        let info = self.period_info(id).ok_or(IssuerError::UnknownPeriod)?;
        if info.destroy_pending || info.deadline <= now {
            return Err(FieldError {
                field: "ends_at",
                rule: "the destruction deadline has passed; the period cannot be extended",
            }
            .into());
        }
        check_ends_at(ends_at, now)?;
        self.vault().update(|ring| {
            if let Some(p) = ring.periods.iter_mut().find(|p| &p.id == id) {
                p.ends_at = ends_at;
            }
        })?;
        let info = self.period_info(id).ok_or(IssuerError::UnknownPeriod)?;
        self.journal.append(
            now,
            Event::PeriodExtended {
                period: *id,
                ends_at: rfc3339(info.ends_at),
                deadline: rfc3339(info.deadline),
            },
        )?;
        Ok(info)
    }

    /// Ends a period now; its data is destroyed once the grace has passed.
    pub fn end_period(&self, id: &PeriodId) -> Result<PeriodInfo, IssuerError> {
        let now = self.now();
        let info = self.period_info(id).ok_or(IssuerError::UnknownPeriod)?;
        if info.ends_at > now {
            self.vault().update(|ring| {
                if let Some(p) = ring.periods.iter_mut().find(|p| &p.id == id) {
                    p.ends_at = now;
                }
            })?;
            self.journal
                .append(now, Event::PeriodEnded { period: *id })?;
        }
        self.period_info(id).ok_or(IssuerError::UnknownPeriod)
    }

    /// Live periods, oldest first (keys omitted).
    pub fn periods(&self) -> Vec<PeriodInfo> {
        self.live().periods.clone()
    }

    /// One live period, without its key.
    pub fn period_info(&self, id: &PeriodId) -> Option<PeriodInfo> {
        self.live().periods.iter().find(|p| &p.id == id).cloned()
    }

    /// Tombstones of destroyed periods.
    pub fn destroyed_periods(&self) -> Vec<DestroyedPeriod> {
        self.vault().ring().destroyed.clone()
    }

    /// The newest period that has not ended: where enrolments go.
    pub fn current_period(&self) -> Result<PeriodId, IssuerError> {
        let now = self.now();
        self.live()
            .periods
            .iter()
            .filter(|p| p.ends_at > now && !p.destroy_pending)
            .max_by_key(|p| p.opened_at)
            .map(|p| p.id)
            .ok_or(IssuerError::NoOpenPeriod)
    }

    fn period_key(&self, period: &PeriodId) -> Result<PeriodKey, IssuerError> {
        self.vault()
            .ring()
            .period(period)
            .filter(|p| !p.destroy_pending)
            .map(|p| p.key.clone())
            .ok_or(IssuerError::UnknownPeriod)
    }

    /// Enrols a resident into `period`: validates, refuses a second
    /// enrolment of the same document (keyed-hash index), seals the record
    /// under its own key, and stores only ciphertext.
    pub fn enrol(
        &self,
        period: &PeriodId,
        personal: PersonalData,
        password_hash: Option<String>,
    ) -> Result<ResidentId, IssuerError> {
        let key = self.period_key(period)?;
        let needs_employer = false;
        personal.validate(self.now().date(), needs_employer)?;
        let id = ResidentId::generate();
        let doc_index = index_key(&key, "document", &personal.normalized_document());
        if !self.store.index_claim(period, &doc_index, id.as_bytes())? {
            return Err(IssuerError::DuplicateDocument);
        }
        let record = ResidentRecord {
            personal,
            password_hash,
        };
        let result = self.write_record(period, &key, &id, &record);
        if result.is_err() {
            // Leave no index entry pointing at a record that was never written.
            self.store.index_remove(period, &doc_index)?;
        }
        result.map(|()| id)
    }

    fn write_record(
        &self,
        period: &PeriodId,
        key: &PeriodKey,
        id: &ResidentId,
        record: &ResidentRecord,
    ) -> Result<(), IssuerError> {
        let plain = SecretBytes::new(
            serde_json::to_vec(record).map_err(|_| IssuerError::Crypto(CryptoError::Failed))?,
        );
        let sealed = seal::seal(
            record_key(key, id).expose_secret(),
            &record_aad(period, id),
            plain.expose_secret(),
        )?;
        self.store.put_record(period, id, &sealed)?;
        Ok(())
    }

    /// Decrypts a resident's record.
    pub fn record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
    ) -> Result<ResidentRecord, IssuerError> {
        let key = self.period_key(period)?;
        let sealed = self
            .store
            .record(period, id)?
            .ok_or(IssuerError::UnknownResident)?;
        let plain = seal::open(
            record_key(&key, id).expose_secret(),
            &record_aad(period, id),
            &sealed,
        )?;
        serde_json::from_slice(plain.expose_secret()).map_err(|_| CryptoError::Failed.into())
    }

    /// A keyed hash of `value` under the period's index key for `label`:
    /// lookups without storing the value. Used for sessions and quotas.
    pub fn period_index(
        &self,
        period: &PeriodId,
        label: &str,
        value: &str,
    ) -> Result<[u8; 32], IssuerError> {
        Ok(index_key(&self.period_key(period)?, label, value))
    }

    /// Erases one resident before the period ends: removes the record and
    /// its index entry. (The bytes may linger in sled's files until the
    /// period key is destroyed; see the threat model.)
    pub fn erase_resident(&self, period: &PeriodId, id: &ResidentId) -> Result<(), IssuerError> {
        let record = self.record(period, id)?;
        let key = self.period_key(period)?;
        let doc_index = index_key(&key, "document", &record.personal.normalized_document());
        self.store.index_remove(period, &doc_index)?;
        self.store.remove_record(period, id)?;
        self.store.durable()?;
        Ok(())
    }

    /// Destroys a period (crypto-shredding, NIST SP 800-88 "cryptographic erase"). Idempotent
    /// and crash-safe: the intent is logged and recorded in the key ring
    /// first, so a restart at any point finishes the job.
    ///
    /// 1. audit `destroy-intent`; mark the period pending in the ring;
    /// 2. rotate the master key, committing a ring without `K_P`;
    /// 3. the old ring, master and `K_P` are dropped (zeroized) in memory;
    /// 4. audit `period-key-destroyed` (with lateness) and `master-rotated`;
    /// 5. queue the purge of the period's sled data (hygiene) and return:
    ///    the purge runs in the background and audits `records-purged`
    ///    when it finishes ([`Authority::wait_for_purges`] waits for it).
    pub fn destroy_period(&self, period: &PeriodId) -> Result<DestroyReport, IssuerError> {
        let now = self.now();
        let mut vault = self.vault();
        let Some(live) = vault.ring().period(period) else {
            // Already destroyed: finishing the purge is all that may remain.
            let known = vault.ring().destroyed.iter().any(|d| &d.id == period);
            drop(vault);
            if !known {
                return Err(IssuerError::UnknownPeriod);
            }
            self.purge_later(period);
            return Ok(DestroyReport {
                period: *period,
                late_by_s: 0,
                master_version: self.master_version(),
            });
        };
        let deadline = live.deadline();
        if !live.destroy_pending {
            self.journal
                .append(now, Event::DestroyIntent { period: *period })?;
            vault.update(|ring| {
                if let Some(p) = ring.periods.iter_mut().find(|p| &p.id == period) {
                    p.destroy_pending = true;
                }
            })?;
        }
        vault.check_fault(FaultPoint::AfterIntent)?;
        vault.rotate(|ring| {
            if let Some(pos) = ring.periods.iter().position(|p| &p.id == period) {
                let gone = ring.periods.remove(pos);
                ring.destroyed.push(DestroyedPeriod {
                    id: gone.id,
                    name: gone.name.clone(),
                    opened_at: gone.opened_at,
                    ends_at: gone.ends_at,
                    deadline: gone.deadline(),
                    destroyed_at: now,
                });
                // `gone` (with K_P) is dropped here and zeroized.
            }
        })?;
        let master_version = vault.master_version();
        drop(vault);
        // The entries carry the time the key was gone, not the time the
        // destruction began: never earlier than the fact they state.
        let gone_at = self.now();
        let late_by_s = (gone_at - deadline).whole_seconds().max(0);
        self.journal.append(
            gone_at,
            Event::PeriodKeyDestroyed {
                period: *period,
                deadline: rfc3339(deadline),
                late_by_s,
            },
        )?;
        self.journal.append(
            gone_at,
            Event::MasterRotated {
                version: master_version,
            },
        )?;
        self.vault().check_fault(FaultPoint::BeforePurge)?;
        self.purge_later(period);
        Ok(DestroyReport {
            period: *period,
            late_by_s,
            master_version,
        })
    }

    /// Queues the purge of a period whose key is gone; when it finishes,
    /// `records-purged` is audited (if it removed anything). A failure is
    /// logged, and the next start tries again.
    fn purge_later(&self, period: &PeriodId) {
        let (journal, clock, period) = (self.journal.clone(), self.clock.clone(), *period);
        self.store.purge_in_background(
            &period,
            Box::new(move |outcome| match outcome {
                Ok(Purged { entries, complete }) => {
                    // Every run that removed something is audited, a run
                    // cut short by a shutdown too: the counts of a period's
                    // entries add up to what it held.
                    if entries > 0 {
                        let event = Event::RecordsPurged {
                            period,
                            entries: entries as u64,
                        };
                        if let Err(e) = journal.append(clock.now(), event) {
                            tracing::error!(period = %period, error = %e, "purge ran but could not be audited");
                            return;
                        }
                    }
                    if complete {
                        tracing::info!(period = %period, entries, "records-purged");
                    } else {
                        tracing::info!(period = %period, entries, "purge stopped by shutdown; the next start finishes it");
                    }
                }
                Err(e) => {
                    tracing::error!(period = %period, error = %e, "purge failed; the next start retries it");
                }
            }),
        );
    }

    /// Blocks until every purge queued so far has finished and been
    /// audited.
    pub fn wait_for_purges(&self) {
        self.store.wait_for_purges();
    }

    /// Makes sure every class has a signing key for every window from the
    /// one containing today up to the horizon; logs each new key.
    pub fn ensure_signing_keys(&self) -> Result<usize, IssuerError> {
        let now = self.now();
        let today = now.date();
        let last_day = today + Duration::days(i64::from(self.config.key_horizon_days));
        let mut wanted: Vec<(ClassName, Window)> = Vec::new();
        for class in &self.config.classes.classes {
            let mut window = Window::containing(class.window, today);
            while window.first_day() <= last_day {
                wanted.push((class.name.clone(), window));
                window = window.next();
            }
        }
        let missing: Vec<(ClassName, Window)> = {
            let vault = self.vault();
            wanted
                .into_iter()
                .filter(|(c, w)| {
                    !vault
                        .ring()
                        .signing_keys
                        .iter()
                        .any(|k| &k.class == c && &k.window == w)
                })
                .collect()
        };
        if missing.is_empty() {
            return Ok(0);
        }
        // Key generation is slow; do it before taking the vault lock.
        // A token request names its key by the last byte of the key id
        // only (RFC 9578 §6.5), so a key whose truncated id is already
        // taken by a published or retained key is generated again.
        let mut taken: Vec<u8> = self
            .vault()
            .ring()
            .signing_keys
            .iter()
            .map(|k| k.key.public().key_id().truncated())
            .collect();
        let mut fresh = Vec::with_capacity(missing.len());
        for (class, window) in missing {
            let key = unique_truncated_key(&taken)?;
            taken.push(key.public().key_id().truncated());
            fresh.push(SigningKeyEntry { class, window, key });
        }
        // Re-check under the lock: a concurrent caller may have added a key
        // for the same (class, window) meanwhile, and two published keys
        // for one window would split its anonymity set; or a key with the
        // same truncated id, which the next call replaces.
        let mut vault = self.vault();
        fresh.retain(|k| {
            let truncated = k.key.public().key_id().truncated();
            !vault.ring().signing_keys.iter().any(|have| {
                (have.class == k.class && have.window == k.window)
                    || have.key.public().key_id().truncated() == truncated
            })
        });
        let published: Vec<Event> = fresh
            .iter()
            .map(|k| Event::SigningKeyPublished {
                key_id: k.key.public().key_id().to_hex(),
                class: k.class.to_string(),
                window: k.window.to_string(),
            })
            .collect();
        let count = fresh.len();
        if count > 0 {
            vault.update(|ring| ring.signing_keys.extend(fresh))?;
        }
        drop(vault);
        for event in published {
            self.journal.append(now, event)?;
        }
        Ok(count)
    }

    /// Removes signing keys whose window ended more than `skew` ago.
    pub fn retire_signing_keys(&self, skew: Duration) -> Result<usize, IssuerError> {
        let now = self.now();
        let retired: Vec<KeyId> = self
            .vault()
            .ring()
            .signing_keys
            .iter()
            .filter(|k| k.window.ends_at() + skew <= now)
            .map(|k| k.key.public().key_id())
            .collect();
        if retired.is_empty() {
            return Ok(0);
        }
        self.vault().update(|ring| {
            ring.signing_keys
                .retain(|k| !retired.contains(&k.key.public().key_id()))
        })?;
        for key_id in &retired {
            self.journal.append(
                now,
                Event::SigningKeyRetired {
                    key_id: key_id.to_hex(),
                },
            )?;
        }
        Ok(retired.len())
    }

    /// The signing key of a class and window.
    pub fn signing_key(
        &self,
        class: &str,
        window: &Window,
    ) -> Result<IssuerSigningKey, IssuerError> {
        self.config
            .classes
            .class(class)
            .ok_or(IssuerError::UnknownClass)?;
        self.vault()
            .ring()
            .signing_keys
            .iter()
            .find(|k| k.class.as_str() == class && &k.window == window)
            .map(|k| k.key.clone())
            .ok_or(IssuerError::NoSigningKey)
    }

    /// The `(class, window)` of every signing key whose truncated key id is
    /// `truncated` (the byte a `TokenRequest` names its key by). Keys
    /// generated now have unique truncated ids, so this is at most one,
    /// unless a ring from before kept two that collide.
    pub fn keys_for_truncated_id(&self, truncated: u8) -> Vec<(ClassName, Window)> {
        self.vault()
            .ring()
            .signing_keys
            .iter()
            .filter(|k| k.key.public().key_id().truncated() == truncated)
            .map(|k| (k.class.clone(), k.window))
            .collect()
    }

    /// Blind-signs a token request under the key of `(class, window)`.
    /// Eligibility and quota are the caller's business (the service).
    pub fn blind_sign(
        &self,
        class: &str,
        window: &Window,
        request: &TokenRequest,
    ) -> Result<TokenResponse, IssuerError> {
        Ok(self.signing_key(class, window)?.blind_sign(request)?)
    }

    /// The published directory of every current signing key.
    pub fn directory(&self) -> Directory {
        let vault = self.vault();
        let mut keys: Vec<PublishedKey> = vault
            .ring()
            .signing_keys
            .iter()
            .map(|k| PublishedKey::new(k.key.public().spki(), k.class.clone(), k.window))
            .collect();
        keys.sort_by(|a, b| (&a.class, a.window).cmp(&(&b.class, b.window)));
        Directory {
            issuer_name: self.config.issuer_name.clone(),
            issuer_request_uri: self.config.issuer_request_uri.clone(),
            generated_at: self.now().unix_timestamp(),
            max_age_s: self.config.directory_max_age_s,
            keys,
        }
    }

    /// The public key of a `(class, window)`.
    pub fn public_key(&self, class: &str, window: &Window) -> Result<IssuerPublicKey, IssuerError> {
        Ok(self.signing_key(class, window)?.public().clone())
    }
}

/// Tries to generate a signing key with a truncated key id outside `taken`.
/// Each attempt fails with probability `taken.len() / 256`; with the 18
/// keys a default configuration keeps, 64 attempts all failing is below
/// 10^-70. Past that the key space is full, which is a configuration
/// error, not bad luck.
pub(crate) fn unique_truncated_key(taken: &[u8]) -> Result<IssuerSigningKey, IssuerError> {
    unique_truncated_key_from(taken, || Ok(IssuerSigningKey::generate()?))
}

/// [`unique_truncated_key`] over any source of keys.
fn unique_truncated_key_from(
    taken: &[u8],
    mut generate: impl FnMut() -> Result<IssuerSigningKey, IssuerError>,
) -> Result<IssuerSigningKey, IssuerError> {
    for _ in 0..64 {
        let key = generate()?;
        if !taken.contains(&key.public().key_id().truncated()) {
            return Ok(key);
        }
    }
    Err(IssuerError::TruncatedIdsExhausted)
}

/// Every period the admin API reports: live ones and tombstones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeriodList {
    /// Periods whose keys are live.
    pub live: Vec<PeriodInfo>,
    /// Destroyed periods.
    pub destroyed: Vec<DestroyedPeriod>,
}

/// A live period without its key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeriodInfo {
    /// Random id.
    pub id: PeriodId,
    /// Operator's label.
    pub name: String,
    /// Opened at.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Ends at.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Grace after the end, seconds.
    pub grace_s: u64,
    /// Destruction deadline.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// Destruction has started.
    pub destroy_pending: bool,
}

impl From<&LivePeriod> for PeriodInfo {
    fn from(p: &LivePeriod) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            opened_at: p.opened_at,
            ends_at: p.ends_at,
            grace_s: p.grace_s,
            deadline: p.deadline(),
            destroy_pending: p.destroy_pending,
        }
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
    let layout = DataDir::new(root);
    let slot = PassphraseSlot::open(&layout.master_slot(), passphrase)?;
    let vault = Vault::open_read_only(&layout.vault(), Box::new(slot))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn authority(dir: &Path) -> (Authority, ManualClock) {
        let clock = ManualClock::new(OffsetDateTime::now_utc());
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

    #[test]
    fn period_metadata_is_read_without_waiting_for_the_vault() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let id = authority
            .open_period("p", clock.now() + Duration::days(1), 0)
            .unwrap();
        let held = authority.vault();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = &authority;
            scope.spawn(move || {
                let seen = reader.period_info(&id).map(|p| p.id);
                let _ = tx.send(seen);
            });
            let seen = rx.recv_timeout(std::time::Duration::from_secs(5));
            drop(held);
            assert_eq!(seen, Ok(Some(id)), "the reader waited on the vault lock");
        });
    }

    #[test]
    fn every_change_to_the_ring_reaches_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let id = authority
            .open_period("p", clock.now() + Duration::days(1), 0)
            .unwrap();
        assert_eq!(authority.current_period().unwrap(), id);
        let later = clock.now() + Duration::days(2);
        assert_eq!(authority.extend_period(&id, later).unwrap().ends_at, later);
        assert_eq!(authority.period_info(&id).unwrap().ends_at, later);
        // A change made through the guard directly, as destruction does.
        authority
            .vault()
            .update(|ring| ring.periods[0].destroy_pending = true)
            .unwrap();
        assert!(authority.period_info(&id).unwrap().destroy_pending);
        authority.destroy_period(&id).unwrap();
        authority.wait_for_purges();
        assert!(authority.period_info(&id).is_none());
        assert!(authority.periods().is_empty());
        assert!(matches!(
            authority.current_period(),
            Err(IssuerError::NoOpenPeriod)
        ));
    }

    /// Dates and graces from outside are range checked where they enter
    /// the core, so none can make the deadline overflow.
    #[test]
    fn far_dates_and_graces_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let far = time::macros::datetime!(9999-12-31 23:59:59 UTC);
        let field = |e: IssuerError| match e {
            IssuerError::Invalid(f) => f.field,
            other => panic!("{other:?}"),
        };
        let err = authority.open_period("p", far, 0).unwrap_err();
        assert_eq!(field(err), "ends_at");
        let soon = clock.now() + Duration::days(1);
        let err = authority.open_period("p", soon, 1 << 63).unwrap_err();
        assert_eq!(field(err), "grace_s");
        let id = authority.open_period("p", soon, 3600).unwrap();
        let err = authority.extend_period(&id, far).unwrap_err();
        assert_eq!(field(err), "ends_at");
        // Nothing was changed, and the ring is still usable.
        assert_eq!(authority.period_info(&id).unwrap().ends_at, soon);
        assert_eq!(authority.periods().len(), 1);
    }

    /// A ring written by older code may hold a period whose end plus grace
    /// does not exist: the issuer still starts, and that period's key dies
    /// at its end.
    #[test]
    fn a_ring_with_an_overflowing_deadline_still_opens_and_destroys() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let ends_at = clock.now() + Duration::days(1);
        let far = time::macros::datetime!(9999-12-31 00:00 UTC);
        let (near_id, far_id) = (PeriodId::generate(), PeriodId::generate());
        authority
            .vault()
            .update(|ring| {
                for (id, ends_at, grace_s) in [(near_id, ends_at, u64::MAX), (far_id, far, 86_400)]
                {
                    ring.periods.push(LivePeriod {
                        id,
                        name: "old".into(),
                        opened_at: clock.now(),
                        ends_at,
                        grace_s,
                        key: PeriodKey::generate(),
                        destroy_pending: false,
                    });
                }
            })
            .unwrap();
        assert_eq!(authority.period_info(&near_id).unwrap().deadline, ends_at);
        assert_eq!(authority.period_info(&far_id).unwrap().deadline, far);
        drop(authority);
        let authority = Authority::open(
            dir.path(),
            &Passphrase::new("issuer unit tests".into()),
            AuthorityConfig::default(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        assert_eq!(authority.periods().len(), 2);
        clock.advance(Duration::days(1));
        let report = authority.destroy_due(Duration::ZERO).unwrap();
        assert_eq!(report.destroyed.len(), 1);
        assert!(authority.period_info(&near_id).is_none());
        authority.wait_for_purges();
    }

    #[test]
    fn a_key_whose_truncated_id_is_taken_is_generated_again() {
        let first = IssuerSigningKey::generate().unwrap();
        let taken = [first.public().key_id().truncated()];
        let mut second = IssuerSigningKey::generate().unwrap();
        while second.public().key_id().truncated() == taken[0] {
            second = IssuerSigningKey::generate().unwrap();
        }
        // The source yields a colliding key first, then a free one.
        let mut source = vec![second.clone(), first].into_iter();
        let mut calls = 0;
        let key = unique_truncated_key_from(&taken, || {
            calls += 1;
            Ok(source.next_back().unwrap())
        })
        .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(key.public().key_id(), second.public().key_id());
        // A full id space is an error, not an endless loop.
        let all: Vec<u8> = (0..=255).collect();
        assert!(matches!(
            unique_truncated_key_from(&all, || Ok(second.clone())),
            Err(IssuerError::TruncatedIdsExhausted)
        ));
    }
}
