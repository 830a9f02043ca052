//! A real `blindpass serve` logging at `trace`, with a filter that also
//! asks for its dependencies at `trace`, through enrolment, login,
//! issuance and the end of a period: its whole stderr holds no personal
//! data, no client address, no session token, no resident id and no
//! blinded message or signature bytes, in any encoding.

mod common;

use common::process::{KillOnDrop as Server, agent, free_port, wait_until_answering};
use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use blindpass::crypto::blind::begin_issuance;
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::{Window, WindowKind};
use blindpass::protocol::token::TokenResponse;

/// Every dependency asked for at `trace` by name, as an operator hunting a
/// problem might.
const GREEDY_FILTER: &str = "trace,sled=trace,sled::tree=trace,sled::pagecache=trace,\
    axum=trace,axum::serve=trace,hyper=trace,hyper_util=trace,h2=trace,tower_http=trace,\
    tokio=trace,tokio_cron_scheduler=trace,log=trace,\
    tokio_postgres=trace,tokio_postgres::query=trace,postgres_protocol=trace,deadpool=trace";

fn post(url: &str, body: serde_json::Value, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = agent().post(url);
    if let Some(token) = bearer {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    let mut resp = req.send_json(body).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// The ways bytes might be printed: hex, base64 (both alphabets, padded or
/// not), and Rust's `Debug` of a byte slice (how sled prints keys and
/// values), each of 12 bytes from offset 3 (a multiple of 3, so that the
/// base64 of the stretch is part of the base64 of the whole).
fn encodings(bytes: &[u8]) -> Vec<String> {
    let part = &bytes[3..15];
    let debug = format!("{part:?}");
    vec![
        hex::encode(part),
        hex::encode_upper(part),
        base64::engine::general_purpose::STANDARD.encode(part),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(part),
        debug
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    ]
}

#[test]
fn trace_logs_carry_nothing_personal() {
    logs_carry_nothing_personal("text");
}

#[test]
fn trace_logs_carry_nothing_personal_in_json_either() {
    logs_carry_nothing_personal("json");
}

/// The whole run, with `serve --log-format <format>`.
fn logs_carry_nothing_personal(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let port = free_port();
    let data = dir.path().join("data");
    // On PostgreSQL (BLINDPASS_TEST_STORE=postgres) the database outlives
    // the server: declared first, dropped last.
    let (_, database) = common::store_for_test();
    let store = database
        .as_ref()
        .map_or_else(|| "sled".to_owned(), |db| db.conninfo());
    let child = Command::new(env!("CARGO_BIN_EXE_blindpass"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--store", &store])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--key-horizon-days", "1", "--log-format", format])
        .env("BLINDPASS_PASSPHRASE", "log test passphrase")
        .env("BLINDPASS_LOG", GREEDY_FILTER)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_until_answering(&base);
    // One request from a client address this test knows.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client = raw.local_addr().unwrap();
    raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin = admin.trim();
    let ends = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, period) = post(
        &format!("{base}/v1/admin/periods"),
        serde_json::json!({"name": "logged", "ends_at": ends, "grace_s": 0}),
        Some(admin),
    );
    assert_eq!(status, 201, "{period}");
    let period = period["id"].as_str().unwrap().to_owned();

    let canaries = [
        "Zebulon Quillfeather",
        "1971-07-13",
        "QX7741902",
        "17 Canary Wharf Lane",
        "+74957778899",
        "7708123456",
        "log canary password",
    ];
    let (status, enrolled) = post(
        &format!("{base}/v1/residents"),
        serde_json::json!({"full_name": canaries[0], "date_of_birth": canaries[1],
            "document_number": canaries[2], "address": canaries[3], "phone": canaries[4],
            "employer_tax_number": canaries[5], "password": canaries[6]}),
        None,
    );
    assert_eq!(status, 201, "{enrolled}");
    let resident = enrolled["resident_id"].as_str().unwrap().to_owned();
    let (status, login) = post(
        &format!("{base}/v1/sessions"),
        serde_json::json!({"document_number": canaries[2], "password": canaries[6]}),
        None,
    );
    assert_eq!(status, 201, "{login}");
    let session = login["session_token"].as_str().unwrap().to_owned();

    let mut resp = agent().get(&format!("{base}/v1/directory")).call().unwrap();
    let directory: Directory =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let window = Window::containing(WindowKind::Day, time::OffsetDateTime::now_utc().date()).next();
    let (key, digest) = common::key_for(&directory, "personal", window);
    let (request, _pending) = begin_issuance(&key, digest).unwrap();
    let mut resp = agent()
        .post(&format!(
            "{base}/token-request?class=personal&window={window}"
        ))
        .header("Authorization", &format!("Bearer {session}"))
        .header("Content-Type", "application/private-token-request")
        .send(&request.encode()[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let signature = TokenResponse::decode(&resp.body_mut().read_to_vec().unwrap())
        .unwrap()
        .blind_sig;

    // The period ends now: its key is destroyed before the answer, and
    // its records are purged in the background.
    let (status, ended) = post(
        &format!("{base}/v1/admin/periods/{period}/end"),
        serde_json::json!({}),
        Some(admin),
    );
    assert_eq!(status, 200, "{ended}");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("records-purged")
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "purge not logged");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    // The filter reached the project's own code: the per-request line
    // (debug) and the destruction are there.
    let request_line = match format {
        "json" => r#""route":"/token-request""#,
        _ => "route=/token-request",
    };
    assert!(log.contains(request_line), "{log}");
    assert!(log.contains("period destroyed"), "{log}");

    let mut needles: Vec<(String, String)> = canaries
        .iter()
        .map(|c| (format!("canary {c}"), (*c).to_owned()))
        .collect();
    needles.push(("client address".into(), client.to_string()));
    needles.push(("client port".into(), format!(":{}", client.port())));
    needles.push(("session token".into(), session.clone()));
    // Tokens and ids may start with the (public) period id: look for their
    // ends too.
    needles.push((
        "session token end".into(),
        session[session.len() - 16..].to_owned(),
    ));
    needles.push(("resident id".into(), resident.clone()));
    needles.push((
        "resident id end".into(),
        resident[resident.len() - 16..].to_owned(),
    ));
    for text in encodings(&hex::decode(&resident).unwrap()) {
        needles.push(("resident id bytes".into(), text));
    }
    for text in encodings(&request.blinded_msg) {
        needles.push(("blinded message".into(), text));
    }
    for text in encodings(&signature) {
        needles.push(("blind signature".into(), text));
    }
    let found: Vec<String> = needles
        .iter()
        .filter(|(_, needle)| log.contains(needle.as_str()))
        .map(|(what, needle)| {
            let line = log.lines().find(|l| l.contains(needle.as_str()));
            format!("{what} in: {}", line.unwrap_or_default())
        })
        .collect();
    assert!(found.is_empty(), "found in the log: {found:?}");
    // Any address with a port is the server's own (its listen address).
    for (at, _) in log.match_indices("127.0.0.1:") {
        let port_text: String = log[at + 10..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(port_text, port.to_string(), "a client address is logged");
    }
    // No statement from tokio-postgres: its debug lines print parameters.
    assert!(!log.contains("executing statement"), "{log}");
    // No line from sled at all: its trace lines print keys and values.
    let sled: Vec<&str> = log.lines().filter(|l| l.contains("sled::")).collect();
    assert!(sled.is_empty(), "sled logged: {sled:#?}");
}
