//! Raw rates of the expensive operations, without HTTP or storage: RSA
//! blind signing per backend (the whole cost of issuance) and Argon2id
//! (the whole cost of enrolment and login), on one thread and on several.
//! These are the limits the HTTP figures are divided by.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cpu;
use super::openssl_speed::{self, OpensslSpeed};
use super::report::Report;
use super::{BenchError, cores};
use blindpass::crypto::blind::{Backend, IssuerSigningKey, begin_issuance};
use blindpass::crypto::kdf::{self, Argon2Params};
use blindpass::crypto::secret::Passphrase;
use blindpass::protocol::token::{TokenChallenge, TokenRequest};

/// Operations per second, and the CPU each one cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    /// Successful operations per second (wall clock).
    pub(crate) per_s: f64,
    /// CPU time per operation, from the threads' own CPU counters (so it
    /// does not depend on how busy the rest of the machine was).
    pub(crate) cpu_ms_per_op: Option<f64>,
}

/// Runs `op` on `threads` threads for `duration` and returns successful
/// operations per second. `op` gets a running index, to cycle inputs.
pub(crate) fn rate_on(
    threads: usize,
    duration: Duration,
    op: impl Fn(usize) -> bool + Sync,
) -> Rate {
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let n = cores();
    std::thread::scope(|scope| {
        for t in 0..threads.max(1) {
            let (done, stop, op) = (&done, &stop, &op);
            let spawned = std::thread::Builder::new()
                .name(format!("bench-raw-{t}"))
                .spawn_scoped(scope, move || {
                    let mut i = t * 7919;
                    while !stop.load(Ordering::Relaxed) {
                        if op(i) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        i = i.wrapping_add(1);
                    }
                });
            if spawned.is_err() {
                break;
            }
        }
        let before = cpu::snapshot();
        let counted_from = done.load(Ordering::Relaxed);
        let measured_from = Instant::now();
        std::thread::sleep(duration);
        // Read the counters while the threads still run: a finished
        // thread's CPU time leaves /proc with it.
        let after = cpu::snapshot();
        let ops = done.load(Ordering::Relaxed) - counted_from;
        let elapsed = measured_from.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let cpu_ms_per_op = before.zip(after).and_then(|(b, a)| {
            let used = cpu::between(&b, &a, n);
            let cores_used = used.cores_by_thread_group.get("bench-raw").copied()?;
            (ops > 0).then(|| cores_used * elapsed * 1000.0 / ops as f64)
        });
        Rate {
            per_s: ops as f64 / elapsed.max(1e-9),
            cpu_ms_per_op,
        }
    })
}

/// A signing key and blinded requests for it, ready to sign.
pub(crate) struct SignFixture {
    pub(crate) key: IssuerSigningKey,
    pub(crate) requests: Vec<TokenRequest>,
}

impl SignFixture {
    /// A fresh key and `n` blinded requests under it.
    pub(crate) fn new(n: usize) -> Result<Self, BenchError> {
        let key = IssuerSigningKey::generate()?;
        let digest = TokenChallenge::permit("bench.invalid")
            .digest()
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let requests = (0..n.max(1))
            .map(|_| begin_issuance(key.public(), digest).map(|(r, _)| r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { key, requests })
    }

    /// Blind signatures per second on `threads` threads.
    pub(crate) fn rate(&self, backend: Backend, threads: usize, duration: Duration) -> Rate {
        rate_on(threads, duration, |i| {
            let request = &self.requests[i % self.requests.len()];
            self.key.blind_sign_with(backend, request).is_ok()
        })
    }
}

/// Argon2id hashes per second with `params` on `threads` threads.
pub(crate) fn argon2_rate(params: Argon2Params, threads: usize, duration: Duration) -> Rate {
    let password = Passphrase::new("bench-password-not-secret".into());
    rate_on(threads, duration, |i| {
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&(i as u64).to_be_bytes());
        kdf::argon2id(&password, &salt, params).is_ok()
    })
}

/// The backends built into this binary.
pub fn backends() -> Vec<Backend> {
    if cfg!(feature = "openssl") {
        vec![Backend::PureRust, Backend::OpenSsl]
    } else {
        vec![Backend::PureRust]
    }
}

/// A backend's name in reports.
pub fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::PureRust => "pure-rust",
        Backend::OpenSsl => "openssl",
    }
}

/// Runs `openssl speed` and turns a failure into a note.
pub(crate) fn openssl_reference(
    processes: usize,
    seconds: u32,
    report: &mut Report,
) -> Option<OpensslSpeed> {
    if seconds == 0 {
        return None;
    }
    match openssl_speed::run(processes, seconds) {
        Ok(Some(speed)) => {
            let how = if processes > 1 {
                format!("openssl speed -multi {processes} rsa2048")
            } else {
                "openssl speed rsa2048".to_owned()
            };
            report.figure(format!("{how}: sign"), speed.sign_per_s, "/s");
            report.figure(format!("{how}: verify"), speed.verify_per_s, "/s");
            Some(speed)
        }
        Ok(None) => {
            report.note("the openssl program is not installed: no openssl speed reference");
            None
        }
        Err(e) => {
            report.note(format!("openssl speed failed: {e}"));
            None
        }
    }
}

/// Settings of `bench sign`.
#[derive(Debug, Clone)]
pub struct SignSettings {
    /// Seconds per measurement.
    pub seconds: f64,
    /// Seconds per `openssl speed` operation; 0 skips it.
    pub openssl_seconds: u32,
    /// Rounds; each measures every figure once, interleaved, so that a
    /// figure and its limit are measured seconds apart.
    pub rounds: usize,
}

/// The median of some values (0 for none).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// One backend's figures per round: rate on 1 thread, on every core, and
/// CPU per signature.
type BackendRounds = (Backend, Vec<f64>, Vec<f64>, Vec<f64>);

/// `bench sign`: raw blind signing per backend on one thread and on every
/// core, against `openssl speed rsa2048` (one process and `-multi`),
/// interleaved over several rounds; figures are medians over the rounds.
pub fn sign(settings: &SignSettings) -> Result<Report, BenchError> {
    let n = cores();
    let rounds = settings.rounds.max(1);
    let duration = Duration::from_secs_f64(settings.seconds.max(0.1));
    let mut report = Report::new(
        "sign",
        format!(
            "raw RSA-2048 blind signing (checked), {} s per figure, 1 and {n} threads, \
             {rounds} interleaved rounds (medians)",
            settings.seconds
        ),
    );
    let fixture = SignFixture::new(64)?;
    // Per round: openssl speed 1 process and -multi (sign/s), and per
    // backend the rate on 1 and n threads and the CPU per signature.
    let mut speed_one = Vec::new();
    let mut speed_multi = Vec::new();
    let mut rates: Vec<BackendRounds> = backends()
        .into_iter()
        .map(|b| (b, Vec::new(), Vec::new(), Vec::new()))
        .collect();
    let mut scratch = Report::new("scratch", String::new());
    for _ in 0..rounds {
        if let Some(s) = openssl_reference(1, settings.openssl_seconds, &mut scratch) {
            speed_one.push(s.sign_per_s);
        }
        for (backend, one, all, cpu) in &mut rates {
            let r1 = fixture.rate(*backend, 1, duration);
            one.push(r1.per_s);
            cpu.extend(r1.cpu_ms_per_op);
            all.push(fixture.rate(*backend, n, duration).per_s);
        }
        if n > 1 {
            if let Some(s) = openssl_reference(n, settings.openssl_seconds, &mut scratch) {
                speed_multi.push(s.sign_per_s);
            }
        }
    }
    report.notes.extend(scratch.notes.into_iter().take(1));
    if n == 1 {
        speed_multi = speed_one.clone();
    }
    let (s1, sn) = (median(&speed_one), median(&speed_multi));
    if !speed_one.is_empty() {
        report.figure("openssl speed rsa2048: sign", s1, "/s");
        report.figure(format!("openssl speed -multi {n} rsa2048: sign"), sn, "/s");
    }
    let mut one_thread = Vec::new();
    for (backend, one, all, cpu) in &rates {
        let name = backend_name(*backend);
        let (r1, rn) = (median(one), median(all));
        report.figure(format!("blind_sign {name}, 1 thread"), r1, "/s");
        report.figure(format!("blind_sign {name}, {n} threads"), rn, "/s");
        if !cpu.is_empty() {
            report.figure(
                format!("blind_sign {name}, CPU per signature"),
                median(cpu),
                "ms",
            );
        }
        report.ratio(
            format!("blind_sign {name} {n} threads"),
            rn,
            format!("{name} 1 thread × {n}"),
            r1 * n as f64,
            None,
        );
        if *backend == Backend::OpenSsl && !speed_one.is_empty() {
            report.ratio(
                format!("blind_sign {name} 1 thread"),
                r1,
                "openssl speed sign/s",
                s1,
                None,
            );
            report.ratio(
                format!("blind_sign {name} {n} threads"),
                rn,
                format!("openssl speed -multi {n} sign/s"),
                sn,
                None,
            );
            let per_round: Vec<String> = all
                .iter()
                .zip(&speed_multi)
                .map(|(r, s)| format!("{:.2}", r / s))
                .collect();
            report.note(format!(
                "blind_sign {name} {n} threads / openssl speed -multi {n}, per round: {}",
                per_round.join(", ")
            ));
        }
        one_thread.push((name, r1));
    }
    if let [(slow, s), (fast, f)] = one_thread.as_slice() {
        report.ratio(
            format!("blind_sign {slow} 1 thread"),
            *s,
            format!("{fast} 1 thread"),
            *f,
            None,
        );
    }
    report.note(
        "blind_sign is checked: the signature is verified with the public key before it is \
         released (a faulty CRT result would leak a factor), so it costs one RSA verify more \
         than openssl speed's sign",
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_on_counts_only_successes() {
        let all = rate_on(2, Duration::from_millis(50), |_| true);
        let none = rate_on(2, Duration::from_millis(50), |_| false);
        assert!(all.per_s > 0.0);
        assert_eq!(none.per_s, 0.0);
        assert_eq!(none.cpu_ms_per_op, None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
