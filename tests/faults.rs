//! The fault suite: real `blindpass serve` processes killed with SIGKILL
//! during issuance, enrolment and destruction; data directories damaged on
//! disk; a disk that fills up under a running server. Each scenario asserts
//! that nothing acknowledged is lost, that no resident ever holds more
//! valid passes than the quota, and that damage is refused without
//! touching a file.
//!
//! Timing is randomised from a seed printed at the start of each test;
//! `BLINDPASS_FAULT_SEED=<n>` replays the same kill delays and choices
//! (thread scheduling still varies).

mod common;

use common::process::{agent_with_timeout, free_port};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blindpass::crypto::blind::{IssuerPublicKey, PendingToken, begin_issuance, finalize};
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::{Window, WindowKind};
use blindpass::protocol::token::TokenResponse;
use sha2::{Digest as _, Sha256};

const PASSPHRASE: &str = "fault suite passphrase";
const PASSWORD: &str = "fault suite password";
/// Personal passes per resident and ISO week (the default class config).
const PERSONAL_QUOTA: usize = 2;

// ---------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------

/// SplitMix64: small, seedable and good enough to pick delays.
struct Rng(u64);

impl Rng {
    /// Seeded from `BLINDPASS_FAULT_SEED`, else from the clock; the seed is
    /// printed so a failure can be replayed.
    fn seeded(test: &str) -> Self {
        let seed = std::env::var("BLINDPASS_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (replay with BLINDPASS_FAULT_SEED={seed})");
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

// ---------------------------------------------------------------------------
// A real server process
// ---------------------------------------------------------------------------

fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(20))
}

/// An HTTP answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A server-side failure answered cleanly: 5xx and an RFC 9457 body.
    fn is_clean_5xx(&self) -> bool {
        (500..600).contains(&self.status)
            && self.content_type.starts_with("application/problem+json")
            && self.json()["status"].as_u64() == Some(u64::from(self.status))
    }
}

/// One request; `Err` when the connection fails (the server was killed).
fn send(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Answer, ureq::Error> {
    let agent = agent();
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut resp = match (method, body) {
        ("GET", _) => {
            let mut req = agent.get(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()?
        }
        (_, body) => {
            let mut req = agent.post(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            match body {
                Some((content_type, bytes)) => {
                    req.header("Content-Type", content_type).send(&bytes[..])?
                }
                None => req.send_empty()?,
            }
        }
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.body_mut().read_to_vec()?;
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

fn json_body(value: &serde_json::Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", serde_json::to_vec(value).unwrap()))
}

/// How a start attempt ended.
enum Start {
    /// `/healthz` answered.
    Serving(Child),
    /// The process exited first.
    Exited(ExitStatus),
}

/// A `blindpass serve` child; killed with SIGKILL when dropped, so a failed
/// assertion leaves no process behind.
struct Server {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    log: PathBuf,
    /// The blkio cgroup the process is confined to (a slowed disk).
    cgroup: Option<PathBuf>,
}

impl Server {
    fn spawn(data: &Path, log: &Path, port: u16) -> Child {
        let log = File::options().create(true).append(true).open(log).unwrap();
        Command::new(env!("CARGO_BIN_EXE_blindpass"))
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--key-horizon-days", "2"])
            .args(["--rate-burst", "100000", "--rate-per-s", "100000"])
            .env("BLINDPASS_PASSPHRASE", PASSPHRASE)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Starts a server (in `cgroup` if given) and waits until it serves
    /// or exits.
    fn try_start(data: &Path, log: &Path, cgroup: Option<&Path>) -> (Start, u16) {
        let port = free_port();
        let mut child = Self::spawn(data, log, port);
        if let Some(cgroup) = cgroup {
            // Moved before it opens the data directory: `serve` spends its
            // first milliseconds re-executing itself.
            std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
        }
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (Start::Exited(status), port);
            }
            if send(
                "GET",
                &format!("http://127.0.0.1:{port}/healthz"),
                None,
                None,
            )
            .is_ok()
            {
                return (Start::Serving(child), port);
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server neither served nor exited within 60 s:\n{}",
                    read_log(log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a server that must come up.
    fn start(data: &Path, log: &Path) -> Self {
        Self::start_in(data, log, None)
    }

    /// Starts a server that must come up, in `cgroup` if given.
    fn start_in(data: &Path, log: &Path, cgroup: Option<&Path>) -> Self {
        match Self::try_start(data, log, cgroup) {
            (Start::Serving(child), port) => Self {
                child: Some(child),
                port,
                data: data.to_owned(),
                log: log.to_owned(),
                cgroup: cgroup.map(Path::to_owned),
            },
            (Start::Exited(status), _) => {
                panic!("the server exited ({status}) at start:\n{}", read_log(log))
            }
        }
    }

    fn restart(&mut self) {
        self.kill();
        *self = Self::start_in(
            &self.data.clone(),
            &self.log.clone(),
            self.cgroup.clone().as_deref(),
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Opens an isolation period ending in ten days; returns its id.
    fn open_period(&self, name: &str, grace_s: u64) -> String {
        let ends = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let answer = send(
            "POST",
            &self.url("/v1/admin/periods"),
            Some(&self.admin_token()),
            json_body(&serde_json::json!({"name": name, "ends_at": ends, "grace_s": grace_s})),
        )
        .unwrap();
        assert_eq!(answer.status, 201, "{}", answer.text());
        answer.json()["id"].as_str().unwrap().to_owned()
    }

    fn end_period(&self, id: &str) -> Result<Answer, ureq::Error> {
        send(
            "POST",
            &self.url(&format!("/v1/admin/periods/{id}/end")),
            Some(&self.admin_token()),
            None,
        )
    }

    /// Ids of the live periods.
    fn live_periods(&self) -> Vec<String> {
        let answer = send(
            "GET",
            &self.url("/v1/admin/periods"),
            Some(&self.admin_token()),
            None,
        )
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let list = answer.json();
        let items = list["live"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn enrol(&self, document: &str) -> Result<Answer, ureq::Error> {
        enrol_at(&self.url(""), document)
    }

    /// Logs in; returns the status and the session token if 201.
    fn login(&self, document: &str) -> (u16, Option<String>) {
        let answer = send(
            "POST",
            &self.url("/v1/sessions"),
            None,
            json_body(&serde_json::json!({"document_number": document, "password": PASSWORD})),
        )
        .unwrap();
        let token = answer.json()["session_token"].as_str().map(str::to_owned);
        (answer.status, token)
    }

    fn directory(&self) -> Directory {
        let answer = send("GET", &self.url("/v1/directory"), None, None).unwrap();
        assert_eq!(answer.status, 200);
        serde_json::from_slice(&answer.body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn enrol_at(base: &str, document: &str) -> Result<Answer, ureq::Error> {
    send(
        "POST",
        &format!("{base}/v1/residents"),
        None,
        json_body(&serde_json::json!({
            "full_name": format!("Resident {document}"),
            "date_of_birth": "1980-01-01",
            "document_number": document,
            "address": "Fault Street 1",
            "phone": "+74950000003",
            "password": PASSWORD,
        })),
    )
}

fn post_token(
    base: &str,
    session: &str,
    window: &str,
    request: &[u8],
) -> Result<Answer, ureq::Error> {
    send(
        "POST",
        &format!("{base}/token-request?class=personal&window={window}"),
        Some(session),
        Some(("application/private-token-request", request.to_vec())),
    )
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The personal key for tomorrow's window (as `tests/crash.rs` uses), and
/// the challenge digest.
fn personal_key(directory: &Directory) -> (IssuerPublicKey, [u8; 32], String) {
    let today = time::OffsetDateTime::now_utc().date();
    let window = Window::containing(WindowKind::Day, today).next();
    let (key, digest) = common::key_for(directory, "personal", window);
    (key, digest, window.to_string())
}

/// Whether a 200 body is a signature that finalises into a valid token.
fn finalizes(pending: &PendingToken, body: &[u8]) -> bool {
    TokenResponse::decode(body)
        .ok()
        .and_then(|r| finalize(pending, &r).ok())
        .is_some()
}

// ---------------------------------------------------------------------------
// The data directory on disk
// ---------------------------------------------------------------------------

/// SHA-256 of every file under `dir`, by relative path.
fn hashes(dir: &Path) -> BTreeMap<PathBuf, [u8; 32]> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let rel = path.strip_prefix(dir).unwrap().to_owned();
                out.insert(rel, Sha256::digest(&bytes).into());
            }
        }
    }
    out
}

/// Paths that differ between two snapshots.
fn changed(
    before: &BTreeMap<PathBuf, [u8; 32]>,
    after: &BTreeMap<PathBuf, [u8; 32]>,
) -> Vec<PathBuf> {
    let paths: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .cloned()
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
}

/// The records of `audit/entries.log` (`u32 BE length ‖ JSON`): each
/// record's offset and parsed entry; panics on a damaged record. A last
/// record that runs past the end is one the running server is still
/// appending (the purge thread appends `records-purged` after the end call
/// has answered), so it is left out rather than read half-written.
fn audit_records(data: &Path) -> Vec<(usize, serde_json::Value)> {
    let bytes = std::fs::read(data.join("audit/entries.log")).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if at + 4 + len > bytes.len() {
            break;
        }
        let entry = serde_json::from_slice(&bytes[at + 4..at + 4 + len]).unwrap();
        out.push((at, entry));
        at += 4 + len;
    }
    out
}

/// How many `kind` entries the audit log holds for `period`.
fn audit_count(data: &Path, kind: &str, period: &str) -> usize {
    audit_records(data)
        .iter()
        .filter(|(_, e)| e["event"]["kind"] == kind && e["event"]["period"] == period)
        .count()
}

/// A stopped data directory with history: two periods (one destroyed,
/// so the master was rotated), residents and a charged pass.
fn baseline(data: &Path, logs: &Path) {
    let mut server = Server::start(data, &logs.join("baseline.log"));
    server.open_period("kept", 3600);
    assert_eq!(server.enrol("BASE0001").unwrap().status, 201);
    let (status, session) = server.login("BASE0001");
    assert_eq!(status, 201);
    let (key, digest, window) = personal_key(&server.directory());
    let (request, _) = begin_issuance(&key, digest).unwrap();
    let answer = post_token(
        &server.url(""),
        &session.unwrap(),
        &window,
        &request.encode(),
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    let doomed = server.open_period("doomed", 0);
    assert_eq!(server.enrol("BASE0002").unwrap().status, 201);
    assert_eq!(server.end_period(&doomed).unwrap().status, 200);
    assert_eq!(audit_count(data, "period-key-destroyed", &doomed), 1);
    server.kill();
}

/// Starts `serve` on a damaged directory and checks for a clean refusal:
/// a non-zero exit without a panic, a message naming the damage (one of
/// `keywords`), and not one file changed. `Err` says what went wrong.
fn check_refused(data: &Path, log: &Path, what: &str, keywords: &[&str]) -> Result<(), String> {
    let before = hashes(data);
    let _ = std::fs::remove_file(log);
    let (start, _) = Server::try_start(data, log, None);
    let stderr = read_log(log);
    let mut problems = Vec::new();
    match start {
        Start::Serving(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            problems.push("the service started on it".to_owned());
        }
        Start::Exited(status) => {
            if status.success() {
                problems.push(format!("exit {status}"));
            }
            if stderr.contains("panicked") {
                problems.push("a panic".to_owned());
            }
            let lower = stderr.to_lowercase();
            if !(lower.contains("error:") && keywords.iter().any(|k| lower.contains(k))) {
                problems.push(format!("the message names none of {keywords:?}"));
            }
        }
    }
    let diff = changed(&before, &hashes(data));
    if !diff.is_empty() {
        problems.push(format!("the attempt changed {diff:?}"));
    }
    if problems.is_empty() {
        eprintln!("{what}: refused: {}", stderr.lines().last().unwrap_or(""));
        Ok(())
    } else {
        Err(format!("{what}: {}\n{stderr}", problems.join("; ")))
    }
}

/// Panics listing every case that was not refused cleanly.
fn assert_all_refused(results: Vec<Result<(), String>>) {
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// kill -9 during issuance
// ---------------------------------------------------------------------------

/// A resident hammering the issuer with a fixed set of blinded messages
/// (so retries of the same message happen, concurrently too).
struct Resident {
    document: String,
    session: String,
    requests: Vec<Vec<u8>>,
    pending: Vec<PendingToken>,
    /// Message index → the signature bytes acknowledged for it.
    granted: BTreeMap<usize, Vec<u8>>,
}

const MESSAGES_PER_RESIDENT: usize = 3;

/// After a restart, each resident first asks with every message not yet
/// answered (a resident at the quota must be refused all of them: had an
/// acknowledged charge been lost, one would be granted), then retries every
/// acknowledged one, which must replay the same signature.
///
/// The order matters: RSA blind signatures are deterministic, so the retry
/// of a lost charge would be signed and charged afresh and look like a
/// replay; only a fresh message shows the lost charge.
fn sweep_after_restart(server: &Server, residents: &mut [Resident], window: &str, round: usize) {
    for r in residents.iter_mut() {
        for idx in 0..MESSAGES_PER_RESIDENT {
            if r.granted.contains_key(&idx) {
                continue;
            }
            let answer = post_token(&server.url(""), &r.session, window, &r.requests[idx]).unwrap();
            match answer.status {
                200 => {
                    assert!(finalizes(&r.pending[idx], &answer.body));
                    r.granted.insert(idx, answer.body);
                }
                429 => {}
                status => panic!("round {round}: status {status}: {}", answer.text()),
            }
        }
        assert!(
            r.granted.len() <= PERSONAL_QUOTA,
            "round {round}: resident {} holds {} distinct valid passes: an acknowledged \
             charge was lost",
            r.document,
            r.granted.len()
        );
        for (idx, sig) in &r.granted {
            let answer =
                post_token(&server.url(""), &r.session, window, &r.requests[*idx]).unwrap();
            assert_eq!(
                (answer.status, &answer.body),
                (200, sig),
                "round {round}: resident {} message {idx}: the acknowledged pass does not replay",
                r.document
            );
        }
    }
}

/// When the SIGKILL comes in an issuance round.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// After a random delay of up to 250 ms.
    RandomDelay,
    /// As soon as the first few passes of the round are acknowledged: the
    /// moment a charge that was answered but not yet durable would be lost.
    FirstAnswers,
}

#[test]
fn sigkill_during_issuance_loses_no_acknowledged_pass_and_never_exceeds_the_quota() {
    let data = tempfile::tempdir().unwrap();
    issuance_under_sigkill(
        "issuance, random kill",
        data.path(),
        None,
        KillAt::RandomDelay,
        4,
    );
}

#[test]
fn sigkill_right_after_a_pass_is_answered_loses_no_acknowledged_pass() {
    let data = tempfile::tempdir().unwrap();
    issuance_under_sigkill(
        "issuance, kill on answer",
        data.path(),
        None,
        KillAt::FirstAnswers,
        4,
    );
}

#[test]
fn on_a_slow_disk_sigkill_during_issuance_loses_no_acknowledged_pass() {
    const TEST: &str = "on_a_slow_disk_sigkill_during_issuance_loses_no_acknowledged_pass";
    let Some(disk) = SlowDisk::set_up_or_say_why(TEST) else {
        return;
    };
    for (n, kill_at) in [KillAt::RandomDelay, KillAt::FirstAnswers]
        .into_iter()
        .enumerate()
    {
        issuance_under_sigkill(
            &format!("slow disk, {kill_at:?}"),
            &disk.path().join(format!("data{n}")),
            Some(disk.cgroup()),
            kill_at,
            8,
        );
    }
}

/// Rounds of residents asking for personal passes concurrently, several
/// workers each over the same few blinded messages (so retries of one
/// message race each other), ended by a SIGKILL; between rounds and at the
/// end, [`sweep_after_restart`] checks that no acknowledged charge was lost.
fn issuance_under_sigkill(
    test: &str,
    data: &Path,
    cgroup: Option<&Path>,
    kill_at: KillAt,
    rounds: usize,
) {
    const NEW_RESIDENTS_PER_ROUND: usize = 3;
    const WORKERS_PER_NEW_RESIDENT: usize = 3;
    let mut rng = Rng::seeded(test);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut server = Server::start_in(data, &log, cgroup);
    server.open_period("issuance", 3600);
    let (key, digest, window) = personal_key(&server.directory());
    let mut residents: Vec<Resident> = Vec::new();
    let mut acknowledged_total = 0;

    for round in 0..rounds {
        if round > 0 {
            server.restart();
            sweep_after_restart(&server, &mut residents, &window, round);
        }
        for n in 0..NEW_RESIDENTS_PER_ROUND {
            let document = format!("ISS{round}{n:04}");
            assert_eq!(server.enrol(&document).unwrap().status, 201);
            let (status, session) = server.login(&document);
            assert_eq!(status, 201);
            let (requests, pending) = (0..MESSAGES_PER_RESIDENT)
                .map(|_| {
                    let (request, pending) = begin_issuance(&key, digest).unwrap();
                    (request.encode(), pending)
                })
                .unzip();
            residents.push(Resident {
                document,
                session: session.unwrap(),
                requests,
                pending,
                granted: BTreeMap::new(),
            });
        }

        // Several workers per resident pick messages at random until the
        // server dies under them.
        let base = server.url("");
        let window_text = window.clone();
        // Residents of earlier rounds (at the quota) keep asking too, with
        // one worker each: replays and refusals under the kill.
        let first_new = residents.len() - NEW_RESIDENTS_PER_ROUND;
        let work: Vec<(usize, String, Vec<Vec<u8>>)> = residents
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.session.clone(), r.requests.clone()))
            .collect();
        let answered = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let mut handles = Vec::new();
        for (i, session, requests) in work {
            let workers = if i >= first_new {
                WORKERS_PER_NEW_RESIDENT
            } else {
                1
            };
            for _ in 0..workers {
                let (base, window, session, requests, answered) = (
                    base.clone(),
                    window_text.clone(),
                    session.clone(),
                    requests.clone(),
                    answered.clone(),
                );
                let mut rng = rng.fork();
                handles.push(std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    loop {
                        let idx = rng.below(requests.len() as u64) as usize;
                        match post_token(&base, &session, &window, &requests[idx]) {
                            Ok(answer) => {
                                if answer.status == 200 && i >= first_new {
                                    answered.fetch_add(1, Ordering::SeqCst);
                                }
                                answers.push((i, idx, answer));
                            }
                            Err(_) => return answers,
                        }
                    }
                }));
            }
        }
        match kill_at {
            KillAt::RandomDelay => std::thread::sleep(Duration::from_millis(rng.below(250))),
            KillAt::FirstAnswers => {
                let wanted = 1 + rng.below(3) as usize;
                while answered.load(Ordering::SeqCst) < wanted
                    && t0.elapsed() < Duration::from_secs(5)
                {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        server.kill();
        let delay = t0.elapsed();
        let mut statuses = BTreeMap::<u16, usize>::new();
        for handle in handles {
            for (i, idx, answer) in handle.join().unwrap() {
                *statuses.entry(answer.status).or_default() += 1;
                match answer.status {
                    200 => {
                        let r = &mut residents[i];
                        assert!(
                            finalizes(&r.pending[idx], &answer.body),
                            "a 200 whose signature does not verify"
                        );
                        if let Some(earlier) = r.granted.get(&idx) {
                            assert_eq!(earlier, &answer.body, "a replay changed the signature");
                        } else {
                            acknowledged_total += 1;
                        }
                        r.granted.insert(idx, answer.body);
                    }
                    429 => {}
                    other => panic!(
                        "round {round}: unexpected status {other}: {}",
                        answer.text()
                    ),
                }
            }
        }
        eprintln!("round {round}: killed after {delay:?}; answers by status {statuses:?}");
        for r in &residents {
            assert!(
                r.granted.len() <= PERSONAL_QUOTA,
                "resident {} was granted {} distinct passes",
                r.document,
                r.granted.len()
            );
        }
    }

    // After a last restart every resident has met the quota exactly, which
    // also shows the server is not simply refusing everything.
    server.restart();
    sweep_after_restart(&server, &mut residents, &window, rounds);
    for r in &residents {
        assert_eq!(
            r.granted.len(),
            PERSONAL_QUOTA,
            "resident {}: distinct valid personal passes granted over all rounds",
            r.document
        );
    }
    eprintln!(
        "{} residents, {acknowledged_total} passes acknowledged before a kill",
        residents.len()
    );
}

// ---------------------------------------------------------------------------
// kill -9 during enrolment
// ---------------------------------------------------------------------------

#[test]
fn sigkill_during_enrolment_loses_no_acknowledged_enrolment() {
    let data = tempfile::tempdir().unwrap();
    enrolment_under_sigkill("enrolment", data.path(), None);
}

#[test]
fn on_a_slow_disk_sigkill_during_enrolment_loses_no_acknowledged_enrolment() {
    const TEST: &str = "on_a_slow_disk_sigkill_during_enrolment_loses_no_acknowledged_enrolment";
    if let Some(disk) = SlowDisk::set_up_or_say_why(TEST) {
        enrolment_under_sigkill(TEST, &disk.path().join("data"), Some(disk.cgroup()));
    }
}

/// Rounds of concurrent enrolments ended by a SIGKILL: every acknowledged
/// enrolment can log in after the restart, and one cut off is there whole
/// or not at all.
fn enrolment_under_sigkill(test: &str, data: &Path, cgroup: Option<&Path>) {
    const ROUNDS: usize = 3;
    const WORKERS: usize = 3;
    let mut rng = Rng::seeded(test);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut server = Server::start_in(data, &log, cgroup);
    server.open_period("enrolment", 3600);
    let mut acknowledged: Vec<String> = Vec::new();

    for round in 0..ROUNDS {
        let base = server.url("");
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (base, stop) = (base.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (mut acked, mut unknown) = (Vec::new(), Vec::new());
                    for n in 0.. {
                        let document = format!("ENR{round}{w}{n:04}");
                        match enrol_at(&base, &document) {
                            Ok(a) if a.status == 201 => acked.push(document),
                            Ok(a) => panic!("enrolment answered {}: {}", a.status, a.text()),
                            Err(_) => {
                                unknown.push(document);
                                break;
                            }
                        }
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    (acked, unknown)
                })
            })
            .collect();
        let delay = Duration::from_millis(100 + rng.below(900));
        std::thread::sleep(delay);
        server.kill();
        stop.store(true, Ordering::Relaxed);
        let mut unknown = Vec::new();
        let before = acknowledged.len();
        for handle in handles {
            let (a, u) = handle.join().unwrap();
            acknowledged.extend(a);
            unknown.extend(u);
        }
        eprintln!(
            "round {round}: killed after {delay:?}; {} acknowledged, {} in flight",
            acknowledged.len() - before,
            unknown.len()
        );
        server.restart();
        // An enrolment cut off by the kill is either there whole or not at
        // all: enrolling again is accepted or refused as a duplicate, and
        // either way the resident can then log in.
        for document in &unknown {
            let status = server.enrol(document).unwrap().status;
            assert!(
                status == 201 || status == 409,
                "re-enrolling {document} after the kill answered {status}"
            );
            assert_eq!(server.login(document).0, 201, "{document}");
        }
    }
    // Every acknowledged enrolment of every round can log in.
    for document in &acknowledged {
        assert_eq!(
            server.login(document).0,
            201,
            "acknowledged enrolment {document} was lost"
        );
    }
    assert!(!acknowledged.is_empty(), "no enrolment was acknowledged");
}

// ---------------------------------------------------------------------------
// kill -9 during destruction and master-key rotation
// ---------------------------------------------------------------------------

#[test]
fn sigkill_during_destruction_ends_destroyed_and_spares_other_periods() {
    let data = tempfile::tempdir().unwrap();
    destruction_under_sigkill("destruction", data.path(), None);
}

#[test]
fn on_a_slow_disk_sigkill_during_destruction_ends_destroyed_and_spares_other_periods() {
    const TEST: &str =
        "on_a_slow_disk_sigkill_during_destruction_ends_destroyed_and_spares_other_periods";
    if let Some(disk) = SlowDisk::set_up_or_say_why(TEST) {
        destruction_under_sigkill(TEST, &disk.path().join("data"), Some(disk.cgroup()));
    }
}

/// Rounds of a period ended (grace 0, so destroyed at once, rotating the
/// master key) while a SIGKILL lands somewhere in it, and in about half the
/// rounds a second one during the restart's recovery: after the restart
/// the period is destroyed exactly once in the log, its residents are gone
/// and the other period's are intact.
fn destruction_under_sigkill(test: &str, data: &Path, cgroup: Option<&Path>) {
    const ROUNDS: usize = 8;
    let mut rng = Rng::seeded(test);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut server = Server::start_in(data, &log, cgroup);
    let kept = server.open_period("kept", 3600);
    assert_eq!(server.enrol("KEEP0001").unwrap().status, 201);
    // How long an end with destruction takes here, so the kills spread
    // over the whole of it: intent, ring rewrite, master replacement,
    // scrubbing, audit entries.
    let calibration = server.open_period("calibration", 0);
    let t0 = Instant::now();
    assert_eq!(server.end_period(&calibration).unwrap().status, 200);
    let took = t0.elapsed();
    let spread_us = (took.as_micros() as u64 * 5 / 4).max(5_000);
    eprintln!("an end with destruction took {took:?}; kills within {spread_us} µs");

    for round in 0..ROUNDS {
        let doomed = server.open_period(&format!("doomed {round}"), 0);
        let doomed_resident = format!("DOOM{round}0001");
        assert_eq!(server.enrol(&doomed_resident).unwrap().status, 201);
        assert_eq!(server.login(&doomed_resident).0, 201);

        // The end call (grace 0: destroy now) races a SIGKILL.
        let (url, token) = (
            server.url(&format!("/v1/admin/periods/{doomed}/end")),
            server.admin_token(),
        );
        let ender = std::thread::spawn(move || {
            send("POST", &url, Some(&token), None)
                .ok()
                .map(|a| a.status)
        });
        let delay = Duration::from_micros(rng.below(spread_us));
        std::thread::sleep(delay);
        server.kill();
        let answered = ender.join().unwrap();
        eprintln!("round {round}: killed after {delay:?}; end answered {answered:?}");
        if let Some(status) = answered {
            assert_eq!(status, 200);
        }

        if rng.below(2) == 0 {
            // A second crash, while the restart recovers.
            let mut child = Server::spawn(data, &log, free_port());
            if let Some(cgroup) = cgroup {
                std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
            }
            let delay = Duration::from_micros(rng.below(400_000));
            std::thread::sleep(delay);
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("round {round}: killed again {delay:?} into the restart");
        }
        // The service starts and the vault opens with the passphrase.
        server.restart();
        let live_after_restart = server.live_periods().contains(&doomed);
        eprintln!(
            "round {round}: after the restart the period is {}",
            if live_after_restart {
                "live (ended again)"
            } else {
                "destroyed"
            }
        );
        if live_after_restart {
            // The end never took effect, so the operator asks again.
            assert_eq!(answered, None, "an acknowledged end left the period live");
            assert_eq!(server.end_period(&doomed).unwrap().status, 200);
        }
        assert!(
            !server.live_periods().contains(&doomed),
            "round {round}: the ended period is still live"
        );
        assert_eq!(
            audit_count(data, "period-key-destroyed", &doomed),
            1,
            "round {round}: period-key-destroyed entries for the ended period"
        );
        assert_eq!(
            server.login(&doomed_resident).0,
            401,
            "destroyed data opens"
        );
        // The other period is intact.
        assert!(server.live_periods().contains(&kept));
        assert_eq!(
            server.login("KEEP0001").0,
            201,
            "round {round}: kept resident"
        );
    }
    assert_eq!(audit_count(data, "period-key-destroyed", &kept), 0);
}

// ---------------------------------------------------------------------------
// Damaged files
// ---------------------------------------------------------------------------

#[test]
fn a_damaged_record_in_the_middle_of_the_audit_log_is_refused_and_changes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let original = base.path().join("data");
    baseline(&original, logs.path());
    let records = audit_records(&original);
    assert!(records.len() >= 6, "the baseline log is long enough");
    let (middle, _) = records[records.len() / 2];
    let (next, _) = records[records.len() / 2 + 1];

    type Damage = fn(&mut Vec<u8>, usize, usize);
    let cases: [(&str, Damage); 3] = [
        ("a flipped byte in a middle record", |bytes, at, _| {
            bytes[at + 4] ^= 0xFF;
        }),
        ("a damaged length prefix in the middle", |bytes, at, _| {
            bytes[at] = 0x7F;
        }),
        ("a middle record cut short", |bytes, at, next| {
            bytes.drain(at + 4 + (next - at - 4) / 2..next);
        }),
    ];
    let mut results = Vec::new();
    for (what, damage) in cases {
        let data = base.path().join(what.replace(' ', "-"));
        copy_dir(&original, &data);
        let path = data.join("audit/entries.log");
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes, middle, next);
        std::fs::write(&path, &bytes).unwrap();
        results.push(check_refused(
            &data,
            &logs.path().join("refused.log"),
            what,
            &["audit", "entries.log", "journal"],
        ));
    }
    assert_all_refused(results);
}

#[test]
fn a_torn_last_audit_record_is_cut_and_the_service_starts() {
    let base = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    baseline(&data, logs.path());
    let path = data.join("audit/entries.log");
    let intact = std::fs::read(&path).unwrap();
    let count = audit_records(&data).len();
    // A write cut off by the crash: a length prefix promising more bytes
    // than were written.
    let mut torn = intact.clone();
    torn.extend_from_slice(&200u32.to_be_bytes());
    torn.extend_from_slice(br#"{"seq":99,"at":"2026-"#);
    std::fs::write(&path, &torn).unwrap();

    let server = Server::start(&data, &logs.path().join("serve.log"));
    let after = std::fs::read(&path).unwrap();
    assert!(after.starts_with(&intact), "intact records were kept");
    let records = audit_records(&data);
    assert!(records.len() > count, "the log goes on after the cut");
    assert_eq!(records[count].0, intact.len(), "the torn bytes are gone");
    assert_eq!(records[count].1["event"]["kind"], "service-started");
    assert_eq!(server.login("BASE0001").0, 201);
}

#[test]
fn a_damaged_key_ring_or_master_slot_is_refused_and_changes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let original = base.path().join("data");
    baseline(&original, logs.path());
    let rings: Vec<PathBuf> = std::fs::read_dir(original.join("vault"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("keyring."))
        .collect();
    assert_eq!(rings.len(), 1, "one ring after a clean rotation: {rings:?}");
    let ring = rings[0].strip_prefix(&original).unwrap().to_owned();
    let slot = PathBuf::from("vault/master.slot");

    let cases: [(&str, &Path, bool); 4] = [
        ("a flipped byte in the key ring", &ring, false),
        ("a truncated key ring", &ring, true),
        ("a flipped byte in the master slot", &slot, false),
        ("a truncated master slot", &slot, true),
    ];
    let mut results = Vec::new();
    for (what, file, truncate) in cases {
        let data = base.path().join(what.replace(' ', "-"));
        copy_dir(&original, &data);
        let path = data.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        if truncate {
            bytes.truncate(bytes.len() / 2);
        } else {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
        }
        std::fs::write(&path, &bytes).unwrap();
        results.push(check_refused(
            &data,
            &logs.path().join("refused.log"),
            what,
            &["ring", "slot", "vault", "passphrase", "master"],
        ));
    }
    assert_all_refused(results);
}

#[test]
fn a_missing_or_damaged_store_is_refused_with_a_clear_message() {
    let base = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let original = base.path().join("data");
    baseline(&original, logs.path());
    let sled_db = original.join("sled/db");
    assert!(sled_db.is_file(), "sled keeps its data in sled/db");

    type Damage = fn(&Path);
    let cases: [(&str, Damage); 2] = [
        ("a deleted store", |data| {
            std::fs::remove_dir_all(data.join("sled")).unwrap();
        }),
        ("a damaged store", |data| {
            let path = data.join("sled/db");
            let mut bytes = std::fs::read(&path).unwrap();
            // Scribble over the middle third: records, not just padding.
            let (from, to) = (bytes.len() / 3, 2 * bytes.len() / 3);
            for (i, b) in bytes[from..to].iter_mut().enumerate() {
                *b ^= 0x5A ^ (i as u8);
            }
            std::fs::write(&path, &bytes).unwrap();
        }),
    ];
    let mut results = Vec::new();
    for (what, damage) in cases {
        let data = base.path().join(what.replace(' ', "-"));
        copy_dir(&original, &data);
        damage(&data);
        results.push(check_refused(
            &data,
            &logs.path().join("refused.log"),
            what,
            &["sled", "store", "database"],
        ));
    }
    assert_all_refused(results);
}

// ---------------------------------------------------------------------------
// A slow disk
// ---------------------------------------------------------------------------

/// Write operations per second the slowed disk allows.
const SLOW_DISK_WRITE_IOPS: u32 = 20;

/// An ext4 file system on a loop device whose writes are throttled (blkio
/// cgroup, [`SLOW_DISK_WRITE_IOPS`]) for the processes moved into its
/// cgroup: an fsync there takes tens of milliseconds, as on a busy disk.
/// Everything is undone when dropped.
struct SlowDisk {
    /// Holds the image file; removed after the loop device is detached.
    _image: tempfile::TempDir,
    mount: tempfile::TempDir,
    device: String,
    cgroup: PathBuf,
}

impl SlowDisk {
    /// Sets one up, or prints loudly why it cannot (it needs root, loop
    /// devices and the cgroup v1 blkio controller) and returns `None`.
    fn set_up_or_say_why(test: &str) -> Option<Self> {
        match Self::set_up() {
            Ok(disk) => Some(disk),
            Err(why) => {
                eprintln!(
                    "\n!!!!!!!! SKIPPED {test}: no throttled disk here ({why}); it needs root, \
                     a loop device and the blkio cgroup controller !!!!!!!!\n"
                );
                None
            }
        }
    }

    fn set_up() -> Result<Self, String> {
        fn run(cmd: &mut Command) -> Result<String, String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        let blkio = Path::new("/sys/fs/cgroup/blkio");
        if !blkio.join("blkio.throttle.write_iops_device").exists() {
            return Err("no cgroup v1 blkio controller".into());
        }
        let image = tempfile::tempdir().map_err(|e| e.to_string())?;
        let file = image.path().join("disk.img");
        File::create(&file)
            .and_then(|f| f.set_len(256 << 20))
            .map_err(|e| e.to_string())?;
        let device = run(Command::new("losetup").args(["-f", "--show"]).arg(&file))?;
        let mount = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cgroup = blkio.join(format!(
            "blindpass-faults-{}-{}",
            std::process::id(),
            device.trim_start_matches("/dev/")
        ));
        // From here on, `Drop` undoes what was done.
        let disk = Self {
            _image: image,
            mount,
            device,
            cgroup,
        };
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&disk.device))?;
        run(Command::new("mount")
            .arg(&disk.device)
            .arg(disk.mount.path()))?;
        let rdev = std::os::unix::fs::MetadataExt::rdev(
            &std::fs::metadata(&disk.device).map_err(|e| e.to_string())?,
        );
        let (major, minor) = (
            (rdev >> 8) & 0xfff,
            (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
        );
        std::fs::create_dir(&disk.cgroup).map_err(|e| e.to_string())?;
        std::fs::write(
            disk.cgroup.join("blkio.throttle.write_iops_device"),
            format!("{major}:{minor} {SLOW_DISK_WRITE_IOPS}"),
        )
        .map_err(|e| e.to_string())?;
        Ok(disk)
    }

    fn path(&self) -> &Path {
        self.mount.path()
    }

    fn cgroup(&self) -> &Path {
        &self.cgroup
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount.path()).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        // A killed process leaves its cgroup once reaped; allow a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------
// A full disk
// ---------------------------------------------------------------------------

/// A small tmpfs mounted for one test; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib`, or says why it cannot.
    fn mount(size_mib: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `path` until a write fails for lack of
/// space; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = File::create(path).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0xA5u8; chunk];
        loop {
            match file.write(&buf) {
                Ok(n) if n > 0 => written += n as u64,
                _ => break,
            }
        }
        let _ = file.flush();
    }
    let _ = file.sync_all();
    written
}

#[test]
fn a_full_disk_fails_writes_cleanly_and_loses_nothing() {
    full_disk("a_full_disk_fails_writes_cleanly_and_loses_nothing", false);
}

#[test]
fn after_a_full_disk_the_server_recovers_or_reports_itself_not_ready() {
    full_disk(
        "after_a_full_disk_the_server_recovers_or_reports_itself_not_ready",
        true,
    );
}

/// Fills a tmpfs under a running server: every write fails cleanly
/// (5xx problem+json), the server stays up, and after the space returns
/// and a SIGKILL and restart, everything acknowledged is there. With
/// `check_recovery`, the running server must also take writes again once
/// the space returns, or answer `/readyz` with 503.
fn full_disk(test: &str, check_recovery: bool) {
    let tmpfs = match Tmpfs::mount(48) {
        Ok(t) => t,
        Err(why) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: cannot mount a tmpfs here ({why}); \
                 it needs root (CAP_SYS_ADMIN) !!!!!!!!\n"
            );
            return;
        }
    };
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let data = tmpfs.path().join("data");
    let mut server = Server::start(&data, &log);
    server.open_period("full disk", 3600);
    assert_eq!(server.enrol("FULL0000").unwrap().status, 201);
    let (_, session) = server.login("FULL0000");
    let session = session.unwrap();
    let (key, digest, window) = personal_key(&server.directory());
    let pending: Vec<_> = (0..3)
        .map(|_| begin_issuance(&key, digest).unwrap())
        .collect();
    let mut passes: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let answer = post_token(&server.url(""), &session, &window, &pending[0].0.encode()).unwrap();
    assert_eq!(answer.status, 200);
    passes.insert(0, answer.body);
    let mut enrolled = vec!["FULL0000".to_owned()];

    // Fill the disk under the running server.
    let ballast = tmpfs.path().join("ballast");
    let filled = fill(&ballast);
    eprintln!("ballast: {filled} bytes");
    let mut failures = 0;
    // The last partly written pages of sled's file may still take a few
    // records: enrol until the disk refuses one.
    for n in 1..=40 {
        let document = format!("FULL{n:04}");
        let answer = server.enrol(&document).expect("the server stays up");
        if answer.status == 201 {
            enrolled.push(document);
        } else {
            assert!(
                answer.is_clean_5xx(),
                "enrolment on a full disk: {} {}",
                answer.status,
                answer.text()
            );
            failures += 1;
            break;
        }
    }
    // Opening a period writes a new key ring and appends to the audit log.
    let answer = send(
        "POST",
        &server.url("/v1/admin/periods"),
        Some(&server.admin_token()),
        json_body(&serde_json::json!({
            "name": "on a full disk",
            "ends_at": (time::OffsetDateTime::now_utc() + time::Duration::days(9))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            "grace_s": 3600,
        })),
    )
    .expect("the server stays up");
    if answer.status != 201 {
        assert!(
            answer.is_clean_5xx(),
            "opening a period on a full disk: {} {}",
            answer.status,
            answer.text()
        );
        failures += 1;
    }
    for (idx, (request, token)) in pending.iter().enumerate().skip(1) {
        let answer = post_token(&server.url(""), &session, &window, &request.encode())
            .expect("the server stays up");
        match answer.status {
            200 => {
                assert!(finalizes(token, &answer.body));
                passes.insert(idx, answer.body);
            }
            // A charge whose flush failed may still stand in memory, so
            // the next message can meet the quota: a clean refusal too.
            429 => {}
            _ => {
                assert!(
                    answer.is_clean_5xx(),
                    "issuance on a full disk: {} {}",
                    answer.status,
                    answer.text()
                );
                failures += 1;
            }
        }
    }
    assert!(
        failures > 0,
        "the full disk failed no write: the test did not fill it"
    );
    eprintln!("{failures} writes refused while the disk was full");

    // Space returns: the server recovers, or says it is not ready.
    std::fs::remove_file(&ballast).unwrap();
    if check_recovery {
        let t0 = Instant::now();
        let mut outcome = None;
        let mut n = 100;
        while outcome.is_none() && t0.elapsed() < Duration::from_secs(15) {
            n += 1;
            let document = format!("FULL{n:04}");
            let answer = server.enrol(&document).unwrap();
            if answer.status == 201 {
                enrolled.push(document);
                outcome = Some("recovered");
            } else if let Ok(ready) = send("GET", &server.url("/readyz"), None, None) {
                if ready.status == 503 {
                    outcome = Some("reports itself not ready");
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let outcome = outcome.unwrap_or_else(|| {
            panic!(
                "15 s after space returned the server neither accepts writes nor reports itself \
                 not ready (/readyz 503):\n{}",
                read_log(&log)
            )
        });
        eprintln!("after space returned the server {outcome}");
    }

    // Nothing acknowledged was lost, across a restart too.
    server.restart();
    for document in &enrolled {
        assert_eq!(server.login(document).0, 201, "{document}");
    }
    for (idx, sig) in &passes {
        let answer = post_token(
            &server.url(""),
            &session,
            &window,
            &pending[*idx].0.encode(),
        )
        .unwrap();
        assert_eq!((answer.status, &answer.body), (200, sig), "pass {idx}");
    }
}
