//! Everything that touches sled. sled holds ciphertext and keyed hashes
//! only: tree names carry random period ids, keys are random resident ids or
//! HMAC outputs, values are sealed records. Nothing here can read personal
//! data, because nothing here ever holds a key.
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
//! ([`Store::open_watched`]) a store whose generation is behind that file,
//! or a missing store directory, is [`StoreLoss`], refused unless accepted.

mod commit;
mod purge;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

pub use commit::{PendingCharge, PendingFlush};
pub use purge::{PurgeDone, Purged};

use crate::ids::{PeriodId, ResidentId};

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

/// See [`Store::dangerous_hold_flushes`].
#[must_use = "flushes resume when the hold is dropped"]
pub struct FlushHold<'a> {
    _guard: std::sync::MutexGuard<'a, Generation>,
}

impl std::fmt::Debug for FlushHold<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushHold")
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

/// Open tree handles by name. `open_tree` and `tree_names` each take
/// sled's tree-map lock and allocate, and issuance reads three entries per
/// pass, so handles are kept once a tree is known to exist.
type TreeCache = RwLock<HashMap<String, sled::Tree>>;

/// What the committer thread shares with the handles (not the queue, so
/// the thread ends when the last [`Store`] is dropped).
#[derive(Clone, Debug)]
struct Core {
    db: sled::Db,
    commit: Arc<GroupCommit>,
    trees: Arc<TreeCache>,
}

/// The sled database of one issuer.
#[derive(Clone, Debug)]
pub struct Store {
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

fn tree_name(period: &PeriodId, kind: TreeKind) -> String {
    format!("period.{period}.{}", kind.suffix())
}

impl Store {
    /// Opens (or creates) the database in `dir`, without a generation
    /// check (scratch stores, benchmarks).
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let db = open_sled(dir, config)?;
        Ok(Self::with_generation(db, Generation::default()))
    }

    /// Opens the database in `dir` and checks it against the generation
    /// recorded in `watermark` by earlier runs: a missing directory, or a
    /// store behind the watermark, is [`StoreError::Lost`] unless
    /// `accept_loss`, in which case the loss is returned and the watermark
    /// starts again from what the store holds. A missing directory is
    /// refused before anything is created.
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

    /// A big-endian `u64` counter in the state tree (0 if absent).
    pub fn state_counter(&self, period: &PeriodId, key: &[u8]) -> Result<u64, StoreError> {
        Ok(read_count(self.state_get(period, key)?.as_deref()))
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

    /// [`Store::charge_once`] through one committer thread: it applies the
    /// orders that queue up while it flushes, then flushes once for all of
    /// them, so a burst of passes costs one flush and no blocked threads.
    /// The answer arrives only after that flush (same contract).
    pub fn charge_once_queued(&self, order: ChargeOrder) -> PendingCharge {
        self.committer
            .get_or_init(|| commit::Queue::start(self.core.clone()))
            .submit(order)
    }

    /// [`Store::durable`] through the committer thread, for async callers:
    /// resolves once every write made before the call is flushed (with the
    /// next batch's flush), holding no thread while it waits.
    pub fn durable_queued(&self) -> PendingFlush {
        self.committer
            .get_or_init(|| commit::Queue::start(self.core.clone()))
            .flush()
    }

    /// Fault injection for tests: while the returned guard lives, no flush
    /// can start or finish, so every write stays undurable and every caller
    /// of [`Store::durable`] (and the committer) waits. It models a disk
    /// that stalls; dropping the guard lets the flushes run.
    pub fn dangerous_hold_flushes(&self) -> FlushHold<'_> {
        FlushHold {
            _guard: self
                .core
                .commit
                .lock
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
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

    fn purger(&self) -> &purge::Purger {
        self.purger
            .get_or_init(|| purge::Purger::start(self.core.clone()))
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
    fn existing_tree(
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

    fn forget_tree(&self, name: &str) {
        let mut trees = self.trees.write().unwrap_or_else(|e| e.into_inner());
        trees.remove(name);
    }

    /// The transaction of [`Store::charge_once`], without the flush.
    fn charge_unflushed(&self, order: &ChargeOrder) -> Result<Charge, StoreError> {
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

    /// See [`Store::durable`].
    fn durable(&self) -> Result<(), StoreError> {
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
