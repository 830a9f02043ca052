//! RFC 9578 wire structures for publicly verifiable tokens (token type
//! `0x0002`, Blind RSA 2048): `TokenChallenge`, `TokenRequest`,
//! `TokenResponse` and `Token`, encoded and decoded exactly as the RFC.

use sha2::{Digest, Sha256};

use super::ProtocolError;

/// RFC 9578 token type for Blind RSA (RSABSSA-SHA384-PSS-Deterministic, 2048-bit).
pub const TOKEN_TYPE_BLIND_RSA: u16 = 0x0002;
/// `Nk`: the modulus length in bytes of a 2048-bit key.
pub const NK: usize = 256;
/// Length of a token's client nonce.
pub const NONCE_LEN: usize = 32;
/// Length of an encoded [`Token`]: 2 + 32 + 32 + 32 + 256.
pub const TOKEN_LEN: usize = 2 + NONCE_LEN + 32 + 32 + NK;
/// Length of an encoded [`TokenRequest`]: 2 + 1 + 256.
pub const TOKEN_REQUEST_LEN: usize = 2 + 1 + NK;

/// `token_key_id`: SHA-256 of the key's SPKI in RSASSA-PSS OID form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The key id of a public key given as its RSASSA-PSS SPKI.
    pub fn of_spki(spki: &[u8]) -> Self {
        Self(Sha256::digest(spki).into())
    }

    /// The last byte, sent in a `TokenRequest` as `truncated_token_key_id`.
    pub fn truncated(&self) -> u8 {
        self.0[31]
    }

    /// Lowercase hex, for directories, logs and the audit log (key ids are public).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, ProtocolError> {
        let bytes = hex::decode(text).map_err(|_| ProtocolError::Malformed("key id is not hex"))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ProtocolError::Malformed("key id is not 32 bytes"))?;
        Ok(Self(array))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

/// The challenge a token answers (RFC 9577 §2.1). blindpass uses one fixed
/// challenge per issuer: no redemption context and no origin, so a token
/// carries nothing that could single out its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenChallenge {
    /// Always [`TOKEN_TYPE_BLIND_RSA`] here.
    pub token_type: u16,
    /// The issuer's name, as published in its directory.
    pub issuer_name: String,
    /// Empty, or 32 bytes.
    pub redemption_context: Vec<u8>,
    /// Empty, or origin names.
    pub origin_info: String,
}

impl TokenChallenge {
    /// The fixed permit challenge of the issuer called `issuer_name`.
    pub fn permit(issuer_name: &str) -> Self {
        Self {
            token_type: TOKEN_TYPE_BLIND_RSA,
            issuer_name: issuer_name.to_owned(),
            redemption_context: Vec::new(),
            origin_info: String::new(),
        }
    }

    /// `struct { u16 token_type; opaque issuer_name<1..2^16-1>;
    /// opaque redemption_context<0..32>; opaque origin_info<0..2^16-1>; }`
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let issuer = self.issuer_name.as_bytes();
        let origin = self.origin_info.as_bytes();
        if issuer.is_empty() || issuer.len() > u16::MAX as usize {
            return Err(ProtocolError::Malformed("issuer name length"));
        }
        if !(self.redemption_context.is_empty() || self.redemption_context.len() == 32) {
            return Err(ProtocolError::Malformed("redemption context length"));
        }
        if origin.len() > u16::MAX as usize {
            return Err(ProtocolError::Malformed("origin info length"));
        }
        let mut out = Vec::with_capacity(7 + issuer.len() + origin.len() + 32);
        out.extend_from_slice(&self.token_type.to_be_bytes());
        out.extend_from_slice(&(issuer.len() as u16).to_be_bytes());
        out.extend_from_slice(issuer);
        out.push(self.redemption_context.len() as u8);
        out.extend_from_slice(&self.redemption_context);
        out.extend_from_slice(&(origin.len() as u16).to_be_bytes());
        out.extend_from_slice(origin);
        Ok(out)
    }

    /// Strict decoding: every length checked, no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        let token_type = r.u16()?;
        let issuer_len = r.u16()? as usize;
        // `opaque issuer_name<1..2^16-1>`: an empty name is malformed, and
        // `encode` refuses one, so accepting it would break the round trip.
        if issuer_len == 0 {
            return Err(ProtocolError::Malformed("issuer name length"));
        }
        let issuer = r.take(issuer_len)?;
        let ctx_len = r.u8()? as usize;
        if !(ctx_len == 0 || ctx_len == 32) {
            return Err(ProtocolError::Malformed("redemption context length"));
        }
        let ctx = r.take(ctx_len)?.to_vec();
        let origin_len = r.u16()? as usize;
        let origin = r.take(origin_len)?;
        r.finish()?;
        Ok(Self {
            token_type,
            issuer_name: String::from_utf8(issuer.to_vec())
                .map_err(|_| ProtocolError::Malformed("issuer name is not UTF-8"))?,
            redemption_context: ctx,
            origin_info: String::from_utf8(origin.to_vec())
                .map_err(|_| ProtocolError::Malformed("origin info is not UTF-8"))?,
        })
    }

    /// `challenge_digest = SHA-256(TokenChallenge)`.
    pub fn digest(&self) -> Result<[u8; 32], ProtocolError> {
        Ok(Sha256::digest(self.encode()?).into())
    }
}

/// A finished token: what a resident carries and a verifier checks.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Random, chosen by the client.
    pub nonce: [u8; NONCE_LEN],
    /// SHA-256 of the encoded [`TokenChallenge`].
    pub challenge_digest: [u8; 32],
    /// Which issuer key signed it; in blindpass this also says the class and window.
    pub token_key_id: KeyId,
    /// The RSA signature over the token input (`Nk` bytes).
    pub authenticator: Vec<u8>,
}

impl std::fmt::Debug for Token {
    // Token bytes identify a pass; keep them out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("token_key_id", &self.token_key_id)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// The signed message: `token_type || nonce || challenge_digest || token_key_id`.
    pub fn token_input(&self) -> Vec<u8> {
        token_input(&self.nonce, &self.challenge_digest, &self.token_key_id)
    }

    /// The 354-byte wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.token_input();
        out.extend_from_slice(&self.authenticator);
        out
    }

    /// Strict decoding: exact length and a known token type.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() < 2 {
            return Err(ProtocolError::WrongLength {
                what: "token",
                expected: TOKEN_LEN,
                got: bytes.len(),
            });
        }
        let token_type = u16::from_be_bytes([bytes[0], bytes[1]]);
        if token_type != TOKEN_TYPE_BLIND_RSA {
            return Err(ProtocolError::UnknownTokenType(token_type));
        }
        if bytes.len() != TOKEN_LEN {
            return Err(ProtocolError::WrongLength {
                what: "token",
                expected: TOKEN_LEN,
                got: bytes.len(),
            });
        }
        let mut r = Reader::new(&bytes[2..]);
        Ok(Self {
            nonce: r.array()?,
            challenge_digest: r.array()?,
            token_key_id: KeyId(r.array()?),
            authenticator: r.take(NK)?.to_vec(),
        })
    }
}

/// `token_type || nonce || challenge_digest || token_key_id`, the message
/// that is blinded and signed.
pub fn token_input(
    nonce: &[u8; NONCE_LEN],
    challenge_digest: &[u8; 32],
    key_id: &KeyId,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(TOKEN_LEN);
    out.extend_from_slice(&TOKEN_TYPE_BLIND_RSA.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(challenge_digest);
    out.extend_from_slice(&key_id.0);
    out
}

/// What a client sends to have a blinded message signed.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The last byte of the key id the client blinded for.
    pub truncated_token_key_id: u8,
    /// The blinded token input (`Nk` bytes).
    pub blinded_msg: Vec<u8>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("truncated_token_key_id", &self.truncated_token_key_id)
            .finish_non_exhaustive()
    }
}

impl TokenRequest {
    /// `u16 token_type || u8 truncated_token_key_id || blinded_msg[Nk]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOKEN_REQUEST_LEN);
        out.extend_from_slice(&TOKEN_TYPE_BLIND_RSA.to_be_bytes());
        out.push(self.truncated_token_key_id);
        out.extend_from_slice(&self.blinded_msg);
        out
    }

    /// Strict decoding: exact length and a known token type.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        let token_type = r.u16()?;
        if token_type != TOKEN_TYPE_BLIND_RSA {
            return Err(ProtocolError::UnknownTokenType(token_type));
        }
        if bytes.len() != TOKEN_REQUEST_LEN {
            return Err(ProtocolError::WrongLength {
                what: "token request",
                expected: TOKEN_REQUEST_LEN,
                got: bytes.len(),
            });
        }
        let truncated_token_key_id = r.u8()?;
        let blinded_msg = r.take(NK)?.to_vec();
        Ok(Self {
            truncated_token_key_id,
            blinded_msg,
        })
    }
}

/// The issuer's answer: the blind signature.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// `Nk` bytes.
    pub blind_sig: Vec<u8>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse { .. }")
    }
}

impl TokenResponse {
    /// `blind_sig[Nk]`.
    pub fn encode(&self) -> Vec<u8> {
        self.blind_sig.clone()
    }

    /// Strict decoding: exactly `Nk` bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() != NK {
            return Err(ProtocolError::WrongLength {
                what: "token response",
                expected: NK,
                got: bytes.len(),
            });
        }
        Ok(Self {
            blind_sig: bytes.to_vec(),
        })
    }
}

/// A bounds-checked cursor; every read returns an error instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.bytes.len() < n {
            return Err(ProtocolError::Malformed("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn finish(self) -> Result<(), ProtocolError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_token() -> Token {
        Token {
            nonce: [1; 32],
            challenge_digest: [2; 32],
            token_key_id: KeyId([3; 32]),
            authenticator: vec![4; NK],
        }
    }

    #[test]
    fn token_is_354_bytes_and_round_trips() {
        let bytes = sample_token().encode();
        assert_eq!(bytes.len(), 354);
        assert_eq!(&bytes[..2], &[0, 2]);
        assert_eq!(Token::decode(&bytes).unwrap(), sample_token());
    }

    #[test]
    fn wrong_type_and_length_are_typed_errors() {
        let mut bytes = sample_token().encode();
        bytes[1] = 1;
        assert_eq!(
            Token::decode(&bytes),
            Err(ProtocolError::UnknownTokenType(1))
        );
        let bytes = sample_token().encode();
        assert!(matches!(
            Token::decode(&bytes[..353]),
            Err(ProtocolError::WrongLength { got: 353, .. })
        ));
        assert!(Token::decode(&[]).is_err());
    }

    #[test]
    fn challenge_round_trips_and_rejects_trailing_bytes() {
        let c = TokenChallenge::permit("issuer.example");
        let mut bytes = c.encode().unwrap();
        assert_eq!(TokenChallenge::decode(&bytes).unwrap(), c);
        bytes.push(0);
        assert!(TokenChallenge::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes: Vec<u8>) {
            let _ = Token::decode(&bytes);
            let _ = TokenRequest::decode(&bytes);
            let _ = TokenResponse::decode(&bytes);
            let _ = TokenChallenge::decode(&bytes);
        }

        #[test]
        fn request_round_trips(t: u8, msg in proptest::collection::vec(any::<u8>(), NK)) {
            let req = TokenRequest { truncated_token_key_id: t, blinded_msg: msg };
            prop_assert_eq!(TokenRequest::decode(&req.encode()).unwrap(), req);
        }
    }
}
