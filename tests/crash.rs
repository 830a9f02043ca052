//! A real `blindpass serve` process killed with SIGKILL mid-life: after a
//! restart nothing acknowledged is lost — the enrolment and the session
//! survive, a charged pass is still charged (its retry returns the same
//! signature for free), and the weekly quota still holds.

mod common;

use common::process::{agent, free_port, wait_until_answering};
use std::process::{Child, Command, Stdio};

use blindpass::crypto::blind::begin_issuance;
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::{Window, WindowKind};

fn start(dir: &std::path::Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_blindpass"))
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--key-horizon-days",
            "2",
        ])
        .env("BLINDPASS_PASSPHRASE", "crash test passphrase")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_answering(&format!("http://127.0.0.1:{port}"));
    child
}

fn post_token(port: u16, session: &str, window: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut resp = agent()
        .post(&format!(
            "http://127.0.0.1:{port}/token-request?class=personal&window={window}"
        ))
        .header("Authorization", &format!("Bearer {session}"))
        .header("Content-Type", "application/private-token-request")
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_vec().unwrap())
}

fn login(port: u16) -> String {
    let mut resp = agent()
        .post(&format!("http://127.0.0.1:{port}/v1/sessions"))
        .send_json(
            serde_json::json!({"document_number": "CRASH0001", "password": "crash test password"}),
        )
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    body["session_token"].as_str().unwrap().to_owned()
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // First start: initialise, then open a period as the operator.
    let mut server = start(dir.path(), port);
    // `serve` re-executed itself in place (same process) with glibc's
    // malloc arenas capped.
    let environ = std::fs::read(format!("/proc/{}/environ", server.id())).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"GLIBC_TUNABLES=glibc.malloc.arena_max=2"),
        "the arena cap is in the server's environment"
    );
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let ends = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let resp = agent()
        .post(&format!("http://127.0.0.1:{port}/v1/admin/periods"))
        .header("Authorization", &format!("Bearer {}", admin.trim()))
        .send_json(serde_json::json!({"name": "crash", "ends_at": ends, "grace_s": 0}))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let resp = agent()
        .post(&format!("http://127.0.0.1:{port}/v1/residents"))
        .send_json(
            serde_json::json!({"full_name": "Crash Test", "date_of_birth": "1980-01-01",
            "document_number": "CRASH0001", "address": "Somewhere 1", "phone": "+74950000002",
            "password": "crash test password"}),
        )
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let session = login(port);

    let mut resp = agent()
        .get(&format!("http://127.0.0.1:{port}/v1/directory"))
        .call()
        .unwrap();
    let directory: Directory =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let window = Window::containing(WindowKind::Day, today).next();
    let (key, digest) = common::key_for(&directory, "personal", window);
    let requests: Vec<Vec<u8>> = (0..3)
        .map(|_| begin_issuance(&key, digest).unwrap().0.encode())
        .collect();
    let w = window.to_string();
    let (status, first) = post_token(port, &session, &w, &requests[0]);
    assert_eq!(status, 200);

    // Crash.
    server.kill().unwrap();
    server.wait().unwrap();
    let mut server = start(dir.path(), port);

    // The session survived; the charged pass is replayed, not recharged.
    let (status, again) = post_token(port, &session, &w, &requests[0]);
    assert_eq!((status, &again), (200, &first));
    let (status, _) = post_token(port, &session, &w, &requests[1]);
    assert_eq!(status, 200);
    let (status, _) = post_token(port, &session, &w, &requests[2]);
    assert_eq!(status, 429, "quota holds across the crash");
    // The enrolment survived too.
    assert!(!login(port).is_empty());
    server.kill().unwrap();
    server.wait().unwrap();
}
