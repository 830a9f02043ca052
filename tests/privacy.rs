//! Privacy invariants, checked on what the issuer actually keeps: after many
//! residents obtain passes, neither the data directory nor the captured
//! logs contain personal data, token nonces, signatures, or a key id next
//! to a nonce; and what the issuer saw (blinded messages, blind signatures)
//! does not verify as any token.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use blindpass::crypto::blind::IssuerPublicKey;
use blindpass::protocol::token::Token;
use common::TestServer;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        captured
    })
    .clone()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_issuer_keeps_and_logs_nothing_that_links_a_pass_to_a_person() {
    let logs = capture_logs();
    let server = TestServer::start();
    let mut tokens: Vec<Token> = Vec::new();
    let mut seen_by_issuer = Vec::new();
    let mut personal = Vec::new();
    for n in 0..12 {
        let document = format!("PRIV{n:06}");
        let (status, _) = server.enrol(&document, Some("7707083893"));
        assert_eq!(status, 201);
        personal.push(format!("Resident {document}"));
        personal.push(format!("Street {document}"));
        personal.push(document.clone());
        let session = server.login(&document);
        for (class, window) in [("personal", "2026-12-02"), ("work", "2026-W49")] {
            let (request, token) = server.obtain(&session, class, window);
            seen_by_issuer.push(request.blinded_msg.clone());
            tokens.push(token.unwrap());
        }
        // A refused request is logged too; it must not leak either.
        assert_eq!(
            server
                .obtain(&session, "party", "2026-12-02")
                .1
                .unwrap_err(),
            404
        );
    }
    server.authority.store().flush().unwrap();
    let logs = logs.0.lock().unwrap().clone();
    assert!(contains(&logs, b"/token-request"), "the log capture works");

    // The checks can fail: the scanner finds bytes that are there, in the
    // data directory and (on PostgreSQL) in the database's files.
    let dir = server.dir.path();
    let marker = dir.join("scanner-self-test");
    std::fs::write(&marker, tokens[0].nonce).unwrap();
    assert_eq!(server.stored_files_containing(&tokens[0].nonce).len(), 1);
    std::fs::remove_file(&marker).unwrap();
    if let Some(database) = &server.database {
        let planted = b"scanner self-test in the database";
        database.sql(&format!(
            "CREATE TABLE scanner_self_test (x bytea); \
             INSERT INTO scanner_self_test VALUES ('\\x{}')",
            hex::encode(planted)
        ));
        assert!(!server.stored_files_containing(planted).is_empty());
    }

    for token in &tokens {
        assert!(
            server.stored_files_containing(&token.nonce).is_empty(),
            "nonce on disk"
        );
        assert!(
            server
                .stored_files_containing(&token.authenticator[..32])
                .is_empty(),
            "signature on disk"
        );
        let mut pairing = token.token_key_id.0.to_vec();
        pairing.extend_from_slice(&token.nonce);
        assert!(server.stored_files_containing(&pairing).is_empty());
        let encoded = token.encode();
        assert!(!contains(&logs, &token.nonce));
        assert!(!contains(&logs, hex::encode(token.nonce).as_bytes()));
        assert!(!contains(
            &logs,
            hex::encode(&token.authenticator[..16]).as_bytes()
        ));
        assert!(!contains(&logs, &encoded[..40]));
        assert!(!contains(
            &logs,
            &blindpass::protocol::qr::encode_payload(token).as_bytes()[4..40]
        ));
    }
    for value in &personal {
        assert!(!contains(&logs, value.as_bytes()), "personal data in logs");
        assert!(
            server.stored_files_containing(value.as_bytes()).is_empty(),
            "personal data on disk"
        );
    }

    // What the issuer saw does not verify as any token.
    let directory = server.directory();
    for (blinded, token) in seen_by_issuer.iter().zip(&tokens) {
        let key = directory.key(&token.token_key_id).unwrap();
        let pk = IssuerPublicKey::from_spki(&key.spki().unwrap()).unwrap();
        pk.verify_signature(token).unwrap();
        let forged = Token {
            authenticator: blinded.clone(),
            ..token.clone()
        };
        assert!(pk.verify_signature(&forged).is_err());
        assert_ne!(blinded, &token.authenticator);
    }
}
