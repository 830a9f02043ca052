//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through
//! its harness (`fuzz/harness.rs`, the same code the libFuzzer targets
//! run), so inputs that once found a bug keep being checked by plain
//! `cargo test`, with no nightly toolchain.
//!
//! `write_seed_corpora` (ignored) writes the seed inputs the corpora were
//! grown from: real encodings made by the code itself and the RFC 9578
//! test vectors. See `docs/fuzzing.md`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs `harness` on every file of `dir`; returns how many files there
/// were and the names of those whose run panicked.
fn replay(dir: &Path, harness: fn(&[u8])) -> (usize, Vec<String>) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let mut failed = Vec::new();
    for file in &files {
        let bytes = fs::read(file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| harness(&bytes))).is_err() {
            failed.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    (files.len(), failed)
}

#[test]
fn every_committed_corpus_input_passes_its_harness() {
    let mut failures = Vec::new();
    for (target, harness) in harness::TARGETS {
        let (count, failed) = replay(&corpus_dir(target), *harness);
        assert!(count > 0, "the {target} corpus is empty");
        failures.extend(failed.into_iter().map(|f| format!("{target}/{f}")));
    }
    assert!(failures.is_empty(), "harness panicked on: {failures:?}");
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let mut dirs: Vec<String> =
        fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    dirs.sort();
    let mut targets: Vec<String> = harness::TARGETS
        .iter()
        .map(|(t, _)| (*t).to_owned())
        .collect();
    targets.sort();
    assert_eq!(dirs, targets);
}

#[test]
fn replay_reports_a_panicking_input() {
    // Shows the replay can fail: a harness that panics on one input is
    // caught and named.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("good"), b"fine").unwrap();
    fs::write(dir.path().join("bad"), b"boom").unwrap();
    let harness: fn(&[u8]) = |data| assert_ne!(data, b"boom");
    assert_eq!(replay(dir.path(), harness), (2, vec!["bad".to_owned()]));
}

mod seeds {
    use super::harness::{LOG_ORIGIN, LOG_SEED, witness_policy_text};
    use blindpass::audit::tlog::{LogSigner, StoredHashes, encode_bundle};
    use blindpass::audit::{Entry, Event};
    use blindpass::crypto::blind::IssuerSigningKey;
    use blindpass::crypto::kdf::Argon2Params;
    use blindpass::crypto::secret::{Passphrase, PeriodKey};
    use blindpass::fuzzing;
    use blindpass::ids::PeriodId;
    use blindpass::protocol::directory::{Directory, PublishedKey};
    use blindpass::protocol::permit::{ClassName, Window};
    use blindpass::protocol::qr::encode_payload;
    use blindpass::protocol::token::{
        KeyId, NK, Token, TokenChallenge, TokenRequest, TokenResponse,
    };
    use blindpass::vault::keyring::{DestroyedPeriod, KeyRing, LivePeriod, SigningKeyEntry};
    use blindpass::vault::master::PassphraseSlot;
    use blindpass::witness::{CosignatureSigner, encode_add_request};
    use sha2::{Digest, Sha256};
    use std::fs;
    use time::macros::datetime;

    fn write(target: &str, bytes: &[u8]) {
        let dir = super::corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        let name = format!("seed-{}", &hex::encode(Sha256::digest(bytes))[..16]);
        fs::write(dir.join(name), bytes).unwrap();
    }

    fn token() -> Token {
        Token {
            nonce: [5; 32],
            challenge_digest: TokenChallenge::permit("issuer.example").digest().unwrap(),
            token_key_id: KeyId([7; 32]),
            authenticator: vec![8; NK],
        }
    }

    fn entries() -> Vec<Vec<u8>> {
        let period = PeriodId::generate();
        let at = datetime!(2026-12-01 10:00 UTC);
        let events = [
            Event::ServiceStarted,
            Event::PeriodOpened {
                period,
                name: "lockdown-2026-12".into(),
                ends_at: "2026-12-31T00:00:00Z".into(),
                deadline: "2027-01-30T00:00:00Z".into(),
            },
            Event::SigningKeyPublished {
                key_id: KeyId([7; 32]).to_hex(),
                class: "personal".into(),
                window: "2026-W49".into(),
            },
            Event::PeriodKeyDestroyed {
                period,
                deadline: "2027-01-30T00:00:00Z".into(),
                late_by_s: 3,
            },
        ];
        events
            .into_iter()
            .enumerate()
            .map(|(seq, event)| {
                serde_json::to_vec(&Entry {
                    seq: seq as u64,
                    at,
                    event,
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    #[ignore = "writes the seed inputs into fuzz/corpus; run by hand"]
    fn write_seed_corpora() {
        // token: the RFC 9578 vectors and the code's own encodings.
        let vectors: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/vectors/rfc9578_type2.json"
            ))
            .unwrap(),
        )
        .unwrap();
        for v in vectors.as_array().unwrap() {
            for field in [
                "token_challenge",
                "token_request",
                "token_response",
                "token",
            ] {
                write("token", &hex::decode(v[field].as_str().unwrap()).unwrap());
            }
        }
        write("token", &token().encode());
        write(
            "token",
            &TokenChallenge::permit("issuer.example").encode().unwrap(),
        );
        let request = TokenRequest {
            truncated_token_key_id: 7,
            blinded_msg: vec![9; NK],
        };
        write("token", &request.encode());
        write(
            "token",
            &TokenResponse {
                blind_sig: vec![1; NK],
            }
            .encode(),
        );
        write("token", KeyId([0xab; 32]).to_hex().as_bytes());

        // qr_payload: a real payload and the RFC 9285 examples.
        write("qr_payload", encode_payload(&token()).as_bytes());
        write(
            "qr_payload",
            format!("{}\n", encode_payload(&token())).as_bytes(),
        );
        for text in ["BB8", "%69 VD92EX0", "UJCLQE7W581", "QED8WEX0", "GGW"] {
            write("qr_payload", text.as_bytes());
        }

        // directory: both forms, with a real key.
        let signing = IssuerSigningKey::generate().unwrap();
        let spki = signing.public().spki().to_vec();
        let rfc_spki = hex::decode(vectors[0]["pkS"].as_str().unwrap()).unwrap();
        let dir = Directory {
            issuer_name: "issuer.example".into(),
            issuer_request_uri: "http://127.0.0.1:8080/token-request".into(),
            generated_at: 1_796_083_200,
            max_age_s: 3600,
            keys: vec![
                PublishedKey::new(
                    &spki,
                    ClassName::new("personal").unwrap(),
                    Window::parse("2026-12-01").unwrap(),
                ),
                PublishedKey::new(
                    &rfc_spki,
                    ClassName::new("work").unwrap(),
                    Window::parse("2026-W49").unwrap(),
                ),
            ],
        };
        write("directory", &serde_json::to_vec_pretty(&dir).unwrap());
        write("directory", &serde_json::to_vec(&dir.to_rfc()).unwrap());

        // note_tiles: a signed checkpoint over real entries, framed as the
        // target reads it, and each part alone.
        let entries = entries();
        let signer = LogSigner::new(LOG_ORIGIN, &LOG_SEED);
        let mut tree = StoredHashes::default();
        for e in &entries {
            tree.append(e).unwrap();
        }
        let note = signer
            .sign_checkpoint(tree.size(), tree.root(tree.size()).unwrap())
            .unwrap();
        let bundle = encode_bundle(entries.iter().map(Vec::as_slice));
        let mut framed = (note.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&note);
        framed.extend_from_slice(&bundle);
        write("note_tiles", &framed);
        write("note_tiles", &note);
        write("note_tiles", &bundle);
        for path in ["x001/234", "005.p/17", "x012/x345/678"] {
            write("note_tiles", path.as_bytes());
        }

        // journal: every entry above, and the log file they make.
        let mut log = Vec::new();
        for e in &entries {
            write("journal", e);
            log.extend_from_slice(&(e.len() as u32).to_be_bytes());
            log.extend_from_slice(e);
        }
        write("journal", &log);
        write("journal", &log[..log.len() - 5]);

        // keyring: a ring with a live period, a tombstone and a signing key.
        let mut ring = KeyRing::new();
        ring.periods.push(LivePeriod {
            id: PeriodId::generate(),
            name: "lockdown-2026-12".into(),
            opened_at: datetime!(2026-12-01 00:00 UTC),
            ends_at: datetime!(2026-12-31 00:00 UTC),
            grace_s: 30 * 86_400,
            key: PeriodKey::generate(),
            destroy_pending: false,
        });
        ring.destroyed.push(DestroyedPeriod {
            id: PeriodId::generate(),
            name: "lockdown-2026-11".into(),
            opened_at: datetime!(2026-11-01 00:00 UTC),
            ends_at: datetime!(2026-11-30 00:00 UTC),
            deadline: datetime!(2026-12-30 00:00 UTC),
            destroyed_at: datetime!(2026-12-30 00:00:03 UTC),
        });
        write(
            "keyring",
            fuzzing::key_ring_bytes(&ring).unwrap().expose_secret(),
        );
        ring.signing_keys.push(SigningKeyEntry {
            class: ClassName::new("personal").unwrap(),
            window: Window::parse("2026-W49").unwrap(),
            key: signing,
        });
        write(
            "keyring",
            fuzzing::key_ring_bytes(&ring).unwrap().expose_secret(),
        );

        // master_slot: a real slot file.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("master.slot");
        PassphraseSlot::create(
            &path,
            &Passphrase::new("correct horse".into()),
            Argon2Params::INSECURE_FAST_FOR_TESTS,
        )
        .unwrap();
        write("master_slot", &fs::read(&path).unwrap());

        // http_bodies: one body of each kind the server accepts.
        for body in [
            r#"{"full_name":"Ada Example","date_of_birth":"1990-01-31","document_number":"X1234567","address":"1 Main St","phone":"+1 555 0100","employer_tax_number":"","password":"correct horse battery"}"#,
            r#"{"document_number":"X1234567","password":"correct horse battery"}"#,
            r#"{"name":"lockdown-2026-12","ends_at":"2026-12-31T00:00:00Z","grace_s":2592000}"#,
            r#"{"ends_at":"2027-01-15T00:00:00Z"}"#,
        ] {
            write("http_bodies", body.as_bytes());
        }

        // witness: add-checkpoint bodies (first contact, and with a proof)
        // over a checkpoint of the `note_tiles` log; that checkpoint with
        // two and with one cosignature of the target's policy; the policy.
        let log = LogSigner::new(LOG_ORIGIN, &LOG_SEED);
        let mut tree = StoredHashes::default();
        for i in 0..5u8 {
            tree.append(&[i]).unwrap();
        }
        let note = log.sign_checkpoint(5, tree.root(5).unwrap()).unwrap();
        write("witness", &encode_add_request(0, &[], &note));
        let proof = tlog_tiles::prove_tree(5, 3, &tree).unwrap();
        write("witness", &encode_add_request(3, &proof, &note));
        let text = signed_note::Note::from_bytes(&note)
            .unwrap()
            .text()
            .to_vec();
        let mut cosigned = note.clone();
        for i in 1..=2u8 {
            let signer = CosignatureSigner::new(&format!("w{i}.example"), &[i; 32]).unwrap();
            cosigned.extend_from_slice(&signer.signature_line(&text, 1_800_000_000));
            write("witness", &cosigned);
        }
        write("witness", witness_policy_text().as_bytes());
    }
}
