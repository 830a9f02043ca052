//! Secret value types: zeroized on drop, redacted in `Debug`, compared in
//! constant time, and never serialized by accident.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Fills a fresh 32-byte array from the operating system's CSPRNG.
pub fn random_32() -> [u8; 32] {
    let mut out = [0u8; 32];
    rand::fill(&mut out);
    out
}

macro_rules! secret_key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// A fresh random key from the operating system's CSPRNG.
            pub fn generate() -> Self {
                Self(random_32())
            }

            /// Wraps key bytes; the caller's copy should be zeroized by the caller.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw key bytes. Named so that every use is easy to audit.
            pub fn expose_secret(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
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
