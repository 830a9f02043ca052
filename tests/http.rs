//! The issuer over real HTTP: flows, rules, and every documented error.

mod common;

use common::{ADMIN, START, TestServer};
use serde_json::json;
use time::Duration;

fn problem_type(body: &serde_json::Value) -> &str {
    body["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("https://blindpass.dev/problems/"))
        .unwrap_or("<none>")
}

#[test]
fn enrol_login_obtain_and_verify_a_personal_pass() {
    let server = TestServer::start();
    let (status, body) = server.enrol("AB1234567", None);
    assert_eq!(status, 201, "{body}");
    let session = server.login("AB1234567");
    let (_, token) = server.obtain(&session, "personal", "2026-12-02");
    let token = token.unwrap();
    let dir = server.directory();
    let key = dir.key(&token.token_key_id).unwrap();
    assert_eq!(
        (key.class.as_str(), key.window.to_string().as_str()),
        ("personal", "2026-12-02")
    );
    let pk = blindpass::crypto::blind::IssuerPublicKey::from_spki(&key.spki().unwrap()).unwrap();
    pk.verify_signature(&token).unwrap();
}

#[test]
fn quota_and_idempotency() {
    let server = TestServer::start();
    server.enrol("Q1000001", None);
    let session = server.login("Q1000001");
    let (first, token) = server.obtain(&session, "personal", "2026-12-02");
    token.unwrap();
    // The same blinded message again: the same answer, no second charge.
    let (s1, r1) = server.post_token_request(&session, "personal", "2026-12-02", &first.encode());
    let (s2, r2) = server.post_token_request(&session, "personal", "2026-12-02", &first.encode());
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(r1, r2);
    // So a second pass still fits in the week…
    server.obtain(&session, "personal", "2026-12-03").1.unwrap();
    // …and the third in the same ISO week does not.
    let (_, third) = server.obtain(&session, "personal", "2026-12-04");
    assert_eq!(third.unwrap_err(), 429);
    // Medical passes are unlimited.
    for day in ["2026-12-02", "2026-12-03", "2026-12-04"] {
        server.obtain(&session, "medical", day).1.unwrap();
    }
}

#[test]
fn work_passes_need_an_employer() {
    let server = TestServer::start();
    server.enrol("W1000001", None);
    server.enrol("W1000002", Some("7707083893"));
    let without = server.login("W1000001");
    let with = server.login("W1000002");
    assert_eq!(
        server.obtain(&without, "work", "2026-W49").1.unwrap_err(),
        403
    );
    server.obtain(&with, "work", "2026-W49").1.unwrap();
}

#[test]
fn enrolment_rules() {
    let server = TestServer::start();
    let (status, body) = server.post_json(
        "/v1/residents",
        &json!({"full_name": "Young One", "date_of_birth": "2013-01-01", "document_number": "Y1234567",
                "address": "A street", "phone": "+74951234567", "password": "long enough pw"}),
        None,
    );
    assert_eq!((status, problem_type(&body)), (422, "invalid-input"));
    assert!(body["detail"].as_str().unwrap().contains("date_of_birth"));
    assert!(!body.to_string().contains("Young One"));
    assert_eq!(server.enrol("D1234567", None).0, 201);
    let (status, body) = server.enrol("d123-4567", None);
    assert_eq!((status, problem_type(&body)), (409, "duplicate-document"));
}

#[test]
fn issuance_window_rules() {
    let server = TestServer::start();
    server.enrol("R1000001", None);
    let session = server.login("R1000001");
    // Yesterday, beyond the published keys, wrong kind of window.
    assert_eq!(
        server
            .obtain(&session, "personal", "2026-11-30")
            .1
            .unwrap_err(),
        422
    );
    assert_eq!(
        server
            .obtain(&session, "personal", "2026-12-20")
            .1
            .unwrap_err(),
        422
    );
    assert_eq!(
        server
            .obtain(&session, "personal", "2026-W49")
            .1
            .unwrap_err(),
        422
    );
    assert_eq!(
        server
            .obtain(&session, "party", "2026-12-02")
            .1
            .unwrap_err(),
        404
    );
    // Today is fine.
    server.obtain(&session, "personal", "2026-12-01").1.unwrap();
}

#[test]
fn every_documented_error_is_problem_json_and_the_server_keeps_serving() {
    let server = TestServer::start();
    server.enrol("E1000001", None);
    let session = server.login("E1000001");
    let agent = server.agent();
    let url = |p: &str| format!("{}{p}", server.url);

    let mut resp = agent
        .post(&url("/v1/residents"))
        .header("Content-Type", "application/json")
        .send("{\"full_name\": ")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(problem_type(&body), "malformed-json");

    let resp = agent
        .post(&url("/v1/residents"))
        .header("Content-Type", "text/plain")
        .send("hello")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);

    let big = format!("{{\"full_name\": \"{}\"}}", "x".repeat(64 * 1024));
    let resp = agent
        .post(&url("/v1/residents"))
        .header("Content-Type", "application/json")
        .send(big.as_bytes())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);

    let (status, body) = server.post_json(
        "/v1/sessions",
        &json!({"document_number": "E1000001", "password": "wrong password!"}),
        None,
    );
    assert_eq!((status, problem_type(&body)), (401, "invalid-credentials"));
    let (status, _) = server.post_json(
        "/v1/sessions",
        &json!({"document_number": "NOBODY000", "password": "wrong password!"}),
        None,
    );
    assert_eq!(status, 401);

    let (status, _) = server.post_token_request(&session, "personal", "2026-12-02", b"short");
    assert_eq!(status, 422);
    let (status, _) =
        server.post_token_request("not-a-session", "personal", "2026-12-02", &[0; 259]);
    assert_eq!(status, 401);

    let (status, body) = server.get_json("/v1/admin/periods");
    assert_eq!((status, problem_type(&body)), (401, "unauthorized"));
    let (status, body) = server.post_json("/v1/admin/periods", &json!({}), Some("wrong"));
    assert_eq!((status, problem_type(&body)), (403, "forbidden"));
    let (status, body) = server.get_json("/no/such/thing");
    assert_eq!((status, problem_type(&body)), (404, "not-found"));

    // Sessions expire.
    server.clock.advance(Duration::hours(13));
    let (status, body) = {
        let mut resp = agent
            .post(&url("/token-request?class=personal&window=2026-12-02"))
            .header("Authorization", &format!("Bearer {session}"))
            .header("Content-Type", "application/private-token-request")
            .send(&[0u8; 259][..])
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        (status, body)
    };
    assert_eq!((status, problem_type(&body)), (401, "session-expired"));

    // Still serving.
    assert_eq!(server.get_json("/healthz").0, 200);
    let session = server.login("E1000001");
    assert!(!session.is_empty());
}

#[test]
fn admin_periods_and_erasure() {
    let server = TestServer::start();
    let ends = (START + Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, body) = server.post_json(
        "/v1/admin/periods",
        &json!({"name": "second wave", "ends_at": ends, "grace_s": 60}),
        Some(ADMIN),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let later = (START + Duration::days(20))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, body) = server.post_json(
        &format!("/v1/admin/periods/{id}/extend"),
        &json!({"ends_at": later}),
        Some(ADMIN),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post_json(
        &format!("/v1/admin/periods/{id}/end"),
        &json!({}),
        Some(ADMIN),
    );
    assert_eq!(status, 200, "{body}");
    let mut resp = server
        .agent()
        .get(&format!("{}/v1/admin/periods", server.url))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(list["live"].as_array().unwrap().len(), 2);

    // A resident erases their enrolment: the session dies and they can enrol again.
    server.enrol("X1000001", None);
    let session = server.login("X1000001");
    let mut resp = server
        .agent()
        .delete(&format!("{}/v1/residents/me", server.url))
        .header("Authorization", &format!("Bearer {session}"))
        .call()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        204,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    assert_eq!(
        server
            .obtain(&session, "medical", "2026-12-02")
            .1
            .unwrap_err(),
        401
    );
    assert_eq!(server.enrol("X1000001", None).0, 201);
}

#[test]
fn directories_are_cacheable() {
    let server = TestServer::start();
    let resp = server
        .agent()
        .get(&format!(
            "{}/.well-known/private-token-issuer-directory",
            server.url
        ))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let etag = resp
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        resp.headers()
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("max-age=3600")
    );
    let resp = server
        .agent()
        .get(&format!(
            "{}/.well-known/private-token-issuer-directory",
            server.url
        ))
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);
    let mut resp = server
        .agent()
        .get(&format!(
            "{}/.well-known/private-token-issuer-directory",
            server.url
        ))
        .call()
        .unwrap();
    let rfc: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(rfc["token-keys"][0]["token-type"], 2);
    let metrics = server
        .agent()
        .get(&format!("{}/metrics", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("route=\"/.well-known/private-token-issuer-directory\",status=\"304\"")
    );
}

#[test]
fn login_and_enrolment_are_rate_limited_per_address() {
    let server = TestServer::start_with(blindpass::http::HttpConfig {
        password_params: blindpass::crypto::kdf::Argon2Params::INSECURE_FAST_FOR_TESTS,
        rate_burst: 3,
        rate_per_s: 0.01,
        ..blindpass::http::HttpConfig::default()
    });
    assert_eq!(server.enrol("RL000001", None).0, 201);
    let attempt = || {
        server.post_json(
            "/v1/sessions",
            &json!({"document_number": "RL000001", "password": "wrong password!"}),
            None,
        )
    };
    assert_eq!(attempt().0, 401);
    assert_eq!(attempt().0, 401);
    let (status, body) = attempt();
    assert_eq!((status, problem_type(&body)), (429, "rate-limited"));
    // Other endpoints are not limited, and the server keeps serving.
    assert_eq!(server.get_json("/healthz").0, 200);
}

#[test]
fn erasing_and_enrolling_again_does_not_reset_the_quota() {
    let server = TestServer::start();
    server.enrol("QR000001", None);
    let session = server.login("QR000001");
    server.obtain(&session, "personal", "2026-12-02").1.unwrap();
    server.obtain(&session, "personal", "2026-12-03").1.unwrap();
    let resp = server
        .agent()
        .delete(&format!("{}/v1/residents/me", server.url))
        .header("Authorization", &format!("Bearer {session}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(server.enrol("QR000001", None).0, 201);
    let session = server.login("QR000001");
    assert_eq!(
        server
            .obtain(&session, "personal", "2026-12-04")
            .1
            .unwrap_err(),
        429
    );
}

#[test]
fn no_passes_after_the_period_ends() {
    let server = TestServer::start();
    server.enrol("END00001", None);
    let session = server.login("END00001");
    let period = server.authority.current_period().unwrap();
    server.authority.end_period(&period).unwrap();
    assert_eq!(
        server
            .obtain(&session, "medical", "2026-12-02")
            .1
            .unwrap_err(),
        410
    );
}
