//! The master key in a PKCS#11 token (SoftHSM2): a data directory is
//! created, opened, issues, destroys a period and restarts with its master
//! key in the token; rotation interrupted at each step recovers with exactly
//! one token key left; a copy of the directory from before a rotation does
//! not open with the PIN; a wrong PIN or a missing token is refused and
//! changes nothing.
//!
//! SoftHSM2 reads its configuration once per process, so every test runs in
//! a child process of its own with a fresh token in a temporary directory
//! (`SOFTHSM2_CONF`), found by its label. Without SoftHSM2 the tests fail
//! under `CI=true` and are skipped with a printed reason otherwise.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use blindpass::audit::Event;
use blindpass::clock::{Clock as _, ManualClock};
use blindpass::crypto::blind::begin_issuance;
use blindpass::issuer::{Authority, AuthorityConfig, DataDir, IssuerError};
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::{Window, WindowKind};
use blindpass::vault::pkcs11::{MASTER_FILE, TokenError, TokenMaster, TokenPin, TokenUri};
use blindpass::vault::{FaultPoint, VaultError};
use common::process::{KillOnDrop, agent, free_port, run, spawn_answering};
use common::softhsm::{self, MODULE};
use time::{Duration, OffsetDateTime};

const PIN: &str = "4711-test-pin";
const SO_PIN: &str = "0815-test-so-pin";
const CHILD_ENV: &str = "BLINDPASS_TEST_HSM_CHILD";

/// A fresh SoftHSM2 token in its own directory.
struct Token {
    dir: PathBuf,
    label: String,
}

impl Token {
    fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }
    fn pin_file(&self) -> PathBuf {
        self.dir.join("pin")
    }
    /// The `--master` URI, the PIN from a file.
    fn uri(&self) -> String {
        softhsm::uri(&self.dir, &self.label)
    }
    fn master(&self, root: &Path) -> Result<TokenMaster, VaultError> {
        let uri = TokenUri::parse(&self.uri()).unwrap();
        let file = DataDir::new(root).vault().join(MASTER_FILE);
        TokenMaster::open(&file, &uri, &TokenPin::new(PIN.into()))
    }
    /// Master versions with a key object in the token, for the vault at `root`.
    fn key_versions(&self, root: &Path) -> Vec<u64> {
        self.master(root).unwrap().key_versions().unwrap()
    }
    fn blindpass(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_blindpass"));
        cmd.env("SOFTHSM2_CONF", self.conf())
            .env_remove("BLINDPASS_PASSPHRASE")
            .env_remove("BLINDPASS_PKCS11_PIN");
        cmd
    }
}

/// Runs `body` with a fresh token, in a child process of this test binary
/// (`name` must be the calling test's name).
fn with_token(name: &str, body: fn(&Token)) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let token = Token {
            dir: PathBuf::from(dir),
            label: name.chars().take(32).collect(),
        };
        body(&token);
        return;
    }
    if let Some(reason) = softhsm::missing() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("SoftHSM2 is required under CI: {reason}");
        }
        eprintln!("skipped {name}: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let label: String = name.chars().take(32).collect();
    softhsm::init_token(dir.path(), &label, PIN, SO_PIN);
    let (out, text) = run(Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("SOFTHSM2_CONF", dir.path().join("softhsm2.conf")));
    assert!(
        out.status.success(),
        "{name} failed in its process:\n{text}"
    );
    assert!(text.contains("1 passed"), "{name} did not run:\n{text}");
    // What the child printed (measurements), for --nocapture.
    print!("{text}");
}

fn config() -> AuthorityConfig {
    AuthorityConfig {
        key_horizon_days: 2,
        ..AuthorityConfig::default()
    }
}

/// Opens (or creates) the data directory at `root` the way `serve --master` does.
fn open(token: &Token, root: &Path, clock: &ManualClock) -> Result<Authority, IssuerError> {
    blindpass::cli::master::open_or_init(&token.uri(), root, config(), Arc::new(clock.clone()))
        .unwrap()
}

fn destroyed_in_log(authority: &Authority) -> Vec<blindpass::ids::PeriodId> {
    authority
        .journal()
        .entries()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::PeriodKeyDestroyed { period, .. } => Some(period),
            _ => None,
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `root` with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn rotation_interrupted_at_each_step_recovers_with_one_token_key() {
    with_token(
        "rotation_interrupted_at_each_step_recovers_with_one_token_key",
        |token| {
            let clock = ManualClock::new(OffsetDateTime::now_utc());
            // (where it stops, token key versions right after the crash)
            for (point, after_crash) in [
                (FaultPoint::AfterIntent, vec![1]),
                (FaultPoint::AfterNewMasterPrepared, vec![1, 2]),
                (FaultPoint::AfterNewRingWritten, vec![1, 2]),
                (FaultPoint::AfterMasterReplaced, vec![1, 2]),
                (FaultPoint::BeforePurge, vec![2]),
            ] {
                let data = tempfile::tempdir().unwrap();
                let root = data.path().join("data");
                let authority = open(token, &root, &clock).unwrap();
                let keep = authority
                    .open_period("keep", clock.now() + Duration::days(3), 0)
                    .unwrap();
                let gone = authority
                    .open_period("gone", clock.now() + Duration::days(1), 0)
                    .unwrap();
                authority.dangerous_inject_fault(Some(point));
                let err = authority.destroy_period(&gone).unwrap_err();
                assert!(
                    matches!(err, IssuerError::Vault(VaultError::InjectedFault(p)) if p == point),
                    "{point:?}: {err}"
                );
                drop(authority);
                assert_eq!(token.key_versions(&root), after_crash, "{point:?}");

                // Restart: the destruction is finished, the old token key
                // (or the new one, if the commit never came) is gone.
                let authority = open(token, &root, &clock).unwrap();
                assert_eq!(authority.master_version(), 2, "{point:?}");
                assert_eq!(token.key_versions(&root), vec![2], "{point:?}");
                assert!(destroyed_in_log(&authority).contains(&gone), "{point:?}");
                assert!(!destroyed_in_log(&authority).contains(&keep), "{point:?}");
                // And the vault keeps working: the next destruction rotates on.
                authority.destroy_period(&keep).unwrap();
                assert_eq!(authority.master_version(), 3);
                assert_eq!(token.key_versions(&root), vec![3], "{point:?}");
            }
        },
    );
}

#[test]
fn a_copy_from_before_a_rotation_does_not_open_with_the_pin() {
    with_token(
        "a_copy_from_before_a_rotation_does_not_open_with_the_pin",
        |token| {
            let clock = ManualClock::new(OffsetDateTime::now_utc());
            let data = tempfile::tempdir().unwrap();
            let root = data.path().join("data");
            let authority = open(token, &root, &clock).unwrap();
            let period = authority
                .open_period("p", clock.now() + Duration::days(1), 0)
                .unwrap();
            let backup = data.path().join("backup");
            copy_dir(&root, &backup);
            // Before the rotation the copy opens with the PIN: it holds the
            // period key, which is what the rotation must make worthless.
            let (version, _) =
                blindpass::vault::master::MasterKeyProvider::load(&token.master(&backup).unwrap())
                    .unwrap();
            assert_eq!(version, 1);

            authority.destroy_period(&period).unwrap();
            assert_eq!(token.key_versions(&root), vec![2]);
            match token.master(&backup) {
                Err(VaultError::Token(TokenError::KeyGone { version: 1 })) => {}
                other => panic!("the old copy opened or failed otherwise: {other:?}"),
            }
            // As `serve --master` would open it: refused with a hint.
            let Err(refused) = blindpass::cli::master::open_or_init(
                &token.uri(),
                &backup,
                config(),
                Arc::new(clock.clone()),
            ) else {
                panic!("the copy from before the rotation opened");
            };
            let refused = refused
                .downcast_ref::<blindpass::cli::CliError>()
                .expect("a message and a hint");
            assert!(
                refused
                    .message
                    .contains("the token holds no key for master version 1"),
                "{refused}"
            );
            // The live directory still opens.
            drop(authority);
            assert_eq!(open(token, &root, &clock).unwrap().master_version(), 2);
        },
    );
}

#[test]
fn token_key_is_non_extractable() {
    with_token("token_key_is_non_extractable", |token| {
        use cryptoki::object::{Attribute, AttributeType, ObjectClass};
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        let data = tempfile::tempdir().unwrap();
        let root = data.path().join("data");
        drop(open(token, &root, &clock).unwrap());
        let ctx = cryptoki::context::Pkcs11::new(MODULE).unwrap();
        // This process's context may be initialised already.
        let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
        ));
        let slot = ctx
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token.label)
            .unwrap();
        let session = ctx.open_ro_session(slot).unwrap();
        let _ = session.login(
            cryptoki::session::UserType::User,
            Some(&cryptoki::types::AuthPin::from(PIN)),
        );
        let keys = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let attrs = session
            .get_attributes(
                keys[0],
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                ],
            )
            .unwrap();
        for attr in &attrs {
            match attr {
                Attribute::Sensitive(v) | Attribute::NeverExtractable(v) => assert!(*v),
                Attribute::Extractable(v) => assert!(!*v),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(attrs.len(), 3);
        // The value itself is not to be had.
        let value = session
            .get_attributes(keys[0], &[AttributeType::Value])
            .unwrap_or_default();
        assert!(
            !value.iter().any(|a| matches!(a, Attribute::Value(_))),
            "{value:?}"
        );
    });
}

fn serve(token: &Token, root: &Path, port: u16) -> Command {
    let mut cmd = token.blindpass();
    cmd.args(["serve", "--data-dir"])
        .arg(root)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--key-horizon-days", "2", "--master", &token.uri()]);
    cmd
}

fn start(token: &Token, root: &Path, port: u16) -> KillOnDrop {
    spawn_answering(&mut serve(token, root, port), port)
}

#[test]
fn serve_issues_destroys_and_restarts_with_the_master_in_the_token() {
    with_token(
        "serve_issues_destroys_and_restarts_with_the_master_in_the_token",
        |token| {
            let data = tempfile::tempdir().unwrap();
            let root = data.path().join("data");
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}");
            let server = start(token, &root, port);
            assert!(root.join("vault").join(MASTER_FILE).exists());
            assert!(!DataDir::new(&root).master_slot().exists());

            let admin = std::fs::read_to_string(root.join("admin.token")).unwrap();
            let ends = (OffsetDateTime::now_utc() + Duration::days(10))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let mut resp = agent()
                .post(&format!("{base}/v1/admin/periods"))
                .header("Authorization", &format!("Bearer {}", admin.trim()))
                .send_json(serde_json::json!({"name": "hsm", "ends_at": ends, "grace_s": 0}))
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201);
            let period: serde_json::Value =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            let period = period["id"].as_str().unwrap().to_owned();
            let resp = agent()
                .post(&format!("{base}/v1/residents"))
                .send_json(serde_json::json!({"full_name": "Token Test",
                    "date_of_birth": "1980-01-01", "document_number": "HSM0001",
                    "address": "Somewhere 1", "phone": "+74950000003",
                    "password": "token test password"}))
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201);
            let mut resp = agent()
                .post(&format!("{base}/v1/sessions"))
                .send_json(serde_json::json!({"document_number": "HSM0001",
                    "password": "token test password"}))
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201);
            let session: serde_json::Value =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            let session = session["session_token"].as_str().unwrap().to_owned();

            // Issue one pass.
            let mut resp = agent().get(&format!("{base}/v1/directory")).call().unwrap();
            let directory: Directory =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            let today = OffsetDateTime::now_utc().date();
            let window = Window::containing(WindowKind::Day, today).next();
            let (key, digest) = common::key_for(&directory, "personal", window);
            let request = begin_issuance(&key, digest).unwrap().0.encode();
            let resp = agent()
                .post(&format!(
                    "{base}/token-request?class=personal&window={window}"
                ))
                .header("Authorization", &format!("Bearer {session}"))
                .header("Content-Type", "application/private-token-request")
                .send(&request[..])
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);

            // A backup of the whole data directory, taken before the rotation.
            let backup = data.path().join("backup");
            copy_dir(&root, &backup);
            assert_eq!(token.key_versions(&root), vec![1]);

            // End the period with no grace: it is destroyed now.
            let resp = agent()
                .post(&format!("{base}/v1/admin/periods/{period}/end"))
                .header("Authorization", &format!("Bearer {}", admin.trim()))
                .send_empty()
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            let t0 = Instant::now();
            while token.key_versions(&root) != vec![2] {
                assert!(
                    t0.elapsed() < StdDuration::from_secs(60),
                    "the period was not destroyed"
                );
                std::thread::sleep(StdDuration::from_millis(200));
            }
            drop(server);

            // Restart on the live directory.
            let server = start(token, &root, port);
            let resp = agent().get(&format!("{base}/readyz")).call().unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            drop(server);

            // The inspection with the token finds no destroyed generation.
            let mut inspect = token.blindpass();
            inspect
                .args(["audit", "inspect", "--data-dir"])
                .arg(&root)
                .args(["--master", &token.uri()]);
            let (out, text) = run(&mut inspect);
            assert!(out.status.success(), "{text}");
            assert!(
                text.contains("key objects present for versions [2]"),
                "{text}"
            );
            // The key ring, opened through the token, agrees with the log.
            assert!(
                text.contains("key ring: master version 2, 0 live periods, 1 destroyed"),
                "{text}"
            );

            // The backup does not open, PIN or not, and is left as it was.
            let before = snapshot(&backup);
            let (out, text) = run(&mut serve(token, &backup, free_port()));
            assert!(!out.status.success(), "{text}");
            assert!(
                text.contains("the token holds no key for master version 1"),
                "{text}"
            );
            assert_eq!(snapshot(&backup), before);
        },
    );
}

#[test]
fn inspect_fails_while_a_destroyed_generation_key_is_in_the_token() {
    with_token(
        "inspect_fails_while_a_destroyed_generation_key_is_in_the_token",
        |token| {
            let clock = ManualClock::new(OffsetDateTime::now_utc());
            let data = tempfile::tempdir().unwrap();
            let root = data.path().join("data");
            let authority = open(token, &root, &clock).unwrap();
            let period = authority
                .open_period("p", clock.now() + Duration::days(1), 0)
                .unwrap();
            // Stop after the commit, before the old token key is destroyed.
            authority.dangerous_inject_fault(Some(FaultPoint::AfterMasterReplaced));
            authority.destroy_period(&period).unwrap_err();
            drop(authority);
            let inspect = || {
                let mut cmd = token.blindpass();
                cmd.args(["audit", "inspect", "--data-dir"])
                    .arg(&root)
                    .args(["--master", &token.uri()]);
                run(&mut cmd)
            };
            let (out, text) = inspect();
            assert!(!out.status.success(), "{text}");
            assert!(
                text.contains("still holds the key of master version 1"),
                "{text}"
            );
            // With --json, the token's findings are a field of the one JSON
            // object on stdout, and nothing of them is on stderr.
            let inspect_json = || {
                let mut cmd = token.blindpass();
                cmd.args(["audit", "inspect", "--json", "--data-dir"])
                    .arg(&root)
                    .args(["--master", &token.uri()]);
                let out = cmd.output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(!stderr.contains("key objects present"), "{stderr}");
                assert!(!stderr.contains("still holds the key"), "{stderr}");
                let report: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                        panic!("stdout is not one JSON object ({e}); stderr: {stderr}")
                    });
                (out.status.success(), report)
            };
            let (passed, report) = inspect_json();
            assert!(!passed, "{report}");
            let found = &report["master_token"];
            assert_eq!(found["master_version"], 2, "{report}");
            assert_eq!(found["key_versions"], serde_json::json!([1, 2]), "{report}");
            assert_eq!(found["stale"][0]["version"], 1, "{report}");
            assert_eq!(report["vault"]["master_version"], 2, "{report}");
            // The inspection changed nothing: the key is still there.
            assert_eq!(token.key_versions(&root), vec![1, 2]);
            // The next open finishes the job; the inspection then passes.
            drop(open(token, &root, &clock).unwrap());
            let (out, text) = inspect();
            assert!(out.status.success(), "{text}");
            let (passed, report) = inspect_json();
            assert!(passed, "{report}");
            assert_eq!(
                report["master_token"]["key_versions"],
                serde_json::json!([2]),
                "{report}"
            );
            assert_eq!(report["master_token"]["stale"], serde_json::json!([]));
        },
    );
}

#[test]
fn a_wrong_pin_or_a_missing_token_is_refused_and_changes_nothing() {
    with_token(
        "a_wrong_pin_or_a_missing_token_is_refused_and_changes_nothing",
        |token| {
            let clock = ManualClock::new(OffsetDateTime::now_utc());
            let data = tempfile::tempdir().unwrap();
            let root = data.path().join("data");
            let authority = open(token, &root, &clock).unwrap();
            authority
                .open_period("p", clock.now() + Duration::days(1), 0)
                .unwrap();
            drop(authority);
            let files = snapshot(&root);
            let keys = token.key_versions(&root);
            let port = free_port();

            let wrong_pin = data.path().join("wrong-pin");
            std::fs::write(&wrong_pin, "0000-not-the-pin\n").unwrap();
            let wrong = token.uri().replace(
                &token.pin_file().display().to_string(),
                &wrong_pin.display().to_string(),
            );
            let absent = token
                .uri()
                .replace(&format!("token={}", token.label), "token=absent");
            let in_uri = format!("{}&pin-value={PIN}", token.uri());
            for (uri, expected) in [
                (wrong.as_str(), "the token refused the PIN"),
                (absent.as_str(), "no PKCS#11 token labelled \"absent\""),
                (in_uri.as_str(), "pin-value is refused"),
            ] {
                let mut cmd = token.blindpass();
                cmd.args(["serve", "--data-dir"]).arg(&root).args([
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--master",
                    uri,
                ]);
                let (out, text) = run(&mut cmd);
                assert!(!out.status.success(), "{uri}: {text}");
                assert!(text.contains(expected), "{uri}: {text}");
                assert!(text.contains("hint"), "{uri}: {text}");
                assert!(!text.contains(PIN), "the PIN was printed: {text}");
                assert!(!text.contains("ERROR"), "noise before the refusal: {text}");
                assert_eq!(snapshot(&root), files, "{uri} changed a file");
                assert_eq!(token.key_versions(&root), keys, "{uri}");
            }
            // On a first start too: nothing is created.
            let fresh = data.path().join("fresh");
            let mut cmd = token.blindpass();
            cmd.args(["serve", "--data-dir"]).arg(&fresh).args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--master",
                &wrong,
            ]);
            let (out, text) = run(&mut cmd);
            assert!(!out.status.success(), "{text}");
            assert!(text.contains("the token refused the PIN"), "{text}");
            assert!(!fresh.exists(), "a refused first start created {fresh:?}");
            // A directory whose key is in the token is not reopened as a
            // passphrase vault (that would start a second, empty vault).
            let mut cmd = token.blindpass();
            cmd.args(["serve", "--data-dir"])
                .arg(&root)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env("BLINDPASS_PASSPHRASE", "some passphrase");
            let (out, text) = run(&mut cmd);
            assert!(!out.status.success(), "{text}");
            assert!(text.contains("master key is in a PKCS#11 token"), "{text}");
            assert_eq!(
                snapshot(&root),
                files,
                "the passphrase start changed a file"
            );
        },
    );
}

/// The issuer's RSA private-key operation done by the token (a raw
/// RSA-X-509 signature, the RFC 9474 `BlindSign` core) gives the same blind
/// signature as the issuer's own, and a token that verifies. Also times both
/// on one thread: `BLINDPASS_HSM_SIGN_ROUNDS` (default 20) signatures each.
#[test]
fn a_raw_rsa_signature_in_the_token_is_a_correct_blind_signature() {
    with_token(
        "a_raw_rsa_signature_in_the_token_is_a_correct_blind_signature",
        |token| {
            use blindpass::crypto::blind::{IssuerSigningKey, finalize};
            use blindpass::protocol::token::{TokenChallenge, TokenResponse};
            use cryptoki::mechanism::Mechanism;
            use cryptoki::object::{Attribute, KeyType, ObjectClass};
            use rsa::traits::{PrivateKeyParts, PublicKeyParts};

            let key = IssuerSigningKey::generate().unwrap();
            let sk = key.dangerous_rsa_private_key();
            let big = |x: &rsa::BoxedUint| {
                let bytes = x.to_be_bytes();
                let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                bytes[start..].to_vec()
            };
            let primes = sk.primes();
            let template = [
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                Attribute::Modulus(big(sk.n())),
                Attribute::PublicExponent(big(sk.e())),
                Attribute::PrivateExponent(big(sk.d())),
                Attribute::Prime1(big(&primes[0])),
                Attribute::Prime2(big(&primes[1])),
                Attribute::Exponent1(big(sk.dp().unwrap())),
                Attribute::Exponent2(big(sk.dq().unwrap())),
                Attribute::Coefficient(big(&sk.crt_coefficient().unwrap())),
            ];
            let ctx = cryptoki::context::Pkcs11::new(MODULE).unwrap();
            let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
                cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
            ));
            let slot = ctx
                .get_slots_with_initialized_token()
                .unwrap()
                .into_iter()
                .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token.label)
                .unwrap();
            let session = ctx.open_rw_session(slot).unwrap();
            session
                .login(
                    cryptoki::session::UserType::User,
                    Some(&cryptoki::types::AuthPin::from(PIN)),
                )
                .unwrap();
            let handle = session.create_object(&template).unwrap();

            let digest = TokenChallenge::permit("blindpass.test").digest().unwrap();
            let (request, pending) = begin_issuance(key.public(), digest).unwrap();
            let in_token = session
                .sign(&Mechanism::RsaX509, handle, &request.blinded_msg)
                .unwrap();
            let own = key.blind_sign(&request).unwrap();
            assert_eq!(in_token, own.blind_sig, "the token's signature differs");
            let permit = finalize(
                &pending,
                &TokenResponse {
                    blind_sig: in_token,
                },
            )
            .unwrap();
            key.public().verify_signature(&permit).unwrap();

            let rounds: usize = std::env::var("BLINDPASS_HSM_SIGN_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(20);
            let requests: Vec<_> = (0..rounds)
                .map(|_| begin_issuance(key.public(), digest).unwrap().0)
                .collect();
            let t0 = Instant::now();
            for r in &requests {
                session
                    .sign(&Mechanism::RsaX509, handle, &r.blinded_msg)
                    .unwrap();
            }
            let token_ms = t0.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
            let t0 = Instant::now();
            for r in &requests {
                key.blind_sign(r).unwrap();
            }
            let own_ms = t0.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
            println!(
                "RSA-2048 blind signature, one thread, {rounds} rounds: token (RSA-X-509) \
                 {token_ms:.3} ms each ({:.0}/s); in process (default backend) {own_ms:.3} ms each \
                 ({:.0}/s); token/in-process time ratio {:.2}",
                1000.0 / token_ms,
                1000.0 / own_ms,
                token_ms / own_ms
            );
        },
    );
}

#[test]
fn a_damaged_master_file_is_a_clean_error_that_changes_nothing() {
    with_token(
        "a_damaged_master_file_is_a_clean_error_that_changes_nothing",
        |token| {
            let clock = ManualClock::new(OffsetDateTime::now_utc());
            let data = tempfile::tempdir().unwrap();
            let root = data.path().join("data");
            drop(open(token, &root, &clock).unwrap());
            let path = DataDir::new(&root).vault().join(MASTER_FILE);
            let good = std::fs::read_to_string(&path).unwrap();
            let stored: serde_json::Value = serde_json::from_str(&good).unwrap();
            let wrapped = stored["wrapped"].as_str().unwrap();
            let mut flipped = stored.clone();
            let first = if wrapped.starts_with('0') { "1" } else { "0" };
            flipped["wrapped"] = format!("{first}{}", &wrapped[1..]).into();
            let mut renumbered = stored.clone();
            renumbered["iv"] = "00".repeat(12).into();
            for (what, bytes) in [
                ("a flipped ciphertext", flipped.to_string()),
                ("another nonce", renumbered.to_string()),
                ("a truncated file", good[..good.len() / 2].to_owned()),
            ] {
                std::fs::write(&path, &bytes).unwrap();
                let files = snapshot(&root);
                match token.master(&root) {
                    Err(VaultError::Corrupt(_)) => {}
                    other => panic!("{what}: {other:?}"),
                }
                assert_eq!(snapshot(&root), files, "{what}");
            }
            std::fs::write(&path, &good).unwrap();
            assert_eq!(token.key_versions(&root), vec![1]);
        },
    );
}
