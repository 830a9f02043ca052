//! Fault injection on the core and the storage: what a stalled disk, a
//! far-future date, a damaged journal or a damaged store may and may not
//! do. Each test names the promise of `threat-model/README.md` it checks.

mod common;

use std::sync::mpsc;
use std::time::Duration as StdDuration;

use blindpass::crypto::blind::{IssuerPublicKey, begin_issuance};
use blindpass::protocol::permit::{Window, WindowKind};
use blindpass::protocol::token::TokenChallenge;
use common::{ADMIN, START, TestServer};
use serde_json::json;

/// A retry of a pass whose charge is recorded in memory but not yet on
/// disk must not be answered before that charge is durable: otherwise a
/// crash after the answer forgets the charge and the quota grants again.
#[test]
fn a_replayed_pass_waits_for_the_durability_of_its_charge() {
    let server = TestServer::start();
    server.enrol("REPLAY001", None);
    let session = server.login("REPLAY001");
    let window = Window::containing(WindowKind::Day, START.date()).next();
    let directory = server.directory();
    let key = directory
        .keys
        .iter()
        .find(|k| k.class.as_str() == "personal" && k.window == window)
        .unwrap();
    let key = IssuerPublicKey::from_spki(&key.spki().unwrap()).unwrap();
    let digest = TokenChallenge::permit(&directory.issuer_name)
        .digest()
        .unwrap();
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
