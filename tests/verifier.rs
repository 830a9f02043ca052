//! The offline verifier against real keys and real tokens from an in-process
//! issuer (no server): every verdict, the stale-directory report, reading a
//! pass from a picture, and the `blindpass verify` command line. Then, at the
//! end, the client faces end to end against a real server on 127.0.0.1:0:
//! wallet → issuer → verifier sync → offline check, retries that are never
//! charged twice, and the `wallet`/`verify`/`admin` commands.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use blindpass::clock::ManualClock;
use blindpass::crypto::blind::{IssuerSigningKey, begin_issuance, finalize};
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::Passphrase;
use blindpass::issuer::{Authority, AuthorityConfig};
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::Window;
use blindpass::protocol::qr::{decode_payload, encode_payload};
use blindpass::protocol::token::{Token, TokenChallenge};
use blindpass::verifier::{DirectoryCache, InvalidReason, Verdict, VerifierError, scan};
use blindpass::wallet::qr::render_png;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Tuesday 1 December 2026, 09:00 UTC: when the directory was fetched.
const FETCHED: OffsetDateTime = datetime!(2026-12-01 09:00 UTC);
const SKEW: Duration = Duration::minutes(5);
const BASE45: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

struct Fixture {
    directory: Directory,
    /// A `personal` pass for 2026-12-01.
    personal: String,
    /// A `work` pass for ISO week 2026-W49 (Mon 30 Nov – Sun 6 Dec).
    work: String,
    /// Signed by the issuer's real key, but for another issuer name.
    wrong_issuer: String,
    /// Right challenge, signed by a key the directory does not list.
    unknown_key: String,
}

fn obtain(authority: &Authority, issuer: &str, class: &str, window: &str) -> Token {
    let window = Window::parse(window).unwrap();
    let key = authority.public_key(class, &window).unwrap();
    let digest = TokenChallenge::permit(issuer).digest().unwrap();
    let (request, pending) = begin_issuance(&key, digest).unwrap();
    let response = authority.blind_sign(class, &window, &request).unwrap();
    finalize(&pending, &response).unwrap()
}

/// One issuer for the whole file: key generation is the slow part.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let data = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(FETCHED);
        let authority = Authority::init(
            data.path(),
            &Passphrase::new("operator passphrase for tests".into()),
            Argon2Params::INSECURE_FAST_FOR_TESTS,
            AuthorityConfig {
                key_horizon_days: 1,
                ..AuthorityConfig::default()
            },
            Arc::new(clock),
        )
        .unwrap();
        authority
            .open_period("test", FETCHED + Duration::days(30), 3600)
            .unwrap();
        authority.ensure_signing_keys().unwrap();
        let directory = authority.directory();
        let issuer = directory.issuer_name.clone();
        let personal = encode_payload(&obtain(&authority, &issuer, "personal", "2026-12-01"));
        let work = encode_payload(&obtain(&authority, &issuer, "work", "2026-W49"));
        let wrong_issuer = encode_payload(&obtain(
            &authority,
            "someone-else.example",
            "personal",
            "2026-12-01",
        ));
        let stranger = IssuerSigningKey::generate().unwrap();
        let digest = TokenChallenge::permit(&issuer).digest().unwrap();
        let (request, pending) = begin_issuance(stranger.public(), digest).unwrap();
        let unknown_key =
            encode_payload(&finalize(&pending, &stranger.blind_sign(&request).unwrap()).unwrap());
        Fixture {
            directory,
            personal,
            work,
            wrong_issuer,
            unknown_key,
        }
    })
}

fn cache() -> DirectoryCache {
    DirectoryCache::new(fixture().directory.clone(), FETCHED, None).unwrap()
}

fn verdict(payload: &str, at: OffsetDateTime) -> Verdict {
    cache().check(payload, at, SKEW).verdict
}

#[test]
fn a_pass_is_valid_on_its_day_and_shows_only_class_and_window() {
    let Verdict::Valid(pass) = verdict(&fixture().personal, datetime!(2026-12-01 12:00 UTC)) else {
        panic!("expected a valid pass");
    };
    assert_eq!(pass.class().as_str(), "personal");
    assert_eq!(pass.window().to_string(), "2026-12-01");
}

#[test]
fn a_pass_is_invalid_the_day_before_and_the_day_after() {
    let before = verdict(&fixture().personal, datetime!(2026-11-30 12:00 UTC));
    let after = verdict(&fixture().personal, datetime!(2026-12-02 12:00 UTC));
    let window = Window::parse("2026-12-01").unwrap();
    assert!(matches!(
        before,
        Verdict::Invalid(InvalidReason::NotYetValid { window: w, .. }) if w == window
    ));
    assert!(matches!(
        after,
        Verdict::Invalid(InvalidReason::Expired { window: w, .. }) if w == window
    ));
}

#[test]
fn a_weekly_pass_covers_its_iso_week_only() {
    let work = &fixture().work;
    // Monday and Sunday of 2026-W49 are in; the next Monday is not.
    assert!(verdict(work, datetime!(2026-11-30 00:10 UTC)).is_valid());
    assert!(verdict(work, datetime!(2026-12-06 23:50 UTC)).is_valid());
    assert!(matches!(
        verdict(work, datetime!(2026-12-07 00:10 UTC)),
        Verdict::Invalid(InvalidReason::Expired { .. })
    ));
}

#[test]
fn a_tampered_token_fails_the_signature_check() {
    let at = datetime!(2026-12-01 12:00 UTC);
    let token = decode_payload(&fixture().personal).unwrap();
    // Byte-level tampering that still parses: the nonce, then the signature.
    let mut bad = token.clone();
    bad.nonce[7] ^= 0x01;
    assert_eq!(
        verdict(&encode_payload(&bad), at),
        Verdict::Invalid(InvalidReason::BadSignature)
    );
    let mut bad = token.clone();
    bad.authenticator[200] ^= 0x80;
    assert_eq!(
        verdict(&encode_payload(&bad), at),
        Verdict::Invalid(InvalidReason::BadSignature)
    );
}

#[test]
fn every_single_character_change_in_the_payload_is_refused() {
    // Change one base45 character near the end (inside the authenticator)
    // to every other character of the alphabet: each result either fails
    // to parse or fails the signature; none is valid, and at least one
    // parses (so the signature check is exercised, not only the parser).
    let at = datetime!(2026-12-01 12:00 UTC);
    let original = fixture().personal.clone();
    let position = original.len() - 20;
    let mut parsed = 0;
    for replacement in BASE45.chars() {
        let mut chars: Vec<char> = original.chars().collect();
        if chars[position] == replacement {
            continue;
        }
        chars[position] = replacement;
        let tampered: String = chars.into_iter().collect();
        match verdict(&tampered, at) {
            Verdict::Invalid(InvalidReason::BadSignature) => parsed += 1,
            Verdict::Invalid(InvalidReason::Malformed(_)) => {}
            other => panic!("{replacement:?} at {position}: {other:?}"),
        }
    }
    assert!(parsed > 0);
}

#[test]
fn truncated_and_foreign_payloads_are_malformed() {
    let at = datetime!(2026-12-01 12:00 UTC);
    let payload = &fixture().personal;
    for broken in [
        &payload[..payload.len() - 3],
        &payload[..payload.len() - 30],
        &payload[..4],
        "HC1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEPWK",
        "",
        "BP1:",
    ] {
        assert!(
            matches!(
                verdict(broken, at),
                Verdict::Invalid(InvalidReason::Malformed(_))
            ),
            "{broken:?}"
        );
    }
}

#[test]
fn a_token_under_an_unknown_key_is_refused() {
    assert_eq!(
        verdict(&fixture().unknown_key, datetime!(2026-12-01 12:00 UTC)),
        Verdict::Invalid(InvalidReason::UnknownKey)
    );
}

#[test]
fn a_token_for_another_issuer_is_refused() {
    let at = datetime!(2026-12-01 12:00 UTC);
    assert_eq!(
        verdict(&fixture().wrong_issuer, at),
        Verdict::Invalid(InvalidReason::WrongIssuer)
    );
    // And the genuine pass, checked by a verifier that expects another
    // issuer name with the same keys, is refused the same way.
    let mut directory = fixture().directory.clone();
    directory.issuer_name = "someone-else.example".into();
    let other = DirectoryCache::new(directory, FETCHED, None).unwrap();
    assert_eq!(
        other.check(&fixture().personal, at, SKEW).verdict,
        Verdict::Invalid(InvalidReason::WrongIssuer)
    );
}

#[test]
fn a_stale_directory_is_reported_but_still_used() {
    let max_age = Duration::seconds(i64::try_from(fixture().directory.max_age_s).unwrap());
    let fresh = cache().check(&fixture().personal, FETCHED + max_age, SKEW);
    assert!(!fresh.stale());
    assert!(fresh.verdict.is_valid());
    let late = FETCHED + max_age + Duration::minutes(1);
    let stale = cache().check(&fixture().personal, late, SKEW);
    assert!(stale.stale());
    assert!(stale.verdict.is_valid(), "stale keys are used, not dropped");
    let info = stale.staleness.unwrap();
    assert_eq!(info.fetched_at, FETCHED);
    assert_eq!(info.overdue, Duration::minutes(1));
    // Staleness is reported for invalid passes too.
    let bad = cache().check("BP1:nonsense", late, SKEW);
    assert!(bad.stale() && !bad.verdict.is_valid());
}

#[test]
fn the_cache_survives_a_store_and_load() {
    let dir = tempfile::tempdir().unwrap();
    cache().store(dir.path()).unwrap();
    let loaded = DirectoryCache::load(dir.path()).unwrap();
    assert_eq!(loaded.fetched_at(), FETCHED);
    assert!(
        loaded
            .check(&fixture().personal, datetime!(2026-12-01 12:00 UTC), SKEW)
            .verdict
            .is_valid()
    );
    // A corrupted cache file is refused, not half-used.
    let file = DirectoryCache::file(dir.path());
    let text = std::fs::read_to_string(&file).unwrap();
    let key_id = &fixture().directory.keys[0].key_id;
    std::fs::write(&file, text.replace(key_id.as_str(), &"0".repeat(64))).unwrap();
    assert!(matches!(
        DirectoryCache::load(dir.path()),
        Err(VerifierError::BadDirectory(_))
    ));
}

#[test]
fn a_png_of_the_pass_round_trips_to_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pass.png");
    std::fs::write(&path, render_png(&fixture().personal).unwrap()).unwrap();
    let payload = scan::payload_from_image_file(&path).unwrap();
    assert_eq!(payload, fixture().personal);
    assert!(verdict(&payload, datetime!(2026-12-01 12:00 UTC)).is_valid());
}

#[test]
fn a_jpeg_of_the_pass_is_read_too() {
    let png = render_png(&fixture().work).unwrap();
    let image = image::load_from_memory(&png).unwrap().to_luma8();
    let mut jpeg = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let payload = scan::payload_from_image_bytes(&jpeg).unwrap();
    assert!(verdict(&payload, datetime!(2026-12-02 12:00 UTC)).is_valid());
}

// --- the command line --------------------------------------------------

fn cache_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cache().store(dir.path()).unwrap();
    dir
}

/// The binary with `args`, every stream piped, and no settings from the
/// environment.
fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_blindpass"));
    command
        .args(args)
        .env_remove("BLINDPASS_VERIFIER_CACHE")
        .env_remove("BLINDPASS_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn blindpass(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = cli(args).spawn().unwrap();
    {
        use std::io::Write as _;
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn check(cache: &Path, extra: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut args = vec!["verify", "--cache", cache.to_str().unwrap(), "check"];
    args.extend_from_slice(extra);
    let out = blindpass(&args, stdin);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn cli_valid_pass_exits_0() {
    let dir = cache_dir();
    let (code, out, err) = check(
        dir.path(),
        &[&fixture().personal, "--at", "2026-12-01T09:30:00Z"],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "VALID personal 2026-12-01");
    assert!(!err.contains("stale"), "{err}");
}

#[test]
fn cli_output_into_a_closed_pipe_is_not_a_crash() {
    // `blindpass verify check … | head -0`: the reader is gone before the
    // verdict is written. The check still runs to its end and exits as it
    // would have; nothing panics.
    let dir = cache_dir();
    let mut child = cli(&["verify", "--cache", dir.path().to_str().unwrap(), "check"])
        .args([&fixture().personal, "--at", "2026-12-01T09:30:00Z"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn cli_invalid_pass_exits_1_and_says_why() {
    let dir = cache_dir();
    let (code, out, _) = check(
        dir.path(),
        &[&fixture().personal, "--at", "2026-12-02T09:30:00Z"],
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(out.trim(), "INVALID: expired (window 2026-12-01)");
    let (code, out, _) = check(
        dir.path(),
        &["BP1:XYZ", "--at", "2026-12-01T09:30:00Z"],
        None,
    );
    assert_eq!(code, 1);
    assert!(out.starts_with("INVALID: malformed"), "{out}");
}

#[test]
fn cli_json_output_and_stale_warning() {
    let dir = cache_dir();
    // Three hours after the fetch: valid, but the directory (max-age 1 h) is stale.
    let (code, out, err) = check(
        dir.path(),
        &[
            &fixture().personal,
            "--at",
            "2026-12-01T12:00:00Z",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["class"], "personal");
    assert_eq!(json["window"], "2026-12-01");
    assert_eq!(json["reason"], serde_json::Value::Null);
    assert_eq!(json["stale"], true);
    assert!(err.contains("warning: directory is stale"), "{err}");
    let (code, out, _) = check(
        dir.path(),
        &[
            &fixture().unknown_key,
            "--at",
            "2026-12-01T09:30:00Z",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["reason"], "unknown-key");
    assert_eq!(json["stale"], false);
}

#[test]
fn cli_reads_stdin_and_images() {
    let dir = cache_dir();
    let stdin = format!("{}\n", fixture().personal);
    let (code, out, err) = check(dir.path(), &["--at", "2026-12-01T09:30:00Z"], Some(&stdin));
    assert_eq!(code, 0, "{out}{err}");
    let png = dir.path().join("pass.png");
    std::fs::write(&png, render_png(&fixture().personal).unwrap()).unwrap();
    let (code, out, err) = check(
        dir.path(),
        &[
            "--image",
            png.to_str().unwrap(),
            "--at",
            "2026-12-01T09:30:00Z",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "VALID personal 2026-12-01");
}

#[test]
fn cli_usage_errors_exit_2_with_a_hint() {
    let dir = cache_dir();
    // An image that does not exist.
    let missing = dir.path().join("no-such.png");
    let (code, _, err) = check(dir.path(), &["--image", missing.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error:") && err.contains("hint:"), "{err}");
    // A file that is not an image.
    let text = dir.path().join("not-an-image.png");
    std::fs::write(&text, "hello").unwrap();
    let (code, _, err) = check(dir.path(), &["--image", text.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    // A PNG whose header claims 16000×16000: refused from the header, with
    // the size, the limit and what to do.
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, png_header_claiming(16_000, 16_000)).unwrap();
    let (code, _, err) = check(dir.path(), &["--image", huge.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("image too large: 16000×16000, limit 40 MP") && err.contains("hint: crop"),
        "{err}"
    );
    // No cache yet: the hint says to sync.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = check(empty.path(), &[&fixture().personal], None);
    assert_eq!(code, 2);
    assert!(err.contains("hint:") && err.contains("sync"), "{err}");
    // Nothing on stdin.
    let (code, _, err) = check(dir.path(), &[], Some(""));
    assert_eq!(code, 2, "{err}");
    // A bad --at.
    let (code, _, _) = check(dir.path(), &[&fixture().personal, "--at", "tomorrow"], None);
    assert_eq!(code, 2);
}

// --- end to end, against a real server ----------------------------------

mod end_to_end {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration as StdDuration;

    use blindpass::client::{Client as Api, RetryPolicy};
    use blindpass::issuer::resident::PersonalData;
    use blindpass::protocol::api::ProblemType;
    use blindpass::protocol::permit::ClassName;
    use blindpass::verifier::SyncOutcome;
    use blindpass::wallet::{Wallet, WalletError, WindowChoice};
    use time::macros::date;

    use super::common::{ADMIN, PASSWORD, START, TestServer, read_request};
    use super::*;

    fn person(document: &str, employer: Option<&str>) -> PersonalData {
        PersonalData {
            full_name: "Ivan Petrov".into(),
            date_of_birth: date!(1990 - 05 - 17),
            document_number: document.into(),
            address: "Tverskaya 1, Moscow".into(),
            phone: "+74951234567".into(),
            employer_tax_number: employer.map(str::to_owned),
        }
    }

    fn password() -> Passphrase {
        Passphrase::new(PASSWORD.into())
    }

    fn fast_retry(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_delay: StdDuration::from_millis(10),
        }
    }

    /// A wallet enrolled and logged in at `url`.
    fn enrolled_wallet(dir: &Path, url: &str, document: &str) -> (Wallet, Api) {
        let api = Api::new(url).with_retry(fast_retry(3));
        let mut wallet = Wallet::open_or_new(&dir.join("wallet.json"), url).unwrap();
        wallet
            .enrol(&api, &person(document, None), &password())
            .unwrap();
        wallet.login(&api, document, &password()).unwrap();
        (wallet, api)
    }

    fn personal() -> ClassName {
        ClassName::new("personal").unwrap()
    }

    #[test]
    fn wallet_pass_is_accepted_by_a_synced_offline_verifier() {
        let server = TestServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let (mut wallet, api) = enrolled_wallet(tmp.path(), &server.url, "AB1234567");
        let number = wallet
            .request(
                &api,
                &personal(),
                WindowChoice::Containing(date!(2026 - 12 - 02)),
                START,
            )
            .unwrap();
        assert_eq!(number, 1);
        // The wallet file is private and survives a reopen.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(wallet.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let wallet = Wallet::open(wallet.path()).unwrap();
        let pass = wallet.pass(1).unwrap();
        assert_eq!(pass.window.to_string(), "2026-12-02");
        assert!(wallet.state().session.is_some());
        // The verifier syncs once, then checks offline (the server is gone).
        let cache_dir = tmp.path().join("cache");
        let (_, outcome) = DirectoryCache::sync(&cache_dir, &server.url, START).unwrap();
        assert_eq!(outcome, SyncOutcome::Updated);
        let (_, again) = DirectoryCache::sync(&cache_dir, &server.url, START).unwrap();
        assert_eq!(again, SyncOutcome::NotModified);
        let payload = pass.payload.clone();
        drop(server);
        let cache = DirectoryCache::load(&cache_dir).unwrap();
        let report = cache.check(&payload, datetime!(2026-12-02 10:00 UTC), SKEW);
        let Verdict::Valid(valid) = &report.verdict else {
            panic!("{:?}", report.verdict);
        };
        assert_eq!(valid.class().as_str(), "personal");
        assert!(report.stale(), "synced a day earlier with a 1 h max-age");
    }

    #[test]
    fn wallet_errors_say_what_the_server_said() {
        let server = TestServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let (mut wallet, api) = enrolled_wallet(tmp.path(), &server.url, "E1000001");
        let on = |d| WindowChoice::Containing(d);
        // A class the directory does not offer: refused before any request.
        match wallet.request(
            &api,
            &ClassName::new("nope").unwrap(),
            on(date!(2026 - 12 - 02)),
            START,
        ) {
            Err(WalletError::UnknownClass { offered, .. }) => {
                assert!(offered.contains(&"personal".to_owned()));
            }
            other => panic!("{other:?}"),
        }
        // A window without a published key.
        assert!(matches!(
            wallet.request(&api, &personal(), on(date!(2027 - 01 - 10)), START),
            Err(WalletError::NoKeyForWindow { .. })
        ));
        // A week asked of a daily class.
        let week = Window::parse("2026-W49").unwrap();
        assert!(matches!(
            wallet.request(&api, &personal(), WindowChoice::Exactly(week), START),
            Err(WalletError::WrongWindowKind { .. })
        ));
        // Work passes need an employer: the server's problem comes through.
        let work = ClassName::new("work").unwrap();
        match wallet.request(&api, &work, on(date!(2026 - 12 - 02)), START) {
            Err(WalletError::Problem(p)) => {
                assert_eq!((p.status, p.kind), (403, Some(ProblemType::NotEligible)));
            }
            other => panic!("{other:?}"),
        }
        // Enrolling the same document twice.
        let mut other = Wallet::open_or_new(&tmp.path().join("other.json"), &server.url).unwrap();
        match other.enrol(&api, &person("E1000001", None), &password()) {
            Err(WalletError::Problem(p)) => {
                assert_eq!(p.kind, Some(ProblemType::DuplicateDocument))
            }
            other => panic!("{other:?}"),
        }
        assert!(wallet.passes().is_empty(), "nothing stored on failure");
        // Erasing ends the session; the wallet forgets it.
        wallet.erase(&api).unwrap();
        assert!(matches!(
            wallet.request(&api, &personal(), on(date!(2026 - 12 - 02)), START),
            Err(WalletError::NotLoggedIn)
        ));
        assert!(matches!(
            wallet.login(&api, "E1000001", &password()),
            Err(WalletError::Problem(p)) if p.is(ProblemType::InvalidCredentials)
        ));
    }

    /// A proxy that forwards each request to `upstream` and, for the first
    /// `drop_first` token requests, lets the server do the work but closes
    /// the client's connection without an answer: a network failure after
    /// the issuer has charged the quota.
    struct DroppingProxy {
        url: String,
        token_requests: std::sync::Arc<AtomicUsize>,
    }

    impl DroppingProxy {
        fn start(upstream: &str, drop_first: usize) -> Self {
            let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let token_requests = std::sync::Arc::new(AtomicUsize::new(0));
            let seen = token_requests.clone();
            // The thread lives until the test process exits.
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(mut client) = client else { continue };
                    let Some(request) = read_request(&mut client) else {
                        continue;
                    };
                    let is_token = request.starts_with(b"POST /token-request");
                    let mut server = TcpStream::connect(upstream).unwrap();
                    server.write_all(&request).unwrap();
                    let mut response = Vec::new();
                    let _ = server.read_to_end(&mut response);
                    if is_token && seen.fetch_add(1, Ordering::SeqCst) < drop_first {
                        continue; // drop the connection, answer unsent
                    }
                    let _ = client.write_all(&response);
                }
            });
            Self {
                url,
                token_requests,
            }
        }

        fn token_requests(&self) -> usize {
            self.token_requests.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_lost_answer_is_retried_with_the_same_blinded_message_and_charged_once() {
        let server = TestServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let day = |d| WindowChoice::Containing(d);

        // Control: without retries, a lost answer is an error, and the
        // issuer has charged the quota anyway — a client that re-blinded
        // and asked again would pay twice.
        let proxy = DroppingProxy::start(&server.url, 1);
        let (mut naive, _) = enrolled_wallet(&tmp.path().join("a"), &server.url, "R1000001");
        let no_retry = Api::new(&proxy.url).with_retry(fast_retry(1));
        assert!(matches!(
            naive.request(&no_retry, &personal(), day(date!(2026 - 12 - 02)), START),
            Err(WalletError::Network { .. })
        ));
        naive
            .request(&no_retry, &personal(), day(date!(2026 - 12 - 03)), START)
            .unwrap();
        match naive.request(&no_retry, &personal(), day(date!(2026 - 12 - 04)), START) {
            Err(WalletError::Problem(p)) => assert_eq!(p.kind, Some(ProblemType::QuotaExceeded)),
            other => panic!("{other:?}"),
        }
        assert_eq!(naive.passes().len(), 1, "one pass for two charges");

        // The wallet's way: the same bytes again, answered and charged once.
        let proxy = DroppingProxy::start(&server.url, 1);
        let (mut wallet, _) = enrolled_wallet(&tmp.path().join("b"), &server.url, "R1000002");
        let api = Api::new(&proxy.url).with_retry(fast_retry(3));
        wallet
            .request(&api, &personal(), day(date!(2026 - 12 - 02)), START)
            .unwrap();
        assert_eq!(proxy.token_requests(), 2, "one lost, one retried");
        wallet
            .request(&api, &personal(), day(date!(2026 - 12 - 03)), START)
            .unwrap();
        assert_eq!(
            wallet.passes().len(),
            2,
            "two passes for the weekly quota of two"
        );
        let cache = DirectoryCache::new(server.directory(), START, None).unwrap();
        for (pass, at) in wallet.passes().iter().zip([
            datetime!(2026-12-02 12:00 UTC),
            datetime!(2026-12-03 12:00 UTC),
        ]) {
            assert!(cache.check(&pass.payload, at, SKEW).verdict.is_valid());
        }
    }

    fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_blindpass"))
            .args(args)
            .env_remove("BLINDPASS_SERVER")
            .env_remove("BLINDPASS_WALLET")
            .env_remove("BLINDPASS_VERIFIER_CACHE")
            .env_remove("BLINDPASS_ADMIN_TOKEN")
            .env_remove("BLINDPASS_ADMIN_TOKEN_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    #[test]
    fn cli_wallet_to_verifier() {
        let server = TestServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let wallet = tmp.path().join("w.json");
        let cache = tmp.path().join("cache");
        let png = tmp.path().join("pass.png");
        let w = wallet.to_str().unwrap();
        let c = cache.to_str().unwrap();
        let base = ["wallet", "--server", &server.url, "--wallet", w];
        let with = |extra: &[&str]| -> Vec<String> {
            base.iter().chain(extra).map(|s| s.to_string()).collect()
        };
        let call = |args: Vec<String>, stdin: &str| {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&refs, stdin)
        };
        let (code, out, err) = call(
            with(&[
                "enroll",
                "--full-name",
                "Anna Smirnova",
                "--date-of-birth",
                "1988-02-29",
                "--document-number",
                "CLI000001",
                "--address",
                "Arbat 5",
                "--phone",
                "+74950000001",
            ]),
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("logged in until"), "{out}");
        assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
        let (code, out, err) = call(
            with(&["request", "--class", "personal", "--date", "2026-12-02"]),
            "",
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("pass 1: personal 2026-12-02"), "{out}");
        // The server URL is remembered in the wallet: no --server needed.
        let (code, out, _) = run(&["wallet", "--wallet", w, "list"], "");
        assert_eq!(code, 0);
        assert!(
            out.contains("personal") && out.contains("2026-12-02"),
            "{out}"
        );
        let (code, out, err) = run(&["wallet", "--wallet", w, "show", "1"], "");
        assert_eq!(code, 0, "{err}");
        assert!(out.lines().count() > 30 && out.contains('█'), "{out}");
        let (code, _, err) = run(
            &[
                "wallet",
                "--wallet",
                w,
                "show",
                "1",
                "--png",
                png.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(code, 0, "{err}");
        let (code, text, _) = run(&["wallet", "--wallet", w, "show", "1", "--text"], "");
        assert_eq!(code, 0);
        assert!(text.trim().starts_with("BP1:"));
        // A week for a daily class is a usage error with a hint.
        let (code, _, err) = run(
            &[
                "wallet", "--wallet", w, "request", "--class", "personal", "--week", "2026-W49",
            ],
            "",
        );
        assert_eq!(code, 2);
        assert!(err.contains("hint: use --date"), "{err}");
        // The verifier: sync while the server is up, then check the picture.
        let (code, out, err) = run(
            &["verify", "--cache", c, "sync", "--server", &server.url],
            "",
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("synced"), "{out}");
        drop(server);
        let (code, out, err) = run(
            &[
                "verify",
                "--cache",
                c,
                "check",
                "--image",
                png.to_str().unwrap(),
                "--at",
                "2026-12-02T08:00:00Z",
            ],
            "",
        );
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(out.trim(), "VALID personal 2026-12-02");
        let (code, out, _) = run(
            &[
                "verify",
                "--cache",
                c,
                "check",
                text.trim(),
                "--at",
                "2026-12-03T08:00:00Z",
            ],
            "",
        );
        assert_eq!(code, 1);
        assert_eq!(out.trim(), "INVALID: expired (window 2026-12-02)");
        // Forgetting the pass.
        let (code, _, _) = run(&["wallet", "--wallet", w, "forget", "1"], "");
        assert_eq!(code, 0);
        let (_, out, _) = run(&["wallet", "--wallet", w, "list"], "");
        assert!(out.starts_with("no passes"), "{out}");
    }

    #[test]
    fn cli_admin_opens_extends_lists_and_ends_periods() {
        let server = TestServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let token_file = tmp.path().join("admin.token");
        std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
        let t = token_file.to_str().unwrap();
        let admin = |extra: &[&str]| {
            let mut args = vec!["admin", "--server", &server.url, "--token-file", t];
            args.extend_from_slice(extra);
            run(&args, "")
        };
        let (code, out, err) = admin(&[
            "--json",
            "period",
            "open",
            "--name",
            "winter",
            "--ends-at",
            "2026-12-20T00:00:00Z",
            "--grace-s",
            "60",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        let opened: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = opened["id"].as_str().unwrap().to_owned();
        assert_eq!(opened["grace_s"], 60);
        let (code, out, err) =
            admin(&["period", "extend", &id, "--ends-at", "2026-12-25T00:00:00Z"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("2026-12-25T00:00:00Z"), "{out}");
        let (code, out, _) = admin(&["period", "list"]);
        assert_eq!(code, 0);
        assert!(out.contains(&id) && out.contains("winter"), "{out}");
        let (code, out, err) = admin(&["period", "end", &id]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(&id) && out.ends_with("live\n"), "{out}");
        // With no grace the key is destroyed in the same call: the answer
        // and the table say so, never `live`.
        let open_now = |grace: &str| {
            let (code, out, err) = admin(&[
                "--json",
                "period",
                "open",
                "--name",
                "spring",
                "--ends-at",
                "2026-12-20T00:00:00Z",
                "--grace-s",
                grace,
            ]);
            assert_eq!(code, 0, "{out}{err}");
            let opened: serde_json::Value = serde_json::from_str(&out).unwrap();
            opened["id"].as_str().unwrap().to_owned()
        };
        let (code, out, err) = admin(&["--json", "period", "end", &open_now("0")]);
        assert_eq!(code, 0, "{out}{err}");
        let ended: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(ended["destroy_pending"], true, "{out}");
        let spring = open_now("0");
        let (code, out, err) = admin(&["period", "end", &spring]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("DESTROYED") && out.contains(&spring), "{out}");
        assert!(!out.contains("live"), "{out}");
        // A wrong token is refused with a hint, exit 2.
        std::fs::write(&token_file, "wrong\n").unwrap();
        let (code, _, err) = admin(&["period", "list"]);
        assert_eq!(code, 2);
        assert!(err.contains("Forbidden") && err.contains("hint:"), "{err}");
        // No token at all.
        let (code, _, err) = run(&["admin", "--server", &server.url, "period", "list"], "");
        assert_eq!(code, 2);
        assert!(err.contains("no admin token"), "{err}");
    }
}

/// A small PNG whose header (IHDR) claims `width` × `height`.
fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::GrayImage::from_pixel(8, 8, image::Luma([255]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    // 8 signature bytes, then IHDR: length, type, width, height, …, CRC.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = !0u32;
    for byte in &png[12..29] {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    png[29..33].copy_from_slice(&(!crc).to_be_bytes());
    png
}
