//! A real issuer on 127.0.0.1:0 with a temporary data directory and an
//! injected clock, for integration tests that talk HTTP.
//!
//! The store's engine comes from `BLINDPASS_TEST_STORE`: unset (or `sled`),
//! sled in the data directory; `postgres`, a fresh database per server in
//! the throwaway cluster of [`postgres`] (which must then be installed);
//! `shared`, the same with the master key in the PKCS#11 token that
//! `BLINDPASS_TEST_TOKEN` names (a `pkcs11:` URI with a `pin-source`; the
//! token's library reads its configuration, `SOFTHSM2_CONF` for SoftHSM2,
//! from the environment), so that the key ring, the master slot and the
//! audit log are the database's, as for several nodes. A test that only
//! makes sense on sled asks [`skip_unless_sled`].

#![allow(dead_code)]

pub mod postgres;
pub mod process;
pub mod softhsm;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use blindpass::clock::ManualClock;
use blindpass::crypto::blind::{IssuerPublicKey, begin_issuance, finalize};
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::Passphrase;
use blindpass::http::HttpConfig;
use blindpass::issuer::{Authority, AuthorityConfig};
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::Window;
use blindpass::protocol::token::{Token, TokenChallenge, TokenRequest, TokenResponse};
use blindpass::service::{
    AdminToken, Expiry, FirstPeriod, KEY_REFRESH, Listen, MasterSource, RunningService, Service,
    ServiceConfig,
};
use blindpass::store::StoreSpec;
use blindpass::vault::pkcs11::{TokenPin, TokenUri};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Tuesday 1 December 2026, 09:00 UTC.
pub const START: OffsetDateTime = datetime!(2026-12-01 09:00 UTC);
pub const ADMIN: &str = "test-admin-token";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub authority: Arc<Authority>,
    pub url: String,
    service: Option<RunningService>,
    /// The server's database when the tests run on PostgreSQL; dropped
    /// after the service has stopped.
    pub database: Option<postgres::Database>,
}

/// The engine the integration tests run on, from `BLINDPASS_TEST_STORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Sled,
    Postgres,
    /// PostgreSQL with the ring, master slot and log as shared rows.
    Shared,
}

pub fn test_store() -> TestStore {
    match std::env::var("BLINDPASS_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sled") => TestStore::Sled,
        Ok("postgres") => TestStore::Postgres,
        Ok("shared") => TestStore::Shared,
        Ok(other) => {
            panic!("BLINDPASS_TEST_STORE={other:?}: use \"sled\", \"postgres\" or \"shared\"")
        }
    }
}

/// True (after saying why on stderr) when the tests run on another engine
/// than sled: for a test that inspects sled's files or holds its flushes.
pub fn skip_unless_sled(why: &str) -> bool {
    if test_store() == TestStore::Sled {
        return false;
    }
    eprintln!("skipped on BLINDPASS_TEST_STORE={:?}: {why}", test_store());
    true
}

/// A fresh database for one server and the spec that opens it, or sled.
pub fn store_for_test() -> (StoreSpec, Option<postgres::Database>) {
    match test_store() {
        TestStore::Sled => (StoreSpec::Sled, None),
        TestStore::Postgres | TestStore::Shared => {
            if postgres::installed().is_none() {
                panic!(
                    "BLINDPASS_TEST_STORE=postgres or shared, but PostgreSQL is not installed \
                     (`apt-get install postgresql`, or run .ci/run)"
                );
            }
            let database = postgres::database().expect("a database in the throwaway cluster");
            let spec = StoreSpec::Postgres {
                url: database.conninfo(),
                pool_size: 8,
            };
            (spec, Some(database))
        }
    }
}

/// The passphrase slot, or with `BLINDPASS_TEST_STORE=shared` the token
/// `BLINDPASS_TEST_TOKEN` names.
pub fn master_for_test() -> MasterSource {
    if test_store() != TestStore::Shared {
        return MasterSource::Passphrase {
            passphrase: Passphrase::new("operator passphrase".into()),
            new_slot_argon2: Argon2Params::INSECURE_FAST_FOR_TESTS,
        };
    }
    let uri = std::env::var("BLINDPASS_TEST_TOKEN")
        .expect("BLINDPASS_TEST_STORE=shared needs BLINDPASS_TEST_TOKEN (see .ci/run)");
    let uri = TokenUri::parse(&uri).expect("BLINDPASS_TEST_TOKEN is a pkcs11: URI");
    let pin_file = uri
        .pin_source
        .clone()
        .expect("BLINDPASS_TEST_TOKEN has a pin-source");
    let pin = std::fs::read_to_string(pin_file).expect("the PIN file");
    MasterSource::Token {
        uri,
        pin: TokenPin::new(pin.lines().next().unwrap_or_default().to_owned()),
    }
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(HttpConfig {
            password_params: Argon2Params::INSECURE_FAST_FOR_TESTS,
            rate_burst: 1000,
            ..HttpConfig::default()
        })
    }

    /// Starts through the service's own start-up ([`Service::start`]), as
    /// `blindpass serve` does, on a manual clock at [`START`] and with
    /// expiry driven by the test.
    pub fn start_with(http: HttpConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (store_spec, database) = store_for_test();
        let service = Service::start(ServiceConfig {
            data_dir: dir.path().to_owned(),
            master: master_for_test(),
            authority: AuthorityConfig {
                key_horizon_days: 3,
                store_spec,
                ..AuthorityConfig::default()
            },
            clock: Arc::new(clock.clone()),
            http,
            admin_token: AdminToken::Given(ADMIN.into()),
            listen: Listen::Bound(listener),
            expiry: Expiry::CallerDriven,
            key_refresh: KEY_REFRESH,
            first_period: Some(FirstPeriod {
                name: "test".into(),
                length: Duration::days(30),
                grace_s: 3600,
            }),
            worker_threads: Some(2),
            thread_name: None,
            witnesses: None,
        })
        .unwrap();
        let engine = match test_store() {
            TestStore::Sled => "sled",
            TestStore::Postgres | TestStore::Shared => "postgres",
        };
        assert_eq!(service.authority().store().engine_name(), engine);
        assert_eq!(
            service.authority().ring_is_shared(),
            test_store() == TestStore::Shared
        );
        Self {
            dir,
            clock,
            authority: service.authority().clone(),
            url: format!("http://{}", service.local_addr()),
            service: Some(service),
            database,
        }
    }

    /// The directories that hold what the server stored: the data
    /// directory, and on PostgreSQL the cluster's files too, after a
    /// checkpoint has written every page out (for scans of what reached
    /// the disk).
    pub fn stored_dirs(&self) -> Vec<std::path::PathBuf> {
        let mut dirs = vec![self.dir.path().to_owned()];
        if let Some(database) = &self.database {
            database.sql("CHECKPOINT");
            dirs.push(database.cluster().data_dir());
        }
        dirs
    }

    /// Every file under [`TestServer::stored_dirs`] whose bytes contain
    /// `needle`.
    pub fn stored_files_containing(&self, needle: &[u8]) -> Vec<String> {
        self.stored_dirs()
            .iter()
            .flat_map(|dir| files_containing(dir, needle))
            .collect()
    }

    pub fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(StdDuration::from_secs(30)))
            .build()
            .into()
    }

    /// POST JSON; returns status and parsed body.
    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.agent().post(&format!("{}{path}", self.url));
        if let Some(token) = bearer {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let mut resp = req.send_json(body).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let mut resp = self
            .agent()
            .get(&format!("{}{path}", self.url))
            .call()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    pub fn enrol(&self, document: &str, employer: Option<&str>) -> (u16, serde_json::Value) {
        let mut body = serde_json::json!({
            "full_name": format!("Resident {document}"),
            "date_of_birth": "1985-03-04",
            "document_number": document,
            "address": format!("Street {document}"),
            "phone": "+74951234567",
            "password": PASSWORD,
        });
        if let Some(e) = employer {
            body["employer_tax_number"] = e.into();
        }
        self.post_json("/v1/residents", &body, None)
    }

    pub fn login(&self, document: &str) -> String {
        let (status, body) = self.post_json(
            "/v1/sessions",
            &serde_json::json!({"document_number": document, "password": PASSWORD}),
            None,
        );
        assert_eq!(status, 201, "{body}");
        body["session_token"].as_str().unwrap().to_owned()
    }

    pub fn directory(&self) -> Directory {
        let (status, body) = self.get_json("/v1/directory");
        assert_eq!(status, 200);
        serde_json::from_value(body).unwrap()
    }

    /// Sends a raw token request; returns status and body bytes.
    pub fn post_token_request(
        &self,
        session: &str,
        class: &str,
        window: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut resp = self
            .agent()
            .post(&format!(
                "{}/token-request?class={class}&window={window}",
                self.url
            ))
            .header("Authorization", &format!("Bearer {session}"))
            .header("Content-Type", "application/private-token-request")
            .send(body)
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.body_mut().read_to_vec().unwrap_or_default();
        (status, bytes)
    }

    /// The whole client side of issuance; returns the request sent and the
    /// outcome (a finished token, or the error status).
    pub fn obtain(
        &self,
        session: &str,
        class: &str,
        window: &str,
    ) -> (TokenRequest, Result<Token, u16>) {
        let dir = self.directory();
        let w = Window::parse(window).unwrap();
        let key = dir
            .keys
            .iter()
            .find(|k| k.class.as_str() == class && k.window == w)
            .map(|k| IssuerPublicKey::from_spki(&k.spki().unwrap()).unwrap())
            .unwrap_or_else(|| {
                // Any key: the server must refuse on its own.
                IssuerPublicKey::from_spki(&dir.keys[0].spki().unwrap()).unwrap()
            });
        let digest = TokenChallenge::permit(&dir.issuer_name).digest().unwrap();
        let (request, pending) = begin_issuance(&key, digest).unwrap();
        let (status, body) = self.post_token_request(session, class, window, &request.encode());
        if status != 200 {
            return (request, Err(status));
        }
        let response = TokenResponse::decode(&body).unwrap();
        (request, Ok(finalize(&pending, &response).unwrap()))
    }
}

/// The public key the directory publishes for `class` in `window`, and the
/// issuer's permit challenge digest: what a client blinds for.
pub fn key_for(directory: &Directory, class: &str, window: Window) -> (IssuerPublicKey, [u8; 32]) {
    let key = directory
        .keys
        .iter()
        .find(|k| k.class.as_str() == class && k.window == window)
        .unwrap();
    let key = IssuerPublicKey::from_spki(&key.spki().unwrap()).unwrap();
    let digest = TokenChallenge::permit(&directory.issuer_name)
        .digest()
        .unwrap();
    (key, digest)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Stops serving and flushes before the directory goes.
        if let Some(service) = self.service.take() {
            let _ = service.shutdown();
        }
    }
}

/// The kinds of the events in `authority`'s audit log, oldest first
/// (`"period-opened"`, `"service-started"`, …), as the log writes them.
pub fn event_kinds(authority: &Authority) -> Vec<String> {
    authority
        .journal()
        .entries()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::to_value(&e.event).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    // A searcher built with the optimised dependencies: a naive window
    // scan in the unoptimised test crate takes minutes over a cluster's
    // files.
    let searcher = aho_corasick::AhoCorasick::new([needle]).unwrap();
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if searcher.is_match(&bytes) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    hits
}

/// Reads one HTTP/1.1 request and rewrites it to `Connection: close`, so
/// that the server ends its response by closing (for test proxies).
pub fn read_request(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).ok()?;
    let mut length = 0usize;
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        if !lower.starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    let mut request = out.into_bytes();
    request.extend_from_slice(&body);
    Some(request)
}
