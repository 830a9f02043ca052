//! Secret value types: zeroized on drop, redacted in `Debug`, compared in
//! constant time, and never serialized by accident.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Fills a fresh 32-byte array from the operating system's CSPRNG.
///
/// For salts and tokens; keys are generated in place by their own types
/// (`MasterKey::generate` and the like), so that their bytes never pass
/// through a returned array or a user-space RNG's buffer.
pub fn random_32() -> [u8; 32] {
    let mut out = [0u8; 32];
    rand::fill(&mut out);
    out
}

/// 32 secret bytes in one heap place from birth to death: generated or
/// copied straight into the box, never moved by value, wiped on drop.
struct KeyCell(Box<[u8; 32]>);

impl KeyCell {
    fn zeroed() -> Box<[u8; 32]> {
        Box::new([0u8; 32])
    }

    fn random() -> Self {
        let mut bytes = Self::zeroed();
        // The operating system's generator writes into the box itself: a
        // user-space generator (rand's thread-local one) would keep the
        // bytes in its output buffer until it is refilled.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut bytes[..]).expect(
            "the operating system's random source failed; no key can be made safely without it",
        );
        Self(bytes)
    }

    fn copied_from(source: &[u8]) -> Option<Self> {
        let source: &[u8; 32] = source.try_into().ok()?;
        let mut bytes = Self::zeroed();
        bytes.copy_from_slice(source);
        Some(Self(bytes))
    }
}

impl Drop for KeyCell {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

macro_rules! secret_key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// The bytes live in one heap cell; a clone shares that cell (no
        /// copy of the key is made) and the cell is wiped when the last
        /// clone drops. Moving the value moves a pointer, never the key.
        #[derive(Clone)]
        pub struct $name(Arc<KeyCell>);

        impl $name {
            /// A fresh random key, generated in place by the operating
            /// system's CSPRNG.
            pub fn generate() -> Self {
                Self(Arc::new(KeyCell::random()))
            }

            /// Copies 32 key bytes into a fresh cell; `None` if `bytes` is
            /// not 32 bytes long. The caller's bytes stay the caller's to wipe.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                KeyCell::copied_from(bytes).map(|cell| Self(Arc::new(cell)))
            }

            /// Wraps key bytes passed by value (tests and test vectors):
            /// the array is a copy the caller cannot wipe, so code holding
            /// real keys uses [`Self::from_slice`] or [`Self::generate`].
            pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
                let mut cell = KeyCell(KeyCell::zeroed());
                cell.0.copy_from_slice(&bytes);
                bytes.zeroize();
                Self(Arc::new(cell))
            }

            /// The raw key bytes. Named so that every use is easy to audit.
            pub fn expose_secret(&self) -> &[u8; 32] {
                &self.0.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.expose_secret().ct_eq(other.expose_secret()).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_key_type!(
    /// The master key `M_v`: the root of the key hierarchy. Only the master
    /// slot stores it (wrapped); the key ring is sealed under it.
    MasterKey
);
secret_key_type!(
    /// A period key `K_P`: one per isolation period; record keys and lookup
    /// index keys are derived from it. Never written to sled.
    PeriodKey
);
secret_key_type!(
    /// A key derived for one purpose (one record, one index) from a period key.
    DerivedKey
);
secret_key_type!(
    /// The seed of the audit log's Ed25519 signing key.
    LogSigningSeed
);

/// A byte buffer holding secret material (serialized key ring, DER private
/// keys, decrypted records): zeroized on drop, redacted in `Debug`.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when this value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Named so that every use is easy to audit.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(mut value: Zeroizing<Vec<u8>>) -> Self {
        Self(std::mem::take(&mut *value))
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretBytes {}

/// A passphrase or password typed by a person.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl Passphrase {
    /// Takes ownership of the string; it is wiped when this value drops.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The passphrase bytes. Named so that every use is easy to audit.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in characters, for policy checks.
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let key = PeriodKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab"));
        assert!(shown.contains("redacted"));
        let secret = SecretBytes::new(b"canary-value".to_vec());
        assert!(!format!("{secret:?}").contains("canary"));
        let pass = Passphrase::new("hunter2".into());
        assert!(!format!("{pass:?}").contains("hunter2"));
    }

    #[test]
    fn a_key_has_one_copy_that_clones_share() {
        let key = PeriodKey::generate();
        let other = key.clone();
        assert!(std::ptr::eq(key.expose_secret(), other.expose_secret()));
        let master = MasterKey::from_slice(&[7; 32]).unwrap();
        assert!(std::ptr::eq(
            master.expose_secret(),
            master.clone().expose_secret()
        ));
        assert!(MasterKey::from_slice(&[7; 31]).is_none());
        assert!(MasterKey::from_slice(&[7; 33]).is_none());
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(
            MasterKey::from_bytes([1; 32]),
            MasterKey::from_bytes([1; 32])
        );
        assert_ne!(
            MasterKey::from_bytes([1; 32]),
            MasterKey::from_bytes([2; 32])
        );
        assert_ne!(MasterKey::generate(), MasterKey::generate());
    }
}
