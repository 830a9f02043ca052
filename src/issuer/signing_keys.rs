//! Blind-signing keys, one per `(class, window)`: generated ahead up to the
//! horizon with unique truncated key ids, retired after their window, and
//! published in the directory.

use time::Duration;

use super::{Authority, IssuerError};
use crate::audit::Event;
use crate::crypto::blind::{IssuerPublicKey, IssuerSigningKey};
use crate::protocol::directory::{Directory, PublishedKey};
use crate::protocol::permit::{ClassName, Window};
use crate::protocol::token::{KeyId, TokenRequest, TokenResponse};
use crate::vault::keyring::SigningKeyEntry;

impl Authority {
    /// Makes sure every class has a signing key for every window from the
    /// one containing today up to the horizon; logs each new key.
    pub fn ensure_signing_keys(&self) -> Result<usize, IssuerError> {
        let now = self.now();
        let today = now.date();
        let last_day = today + Duration::days(i64::from(self.config.key_horizon_days));
        let mut wanted: Vec<(ClassName, Window)> = Vec::new();
        for class in &self.config.classes.classes {
            let mut window = Window::containing(class.window, today);
            while window.first_day() <= last_day {
                wanted.push((class.name.clone(), window));
                window = window.next();
            }
        }
        let missing: Vec<(ClassName, Window)> = {
            let vault = self.vault();
            wanted
                .into_iter()
                .filter(|(c, w)| {
                    !vault
                        .ring()
                        .signing_keys
                        .iter()
                        .any(|k| &k.class == c && &k.window == w)
                })
                .collect()
        };
        if missing.is_empty() {
            return Ok(0);
        }
        // Key generation is slow; do it before taking the vault lock.
        // A token request names its key by the last byte of the key id
        // only (RFC 9578 §6.5), so a key whose truncated id is already
        // taken by a published or retained key is generated again.
        let mut taken: Vec<u8> = self
            .vault()
            .ring()
            .signing_keys
            .iter()
            .map(|k| k.key.public().key_id().truncated())
            .collect();
        let mut fresh = Vec::with_capacity(missing.len());
        for (class, window) in missing {
            let key = unique_truncated_key(&taken)?;
            taken.push(key.public().key_id().truncated());
            fresh.push(SigningKeyEntry { class, window, key });
        }
        // Re-check in the change itself, which sees the ring as it is
        // (with several nodes, as another node may just have changed it): a
        // concurrent caller may have added a key for the same (class,
        // window) meanwhile, and two published keys for one window would
        // split its anonymity set; or a key with the same truncated id,
        // which the next call replaces.
        let mut published: Vec<Event> = Vec::new();
        self.vault().update(|ring| {
            for k in fresh {
                let truncated = k.key.public().key_id().truncated();
                let clash = ring.signing_keys.iter().any(|have| {
                    (have.class == k.class && have.window == k.window)
                        || have.key.public().key_id().truncated() == truncated
                });
                if !clash {
                    published.push(Event::SigningKeyPublished {
                        key_id: k.key.public().key_id().to_hex(),
                        class: k.class.to_string(),
                        window: k.window.to_string(),
                    });
                    ring.signing_keys.push(k);
                }
            }
        })?;
        let count = published.len();
        for event in published {
            self.journal.append(now, event)?;
        }
        Ok(count)
    }

    /// Removes signing keys whose window ended more than `skew` ago.
    pub fn retire_signing_keys(&self, skew: Duration) -> Result<usize, IssuerError> {
        let now = self.now();
        let retired: Vec<KeyId> = self
            .vault()
            .ring()
            .signing_keys
            .iter()
            .filter(|k| k.window.ends_at() + skew <= now)
            .map(|k| k.key.public().key_id())
            .collect();
        if retired.is_empty() {
            return Ok(0);
        }
        // Only what the change itself removed is logged: another node may
        // have retired some of them first.
        let mut removed = Vec::with_capacity(retired.len());
        self.vault().update(|ring| {
            ring.signing_keys.retain(|k| {
                let id = k.key.public().key_id();
                if retired.contains(&id) {
                    removed.push(id);
                    return false;
                }
                true
            })
        })?;
        for key_id in &removed {
            self.journal.append(
                now,
                Event::SigningKeyRetired {
                    key_id: key_id.to_hex(),
                },
            )?;
        }
        Ok(removed.len())
    }

    /// The signing key of a class and window.
    pub fn signing_key(
        &self,
        class: &str,
        window: &Window,
    ) -> Result<IssuerSigningKey, IssuerError> {
        self.config
            .classes
            .class(class)
            .ok_or(IssuerError::UnknownClass)?;
        if let Some(lease) = &self.lease {
            lease.check()?;
        }
        self.vault()
            .ring()
            .signing_keys
            .iter()
            .find(|k| k.class.as_str() == class && &k.window == window)
            .map(|k| k.key.clone())
            .ok_or(IssuerError::NoSigningKey)
    }

    /// Gives `class` in `window` the signing key of `like` in `window`, so
    /// that two kept keys share a truncated key id, as in a ring from before
    /// those ids were kept unique. For tests of how requests naming such a
    /// key are answered only: passes of the two classes become
    /// indistinguishable to a verifier.
    #[doc(hidden)]
    pub fn dangerous_share_signing_key(
        &self,
        class: &str,
        like: &str,
        window: &Window,
    ) -> Result<(), IssuerError> {
        let key = self.signing_key(like, window)?;
        self.signing_key(class, window)?;
        self.vault().update(|ring| {
            ring.signing_keys
                .iter_mut()
                .filter(|k| k.class.as_str() == class && &k.window == window)
                .for_each(|k| k.key = key.clone());
        })?;
        Ok(())
    }

    /// The `(class, window)` of every signing key whose truncated key id is
    /// `truncated` (the byte a `TokenRequest` names its key by). Keys
    /// generated now have unique truncated ids, so this is at most one,
    /// unless a ring from before kept two that collide.
    pub fn keys_for_truncated_id(&self, truncated: u8) -> Vec<(ClassName, Window)> {
        self.vault()
            .ring()
            .signing_keys
            .iter()
            .filter(|k| k.key.public().key_id().truncated() == truncated)
            .map(|k| (k.class.clone(), k.window))
            .collect()
    }

    /// Blind-signs a token request under the key of `(class, window)`.
    /// Eligibility and quota are the caller's business (the service).
    pub fn blind_sign(
        &self,
        class: &str,
        window: &Window,
        request: &TokenRequest,
    ) -> Result<TokenResponse, IssuerError> {
        Ok(self.signing_key(class, window)?.blind_sign(request)?)
    }

    /// The published directory of every current signing key.
    pub fn directory(&self) -> Directory {
        let vault = self.vault();
        let mut keys: Vec<PublishedKey> = vault
            .ring()
            .signing_keys
            .iter()
            .map(|k| PublishedKey::new(k.key.public().spki(), k.class.clone(), k.window))
            .collect();
        keys.sort_by(|a, b| (&a.class, a.window).cmp(&(&b.class, b.window)));
        Directory {
            issuer_name: self.config.issuer_name.clone(),
            issuer_request_uri: self.config.issuer_request_uri.clone(),
            generated_at: self.now().unix_timestamp(),
            max_age_s: self.config.directory_max_age_s,
            keys,
        }
    }

    /// The public key of a `(class, window)`.
    pub fn public_key(&self, class: &str, window: &Window) -> Result<IssuerPublicKey, IssuerError> {
        Ok(self.signing_key(class, window)?.public().clone())
    }
}

/// Tries to generate a signing key with a truncated key id outside `taken`.
/// Each attempt fails with probability `taken.len() / 256`; with the 18
/// keys a default configuration keeps, 64 attempts all failing is below
/// 10^-70. Past that the key space is full, which is a configuration
/// error, not bad luck.
pub(crate) fn unique_truncated_key(taken: &[u8]) -> Result<IssuerSigningKey, IssuerError> {
    unique_truncated_key_from(taken, || Ok(IssuerSigningKey::generate()?))
}

/// [`unique_truncated_key`] over any source of keys.
fn unique_truncated_key_from(
    taken: &[u8],
    mut generate: impl FnMut() -> Result<IssuerSigningKey, IssuerError>,
) -> Result<IssuerSigningKey, IssuerError> {
    for _ in 0..64 {
        let key = generate()?;
        if !taken.contains(&key.public().key_id().truncated()) {
            return Ok(key);
        }
    }
    Err(IssuerError::TruncatedIdsExhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_whose_truncated_id_is_taken_is_generated_again() {
        let first = IssuerSigningKey::generate().unwrap();
        let taken = [first.public().key_id().truncated()];
        let mut second = IssuerSigningKey::generate().unwrap();
        while second.public().key_id().truncated() == taken[0] {
            second = IssuerSigningKey::generate().unwrap();
        }
        // The source yields a colliding key first, then a free one.
        let mut source = vec![second.clone(), first].into_iter();
        let mut calls = 0;
        let key = unique_truncated_key_from(&taken, || {
            calls += 1;
            Ok(source.next_back().unwrap())
        })
        .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(key.public().key_id(), second.public().key_id());
        // A full id space is an error, not an endless loop.
        let all: Vec<u8> = (0..=255).collect();
        assert!(matches!(
            unique_truncated_key_from(&all, || Ok(second.clone())),
            Err(IssuerError::TruncatedIdsExhausted)
        ));
    }
}
