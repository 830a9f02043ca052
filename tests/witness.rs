//! Witnessed audit log with real processes on loopback: three `blindpass
//! witness` and one `blindpass serve --witness-policy`.
//!
//! - A period is destroyed and an auditor with a 2-of-3 policy and no saved
//!   checkpoint confirms it.
//! - A witness killed mid-run leaves two cosignatures (still a quorum, and
//!   destruction goes on), then comes back and cosigns again.
//! - The issuer's data directory is rewritten to drop an entry and the log
//!   re-signed: no witness cosigns it, and the auditor, the wallet and the
//!   verifier all refuse it — while the auditor without a policy and without
//!   a saved checkpoint accepts it (the gap witnesses close).
//! - A witness answers every inconsistent checkpoint as C2SP tlog-witness
//!   says, and a kill -9 never makes it forget what it cosigned.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use blindpass::audit::tlog::{LogSigner, StoredHashes};
use blindpass::audit::{Entry, Event, scan_records};
use blindpass::auditor::{AuditorState, Failure, PeriodState};
use blindpass::client::Client;
use blindpass::crypto::secret::Passphrase;
use blindpass::http::witness::MAX_ADD_BODY_BYTES;
use blindpass::issuer::resident::PersonalData;
use blindpass::protocol::api::{ProblemType, media};
use blindpass::protocol::permit::ClassName;
use blindpass::verifier::{DirectoryCache, VerifierError};
use blindpass::wallet::{Wallet, WalletError, WindowChoice};
use blindpass::witness::{CosignatureVerifier, WitnessPolicy, encode_add_request};
use common::process::{KillOnDrop, agent, free_port, spawn_answering};
use signed_note::Verifier as _;
use time::OffsetDateTime;
use time::macros::date;

const PASSPHRASE: &str = "witness test passphrase";

fn serve(data: &Path, port: u16, policy: Option<&Path>) -> KillOnDrop {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blindpass"));
    command
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--key-horizon-days", "2", "--witness-interval-s", "1"])
        .env("BLINDPASS_PASSPHRASE", PASSPHRASE);
    if let Some(policy) = policy {
        command.arg("--witness-policy").arg(policy);
    }
    spawn_answering(&mut command, port)
}

fn witness(state: &Path, name: &str, port: u16, log_key: &str) -> KillOnDrop {
    spawn_answering(
        Command::new(env!("CARGO_BIN_EXE_blindpass"))
            .args(["witness", "--name", name, "--state"])
            .arg(state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--log-key", log_key]),
        port,
    )
}

fn first_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

fn get_text(url: &str) -> String {
    agent()
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// Polls `check` every 100 ms until it returns `Some`; panics after 60 s.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tree size a checkpoint note states.
fn note_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

fn counter(base: &str, name: &str) -> u64 {
    get_text(&format!("{base}/metrics"))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("blindpass_{name}_total ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// An operator's POST to the admin API; returns the status.
fn post_admin(data: &Path, base: &str, path: &str) -> u16 {
    let token = first_line(&data.join("admin.token"));
    agent()
        .post(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .send_json(serde_json::json!({}))
        .unwrap()
        .status()
        .as_u16()
}

/// Opens a period ending in ten days with grace 0; returns its id.
fn open_period(data: &Path, base: &str, name: &str) -> String {
    let token = first_line(&data.join("admin.token"));
    let ends = (OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut response = agent()
        .post(&format!("{base}/v1/admin/periods"))
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .send_json(serde_json::json!({"name": name, "ends_at": ends, "grace_s": 0}))
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let body: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    body["id"].as_str().unwrap().to_owned()
}

fn audit(
    base: &str,
    log_key: &str,
    policy: Option<&WitnessPolicy>,
) -> blindpass::auditor::AuditReport {
    // A fresh state directory: an auditor with no saved checkpoint.
    let state = tempfile::tempdir().unwrap();
    blindpass::auditor::verify_witnessed(
        &Client::new(base),
        log_key,
        policy,
        &AuditorState::new(state.path()),
        OffsetDateTime::now_utc(),
        blindpass::auditor::DEFAULT_TOLERANCE,
    )
    .unwrap()
}

fn person(document: &str) -> PersonalData {
    PersonalData {
        full_name: "Witnessed Resident".into(),
        date_of_birth: date!(1985 - 02 - 03),
        document_number: document.into(),
        address: "Ring Road 5".into(),
        phone: "+74950000005".into(),
        employer_tax_number: None,
    }
}

/// A fresh wallet, enrolled and logged in, that requires `policy`.
fn wallet(dir: &Path, base: &str, document: &str, log_key: &str, policy: Option<&str>) -> Wallet {
    let api = Client::new(base);
    let password = Passphrase::new("witnessed resident password".into());
    let mut wallet = Wallet::open_or_new(&dir.join(format!("{document}.json")), base).unwrap();
    wallet.pin_log_key(log_key).unwrap();
    if let Some(policy) = policy {
        wallet.pin_witness_policy(policy).unwrap();
    }
    wallet.enrol(&api, &person(document), &password).unwrap();
    wallet.login(&api, document, &password).unwrap();
    wallet
}

fn request_pass(wallet: &mut Wallet, base: &str) -> Result<usize, WalletError> {
    let now = OffsetDateTime::now_utc();
    wallet.request(
        &Client::new(base),
        &ClassName::new("personal").unwrap(),
        WindowChoice::Containing(now.date()),
        now,
    )
}

/// Rewrites an audit log file without its first `service-started` entry
/// (a restart the operator would rather not show), renumbering the entries
/// after it: what an operator with the data directory can do. Returns the
/// index dropped.
fn drop_a_restart(path: &Path) -> usize {
    let scanned = scan_records(&std::fs::read(path).unwrap()).unwrap();
    let entries: Vec<Entry> = scanned
        .records
        .iter()
        .map(|b| Entry::from_bytes(b).unwrap())
        .collect();
    let drop = entries
        .iter()
        .position(|e| e.event == Event::ServiceStarted)
        .unwrap();
    let mut out = Vec::new();
    for (seq, mut entry) in entries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != drop)
        .map(|(_, e)| e)
        .enumerate()
    {
        entry.seq = seq as u64;
        let json = serde_json::to_vec(&entry).unwrap();
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
    }
    std::fs::write(path, out).unwrap();
    drop
}

struct City {
    tmp: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    base: String,
    log_key: String,
    policy_path: PathBuf,
    policy: WitnessPolicy,
    witness_ports: Vec<u16>,
    witnesses: Vec<Option<KillOnDrop>>,
}

impl City {
    /// An issuer initialised once (for its log key), three witnesses of
    /// its log, a 2-of-3 policy, and the issuer restarted with it.
    fn start() -> (Self, KillOnDrop) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("issuer");
        let port = free_port();
        drop(serve(&data, port, None));
        let log_key = first_line(&data.join("audit/log.pub"));
        let witness_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut witnesses = Vec::new();
        let mut text = String::from("# test city\n");
        for (i, wport) in witness_ports.iter().enumerate() {
            let dir = tmp.path().join(format!("w{}", i + 1));
            witnesses.push(Some(witness(
                &dir,
                &format!("w{}.city.test", i + 1),
                *wport,
                &log_key,
            )));
            let vkey = first_line(&dir.join("witness.pub"));
            text.push_str(&format!("witness {vkey} http://127.0.0.1:{wport}\n"));
        }
        text.push_str("quorum 2\n");
        let policy_path = tmp.path().join("policy.txt");
        std::fs::write(&policy_path, &text).unwrap();
        let city = Self {
            policy: WitnessPolicy::parse(&text).unwrap(),
            policy_path,
            tmp,
            data,
            port,
            base: format!("http://127.0.0.1:{port}"),
            log_key,
            witness_ports,
            witnesses,
        };
        let issuer = city.serve();
        (city, issuer)
    }

    fn witness_dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("w{}", i + 1))
    }

    fn start_witness(&self, i: usize) -> KillOnDrop {
        witness(
            &self.witness_dir(i),
            &format!("w{}.city.test", i + 1),
            self.witness_ports[i],
            &self.log_key,
        )
    }

    fn serve(&self) -> KillOnDrop {
        serve(&self.data, self.port, Some(&self.policy_path))
    }

    fn checkpoint(&self) -> String {
        get_text(&format!("{}/audit/checkpoint", self.base))
    }

    /// The names of the policy witnesses that validly cosigned `note`.
    fn cosigners(&self, note: &str) -> Vec<String> {
        let one = WitnessPolicy::parse(&self.policy_text_with_quorum(1)).unwrap();
        one.check(note.as_bytes())
            .map(|q| q.cosigned_by)
            .unwrap_or_default()
    }

    fn policy_text_with_quorum(&self, quorum: usize) -> String {
        std::fs::read_to_string(&self.policy_path)
            .unwrap()
            .replace("quorum 2", &format!("quorum {quorum}"))
    }
}

#[test]
fn witnesses_confirm_destruction_survive_an_outage_and_refuse_a_rewritten_log() {
    let (mut city, issuer) = City::start();
    let base = city.base.clone();
    let all3 = vec!["w1.city.test", "w2.city.test", "w3.city.test"];

    // A period is destroyed; an auditor with the 2-of-3 policy and no
    // saved checkpoint confirms it once the witnesses have cosigned.
    open_period(&city.data, &base, "city");
    let doomed = open_period(&city.data, &base, "doomed");
    let status = post_admin(
        &city.data,
        &base,
        &format!("/v1/admin/periods/{doomed}/end"),
    );
    assert_eq!(status, 200);
    let report = wait_for("the destruction audited under a quorum", || {
        let report = audit(&base, &city.log_key, Some(&city.policy));
        let destroyed = report
            .periods
            .iter()
            .any(|p| p.period.to_string() == doomed && p.status == PeriodState::Destroyed);
        (report.passed() && destroyed).then_some(report)
    });
    assert!(report.previous.is_none(), "no saved checkpoint was used");
    let note = city.checkpoint();
    assert_eq!(city.cosigners(&note), all3);

    // A wallet that requires the quorum gets a pass.
    let wallets = tempfile::tempdir().unwrap();
    let policy_text = std::fs::read_to_string(&city.policy_path).unwrap();
    let mut before = wallet(
        wallets.path(),
        &base,
        "WIT000001",
        &city.log_key,
        Some(&policy_text),
    );
    assert_eq!(request_pass(&mut before, &base).unwrap(), 1);

    // Witness 2 is killed mid-run. The log grows (a period opened and
    // destroyed without waiting for it); the checkpoint carries the other
    // two cosignatures, still a quorum; the outage is counted.
    drop(city.witnesses[1].take());
    let size_before = note_size(&city.checkpoint());
    let second = open_period(&city.data, &base, "second");
    let status = post_admin(
        &city.data,
        &base,
        &format!("/v1/admin/periods/{second}/end"),
    );
    assert_eq!(status, 200, "destruction does not wait for witnesses");
    let outage = wait_for("a checkpoint cosigned by the two left", || {
        let note = city.checkpoint();
        (note_size(&note) > size_before
            && city.cosigners(&note) == ["w1.city.test", "w3.city.test"])
        .then_some(note)
    });
    assert!(city.policy.check(outage.as_bytes()).is_ok());
    assert!(counter(&base, "witness_unreachable") > 0);
    assert!(audit(&base, &city.log_key, Some(&city.policy)).passed());

    // It comes back with its state and resumes: its cosignature is on a
    // checkpoint at least as large as the one cosigned during the outage.
    city.witnesses[1] = Some(city.start_witness(1));
    wait_for("witness 2 cosigning again", || {
        let note = city.checkpoint();
        (note_size(&note) >= note_size(&outage) && city.cosigners(&note) == all3).then_some(())
    });

    // The operator rewrites the log: one entry dropped, the rest renumbered
    // and re-signed with the log's key at the next start.
    drop(issuer);
    drop_a_restart(&city.data.join("audit/entries.log"));
    let _issuer = city.serve();
    wait_for("every witness refusing the rewritten log", || {
        (counter(&base, "witness_refused") >= 3).then_some(())
    });
    let forked = city.checkpoint();
    assert!(city.cosigners(&forked).is_empty(), "{forked}");

    // Today's gap: without a policy and without a saved checkpoint, the
    // rewritten log passes the audit.
    let unwitnessed = audit(&base, &city.log_key, None);
    assert!(unwitnessed.passed(), "{:?}", unwitnessed.failures);
    // With the policy, the auditor refuses it and does not remember it.
    let report = audit(&base, &city.log_key, Some(&city.policy));
    assert!(
        matches!(
            report.failures.as_slice(),
            [Failure::NoQuorum {
                valid: 0,
                quorum: 2,
                witnesses: 3
            }]
        ),
        "{:?}",
        report.failures
    );
    assert!(!report.saved);
    // So does the command line (exit status 1: a failure found).
    let state = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_blindpass"))
        .args(["audit", "--state"])
        .arg(state.path())
        .args(["verify", "--server", &base, "--log-key", &city.log_key])
        .arg("--witness-policy")
        .arg(&city.policy_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("valid cosignatures from 0 of the policy's 3 witnesses"),
        "{stdout}"
    );

    // A fresh wallet with the policy requests no pass; without it, it does.
    let mut careful = wallet(
        wallets.path(),
        &base,
        "WIT000002",
        &city.log_key,
        Some(&policy_text),
    );
    match request_pass(&mut careful, &base) {
        Err(WalletError::AuditLog(detail)) => assert!(detail.contains("cosignatures"), "{detail}"),
        other => panic!("{other:?}"),
    }
    let mut trusting = wallet(wallets.path(), &base, "WIT000003", &city.log_key, None);
    assert!(request_pass(&mut trusting, &base).is_ok());

    // The verifier's witnessed sync refuses the directory and stores nothing.
    let cache = city.tmp.path().join("verifier");
    let refused = DirectoryCache::sync_checked(&cache, &base, OffsetDateTime::now_utc(), |dir| {
        blindpass::verifier::witnessed::check_directory(&base, &city.log_key, &city.policy, dir)
    });
    assert!(
        matches!(refused, Err(VerifierError::Unwitnessed(_))),
        "{:?}",
        refused.as_ref().map(|_| "stored")
    );
    assert!(DirectoryCache::load(&cache).is_err());
}

/// A log of `n` entries for the witness protocol test.
fn tree_of(n: u64, prefix: &str) -> StoredHashes {
    let mut tree = StoredHashes::default();
    for i in 0..n {
        tree.append(format!("{prefix} {i}").as_bytes()).unwrap();
    }
    tree
}

fn add_checkpoint(port: u16, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut response = agent()
        .post(&format!("http://127.0.0.1:{port}/add-checkpoint"))
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        status,
        content_type,
        response.body_mut().read_to_vec().unwrap(),
    )
}

/// A refusal's status and the problem type of its problem document.
fn refusal(port: u16, body: &[u8]) -> (u16, Option<ProblemType>) {
    let (status, content_type, bytes) = add_checkpoint(port, body);
    assert_eq!(content_type, media::PROBLEM_JSON, "status {status}");
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let kind = problem["type"].as_str().and_then(ProblemType::from_uri);
    (status, kind)
}

/// The body of a request for `tree`'s checkpoint from `old`.
fn body(log: &LogSigner, tree: &StoredHashes, old: u64) -> Vec<u8> {
    let size = tree.size();
    let note = log.sign_checkpoint(size, tree.root(size).unwrap()).unwrap();
    let proof = if old == 0 || old == size {
        vec![]
    } else {
        tlog_tiles::prove_tree(size, old, tree).unwrap()
    };
    encode_add_request(old, &proof, &note)
}

#[test]
fn a_witness_answers_as_the_spec_says_and_never_forgets_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("w");
    let port = free_port();
    let log = LogSigner::new("spec.test/audit", &[11; 32]);
    let mut w = witness(&state, "w.spec.test", port, &log.verifier_key());
    let vkey = first_line(&state.join("witness.pub"));
    let verifier = CosignatureVerifier::new(&vkey).unwrap();

    // First contact: old 0, empty proof: a cosignature that verifies.
    let three = tree_of(3, "entry");
    let (status, _, line) = add_checkpoint(port, &body(&log, &three, 0));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&line));
    let note = log.sign_checkpoint(3, three.root(3).unwrap()).unwrap();
    let text = signed_note::Note::from_bytes(&note)
        .unwrap()
        .text()
        .to_vec();
    let sig = signed_note::Signature::from_bytes(line.strip_suffix(b"\n").unwrap()).unwrap();
    assert!(verifier.verify(&text, sig.signature()));

    // A stale old size: 409 with the size held, as text/x.tlog.size.
    let five = tree_of(5, "entry");
    let (status, content_type, size) = add_checkpoint(port, &body(&log, &five, 0));
    assert_eq!(
        (status, content_type.as_str(), size.as_slice()),
        (409, "text/x.tlog.size", &b"3\n"[..])
    );
    // The same size with another root: 409.
    let other = tree_of(3, "rewritten");
    assert_eq!(add_checkpoint(port, &body(&log, &other, 3)).0, 409);
    // The other refusals are problem documents whose type a client can
    // match on (`ProblemType`). A proof that does not verify (a fork grown
    // from another prefix): 422.
    let fork = tree_of(5, "rewritten");
    assert_eq!(
        refusal(port, &body(&log, &fork, 3)),
        (422, Some(ProblemType::BadConsistencyProof))
    );
    // Old size above the checkpoint's: 400; not a request at all: 400.
    let note5 = log.sign_checkpoint(5, five.root(5).unwrap()).unwrap();
    assert_eq!(
        refusal(port, &encode_add_request(6, &[], &note5)),
        (400, Some(ProblemType::BadRequest))
    );
    assert_eq!(
        refusal(port, b"hello\n"),
        (400, Some(ProblemType::BadRequest))
    );
    // Unknown origin: 404; a signature by another key: 403.
    let stranger = LogSigner::new("other.test/audit", &[11; 32]);
    let foreign = stranger.sign_checkpoint(5, five.root(5).unwrap()).unwrap();
    assert_eq!(
        refusal(port, &encode_add_request(3, &[], &foreign)),
        (404, Some(ProblemType::UnknownLog))
    );
    let impostor = LogSigner::new("spec.test/audit", &[12; 32]);
    let forged = impostor.sign_checkpoint(5, five.root(5).unwrap()).unwrap();
    assert_eq!(
        refusal(port, &encode_add_request(3, &[], &forged)),
        (403, Some(ProblemType::BadLogSignature))
    );
    // A body above the limit: 413.
    assert_eq!(
        refusal(port, &vec![b'x'; MAX_ADD_BODY_BYTES + 1]),
        (413, Some(ProblemType::PayloadTooLarge))
    );
    // None of that moved the witness: the consistent extension is cosigned.
    assert_eq!(add_checkpoint(port, &body(&log, &five, 3)).0, 200);

    // kill -9 while checkpoints stream in: after the restart the witness
    // holds at least the last size it acknowledged, and cosigns no other
    // tree of that size.
    let stream_port = port;
    let stream_log = LogSigner::new("spec.test/audit", &[11; 32]);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(5));
    let acked_writer = acked.clone();
    let streamer = std::thread::spawn(move || {
        let mut old = 5;
        for size in 6..400u64 {
            let tree = tree_of(size, "entry");
            let Ok(mut response) = agent()
                .post(&format!("http://127.0.0.1:{stream_port}/add-checkpoint"))
                .send(&body(&stream_log, &tree, old)[..])
            else {
                return;
            };
            if response.status().as_u16() != 200 {
                let _ = response.body_mut().read_to_vec();
                return;
            }
            acked_writer.store(size, std::sync::atomic::Ordering::SeqCst);
            old = size;
        }
    });
    wait_for("some checkpoints acknowledged", || {
        (acked.load(std::sync::atomic::Ordering::SeqCst) >= 20).then_some(())
    });
    w.0.kill().unwrap();
    w.0.wait().unwrap();
    streamer.join().unwrap();
    let last_acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    let _w = witness(&state, "w.spec.test", port, &log.verifier_key());
    let (status, _, held) = add_checkpoint(port, &body(&log, &three, 0));
    assert_eq!(status, 409);
    let held: u64 = String::from_utf8(held).unwrap().trim().parse().unwrap();
    assert!(
        held == last_acked || held == last_acked + 1,
        "acknowledged {last_acked}, holds {held}"
    );
    let rewritten = tree_of(held, "rewritten");
    assert_eq!(add_checkpoint(port, &body(&log, &rewritten, held)).0, 409);
    let next = tree_of(held + 1, "entry");
    assert_eq!(add_checkpoint(port, &body(&log, &next, held)).0, 200);
}
