//! Authenticated encryption of records and files: XChaCha20-Poly1305 with a
//! random 192-bit nonce and associated data that binds the ciphertext to the
//! place it belongs, so a ciphertext moved elsewhere fails to open.
//!
//! Sealed layout: `version (1) || nonce (24) || ciphertext || tag (16)`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::CryptoError;
use super::secret::SecretBytes;

const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Bytes a sealed value adds to its plaintext.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Seals `plaintext` under `key`, binding it to `aad`.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| CryptoError::Failed)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let body = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Failed)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a value sealed by [`seal`] with the same key and `aad`. Every
/// failure (wrong key, wrong place, flipped bit, truncation) is the same
/// coarse [`CryptoError::Failed`], so errors leak nothing.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD || sealed[0] != SEAL_VERSION {
        return Err(CryptoError::Failed);
    }
    let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| CryptoError::Failed)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
    let plain = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad,
            },
        )
        .map_err(|_| CryptoError::Failed)?;
    Ok(SecretBytes::from(Zeroizing::new(plain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_then_open_round_trips(key: [u8; 32], aad: Vec<u8>, msg: Vec<u8>) {
            let sealed = seal(&key, &aad, &msg).unwrap();
            prop_assert_eq!(sealed.len(), msg.len() + SEAL_OVERHEAD);
            let opened = open(&key, &aad, &sealed).unwrap();
            prop_assert_eq!(opened.expose_secret(), &msg[..]);
        }

        #[test]
        fn any_flipped_bit_fails_cleanly(key: [u8; 32], msg: Vec<u8>, bit: usize) {
            let mut sealed = seal(&key, b"aad", &msg).unwrap();
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(open(&key, b"aad", &sealed), Err(CryptoError::Failed));
        }

        #[test]
        fn any_truncation_fails_cleanly(key: [u8; 32], msg: Vec<u8>, cut: usize) {
            let sealed = seal(&key, b"aad", &msg).unwrap();
            let cut = cut % sealed.len();
            prop_assert_eq!(open(&key, b"aad", &sealed[..cut]), Err(CryptoError::Failed));
        }
    }

    #[test]
    fn other_aad_or_key_fails() {
        let sealed = seal(&[7; 32], b"record-1", b"secret").unwrap();
        assert_eq!(
            open(&[7; 32], b"record-2", &sealed),
            Err(CryptoError::Failed)
        );
        assert_eq!(
            open(&[8; 32], b"record-1", &sealed),
            Err(CryptoError::Failed)
        );
        assert!(open(&[7; 32], b"record-1", &sealed).is_ok());
    }
}
