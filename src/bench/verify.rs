//! `bench verify`: the verifier's offline check on one core — the RSA-PSS
//! verification alone per backend, and the whole check a verifier runs on
//! a scanned payload (parse, key lookup, challenge, signature, window) —
//! against `openssl speed rsa2048` verify/s from the same run.

use std::time::{Duration, Instant};

use super::BenchError;
use super::raw::{backend_name, backends, median, openssl_reference};
use super::report::Report;
use blindpass::crypto::blind::{Backend, IssuerSigningKey, begin_issuance, finalize};
use blindpass::protocol::directory::{Directory, PublishedKey};
use blindpass::protocol::permit::{ClassName, Window, WindowKind};
use blindpass::protocol::qr::encode_payload;
use blindpass::protocol::token::{Token, TokenChallenge};
use blindpass::verifier::DirectoryCache;

/// Settings of `bench verify`.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// Verifications per figure.
    pub tokens: usize,
    /// Seconds per `openssl speed` operation; 0 skips it.
    pub openssl_seconds: u32,
    /// Interleaved rounds; figures are medians over them.
    pub rounds: usize,
}

/// Target: the full offline check at least this share of `openssl speed`
/// verify/s on one core.
pub const TARGET_RATIO: f64 = 0.8;

/// Distinct tokens made (and cycled through): enough that nothing is
/// cached, few enough to make quickly.
const DISTINCT: usize = 512;

/// Runs `bench verify`.
pub fn run(settings: &VerifySettings) -> Result<Report, BenchError> {
    let tokens = settings.tokens.max(1);
    let rounds = settings.rounds.max(1);
    let mut report = Report::new(
        "verify",
        format!(
            "{tokens} verifications per figure on one thread, in-process, {rounds} interleaved \
             rounds (medians)"
        ),
    );

    let issuer = "bench.invalid";
    let key = IssuerSigningKey::generate()?;
    let now = time::OffsetDateTime::now_utc();
    let window = Window::containing(WindowKind::Day, now.date());
    let class = ClassName::new("medical").map_err(|e| BenchError::Setup(e.to_string()))?;
    let directory = Directory {
        issuer_name: issuer.to_owned(),
        issuer_request_uri: "http://bench.invalid/token-request".to_owned(),
        generated_at: now.unix_timestamp(),
        max_age_s: 3600,
        keys: vec![PublishedKey::new(key.public().spki(), class, window)],
    };
    let cache =
        DirectoryCache::new(directory, now, None).map_err(|e| BenchError::Setup(e.to_string()))?;
    let digest = TokenChallenge::permit(issuer)
        .digest()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let made: Vec<Token> = (0..DISTINCT.min(tokens))
        .map(|_| {
            let (request, pending) = begin_issuance(key.public(), digest)?;
            finalize(&pending, &key.blind_sign(&request)?)
        })
        .collect::<Result<_, _>>()?;
    let payloads: Vec<String> = made.iter().map(encode_payload).collect();

    let skew = time::Duration::minutes(5);
    let mut speeds = Vec::new();
    let mut rates: Vec<(Backend, Vec<f64>)> =
        backends().into_iter().map(|b| (b, Vec::new())).collect();
    let mut checks = Vec::new();
    let mut notes = Report::new("scratch", String::new());
    for _ in 0..rounds {
        if let Some(s) = openssl_reference(1, settings.openssl_seconds, &mut notes) {
            speeds.push(s.verify_per_s);
        }
        for (backend, per_round) in &mut rates {
            let (rate, ok) = per_second(tokens, |i| {
                key.public()
                    .verify_signature_with(*backend, &made[i % made.len()])
                    .is_ok()
            });
            if ok != tokens {
                return Err(BenchError::Setup(format!(
                    "{} of {tokens} genuine tokens failed to verify",
                    tokens - ok
                )));
            }
            per_round.push(rate);
        }
        let (rate, valid) = per_second(tokens, |i| {
            cache
                .check(&payloads[i % payloads.len()], now, skew)
                .verdict
                .is_valid()
        });
        if valid != tokens {
            return Err(BenchError::Setup(format!(
                "{} of {tokens} genuine passes were not valid",
                tokens - valid
            )));
        }
        checks.push(rate);
    }
    report.notes.extend(notes.notes.into_iter().take(1));
    let speed = (!speeds.is_empty()).then(|| median(&speeds));
    if let Some(s) = speed {
        report.figure("openssl speed rsa2048: verify", s, "/s");
    }
    let rates: Vec<(Backend, f64)> = rates.iter().map(|(b, r)| (*b, median(r))).collect();
    for (backend, rate) in &rates {
        report.figure(
            format!("RSA-PSS verify, {}", backend_name(*backend)),
            *rate,
            "/s",
        );
    }
    let check_rate = median(&checks);
    let default = backend_name(Backend::default_backend());
    report.figure(
        format!("full offline check of a QR payload ({default})"),
        check_rate,
        "/s",
    );
    if let Some(s) = speed {
        report.ratio(
            format!("full offline check ({default})"),
            check_rate,
            "openssl speed verify/s",
            s,
            Some(TARGET_RATIO),
        );
        for (backend, rate) in &rates {
            report.ratio(
                format!("RSA-PSS verify, {}", backend_name(*backend)),
                *rate,
                "openssl speed verify/s",
                s,
                None,
            );
        }
        let per_round: Vec<String> = checks
            .iter()
            .zip(&speeds)
            .map(|(c, s)| format!("{:.2}", c / s))
            .collect();
        report.note(format!(
            "full offline check / openssl speed verify, per round: {}",
            per_round.join(", ")
        ));
    }
    if let Some((_, fastest)) = rates.iter().find(|(b, _)| *b == Backend::default_backend()) {
        report.ratio(
            "full offline check",
            check_rate,
            format!("RSA-PSS verify alone ({default})"),
            *fastest,
            None,
        );
    }
    report.note(
        "openssl speed's verify is a raw PKCS#1 v1.5 verify of a precomputed digest; the \
         check here also hashes the token input with SHA-384, runs PSS/MGF1, decodes base45 \
         and looks the key up",
    );
    Ok(report)
}

/// Runs `op` for `0..n` on this thread; returns (successes per second, successes).
fn per_second(n: usize, mut op: impl FnMut(usize) -> bool) -> (f64, usize) {
    let started = Instant::now();
    let ok = (0..n).filter(|&i| op(i)).count();
    let elapsed = started.elapsed().max(Duration::from_nanos(1));
    (ok as f64 / elapsed.as_secs_f64(), ok)
}
