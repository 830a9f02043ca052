//! The audit log: an append-only Merkle transparency log (RFC 6962 hashing,
//! C2SP tlog-tiles layout, signed-note checkpoints with the log's Ed25519
//! key) of everything an auditor needs to confirm that deletion happened —
//! periods opened and ended, keys created (as commitments), destruction
//! intents, destructions with their lateness, purges (counts), master
//! rotations, signing keys published and retired.
//!
//! Entries never hold personal data or token data: [`Event`] has no field
//! that could carry either. On disk the log is one append-only file of
//! length-prefixed entries, fsynced before `append` returns; the tree is
//! rebuilt from it at open ([`scan_records`]). Only a torn last record (a
//! crash mid-append, never acknowledged) is cut off; any other damage is a
//! refusal that changes nothing, because cutting at a bad length prefix
//! would delete the intact records after it.

mod consistency;
pub mod tlog;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::PeriodId;
use tlog::{LogSigner, StoredHashes, TILE_HEIGHT, TILE_WIDTH, TlogError};

/// Something the public must be able to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// The service started.
    ServiceStarted,
    /// An isolation period was opened.
    PeriodOpened {
        /// The period.
        period: PeriodId,
        /// Operator's label.
        name: String,
        /// End of the isolation period (RFC 3339).
        ends_at: String,
        /// Destruction deadline (RFC 3339).
        deadline: String,
    },
    /// A period's end was moved.
    PeriodExtended {
        /// The period.
        period: PeriodId,
        /// New end (RFC 3339).
        ends_at: String,
        /// New deadline (RFC 3339).
        deadline: String,
    },
    /// An operator ended a period early.
    PeriodEnded {
        /// The period.
        period: PeriodId,
    },
    /// A period key was created; `commitment` = HMAC(key, label), which
    /// binds the key without revealing it.
    PeriodKeyCreated {
        /// The period.
        period: PeriodId,
        /// Hex commitment.
        commitment: String,
    },
    /// Destruction of a period key is about to start.
    DestroyIntent {
        /// The period.
        period: PeriodId,
    },
    /// A period key was destroyed.
    PeriodKeyDestroyed {
        /// The period.
        period: PeriodId,
        /// Deadline (RFC 3339).
        deadline: String,
        /// Seconds after the deadline it happened (0 if early or on time).
        late_by_s: i64,
    },
    /// The master key was replaced.
    MasterRotated {
        /// The new master version.
        version: u64,
    },
    /// A period's sled data was purged.
    RecordsPurged {
        /// The period.
        period: PeriodId,
        /// How many entries were dropped.
        entries: u64,
    },
    /// A signing key was published.
    SigningKeyPublished {
        /// Hex `token_key_id`.
        key_id: String,
        /// Permit class.
        class: String,
        /// Validity window.
        window: String,
    },
    /// A signing key was retired (its window is over).
    SigningKeyRetired {
        /// Hex `token_key_id`.
        key_id: String,
    },
    /// The operator started the service on a store that had lost
    /// acknowledged writes (enrolments, quota counts, issued-pass records):
    /// quotas may have been reset for the lost ones.
    StoreLossAccepted {
        /// `missing` (the store directory was gone) or `behind` (its files
        /// were truncated or damaged).
        loss: String,
    },
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 0, 1, 2, … with no gaps (the leaf index).
    pub seq: u64,
    /// When it was written (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub event: Event,
}

impl Entry {
    /// Parses an entry's bytes as stored in the log.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        serde_json::from_slice(bytes).map_err(|_| AuditError::Malformed)
    }
}

/// Audit failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file system failed.
    #[error("audit log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An entry does not parse.
    #[error("audit log entry is malformed")]
    Malformed,
    /// The Merkle tree or a checkpoint failed.
    #[error(transparent)]
    Tlog(#[from] TlogError),
    /// The log file is damaged somewhere other than a torn last record.
    #[error(
        "{0}; nothing was changed. Restore the audit log (audit/entries.log) from a \
         backup or a mirror of the public log; only a torn last record is cut \
         automatically"
    )]
    Corrupt(CorruptLog),
    /// The shared log (several nodes) could not be read or written, or its
    /// entries are not a sequence.
    #[error("shared audit log: {0}")]
    Shared(String),
}

/// Where several nodes keep the log's entries: one gapless sequence,
/// whichever node appends. The issuer adapts the store's rows to this.
pub trait SharedEntries: Send + Sync {
    /// The entries from number `from` on, in order.
    fn entries_from(&self, from: u64) -> Result<Vec<Vec<u8>>, AuditError>;
    /// Stores entry number `seq` if it is free and `seq - 1` exists; false
    /// if another node took the number first.
    fn insert(&self, seq: u64, entry: &[u8]) -> Result<bool, AuditError>;
}

/// Where the entries are kept.
enum Home {
    /// One append-only file, fsynced.
    File(PathBuf),
    /// Rows several nodes append to.
    Shared(Arc<dyn SharedEntries>),
}

/// Where and how a log file is damaged (see [`scan_records`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit log is damaged at byte {offset} (record {seq}): {reason}")]
pub struct CorruptLog {
    /// Byte offset of the damaged record's length prefix.
    pub offset: usize,
    /// The index the damaged record would have.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// What [`scan_records`] found in an intact (or torn-tailed) log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedLog {
    /// Every complete record's entry bytes, in order.
    pub records: Vec<Vec<u8>>,
    /// Where the intact records end; below the file's length only when the
    /// last record is torn (a crash mid-append), which may be cut there.
    pub intact_len: usize,
}

/// Splits the bytes of a log file into records, telling a torn last record
/// from corruption. Pure: no I/O, total on any input (a fuzz target).
///
/// A record is a 4-byte big-endian length and that many bytes of one JSON
/// [`Entry`] whose `seq` is its index. The last record is torn when the
/// file ends inside its length prefix, or inside its body while the bytes
/// present are a strict prefix of one entry (JSON that ends early, perhaps
/// followed by zeros a file system left for data it never wrote). A
/// record running past the end whose body already holds a whole entry has
/// a damaged length; a record in bounds that is not its entry is damaged:
/// both are [`CorruptLog`].
pub fn scan_records(bytes: &[u8]) -> Result<ScannedLog, CorruptLog> {
    // Zeros at the end are no record's bytes: a file system may extend the
    // file before the data of an unacknowledged write reaches it.
    let written = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let mut records = Vec::new();
    let mut offset = 0usize;
    while offset < written {
        let seq = records.len() as u64;
        let corrupt = |reason| CorruptLog {
            offset,
            seq,
            reason,
        };
        let Some(prefix) = bytes.get(offset..offset + 4) else {
            // The file ends inside a length prefix: torn.
            break;
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let body_start = offset + 4;
        let end = body_start.saturating_add(len);
        if end > written {
            // The record runs past what was written: torn if what is there
            // is the beginning of one entry, damaged if it holds a whole one.
            let present = bytes.get(body_start..written).unwrap_or_default();
            let mut stream = serde_json::Deserializer::from_slice(present).into_iter::<Entry>();
            return match stream.next() {
                None => Ok(ScannedLog {
                    records,
                    intact_len: offset,
                }),
                Some(Err(e)) if e.is_eof() => Ok(ScannedLog {
                    records,
                    intact_len: offset,
                }),
                Some(Ok(_)) => Err(corrupt(
                    "its length runs past the end of the file, but a whole entry follows it \
                     (a damaged length prefix, not a torn write)",
                )),
                Some(Err(_)) => Err(corrupt(
                    "its length runs past the end of the file and what follows is not an entry",
                )),
            };
        }
        let body = &bytes[body_start..end];
        match Entry::from_bytes(body) {
            Ok(entry) if entry.seq == seq => {}
            Ok(_) => return Err(corrupt("its entry has the wrong sequence number")),
            Err(_) => return Err(corrupt("its bytes are not an entry")),
        }
        records.push(body.to_vec());
        offset = end;
    }
    Ok(ScannedLog {
        records,
        intact_len: offset,
    })
}

struct State {
    raw: Vec<Vec<u8>>,
    tree: StoredHashes,
}

/// The append-only log file (or shared sequence) and its Merkle tree.
pub struct Journal {
    home: Home,
    signer: LogSigner,
    state: Mutex<State>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.home {
            Home::File(path) => f.debug_struct("Journal").field("path", path).finish(),
            Home::Shared(_) => f.write_str("Journal(shared)"),
        }
    }
}

impl Journal {
    /// Opens (or creates) the log at `path`, signing checkpoints with `signer`.
    pub fn open(path: &Path, signer: LogSigner) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        // A refusal returns before anything is written.
        let scanned = scan_records(&bytes).map_err(AuditError::Corrupt)?;
        let mut tree = StoredHashes::default();
        for entry in &scanned.records {
            tree.append(entry)?;
        }
        if scanned.intact_len != bytes.len() {
            // A torn final record from a crash mid-append: it was never
            // acknowledged, so it is cut off.
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(scanned.intact_len as u64)?;
            file.sync_all()?;
        }
        let raw = scanned.records;
        Ok(Self {
            home: Home::File(path.to_owned()),
            signer,
            state: Mutex::new(State { raw, tree }),
        })
    }

    /// Opens the log several nodes share, signing checkpoints with
    /// `signer` (the same key on every node: it is in the shared ring).
    pub fn open_shared(
        shared: Arc<dyn SharedEntries>,
        signer: LogSigner,
    ) -> Result<Self, AuditError> {
        let journal = Self {
            home: Home::Shared(shared),
            signer,
            state: Mutex::new(State {
                raw: Vec::new(),
                tree: StoredHashes::default(),
            }),
        };
        drop(journal.caught_up()?);
        Ok(journal)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, with every entry another node appended taken in (shared;
    /// a file has no other writer).
    fn caught_up(&self) -> Result<std::sync::MutexGuard<'_, State>, AuditError> {
        let mut state = self.state();
        if let Home::Shared(shared) = &self.home {
            let from = state.tree.size();
            for (seq, bytes) in (from..).zip(shared.entries_from(from)?) {
                if Entry::from_bytes(&bytes)?.seq != seq {
                    return Err(AuditError::Shared(format!(
                        "entry {seq} carries another sequence number"
                    )));
                }
                state.tree.append(&bytes)?;
                state.raw.push(bytes);
            }
        }
        Ok(state)
    }

    /// The state caught up, or as it is when the shared log cannot be read
    /// (the reads that serve the public say what they have).
    fn current(&self) -> std::sync::MutexGuard<'_, State> {
        self.caught_up().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not catch up with the shared audit log");
            self.state()
        })
    }

    /// Appends an event; returns after the entry is fsynced (shared: after
    /// the database committed it, as the next number of the sequence).
    pub fn append(&self, at: OffsetDateTime, event: Event) -> Result<u64, AuditError> {
        if let Home::Shared(shared) = &self.home {
            // Another node may take the number between the catch-up and
            // the insert: catch up and try the next one.
            for _ in 0..100 {
                let mut state = self.caught_up()?;
                let entry = Entry {
                    seq: state.tree.size(),
                    at,
                    event: event.clone(),
                };
                let bytes = serde_json::to_vec(&entry).map_err(|_| AuditError::Malformed)?;
                if shared.insert(entry.seq, &bytes)? {
                    state.tree.append(&bytes)?;
                    state.raw.push(bytes);
                    return Ok(entry.seq);
                }
            }
            return Err(AuditError::Shared(
                "other nodes took every number tried".into(),
            ));
        }
        let Home::File(path) = &self.home else {
            unreachable!("the shared log returned above");
        };
        let mut state = self.state();
        let entry = Entry {
            seq: state.tree.size(),
            at,
            event,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|_| AuditError::Malformed)?;
        let len = u32::try_from(bytes.len()).map_err(|_| AuditError::Malformed)?;
        let mut record = len.to_be_bytes().to_vec();
        record.extend_from_slice(&bytes);
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(&record)?;
        file.sync_data()?;
        state.tree.append(&bytes)?;
        state.raw.push(bytes);
        Ok(entry.seq)
    }

    /// Every entry, parsed.
    pub fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        self.caught_up()?
            .raw
            .iter()
            .map(|b| Entry::from_bytes(b))
            .collect()
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.current().tree.size()
    }

    /// A freshly signed checkpoint of the current tree.
    pub fn checkpoint(&self) -> Result<Vec<u8>, AuditError> {
        let state = self.caught_up()?;
        let size = state.tree.size();
        Ok(self.signer.sign_checkpoint(size, state.tree.root(size)?)?)
    }

    /// The verifier key auditors pin.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// Hash tile `level`/`index` of `width` hashes, if the tree has them.
    pub fn hash_tile(&self, level: u8, index: u64, width: u64) -> Option<Vec<u8>> {
        let state = self.current();
        let tree_level = level.checked_mul(TILE_HEIGHT)?;
        let nodes = state.tree.size() >> tree_level;
        let first = index.checked_mul(TILE_WIDTH)?;
        if first.checked_add(width)? > nodes {
            return None;
        }
        let mut out = Vec::with_capacity(usize::try_from(width).ok()? * 32);
        for i in first..first + width {
            out.extend_from_slice(&state.tree.node(tree_level, i).ok()?.0);
        }
        Some(out)
    }

    /// Entry bundle `index` of `width` entries, if the log has them.
    pub fn entry_bundle(&self, index: u64, width: u64) -> Option<Vec<u8>> {
        let state = self.current();
        let first = usize::try_from(index.checked_mul(TILE_WIDTH)?).ok()?;
        let end = first.checked_add(usize::try_from(width).ok()?)?;
        let slice = state.raw.get(first..end)?;
        Some(tlog::encode_bundle(slice.iter().map(Vec::as_slice)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LogSigner {
        LogSigner::new("test/audit", &[1; 32])
    }

    #[test]
    fn entries_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries.log");
        let journal = Journal::open(&path, signer()).unwrap();
        let now = OffsetDateTime::now_utc();
        journal.append(now, Event::ServiceStarted).unwrap();
        journal
            .append(now, Event::MasterRotated { version: 2 })
            .unwrap();
        let checkpoint = journal.checkpoint().unwrap();
        drop(journal);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 50, b'{']);
        fs::write(&path, &bytes).unwrap();
        let journal = Journal::open(&path, signer()).unwrap();
        assert_eq!(journal.size(), 2);
        assert_eq!(
            journal.entries().unwrap()[1].event,
            Event::MasterRotated { version: 2 }
        );
        // Same tree, same checkpoint body (signatures are deterministic too).
        assert_eq!(journal.checkpoint().unwrap(), checkpoint);
        assert_eq!(fs::read(&path).unwrap().len(), bytes.len() - 5);
    }

    #[test]
    fn tiles_and_bundles_are_served_only_within_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("e.log"), signer()).unwrap();
        let now = OffsetDateTime::now_utc();
        for _ in 0..3 {
            journal.append(now, Event::ServiceStarted).unwrap();
        }
        assert_eq!(journal.hash_tile(0, 0, 3).unwrap().len(), 96);
        assert!(journal.hash_tile(0, 0, 4).is_none());
        assert!(journal.hash_tile(1, 0, 1).is_none());
        let bundle = journal.entry_bundle(0, 3).unwrap();
        assert_eq!(tlog::decode_bundle(&bundle).unwrap().len(), 3);
        assert!(journal.entry_bundle(0, 4).is_none());
    }

    fn log_of(n: u64) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries.log");
        let journal = Journal::open(&path, signer()).unwrap();
        let now = OffsetDateTime::now_utc();
        for version in 0..n {
            journal
                .append(now, Event::MasterRotated { version })
                .unwrap();
        }
        let bytes = fs::read(&path).unwrap();
        (dir, path, bytes)
    }

    /// Byte offsets of each record's length prefix.
    fn record_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            out.push(offset);
            let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap());
            offset += 4 + len as usize;
        }
        out
    }

    /// A damaged length prefix in the middle is corruption: the open is
    /// refused, names the offset, says what to do, and changes no byte.
    #[test]
    fn a_damaged_length_prefix_is_refused_and_nothing_is_cut() {
        let (_dir, path, bytes) = log_of(21);
        let offsets = record_offsets(&bytes);
        for (record, flip) in [(3, 0), (3, 1), (20, 1), (0, 0)] {
            let mut damaged = bytes.clone();
            damaged[offsets[record] + flip] ^= 0x40;
            fs::write(&path, &damaged).unwrap();
            let err = Journal::open(&path, signer()).unwrap_err();
            let AuditError::Corrupt(corrupt) = &err else {
                panic!("{err}");
            };
            assert_eq!(
                (corrupt.offset, corrupt.seq),
                (offsets[record], record as u64)
            );
            assert!(err.to_string().contains("Restore the audit log"), "{err}");
            assert_eq!(fs::read(&path).unwrap(), damaged, "the file was changed");
        }
    }

    /// Damage inside a record's body, or a record of the wrong sequence, is
    /// corruption too (it used to be accepted and fail later).
    #[test]
    fn damaged_bodies_and_reordered_records_are_corruption() {
        let (_dir, _path, bytes) = log_of(3);
        let offsets = record_offsets(&bytes);
        let mut damaged = bytes.clone();
        damaged[offsets[1] + 4] = b'[';
        assert_eq!(scan_records(&damaged).unwrap_err().seq, 1);
        let mut swapped = bytes[offsets[1]..offsets[2]].to_vec();
        swapped.extend_from_slice(&bytes[..offsets[1]]);
        assert_eq!(scan_records(&swapped).unwrap_err().seq, 0);
    }

    /// Every way an append can be torn is cut back to the records before
    /// it, and only the last record is ever cut.
    #[test]
    fn every_torn_tail_is_recognised() {
        let (_dir, _path, bytes) = log_of(3);
        let last = *record_offsets(&bytes).last().unwrap();
        for cut in last..bytes.len() {
            let scanned = scan_records(&bytes[..cut]).unwrap();
            assert_eq!(
                (scanned.records.len(), scanned.intact_len),
                (2, last),
                "{cut}"
            );
            let mut zeros = bytes[..cut].to_vec();
            zeros.resize(bytes.len() + 100, 0);
            let scanned = scan_records(&zeros).unwrap();
            assert_eq!(
                (scanned.records.len(), scanned.intact_len),
                (2, last),
                "{cut}"
            );
        }
        let whole = scan_records(&bytes).unwrap();
        assert_eq!((whole.records.len(), whole.intact_len), (3, bytes.len()));
    }

    proptest::proptest! {
        /// Any bytes: a result, never a panic.
        #[test]
        fn scanning_never_panics(bytes: Vec<u8>) {
            let _ = scan_records(&bytes);
        }

        /// One damaged byte anywhere never silently drops an intact record:
        /// the scan refuses, or keeps every record, or (damage in the last
        /// record only) cuts that one as torn.
        #[test]
        fn one_damaged_byte_never_drops_an_intact_record(at: proptest::sample::Index, mask in 1u8..) {
            let (_dir, _path, bytes) = log_of(4);
            let last = *record_offsets(&bytes).last().unwrap();
            let at = at.index(bytes.len());
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            if let Ok(scanned) = scan_records(&damaged) {
                let kept = scanned.records.len();
                proptest::prop_assert!(kept == 4 || (kept == 3 && at >= last), "{kept} at {at}");
                proptest::prop_assert!(scanned.intact_len >= last);
            }
        }
    }
}
