//! Key derivation: HMAC-SHA-256 (RFC 2104) to derive purpose keys from a
//! parent key, and Argon2id (RFC 9106) to turn a passphrase into a key.

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::CryptoError;
use super::secret::{DerivedKey, Passphrase};

/// Argon2id cost parameters. Stored beside what they protect so they can be
/// raised later without breaking old files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism.
    pub p_cost: u32,
}

impl Argon2Params {
    /// The crate's defaults (RFC 9106 second recommendation scaled down, as
    /// OWASP suggests): 19 MiB, 2 passes, 1 lane — about 50 ms here.
    pub const DEFAULT: Self = Self {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// Cheap parameters for tests only; never use for real passphrases.
    pub const INSECURE_FAST_FOR_TESTS: Self = Self {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

/// Argon2id(passphrase, salt) → a 32-byte key.
pub fn argon2id(
    passphrase: &Passphrase,
    salt: &[u8],
    params: Argon2Params,
) -> Result<DerivedKey, CryptoError> {
    let params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|_| CryptoError::Failed)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase.expose_secret(), salt, &mut out)
        .map_err(|_| CryptoError::Failed)?;
    let key = DerivedKey::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(key)
}

/// HMAC-SHA-256(parent, label || 0x00 || context): a key for one purpose.
/// The label names the purpose; the zero byte keeps label and context apart.
pub fn derive(parent: &[u8; 32], label: &str, context: &[u8]) -> DerivedKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(&hmac_sha256(parent, &[label.as_bytes(), &[0], context]));
    let key = DerivedKey::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // A 32-byte key is always a valid HMAC key, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_separates_labels_and_contexts() {
        let parent = [9u8; 32];
        let a = derive(&parent, "record", b"id-1");
        assert_eq!(a, derive(&parent, "record", b"id-1"));
        assert_ne!(a, derive(&parent, "record", b"id-2"));
        assert_ne!(a, derive(&parent, "index", b"id-1"));
        assert_ne!(a, derive(&[8u8; 32], "record", b"id-1"));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key; HMAC pads keys with zeros
        // to the block size, so the zero-padded 32-byte key is equivalent.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn argon2id_depends_on_passphrase_and_salt() {
        let p = Argon2Params::INSECURE_FAST_FOR_TESTS;
        let a = argon2id(&Passphrase::new("one".into()), b"saltsaltsaltsalt", p).unwrap();
        let b = argon2id(&Passphrase::new("two".into()), b"saltsaltsaltsalt", p).unwrap();
        let c = argon2id(&Passphrase::new("one".into()), b"othersaltothersa", p).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            argon2id(&Passphrase::new("one".into()), b"saltsaltsaltsalt", p).unwrap()
        );
    }
}
