//! Fault injection on the core and the storage: what a stalled disk, a
//! far-future date, a damaged journal or a damaged store may and may not
//! do. Each test names the promise of `threat-model/README.md` it checks.

mod common;

use std::sync::mpsc;
use std::time::Duration as StdDuration;

use std::path::Path;
use std::sync::Arc;

use blindpass::audit::{AuditError, Event};
use blindpass::clock::ManualClock;
use blindpass::crypto::blind::begin_issuance;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::Passphrase;
use blindpass::issuer::resident::PersonalData;
use blindpass::issuer::{Authority, AuthorityConfig, DataDir, IssuerError};
use blindpass::protocol::permit::{Window, WindowKind};
use blindpass::store::{StoreError, StoreLoss};
use common::{ADMIN, START, TestServer};
use serde_json::json;

/// A retry of a pass whose charge is recorded in memory but not yet on
/// disk must not be answered before that charge is durable: otherwise a
/// crash after the answer forgets the charge and the quota grants again.
#[test]
fn a_replayed_pass_waits_for_the_durability_of_its_charge() {
    if common::skip_unless_sled(
        "it holds sled's flushes; a PostgreSQL commit is durable when it returns",
    ) {
        return;
    }
    let server = TestServer::start();
    server.enrol("REPLAY001", None);
    let session = server.login("REPLAY001");
    let window = Window::containing(WindowKind::Day, START.date()).next();
    let directory = server.directory();
    let (key, digest) = common::key_for(&directory, "personal", window);
    let body = begin_issuance(&key, digest).unwrap().0.encode();
    let w = window.to_string();

    // The disk stalls: the first request's charge is applied in memory and
    // then waits for its flush.
    let hold = server.authority.store().dangerous_hold_flushes();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (tx, body, w, session, server) = (tx.clone(), &body, &w, &session, &server);
            scope.spawn(move || {
                let _ = tx.send(server.post_token_request(session, "personal", w, body));
            });
            // The second request is the retry: it starts once the first
            // one's charge is visible in memory.
            let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
            while charged(server) == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(StdDuration::from_millis(5));
            }
        }
        assert_eq!(charged(&server), 1, "the first charge is in memory");
        // Neither the original nor its retry may be answered while the
        // charge is not durable.
        let early = rx.recv_timeout(StdDuration::from_millis(1500));
        assert!(
            early.is_err(),
            "a pass was released before its charge was durable: {:?}",
            early.map(|(status, _)| status)
        );
        drop(hold);
        let a = rx.recv_timeout(StdDuration::from_secs(20)).unwrap();
        let b = rx.recv_timeout(StdDuration::from_secs(20)).unwrap();
        assert_eq!((a.0, b.0), (200, 200));
        assert_eq!(a.1, b.1, "the retry gets the same signature");
    });
    assert_eq!(charged(&server), 1, "the retry is not charged again");
}

/// Passes of the `personal` class charged this week to the one resident of
/// the server's period, read from the store's quota counters.
fn charged(server: &TestServer) -> u64 {
    let period = server.authority.current_period().unwrap();
    server
        .authority
        .store()
        .state_scan(&period, b"q")
        .unwrap()
        .iter()
        .map(|(_, v)| u64::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 8])))
        .sum()
}

/// Far-future dates and huge graces from the operator or a resident are a
/// 422 naming the field; none reaches the ring or panics a request, and the
/// issuer keeps serving.
#[test]
fn far_dates_are_refused_over_http_and_change_nothing() {
    let server = TestServer::start();
    let period = server.authority.current_period().unwrap().to_string();
    let before = server
        .authority
        .period_info(&server.authority.current_period().unwrap());
    for (path, body, field) in [
        (
            format!("/v1/admin/periods/{period}/extend"),
            json!({"ends_at": "9999-12-31T00:00:00Z"}),
            "ends_at",
        ),
        (
            "/v1/admin/periods".to_owned(),
            json!({"name": "far", "ends_at": "9999-12-31T23:59:59Z"}),
            "ends_at",
        ),
        (
            "/v1/admin/periods".to_owned(),
            json!({"name": "far", "ends_at": "2027-01-01T00:00:00Z", "grace_s": 1_u64 << 63}),
            "grace_s",
        ),
    ] {
        let (status, problem) = server.post_json(&path, &body, Some(ADMIN));
        assert_eq!(status, 422, "{path} {body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap_or("").starts_with(field),
            "{problem}"
        );
    }
    assert_eq!(
        server
            .authority
            .period_info(&server.authority.current_period().unwrap()),
        before
    );
    let mut resp = server
        .agent()
        .get(&format!("{}/v1/admin/periods", server.url))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let list: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(list["live"].as_array().map(Vec::len), Some(1));

    server.enrol("FARDATE01", None);
    let session = server.login("FARDATE01");
    for window in ["9999-12-31", "9999-W52"] {
        let (status, _) = server.post_token_request(&session, "personal", window, &[0; 259]);
        assert_eq!(status, 422, "{window}");
    }
}

const PASS: &str = "operator passphrase for reliability";

fn open(
    dir: &Path,
    clock: &ManualClock,
    accept_store_loss: bool,
) -> Result<Authority, IssuerError> {
    Authority::open(
        dir,
        &Passphrase::new(PASS.into()),
        AuthorityConfig {
            key_horizon_days: 0,
            accept_store_loss,
            ..AuthorityConfig::default()
        },
        Arc::new(clock.clone()),
    )
}

/// A data directory with one period and `residents` acknowledged
/// enrolments, closed again.
fn directory_with(residents: u32) -> (tempfile::TempDir, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let authority = Authority::init(
        dir.path(),
        &Passphrase::new(PASS.into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
        AuthorityConfig {
            key_horizon_days: 0,
            ..AuthorityConfig::default()
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    authority
        .open_period("p", START + time::Duration::days(30), 0)
        .unwrap();
    for i in 0..residents {
        let personal = PersonalData {
            full_name: format!("Resident {i}"),
            date_of_birth: time::macros::date!(1980 - 01 - 01),
            document_number: format!("DOC{i:06}"),
            address: format!("Street {i}"),
            phone: "+74951234567".into(),
            employer_tax_number: None,
        };
        authority
            .enrol_with_password(
                personal,
                &Passphrase::new("resident password".into()),
                Argon2Params::INSECURE_FAST_FOR_TESTS,
            )
            .unwrap();
    }
    drop(authority);
    (dir, clock)
}

fn loss(result: Result<Authority, IssuerError>) -> StoreLoss {
    match result {
        Err(IssuerError::Store(StoreError::Lost(loss))) => loss,
        Err(other) => panic!("expected a store-loss refusal, got {other}"),
        Ok(_) => panic!("a store that lost acknowledged writes was opened silently"),
    }
}

fn accepted_losses(authority: &Authority) -> Vec<String> {
    authority
        .journal()
        .entries()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::StoreLossAccepted { loss } => Some(loss),
            _ => None,
        })
        .collect()
}

/// With `sled/` deleted the issuer refuses to start (creating nothing),
/// until the operator accepts the loss, which the audit log records.
#[test]
fn a_missing_store_is_refused_until_the_loss_is_accepted() {
    if common::skip_unless_sled("it removes sled's directory to check the generation watermark") {
        return;
    }
    let (dir, clock) = directory_with(2);
    let sled = DataDir::new(dir.path()).sled();
    std::fs::remove_dir_all(&sled).unwrap();
    assert!(matches!(
        loss(open(dir.path(), &clock, false)),
        StoreLoss::Missing { acknowledged } if acknowledged > 0
    ));
    assert!(!sled.exists(), "the refusal created the store");
    let authority = open(dir.path(), &clock, true).unwrap();
    assert_eq!(accepted_losses(&authority), ["missing"]);
    drop(authority);
    // Accepted once: the next start is clean again.
    let authority = open(dir.path(), &clock, false).unwrap();
    assert_eq!(accepted_losses(&authority).len(), 1);
}

/// sled opens a truncated or damaged file without error at an earlier
/// state; the generation check turns that into a refusal.
#[test]
fn a_truncated_or_damaged_store_is_refused() {
    if common::skip_unless_sled("it truncates and damages sled's files") {
        return;
    }
    for damage in ["truncate", "flip"] {
        let (dir, clock) = directory_with(5);
        let db = DataDir::new(dir.path()).sled().join("db");
        let mut bytes = std::fs::read(&db).unwrap();
        let len = bytes.len();
        match damage {
            "truncate" => bytes.truncate(len / 2),
            _ => bytes[len / 2] ^= 0xff,
        }
        std::fs::write(&db, &bytes).unwrap();
        let sled = DataDir::new(dir.path()).sled();
        let before = snapshot(&sled);
        let found = loss(open(dir.path(), &clock, false));
        assert_eq!(
            snapshot(&sled),
            before,
            "{damage}: the refusal changed the store"
        );
        assert!(
            matches!(found, StoreLoss::Behind { acknowledged, found } if found < acknowledged),
            "{damage}: {found:?}"
        );
        let authority = open(dir.path(), &clock, true).unwrap();
        assert_eq!(accepted_losses(&authority), ["behind"], "{damage}");
    }
}

/// A refusal caused by the audit log happens before sled is opened: no
/// file of the store changes.
#[test]
fn an_audit_log_refusal_leaves_the_store_untouched() {
    if common::skip_unless_sled("it compares sled's files before and after") {
        return;
    }
    let (dir, clock) = directory_with(3);
    let layout = DataDir::new(dir.path());
    let log = layout.audit_log();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[1] ^= 0x40; // the first record's length prefix
    std::fs::write(&log, &bytes).unwrap();
    let before = snapshot(&layout.sled());
    match open(dir.path(), &clock, false) {
        Err(IssuerError::Audit(AuditError::Corrupt(damage))) => assert_eq!(damage.offset, 0),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a damaged audit log was accepted"),
    }
    assert_eq!(
        snapshot(&layout.sled()),
        before,
        "the refusal changed the store"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "the refusal changed the log"
    );
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            let meta = std::fs::metadata(&path).unwrap();
            out.push((
                path.display().to_string(),
                std::fs::read(&path).unwrap(),
                meta.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// `serve` on a data directory whose store is gone, or whose audit log is
/// damaged, exits with a message and a hint naming what to do, never a
/// panic, and starts nothing.
#[test]
fn serve_refuses_with_a_hint() {
    if common::skip_unless_sled("it removes sled's directory under `serve`") {
        return;
    }
    let (dir, _clock) = directory_with(1);
    let layout = DataDir::new(dir.path());
    // A server that starts instead of refusing is killed after a while, and
    // the test fails on its exit status.
    let serve = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_blindpass"))
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--key-horizon-days", "0"])
            .env("BLINDPASS_PASSPHRASE", PASS)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + StdDuration::from_secs(30);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(StdDuration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    };
    let log = layout.audit_log();
    let intact = std::fs::read(&log).unwrap();
    let mut damaged = intact.clone();
    damaged[2] ^= 0x40;
    std::fs::write(&log, &damaged).unwrap();
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("damaged at byte 0"), "{stderr}");
    assert!(stderr.contains("hint: nothing was changed"), "{stderr}");
    assert_eq!(std::fs::read(&log).unwrap(), damaged);

    std::fs::write(&log, &intact).unwrap();
    std::fs::remove_dir_all(layout.sled()).unwrap();
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("store directory is missing"), "{stderr}");
    assert!(stderr.contains("--accept-store-loss"), "{stderr}");
    assert!(!layout.sled().exists());
}

/// `serve --store` with a value it cannot read, or a PostgreSQL database it
/// cannot reach, exits with a message and a hint, never echoing the
/// connection string (it may hold a password).
#[test]
fn serve_refuses_a_bad_or_unreachable_store_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |store: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_blindpass"))
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--key-horizon-days", "0"])
            .args(["--store", store])
            .env("BLINDPASS_PASSPHRASE", PASS)
            .stdout(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = serve("mysql://root:hunter2@db/blindpass");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--store postgres://"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let nowhere = dir.path().join("no-server-here");
    let (code, stderr) = serve(&format!(
        "host={} dbname=blindpass password=hunter2",
        nowhere.display()
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the PostgreSQL store failed"), "{stderr}");
    assert!(
        stderr.contains("check that the server is running"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
