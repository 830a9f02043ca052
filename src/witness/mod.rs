//! Witnessing of the audit log (C2SP `tlog-witness`, `tlog-cosignature`):
//! independent parties that cosign a checkpoint only after checking that it
//! extends every checkpoint of the same log they cosigned before, so that a
//! checkpoint carrying enough cosignatures is one that everybody sees.
//!
//! - [`cosignature`] — `cosignature/v1` signer and verifier (Ed25519).
//! - [`Witness`] — the `add-checkpoint` logic: parse, check the log's
//!   signature and the consistency proof, compare-and-swap the stored
//!   size, persist, cosign ([`store`] keeps the state crash-safe).
//! - [`policy`] — the clients' side: witness keys and a quorum, in a file,
//!   and the check that a checkpoint carries enough valid cosignatures.
//! - [`collector`] — the issuer's side: send each new checkpoint with a
//!   consistency proof to the witnesses, in the background, and keep the
//!   checkpoint with the cosignatures it got.
//!
//! No HTTP here (that is `http::witness`); the collector speaks HTTP as a
//! client, like the wallet.

pub mod collector;
pub mod cosignature;
pub mod policy;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

pub use cosignature::{CosignatureSigner, CosignatureVerifier};
pub use policy::{Quorum, QuorumError, WitnessPolicy};
use store::{LogState, StoreError, WitnessStore};

/// The most consistency proof lines a request may carry (the spec's cap).
pub const MAX_PROOF_LINES: usize = 63;

/// Why a witness did not cosign; each maps to the status the spec gives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The request body is not `old N`, proof lines, a blank line and a
    /// checkpoint note; or the old size is above the checkpoint's (400).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The checkpoint's origin is not a log this witness is configured for
    /// (404).
    #[error("unknown log origin")]
    UnknownLog,
    /// No signature on the checkpoint verifies under the log's key (403).
    #[error("the checkpoint is not signed by the log's key")]
    BadSignature,
    /// The old size is not the size of the latest checkpoint cosigned for
    /// this log, or it is and the roots differ (409, with that size).
    #[error("the witness holds a checkpoint of size {0} for this log")]
    Conflict(u64),
    /// The consistency proof does not prove the checkpoint extends the one
    /// cosigned before (422).
    #[error("the consistency proof does not verify")]
    BadProof,
    /// The state could not be read or written: nothing was cosigned (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An `add-checkpoint` request body, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct AddRequest {
    /// The size of the checkpoint the client believes the witness holds.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: Vec<u8>,
}

/// Parses an `add-checkpoint` body. Pure and total (a fuzz target).
pub fn parse_add_request(body: &[u8]) -> Result<AddRequest, AddError> {
    let bad = AddError::BadRequest;
    let mut rest = body;
    let mut line = || -> Result<&[u8], AddError> {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(bad("a line does not end in a newline"))?;
        let (line, tail) = rest.split_at(end);
        rest = &tail[1..];
        Ok(line)
    };
    let old = line()?;
    let digits = old
        .strip_prefix(b"old ")
        .ok_or(bad("the first line is not `old <size>`"))?;
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0');
    if !canonical {
        return Err(bad("the old size is not a decimal without leading zeroes"));
    }
    let old_size: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(bad("the old size is out of range"))?;
    let mut proof = Vec::new();
    loop {
        let hash = line()?;
        if hash.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let bytes: [u8; 32] = STANDARD
            .decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or(bad("a proof line is not a base64 hash"))?;
        proof.push(Hash(bytes));
    }
    Ok(AddRequest {
        old_size,
        proof,
        checkpoint: rest.to_vec(),
    })
}

/// Encodes an `add-checkpoint` body (the collector's side).
pub fn encode_add_request(old_size: u64, proof: &[Hash], checkpoint: &[u8]) -> Vec<u8> {
    let mut body = format!("old {old_size}\n").into_bytes();
    for hash in proof {
        body.extend_from_slice(STANDARD.encode(hash.0).as_bytes());
        body.push(b'\n');
    }
    body.push(b'\n');
    body.extend_from_slice(checkpoint);
    body
}

/// A witness: its key, the logs it witnesses and its state.
pub struct Witness {
    signer: CosignatureSigner,
    /// Origin → the log's verifier key.
    logs: BTreeMap<String, String>,
    store: WitnessStore,
    /// Held from the size check to the write: the compare-and-swap.
    lock: Mutex<()>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("signer", &self.signer)
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A log key a witness cannot use.
#[derive(Debug, thiserror::Error)]
#[error("not a log verifier key (name+hex id+base64 key): {0}")]
pub struct BadLogKey(pub String);

impl Witness {
    /// A witness signing with `signer`, keeping state in `store`, for the
    /// logs whose verifier keys are `log_keys` (each log's origin is its
    /// key's name, as blindpass checkpoints have it).
    pub fn new(
        signer: CosignatureSigner,
        log_keys: &[String],
        store: WitnessStore,
    ) -> Result<Self, BadLogKey> {
        let mut logs = BTreeMap::new();
        for key in log_keys {
            let verifier = StandardVerifier::new(key).map_err(|_| BadLogKey(key.clone()))?;
            let name = signed_note::Verifier::name(&verifier).to_owned();
            logs.insert(name, key.clone());
        }
        Ok(Self {
            signer,
            logs,
            store,
            lock: Mutex::new(()),
        })
    }

    /// The witness's verifier key (for clients' policies).
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The origins witnessed.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// Handles one `add-checkpoint` body at `now_s` (POSIX seconds): checks
    /// it as the spec says, records the checkpoint durably and returns the
    /// cosignature line(s).
    pub fn add_checkpoint(&self, body: &[u8], now_s: u64) -> Result<Vec<u8>, AddError> {
        let request = parse_add_request(body)?;
        let note = Note::from_bytes(&request.checkpoint)
            .map_err(|_| AddError::BadRequest("the checkpoint is not a signed note"))?;
        let checkpoint = Checkpoint::from_bytes(note.text())
            .map_err(|_| AddError::BadRequest("the note is not a checkpoint"))?;
        let log_key = self
            .logs
            .get(checkpoint.origin())
            .ok_or(AddError::UnknownLog)?;
        // Configured keys were parsed in `new`.
        let verifier = StandardVerifier::new(log_key).map_err(|_| AddError::BadSignature)?;
        note.verify(&VerifierList::new(vec![Box::new(verifier)]))
            .map_err(|_| AddError::BadSignature)?;
        let (size, root) = (checkpoint.size(), *checkpoint.hash());
        if request.old_size > size {
            return Err(AddError::BadRequest(
                "the old size is above the checkpoint's",
            ));
        }
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let stored = self.store.load(checkpoint.origin())?;
        let stored_size = stored.as_ref().map_or(0, |s| s.size);
        if request.old_size != stored_size {
            return Err(AddError::Conflict(stored_size));
        }
        match &stored {
            // First checkpoint of this log (or an empty tree before): any
            // tree extends it, and the proof must be empty.
            None | Some(LogState { size: 0, .. }) => {
                if !request.proof.is_empty() {
                    return Err(AddError::BadProof);
                }
            }
            Some(old) if old.size == size => {
                if old.root != root {
                    return Err(AddError::Conflict(stored_size));
                }
                if !request.proof.is_empty() {
                    return Err(AddError::BadProof);
                }
            }
            Some(old) => {
                tlog_tiles::check_tree(&request.proof, size, root, old.size, old.root)
                    .map_err(|_| AddError::BadProof)?;
            }
        }
        // Persist first: a cosignature never leaves for a checkpoint that
        // a crash could make the witness forget.
        self.store.save(
            checkpoint.origin(),
            &LogState { size, root },
            &request.checkpoint,
        )?;
        Ok(self.signer.signature_line(note.text(), now_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tlog::{LogSigner, StoredHashes};

    const ORIGIN: &str = "blindpass.test/audit";

    struct Fixture {
        _dir: tempfile::TempDir,
        witness: Witness,
        log: LogSigner,
        tree: StoredHashes,
        verifier: CosignatureVerifier,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log = LogSigner::new(ORIGIN, &[1; 32]);
        let signer = CosignatureSigner::new("w1.test", &[9; 32]).unwrap();
        let verifier = CosignatureVerifier::new(&signer.verifier_key()).unwrap();
        let store = WitnessStore::open(&dir.path().join("state")).unwrap();
        let witness = Witness::new(signer, &[log.verifier_key()], store).unwrap();
        Fixture {
            _dir: dir,
            witness,
            log,
            tree: StoredHashes::default(),
            verifier,
        }
    }

    impl Fixture {
        fn grow(&mut self, n: u64) {
            for _ in 0..n {
                let i = self.tree.size();
                self.tree.append(format!("entry {i}").as_bytes()).unwrap();
            }
        }
        fn note(&self) -> Vec<u8> {
            let size = self.tree.size();
            self.log
                .sign_checkpoint(size, self.tree.root(size).unwrap())
                .unwrap()
        }
        fn body(&self, old: u64) -> Vec<u8> {
            let proof = if old == 0 {
                vec![]
            } else {
                tlog_tiles::prove_tree(self.tree.size(), old, &self.tree).unwrap()
            };
            encode_add_request(old, &proof, &self.note())
        }
        fn add(&self, old: u64) -> Result<Vec<u8>, AddError> {
            self.witness.add_checkpoint(&self.body(old), 1_800_000_000)
        }
    }

    #[test]
    fn requests_round_trip_and_malformed_ones_are_refused() {
        let proof = vec![Hash([1; 32]), Hash([2; 32])];
        let body = encode_add_request(17, &proof, b"note\n\n- sig\n");
        assert_eq!(
            parse_add_request(&body).unwrap(),
            AddRequest {
                old_size: 17,
                proof,
                checkpoint: b"note\n\n- sig\n".to_vec()
            }
        );
        for bad in [
            &b"old 01\n\nx"[..],
            b"old \n\nx",
            b"old -1\n\nx",
            b"new 1\n\nx",
            b"old 1\nnot base64\n\nx",
            b"old 1\nAQ==\n\nx",
            b"old 1",
            b"old 99999999999999999999999\n\nx",
        ] {
            assert!(
                matches!(parse_add_request(bad), Err(AddError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = b"old 1\n".to_vec();
        for _ in 0..64 {
            long.extend_from_slice(format!("{}\n", STANDARD.encode([0u8; 32])).as_bytes());
        }
        long.extend_from_slice(b"\nx");
        assert!(parse_add_request(&long).is_err());
    }

    #[test]
    fn a_consistent_log_is_cosigned_and_every_refusal_has_its_status() {
        let mut f = fixture();
        f.grow(3);
        // First contact: old 0, empty proof.
        let line = f.add(0).unwrap();
        let sig = signed_note::Signature::from_bytes(line.strip_suffix(b"\n").unwrap()).unwrap();
        let cp_text = Note::from_bytes(&f.note()).unwrap().text().to_vec();
        assert!(signed_note::Verifier::verify(
            &f.verifier,
            &cp_text,
            sig.signature()
        ));
        // The same checkpoint again (old = size = 3) is cosigned again.
        assert!(f.add(3).is_ok());
        // A client that thinks the witness is new learns the size.
        f.grow(5);
        assert!(matches!(f.add(0), Err(AddError::Conflict(3))));
        assert!(matches!(f.add(2), Err(AddError::Conflict(3))));
        // A wrong proof: 422.
        let mut body = f.body(3);
        let at = body.iter().position(|b| *b == b'\n').unwrap() + 1;
        body[at] = if body[at] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            f.witness.add_checkpoint(&body, 1),
            Err(AddError::BadProof)
        ));
        // The right one: cosigned, and the witness now holds 8.
        assert!(f.add(3).is_ok());
        assert!(matches!(f.add(3), Err(AddError::Conflict(8))));
        // Old above the checkpoint: 400.
        let note = f.note();
        assert!(matches!(
            f.witness
                .add_checkpoint(&encode_add_request(9, &[], &note), 1),
            Err(AddError::BadRequest(_))
        ));
        // An unknown origin: 404; a signature by another key: 403.
        let stranger = LogSigner::new("other.test/audit", &[1; 32]);
        let foreign = stranger
            .sign_checkpoint(8, f.tree.root(8).unwrap())
            .unwrap();
        assert!(matches!(
            f.witness
                .add_checkpoint(&encode_add_request(8, &[], &foreign), 1),
            Err(AddError::UnknownLog)
        ));
        let impostor = LogSigner::new(ORIGIN, &[2; 32]);
        let forged = impostor
            .sign_checkpoint(8, f.tree.root(8).unwrap())
            .unwrap();
        assert!(matches!(
            f.witness
                .add_checkpoint(&encode_add_request(8, &[], &forged), 1),
            Err(AddError::BadSignature)
        ));
    }

    /// A rewritten log — same size, other root; or grown from a different
    /// prefix — is never cosigned, and the stored state does not move.
    #[test]
    fn a_fork_is_refused_at_the_same_size_and_when_it_grows() {
        let mut f = fixture();
        f.grow(4);
        f.add(0).unwrap();
        let mut fork = StoredHashes::default();
        for i in 0..4 {
            fork.append(format!("rewritten {i}").as_bytes()).unwrap();
        }
        let same_size = f.log.sign_checkpoint(4, fork.root(4).unwrap()).unwrap();
        assert!(matches!(
            f.witness
                .add_checkpoint(&encode_add_request(4, &[], &same_size), 1),
            Err(AddError::Conflict(4))
        ));
        for i in 4..9 {
            fork.append(format!("rewritten {i}").as_bytes()).unwrap();
        }
        let grown = f.log.sign_checkpoint(9, fork.root(9).unwrap()).unwrap();
        let proof = tlog_tiles::prove_tree(9, 4, &fork).unwrap();
        assert!(matches!(
            f.witness
                .add_checkpoint(&encode_add_request(4, &proof, &grown), 1),
            Err(AddError::BadProof)
        ));
        let state = f.witness.store.load(ORIGIN).unwrap().unwrap();
        assert_eq!((state.size, state.root), (4, f.tree.root(4).unwrap()));
    }

    /// State survives a new witness over the same directory (a restart).
    #[test]
    fn state_survives_a_restart() {
        let mut f = fixture();
        f.grow(2);
        f.add(0).unwrap();
        let again = Witness::new(
            CosignatureSigner::new("w1.test", &[9; 32]).unwrap(),
            &[f.log.verifier_key()],
            f.witness.store.clone(),
        )
        .unwrap();
        let body = f.body(0);
        assert!(matches!(
            again.add_checkpoint(&body, 1),
            Err(AddError::Conflict(2))
        ));
    }
}
