//! The auditor against a real issuer: an honest log passes and shows each
//! destruction with its lateness; a tampered, rolled-back, forked or
//! wrongly signed log, an overdue period, a key missing from the log, a
//! destroyed key left in the key ring and a plaintext canary are each
//! caught. The wallet refuses a signing key the log does not publish.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use blindpass::audit::tlog::LogSigner;
use blindpass::audit::{Event, Journal};
use blindpass::auditor::{
    self, AuditorState, Failure, InspectFailure, KeyProblem, LogError, PeriodState, VerifiedLog,
};
use blindpass::client::Client as Api;
use blindpass::crypto::blind::IssuerSigningKey;
use blindpass::crypto::secret::Passphrase;
use blindpass::ids::PeriodId;
use blindpass::issuer::resident::PersonalData;
use blindpass::protocol::directory::{Directory, PublishedKey};
use blindpass::protocol::permit::{ClassName, Window};
use blindpass::wallet::{Wallet, WalletError, WindowChoice};
use common::{PASSWORD, START, TestServer, read_request};
use time::format_description::well_known::Rfc3339;
use time::macros::date;
use time::{Duration, OffsetDateTime};

const TOLERANCE: Duration = Duration::minutes(5);
const OPERATOR: &str = "operator passphrase";

// --- helpers ----------------------------------------------------------------

/// The log key, as the operator hands it to auditors out of band.
fn log_key(server: &TestServer) -> String {
    std::fs::read_to_string(server.dir.path().join("audit/log.pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The entries as stored in `<data dir>/audit/entries.log`.
fn disk_entries(dir: &Path) -> Vec<Vec<u8>> {
    file_entries(&dir.join("audit/entries.log"))
}

/// The entries of a log file (`u32 BE length ‖ entry`, repeated).
fn file_entries(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

fn now(server: &TestServer) -> OffsetDateTime {
    server.authority.now()
}

fn at_arg(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blindpass"));
    command.args(args);
    for var in [
        "BLINDPASS_SERVER",
        "BLINDPASS_LOG_KEY",
        "BLINDPASS_AUDITOR_STATE",
        "BLINDPASS_PASSPHRASE",
        "BLINDPASS_PASSPHRASE_FILE",
        "BLINDPASS_DATA_DIR",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `blindpass audit --state S verify --server U --log-key K --at T`.
fn cli_verify(state: &Path, server: &str, key: &str, at: OffsetDateTime) -> (i32, String, String) {
    run(
        &[
            "audit",
            "--state",
            state.to_str().unwrap(),
            "verify",
            "--server",
            server,
            "--log-key",
            key,
            "--at",
            &at_arg(at),
        ],
        &[],
    )
}

fn verified(server: &TestServer) -> VerifiedLog {
    auditor::fetch_log(&Api::new(&server.url), &log_key(server)).unwrap()
}

fn failed(result: Result<VerifiedLog, LogError>) -> Failure {
    match result {
        Err(LogError::Failed(failure)) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn person(document: &str, name: &str) -> PersonalData {
    PersonalData {
        full_name: name.into(),
        date_of_birth: date!(1979 - 09 - 21),
        document_number: document.into(),
        address: format!("{name} street 7"),
        phone: "+74950000000".into(),
        employer_tax_number: None,
    }
}

/// A standalone log file signed with `seed`, holding `events`.
struct Standalone {
    journal: Journal,
    path: PathBuf,
}

fn standalone(
    dir: &Path,
    name: &str,
    seed: &[u8; 32],
    events: &[(OffsetDateTime, Event)],
) -> Standalone {
    let path = dir.join(name);
    let journal = Journal::open(&path, LogSigner::new("x.test/audit", seed)).unwrap();
    for (at, event) in events {
        journal.append(*at, event.clone()).unwrap();
    }
    Standalone { journal, path }
}

/// Its signed checkpoint and the entries in its file, verified.
fn journal_log(log: &Standalone, key: &str) -> Result<VerifiedLog, LogError> {
    auditor::verify_log(
        &log.journal.checkpoint().unwrap(),
        &file_entries(&log.path),
        key,
    )
}

fn empty_directory() -> Directory {
    Directory {
        issuer_name: "x.test".into(),
        issuer_request_uri: "http://x.test/token-request".into(),
        generated_at: 0,
        max_age_s: 3600,
        keys: Vec::new(),
    }
}

fn opened(period: PeriodId, ends_at: OffsetDateTime) -> Event {
    Event::PeriodOpened {
        period,
        name: "p".into(),
        ends_at: at_arg(ends_at),
        deadline: at_arg(ends_at),
    }
}

// --- the honest case ----------------------------------------------------------

#[test]
fn an_honest_log_passes_and_shows_each_destruction_with_its_lateness() {
    let server = TestServer::start();
    let key = log_key(&server);
    let tmp = tempfile::tempdir().unwrap();
    let state = AuditorState::new(&tmp.path().join("state"));
    let api = Api::new(&server.url);

    // A period with one resident; the auditor looks while it is live.
    let winter = server
        .authority
        .open_period("winter", START + Duration::hours(2), 600)
        .unwrap();
    server
        .authority
        .enrol(&winter, person("AUD0000001", "Pavel Orlov"), None)
        .unwrap();
    let report = auditor::verify(&api, &key, &state, now(&server), TOLERANCE).unwrap();
    assert!(report.passed(), "{:?}", report.failures);
    assert!(report.saved && report.previous.is_none());
    let live = report.periods.iter().find(|p| p.period == winter).unwrap();
    assert_eq!(live.status, PeriodState::Live);
    assert_eq!(
        live.deadline,
        START + Duration::hours(2) + Duration::minutes(10)
    );

    // Ended early at 09:30: the deadline moves to 09:40. The issuer's job
    // runs 90 s after it.
    server.clock.advance(Duration::minutes(30));
    server.authority.end_period(&winter).unwrap();
    server
        .clock
        .advance(Duration::minutes(10) + Duration::seconds(90));
    let expiry = server.authority.destroy_due(Duration::ZERO).unwrap();
    assert_eq!(expiry.destroyed.len(), 1);
    server.authority.wait_for_purges();

    let report = auditor::verify(&api, &key, &state, now(&server), TOLERANCE).unwrap();
    assert!(report.passed(), "{:?}", report.failures);
    assert!(report.previous.is_some(), "compared with the first run");
    let gone = report.periods.iter().find(|p| p.period == winter).unwrap();
    assert_eq!(gone.status, PeriodState::Destroyed);
    assert_eq!(gone.name, "winter");
    assert_eq!(gone.ended_early_at, Some(START + Duration::minutes(30)));
    assert_eq!(gone.deadline, START + Duration::minutes(40));
    assert_eq!(gone.late_by_s, Some(90));
    assert!(gone.destroy_intent_at.is_some());
    assert!(
        gone.records_purged >= 1,
        "the resident's records were purged"
    );
    // The server's own long period is still live.
    assert!(
        report
            .periods
            .iter()
            .any(|p| p.name == "test" && p.status == PeriodState::Live)
    );

    // The same through the CLI, twice with the state kept.
    let cli_state = tmp.path().join("cli-state");
    for round in 0..2 {
        let (code, out, err) = cli_verify(&cli_state, &server.url, &key, now(&server));
        assert_eq!(code, 0, "round {round}: {out}{err}");
        assert!(out.contains("PASSED"), "{out}");
        let row = out.lines().find(|l| l.contains("winter")).unwrap();
        assert!(
            row.contains("destroyed") && row.contains("90 s") && row.contains("09:40:00Z"),
            "{row}"
        );
        if round == 1 {
            assert!(out.contains("compared with the checkpoint"), "{out}");
        }
    }
    // JSON output carries the same.
    let (code, out, _) = run(
        &[
            "audit",
            "--state",
            cli_state.to_str().unwrap(),
            "verify",
            "--server",
            &server.url,
            "--log-key",
            &key,
            "--at",
            &at_arg(now(&server)),
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["failures"], serde_json::json!([]));
    assert!(
        json["periods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["status"] == "destroyed" && p["late_by_s"] == 90)
    );
}

// --- a log that lies ----------------------------------------------------------

#[test]
fn tampered_entries_do_not_match_the_signed_checkpoint() {
    let server = TestServer::start();
    let key = log_key(&server);
    let note = server.authority.journal().checkpoint().unwrap();
    let entries = disk_entries(server.dir.path());
    // Control: the genuine entries rebuild the signed tree.
    let log = auditor::verify_log(&note, &entries, &key).unwrap();
    assert_eq!(log.size(), entries.len() as u64);

    // One digit of one timestamp changed, the length prefix kept.
    let mut tampered = entries.clone();
    let text = String::from_utf8(tampered[1].clone()).unwrap();
    let at = text.find("\"at\":\"2026").unwrap() + 6;
    let mut bytes = text.into_bytes();
    bytes[at + 3] = if bytes[at + 3] == b'5' { b'4' } else { b'5' };
    assert_eq!(bytes.len(), entries[1].len());
    tampered[1] = bytes;
    assert_eq!(
        failed(auditor::verify_log(&note, &tampered, &key)),
        Failure::EntriesDoNotMatchCheckpoint
    );
    // A dropped entry too.
    assert_eq!(
        failed(auditor::verify_log(&note, &entries[1..], &key)),
        Failure::EntriesDoNotMatchCheckpoint
    );

    // Served over HTTP by a lying proxy: the CLI fails with exit 1.
    let size = entries.len();
    let bundle = blindpass::audit::tlog::encode_bundle(tampered.iter().map(Vec::as_slice));
    let proxy = Proxy::start(
        &server.url,
        vec![(
            format!("/audit/tile/entries/000.p/{size}"),
            "application/octet-stream",
            bundle,
        )],
    );
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = cli_verify(tmp.path(), &proxy.url, &key, now(&server));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("do not match the signed checkpoint"), "{out}");
    assert!(out.contains("NOT remembered"), "{out}");
    // Control: the same proxy passes what it does not rewrite.
    let honest = Proxy::start(&server.url, vec![]);
    let (code, out, err) = cli_verify(tmp.path(), &honest.url, &key, now(&server));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_caught() {
    let server = TestServer::start();
    let key = log_key(&server);
    let log = verified(&server);
    let entries = disk_entries(server.dir.path());
    let size = log.size();
    let root = log.root(size).unwrap();
    let impostor = LogSigner::new(log.origin(), &[0x5a; 32]);
    let forged = impostor.sign_checkpoint(size, root).unwrap();
    // Control: the forged note is a valid note under the impostor's key.
    assert!(auditor::verify_log(&forged, &entries, &impostor.verifier_key()).is_ok());
    assert_eq!(
        failed(auditor::verify_log(&forged, &entries, &key)),
        Failure::BadSignature
    );
    // Through the CLI: an auditor that pinned another key gets exit 1.
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = cli_verify(
        tmp.path(),
        &server.url,
        &impostor.verifier_key(),
        now(&server),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not signed by the pinned log key"), "{out}");
    // Not a key at all: a usage error.
    let (code, _, err) = cli_verify(tmp.path(), &server.url, "nonsense", now(&server));
    assert_eq!(code, 2);
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn a_rolled_back_log_is_caught() {
    let server = TestServer::start();
    let key = log_key(&server);
    let tmp = tempfile::tempdir().unwrap();
    let state = AuditorState::new(tmp.path());
    // A genuine, smaller checkpoint and its entries, kept from earlier.
    let old_note = server.authority.journal().checkpoint().unwrap();
    let old_entries = disk_entries(server.dir.path());
    let old = auditor::verify_log(&old_note, &old_entries, &key).unwrap();

    // The log grows; the auditor sees the bigger one.
    server
        .authority
        .open_period("spring", START + Duration::days(3), 0)
        .unwrap();
    let api = Api::new(&server.url);
    let report = auditor::verify(&api, &key, &state, now(&server), TOLERANCE).unwrap();
    assert!(report.passed() && report.saved, "{:?}", report.failures);
    let big = report.checkpoint_size.unwrap();
    assert!(big > old.size());

    // Later the server shows the old one (e.g. restored from a backup).
    let directory = server.directory();
    let report = auditor::audit(
        &server.url,
        &key,
        Ok(old.clone()),
        &directory,
        &state,
        now(&server),
        TOLERANCE,
    )
    .unwrap();
    assert_eq!(
        report.failures,
        vec![Failure::RolledBack {
            saved_size: big,
            size: old.size()
        }]
    );
    assert!(!report.saved, "a rolled-back checkpoint is not remembered");
    // The bigger checkpoint is still the reference.
    let report = auditor::verify(&api, &key, &state, now(&server), TOLERANCE).unwrap();
    assert!(report.passed());
    assert_eq!(report.previous.unwrap().size, big);
}

#[test]
fn a_forked_log_is_caught_even_when_validly_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = [7u8; 32];
    let key = LogSigner::new("x.test/audit", &seed).verifier_key();
    let state = AuditorState::new(&tmp.path().join("state"));
    let t = START;
    let (p, q) = (PeriodId::generate(), PeriodId::generate());
    let a = standalone(
        tmp.path(),
        "a.log",
        &seed,
        &[
            (t, Event::ServiceStarted),
            (t, opened(p, t + Duration::days(9))),
        ],
    );
    // Same size, same key, different history.
    let b = standalone(
        tmp.path(),
        "b.log",
        &seed,
        &[
            (t, Event::ServiceStarted),
            (t, opened(q, t + Duration::days(9))),
        ],
    );
    let check = |log, at| {
        auditor::audit(
            "x.test",
            &key,
            log,
            &empty_directory(),
            &state,
            at,
            TOLERANCE,
        )
        .unwrap()
    };
    let first = check(journal_log(&a, &key).map_err(|_| Failure::BadSignature), t);
    assert!(first.passed() && first.saved, "{:?}", first.failures);
    let forked = check(journal_log(&b, &key).map_err(|_| Failure::BadSignature), t);
    assert!(
        matches!(
            forked.failures.as_slice(),
            [Failure::Forked { size: 2, .. }]
        ),
        "{:?}",
        forked.failures
    );
    assert!(!forked.saved);
    // A fork that also grew is caught the same way.
    b.journal
        .append(t, Event::MasterRotated { version: 2 })
        .unwrap();
    let forked = check(journal_log(&b, &key).map_err(|_| Failure::BadSignature), t);
    assert!(matches!(
        forked.failures.as_slice(),
        [Failure::Forked { .. }]
    ));
    // Control: the genuine log, grown, is consistent.
    a.journal
        .append(t, Event::MasterRotated { version: 2 })
        .unwrap();
    let grown = check(journal_log(&a, &key).map_err(|_| Failure::BadSignature), t);
    assert!(grown.passed(), "{:?}", grown.failures);
    assert_eq!(grown.previous.unwrap().size, 2);
}

#[test]
fn an_entry_dated_before_the_auditor_last_looked_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = [8u8; 32];
    let key = LogSigner::new("x.test/audit", &seed).verifier_key();
    let state = AuditorState::new(&tmp.path().join("state"));
    let p = PeriodId::generate();
    let deadline = START + Duration::hours(1);
    let journal = standalone(tmp.path(), "log", &seed, &[(START, opened(p, deadline))]);
    let check = |at| {
        let log = journal_log(&journal, &key).map_err(|_| Failure::BadSignature);
        auditor::audit(
            "x.test",
            &key,
            log,
            &empty_directory(),
            &state,
            at,
            TOLERANCE,
        )
        .unwrap()
    };
    // At 12:00 the auditor sees the deadline (10:00) missed.
    let look = START + Duration::hours(3);
    let report = check(look);
    assert!(
        matches!(report.failures.as_slice(), [Failure::Overdue { period, .. }] if *period == p),
        "{:?}",
        report.failures
    );
    assert!(
        report.saved,
        "an overdue period is a finding, not a bad log"
    );
    // Then the issuer logs the destruction as if it happened at 10:00.
    journal
        .journal
        .append(
            deadline,
            Event::PeriodKeyDestroyed {
                period: p,
                deadline: at_arg(deadline),
                late_by_s: 0,
            },
        )
        .unwrap();
    let report = check(look + Duration::hours(1));
    assert_eq!(
        report.failures,
        vec![Failure::Backdated {
            seq: 1,
            at: deadline,
            seen_at: look
        }]
    );
    // Control: an auditor that had not looked before sees nothing wrong.
    let fresh = AuditorState::new(&tmp.path().join("fresh"));
    let log = journal_log(&journal, &key).map_err(|_| Failure::BadSignature);
    let report = auditor::audit(
        "x.test",
        &key,
        log,
        &empty_directory(),
        &fresh,
        look,
        TOLERANCE,
    )
    .unwrap();
    assert!(report.passed(), "{:?}", report.failures);
}

#[test]
fn an_overdue_period_fails_the_audit_with_exit_1() {
    let server = TestServer::start();
    let key = log_key(&server);
    let tmp = tempfile::tempdir().unwrap();
    let short = server
        .authority
        .open_period("short", START + Duration::hours(1), 60)
        .unwrap();
    // Two hours later the issuer has not destroyed it (its job did not run).
    server.clock.advance(Duration::hours(2));
    let (code, out, err) = cli_verify(tmp.path(), &server.url, &key, now(&server));
    assert_eq!(code, 1, "{out}{err}");
    let row = out.lines().find(|l| l.contains("short")).unwrap();
    assert!(row.ends_with("OVERDUE"), "{row}");
    assert!(
        out.contains(&format!("period {short} is OVERDUE")) && out.contains("3540 s ago"),
        "{out}"
    );
    // Within the tolerance it is not yet overdue.
    let (code, out, _) = cli_verify(
        &tmp.path().join("other"),
        &server.url,
        &key,
        START + Duration::hours(1) + Duration::seconds(120),
    );
    assert_eq!(code, 0, "{out}");
    // Once destroyed (59 min late), the audit passes and says how late.
    server.authority.destroy_due(Duration::ZERO).unwrap();
    server.authority.wait_for_purges();
    let (code, out, err) = cli_verify(tmp.path(), &server.url, &key, now(&server));
    assert_eq!(code, 0, "{out}{err}");
    let row = out.lines().find(|l| l.contains("short")).unwrap();
    assert!(row.contains("3540 s") && row.contains("destroyed"), "{row}");
}

#[test]
fn a_directory_key_absent_from_the_log_is_caught() {
    let server = TestServer::start();
    let key = log_key(&server);
    let tmp = tempfile::tempdir().unwrap();
    let state = AuditorState::new(tmp.path());
    let log = verified(&server);
    let directory = server.directory();
    // Control: every genuine key is logged.
    let report = auditor::audit(
        &server.url,
        &key,
        Ok(log.clone()),
        &directory,
        &state,
        now(&server),
        TOLERANCE,
    )
    .unwrap();
    assert!(report.passed(), "{:?}", report.failures);
    assert!(report.directory_keys >= 3);
    // A key shown to someone, never logged.
    let extra = IssuerSigningKey::generate().unwrap();
    let mut doctored = directory.clone();
    doctored.keys.push(PublishedKey::new(
        extra.public().spki(),
        ClassName::new("medical").unwrap(),
        Window::parse("2026-12-25").unwrap(),
    ));
    let report = auditor::audit(
        &server.url,
        &key,
        Ok(log),
        &doctored,
        &state,
        now(&server),
        TOLERANCE,
    )
    .unwrap();
    assert_eq!(
        report.failures,
        vec![Failure::UnloggedKey {
            key_id: extra.public().key_id().to_hex(),
            class: "medical".into(),
            window: "2026-12-25".into(),
        }]
    );
    assert!(report.saved, "the log itself is fine");

    // Two keys logged for one class and window split its holders.
    let seed = [9u8; 32];
    let split_key = LogSigner::new("x.test/audit", &seed).verifier_key();
    let published = |id: &str| Event::SigningKeyPublished {
        key_id: id.into(),
        class: "personal".into(),
        window: "2026-12-02".into(),
    };
    let journal = standalone(
        tmp.path(),
        "split.log",
        &seed,
        &[(START, published("aa")), (START, published("bb"))],
    );
    let log = journal_log(&journal, &split_key).unwrap();
    let report = auditor::audit(
        "x.test",
        &split_key,
        Ok(log.clone()),
        &empty_directory(),
        &state,
        START,
        TOLERANCE,
    )
    .unwrap();
    assert!(
        matches!(report.failures.as_slice(), [Failure::SplitKey { key_ids, .. }] if key_ids.len() == 2),
        "{:?}",
        report.failures
    );
    assert_eq!(
        auditor::key_logged(&log, "aa", "personal", "2026-12-02"),
        Err(KeyProblem::Split {
            key_ids: vec!["aa".into(), "bb".into()]
        })
    );
}

// --- on site ------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn inspect_finds_no_destroyed_key_and_no_canary_and_can_fail() {
    if common::skip_unless_sled(
        "on-site inspection reads the data directory's files, and the database is not among them",
    ) {
        return;
    }
    let server = TestServer::start();
    let dir = server.dir.path();
    let canary = "INSPECT-CANARY-7f3e";
    let period = server
        .authority
        .open_period("autumn", START + Duration::hours(1), 0)
        .unwrap();
    let resident = server
        .authority
        .enrol(&period, person("INS0000001", canary), None)
        .unwrap();
    assert!(server.authority.record(&period, &resident).is_ok());
    // A backup of the vault taken while the period was live.
    let tmp = tempfile::tempdir().unwrap();
    let backup = tmp.path().join("vault-backup");
    copy_dir(&dir.join("vault"), &backup);

    server.clock.advance(Duration::hours(2));
    server.authority.destroy_due(Duration::ZERO).unwrap();
    server.authority.wait_for_purges();
    let pass = Passphrase::new(OPERATOR.into());
    let canaries = vec![canary.to_owned()];

    let report = auditor::inspect(dir, Some(&pass), &canaries).unwrap();
    assert!(report.passed(), "{:?}", report.failures);
    let vault = report.vault.as_ref().unwrap();
    assert_eq!(vault.ring_files.len(), 1);
    assert_eq!(vault.live_periods, 1, "the server's own period");
    assert_eq!(report.destroyed_in_log, 1);
    assert!(report.files_scanned > 3);
    assert!(report.usage.iter().any(|u| u.name == "sled" && u.bytes > 0));
    assert!(
        report
            .usage
            .iter()
            .any(|u| u.name == "vault" && u.files >= 2)
    );

    // The same through the CLI, passphrase from the environment.
    let d = dir.to_str().unwrap();
    let args = ["audit", "inspect", "--data-dir", d, "--canary", canary];
    let (code, out, err) = run(&args, &[("BLINDPASS_PASSPHRASE", OPERATOR)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("PASSED") && out.contains("master version"),
        "{out}"
    );
    // Without a passphrase the key-ring check is skipped, and says so.
    let (code, out, _) = run(&args, &[]);
    assert_eq!(code, 0);
    assert!(out.contains("NOT checked"), "{out}");
    // A wrong passphrase is an error, not a pass.
    let (code, _, err) = run(&args, &[("BLINDPASS_PASSPHRASE", "wrong passphrase")]);
    assert_eq!(code, 2, "{err}");

    // The canary check can fail: a plaintext copy left in the directory.
    std::fs::write(dir.join("export.csv"), format!("id,name\n1,{canary}\n")).unwrap();
    let report = auditor::inspect(dir, Some(&pass), &canaries).unwrap();
    assert_eq!(
        report.failures,
        vec![InspectFailure::CanaryFound {
            canary: 1,
            file: "export.csv".into()
        }]
    );
    let (code, out, _) = run(&args, &[("BLINDPASS_PASSPHRASE", OPERATOR)]);
    assert_eq!(code, 1);
    assert!(out.contains("canary 1 found in export.csv"), "{out}");
    assert!(!out.contains(canary), "the canary itself is not echoed");
    std::fs::remove_file(dir.join("export.csv")).unwrap();

    // The key-ring check can fail: the vault restored from the backup
    // brings the destroyed period's key back.
    let restored = tmp.path().join("restored");
    copy_dir(&dir.join("audit"), &restored.join("audit"));
    copy_dir(&backup, &restored.join("vault"));
    let report = auditor::inspect(&restored, Some(&pass), &[]).unwrap();
    assert_eq!(
        report.failures,
        vec![InspectFailure::DestroyedPeriodLive { period }]
    );
    // And an old key ring left next to the current one is caught.
    let old_ring = std::fs::read_dir(&backup)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("keyring.")
        })
        .unwrap();
    std::fs::copy(
        &old_ring,
        dir.join("vault").join(old_ring.file_name().unwrap()),
    )
    .unwrap();
    let report = auditor::inspect(dir, Some(&pass), &[]).unwrap();
    assert!(
        matches!(report.failures.as_slice(), [InspectFailure::ExtraKeyRings { versions }] if versions.len() == 2),
        "{:?}",
        report.failures
    );
}

// --- the wallet ----------------------------------------------------------------

/// A proxy to `upstream` that answers some paths with canned bodies (a
/// lying server) and forwards everything else.
struct Proxy {
    url: String,
}

impl Proxy {
    fn start(upstream: &str, canned: Vec<(String, &'static str, Vec<u8>)>) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // The thread lives until the test process exits.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let Some(request) = read_request(&mut client) else {
                    continue;
                };
                let line = String::from_utf8_lossy(&request);
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                if let Some((_, kind, body)) = canned.iter().find(|(p, _, _)| *p == path) {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = client.write_all(head.as_bytes());
                    let _ = client.write_all(body);
                    continue;
                }
                let mut server = TcpStream::connect(upstream).unwrap();
                server.write_all(&request).unwrap();
                let mut response = Vec::new();
                let _ = server.read_to_end(&mut response);
                let _ = client.write_all(&response);
            }
        });
        Self { url }
    }
}

#[test]
fn the_wallet_refuses_a_key_the_log_does_not_publish() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let personal = ClassName::new("personal").unwrap();
    let day = WindowChoice::Containing(date!(2026 - 12 - 02));
    let password = Passphrase::new(PASSWORD.into());
    let api = Api::new(&server.url);
    let mut wallet = Wallet::open_or_new(&tmp.path().join("w.json"), &server.url).unwrap();
    wallet
        .enrol(&api, &person("WAL0000001", "Olga Ivanova"), &password)
        .unwrap();
    wallet.login(&api, "WAL0000001", &password).unwrap();
    assert_eq!(wallet.log_key(), None);

    // Library level: the genuine key is logged, another is not.
    let log = verified(&server);
    let directory = server.directory();
    let genuine = directory
        .keys
        .iter()
        .find(|k| k.class == personal && k.window.to_string() == "2026-12-02")
        .unwrap();
    assert_eq!(
        auditor::key_logged(&log, &genuine.key_id, "personal", "2026-12-02"),
        Ok(())
    );
    let special = IssuerSigningKey::generate().unwrap();
    let special_id = special.public().key_id().to_hex();
    assert_eq!(
        auditor::key_logged(&log, &special_id, "personal", "2026-12-02"),
        Err(KeyProblem::NotLogged)
    );
    // A logged key for another window does not count.
    assert_eq!(
        auditor::key_logged(&log, &genuine.key_id, "personal", "2026-12-03"),
        Err(KeyProblem::NotLogged)
    );

    // A server that shows this wallet a key of its own for the day.
    let mut doctored = directory.clone();
    let slot = doctored
        .keys
        .iter_mut()
        .find(|k| k.key_id == genuine.key_id)
        .unwrap();
    *slot = PublishedKey::new(
        special.public().spki(),
        personal.clone(),
        Window::parse("2026-12-02").unwrap(),
    );
    let proxy = Proxy::start(
        &server.url,
        vec![(
            "/v1/directory".into(),
            "application/json",
            serde_json::to_vec(&doctored).unwrap(),
        )],
    );
    match wallet.request(&Api::new(&proxy.url), &personal, day, START) {
        Err(WalletError::UnloggedKey { key_id, .. }) => assert_eq!(key_id, special_id),
        other => panic!("{other:?}"),
    }
    assert!(wallet.passes().is_empty());
    // The log key was pinned on first use: the one the operator publishes.
    assert_eq!(wallet.log_key(), Some(log_key(&server).as_str()));

    // Control: the honest server's key is accepted.
    assert_eq!(wallet.request(&api, &personal, day, START).unwrap(), 1);
    let saved = Wallet::open(&tmp.path().join("w.json")).unwrap();
    assert_eq!(saved.log_key(), Some(log_key(&server).as_str()));
    assert!(saved.state().log_checkpoint.is_some());

    // A wallet pinned to another log key refuses to go on.
    let mut other = Wallet::open(&tmp.path().join("w.json")).unwrap();
    let impostor = LogSigner::new("blindpass.local/audit", &[3; 32]).verifier_key();
    assert!(other.pin_log_key(&impostor).unwrap());
    assert!(matches!(
        other.request(
            &api,
            &personal,
            WindowChoice::Containing(date!(2026 - 12 - 03)),
            START
        ),
        Err(WalletError::AuditLog(_))
    ));
    assert!(matches!(
        other.pin_log_key("not a key"),
        Err(WalletError::BadLogKey(_))
    ));
}
