//! Everything that touches the database of per-period data: sealed
//! records, the document index, and short-lived state (sessions, quota
//! counters, idempotency entries). It holds ciphertext and keyed hashes
//! only: tree, table and partition names carry random period ids, keys are
//! random resident ids or HMAC outputs, values are sealed records. Nothing
//! here can read personal data, because nothing here ever holds a key.
//!
//! [`Store`] has two engines, chosen by [`StoreSpec`]:
//!
//! - sled (`sled_engine.rs`, the default): one embedded database in the
//!   data directory, with group commit (`commit.rs`) and an entry-by-entry
//!   background purge (`purge.rs`);
//! - PostgreSQL (`postgres/`): one partition per period of each table, a
//!   purge that drops them. One node with the key ring in its data
//!   directory (the engine refuses a database another node holds), or
//!   several nodes sharing the key ring, the token-wrapped master key and
//!   the audit log as rows ([`Shared`]).
//!
//! Either way, purging a period is hygiene, never the deletion guarantee
//! (that is the vault's key destruction).

mod commit;
mod postgres;
mod purge;
mod sled_engine;

use std::path::Path;

pub use commit::{PendingCharge, PendingFlush};
pub use postgres::shared::{HeldLock, SharedLock};
pub use purge::{PurgeDone, Purged};
pub use sled_engine::FlushHold;

use crate::ids::{PeriodId, ResidentId};
use sled_engine::SledStore;

/// Storage failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an error.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value had an unexpected shape.
    #[error("storage: corrupt entry in {0}")]
    Corrupt(&'static str),
    /// The committer thread is gone (it could not start, or panicked).
    #[error("storage: the commit thread has stopped")]
    CommitterStopped,
    /// The purge thread could not start, or panicked.
    #[error("storage: the purge thread failed")]
    PurgeThread,
    /// The store was closed while a purge ran; the next start finishes it.
    #[error("storage: the purge was stopped by a shutdown")]
    PurgeInterrupted,
    /// Acknowledged writes are missing from the store (found at open).
    #[error("storage: {0}")]
    Lost(StoreLoss),
    /// sled reported damage it could not recover from at open.
    #[error("storage: sled found its files damaged at open ({0})")]
    Damaged(String),
    /// PostgreSQL failed or refused a statement. The text says which step
    /// and gives the SQLSTATE code, never a parameter or a server DETAIL
    /// line (those quote key values).
    #[error("storage: PostgreSQL: {0}")]
    Postgres(String),
    /// Another process holds the database's node lock: the key ring is
    /// still in each node's data directory, so two nodes on one database
    /// would seal with different period keys.
    #[error(
        "storage: another blindpass node uses this database; several nodes need the master key \
         in a PKCS#11 token they share (--master pkcs11:…)"
    )]
    OtherNode,
    /// The database holds another issuer's data (another data directory,
    /// told by its audit log's key), or is shared by several nodes and was
    /// opened as one node's (or the other way round).
    #[error(
        "storage: this PostgreSQL database holds the data of another data directory \
         (another audit log key), or of nodes that share it (opened one way, then the other)"
    )]
    OtherIssuer,
    /// The database's schema is newer than this build knows.
    #[error(
        "storage: the database's schema is at version {found}, newer than this build's \
         {known}: it was written by a newer blindpass"
    )]
    SchemaTooNew {
        /// The newest migration applied to the database.
        found: i32,
        /// The newest migration this build has.
        known: i32,
    },
}

/// Acknowledged writes the store no longer holds, found at open by
/// comparing its generation with the one recorded outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreLoss {
    /// The store directory is gone, though writes were acknowledged from it.
    #[error(
        "the store directory is missing, but {acknowledged} flushes were acknowledged from it \
         (every enrolment, session, quota count and issued-pass record is gone)"
    )]
    Missing {
        /// The last acknowledged generation.
        acknowledged: u64,
    },
    /// sled opened at an earlier state than the last acknowledged flush:
    /// its files were truncated or damaged, and it dropped what followed.
    #[error(
        "the store opened at generation {found}, behind the last acknowledged flush \
         ({acknowledged}): its files were truncated or damaged and sled dropped \
         acknowledged writes (enrolments, quota counts, issued-pass records)"
    )]
    Behind {
        /// The last acknowledged generation.
        acknowledged: u64,
        /// The generation the store holds.
        found: u64,
    },
}

impl StoreLoss {
    /// A short name for the audit log.
    pub fn kind(self) -> &'static str {
        match self {
            StoreLoss::Missing { .. } => "missing",
            StoreLoss::Behind { .. } => "behind",
        }
    }
}

/// The kinds of per-period tree. Each period has one tree of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    /// Sealed resident records, by resident id.
    Records,
    /// Keyed-hash lookup index (e.g. document number → resident id).
    Index,
    /// Sessions, quota counters, idempotency entries: short-lived state.
    State,
}

impl TreeKind {
    const ALL: [TreeKind; 3] = [TreeKind::Records, TreeKind::Index, TreeKind::State];

    fn suffix(self) -> &'static str {
        match self {
            TreeKind::Records => "records",
            TreeKind::Index => "index",
            TreeKind::State => "state",
        }
    }
}

/// A key and its value, as read from a tree.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The outcome of [`Store::charge_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Newly charged and recorded.
    Charged,
    /// Already recorded earlier: the stored value.
    Replayed(Vec<u8>),
    /// The limit is reached; nothing changed.
    OverQuota,
    /// The period's destruction has begun ([`Store::mark_ending`]; several
    /// nodes): nothing changed, and nothing more is charged for it.
    PeriodEnding,
}

fn read_count(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Tuning for the sled database.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// sled's page cache size (sled's own default is 1 GiB).
    pub cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One quota charge with its idempotency entry, for [`Store::charge_once`]
/// or the committer ([`Store::charge_once_queued`]).
#[derive(Debug, Clone)]
pub struct ChargeOrder {
    /// The period whose state tree holds both entries.
    pub period: PeriodId,
    /// Where the value is recorded; present means "already done".
    pub idem_key: Vec<u8>,
    /// The counter charged.
    pub quota_key: Vec<u8>,
    /// The counter's limit, if any.
    pub limit: Option<u64>,
    /// What is recorded under `idem_key`.
    pub value: Vec<u8>,
}

/// The sealed key ring as several nodes share it (one row).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedRing {
    /// Goes up by one at every committed change.
    pub generation: u64,
    /// The master version the ring is sealed under.
    pub master_version: u64,
    /// The ring, sealed.
    pub sealed: Vec<u8>,
    /// A ring sealed under the next master, during a rotation.
    pub staged: Option<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for SharedRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRing")
            .field("generation", &self.generation)
            .field("master_version", &self.master_version)
            .field("staged", &self.staged.as_ref().map(|(v, _)| v))
            .finish_non_exhaustive()
    }
}

/// The rows several nodes share (PostgreSQL opened with
/// [`Store::open_postgres_shared`]): the key ring, the master slot, the
/// audit log's entries, the advisory locks and the ring's notifications.
/// The types are the store's own; the issuer adapts them to the vault's and
/// the audit log's seams.
#[derive(Clone, Debug)]
pub struct Shared(postgres::PgStore);

impl Shared {
    /// Takes an advisory lock, waiting for it (up to a minute) if `wait`,
    /// else only if it is free; released when the result is dropped.
    pub fn lock(&self, which: SharedLock, wait: bool) -> Result<Option<HeldLock>, StoreError> {
        self.0.shared_lock(which, wait)
    }

    /// The ring row, if there is one yet.
    pub fn ring(&self) -> Result<Option<SharedRing>, StoreError> {
        self.0.shared_ring()
    }

    /// The ring row's generation alone (a cheap staleness check).
    pub fn ring_generation(&self) -> Result<Option<u64>, StoreError> {
        self.0.shared_ring_generation()
    }

    /// Creates the ring row at generation 1; false if there is one.
    pub fn create_ring(&self, master_version: u64, sealed: &[u8]) -> Result<bool, StoreError> {
        self.0.create_shared_ring(master_version, sealed)
    }

    /// Replaces the ring if it is still at `generation` (then at
    /// `generation + 1`, announced to every node); false if not.
    pub fn replace_ring(&self, generation: u64, sealed: &[u8]) -> Result<bool, StoreError> {
        self.0.replace_shared_ring(generation, sealed)
    }

    /// Stages the ring sealed under `master_version`, if the ring is still
    /// at `generation`; the generation does not move.
    pub fn stage_ring(
        &self,
        generation: u64,
        master_version: u64,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        self.0.stage_shared_ring(generation, master_version, sealed)
    }

    /// The staged ring under `master_version` becomes the ring (at
    /// `generation + 1`, announced); false if the row moved on.
    pub fn commit_ring(&self, generation: u64, master_version: u64) -> Result<bool, StoreError> {
        self.0.commit_shared_ring(generation, master_version)
    }

    /// Drops a staged ring that was never committed.
    pub fn clear_stage(&self) -> Result<(), StoreError> {
        self.0.clear_shared_stage()
    }

    /// The wrapped master key's row, if there is one yet.
    pub fn master_slot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.master_slot()
    }

    /// Writes the wrapped master key's row.
    pub fn put_master_slot(&self, slot: &[u8]) -> Result<(), StoreError> {
        self.0.put_master_slot(slot)
    }

    /// The audit log's entries from number `from` on.
    pub fn audit_entries_from(&self, from: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.0.audit_entries_from(from)
    }

    /// Appends audit entry number `seq`; false if another node took it.
    pub fn audit_insert(&self, seq: u64, entry: &[u8]) -> Result<bool, StoreError> {
        self.0.audit_insert(seq, entry)
    }

    /// Wakes (a message on the channel) at every committed ring change,
    /// and after every reconnection of the listener.
    pub fn watch_ring(&self) -> std::sync::mpsc::Receiver<()> {
        self.0.watch_ring()
    }
}

/// Which engine holds the per-period data.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum StoreSpec {
    /// sled in the data directory (`sled/`), checked against its generation
    /// file at open.
    #[default]
    Sled,
    /// A PostgreSQL database; one node only for now.
    Postgres {
        /// A libpq connection string: `postgres://…`, `postgresql://…`
        /// or `host=… dbname=…`. It may hold a password, so it is never
        /// printed.
        url: String,
        /// Connections in the pool.
        pool_size: usize,
    },
}

impl StoreSpec {
    /// A PostgreSQL spec, if `url` is a connection string the client
    /// accepts (`postgres://…`, `postgresql://…` or `host=… dbname=…`);
    /// nothing is connected yet.
    pub fn postgres(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        postgres::check_conninfo(url)?;
        Ok(Self::Postgres {
            url: url.to_owned(),
            pool_size,
        })
    }
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sled => f.write_str("Sled"),
            Self::Postgres { pool_size, .. } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("pool_size", pool_size)
                .finish(),
        }
    }
}

/// The per-period data of one issuer, in one of two engines.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
}

#[derive(Clone, Debug)]
enum Engine {
    Sled(SledStore),
    Postgres(postgres::PgStore),
}

/// Calls the same method on whichever engine the store has.
macro_rules! on_engine {
    ($store:expr, $engine:ident => $call:expr) => {
        match &$store.engine {
            Engine::Sled($engine) => $call,
            Engine::Postgres($engine) => $call,
        }
    };
}

impl Store {
    /// Opens (or creates) the sled database in `dir`, without a generation
    /// check (scratch stores, benchmarks).
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        Ok(Self {
            engine: Engine::Sled(SledStore::open(dir, config)?),
        })
    }

    /// Opens the sled database in `dir` and checks it against the
    /// generation recorded in `watermark` by earlier runs: a missing
    /// directory, or a store behind the watermark, is [`StoreError::Lost`]
    /// unless `accept_loss`, in which case the loss is returned and the
    /// watermark starts again from what the store holds. A missing
    /// directory is refused before anything is created.
    ///
    /// The check opens a scratch copy of the store first (sled's recovery
    /// rewrites a damaged store as it opens it), so a refusal changes no
    /// file; the price is one copy of the store per start.
    ///
    /// What this cannot see: a loss when the watermark file is gone too (or
    /// never written, by older versions), and a store copied back from an
    /// older backup together with its watermark.
    pub fn open_watched(
        dir: &Path,
        watermark: &Path,
        config: StoreConfig,
        accept_loss: bool,
    ) -> Result<(Self, Option<StoreLoss>), StoreError> {
        let (sled, loss) = SledStore::open_watched(dir, watermark, config, accept_loss)?;
        Ok((
            Self {
                engine: Engine::Sled(sled),
            },
            loss,
        ))
    }

    /// Opens the PostgreSQL database at `url` (a libpq connection string)
    /// with a pool of `pool_size` connections: takes the node lock
    /// ([`StoreError::OtherNode`] if another process holds it), applies
    /// the schema's migrations ([`StoreError::SchemaTooNew`] if the
    /// database is ahead of this build), and checks that the database is
    /// `owner`'s, claiming it if it is nobody's ([`StoreError::OtherIssuer`]
    /// if not). `owner` is public: the issuer passes its audit log's key.
    pub fn open_postgres(url: &str, pool_size: usize, owner: &str) -> Result<Self, StoreError> {
        Ok(Self {
            engine: Engine::Postgres(postgres::PgStore::open(url, pool_size, owner)?),
        })
    }

    /// Opens the PostgreSQL database several nodes share: applies the
    /// migrations and marks the database as shared, with no node lock;
    /// refuses a database one node owns ([`StoreError::OtherIssuer`]).
    /// Its key ring, master slot and audit log are reached by
    /// [`Store::shared`].
    pub fn open_postgres_shared(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Ok(Self {
            engine: Engine::Postgres(postgres::PgStore::open_shared(url, pool_size)?),
        })
    }

    /// The shared rows, when the store was opened shared.
    pub fn shared(&self) -> Option<Shared> {
        match &self.engine {
            Engine::Postgres(pg) if pg.is_shared() => Some(Shared(pg.clone())),
            _ => None,
        }
    }

    /// `"sled"` or `"postgres"`, for logs and reports.
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sled(_) => "sled",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Whether a call waits for another process (PostgreSQL: a round trip
    /// per call), so that an async caller should make it from the blocking
    /// pool; a sled read is a memory lookup, cheaper than the hop.
    pub fn waits_on_network(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    /// Stores a sealed record under its resident id.
    pub fn put_record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        on_engine!(self, e => e.put_record(period, id, sealed))
    }

    /// The sealed record of a resident, if present.
    pub fn record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        on_engine!(self, e => e.record(period, id))
    }

    /// Removes a resident's sealed record.
    pub fn remove_record(&self, period: &PeriodId, id: &ResidentId) -> Result<bool, StoreError> {
        on_engine!(self, e => e.remove_record(period, id))
    }

    /// Number of sealed records in a period.
    pub fn record_count(&self, period: &PeriodId) -> Result<usize, StoreError> {
        on_engine!(self, e => e.record_count(period))
    }

    /// Claims an index slot: stores `value` under `key` only if the key is
    /// absent, atomically. Returns `false` if it was already taken.
    pub fn index_claim(
        &self,
        period: &PeriodId,
        key: &[u8; 32],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        on_engine!(self, e => e.index_claim(period, key, value))
    }

    /// Reads an index slot.
    pub fn index_get(
        &self,
        period: &PeriodId,
        key: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        on_engine!(self, e => e.index_get(period, key))
    }

    /// Frees an index slot.
    pub fn index_remove(&self, period: &PeriodId, key: &[u8; 32]) -> Result<(), StoreError> {
        on_engine!(self, e => e.index_remove(period, key))
    }

    /// Reads a short-lived state entry (sessions, quotas, idempotency).
    pub fn state_get(&self, period: &PeriodId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        on_engine!(self, e => e.state_get(period, key))
    }

    /// Writes a short-lived state entry.
    pub fn state_insert(
        &self,
        period: &PeriodId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        on_engine!(self, e => e.state_insert(period, key, value))
    }

    /// Removes a short-lived state entry.
    pub fn state_remove(&self, period: &PeriodId, key: &[u8]) -> Result<(), StoreError> {
        on_engine!(self, e => e.state_remove(period, key))
    }

    /// Every state entry whose key starts with `prefix`, in key order.
    pub fn state_scan(&self, period: &PeriodId, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        on_engine!(self, e => e.state_scan(period, prefix))
    }

    /// A big-endian `u64` counter in the state tree (0 if absent).
    pub fn state_counter(&self, period: &PeriodId, key: &[u8]) -> Result<u64, StoreError> {
        Ok(read_count(self.state_get(period, key)?.as_deref()))
    }

    /// Charges one unit of quota and records an idempotency entry, both or
    /// neither, in one transaction, durable when it returns. If `idem_key`
    /// is already present its stored value is returned and nothing is
    /// charged.
    ///
    /// Security contract: the caller releases a signature only on
    /// [`Charge::Charged`] (with the value it stored) or
    /// [`Charge::Replayed`] (with the stored value); a crash before this
    /// returns has charged nothing that was not also recorded.
    pub fn charge_once(&self, order: &ChargeOrder) -> Result<Charge, StoreError> {
        on_engine!(self, e => e.charge_once(order))
    }

    /// Records that `period`'s destruction has begun, so that no node
    /// charges a quota for it any more, whatever its in-memory ring still
    /// holds: on PostgreSQL the period's row is marked, after every charge
    /// in flight for it has committed (each holds the row `FOR SHARE`), and
    /// every later charge is answered [`Charge::PeriodEnding`]. sled has one
    /// node, whose ring is the only one: nothing to record.
    pub fn mark_ending(&self, period: &PeriodId) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sled(_) => Ok(()),
            Engine::Postgres(pg) => pg.mark_ending(period),
        }
    }

    /// [`Store::charge_once`] for async callers, holding no thread while
    /// it waits (same contract). sled: through one committer thread that
    /// applies the orders queued while it flushes, then flushes once for
    /// all of them. PostgreSQL: the transaction runs on the engine's own
    /// runtime; its commit is the durability.
    pub fn charge_once_queued(&self, order: ChargeOrder) -> PendingCharge {
        on_engine!(self, e => e.charge_once_queued(order))
    }

    /// [`Store::durable`] for async callers: resolves once every write made
    /// before the call is durable (sled: with the committer's next flush;
    /// PostgreSQL: at once, a commit being durable when it returns).
    pub fn durable_queued(&self) -> PendingFlush {
        on_engine!(self, e => e.durable_queued())
    }

    /// Fault injection for tests: while the returned guard lives, no sled
    /// flush can start or finish, so every write stays undurable and every
    /// caller of [`Store::durable`] (and the committer) waits. It models a
    /// disk that stalls; dropping the guard lets the flushes run.
    ///
    /// On PostgreSQL there is no flush to hold (a commit is durable when it
    /// returns): the guard holds nothing, and a test that needs a stalled
    /// disk cannot use this engine.
    pub fn dangerous_hold_flushes(&self) -> FlushHold<'_> {
        match &self.engine {
            Engine::Sled(e) => e.dangerous_hold_flushes(),
            Engine::Postgres(_) => FlushHold::nothing(),
        }
    }

    /// Queues the removal of a period's data on the purge thread (idle
    /// scheduling priority; see [`purge`]). `done` is called on that thread
    /// with what the run removed. Purges run one at a time, in the order
    /// queued; purging an absent period removes nothing. sled removes the
    /// entries one by one, then the trees; PostgreSQL drops the period's
    /// partitions (one `DROP TABLE` each) and its `periods` row.
    ///
    /// Hygiene only: the bytes may stay in sled's files until reused, and
    /// in PostgreSQL's WAL and backups.
    pub fn purge_in_background(&self, period: &PeriodId, done: PurgeDone) {
        on_engine!(self, e => e.purge_in_background(period, done))
    }

    /// Blocks until every purge queued so far has finished.
    pub fn wait_for_purges(&self) {
        on_engine!(self, e => e.wait_for_purges())
    }

    /// Purges a period and waits for it: [`Store::purge_in_background`]
    /// for callers with nothing else to do. Returns the entries removed.
    pub fn purge_period(&self, period: &PeriodId) -> Result<usize, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.purge_in_background(
            period,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        match rx.recv().unwrap_or(Err(StoreError::PurgeThread))? {
            Purged {
                entries,
                complete: true,
            } => Ok(entries),
            Purged {
                complete: false, ..
            } => Err(StoreError::PurgeInterrupted),
        }
    }

    /// The periods that have any data in the store (sled: any tree;
    /// PostgreSQL: a `periods` row), in id order.
    pub fn periods_present(&self) -> Vec<PeriodId> {
        on_engine!(self, e => e.periods_present())
    }

    /// Returns once every write made before the call is durable (sled:
    /// sharing one flush among concurrent callers; PostgreSQL: at once).
    pub fn durable(&self) -> Result<(), StoreError> {
        on_engine!(self, e => e.durable())
    }

    /// Writes buffered changes to the files (sled's flush; a no-op on
    /// PostgreSQL, which has none buffered).
    pub fn flush(&self) -> Result<(), StoreError> {
        on_engine!(self, e => e.flush())
    }

    /// For the health endpoints: fails while the store cannot serve. sled:
    /// writes and flushes one small fixed record (no personal data); sled
    /// keeps an I/O error (a full disk, say) and returns it from every
    /// later write until reopened, so a failure means the process needs a
    /// restart. PostgreSQL: `SELECT 1` on a pooled connection.
    pub fn probe(&self) -> Result<(), StoreError> {
        on_engine!(self, e => e.probe())
    }

    /// What the store names, for audits of what is stored: sled's tree
    /// names, or PostgreSQL's per-period partitions.
    pub fn tree_names(&self) -> Vec<String> {
        on_engine!(self, e => e.tree_names())
    }

    /// Bytes the store uses on disk: sled's files, or PostgreSQL's
    /// `pg_database_size` of the whole database.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        on_engine!(self, e => e.size_on_disk())
    }

    /// The sled engine's core, for the purge's unit tests.
    #[cfg(test)]
    fn sled_core(&self) -> &sled_engine::Core {
        match &self.engine {
            Engine::Sled(e) => e.core(),
            Engine::Postgres(_) => panic!("not a sled store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_claim_is_first_come() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let p = PeriodId::generate();
        assert!(store.index_claim(&p, &[1; 32], b"a").unwrap());
        assert!(!store.index_claim(&p, &[1; 32], b"b").unwrap());
        assert_eq!(store.index_get(&p, &[1; 32]).unwrap().unwrap(), b"a");
    }

    fn order(period: PeriodId, idem: &[u8], value: &[u8]) -> ChargeOrder {
        ChargeOrder {
            period,
            idem_key: idem.to_vec(),
            quota_key: b"q".to_vec(),
            limit: Some(2),
            value: value.to_vec(),
        }
    }

    #[test]
    fn charge_once_is_idempotent_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let p = PeriodId::generate();
        let charge = |idem: &[u8], value: &[u8]| store.charge_once(&order(p, idem, value)).unwrap();
        assert_eq!(charge(b"i1", b"sig1"), Charge::Charged);
        assert_eq!(charge(b"i1", b"other"), Charge::Replayed(b"sig1".to_vec()));
        assert_eq!(charge(b"i2", b"sig2"), Charge::Charged);
        assert_eq!(charge(b"i3", b"sig3"), Charge::OverQuota);
        assert_eq!(store.state_counter(&p, b"q").unwrap(), 2);
        assert!(store.state_get(&p, b"i3").unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_charges_batch_and_still_hold_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let p = PeriodId::generate();
        // 200 distinct orders plus a replay of each, all in flight at once,
        // against a limit of 2: exactly two are charged, and each replay
        // answers with what its original stored, if anything.
        let pending: Vec<_> = (0..200u32)
            .flat_map(|i| {
                let idem = i.to_be_bytes();
                [
                    store.charge_once_queued(order(p, &idem, &idem)),
                    store.charge_once_queued(order(p, &idem, b"replay")),
                ]
            })
            .collect();
        let mut outcomes = Vec::new();
        for one in pending {
            outcomes.push(one.outcome().await.unwrap());
        }
        let charged = outcomes.iter().filter(|o| **o == Charge::Charged).count();
        assert_eq!(charged, 2);
        assert_eq!(store.state_counter(&p, b"q").unwrap(), 2);
        for pair in outcomes.chunks(2) {
            if pair[0] == Charge::Charged {
                assert!(matches!(&pair[1], Charge::Replayed(v) if v.len() == 4));
            } else {
                assert_eq!(pair, [Charge::OverQuota, Charge::OverQuota]);
            }
        }
    }

    #[test]
    fn reads_of_a_purged_period_find_nothing_and_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let p = PeriodId::generate();
        store.state_insert(&p, b"k", b"v").unwrap();
        // The handle is cached by now; the purge must drop it too.
        assert_eq!(store.state_get(&p, b"k").unwrap().unwrap(), b"v");
        store.purge_period(&p).unwrap();
        assert!(store.state_get(&p, b"k").unwrap().is_none());
        assert_eq!(store.state_counter(&p, b"k").unwrap(), 0);
        assert!(store.periods_present().is_empty());
    }

    #[test]
    fn purge_drops_only_that_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let (a, b) = (PeriodId::generate(), PeriodId::generate());
        let id = ResidentId::generate();
        store.put_record(&a, &id, b"x").unwrap();
        store.put_record(&b, &id, b"y").unwrap();
        store.index_claim(&a, &[2; 32], b"z").unwrap();
        assert_eq!(store.purge_period(&a).unwrap(), 2);
        assert!(store.record(&a, &id).unwrap().is_none());
        assert_eq!(store.record(&b, &id).unwrap().unwrap(), b"y");
        assert_eq!(store.periods_present(), vec![b]);
    }
}
