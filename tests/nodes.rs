//! Several `blindpass serve` nodes on one PostgreSQL database, with the
//! master key in one SoftHSM2 token they share (the key ring, the wrapped
//! master key and the audit log are rows of the database): what one node
//! does, the others see; the quota holds across nodes; a period destroyed
//! through one node stops the other within a measured bound; one expiry
//! pass runs per deadline; a node killed with SIGKILL loses nothing that was
//! acknowledged and rejoins.
//!
//! Real processes throughout: a throwaway PostgreSQL cluster
//! (`common::postgres`), a SoftHSM2 token in a temporary directory, and the
//! `blindpass` binary. Without PostgreSQL or SoftHSM2 the tests fail under
//! `CI=true` and are skipped with a printed reason otherwise.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blindpass::crypto::blind::{begin_issuance, finalize};
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::{Window, WindowKind};
use blindpass::protocol::token::TokenResponse;
use common::postgres::{self, Database};
use common::process::{KillOnDrop, agent, free_port, run};
use common::softhsm;
use time::OffsetDateTime;

const PIN: &str = "5150-nodes-pin";
const SO_PIN: &str = "0815-nodes-so-pin";
const PASSWORD: &str = "a long enough password";
/// How often each node polls the ring besides the notifications (the
/// default is 2 s; shorter here so a lost notification costs the test less).
const RING_POLL_MS: u64 = 500;

/// A SoftHSM2 token in a temporary directory, shared by the nodes.
struct Token {
    dir: tempfile::TempDir,
    label: String,
}

impl Token {
    fn new() -> Option<Self> {
        if let Some(reason) = softhsm::missing() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "SoftHSM2 is required under CI: {reason}"
            );
            eprintln!("skipped: {reason}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let label = "blindpass-nodes".to_owned();
        softhsm::init_token(dir.path(), &label, PIN, SO_PIN);
        Some(Self { dir, label })
    }

    fn uri(&self) -> String {
        softhsm::uri(self.dir.path(), &self.label)
    }
}

/// A database and a token: what every node of one deployment shares.
struct Deployment {
    db: Database,
    token: Token,
    dirs: tempfile::TempDir,
}

fn deployment() -> Option<Deployment> {
    let db = postgres::database()?;
    let token = Token::new()?;
    Some(Deployment {
        db,
        token,
        dirs: tempfile::tempdir().unwrap(),
    })
}

/// One running node.
struct Node {
    name: String,
    root: PathBuf,
    port: u16,
    base: String,
    admin: String,
    process: Option<KillOnDrop>,
    log: PathBuf,
    poll_ms: u64,
}

impl Deployment {
    /// Starts node `name` (its own data directory for the admin token and
    /// the log key) on a fresh port, and waits until it answers.
    fn start(&self, name: &str) -> Node {
        self.start_polling(name, RING_POLL_MS)
    }

    /// [`Deployment::start`] with the ring polled every `poll_ms`; from a
    /// minute on, the expiry pass (which re-reads the ring too) runs hourly
    /// instead of every second, so that only notifications tell the node.
    fn start_polling(&self, name: &str, poll_ms: u64) -> Node {
        let root = self.dirs.path().join(name);
        let mut node = Node {
            name: name.to_owned(),
            root,
            port: free_port(),
            base: String::new(),
            admin: String::new(),
            process: None,
            log: self.dirs.path().join(format!("{name}.log")),
            poll_ms,
        };
        self.restart(&mut node);
        node
    }

    /// The `blindpass` binary with this deployment's token configuration
    /// and no passphrase or PIN from the caller's environment.
    fn blindpass(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_blindpass"));
        command
            .env("SOFTHSM2_CONF", self.token.dir.path().join("softhsm2.conf"))
            .env_remove("BLINDPASS_PASSPHRASE")
            .env_remove("BLINDPASS_PKCS11_PIN");
        command
    }

    /// Starts `node` again, on its port and data directory.
    fn restart(&self, node: &mut Node) {
        node.base = format!("http://127.0.0.1:{}", node.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = self
            .blindpass()
            .env("RUST_LOG", "info")
            .args(["serve", "--data-dir"])
            .arg(&node.root)
            .args(["--listen", &format!("127.0.0.1:{}", node.port)])
            .args(["--key-horizon-days", "2", "--master", &self.token.uri()])
            .args(["--store", &self.db.conninfo()])
            .args(["--ring-poll-ms", &node.poll_ms.to_string()])
            .args([
                "--expiry-cron",
                if node.poll_ms >= 60_000 {
                    "0 0 * * * *"
                } else {
                    "* * * * * *"
                },
            ])
            .args(["--rate-burst", "1000"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let t0 = Instant::now();
        while agent()
            .get(&format!("{}/healthz", node.base))
            .call()
            .is_err()
        {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("{} exited ({status}):\n{}", node.name, node.log_text());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{} did not start",
                node.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node.process = Some(child);
        node.admin = std::fs::read_to_string(node.root.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
    }
}

impl Node {
    /// A client of the node at `base` (no process of its own).
    fn at(base: &str, admin: &str) -> Self {
        Self {
            name: base.to_owned(),
            root: PathBuf::new(),
            port: 0,
            base: base.to_owned(),
            admin: admin.to_owned(),
            process: None,
            log: PathBuf::new(),
            poll_ms: 0,
        }
    }

    fn kill(&mut self) {
        // SIGKILL: no shutdown, no flush.
        drop(self.process.take());
    }

    fn post(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut request = agent().post(&format!("{}{path}", self.base));
        if let Some(bearer) = bearer {
            request = request.header("Authorization", &format!("Bearer {bearer}"));
        }
        let mut resp = request.send_json(body).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    fn get(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let mut request = agent().get(&format!("{}{path}", self.base));
        if let Some(bearer) = bearer {
            request = request.header("Authorization", &format!("Bearer {bearer}"));
        }
        let mut resp = request.call().unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    fn open_period(&self, name: &str, ends_in: time::Duration) -> String {
        let ends = (OffsetDateTime::now_utc() + ends_in)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let (status, body) = self.post(
            "/v1/admin/periods",
            Some(&self.admin),
            &serde_json::json!({"name": name, "ends_at": ends, "grace_s": 0}),
        );
        assert_eq!(status, 201, "{}: {body}", self.name);
        body["id"].as_str().unwrap().to_owned()
    }

    fn enrol(&self, document: &str) -> u16 {
        self.post(
            "/v1/residents",
            None,
            &serde_json::json!({"full_name": format!("Resident {document}"),
                "date_of_birth": "1985-03-04", "document_number": document,
                "address": format!("Street {document}"), "phone": "+74951234567",
                "password": PASSWORD}),
        )
        .0
    }

    /// Logs in; the status and the session token on success.
    fn login(&self, document: &str) -> (u16, Option<String>) {
        let (status, body) = self.post(
            "/v1/sessions",
            None,
            &serde_json::json!({"document_number": document, "password": PASSWORD}),
        );
        (status, body["session_token"].as_str().map(str::to_owned))
    }

    /// Logs in, or `None` when the node did not answer (within 5 s) or
    /// refused.
    fn try_login(&self, document: &str) -> Option<String> {
        let mut resp = common::process::agent_with_timeout(Duration::from_secs(5))
            .post(&format!("{}/v1/sessions", self.base))
            .send_json(serde_json::json!({"document_number": document, "password": PASSWORD}))
            .ok()?;
        let body: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
        body["session_token"].as_str().map(str::to_owned)
    }

    fn directory(&self) -> Directory {
        let (status, body) = self.get("/v1/directory", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Asks for a personal pass for `window`; the status (200 with a pass
    /// that finalises under the published key).
    fn obtain(&self, directory: &Directory, session: &str, window: Window) -> u16 {
        let (key, digest) = common::key_for(directory, "personal", window);
        let (request, pending) = begin_issuance(&key, digest).unwrap();
        let (status, body) = self
            .token_request(session, window, &request.encode())
            .unwrap();
        if status == 200 {
            finalize(&pending, &TokenResponse::decode(&body).unwrap()).unwrap();
        }
        status
    }

    /// Posts a personal pass's `TokenRequest`; the status and the body, or
    /// `None` when the node did not answer (within 5 s).
    fn token_request(&self, session: &str, window: Window, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut resp = common::process::agent_with_timeout(Duration::from_secs(5))
            .post(&format!(
                "{}/token-request?class=personal&window={window}",
                self.base
            ))
            .header("Authorization", &format!("Bearer {session}"))
            .header("Content-Type", "application/private-token-request")
            .send(body)
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.body_mut().read_to_vec().ok()?))
    }

    /// The key ring generation this node uses, from /metrics.
    fn generation(&self) -> Option<u64> {
        let (status, body) = self.get("/metrics", None);
        assert_eq!(status, 200);
        body.lines()
            .find_map(|l| l.strip_prefix("blindpass_key_ring_generation "))
            .map(|v| v.trim().parse().unwrap())
    }

    /// The ids of the live periods this node knows.
    fn live_periods(&self) -> Vec<String> {
        let (status, body) = self.get("/v1/admin/periods", Some(&self.admin));
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        body["live"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `done` every 10 ms for up to `limit`; the time it took.
fn within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

/// How many audit entries in the shared log match the SQL `LIKE` pattern.
fn logged(db: &Database, like: &str) -> usize {
    db.sql(&format!(
        "SELECT count(*) FROM audit_entries WHERE convert_from(entry, 'UTF8') LIKE '{like}'"
    ))
    .trim()
    .parse()
    .unwrap()
}

fn tomorrow() -> Window {
    Window::containing(WindowKind::Day, OffsetDateTime::now_utc().date()).next()
}

#[test]
fn two_nodes_share_residents_sessions_the_quota_and_the_audit_log() {
    let Some(deployment) = deployment() else {
        return;
    };
    let a = deployment.start("a");
    let b = deployment.start("b");
    assert!(
        a.log_text().contains("initialising the shared key ring"),
        "{}",
        a.log_text()
    );
    assert!(!b.log_text().contains("initialising"), "{}", b.log_text());
    // Both follow the one ring; the nodes hold no ring or log files.
    assert!(!a.root.join("vault").exists() && !b.root.join("vault").exists());
    assert!(!a.root.join("audit").join("entries.log").exists());
    assert_eq!(a.directory().keys.len(), b.directory().keys.len());

    // A period opened through A reaches B; enrol on A, log in on B.
    let period = a.open_period("shared", time::Duration::days(10));
    let took = within(Duration::from_secs(5), "B sees the period", || {
        b.live_periods().contains(&period)
    });
    eprintln!("a period opened through A was live on B after {took:?}");
    assert_eq!(a.enrol("NODES0001"), 201);
    assert_eq!(b.enrol("NODES0001"), 409, "one document index for both");
    let (status, session) = b.login("NODES0001");
    assert_eq!(status, 201);
    let session = session.unwrap();
    let directory = a.directory();
    assert_eq!(b.obtain(&directory, &session, tomorrow()), 200);

    // 64 concurrent requests for one resident's personal passes, half on
    // each node: the weekly quota of 2 holds across both.
    assert_eq!(a.enrol("NODES0002"), 201);
    let session = a.login("NODES0002").1.unwrap();
    let nodes = Arc::new([a.base.clone(), b.base.clone()]);
    let granted = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let (nodes, granted, session, directory) = (
                nodes.clone(),
                granted.clone(),
                session.clone(),
                directory.clone(),
            );
            std::thread::spawn(move || {
                let node = Node::at(&nodes[i % 2], "");
                let status = node.obtain(&directory, &session, tomorrow());
                granted.lock().unwrap().push((i % 2, status));
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let granted = granted.lock().unwrap();
    let ok: Vec<_> = granted.iter().filter(|(_, s)| *s == 200).collect();
    assert_eq!(ok.len(), 2, "{granted:?}");
    assert!(
        granted.iter().all(|(_, s)| *s == 200 || *s == 429),
        "{granted:?}"
    );

    // One ring: the same generation on both; one log: the same checkpoint
    // size, and the auditor verifies it through either node.
    let generation = a.generation().unwrap();
    within(Duration::from_secs(5), "same generation", || {
        b.generation() == Some(generation)
    });
    let state = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for node in [&a, &b] {
        let (out, text) = run(Command::new(env!("CARGO_BIN_EXE_blindpass"))
            .args(["audit", "verify", "--server", &node.base, "--log-key-file"])
            .arg(a.root.join("audit").join("log.pub"))
            .env("BLINDPASS_AUDITOR_STATE", state.path().join("auditor.json")));
        assert!(out.status.success(), "{}: {text}", node.name);
        assert!(text.contains("PASSED"), "{text}");
        let size: u64 = text
            .split(" entries, checkpoint verified")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        sizes.push(size);
    }
    assert_eq!(sizes[0], sizes[1]);
    // The log keys the nodes wrote are one key.
    assert_eq!(
        std::fs::read(a.root.join("audit").join("log.pub")).unwrap(),
        std::fs::read(b.root.join("audit").join("log.pub")).unwrap()
    );
    // Each signing key was published once, whichever node made it.
    assert_eq!(
        logged(&deployment.db, "%signing-key-published%"),
        directory.keys.len()
    );
}

#[test]
fn a_period_destroyed_through_one_node_stops_the_other_within_the_bound() {
    let Some(deployment) = deployment() else {
        return;
    };
    // B polls only every minute: only the notification sent at the
    // commit can tell it in time.
    let a = deployment.start("a");
    let b = deployment.start_polling("b", 60_000);
    let period = a.open_period("doomed", time::Duration::days(10));
    within(Duration::from_secs(5), "B sees the period", || {
        b.live_periods().contains(&period)
    });
    assert_eq!(a.enrol("DOOM0001"), 201);
    let session = b.login("DOOM0001").1.unwrap();
    let directory = b.directory();
    assert_eq!(b.obtain(&directory, &session, tomorrow()), 200);

    // End it through A (grace 0: destroyed before the answer), and watch B
    // from another thread meanwhile.
    let watch = {
        let base = b.base.clone();
        let admin = b.admin.clone();
        let period = period.clone();
        std::thread::spawn(move || {
            let node = Node::at(&base, &admin);
            let t0 = Instant::now();
            while node.live_periods().contains(&period) {
                assert!(t0.elapsed() < Duration::from_secs(30), "B kept the key");
                std::thread::sleep(Duration::from_millis(2));
            }
            Instant::now()
        })
    };
    let sent = Instant::now();
    let (status, body) = a.post(
        &format!("/v1/admin/periods/{period}/end"),
        Some(&a.admin),
        &serde_json::json!({}),
    );
    let answered = sent.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(!a.live_periods().contains(&period));
    let lag = watch.join().unwrap().saturating_duration_since(sent);
    // The commit comes before A's answer: B's lag after the commit is at
    // most `lag`, which includes the destruction itself.
    eprintln!(
        "destruction through A answered after {answered:?}; B had dropped the period key \
         {lag:?} after the request was sent"
    );
    assert!(
        lag < Duration::from_secs(1),
        "B dropped the key only {lag:?} after the destruction was asked for"
    );
    // And B acts on it: the period's sessions no longer obtain passes.
    assert_ne!(b.obtain(&directory, &session, tomorrow()), 200);
    assert_eq!(a.generation(), b.generation());

    // The on-site inspection of the shared state, through the token: the
    // ring agrees with the log, and the destroyed generation's token key is
    // gone.
    let (out, text) = run(deployment
        .blindpass()
        .args(["audit", "inspect", "--data-dir"])
        .arg(&b.root)
        .args(["--master", &deployment.token.uri()])
        .args(["--store", &deployment.db.conninfo()]));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASSED"), "{text}");
    assert!(
        text.contains("key objects present for versions [2]"),
        "{text}"
    );
    assert!(
        text.contains("key ring: master version 2, 0 live periods, 1 destroyed"),
        "{text}"
    );

    // The destruction is in the one log once, whichever node wrote it.
    assert_eq!(
        logged(&deployment.db, &format!("%period-key-destroyed%{period}%")),
        1
    );
}

#[test]
fn one_expiry_pass_destroys_a_period_whose_deadline_passes_on_two_nodes() {
    let Some(deployment) = deployment() else {
        return;
    };
    let a = deployment.start("a");
    let b = deployment.start("b");
    // Both nodes run the expiry pass every second; the deadline passes in
    // a few seconds.
    let period = a.open_period("short", time::Duration::seconds(4));
    assert_eq!(a.enrol("SHORT0001"), 201);
    within(Duration::from_secs(30), "the period destroyed", || {
        !a.live_periods().contains(&period) && !b.live_periods().contains(&period)
    });
    // Give a second pass a chance to run (it must not log anything again).
    std::thread::sleep(Duration::from_secs(2));
    for kind in ["destroy-intent", "period-key-destroyed"] {
        let pattern = format!("%\"{kind}\"%{period}%");
        assert_eq!(logged(&deployment.db, &pattern), 1, "{kind}");
    }
    // Exactly one master rotation for it.
    assert_eq!(logged(&deployment.db, "%\"master-rotated\"%"), 1);
}

#[test]
fn a_node_killed_under_load_loses_nothing_acknowledged_and_rejoins() {
    let Some(deployment) = deployment() else {
        return;
    };
    let a = deployment.start("a");
    let mut b = deployment.start("b");
    a.open_period("load", time::Duration::days(10));
    within(Duration::from_secs(5), "B sees the period", || {
        !b.live_periods().is_empty()
    });

    // Four clients enrol on both nodes until told to stop, and every third
    // resident also logs in and obtains a pass there; each client records
    // the documents and the passes acknowledged (201, 200).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let passes = Arc::new(Mutex::new(Vec::new()));
    let bases = Arc::new([a.base.clone(), b.base.clone()]);
    let directory = a.directory();
    let (key, digest) = common::key_for(&directory, "personal", tomorrow());
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, acknowledged, bases) = (stop.clone(), acknowledged.clone(), bases.clone());
            let (passes, key) = (passes.clone(), key.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let document = format!("LOAD{c}{n:05}");
                    n += 1;
                    let body = serde_json::json!({"full_name": format!("Resident {document}"),
                        "date_of_birth": "1985-03-04", "document_number": document,
                        "address": "Street 1", "phone": "+74951234567",
                        "password": PASSWORD});
                    let base = &bases[n % 2];
                    let Ok(resp) = common::process::agent_with_timeout(Duration::from_secs(5))
                        .post(&format!("{base}/v1/residents"))
                        .send_json(&body)
                    else {
                        continue;
                    };
                    if resp.status().as_u16() != 201 {
                        continue;
                    }
                    acknowledged.lock().unwrap().push(document.clone());
                    if n % 3 != 0 {
                        continue;
                    }
                    let node = Node::at(base, "");
                    let Some(session) = node.try_login(&document) else {
                        continue;
                    };
                    let request = begin_issuance(&key, digest).unwrap().0.encode();
                    if let Some((200, response)) =
                        node.token_request(&session, tomorrow(), &request)
                    {
                        passes.lock().unwrap().push((session, request, response));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    b.kill();
    let at_kill = acknowledged.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(2));
    let after = acknowledged.lock().unwrap().len();
    assert!(after > at_kill, "A kept serving: {at_kill} then {after}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    // B rejoins; every acknowledged enrolment logs in on either node.
    deployment.restart(&mut b);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 8, "{}", acknowledged.len());
    eprintln!(
        "{} enrolments acknowledged, {at_kill} before B was killed",
        acknowledged.len()
    );
    for (i, document) in acknowledged.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, _) = node.login(document);
        assert_eq!(status, 201, "{document} on {}", node.name);
    }
    // Every acknowledged pass was counted: of a weekly quota of 2, one more
    // new pass is granted and the next refused (a lost charge would grant
    // both); and recorded: the same request, sent again to either node,
    // gets the same pass back.
    let passes = passes.lock().unwrap().clone();
    assert!(passes.len() > 2, "{}", passes.len());
    eprintln!("{} passes acknowledged", passes.len());
    for (i, (session, request, response)) in passes.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        for expected in [200, 429] {
            let fresh = begin_issuance(&key, digest).unwrap().0.encode();
            let (status, _) = node.token_request(session, tomorrow(), &fresh).unwrap();
            assert_eq!(status, expected, "pass {i} on {}", node.name);
        }
        for node in [&a, &b] {
            let (status, again) = node.token_request(session, tomorrow(), request).unwrap();
            assert_eq!(status, 200, "{}", node.name);
            assert_eq!(&again, response, "{}: a different pass", node.name);
        }
    }
}

#[test]
fn a_data_directory_with_its_own_key_ring_does_not_join_a_shared_database() {
    let Some(deployment) = deployment() else {
        return;
    };
    let root = deployment.dirs.path().join("own");
    std::fs::create_dir_all(root.join("vault")).unwrap();
    std::fs::write(root.join("vault").join("master.pkcs11"), b"{}").unwrap();
    let out = deployment
        .blindpass()
        .args(["serve", "--data-dir"])
        .arg(&root)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--master", &deployment.token.uri()])
        .args(["--store", &deployment.db.conninfo()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has a key ring of its own"), "{stderr}");
    // Nothing was made in the database.
    assert_eq!(
        deployment.db.sql("SELECT to_regclass('key_ring') IS NULL"),
        "t"
    );
}
