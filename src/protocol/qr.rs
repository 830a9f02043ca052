//! The QR payload a resident shows: a versioned prefix plus base45 (RFC 9285)
//! of the 354 token bytes, as the EU digital COVID certificate does with
//! `HC1:`. Base45 uses the QR alphanumeric alphabet, so the code stays small:
//! the 535-character payload fits QR version 15 at error correction M
//! (version 14-M holds 2920 data bits; the payload needs 2958).

use super::ProtocolError;
use super::base45;
use super::token::Token;

/// The payload prefix; the digit is the payload format version.
pub const QR_PREFIX: &str = "BP1:";

/// Renders a token as QR payload text.
pub fn encode_payload(token: &Token) -> String {
    let mut out = String::from(QR_PREFIX);
    out.push_str(&base45::encode(&token.encode()));
    out
}

/// Parses QR payload text strictly. Surrounding whitespace (a trailing
/// newline from a scanner or a shell) is ignored; anything else wrong is a
/// typed error, never a panic.
pub fn decode_payload(text: &str) -> Result<Token, ProtocolError> {
    let text = text.trim();
    let body = text
        .strip_prefix(QR_PREFIX)
        .ok_or(ProtocolError::WrongPrefix)?;
    let bytes = base45::decode(body)?;
    Token::decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::token::{KeyId, NK};
    use proptest::prelude::*;

    fn token() -> Token {
        Token {
            nonce: [5; 32],
            challenge_digest: [6; 32],
            token_key_id: KeyId([7; 32]),
            authenticator: vec![8; NK],
        }
    }

    #[test]
    fn payload_round_trips() {
        let text = encode_payload(&token());
        assert!(text.starts_with("BP1:"));
        assert_eq!(decode_payload(&text).unwrap(), token());
        assert_eq!(decode_payload(&format!("{text}\n")).unwrap(), token());
    }

    #[test]
    fn each_defect_has_its_own_error() {
        let text = encode_payload(&token());
        assert_eq!(decode_payload(&text[4..]), Err(ProtocolError::WrongPrefix));
        assert_eq!(decode_payload("HC1:ABC"), Err(ProtocolError::WrongPrefix));
        assert_eq!(decode_payload("BP1:!!!"), Err(ProtocolError::BadEncoding));
        assert!(matches!(
            decode_payload(&text[..text.len() - 3]),
            Err(ProtocolError::WrongLength { .. }) | Err(ProtocolError::BadEncoding)
        ));
        let mut other = token().encode();
        other[1] = 9;
        let text = format!("BP1:{}", base45::encode(&other));
        assert_eq!(
            decode_payload(&text),
            Err(ProtocolError::UnknownTokenType(9))
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(text: String) {
            let _ = decode_payload(&text);
            let _ = decode_payload(&format!("BP1:{text}"));
        }
    }
}
