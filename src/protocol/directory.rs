//! The issuer's key directory, in two forms: the RFC 9578 §4 document served
//! at `/.well-known/private-token-issuer-directory`, which any Privacy Pass
//! client understands, and the richer blindpass form that also says each
//! key's permit class and validity window.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::ProtocolError;
use super::permit::{ClassName, Window};
use super::token::{KeyId, TOKEN_TYPE_BLIND_RSA};

/// The RFC 9578 issuer directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfcDirectory {
    /// Where token requests go.
    #[serde(rename = "issuer-request-uri")]
    pub issuer_request_uri: String,
    /// The issuer's keys.
    #[serde(rename = "token-keys")]
    pub token_keys: Vec<RfcTokenKey>,
}

/// One key in the RFC 9578 directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfcTokenKey {
    /// `2` for Blind RSA.
    #[serde(rename = "token-type")]
    pub token_type: u16,
    /// base64url (with padding) of the RSASSA-PSS SPKI.
    #[serde(rename = "token-key")]
    pub token_key: String,
    /// Unix seconds before which the key must not be used.
    #[serde(
        rename = "not-before",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub not_before: Option<i64>,
}

/// One published key with what it means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    /// SHA-256 of the SPKI, hex.
    #[serde(rename = "token-key-id")]
    pub key_id: String,
    /// base64url (with padding) of the RSASSA-PSS SPKI.
    #[serde(rename = "token-key")]
    pub token_key: String,
    /// The permit class this key's passes grant.
    pub class: ClassName,
    /// The window this key's passes are valid in.
    pub window: Window,
}

impl PublishedKey {
    /// Describes a key by its SPKI.
    pub fn new(spki: &[u8], class: ClassName, window: Window) -> Self {
        Self {
            key_id: KeyId::of_spki(spki).to_hex(),
            token_key: URL_SAFE.encode(spki),
            class,
            window,
        }
    }

    /// The SPKI bytes, checked against the stated key id.
    pub fn spki(&self) -> Result<Vec<u8>, ProtocolError> {
        let spki = decode_token_key(&self.token_key)?;
        if KeyId::of_spki(&spki).to_hex() != self.key_id {
            return Err(ProtocolError::Malformed(
                "token-key-id does not match token-key",
            ));
        }
        Ok(spki)
    }
}

/// The blindpass directory: every current key with its class and window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// The name in the permit challenge; verifiers check tokens against it.
    #[serde(rename = "issuer-name")]
    pub issuer_name: String,
    /// Where token requests go.
    #[serde(rename = "issuer-request-uri")]
    pub issuer_request_uri: String,
    /// Unix seconds at which this document was produced.
    #[serde(rename = "generated-at")]
    pub generated_at: i64,
    /// How long a verifier may rely on this document before syncing again.
    #[serde(rename = "max-age-s")]
    pub max_age_s: u64,
    /// The keys.
    pub keys: Vec<PublishedKey>,
}

impl Directory {
    /// The RFC 9578 view of the same keys (class and window dropped).
    pub fn to_rfc(&self) -> RfcDirectory {
        RfcDirectory {
            issuer_request_uri: self.issuer_request_uri.clone(),
            token_keys: self
                .keys
                .iter()
                .map(|k| RfcTokenKey {
                    token_type: TOKEN_TYPE_BLIND_RSA,
                    token_key: k.token_key.clone(),
                    // RFC 9578 §4: the time from which the key can be
                    // used. A published key signs at once (tomorrow's pass
                    // is requested today), so none is given; the window a
                    // pass is valid in is the blindpass directory's business.
                    not_before: None,
                })
                .collect(),
        }
    }

    /// Finds the key a token names.
    pub fn key(&self, key_id: &KeyId) -> Option<&PublishedKey> {
        let hex = key_id.to_hex();
        self.keys.iter().find(|k| k.key_id == hex)
    }
}

/// Decodes base64url with or without padding (RFC 9578 asks for padding;
/// accepting both costs nothing).
pub fn decode_token_key(text: &str) -> Result<Vec<u8>, ProtocolError> {
    URL_SAFE
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .map_err(|_| ProtocolError::Malformed("token-key is not base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_form_has_the_rfc_field_names() {
        let key = PublishedKey::new(
            b"not really an spki",
            ClassName::new("personal").unwrap(),
            Window::parse("2026-12-01").unwrap(),
        );
        let dir = Directory {
            issuer_name: "issuer.example".into(),
            issuer_request_uri: "http://127.0.0.1/token-request".into(),
            generated_at: 0,
            max_age_s: 3600,
            keys: vec![key.clone()],
        };
        let json = serde_json::to_value(dir.to_rfc()).unwrap();
        assert_eq!(json["token-keys"][0]["token-type"], 2);
        assert!(json["issuer-request-uri"].is_string());
        // Keys are usable for issuance as soon as they are published.
        assert!(json["token-keys"][0].get("not-before").is_none());
        assert_eq!(key.spki().unwrap(), b"not really an spki");
        let rich = serde_json::to_value(&dir).unwrap();
        assert_eq!(rich["keys"][0]["class"], "personal");
        assert_eq!(rich["keys"][0]["window"], "2026-12-01");
    }

    #[test]
    fn mismatched_key_id_is_refused() {
        let mut key = PublishedKey::new(
            b"spki",
            ClassName::new("work").unwrap(),
            Window::parse("2026-W49").unwrap(),
        );
        key.key_id = KeyId([0; 32]).to_hex();
        assert!(key.spki().is_err());
    }
}
