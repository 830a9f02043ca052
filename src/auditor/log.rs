//! Fetching the public audit log and proving that the entries served are
//! the ones the signed checkpoint commits to.
//!
//! The whole tree is rebuilt from the entries (the log is small: a few
//! entries a day), so every prefix root is known exactly. That makes the
//! consistency check with an earlier checkpoint a plain comparison of
//! roots, with no proof to trust ([`consistency`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use signed_note::{Note, StandardVerifier, VerifierList};
use time::OffsetDateTime;
use tlog_tiles::Hash;

use super::Failure;
use crate::audit::tlog::{StoredHashes, TILE_WIDTH, decode_bundle, index_path, verify_checkpoint};
use crate::audit::{Entry, Event};
use crate::client::{Client, ClientError};
use crate::protocol::api::paths;

/// Why a log could not be accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The pinned log key is not a signed-note Ed25519 verifier key.
    #[error("the log key is not a verifier key (name+hex id+base64 key): {0}")]
    BadLogKey(String),
    /// The log could not be fetched: nothing was checked.
    #[error(transparent)]
    Transport(#[from] ClientError),
    /// The log was fetched and failed a check.
    #[error("{0}")]
    Failed(Failure),
}

/// A log whose entries were proved to match a checkpoint signed by the
/// pinned key. Only [`verify_log`] builds one.
#[derive(Debug, Clone)]
pub struct VerifiedLog {
    note: Vec<u8>,
    origin: String,
    tree: StoredHashes,
    entries: Vec<Entry>,
}

impl VerifiedLog {
    /// The signed checkpoint (a C2SP signed note), as served.
    pub fn note(&self) -> &[u8] {
        &self.note
    }

    /// The log's origin line (`<issuer-name>/audit`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of entries (the checkpoint's size).
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Root hash of the first `n` entries, if the log has that many.
    pub fn root(&self, n: u64) -> Option<Hash> {
        self.tree.root(n).ok()
    }

    /// The entries, in order; `entries()[i].seq == i`.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What an auditor or wallet remembers of this log, seen at `seen_at`.
    pub fn saved(&self, server: &str, log_key: &str, seen_at: OffsetDateTime) -> SavedCheckpoint {
        let root = self.root(self.size()).unwrap_or_default();
        SavedCheckpoint {
            server: server.to_owned(),
            log_key: log_key.to_owned(),
            size: self.size(),
            root: STANDARD.encode(root.0),
            seen_at,
            note: String::from_utf8_lossy(&self.note).into_owned(),
        }
    }
}

/// The last checkpoint a client verified, kept so that the next run can
/// prove the log only grew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCheckpoint {
    /// The server it came from.
    pub server: String,
    /// The verifier key it was checked with.
    pub log_key: String,
    /// Number of entries.
    pub size: u64,
    /// Root hash, base64 (as in the checkpoint).
    pub root: String,
    /// When it was fetched, by the client's clock.
    #[serde(with = "time::serde::rfc3339")]
    pub seen_at: OffsetDateTime,
    /// The signed note itself, as evidence.
    pub note: String,
}

impl SavedCheckpoint {
    /// Checks that the saved note is signed by `log_key` and says what the
    /// `size` and `root` fields say (the file could have been edited).
    pub fn check(&self, log_key: &str) -> Result<(), String> {
        if self.log_key != log_key {
            return Err(format!(
                "it was verified with another log key ({})",
                self.log_key
            ));
        }
        let checkpoint = verify_checkpoint(self.note.as_bytes(), log_key)
            .map_err(|e| format!("its saved checkpoint does not verify: {e}"))?;
        if checkpoint.size() != self.size || STANDARD.encode(checkpoint.hash().0) != self.root {
            return Err("its size or root does not match its saved checkpoint".into());
        }
        Ok(())
    }
}

/// Checks that `key` parses as a signed-note verifier key.
pub fn check_log_key(key: &str) -> Result<(), LogError> {
    StandardVerifier::new(key)
        .map(|_| ())
        .map_err(|_| LogError::BadLogKey(key.to_owned()))
}

/// Verifies the checkpoint note under `log_key`, telling a bad signature
/// apart from a malformed note.
fn checked_checkpoint(note: &[u8], log_key: &str) -> Result<tlog_tiles::Checkpoint, LogError> {
    let verifier =
        StandardVerifier::new(log_key).map_err(|_| LogError::BadLogKey(log_key.into()))?;
    verify_checkpoint(note, log_key).map_err(|e| {
        // `verify_checkpoint` says why in text only; classify by redoing
        // the signature step alone.
        let signature_ok = Note::from_bytes(note).map(|n| {
            n.verify(&VerifierList::new(vec![Box::new(verifier)]))
                .is_ok()
        });
        LogError::Failed(match signature_ok {
            Ok(false) => Failure::BadSignature,
            _ => Failure::malformed(format!("checkpoint: {e}")),
        })
    })
}

/// Checks `entries` (raw entry bytes, in order) against the signed
/// checkpoint `note`: the signature under `log_key`, the entry count, the
/// Merkle root rebuilt from the entries, and that each entry parses with
/// `seq` equal to its index.
pub fn verify_log(
    note: &[u8],
    entries: &[Vec<u8>],
    log_key: &str,
) -> Result<VerifiedLog, LogError> {
    let checkpoint = checked_checkpoint(note, log_key)?;
    if entries.len() as u64 != checkpoint.size() {
        return Err(LogError::Failed(Failure::EntriesDoNotMatchCheckpoint));
    }
    let mut tree = StoredHashes::default();
    for entry in entries {
        tree.append(entry)
            .map_err(|e| LogError::Failed(Failure::malformed(format!("merkle tree: {e}"))))?;
    }
    if tree.root(checkpoint.size()).ok().as_ref() != Some(checkpoint.hash()) {
        return Err(LogError::Failed(Failure::EntriesDoNotMatchCheckpoint));
    }
    let mut parsed = Vec::with_capacity(entries.len());
    for (index, bytes) in entries.iter().enumerate() {
        let entry = Entry::from_bytes(bytes).map_err(|_| {
            LogError::Failed(Failure::malformed(format!(
                "entry {index} is not a blindpass audit entry"
            )))
        })?;
        if entry.seq != index as u64 {
            return Err(LogError::Failed(Failure::malformed(format!(
                "entry {index} says it is entry {}",
                entry.seq
            ))));
        }
        parsed.push(entry);
    }
    Ok(VerifiedLog {
        note: note.to_vec(),
        origin: checkpoint.origin().to_owned(),
        tree,
        entries: parsed,
    })
}

/// Fetches `/audit/checkpoint`, verifies it under the pinned `log_key`,
/// fetches every entry bundle it covers (`/audit/tile/entries/…`, full
/// bundles of 256 and a last partial one) and checks them ([`verify_log`]).
pub fn fetch_log(api: &Client, log_key: &str) -> Result<VerifiedLog, LogError> {
    let note = api.get_bytes(paths::AUDIT_CHECKPOINT)?;
    let size = checked_checkpoint(&note, log_key)?.size();
    let mut entries = Vec::new();
    let mut bundle = 0u64;
    while (entries.len() as u64) < size {
        let width = (size - bundle * TILE_WIDTH).min(TILE_WIDTH);
        let path = if width == TILE_WIDTH {
            paths::audit_tile(&format!("entries/{}", index_path(bundle)))
        } else {
            paths::audit_tile(&format!("entries/{}.p/{width}", index_path(bundle)))
        };
        let bytes = api.get_bytes(&path)?;
        let decoded = decode_bundle(&bytes)
            .map_err(|e| LogError::Failed(Failure::malformed(format!("{path}: {e}"))))?;
        if decoded.len() as u64 != width {
            return Err(LogError::Failed(Failure::EntriesDoNotMatchCheckpoint));
        }
        entries.extend(decoded);
        bundle += 1;
    }
    verify_log(&note, &entries, log_key)
}

/// Proves that `log` extends the log of an earlier checkpoint: it is not
/// smaller, and its first `previous.size` entries have the same root.
/// `None` when it does.
pub fn consistency(previous: &SavedCheckpoint, log: &VerifiedLog) -> Option<Failure> {
    if log.size() < previous.size {
        return Some(Failure::RolledBack {
            saved_size: previous.size,
            size: log.size(),
        });
    }
    let root = log.root(previous.size).map(|r| STANDARD.encode(r.0));
    if root.as_deref() != Some(previous.root.as_str()) {
        return Some(Failure::Forked {
            size: previous.size,
            saved_root: previous.root.clone(),
            root: root.unwrap_or_default(),
        });
    }
    None
}

/// Why a signing key may not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// No `signing-key-published` entry for this key, class and window.
    NotLogged,
    /// The log publishes other keys for the same class and window, so
    /// holders of this one could be told apart from holders of the others.
    Split {
        /// Every key id logged for that class and window.
        key_ids: Vec<String>,
    },
}

/// Checks that the log publishes `key_id` for `class` and `window`, and no
/// other key for that class and window.
pub fn key_logged(
    log: &VerifiedLog,
    key_id: &str,
    class: &str,
    window: &str,
) -> Result<(), KeyProblem> {
    let mut key_ids: Vec<String> = Vec::new();
    for entry in log.entries() {
        if let Event::SigningKeyPublished {
            key_id: k,
            class: c,
            window: w,
        } = &entry.event
        {
            if c == class && w == window && !key_ids.contains(k) {
                key_ids.push(k.clone());
            }
        }
    }
    if !key_ids.iter().any(|k| k == key_id) {
        return Err(KeyProblem::NotLogged);
    }
    if key_ids.len() > 1 {
        return Err(KeyProblem::Split { key_ids });
    }
    Ok(())
}
