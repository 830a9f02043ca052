//! RFC 9474 blind RSA signatures (RSABSSA-SHA384-PSS-Deterministic, 2048
//! bits) as RFC 9578 token type 2: the issuer's signing key, the public key
//! verifiers and wallets use, and the client's blind/finalize steps.
//!
//! The issuer only ever sees a blinded message: [`IssuerSigningKey::blind_sign`]
//! takes a [`TokenRequest`] and nothing that could identify the finished token.

use std::fmt;

use blind_rsa_signatures::{
    BlindSignature, BlindingResult, KeyPairSha384PSSDeterministic as BrsaKeyPair,
    PublicKeySha384PSSDeterministic as BrsaPublicKey,
    SecretKeySha384PSSDeterministic as BrsaSecretKey, Signature,
};
use rsa::rand_core::CryptoRng;
use zeroize::Zeroize;

use super::CryptoError;
use super::secret::SecretBytes;
use crate::protocol::token::{
    KeyId, NK, NONCE_LEN, Token, TokenRequest, TokenResponse, token_input,
};

/// RSA modulus size for token type 2.
pub const MODULUS_BITS: usize = 2048;

/// Which implementation performs the RSA operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `blind-rsa-signatures` / `rsa` in pure Rust.
    PureRust,
    /// OpenSSL (built with the default `openssl` feature).
    OpenSsl,
}

impl Backend {
    /// The fastest backend built in.
    pub const fn default_backend() -> Self {
        if cfg!(feature = "openssl") {
            Backend::OpenSsl
        } else {
            Backend::PureRust
        }
    }
}

/// An issuer's public key, as wallets and verifiers hold it.
#[derive(Clone)]
pub struct IssuerPublicKey {
    pk: BrsaPublicKey,
    spki: Vec<u8>,
    key_id: KeyId,
    #[cfg(feature = "openssl")]
    fast: Option<std::sync::Arc<super::fast::FastPublicKey>>,
}

impl fmt::Debug for IssuerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerPublicKey({})", self.key_id.to_hex())
    }
}

impl IssuerPublicKey {
    fn from_brsa(pk: BrsaPublicKey) -> Result<Self, CryptoError> {
        let spki = pk.to_spki().map_err(|_| CryptoError::Failed)?;
        Self::assemble(pk, spki)
    }

    fn assemble(pk: BrsaPublicKey, spki: Vec<u8>) -> Result<Self, CryptoError> {
        #[cfg(feature = "openssl")]
        let fast = {
            let parts = pk.components();
            super::fast::FastPublicKey::from_components(&parts.n(), &parts.e())
                .ok()
                .map(std::sync::Arc::new)
        };
        Ok(Self {
            key_id: KeyId::of_spki(&spki),
            pk,
            spki,
            #[cfg(feature = "openssl")]
            fast,
        })
    }

    /// Parses an RSASSA-PSS SPKI (the `token-key` of a directory). Keys of
    /// any size but 2048 bits are refused.
    pub fn from_spki(spki: &[u8]) -> Result<Self, CryptoError> {
        let pk = BrsaPublicKey::from_spki(spki).map_err(|_| CryptoError::Failed)?;
        if rsa::traits::PublicKeyParts::size(pk.as_ref()) != NK {
            return Err(CryptoError::Failed);
        }
        Self::assemble(pk, spki.to_vec())
    }

    /// The SPKI in RSASSA-PSS OID form.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// `token_key_id = SHA-256(SPKI)`.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Checks a token's signature under this key. It does not check the
    /// challenge or the window: see the verifier for the full check.
    pub fn verify_signature(&self, token: &Token) -> Result<(), CryptoError> {
        self.verify_signature_with(Backend::default_backend(), token)
    }

    /// [`IssuerPublicKey::verify_signature`] on a chosen backend.
    pub fn verify_signature_with(
        &self,
        backend: Backend,
        token: &Token,
    ) -> Result<(), CryptoError> {
        if token.token_key_id != self.key_id || token.authenticator.len() != NK {
            return Err(CryptoError::Failed);
        }
        #[cfg(feature = "openssl")]
        if backend == Backend::OpenSsl {
            if let Some(fast) = &self.fast {
                return fast.verify_pss_sha384(&token.token_input(), &token.authenticator);
            }
        }
        let _ = backend;
        self.pk
            .verify(
                &Signature(token.authenticator.clone()),
                None,
                token.token_input(),
            )
            .map_err(|_| CryptoError::Failed)
    }
}

/// An issuer's private signing key for one `(class, window)`.
#[derive(Clone)]
pub struct IssuerSigningKey {
    sk: BrsaSecretKey,
    public: IssuerPublicKey,
    #[cfg(feature = "openssl")]
    fast: Option<std::sync::Arc<super::fast::FastPrivateKey>>,
}

impl fmt::Debug for IssuerSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IssuerSigningKey({}, <redacted>)",
            self.public.key_id.to_hex()
        )
    }
}

impl IssuerSigningKey {
    /// A fresh 2048-bit key (about 64 ms in an optimised build).
    pub fn generate() -> Result<Self, CryptoError> {
        let pair = BrsaKeyPair::generate(&mut rand::rng(), MODULUS_BITS)
            .map_err(|_| CryptoError::Failed)?;
        Self::assemble(pair.sk, pair.pk)
    }

    fn assemble(sk: BrsaSecretKey, pk: BrsaPublicKey) -> Result<Self, CryptoError> {
        #[cfg(feature = "openssl")]
        let fast = {
            let der = sk
                .to_der()
                .map(SecretBytes::new)
                .map_err(|_| CryptoError::Failed)?;
            Some(std::sync::Arc::new(
                super::fast::FastPrivateKey::from_pkcs8_der(der.expose_secret())?,
            ))
        };
        Ok(Self {
            public: IssuerPublicKey::from_brsa(pk)?,
            sk,
            #[cfg(feature = "openssl")]
            fast,
        })
    }

    /// Parses a PKCS#8 (or PKCS#1) DER private key and checks it.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let sk = BrsaSecretKey::from_der(der).map_err(|_| CryptoError::Failed)?;
        if rsa::traits::PublicKeyParts::size(sk.as_ref()) != NK {
            return Err(CryptoError::Failed);
        }
        let pk = sk.public_key().map_err(|_| CryptoError::Failed)?;
        Self::assemble(sk, pk)
    }

    /// PKCS#8 DER, in a buffer wiped on drop.
    pub fn to_der(&self) -> Result<SecretBytes, CryptoError> {
        self.sk
            .to_der()
            .map(SecretBytes::new)
            .map_err(|_| CryptoError::Failed)
    }

    /// The public half.
    pub fn public(&self) -> &IssuerPublicKey {
        &self.public
    }

    /// The raw private key, for alternative signing backends.
    pub fn dangerous_rsa_private_key(&self) -> &rsa::RsaPrivateKey {
        self.sk.as_ref()
    }

    /// RFC 9474 `BlindSign`: signs the blinded message of `request`. The
    /// result was checked to verify before it is returned (a fault in the
    /// CRT computation must never leak a factor of the modulus).
    pub fn blind_sign(&self, request: &TokenRequest) -> Result<TokenResponse, CryptoError> {
        self.blind_sign_with(Backend::default_backend(), request)
    }

    /// [`IssuerSigningKey::blind_sign`] on a chosen backend.
    pub fn blind_sign_with(
        &self,
        backend: Backend,
        request: &TokenRequest,
    ) -> Result<TokenResponse, CryptoError> {
        if request.truncated_token_key_id != self.public.key_id.truncated() {
            return Err(CryptoError::Failed);
        }
        #[cfg(feature = "openssl")]
        if backend == Backend::OpenSsl {
            if let Some(fast) = &self.fast {
                let blind_sig = fast.raw_sign(&request.blinded_msg)?;
                return Ok(TokenResponse { blind_sig });
            }
        }
        let _ = backend;
        let sig = self
            .sk
            .blind_sign(&request.blinded_msg)
            .map_err(|_| CryptoError::Failed)?;
        Ok(TokenResponse { blind_sig: sig.0 })
    }
}

/// A client's token in the making: everything needed to finalize once the
/// issuer answers. The blinding inverse is wiped on drop.
pub struct PendingToken {
    nonce: [u8; NONCE_LEN],
    challenge_digest: [u8; 32],
    key: IssuerPublicKey,
    blinding: BlindingResult,
}

impl fmt::Debug for PendingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingToken(<redacted>)")
    }
}

impl Drop for PendingToken {
    fn drop(&mut self) {
        self.nonce.zeroize();
        self.blinding.secret.0.zeroize();
        self.blinding.blind_message.0.zeroize();
    }
}

/// Client side, step 1: a random nonce, the token input, and its blinding.
/// The returned request is all the issuer sees.
pub fn begin_issuance(
    key: &IssuerPublicKey,
    challenge_digest: [u8; 32],
) -> Result<(TokenRequest, PendingToken), CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    begin_issuance_with(key, challenge_digest, nonce, &mut rand::rng())
}

/// [`begin_issuance`] with a given nonce and randomness source, for
/// known-answer tests. Real clients use [`begin_issuance`].
pub fn begin_issuance_with<R: CryptoRng + ?Sized>(
    key: &IssuerPublicKey,
    challenge_digest: [u8; 32],
    nonce: [u8; NONCE_LEN],
    rng: &mut R,
) -> Result<(TokenRequest, PendingToken), CryptoError> {
    let input = token_input(&nonce, &challenge_digest, &key.key_id);
    let blinding = key.pk.blind(rng, &input).map_err(|_| CryptoError::Failed)?;
    let request = TokenRequest {
        truncated_token_key_id: key.key_id.truncated(),
        blinded_msg: blinding.blind_message.0.clone(),
    };
    Ok((
        request,
        PendingToken {
            nonce,
            challenge_digest,
            key: key.clone(),
            blinding,
        },
    ))
}

/// Client side, step 2: unblinds the issuer's answer and checks the result
/// verifies before keeping it.
pub fn finalize(pending: &PendingToken, response: &TokenResponse) -> Result<Token, CryptoError> {
    let input = token_input(
        &pending.nonce,
        &pending.challenge_digest,
        &pending.key.key_id,
    );
    let sig = pending
        .key
        .pk
        .finalize(
            &BlindSignature(response.blind_sig.clone()),
            &pending.blinding,
            &input,
        )
        .map_err(|_| CryptoError::Failed)?;
    Ok(Token {
        nonce: pending.nonce,
        challenge_digest: pending.challenge_digest,
        token_key_id: pending.key.key_id,
        authenticator: sig.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn key() -> &'static IssuerSigningKey {
        static KEY: OnceLock<IssuerSigningKey> = OnceLock::new();
        KEY.get_or_init(|| IssuerSigningKey::generate().unwrap())
    }

    #[test]
    fn blind_sign_finalize_verify() {
        let (req, pending) = begin_issuance(key().public(), [9; 32]).unwrap();
        let resp = key().blind_sign(&req).unwrap();
        let token = finalize(&pending, &resp).unwrap();
        key().public().verify_signature(&token).unwrap();
        assert_eq!(token.encode().len(), 354);
    }

    #[test]
    fn the_issuer_never_sees_the_token() {
        let (req, pending) = begin_issuance(key().public(), [9; 32]).unwrap();
        let resp = key().blind_sign(&req).unwrap();
        let token = finalize(&pending, &resp).unwrap();
        // Neither the blinded message nor the blind signature is the token
        // input or the signature, and the blinded message does not verify.
        assert_ne!(req.blinded_msg, token.authenticator);
        assert_ne!(resp.blind_sig, token.authenticator);
        let disguised = Token {
            authenticator: resp.blind_sig.clone(),
            ..token.clone()
        };
        assert!(key().public().verify_signature(&disguised).is_err());
        let blinded_bytes = req.encode();
        let token_bytes = token.encode();
        assert!(!blinded_bytes.windows(32).any(|w| w == token.nonce));
        assert!(!token_bytes.windows(32).any(|w| w == &req.blinded_msg[..32]));
    }

    #[test]
    fn tampered_tokens_fail() {
        let (req, pending) = begin_issuance(key().public(), [9; 32]).unwrap();
        let token = finalize(&pending, &key().blind_sign(&req).unwrap()).unwrap();
        let mut bad = token.clone();
        bad.nonce[0] ^= 1;
        assert!(key().public().verify_signature(&bad).is_err());
        let mut bad = token.clone();
        bad.authenticator[100] ^= 1;
        assert!(key().public().verify_signature(&bad).is_err());
    }

    #[test]
    fn der_and_spki_round_trip() {
        let der = key().to_der().unwrap();
        let again = IssuerSigningKey::from_der(der.expose_secret()).unwrap();
        assert_eq!(again.public().key_id(), key().public().key_id());
        let pk = IssuerPublicKey::from_spki(key().public().spki()).unwrap();
        assert_eq!(pk.key_id(), key().public().key_id());
        assert!(IssuerSigningKey::from_der(b"garbage").is_err());
        assert!(IssuerPublicKey::from_spki(b"garbage").is_err());
    }

    #[cfg(feature = "openssl")]
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn backends_sign_byte_identically(mut msg in proptest::collection::vec(proptest::prelude::any::<u8>(), NK)) {
            msg[0] &= 0x7f; // below the modulus, whose top bit is set
            let req = TokenRequest { truncated_token_key_id: key().public().key_id().truncated(), blinded_msg: msg };
            let pure = key().blind_sign_with(Backend::PureRust, &req).unwrap();
            let fast = key().blind_sign_with(Backend::OpenSsl, &req).unwrap();
            proptest::prop_assert_eq!(pure, fast);
        }

        #[test]
        fn backends_verify_alike(flip in 0usize..(354 * 8)) {
            let (req, pending) = begin_issuance(key().public(), [9; 32]).unwrap();
            let token = finalize(&pending, &key().blind_sign(&req).unwrap()).unwrap();
            for backend in [Backend::PureRust, Backend::OpenSsl] {
                proptest::prop_assert!(key().public().verify_signature_with(backend, &token).is_ok());
            }
            let mut bytes = token.encode();
            bytes[flip / 8] ^= 1 << (flip % 8);
            if let Ok(bad) = Token::decode(&bytes) {
                let pure = key().public().verify_signature_with(Backend::PureRust, &bad).is_ok();
                let fast = key().public().verify_signature_with(Backend::OpenSsl, &bad).is_ok();
                proptest::prop_assert!(!pure && !fast);
            }
        }
    }

    #[cfg(feature = "openssl")]
    #[test]
    fn out_of_range_inputs_fail_on_both_backends() {
        let req = TokenRequest {
            truncated_token_key_id: key().public().key_id().truncated(),
            blinded_msg: vec![0xff; NK],
        };
        assert!(key().blind_sign_with(Backend::PureRust, &req).is_err());
        assert!(key().blind_sign_with(Backend::OpenSsl, &req).is_err());
    }

    #[test]
    fn wrong_truncated_key_id_is_refused() {
        let (mut req, _pending) = begin_issuance(key().public(), [9; 32]).unwrap();
        req.truncated_token_key_id = req.truncated_token_key_id.wrapping_add(1);
        assert!(key().blind_sign(&req).is_err());
    }
}
