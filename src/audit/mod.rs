//! The audit log: an append-only, hash-chained record of everything an
//! auditor needs to confirm that deletion happened — periods opened and
//! ended, keys created (as commitments), destruction intents, destructions
//! with their lateness, purges (counts), master rotations, signing keys
//! published and retired.
//!
//! Entries never hold personal data or token data: [`Event`] has no field
//! that could carry either. Each line is `{seq, at, event, prev}` where
//! `prev` is the SHA-256 of the previous line, so editing or removing an
//! entry breaks the chain ([`Journal::verify_file`]).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ids::PeriodId;

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
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 0, 1, 2, … with no gaps.
    pub seq: u64,
    /// When it was written (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub event: Event,
    /// Hex SHA-256 of the previous line (64 zeros for the first).
    pub prev: String,
}

/// Audit failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file system failed.
    #[error("audit log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The chain is broken at this sequence number.
    #[error("audit log is broken at entry {0}")]
    Broken(u64),
}

struct Tail {
    next_seq: u64,
    prev: [u8; 32],
}

/// The append-only journal file.
pub struct Journal {
    path: PathBuf,
    tail: Mutex<Tail>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path`, checking the whole chain.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let entries = if path.exists() {
            Self::verify_file(path)?
        } else {
            Vec::new()
        };
        let (next_seq, prev) = match entries.last() {
            Some((entry, hash)) => (entry.seq + 1, *hash),
            None => (0, [0u8; 32]),
        };
        Ok(Self {
            path: path.to_owned(),
            tail: Mutex::new(Tail { next_seq, prev }),
        })
    }

    /// Appends an event and fsyncs before returning.
    pub fn append(&self, at: OffsetDateTime, event: Event) -> Result<u64, AuditError> {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let entry = Entry {
            seq: tail.next_seq,
            at,
            event,
            prev: hex::encode(tail.prev),
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        let hash: [u8; 32] = Sha256::digest(&line).into();
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        file.sync_data()?;
        tail.next_seq += 1;
        tail.prev = hash;
        Ok(entry.seq)
    }

    /// Reads and checks a journal file: sequence numbers without gaps and
    /// an unbroken hash chain. Returns each entry with its line hash.
    pub fn verify_file(path: &Path) -> Result<Vec<(Entry, [u8; 32])>, AuditError> {
        let reader = BufReader::new(File::open(path)?);
        let mut out = Vec::new();
        let mut prev = [0u8; 32];
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            let seq = i as u64;
            let entry: Entry = serde_json::from_str(&line).map_err(|_| AuditError::Broken(seq))?;
            if entry.seq != seq || entry.prev != hex::encode(prev) {
                return Err(AuditError::Broken(seq));
            }
            prev = Sha256::digest(line.as_bytes()).into();
            out.push((entry, prev));
        }
        Ok(out)
    }

    /// Every entry, checked.
    pub fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        Ok(Self::verify_file(&self.path)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let journal = Journal::open(&path).unwrap();
        let now = OffsetDateTime::now_utc();
        journal.append(now, Event::ServiceStarted).unwrap();
        journal
            .append(now, Event::MasterRotated { version: 2 })
            .unwrap();
        journal.append(now, Event::ServiceStarted).unwrap();
        assert_eq!(Journal::open(&path).unwrap().entries().unwrap().len(), 3);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("\"version\":2", "\"version\":3")).unwrap();
        assert!(matches!(
            Journal::verify_file(&path),
            Err(AuditError::Broken(2))
        ));
    }
}
