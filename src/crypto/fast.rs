//! The OpenSSL backend for the RSA operations of token type 2: the raw
//! private-key operation of blind signing (OpenSSL uses CRT and RSA
//! blinding) and RSASSA-PSS-SHA384 verification. Same inputs, same outputs
//! as the pure-Rust backend — property tests check they agree byte for
//! byte — at about three times the speed on this project's machines.

use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Verifier};

use super::CryptoError;

/// PSS salt length of RSABSSA-SHA384-PSS (the hash length).
const SALT_LEN: i32 = 48;

/// An RSA private key held by OpenSSL.
pub struct FastPrivateKey {
    rsa: Rsa<Private>,
}

impl std::fmt::Debug for FastPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastPrivateKey(<redacted>)")
    }
}

impl FastPrivateKey {
    /// From PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let pkey = PKey::private_key_from_pkcs8(der).map_err(|_| CryptoError::Failed)?;
        let rsa = pkey.rsa().map_err(|_| CryptoError::Failed)?;
        Ok(Self { rsa })
    }

    /// `s = m^d mod n`, checked: `s^e mod n` must give back `m` before `s`
    /// is released (a faulty CRT result would reveal a factor of `n`).
    pub fn raw_sign(&self, blinded: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let size = self.rsa.size() as usize;
        if blinded.len() != size {
            return Err(CryptoError::Failed);
        }
        let m = BigNum::from_slice(blinded).map_err(|_| CryptoError::Failed)?;
        if m >= *self.rsa.n() {
            return Err(CryptoError::Failed);
        }
        let mut sig = vec![0u8; size];
        let len = self
            .rsa
            .private_decrypt(blinded, &mut sig, Padding::NONE)
            .map_err(|_| CryptoError::Failed)?;
        if len != size {
            return Err(CryptoError::Failed);
        }
        let mut back = vec![0u8; size];
        let len = self
            .rsa
            .public_decrypt(&sig, &mut back, Padding::NONE)
            .map_err(|_| CryptoError::Failed)?;
        if len != size || back != blinded {
            return Err(CryptoError::Failed);
        }
        Ok(sig)
    }
}

/// An RSA public key held by OpenSSL.
pub struct FastPublicKey {
    pkey: PKey<Public>,
}

impl std::fmt::Debug for FastPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastPublicKey")
    }
}

impl FastPublicKey {
    /// From the big-endian modulus and exponent.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, CryptoError> {
        let n = BigNum::from_slice(n).map_err(|_| CryptoError::Failed)?;
        let e = BigNum::from_slice(e).map_err(|_| CryptoError::Failed)?;
        let rsa = Rsa::from_public_components(n, e).map_err(|_| CryptoError::Failed)?;
        let pkey = PKey::from_rsa(rsa).map_err(|_| CryptoError::Failed)?;
        Ok(Self { pkey })
    }

    /// RSASSA-PSS verification with SHA-384, MGF1-SHA-384 and a 48-byte salt.
    pub fn verify_pss_sha384(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let mut verifier =
            Verifier::new(MessageDigest::sha384(), &self.pkey).map_err(|_| CryptoError::Failed)?;
        verifier
            .set_rsa_padding(Padding::PKCS1_PSS)
            .and_then(|()| verifier.set_rsa_pss_saltlen(RsaPssSaltlen::custom(SALT_LEN)))
            .and_then(|()| verifier.set_rsa_mgf1_md(MessageDigest::sha384()))
            .map_err(|_| CryptoError::Failed)?;
        verifier.update(msg).map_err(|_| CryptoError::Failed)?;
        match verifier.verify(sig) {
            Ok(true) => Ok(()),
            _ => Err(CryptoError::Failed),
        }
    }
}
