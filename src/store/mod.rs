//! Everything that touches sled. sled holds ciphertext and keyed hashes
//! only: tree names carry random period ids, keys are random resident ids or
//! HMAC outputs, values are sealed records. Nothing here can read personal
//! data, because nothing here ever holds a key.
//!
//! sled does not erase removed bytes and its `flush` is not a full fsync on
//! Linux; so purging a period here is hygiene, never the deletion guarantee
//! (that is the vault's key destruction).

use std::path::Path;

use crate::ids::{PeriodId, ResidentId};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an error.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value had an unexpected shape.
    #[error("storage: corrupt entry in {0}")]
    Corrupt(&'static str),
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
#[derive(Debug, Default)]
struct GroupCommit {
    lock: std::sync::Mutex<()>,
    written: std::sync::atomic::AtomicU64,
    flushed: std::sync::atomic::AtomicU64,
}

/// The sled database of one issuer.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    commit: std::sync::Arc<GroupCommit>,
}

fn tree_name(period: &PeriodId, kind: TreeKind) -> String {
    format!("period.{period}.{}", kind.suffix())
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
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
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Self {
            db,
            commit: std::sync::Arc::default(),
        })
    }

    fn tree(&self, period: &PeriodId, kind: TreeKind) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(tree_name(period, kind))?)
    }

    /// The tree if it exists; reads never create trees, so a read after a
    /// purge cannot bring a dropped period back.
    fn existing_tree(
        &self,
        period: &PeriodId,
        kind: TreeKind,
    ) -> Result<Option<sled::Tree>, StoreError> {
        let name = tree_name(period, kind);
        if self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes())
        {
            Ok(Some(self.db.open_tree(name)?))
        } else {
            Ok(None)
        }
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
    pub fn charge_once(
        &self,
        period: &PeriodId,
        idem_key: &[u8],
        quota_key: &[u8],
        limit: Option<u64>,
        value: &[u8],
    ) -> Result<Charge, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let tree = self.tree(period, TreeKind::State)?;
        let outcome = tree.transaction(|tx| {
            if let Some(previous) = tx.get(idem_key)? {
                return Ok(Charge::Replayed(previous.to_vec()));
            }
            let count = read_count(tx.get(quota_key)?.as_deref());
            if limit.is_some_and(|limit| count >= limit) {
                return Err(ConflictableTransactionError::Abort(()));
            }
            tx.insert(quota_key, &(count + 1).to_be_bytes()[..])?;
            tx.insert(idem_key, value)?;
            Ok(Charge::Charged)
        });
        match outcome {
            Ok(Charge::Charged) => {
                self.durable()?;
                Ok(Charge::Charged)
            }
            Ok(other) => Ok(other),
            Err(TransactionError::Abort(())) => Ok(Charge::OverQuota),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Drops every tree of a period; returns how many entries they held.
    /// Hygiene only: sled may keep the bytes in its files until reused.
    pub fn purge_period(&self, period: &PeriodId) -> Result<usize, StoreError> {
        let mut removed = 0;
        for kind in TreeKind::ALL {
            let name = tree_name(period, kind);
            if let Some(tree) = self.existing_tree(period, kind)? {
                removed += tree.len();
                drop(tree);
                self.db.drop_tree(name.as_bytes())?;
            }
        }
        self.db.flush()?;
        Ok(removed)
    }

    /// The periods that have any tree in the database.
    pub fn periods_present(&self) -> Vec<PeriodId> {
        let mut out: Vec<PeriodId> = self
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
        use std::sync::atomic::Ordering::SeqCst;
        let ticket = self.commit.written.fetch_add(1, SeqCst) + 1;
        if self.commit.flushed.load(SeqCst) >= ticket {
            return Ok(());
        }
        let _guard = self.commit.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.commit.flushed.load(SeqCst) >= ticket {
            return Ok(());
        }
        // Every ticket up to `target` was taken after its write completed,
        // so this flush covers all of them.
        let target = self.commit.written.load(SeqCst);
        self.db.flush()?;
        self.commit.flushed.fetch_max(target, SeqCst);
        Ok(())
    }

    /// Writes buffered changes to the files (sled's flush; see module docs).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// The tree names, for audits of what is stored.
    pub fn tree_names(&self) -> Vec<String> {
        self.db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
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

    #[test]
    fn charge_once_is_idempotent_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let p = PeriodId::generate();
        assert_eq!(
            store
                .charge_once(&p, b"i1", b"q", Some(2), b"sig1")
                .unwrap(),
            Charge::Charged
        );
        assert_eq!(
            store
                .charge_once(&p, b"i1", b"q", Some(2), b"other")
                .unwrap(),
            Charge::Replayed(b"sig1".to_vec())
        );
        assert_eq!(
            store
                .charge_once(&p, b"i2", b"q", Some(2), b"sig2")
                .unwrap(),
            Charge::Charged
        );
        assert_eq!(
            store
                .charge_once(&p, b"i3", b"q", Some(2), b"sig3")
                .unwrap(),
            Charge::OverQuota
        );
        assert_eq!(store.state_counter(&p, b"q").unwrap(), 2);
        assert!(store.state_get(&p, b"i3").unwrap().is_none());
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
