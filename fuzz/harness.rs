//! The fuzz harnesses, one per parser family: each takes arbitrary bytes,
//! runs them through a blindpass decoder and checks what must hold for any
//! input (no panic; where a decode succeeds, re-encoding gives the input
//! back when the format is canonical). Shared by the libFuzzer targets in
//! `fuzz/fuzz_targets/` and by `tests/fuzz_corpus.rs`, which replays the
//! committed corpora under plain `cargo test`.

#![allow(dead_code)]

use blindpass::audit::tlog::{
    LogSigner, TILE_WIDTH, decode_bundle, encode_bundle, index_path, parse_index_path,
    verify_checkpoint,
};
use blindpass::audit::{Entry, scan_records};
use blindpass::auditor::log::verify_log;
use blindpass::fuzzing;
use blindpass::protocol::base45 as codec;
use blindpass::protocol::directory::{Directory, RfcDirectory, decode_token_key};
use blindpass::protocol::permit::Window;
use blindpass::protocol::qr::{QR_PREFIX, decode_payload, encode_payload};
use blindpass::protocol::token::{KeyId, Token, TokenChallenge, TokenRequest, TokenResponse};
use blindpass::verifier::DirectoryCache;
use blindpass::witness::{
    CosignatureSigner, CosignatureVerifier, WitnessPolicy, encode_add_request, parse_add_request,
};

/// A harness: panics when an input breaks what must hold.
pub type Harness = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Harness)] = &[
    ("token", token),
    ("qr_payload", qr_payload),
    ("directory", directory),
    ("note_tiles", note_tiles),
    ("journal", journal),
    ("keyring", keyring),
    ("master_slot", master_slot),
    ("http_bodies", http_bodies),
    ("witness", witness),
];

/// The seed of the log key the `note_tiles` target verifies under; its
/// seeds are signed with it.
pub const LOG_SEED: [u8; 32] = [7; 32];
/// The origin of that log.
pub const LOG_ORIGIN: &str = "issuer.example/audit";

/// The policy the `witness` target checks notes against: witnesses
/// `w1.example`, `w2.example`, `w3.example` with seeds 1, 2, 3; quorum 2.
pub fn witness_policy_text() -> String {
    let mut text = String::new();
    for i in 1..=3u8 {
        let signer =
            CosignatureSigner::new(&format!("w{i}.example"), &[i; 32]).expect("a valid key name");
        text.push_str(&format!(
            "witness {} http://127.0.0.1:{}\n",
            signer.verifier_key(),
            7380 + u16::from(i)
        ));
    }
    text.push_str("quorum 2\n");
    text
}

/// The witness's `add-checkpoint` body parser (canonical: a parsed body
/// re-encodes to the input), the policy file parser, the cosigner key
/// parser, and the quorum check on an arbitrary note.
pub fn witness(data: &[u8]) {
    if let Ok(request) = parse_add_request(data) {
        let encoded = encode_add_request(request.old_size, &request.proof, &request.checkpoint);
        assert_eq!(encoded, data, "add-checkpoint round trip");
        // The witness runs the proof through RFC 6962's check with the size
        // it holds: any proof, any sizes, an answer and no panic.
        let old = request.old_size.max(1);
        for new in [old, old.saturating_add(1), old.saturating_mul(2)] {
            let _ = tlog_tiles::check_tree(
                &request.proof,
                new,
                tlog_tiles::Hash([0; 32]),
                old,
                tlog_tiles::Hash([0; 32]),
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = WitnessPolicy::parse(text);
        let _ = CosignatureVerifier::new(text.trim());
    }
    let policy = WitnessPolicy::parse(&witness_policy_text()).expect("the fixed policy parses");
    if let Ok(quorum) = policy.check(data) {
        assert!(quorum.cosigned_by.len() >= 2, "quorum below the policy's");
    }
}

/// TokenRequest, Token, TokenResponse and TokenChallenge decoding; each
/// format is canonical, so a successful decode re-encodes to the input.
pub fn token(data: &[u8]) {
    if let Ok(request) = TokenRequest::decode(data) {
        assert_eq!(request.encode(), data, "TokenRequest round trip");
    }
    if let Ok(token) = Token::decode(data) {
        assert_eq!(token.encode(), data, "Token round trip");
    }
    if let Ok(response) = TokenResponse::decode(data) {
        assert_eq!(response.encode(), data, "TokenResponse round trip");
    }
    if let Ok(challenge) = TokenChallenge::decode(data) {
        let encoded = challenge
            .encode()
            .expect("a decoded TokenChallenge encodes");
        assert_eq!(encoded, data, "TokenChallenge round trip");
        let _ = challenge.digest();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = KeyId::from_hex(text) {
            assert_eq!(id.to_hex(), text.to_ascii_lowercase(), "KeyId round trip");
        }
    }
}

/// The `BP1:` QR payload and base45: the codec agrees with the `base45`
/// crate on every input, and a decoded payload re-encodes to the
/// (trimmed) input.
pub fn qr_payload(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = codec::decode(text);
    // The oracle truncates a last two-character group worth more than 255
    // instead of refusing it as RFC 9285 §4 asks; so it is trusted only
    // where its result encodes back to the input.
    let oracle = base45::decode(text)
        .ok()
        .filter(|b| base45::encode(b) == text);
    match (&ours, &oracle) {
        (Ok(a), Some(b)) => assert_eq!(a, b, "base45 decodes differ"),
        (Err(_), None) => {}
        _ => panic!(
            "base45 verdicts differ: ours ok={} oracle ok={}",
            ours.is_ok(),
            oracle.is_some()
        ),
    }
    if let Ok(bytes) = &ours {
        assert_eq!(codec::encode(bytes), text, "base45 round trip");
    }
    if let Ok(token) = decode_payload(text) {
        assert_eq!(encode_payload(&token), text.trim(), "payload round trip");
    }
    let _ = decode_payload(&format!("{QR_PREFIX}{text}"));
}

/// The directory JSON a verifier syncs (both forms), the verifier's
/// validation of it, and what is later asked of each key's window.
pub fn directory(data: &[u8]) {
    if let Ok(rfc) = serde_json::from_slice::<RfcDirectory>(data) {
        for key in &rfc.token_keys {
            let _ = decode_token_key(&key.token_key);
        }
    }
    let Ok(dir) = serde_json::from_slice::<Directory>(data) else {
        return;
    };
    let _ = dir.to_rfc();
    for key in &dir.keys {
        let _ = key.spki();
        let window = key.window;
        assert_eq!(
            Window::parse(&window.to_string()),
            Ok(window),
            "window round trip"
        );
        // What a verifier computes for every check of a pass.
        let _ = window.contains(window.starts_at(), time::Duration::minutes(5));
        let _ = window.ends_at();
    }
    let json = serde_json::to_vec(&dir).expect("a decoded directory serialises");
    let again: Directory = serde_json::from_slice(&json).expect("and parses again");
    assert_eq!(again, dir, "directory round trip");
    let _ = DirectoryCache::new(dir, time::OffsetDateTime::UNIX_EPOCH, None);
}

/// Signed-note checkpoints and entry bundles as the auditor reads them.
/// The input is `u16 BE note length ‖ note ‖ entry bundle`; the whole input
/// also goes through each parser on its own.
pub fn note_tiles(data: &[u8]) {
    let key = LogSigner::new(LOG_ORIGIN, &LOG_SEED).verifier_key();
    let _ = verify_checkpoint(data, &key);
    if let Ok(entries) = decode_bundle(data) {
        let slices: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        assert_eq!(encode_bundle(slices), data, "bundle round trip");
    }
    if let Ok(path) = std::str::from_utf8(data) {
        if let Ok((index, width)) = parse_index_path(path) {
            let canonical = if width == TILE_WIDTH {
                index_path(index)
            } else {
                format!("{}.p/{width}", index_path(index))
            };
            assert_eq!(canonical, path, "tile path round trip");
        }
    }
    if data.len() >= 2 {
        let note_len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        if note_len <= rest.len() {
            let (note, bundle) = rest.split_at(note_len);
            if let Ok(entries) = decode_bundle(bundle) {
                if let Ok(log) = verify_log(note, &entries, &key) {
                    assert_eq!(log.entries().len(), entries.len());
                }
            }
        }
    }
}

/// The audit journal: the scan `Journal::open` runs over the log file's
/// bytes (`scan_records`), and one entry as stored in the log.
pub fn journal(data: &[u8]) {
    if let Ok(scanned) = scan_records(data) {
        // The intact part is exactly the records, re-framed, each its
        // entry with the right index; only zeros or a torn record follow.
        assert!(scanned.intact_len <= data.len(), "intact length in bounds");
        let mut framed = Vec::new();
        for (seq, record) in scanned.records.iter().enumerate() {
            let entry = Entry::from_bytes(record).expect("a scanned record is an entry");
            assert_eq!(entry.seq, seq as u64, "a scanned record's index");
            framed.extend_from_slice(&(record.len() as u32).to_be_bytes());
            framed.extend_from_slice(record);
        }
        assert_eq!(framed, &data[..scanned.intact_len], "records re-frame");
    }
    if let Ok(entry) = Entry::from_bytes(data) {
        let json = serde_json::to_vec(&entry).expect("a decoded entry serialises");
        let again = Entry::from_bytes(&json).expect("and parses again");
        assert_eq!(again, entry, "entry round trip");
    }
}

/// The key ring decoder, and the deadlines the scheduler computes from
/// what it decoded (the dates come from admin requests).
pub fn keyring(data: &[u8]) {
    let Ok(ring) = fuzzing::key_ring(data) else {
        return;
    };
    for period in &ring.periods {
        let _ = period.deadline();
    }
    let bytes = fuzzing::key_ring_bytes(&ring).expect("a decoded ring encodes");
    let again = fuzzing::key_ring(bytes.expose_secret()).expect("and decodes again");
    assert_eq!(again.periods.len(), ring.periods.len());
    assert_eq!(again.destroyed, ring.destroyed);
    assert_eq!(again.signing_keys.len(), ring.signing_keys.len());
}

/// The master slot file decoder.
pub fn master_slot(data: &[u8]) {
    let _ = fuzzing::master_slot(data);
}

/// The JSON request bodies the server deserialises.
pub fn http_bodies(data: &[u8]) {
    let _ = fuzzing::http_request_bodies(data);
}
