//! Obtaining a pass ([`Wallet::request`]): fetch the directory, pick the
//! one key it publishes for exactly the wanted class and window
//! ([`select_key`]), check in the issuer's public audit log that this key
//! was published for everyone (`key_check.rs`), make a random nonce, blind
//! the token input, send the `TokenRequest`, unblind the answer, check the
//! signature, and store the finished token. The issuer sees only the
//! blinded message, so it cannot recognise the pass when it is shown.

use time::{Date, OffsetDateTime};

use super::{StoredPass, Wallet, WalletError};
use crate::client::Client;
use crate::crypto::blind::{IssuerPublicKey, begin_issuance, finalize};
use crate::protocol::directory::{Directory, PublishedKey};
use crate::protocol::permit::{ClassName, Window};
use crate::protocol::qr::{decode_payload, encode_payload};
use crate::protocol::token::TokenChallenge;

/// Which window to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowChoice {
    /// The class's window that contains this day (the day itself for daily
    /// classes, its ISO week for weekly ones).
    Containing(Date),
    /// Exactly this window; its kind must be the class's.
    Exactly(Window),
}

impl Wallet {
    /// Obtains a pass of `class` for the chosen window by blind issuance and
    /// stores it. Returns its number (1-based) in the wallet.
    ///
    /// A network failure during the token request is retried with the same
    /// blinded message (see [`Client::token_request`]), so it is never charged
    /// twice against the quota.
    pub fn request(
        &mut self,
        api: &Client,
        class: &ClassName,
        choice: WindowChoice,
        now: OffsetDateTime,
    ) -> Result<usize, WalletError> {
        let session = self.session()?.token.clone();
        let directory = api.directory()?;
        let (published, window) = select_key(&directory, class, choice)?;
        self.check_key_logged(api, published, class, &window, now)?;
        let spki = published
            .spki()
            .map_err(|e| WalletError::BadDirectory(format!("key {}: {e}", published.key_id)))?;
        let key = IssuerPublicKey::from_spki(&spki).map_err(|_| {
            WalletError::BadDirectory(format!(
                "key {} is not a 2048-bit RSA-PSS key",
                published.key_id
            ))
        })?;
        let digest = TokenChallenge::permit(&directory.issuer_name)
            .digest()
            .map_err(|e| WalletError::BadDirectory(format!("issuer-name: {e}")))?;
        let (request, pending) = begin_issuance(&key, digest).map_err(|_| {
            WalletError::BadDirectory(format!("key {} cannot blind a token", published.key_id))
        })?;
        let result = api
            .token_request(session.expose_secret(), class, &window, &request)
            .map_err(WalletError::from);
        self.forget_dead_session(&result)?;
        let response = result?;
        let token = finalize(&pending, &response).map_err(|_| WalletError::BadSignature)?;
        // finalize already verified; check once more through the verifier's
        // own path, so a stored pass is one a verifier will accept.
        key.verify_signature(&token)
            .map_err(|_| WalletError::BadSignature)?;
        let payload = encode_payload(&token);
        debug_assert!(decode_payload(&payload).is_ok());
        self.state.passes.push(StoredPass {
            payload,
            class: class.clone(),
            window,
            key_id: key.key_id().to_hex(),
            obtained_at: now,
        });
        self.save()?;
        Ok(self.state.passes.len())
    }
}

/// The one key the directory publishes for `class` in the chosen window.
///
/// Exactly one is required: a class and window with two keys would let the
/// issuer sort holders into smaller groups by which key they were given.
pub fn select_key<'d>(
    directory: &'d Directory,
    class: &ClassName,
    choice: WindowChoice,
) -> Result<(&'d PublishedKey, Window), WalletError> {
    let of_class: Vec<&PublishedKey> = directory
        .keys
        .iter()
        .filter(|k| &k.class == class)
        .collect();
    let Some(first) = of_class.first() else {
        let mut offered: Vec<String> = directory.keys.iter().map(|k| k.class.to_string()).collect();
        offered.sort();
        offered.dedup();
        return Err(WalletError::UnknownClass {
            class: class.to_string(),
            offered,
        });
    };
    let kind = first.window.kind();
    if of_class.iter().any(|k| k.window.kind() != kind) {
        return Err(WalletError::BadDirectory(format!(
            "class {class} has keys with both daily and weekly windows"
        )));
    }
    let window = match choice {
        WindowChoice::Containing(date) => Window::containing(kind, date),
        WindowChoice::Exactly(window) if window.kind() == kind => window,
        WindowChoice::Exactly(_) => {
            return Err(WalletError::WrongWindowKind {
                class: class.clone(),
                kind,
            });
        }
    };
    let matching: Vec<&PublishedKey> = of_class
        .iter()
        .copied()
        .filter(|k| k.window == window)
        .collect();
    match matching.as_slice() {
        [only] => Ok((only, window)),
        [] => {
            let mut available: Vec<Window> = of_class.iter().map(|k| k.window).collect();
            available.sort();
            Err(WalletError::NoKeyForWindow {
                class: class.clone(),
                window,
                available,
            })
        }
        _ => Err(WalletError::BadDirectory(format!(
            "{} keys for {class} in {window}",
            matching.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::permit::WindowKind;
    use time::macros::date;

    fn key(class: &str, window: &str, spki: &[u8]) -> PublishedKey {
        PublishedKey::new(
            spki,
            ClassName::new(class).unwrap(),
            Window::parse(window).unwrap(),
        )
    }

    fn directory(keys: Vec<PublishedKey>) -> Directory {
        Directory {
            issuer_name: "issuer.test".into(),
            issuer_request_uri: "http://127.0.0.1/token-request".into(),
            generated_at: 0,
            max_age_s: 3600,
            keys,
        }
    }

    fn class(name: &str) -> ClassName {
        ClassName::new(name).unwrap()
    }

    #[test]
    fn a_date_picks_the_day_or_the_iso_week_of_the_class() {
        let dir = directory(vec![
            key("personal", "2026-12-01", b"a"),
            key("personal", "2026-12-02", b"b"),
            key("work", "2026-W49", b"c"),
        ]);
        let (k, w) = select_key(
            &dir,
            &class("personal"),
            WindowChoice::Containing(date!(2026 - 12 - 02)),
        )
        .unwrap();
        assert_eq!(
            (k.token_key.as_str(), w.to_string()),
            (dir.keys[1].token_key.as_str(), "2026-12-02".into())
        );
        // Thursday 3 December is in 2026-W49.
        let (k, w) = select_key(
            &dir,
            &class("work"),
            WindowChoice::Containing(date!(2026 - 12 - 03)),
        )
        .unwrap();
        assert_eq!(
            (k.key_id.as_str(), w.to_string()),
            (dir.keys[2].key_id.as_str(), "2026-W49".into())
        );
    }

    #[test]
    fn missing_wrong_kind_unknown_and_duplicate_keys_are_refused() {
        let dir = directory(vec![
            key("personal", "2026-12-01", b"a"),
            key("work", "2026-W49", b"c"),
        ]);
        let on = |d| WindowChoice::Containing(d);
        assert!(matches!(
            select_key(&dir, &class("personal"), on(date!(2026 - 12 - 05))),
            Err(WalletError::NoKeyForWindow { available, .. }) if available.len() == 1
        ));
        assert!(matches!(
            select_key(&dir, &class("medical"), on(date!(2026 - 12 - 01))),
            Err(WalletError::UnknownClass { offered, .. }) if offered == ["personal", "work"]
        ));
        assert!(matches!(
            select_key(
                &dir,
                &class("work"),
                WindowChoice::Exactly(Window::parse("2026-12-01").unwrap())
            ),
            Err(WalletError::WrongWindowKind {
                kind: WindowKind::IsoWeek,
                ..
            })
        ));
        // Two keys for one class and window: either could tag its holders.
        let dir = directory(vec![
            key("personal", "2026-12-01", b"a"),
            key("personal", "2026-12-01", b"b"),
        ]);
        assert!(matches!(
            select_key(&dir, &class("personal"), on(date!(2026 - 12 - 01))),
            Err(WalletError::BadDirectory(_))
        ));
    }
}
