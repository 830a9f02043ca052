//! Cryptographic building blocks: secret types, sealing, key derivation and
//! blind RSA. No I/O and no logging happen here.

pub mod blind;
#[cfg(feature = "openssl")]
pub mod fast;
pub mod kdf;
pub mod seal;
pub mod secret;

/// Any cryptographic failure. Deliberately one coarse variant: a caller (or
/// an attacker reading error bodies) learns that it failed, never why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Decryption, verification, parsing of key material or signing failed.
    #[error("cryptographic operation failed")]
    Failed,
}
