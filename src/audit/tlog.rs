//! The transparency-log mechanics shared by the service and its auditors:
//! RFC 6962 Merkle hashing (via `tlog_tiles`), C2SP tlog-tiles paths and
//! entry bundles, and C2SP signed-note checkpoints with an Ed25519 key.
//! No I/O here: callers bring the bytes.

use ed25519_dalek::{Signer as _, SigningKey};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, HashReader};

/// Tile height (C2SP tlog-tiles fixes it at 8: 256 hashes per full tile).
pub const TILE_HEIGHT: u8 = 8;
/// Entries or hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// Log failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    /// Hashing or proof computation failed.
    #[error("merkle tree: {0}")]
    Tree(String),
    /// The checkpoint or its signature is wrong.
    #[error("checkpoint: {0}")]
    Checkpoint(&'static str),
    /// A tile or bundle is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Every stored hash of a tree, in `tlog` stored-hash order, in memory.
#[derive(Debug, Default, Clone)]
pub struct StoredHashes {
    hashes: Vec<Hash>,
    size: u64,
}

impl HashReader for StoredHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| self.hashes.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl StoredHashes {
    /// Appends one record to the tree.
    pub fn append(&mut self, entry: &[u8]) -> Result<(), TlogError> {
        let new = tlog_tiles::stored_hashes(self.size, entry, self)
            .map_err(|e| TlogError::Tree(e.to_string()))?;
        self.hashes.extend(new);
        self.size += 1;
        Ok(())
    }

    /// Number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root hash of the tree of the first `n` records.
    pub fn root(&self, n: u64) -> Result<Hash, TlogError> {
        if n > self.size {
            return Err(TlogError::Tree("size beyond the tree".into()));
        }
        tlog_tiles::tree_hash(n, self).map_err(|e| TlogError::Tree(e.to_string()))
    }

    /// The hash of the node at `level`, position `index`.
    pub fn node(&self, level: u8, index: u64) -> Result<Hash, TlogError> {
        let stored = tlog_tiles::stored_hash_index(level, index);
        self.read_hashes(&[stored])
            .map(|h| h[0])
            .map_err(|e| TlogError::Tree(e.to_string()))
    }
}

/// The C2SP path part for tile index `n`: `x001/234` for 1234.
pub fn index_path(n: u64) -> String {
    let mut n = n;
    let mut out = format!("{:03}", n % 1000);
    while n >= 1000 {
        n /= 1000;
        out = format!("x{:03}/{out}", n % 1000);
    }
    out
}

/// Parses `[xNNN/]…NNN[.p/W]` into (index, width).
pub fn parse_index_path(path: &str) -> Result<(u64, u64), TlogError> {
    let bad = || TlogError::Malformed("tile path");
    let (index_part, width) = match path.split_once(".p/") {
        Some((i, w)) => {
            let w: u64 = w.parse().map_err(|_| bad())?;
            if w == 0 || w >= TILE_WIDTH {
                return Err(bad());
            }
            (i, w)
        }
        None => (path, TILE_WIDTH),
    };
    let mut n: u64 = 0;
    let parts: Vec<&str> = index_part.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            part.strip_prefix('x').ok_or_else(bad)?
        } else {
            part
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let value: u64 = digits.parse().map_err(|_| bad())?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(value))
            .ok_or_else(bad)?;
    }
    // One tile, one path: refuse the non-canonical spellings the loops
    // above let through (`x000/234`, `005.p/+17`, `005.p/017`).
    let canonical = if width == TILE_WIDTH {
        index_path(n)
    } else {
        format!("{}.p/{width}", index_path(n))
    };
    if canonical != path {
        return Err(bad());
    }
    Ok((n, width))
}

/// Encodes an entry bundle: each entry as `u16 BE length ‖ bytes`.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let len = u16::try_from(entry.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&entry[..usize::from(len)]);
    }
    out
}

/// Decodes an entry bundle.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, TlogError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(TlogError::Malformed("entry bundle"));
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + len {
            return Err(TlogError::Malformed("entry bundle"));
        }
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    Ok(out)
}

/// The log's Ed25519 signer for signed notes.
pub struct LogSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSigner({}+{:08x})", self.name, self.id)
    }
}

impl LogSigner {
    /// A signer named `origin` from a 32-byte seed.
    pub fn new(origin: &str, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let mut public = vec![0x01];
        public.extend_from_slice(key.verifying_key().as_bytes());
        Self {
            name: origin.to_owned(),
            id: signed_note::key_id(origin, &public),
            key,
        }
    }

    /// The verifier key auditors pin: `name+id+base64(0x01 ‖ public key)`.
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.name, &self.key.verifying_key())
    }

    /// A signed checkpoint of a tree of `size` records with root `root`.
    pub fn sign_checkpoint(&self, size: u64, root: Hash) -> Result<Vec<u8>, TlogError> {
        let checkpoint = Checkpoint::new(&self.name, size, root, "")
            .map_err(|_| TlogError::Checkpoint("cannot build"))?;
        let mut note = Note::new(&checkpoint.to_bytes(), &[])
            .map_err(|_| TlogError::Checkpoint("cannot build note"))?;
        note.add_sigs(&[self])
            .map_err(|_| TlogError::Checkpoint("cannot sign"))?;
        Ok(note.to_bytes())
    }
}

impl signed_note::Signer for LogSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// Verifies a signed checkpoint against a pinned verifier key and returns
/// the checkpoint. The origin must be the key's name.
pub fn verify_checkpoint(note_bytes: &[u8], verifier_key: &str) -> Result<Checkpoint, TlogError> {
    let verifier = StandardVerifier::new(verifier_key)
        .map_err(|_| TlogError::Checkpoint("bad verifier key"))?;
    let name = signed_note::Verifier::name(&verifier).to_owned();
    let note = Note::from_bytes(note_bytes).map_err(|_| TlogError::Checkpoint("malformed note"))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|_| TlogError::Checkpoint("signature does not verify under the pinned key"))?;
    let checkpoint =
        Checkpoint::from_bytes(note.text()).map_err(|_| TlogError::Checkpoint("malformed"))?;
    if checkpoint.origin() != name {
        return Err(TlogError::Checkpoint("origin does not match the key name"));
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        assert_eq!(index_path(5), "005");
        assert_eq!(index_path(1234), "x001/234");
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(parse_index_path("x001/234").unwrap(), (1234, 256));
        assert_eq!(parse_index_path("005.p/17").unwrap(), (5, 17));
        assert!(parse_index_path("5").is_err());
        assert!(parse_index_path("005.p/256").is_err());
        assert!(parse_index_path("001/234").is_err());
        // One spelling per tile: no leading `x000`, no sign or zero padding
        // on the width.
        assert!(parse_index_path("x000/234").is_err());
        assert!(parse_index_path("005.p/+17").is_err());
        assert!(parse_index_path("005.p/017").is_err());
    }

    #[test]
    fn roots_match_rfc6962_and_checkpoints_verify() {
        let mut tree = StoredHashes::default();
        tree.append(b"a").unwrap();
        // A one-record tree's root is the leaf hash SHA-256(0x00 ‖ data).
        assert_eq!(tree.root(1).unwrap(), tlog_tiles::record_hash(b"a"));
        tree.append(b"b").unwrap();
        tree.append(b"c").unwrap();
        let signer = LogSigner::new("blindpass.test/audit", &[3; 32]);
        let note = signer.sign_checkpoint(3, tree.root(3).unwrap()).unwrap();
        let cp = verify_checkpoint(&note, &signer.verifier_key()).unwrap();
        assert_eq!((cp.size(), *cp.hash()), (3, tree.root(3).unwrap()));
        let other = LogSigner::new("blindpass.test/audit", &[4; 32]);
        assert!(verify_checkpoint(&note, &other.verifier_key()).is_err());
        let mut forged = note.clone();
        forged[22] ^= 1;
        assert!(verify_checkpoint(&forged, &signer.verifier_key()).is_err());
    }

    #[test]
    fn bundles_round_trip() {
        let entries: Vec<&[u8]> = vec![b"one", b"", b"three"];
        let bytes = encode_bundle(entries.iter().copied());
        assert_eq!(
            decode_bundle(&bytes).unwrap(),
            vec![b"one".to_vec(), vec![], b"three".to_vec()]
        );
        assert!(decode_bundle(&bytes[..bytes.len() - 1]).is_err());
    }
}
