//! The verifier's copy of the issuer's key directory, kept in one file
//! (`directory.json`) in a cache directory together with when it was
//! fetched, and the offline check of a pass against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{CheckReport, InvalidReason, Staleness, ValidPass, Verdict, VerifierError};
use crate::client::{Client, ClientError, Conditional};
use crate::crypto::blind::IssuerPublicKey;
use crate::fsutil;
use crate::protocol::api::paths;
use crate::protocol::directory::Directory;
use crate::protocol::permit::{ClassName, Window};
use crate::protocol::qr::decode_payload;
use crate::protocol::token::{KeyId, TokenChallenge};

/// The file, inside the cache directory, holding the cached directory.
pub const DIRECTORY_FILE: &str = "directory.json";

/// How long a sync may take before it is given up.
const SYNC_TIMEOUT: StdDuration = StdDuration::from_secs(30);

/// What is stored on disk.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    /// When the directory was fetched (the verifier's clock).
    #[serde(with = "time::serde::rfc3339")]
    fetched_at: OffsetDateTime,
    /// The server it came from, so that `sync` can default to it.
    #[serde(default)]
    source: Option<String>,
    /// The server's `ETag`, for a conditional re-fetch.
    #[serde(default)]
    etag: Option<String>,
    /// The directory exactly as served.
    directory: Directory,
}

/// A key from the directory, parsed once and ready to verify with.
#[derive(Debug, Clone)]
struct TrustedKey {
    public: IssuerPublicKey,
    class: ClassName,
    window: Window,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A new directory was fetched and stored.
    Updated,
    /// The server said the cached directory is current (`304`); only its
    /// fetch time was refreshed.
    NotModified,
}

/// A validated, cached key directory: every key parsed, every key id
/// checked against its key, and no key id listed twice.
#[derive(Debug, Clone)]
pub struct DirectoryCache {
    directory: Directory,
    fetched_at: OffsetDateTime,
    source: Option<String>,
    etag: Option<String>,
    keys: HashMap<KeyId, TrustedKey>,
    challenge_digest: [u8; 32],
}

impl DirectoryCache {
    /// Validates a directory. Refuses it as a whole if any key is unusable:
    /// a half-trusted directory would make verdicts depend on which key a
    /// pass happens to use.
    pub fn new(
        directory: Directory,
        fetched_at: OffsetDateTime,
        source: Option<String>,
    ) -> Result<Self, VerifierError> {
        Self::build(directory, fetched_at, source, None)
    }

    fn build(
        directory: Directory,
        fetched_at: OffsetDateTime,
        source: Option<String>,
        etag: Option<String>,
    ) -> Result<Self, VerifierError> {
        let challenge_digest = TokenChallenge::permit(&directory.issuer_name)
            .digest()
            .map_err(|e| VerifierError::BadDirectory(format!("issuer-name: {e}")))?;
        let mut keys = HashMap::with_capacity(directory.keys.len());
        for published in &directory.keys {
            let bad = |what: &str| {
                VerifierError::BadDirectory(format!("key {}: {what}", published.key_id))
            };
            let spki = published.spki().map_err(|e| bad(&e.to_string()))?;
            let public =
                IssuerPublicKey::from_spki(&spki).map_err(|_| bad("not a 2048-bit RSA-PSS key"))?;
            let trusted = TrustedKey {
                public,
                class: published.class.clone(),
                window: published.window,
            };
            if keys.insert(trusted.public.key_id(), trusted).is_some() {
                return Err(bad("listed more than once"));
            }
        }
        Ok(Self {
            directory,
            fetched_at,
            source,
            etag,
            keys,
            challenge_digest,
        })
    }

    /// The path of the cache file inside `cache_dir`.
    pub fn file(cache_dir: &Path) -> PathBuf {
        cache_dir.join(DIRECTORY_FILE)
    }

    /// Loads and validates the cached directory.
    pub fn load(cache_dir: &Path) -> Result<Self, VerifierError> {
        let path = Self::file(cache_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VerifierError::NoCache(cache_dir.to_owned()));
            }
            Err(source) => return Err(VerifierError::Io { path, source }),
        };
        let file: CacheFile = serde_json::from_slice(&bytes)
            .map_err(|e| VerifierError::BadDirectory(format!("{}: {e}", path.display())))?;
        Self::build(file.directory, file.fetched_at, file.source, file.etag)
    }

    /// Writes the cache file atomically (temporary file, fsync, rename), so
    /// a crash mid-write leaves the previous directory in place.
    pub fn store(&self, cache_dir: &Path) -> Result<(), VerifierError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| VerifierError::Io { path, source }
        };
        std::fs::create_dir_all(cache_dir).map_err(io(cache_dir))?;
        let file = CacheFile {
            fetched_at: self.fetched_at,
            source: self.source.clone(),
            etag: self.etag.clone(),
            directory: self.directory.clone(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| VerifierError::BadDirectory(e.to_string()))?;
        let path = fsutil::with_explicit_parent(&Self::file(cache_dir));
        fsutil::atomic_write(&path, &json).map_err(io(&path))
    }

    /// Fetches `GET {server_url}/v1/directory`, validates it and stores it
    /// in `cache_dir` with `now` as its fetch time. When the cache already
    /// holds a directory from the same server, the fetch is conditional
    /// (`If-None-Match`) and a `304` only refreshes the fetch time.
    pub fn sync(
        cache_dir: &Path,
        server_url: &str,
        now: OffsetDateTime,
    ) -> Result<(Self, SyncOutcome), VerifierError> {
        let client = Client::new(server_url).with_timeout(SYNC_TIMEOUT);
        let base = client.base_url();
        let url = client.url(paths::DIRECTORY);
        let previous = match Self::load(cache_dir) {
            Ok(cache) if cache.source.as_deref() == Some(base) => Some(cache),
            // A cache from another server, or an unreadable one, is simply
            // replaced.
            _ => None,
        };
        let etag = previous.as_ref().and_then(|p| p.etag.as_deref());
        let (body, etag) = match client.get_conditional(paths::DIRECTORY, etag) {
            Ok(Conditional::Fresh { body, etag }) => (body, etag),
            Ok(Conditional::NotModified) => {
                // Only asked conditionally, so there is a previous cache.
                if let Some(mut cache) = previous {
                    cache.fetched_at = now;
                    cache.store(cache_dir)?;
                    return Ok((cache, SyncOutcome::NotModified));
                }
                return Err(VerifierError::Server {
                    url,
                    status: 304,
                    title: None,
                });
            }
            Err(ClientError::Network { url, detail }) => {
                return Err(VerifierError::Network { url, detail });
            }
            Err(ClientError::Problem(problem)) => {
                return Err(VerifierError::Server {
                    url,
                    status: problem.status,
                    title: Some(problem.title),
                });
            }
            Err(ClientError::UnexpectedResponse { status, .. }) => {
                return Err(VerifierError::Server {
                    url,
                    status,
                    title: None,
                });
            }
            // A `GET` has no body to write.
            Err(ClientError::Request(detail)) => {
                return Err(VerifierError::Network { url, detail });
            }
        };
        let directory: Directory = serde_json::from_slice(&body)
            .map_err(|e| VerifierError::BadDirectory(format!("{url}: {e}")))?;
        let cache = Self::build(directory, now, Some(base.to_owned()), etag)?;
        cache.store(cache_dir)?;
        Ok((cache, SyncOutcome::Updated))
    }

    /// The directory as served.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// When it was fetched.
    pub fn fetched_at(&self) -> OffsetDateTime {
        self.fetched_at
    }

    /// The server it came from, if known.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// `Some` when, at `at`, the directory is older than its `max-age-s`.
    pub fn staleness(&self, at: OffsetDateTime) -> Option<Staleness> {
        let max_age =
            Duration::seconds(i64::try_from(self.directory.max_age_s).unwrap_or(i64::MAX));
        let age = at - self.fetched_at;
        (age > max_age).then(|| Staleness {
            fetched_at: self.fetched_at,
            max_age_s: self.directory.max_age_s,
            overdue: age - max_age,
        })
    }

    /// The full offline check of a QR payload at time `at`, accepting a
    /// clock difference of up to `skew` at either edge of the window.
    pub fn check(&self, payload: &str, at: OffsetDateTime, skew: Duration) -> CheckReport {
        CheckReport {
            verdict: self.verdict(payload, at, skew),
            staleness: self.staleness(at),
        }
    }

    fn verdict(&self, payload: &str, at: OffsetDateTime, skew: Duration) -> Verdict {
        let token = match decode_payload(payload) {
            Ok(token) => token,
            Err(e) => return Verdict::Invalid(InvalidReason::Malformed(e.to_string())),
        };
        let Some(key) = self.keys.get(&token.token_key_id) else {
            return Verdict::Invalid(InvalidReason::UnknownKey);
        };
        // Not secret: both digests are public, so no constant-time compare.
        if token.challenge_digest != self.challenge_digest {
            return Verdict::Invalid(InvalidReason::WrongIssuer);
        }
        if key.public.verify_signature(&token).is_err() {
            return Verdict::Invalid(InvalidReason::BadSignature);
        }
        let (class, window) = (key.class.clone(), key.window);
        if window.contains(at, skew) {
            Verdict::Valid(ValidPass { class, window })
        } else if at < window.starts_at() {
            Verdict::Invalid(InvalidReason::NotYetValid { class, window })
        } else {
            Verdict::Invalid(InvalidReason::Expired { class, window })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::blind::{IssuerSigningKey, begin_issuance, finalize};
    use crate::protocol::directory::PublishedKey;
    use crate::protocol::qr::encode_payload;
    use std::sync::OnceLock;
    use time::macros::datetime;

    const ISSUER: &str = "issuer.test";

    fn key() -> &'static IssuerSigningKey {
        static KEY: OnceLock<IssuerSigningKey> = OnceLock::new();
        KEY.get_or_init(|| IssuerSigningKey::generate().unwrap())
    }

    fn window() -> Window {
        Window::parse("2026-12-01").unwrap()
    }

    fn directory(issuer: &str) -> Directory {
        Directory {
            issuer_name: issuer.into(),
            issuer_request_uri: "http://127.0.0.1/token-request".into(),
            generated_at: 0,
            max_age_s: 3600,
            keys: vec![PublishedKey::new(
                key().public().spki(),
                ClassName::new("personal").unwrap(),
                window(),
            )],
        }
    }

    fn payload(issuer: &str) -> String {
        let digest = TokenChallenge::permit(issuer).digest().unwrap();
        let (request, pending) = begin_issuance(key().public(), digest).unwrap();
        let token = finalize(&pending, &key().blind_sign(&request).unwrap()).unwrap();
        encode_payload(&token)
    }

    fn cache() -> DirectoryCache {
        DirectoryCache::new(directory(ISSUER), datetime!(2026-12-01 08:00 UTC), None).unwrap()
    }

    #[test]
    fn the_window_edges_honour_the_skew() {
        let cache = cache();
        let p = payload(ISSUER);
        let skew = Duration::minutes(5);
        let at = |t| cache.check(&p, t, skew).verdict;
        assert!(at(datetime!(2026-11-30 23:56 UTC)).is_valid());
        assert!(at(datetime!(2026-12-02 00:04 UTC)).is_valid());
        assert!(matches!(
            at(datetime!(2026-11-30 23:54 UTC)),
            Verdict::Invalid(InvalidReason::NotYetValid { .. })
        ));
        assert!(matches!(
            at(datetime!(2026-12-02 00:05 UTC)),
            Verdict::Invalid(InvalidReason::Expired { .. })
        ));
    }

    #[test]
    fn staleness_starts_after_max_age() {
        let cache = cache();
        assert!(cache.staleness(datetime!(2026-12-01 09:00 UTC)).is_none());
        let stale = cache.staleness(datetime!(2026-12-01 09:00:01 UTC)).unwrap();
        assert_eq!(stale.overdue, Duration::seconds(1));
        assert_eq!(stale.max_age_s, 3600);
    }

    #[test]
    fn an_unusable_key_refuses_the_whole_directory() {
        let mut dir = directory(ISSUER);
        dir.keys[0].token_key = dir.keys[0].token_key.replace('A', "B");
        assert!(matches!(
            DirectoryCache::new(dir, OffsetDateTime::UNIX_EPOCH, None),
            Err(VerifierError::BadDirectory(_))
        ));
        let mut dir = directory(ISSUER);
        dir.keys.push(dir.keys[0].clone());
        assert!(matches!(
            DirectoryCache::new(dir, OffsetDateTime::UNIX_EPOCH, None),
            Err(VerifierError::BadDirectory(_))
        ));
    }

    #[test]
    fn store_and_load_round_trip_and_replace_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache();
        cache.store(tmp.path()).unwrap();
        cache.store(tmp.path()).unwrap();
        let again = DirectoryCache::load(tmp.path()).unwrap();
        assert_eq!(again.directory(), cache.directory());
        assert_eq!(again.fetched_at(), cache.fetched_at());
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(DIRECTORY_FILE)]);
        assert!(matches!(
            DirectoryCache::load(&tmp.path().join("nothing-here")),
            Err(VerifierError::NoCache(_))
        ));
    }
}
