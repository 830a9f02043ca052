//! The sled engine: one embedded database in the data directory. sled holds
//! ciphertext and keyed hashes only: tree names carry random period ids,
//! keys are random resident ids or HMAC outputs, values are sealed records.
//!
//! sled does not erase removed bytes and its `flush` is not a full fsync on
//! Linux; so purging a period here is hygiene, never the deletion guarantee
//! (that is the vault's key destruction).
//!
//! sled checks each log message's CRC at open, but treats the first bad or
//! missing one as the end of its log: a truncated or damaged file opens
//! without error at an earlier state, silently forgetting acknowledged
//! writes. So every durable flush also records a generation number, inside
//! sled and (after the flush) in a small file outside it; at open
//! ([`SledStore::open_watched`]) a store whose generation is behind that
//! file, or a missing store directory, is [`StoreLoss`], refused unless
//! accepted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use super::commit::{self, PendingCharge, PendingFlush};
use super::purge::{self, PurgeDone};
use super::{Charge, ChargeOrder, Entry, StoreConfig, StoreError, StoreLoss, TreeKind, read_count};
use crate::ids::{PeriodId, ResidentId};

/// Group commit: writers take a ticket after their write, then wait until a
/// flush that started after the ticket has finished. One flush serves every
/// writer that queued behind it, instead of one flush per request.
///
/// Each flush also advances the store's generation: written into sled
/// before the flush, and into the watermark file after it.
#[derive(Debug, Default)]
struct GroupCommit {
    lock: std::sync::Mutex<Generation>,
    written: std::sync::atomic::AtomicU64,
    flushed: std::sync::atomic::AtomicU64,
}

/// The generation of the last durable flush, and where it is recorded
/// outside sled (absent for stores opened without one).
#[derive(Debug, Default)]
struct Generation {
    flushed: u64,
    watermark: Option<std::fs::File>,
}

/// sled default-tree key of the generation (no period, no personal data).
const GENERATION_KEY: &[u8] = b"blindpass.generation";

fn read_watermark(path: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| StoreError::Corrupt("the store's generation file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Sled(e.into())),
    }
}

/// Records `generation` in the watermark file. Not fsynced: a watermark
/// that lags after a power cut only weakens the next check, it never makes
/// it refuse a store that holds everything acknowledged. One 8-byte write
/// at offset 0 is never seen half done after a process crash.
fn write_watermark(file: &std::fs::File, generation: u64) -> Result<(), StoreError> {
    use std::os::unix::fs::FileExt as _;
    file.write_all_at(&generation.to_be_bytes(), 0)
        .map_err(|e| StoreError::Sled(e.into()))
}

/// The generation a copy of the store at `dir` opens at. The copy is made
/// next to it (`<dir>.check`, same file system) and removed afterwards.
fn generation_of_a_copy(dir: &Path) -> Result<u64, StoreError> {
    let io = |e: std::io::Error| StoreError::Sled(e.into());
    let mut scratch = dir.as_os_str().to_owned();
    scratch.push(".check");
    let scratch = std::path::PathBuf::from(scratch);
    // A copy left by a crash during an earlier check is stale.
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io)?;
    }
    let found = copy_tree(dir, &scratch).map_err(io).and_then(|()| {
        let db = open_sled(
            &scratch,
            StoreConfig {
                cache_bytes: 16 * 1024 * 1024,
            },
        )?;
        let found = read_count(db.get(GENERATION_KEY)?.as_deref());
        Ok(found)
    });
    // sled closes its files from a background thread; unlinking them
    // while open is fine on Unix.
    let removed = std::fs::remove_dir_all(&scratch).map_err(io);
    let found = found?;
    removed?;
    Ok(found)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// See [`Store::dangerous_hold_flushes`](super::Store::dangerous_hold_flushes).
#[must_use = "flushes resume when the hold is dropped"]
pub struct FlushHold<'a> {
    _guard: Option<std::sync::MutexGuard<'a, Generation>>,
}

impl FlushHold<'_> {
    /// A hold that holds nothing, for an engine without flushes.
    pub(super) fn nothing() -> Self {
        Self { _guard: None }
    }
}

impl std::fmt::Debug for FlushHold<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushHold")
    }
}

/// Open tree handles by name. `open_tree` and `tree_names` each take
/// sled's tree-map lock and allocate, and issuance reads three entries per
/// pass, so handles are kept once a tree is known to exist.
type TreeCache = RwLock<HashMap<String, sled::Tree>>;

/// What the committer thread shares with the handles (not the queue, so
/// the thread ends when the last [`super::Store`] is dropped).
#[derive(Clone, Debug)]
pub(super) struct Core {
    pub(super) db: sled::Db,
    commit: Arc<GroupCommit>,
    trees: Arc<TreeCache>,
}

/// The sled database of one issuer (behind [`super::Store`]).
#[derive(Clone, Debug)]
pub(super) struct SledStore {
    core: Core,
    committer: Arc<OnceLock<commit::Queue>>,
    purger: Arc<OnceLock<purge::Purger>>,
}

fn open_sled(dir: &Path, config: StoreConfig) -> Result<sled::Db, StoreError> {
    // sled releases its file lock from a background thread after the
    // last handle drops, so an immediate reopen in the same process (a
    // restart, a test) can find it still held for a moment: retry
    // briefly rather than fail.
    let mut waited_ms = 0;
    let db = loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_bytes)
            .open()
        {
            Ok(db) => break db,
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::Other
                    && e.to_string().contains("could not acquire lock")
                    && waited_ms < 5_000 =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
                waited_ms += 20;
            }
            Err(sled::Error::Corruption { at, bt: _ }) => {
                return Err(StoreError::Damaged(match at {
                    Some(at) => format!("at {at:?}"),
                    None => "no position given".into(),
                }));
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(db)
}

pub(super) fn tree_name(period: &PeriodId, kind: TreeKind) -> String {
    format!("period.{period}.{}", kind.suffix())
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, without a generation
    /// check (scratch stores, benchmarks).
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let db = open_sled(dir, config)?;
        Ok(Self::with_generation(db, Generation::default()))
    }

    /// [`super::Store::open_watched`]: opens the database in `dir` and
    /// checks it against the generation recorded in `watermark`.
    pub fn open_watched(
        dir: &Path,
        watermark: &Path,
        config: StoreConfig,
        accept_loss: bool,
    ) -> Result<(Self, Option<StoreLoss>), StoreError> {
        let acknowledged = read_watermark(watermark)?;
        let mut loss = None;
        if let Some(acknowledged) = acknowledged.filter(|_| !dir.exists()) {
            loss = Some(StoreLoss::Missing { acknowledged });
            if !accept_loss {
                return Err(StoreError::Lost(StoreLoss::Missing { acknowledged }));
            }
        }
        // sled's recovery rewrites a damaged store's files as it opens them,
        // so the check reads a scratch copy first: a refusal then leaves
        // the store as it found it, for a restore or a closer look.
        if let Some(acknowledged) = acknowledged.filter(|_| loss.is_none() && !accept_loss) {
            let found = generation_of_a_copy(dir)?;
            if found < acknowledged {
                return Err(StoreError::Lost(StoreLoss::Behind {
                    acknowledged,
                    found,
                }));
            }
        }
        let db = open_sled(dir, config)?;
        let found = read_count(db.get(GENERATION_KEY)?.as_deref());
        if let Some(acknowledged) = acknowledged.filter(|a| found < *a && loss.is_none()) {
            let behind = StoreLoss::Behind {
                acknowledged,
                found,
            };
            if !accept_loss {
                return Err(StoreError::Lost(behind));
            }
            loss = Some(behind);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(watermark)
            .map_err(|e| StoreError::Sled(e.into()))?;
        write_watermark(&file, found)?;
        let generation = Generation {
            flushed: found,
            watermark: Some(file),
        };
        Ok((Self::with_generation(db, generation), loss))
    }

    #[cfg(test)]
    pub(super) fn core(&self) -> &Core {
        &self.core
    }

    fn with_generation(db: sled::Db, generation: Generation) -> Self {
        Self {
            core: Core {
                db,
                commit: Arc::new(GroupCommit {
                    lock: std::sync::Mutex::new(generation),
                    ..GroupCommit::default()
                }),
                trees: Arc::default(),
            },
            committer: Arc::default(),
            purger: Arc::default(),
        }
    }

    fn tree(&self, period: &PeriodId, kind: TreeKind) -> Result<sled::Tree, StoreError> {
        self.core.tree(period, kind)
    }

    fn existing_tree(
        &self,
        period: &PeriodId,
        kind: TreeKind,
    ) -> Result<Option<sled::Tree>, StoreError> {
        self.core.existing_tree(period, kind)
    }

    /// Stores a sealed record under its resident id.
    pub fn put_record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.tree(period, TreeKind::Records)?
            .insert(id.as_bytes(), sealed)?;
        Ok(())
    }

    /// The sealed record of a resident, if present.
    pub fn record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.existing_tree(period, TreeKind::Records)? {
            Some(tree) => Ok(tree.get(id.as_bytes())?.map(|v| v.to_vec())),
            None => Ok(None),
        }
    }

    /// Removes a resident's sealed record.
    pub fn remove_record(&self, period: &PeriodId, id: &ResidentId) -> Result<bool, StoreError> {
        Ok(self
            .tree(period, TreeKind::Records)?
            .remove(id.as_bytes())?
            .is_some())
    }

    /// Number of sealed records in a period.
    pub fn record_count(&self, period: &PeriodId) -> Result<usize, StoreError> {
        Ok(self
            .existing_tree(period, TreeKind::Records)?
            .map_or(0, |t| t.len()))
    }

    /// Claims an index slot: stores `value` under `key` only if the key is
    /// absent, atomically. Returns `false` if it was already taken.
    pub fn index_claim(
        &self,
        period: &PeriodId,
        key: &[u8; 32],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let tree = self.tree(period, TreeKind::Index)?;
        Ok(tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
            .is_ok())
    }

    /// Reads an index slot.
    pub fn index_get(
        &self,
        period: &PeriodId,
        key: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.existing_tree(period, TreeKind::Index)? {
            Some(tree) => Ok(tree.get(key)?.map(|v| v.to_vec())),
            None => Ok(None),
        }
    }

    /// Frees an index slot.
    pub fn index_remove(&self, period: &PeriodId, key: &[u8; 32]) -> Result<(), StoreError> {
        self.tree(period, TreeKind::Index)?.remove(key)?;
        Ok(())
    }

    /// Reads a short-lived state entry (sessions, quotas, idempotency).
    pub fn state_get(&self, period: &PeriodId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.existing_tree(period, TreeKind::State)? {
            Some(tree) => Ok(tree.get(key)?.map(|v| v.to_vec())),
            None => Ok(None),
        }
    }

    /// Writes a short-lived state entry.
    pub fn state_insert(
        &self,
        period: &PeriodId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.tree(period, TreeKind::State)?.insert(key, value)?;
        Ok(())
    }

    /// Removes a short-lived state entry.
    pub fn state_remove(&self, period: &PeriodId, key: &[u8]) -> Result<(), StoreError> {
        if let Some(tree) = self.existing_tree(period, TreeKind::State)? {
            tree.remove(key)?;
        }
        Ok(())
    }

    /// Every state entry whose key starts with `prefix`.
    pub fn state_scan(&self, period: &PeriodId, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let Some(tree) = self.existing_tree(period, TreeKind::State)? else {
            return Ok(Vec::new());
        };
        tree.scan_prefix(prefix)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    /// Charges one unit of quota and records an idempotency entry, both or
    /// neither, in one transaction, then flushes. If `idem_key` is already
    /// present its stored value is returned and nothing is charged.
    ///
    /// Security contract: the caller releases a signature only on
    /// [`Charge::Charged`] (with the value it stored) or
    /// [`Charge::Replayed`] (with the stored value); a crash before this
    /// returns has charged nothing that was not also recorded.
    pub fn charge_once(&self, order: &ChargeOrder) -> Result<Charge, StoreError> {
        let outcome = self.core.charge_unflushed(order)?;
        if outcome == Charge::Charged {
            self.durable()?;
        }
        Ok(outcome)
    }

    /// [`Store::charge_once`](super::Store::charge_once) through one committer thread: it applies the
    /// orders that queue up while it flushes, then flushes once for all of
    /// them, so a burst of passes costs one flush and no blocked threads.
    /// The answer arrives only after that flush (same contract).
    pub fn charge_once_queued(&self, order: ChargeOrder) -> PendingCharge {
        self.committer
            .get_or_init(|| commit::Queue::start(self.core.clone()))
            .submit(order)
    }

    /// [`Store::durable`](super::Store::durable) through the committer thread, for async callers:
    /// resolves once every write made before the call is flushed (with the
    /// next batch's flush), holding no thread while it waits.
    pub fn durable_queued(&self) -> PendingFlush {
        self.committer
            .get_or_init(|| commit::Queue::start(self.core.clone()))
            .flush()
    }

    /// Fault injection for tests: while the returned guard lives, no flush
    /// can start or finish, so every write stays undurable and every caller
    /// of [`Store::durable`](super::Store::durable) (and the committer) waits. It models a disk
    /// that stalls; dropping the guard lets the flushes run.
    pub fn dangerous_hold_flushes(&self) -> FlushHold<'_> {
        FlushHold {
            _guard: Some(
                self.core
                    .commit
                    .lock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            ),
        }
    }

    /// Queues the removal of every entry of a period, then of its trees,
    /// on the purge thread (idle scheduling priority, entries removed one
    /// by one so memory stays bounded; see [`purge`]). `done` is called on
    /// that thread with what the run removed. Purges run one at a time, in
    /// the order queued; purging an absent period removes nothing.
    ///
    /// Hygiene only: sled may keep the bytes in its files until reused.
    pub fn purge_in_background(&self, period: &PeriodId, done: PurgeDone) {
        self.purger().submit(*period, done);
    }

    /// Blocks until every purge queued so far has finished.
    pub fn wait_for_purges(&self) {
        self.purger().wait_idle();
    }

    fn purger(&self) -> &purge::Purger {
        self.purger
            .get_or_init(|| purge::Purger::start(purge::on_sled(self.core.clone())))
    }

    /// The periods that have any tree in the database.
    pub fn periods_present(&self) -> Vec<PeriodId> {
        let mut out: Vec<PeriodId> = self
            .core
            .db
            .tree_names()
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok().map(str::to_owned))
            .filter_map(|n| {
                n.strip_prefix("period.")
                    .and_then(|rest| rest.split('.').next())
                    .and_then(PeriodId::parse)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Returns once every write made before the call is flushed, sharing
    /// one flush among concurrent callers (group commit).
    pub fn durable(&self) -> Result<(), StoreError> {
        self.core.durable()
    }

    /// Writes buffered changes to the files (sled's flush; see module docs).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.core.db.flush()?;
        Ok(())
    }

    /// Writes and flushes one small fixed record (no personal data), for
    /// the health endpoints: it fails while sled cannot write. sled keeps
    /// an I/O error (a full disk, say) and returns it from every later
    /// write until the database is reopened, so a failure here means the
    /// process needs a restart.
    pub fn probe(&self) -> Result<(), StoreError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.core.db.insert(b"health.probe", &stamp.to_be_bytes())?;
        self.core.db.flush()?;
        Ok(())
    }

    /// The tree names, for audits of what is stored.
    pub fn tree_names(&self) -> Vec<String> {
        self.core
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.core.db.size_on_disk()?)
    }
}

impl Core {
    fn tree(&self, period: &PeriodId, kind: TreeKind) -> Result<sled::Tree, StoreError> {
        let name = tree_name(period, kind);
        if let Some(tree) = self.cached_tree(&name) {
            return Ok(tree);
        }
        let tree = self.db.open_tree(&name)?;
        self.cache_tree(name, &tree);
        Ok(tree)
    }

    /// The tree if it exists; reads never create trees, so a read after a
    /// purge cannot bring a dropped period back.
    pub(super) fn existing_tree(
        &self,
        period: &PeriodId,
        kind: TreeKind,
    ) -> Result<Option<sled::Tree>, StoreError> {
        let name = tree_name(period, kind);
        if let Some(tree) = self.cached_tree(&name) {
            return Ok(Some(tree));
        }
        if !self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes())
        {
            return Ok(None);
        }
        let tree = self.db.open_tree(&name)?;
        self.cache_tree(name, &tree);
        Ok(Some(tree))
    }

    fn cached_tree(&self, name: &str) -> Option<sled::Tree> {
        let trees = self.trees.read().unwrap_or_else(|e| e.into_inner());
        trees.get(name).cloned()
    }

    fn cache_tree(&self, name: String, tree: &sled::Tree) {
        let mut trees = self.trees.write().unwrap_or_else(|e| e.into_inner());
        trees.insert(name, tree.clone());
    }

    pub(super) fn forget_tree(&self, name: &str) {
        let mut trees = self.trees.write().unwrap_or_else(|e| e.into_inner());
        trees.remove(name);
    }

    /// The transaction of [`Store::charge_once`](super::Store::charge_once), without the flush.
    pub(super) fn charge_unflushed(&self, order: &ChargeOrder) -> Result<Charge, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let tree = self.tree(&order.period, TreeKind::State)?;
        let outcome = tree.transaction(|tx| {
            if let Some(previous) = tx.get(&order.idem_key)? {
                return Ok(Charge::Replayed(previous.to_vec()));
            }
            let count = read_count(tx.get(&order.quota_key)?.as_deref());
            if order.limit.is_some_and(|limit| count >= limit) {
                return Err(ConflictableTransactionError::Abort(()));
            }
            tx.insert(order.quota_key.as_slice(), &(count + 1).to_be_bytes()[..])?;
            tx.insert(order.idem_key.as_slice(), order.value.as_slice())?;
            Ok(Charge::Charged)
        });
        match outcome {
            Ok(charge) => Ok(charge),
            Err(TransactionError::Abort(())) => Ok(Charge::OverQuota),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// See [`Store::durable`](super::Store::durable).
    pub(super) fn durable(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let ticket = self.commit.written.fetch_add(1, SeqCst) + 1;
        if self.commit.flushed.load(SeqCst) >= ticket {
            return Ok(());
        }
        let mut generation = self.commit.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.commit.flushed.load(SeqCst) >= ticket {
            return Ok(());
        }
        // Every ticket up to `target` was taken after its write completed,
        // so this flush covers all of them.
        let target = self.commit.written.load(SeqCst);
        let next = generation.flushed + 1;
        self.db.insert(GENERATION_KEY, &next.to_be_bytes())?;
        self.db.flush()?;
        generation.flushed = next;
        if let Some(file) = &generation.watermark {
            write_watermark(file, next)?;
        }
        self.commit.flushed.fetch_max(target, SeqCst);
        Ok(())
    }
}
