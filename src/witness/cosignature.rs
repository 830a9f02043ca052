//! C2SP `tlog-cosignature` Ed25519 cosignatures (`cosignature/v1`): a
//! witness's timestamped statement that a checkpoint is the largest
//! consistent tree it has seen for a log, written as one more signed-note
//! signature line on the checkpoint.
//!
//! `signed_note` 0.2 knows only the log's own signature type (0x01); this
//! adds type 0x04 on its [`signed_note::Signer`] and [`signed_note::Verifier`]
//! traits:
//!
//! - key id: the first 4 bytes of SHA-256(name ‖ `\n` ‖ 0x04 ‖ public key);
//! - verifier key: `<name>+<hex key id>+base64(0x04 ‖ public key)`;
//! - signed message: `cosignature/v1\n` ‖ `time <t>\n` ‖ the checkpoint's
//!   note text (every line up to, not including, the blank line);
//! - signature: the 8-byte big-endian timestamp `t` ‖ the 64-byte Ed25519
//!   signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// The vkey signature type byte of an Ed25519 cosignature.
pub const COSIGNATURE_V1_TYPE: u8 = 0x04;

/// Bytes of a cosignature: timestamp and Ed25519 signature.
pub const COSIGNATURE_LEN: usize = 8 + 64;

/// Why a cosigner key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignerKeyError {
    /// The text is not `<name>+<hex id>+<base64 key>` with a 0x04 key of
    /// 32 bytes and a key id that matches it.
    #[error("not a cosignature/v1 verifier key (name+hex id+base64(0x04 ‖ 32-byte key)): {0}")]
    Malformed(String),
}

/// The message a `cosignature/v1` signs: the header line, the time line and
/// the note text.
pub fn signed_message(note_text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend_from_slice(note_text);
    message
}

/// The key id of a cosigner named `name` with Ed25519 key `public`.
pub fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut encoded = vec![COSIGNATURE_V1_TYPE];
    encoded.extend_from_slice(public.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// A witness's signing key. The Ed25519 key is wiped when this drops
/// (`ed25519-dalek`'s `zeroize` feature).
pub struct CosignatureSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignatureSigner({}+{:08x})", self.name, self.id)
    }
}

impl CosignatureSigner {
    /// A cosigner named `name` (a schema-less URL such as
    /// `witness1.example.org`) with the Ed25519 key of `seed`. `None` if the
    /// name is not a valid signed-note key name.
    pub fn new(name: &str, seed: &[u8; 32]) -> Option<Self> {
        if !signed_note::is_key_name_valid(name) {
            return None;
        }
        let key = SigningKey::from_bytes(seed);
        Some(Self {
            name: name.to_owned(),
            id: key_id(name, &key.verifying_key()),
            key,
        })
    }

    /// The verifier key clients put in their witness policy.
    pub fn verifier_key(&self) -> String {
        let mut encoded = vec![COSIGNATURE_V1_TYPE];
        encoded.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(encoded))
    }

    /// A cosignature of `note_text` made at `timestamp` (POSIX seconds).
    pub fn cosign_at(&self, note_text: &[u8], timestamp: u64) -> Vec<u8> {
        let signature = self.key.sign(&signed_message(note_text, timestamp));
        let mut out = Vec::with_capacity(COSIGNATURE_LEN);
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&signature.to_bytes());
        out
    }

    /// The note signature line (`— <name> base64(id ‖ cosignature)\n`) of a
    /// cosignature of `note_text` made at `timestamp`.
    pub fn signature_line(&self, note_text: &[u8], timestamp: u64) -> Vec<u8> {
        let mut bytes = self.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.cosign_at(note_text, timestamp));
        format!("— {} {}\n", self.name, STANDARD.encode(bytes)).into_bytes()
    }
}

impl signed_note::Signer for CosignatureSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    /// Cosigns at the current time of the system clock.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| signature::Error::new())?
            .as_secs();
        Ok(self.cosign_at(msg, now))
    }
}

/// A witness's public key, as a client's policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses a `cosignature/v1` verifier key, checking that its key id is
    /// the one its name and key give.
    pub fn new(vkey: &str) -> Result<Self, CosignerKeyError> {
        let bad = || CosignerKeyError::Malformed(vkey.to_owned());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if !signed_note::is_key_name_valid(name)
            || id_hex.len() != 8
            || !id_hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(bad());
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad())?;
        let encoded = STANDARD.decode(key_b64).map_err(|_| bad())?;
        let [COSIGNATURE_V1_TYPE, rest @ ..] = encoded.as_slice() else {
            return Err(bad());
        };
        let bytes: [u8; 32] = rest.try_into().map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        if key_id(name, &key) != id {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The timestamp of a well-formed cosignature, verified or not.
    pub fn timestamp(sig: &[u8]) -> Option<u64> {
        let time: [u8; 8] = sig.get(..8)?.try_into().ok()?;
        Some(u64::from_be_bytes(time))
    }
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != COSIGNATURE_LEN {
            return false;
        }
        let Some(timestamp) = Self::timestamp(sig) else {
            return false;
        };
        // The spec caps the timestamp at 2^63 - 1.
        if timestamp > i64::MAX as u64 {
            return false;
        }
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&sig[8..]) else {
            return false;
        };
        self.key
            .verify_strict(&signed_message(msg, timestamp), &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::{Note, Signer as _, Verifier as _, VerifierList};

    /// The checkpoint body of the C2SP tlog-cosignature example.
    const SOFA: &[u8] =
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> CosignatureSigner {
        CosignatureSigner::new("witness.example.com/w1", &[7; 32]).unwrap()
    }

    /// Known answers for seed 07×32, name `witness.example.com/w1`, time
    /// 1679315147 over the spec's example checkpoint. Computed independently
    /// with Python's `cryptography` (Ed25519PrivateKey.from_private_bytes,
    /// hashlib.sha256) from the construction the spec describes:
    /// `tests/vectors/cosignature_v1.py`. The timestamp bytes (`AAAAAGQYUMs`
    /// after the key id) are the ones in the spec's own example line.
    #[test]
    fn known_answers_match_an_independent_implementation() {
        let w = witness();
        assert_eq!(w.key_id(), KAT_KEY_ID);
        assert_eq!(w.verifier_key(), KAT_VKEY);
        assert_eq!(
            signed_message(SOFA, 1_679_315_147),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        assert_eq!(
            String::from_utf8(w.signature_line(SOFA, 1_679_315_147)).unwrap(),
            KAT_LINE
        );
    }

    const KAT_KEY_ID: u32 = 0x8122_a5ab;
    const KAT_VKEY: &str =
        "witness.example.com/w1+8122a5ab+BOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";
    const KAT_LINE: &str = "— witness.example.com/w1 gSKlqwAAAABkGFDLWr4Jea05CAgwNVtwky0Jgz6WfX0QJgM//FkB/W9BoT9TX0DkTxG+2cT4p/ViKNhUM/SnUwFcYQzugGFQ15LwDw==\n";

    #[test]
    fn cosignatures_verify_in_notes_and_tampering_fails() {
        let w = witness();
        let v = CosignatureVerifier::new(&w.verifier_key()).unwrap();
        let sig = w.cosign_at(SOFA, 1_700_000_000);
        assert!(v.verify(SOFA, &sig));
        assert_eq!(CosignatureVerifier::timestamp(&sig), Some(1_700_000_000));
        // Another time, another text, a flipped bit, a short signature.
        let mut other_time = sig.clone();
        other_time[7] ^= 1;
        assert!(!v.verify(SOFA, &other_time));
        assert!(!v.verify(b"example.com/behind-the-sofa\n20852164\n", &sig));
        let mut flipped = sig.clone();
        flipped[40] ^= 1;
        assert!(!v.verify(SOFA, &flipped));
        assert!(!v.verify(SOFA, &sig[..71]));
        // As a line in a signed note, through signed_note's own verifier.
        let mut note = Note::new(SOFA, &[]).unwrap();
        note.add_sigs(&[&w]).unwrap();
        let bytes = note.to_bytes();
        let parsed = Note::from_bytes(&bytes).unwrap();
        let (verified, _) = parsed
            .verify(&VerifierList::new(vec![Box::new(v)]))
            .unwrap();
        assert_eq!(verified.len(), 1);
        // A key from another seed does not verify it.
        let stranger = CosignatureSigner::new("witness.example.com/w1", &[8; 32]).unwrap();
        let v2 = CosignatureVerifier::new(&stranger.verifier_key()).unwrap();
        assert!(!v2.verify(SOFA, &sig));
    }

    #[test]
    fn verifier_keys_are_checked() {
        let good = witness().verifier_key();
        assert!(CosignatureVerifier::new(&good).is_ok());
        // The log's own key type (0x01) is not a cosigner key.
        let log = crate::audit::tlog::LogSigner::new("log.example", &[1; 32]).verifier_key();
        assert!(CosignatureVerifier::new(&log).is_err());
        // A wrong key id, a wrong name, junk.
        let (rest, tail) = good.split_once('+').unwrap();
        let (id, key) = tail.split_once('+').unwrap();
        let wrong_id = format!(
            "{rest}+{:08x}+{key}",
            u32::from_str_radix(id, 16).unwrap() ^ 1
        );
        assert!(CosignatureVerifier::new(&wrong_id).is_err());
        assert!(CosignatureVerifier::new(&format!("other.example+{id}+{key}")).is_err());
        assert!(CosignatureVerifier::new("nothing").is_err());
        assert!(CosignatureSigner::new("has space", &[1; 32]).is_none());
    }
}
