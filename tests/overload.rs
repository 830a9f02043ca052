//! The HTTP face under hostile load: clients that never finish a request
//! are closed and cannot crowd out others; floods larger than the queue in
//! front of Argon2 or the signing threads are shed at once with 503 and
//! `Retry-After`, and the requests admitted succeed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use blindpass::crypto::blind::{IssuerPublicKey, begin_issuance};
use blindpass::crypto::kdf::Argon2Params;
use blindpass::http::HttpConfig;
use blindpass::protocol::permit::Window;
use blindpass::protocol::token::TokenChallenge;
use common::{PASSWORD, TestServer};

fn config() -> HttpConfig {
    HttpConfig {
        password_params: Argon2Params::INSECURE_FAST_FOR_TESTS,
        rate_burst: 10_000,
        ..HttpConfig::default()
    }
}

/// True once the server has closed `stream` (EOF or reset); false if it
/// is still open when the read times out.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An error response before the close is fine; keep reading.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn clients_that_never_finish_their_headers_are_closed_and_healthz_answers() {
    let server = TestServer::start_with(HttpConfig {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(1),
        ..config()
    });
    let addr = server.url.trim_start_matches("http://").to_owned();
    // Four times the cap, each stuck half-way through its request head.
    let mut slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();

    let started = Instant::now();
    let (status, body) = server.get_json("/healthz");
    assert_eq!(status, 200, "{body}");
    // The slow ones ahead of it are closed in waves of the cap, one
    // header timeout each; generous for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(20));

    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, stream) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        assert!(
            closed_by_server(stream),
            "slow connection {i} still open after the header timeout"
        );
    }
}

/// Runs `n` copies of `request` at once (released together by a barrier);
/// returns each one's status, `Retry-After` header and latency.
fn flood(
    n: usize,
    request: impl Fn(usize, &ureq::Agent) -> ureq::http::Response<ureq::Body> + Send + Sync + 'static,
) -> Vec<(u16, Option<String>, Duration)> {
    let barrier = Arc::new(Barrier::new(n));
    let request = Arc::new(request);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .into();
                barrier.wait();
                let started = Instant::now();
                let response = request(i, &agent);
                let took = started.elapsed();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let is_problem = response
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes() == b"application/problem+json");
                let status = response.status().as_u16();
                if status == 503 {
                    assert!(is_problem, "a shed request is answered with a problem");
                }
                (status, retry_after, took)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn metric(server: &TestServer, name: &str) -> u64 {
    let text = ureq::get(&format!("{}/metrics", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.parse().unwrap())
}

/// Checks a flood's outcome: some shed at once with `Retry-After`, every
/// other one answered with `ok`.
fn assert_shed_and_served(outcome: &[(u16, Option<String>, Duration)], ok: u16) -> usize {
    let shed: Vec<_> = outcome.iter().filter(|(s, _, _)| *s == 503).collect();
    let served = outcome.iter().filter(|(s, _, _)| *s == ok).count();
    assert!(!shed.is_empty(), "nothing was shed: {outcome:?}");
    assert_eq!(shed.len() + served, outcome.len(), "{outcome:?}");
    for (_, retry_after, took) in &shed {
        assert_eq!(retry_after.as_deref(), Some("1"));
        // Shed without doing the work: no waiting in a queue.
        assert!(*took < Duration::from_secs(2), "shed after {took:?}");
    }
    shed.len()
}

#[test]
fn an_enrolment_flood_over_the_argon2_queue_is_shed_and_the_rest_enrol() {
    let server = Arc::new(TestServer::start_with(HttpConfig {
        // Real Argon2 cost, so the flood outlasts one hash.
        password_params: Argon2Params::DEFAULT,
        argon2_permits: 1,
        argon2_queue: 2,
        ..config()
    }));
    let url = server.url.clone();
    let outcome = flood(24, move |i, agent| {
        agent
            .post(&format!("{url}/v1/residents"))
            .send_json(serde_json::json!({
                "full_name": "Flood Resident",
                "date_of_birth": "1985-03-04",
                "document_number": format!("FL{i:07}"),
                "address": "Street 1",
                "phone": "+74951234567",
                "password": PASSWORD,
            }))
            .unwrap()
    });
    let shed = assert_shed_and_served(&outcome, 201);
    assert!(outcome.len() - shed >= 3, "at least permits + queue got in");
    assert_eq!(metric(&server, "blindpass_shed_argon2_total"), shed as u64);
}

#[test]
fn an_issuance_flood_over_the_signing_queue_is_shed_and_the_rest_are_signed() {
    let server = Arc::new(TestServer::start_with(HttpConfig {
        sign_permits: 1,
        sign_queue: 0,
        ..config()
    }));
    let n = 48;
    let sessions: Vec<String> = (0..n)
        .map(|i| {
            let document = format!("SG{i:07}");
            assert_eq!(server.enrol(&document, None).0, 201);
            server.login(&document)
        })
        .collect();
    let dir = server.directory();
    let window = "2026-12-02";
    let w = Window::parse(window).unwrap();
    let key = dir
        .keys
        .iter()
        .find(|k| k.class.as_str() == "personal" && k.window == w)
        .map(|k| IssuerPublicKey::from_spki(&k.spki().unwrap()).unwrap())
        .unwrap();
    let digest = TokenChallenge::permit(&dir.issuer_name).digest().unwrap();
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|_| begin_issuance(&key, digest).unwrap().0.encode())
        .collect();
    let url = server.url.clone();
    let outcome = flood(n, move |i, agent| {
        agent
            .post(&format!(
                "{url}/token-request?class=personal&window={window}"
            ))
            .header("Authorization", &format!("Bearer {}", sessions[i]))
            .header("Content-Type", "application/private-token-request")
            .send(&bodies[i][..])
            .unwrap()
    });
    let shed = assert_shed_and_served(&outcome, 200);
    assert_eq!(metric(&server, "blindpass_shed_signing_total"), shed as u64);
}
