//! `bench issue`: passes over HTTP the way residents obtain them. Before
//! the clock starts, residents are enrolled and logged in and every token
//! request is blinded (blinding is the client's cost, not the server's);
//! then C client threads send the prepared requests for a warm-up and a
//! timed phase, and passes/s and latency percentiles are measured. In the
//! same run, raw blind signing on every core and `openssl speed -multi`
//! give the limits the figure is divided by.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::client::{self, Failure, worker_client};
use super::cpu;
use super::enrol::prepare_residents;
use super::progress::{Counters, Goal, Progress};
use super::raw::{SignFixture, backend_name, openssl_reference};
use super::report::Report;
use super::server::{Connection, Target};
use super::stats::{ErrorTally, Latencies};
use super::{BenchError, cores};
use blindpass::client::Client;
use blindpass::crypto::blind::{Backend, IssuerPublicKey, PendingToken, begin_issuance, finalize};
use blindpass::protocol::api::{media, paths};
use blindpass::protocol::permit::Window;
use blindpass::protocol::token::{NK, TokenChallenge, TokenResponse};

/// Settings of `bench issue`.
#[derive(Debug, Clone)]
pub struct IssueSettings {
    /// Where to send requests.
    pub target: Target,
    /// Residents to enrol and log in beforehand; requests go round-robin.
    pub residents: usize,
    /// Client threads sending requests.
    pub concurrency: usize,
    /// Length of the timed phase.
    pub duration: Duration,
    /// Length of the untimed warm-up before it.
    pub warmup: Duration,
    /// The permit class (an unlimited one, or quotas end the run early).
    pub class: String,
    /// Requests to prepare; by default enough for the raw signing rate.
    pub requests: Option<usize>,
    /// Seconds per `openssl speed` operation; 0 skips it.
    pub openssl_seconds: u32,
    /// How long raw signing is measured, before and again after.
    pub calibration: Duration,
    /// No progress line.
    pub quiet: bool,
}

/// Target: passes/s at least this share of `openssl speed -multi <cores>` sign/s.
pub const TARGET_RATIO: f64 = 0.85;
/// Target: 99th-percentile latency at most this many milliseconds.
pub const TARGET_P99_MS: f64 = 50.0;
/// Finished tokens checked after the run (finalized and verified).
const SAMPLE: usize = 64;

/// Runs `bench issue`.
pub fn run(settings: &IssueSettings) -> Result<Report, BenchError> {
    let n = cores();
    let conn = Connection::open(&settings.target)?;
    conn.ensure_open_period()?;
    let residents = prepare_residents(
        &conn,
        settings.residents.max(1),
        settings.concurrency.clamp(1, 8),
        settings.quiet,
    )?;
    let (key, window, digest) = issuer_key(&conn.url, &settings.class)?;

    let mut report = Report::new(
        "issue",
        format!(
            "{}, class {}, {} residents, {} client threads, {} s timed after {} s warm-up",
            conn.describe(),
            settings.class,
            residents.sessions.len(),
            settings.concurrency,
            settings.duration.as_secs_f64(),
            settings.warmup.as_secs_f64()
        ),
    );
    if residents.rate_limited_retries > 0 {
        report.note(format!(
            "setup waited out {} `429 rate-limited` answers (the per-address limit of \
             login and enrolment)",
            residents.rate_limited_retries
        ));
    }
    report.errors("setup: enrol", residents.enrol.errors.clone());
    report.errors("setup: log in", residents.login.errors.clone());

    // The limits, measured on this machine just before the timed phase.
    let backend = Backend::default_backend();
    let fixture = SignFixture::new(64)?;
    let raw_before = fixture.rate(backend, n, settings.calibration);
    let speed = openssl_reference(n, settings.openssl_seconds, &mut report);

    // Blind every request before the clock starts.
    let load = Load {
        concurrency: settings.concurrency,
        warmup: settings.warmup,
        duration: settings.duration,
        quiet: settings.quiet,
    };
    let wanted = settings
        .requests
        .unwrap_or_else(|| load.requests_for(raw_before.per_s));
    let started = Instant::now();
    let (requests, pending) = blind_all(&key, digest, wanted, settings.quiet)?;
    let blind_rate = requests.len() as f64 / started.elapsed().as_secs_f64();

    let path = token_request_path(&settings.class, &window);
    let run = timed_issuance(&conn.url, &path, &residents.sessions, &requests, load);
    drop(requests);
    let (checked, answered) = check_sample(&key, &pending, &run);

    let in_process = conn.server.is_some();
    let flush = conn
        .server
        .as_ref()
        .map(|s| flush_latency(s.authority()))
        .transpose()?;
    drop(conn);
    // The limit again, the server stopped: the machine's load drifts, so
    // divide by the mean of before and after.
    let raw_after = fixture.rate(backend, n, settings.calibration);
    drop(fixture);
    let raw = (raw_before.per_s + raw_after.per_s) / 2.0;
    let raw_cpu_ms = raw_before
        .cpu_ms_per_op
        .zip(raw_after.cpu_ms_per_op)
        .map(|(a, b)| (a + b) / 2.0);

    let rate = run.rate();
    report.figure("passes issued (timed phase)", run.ok as f64, "");
    report.figure("timed phase", run.elapsed.as_secs_f64(), "s");
    report.figure("passes/s", rate, "/s");
    let raw_name = format!("raw blind_sign {}, {n} threads", backend_name(backend));
    report.figure(format!("{raw_name}, before"), raw_before.per_s, "/s");
    report.figure(format!("{raw_name}, after"), raw_after.per_s, "/s");
    if let Some(ms) = raw_cpu_ms {
        report.figure("CPU per raw blind_sign", ms, "ms");
    }
    report.figure("blinding, client side (untimed)", blind_rate, "/s");
    if let (Some(cpu), true, true) = (&run.cpu, in_process, run.ok > 0) {
        // CPU time per pass from the threads' counters: what a pass costs
        // whatever else the machine was doing.
        let per_pass = |groups: &[&str]| -> f64 {
            let cores: f64 = cpu
                .cores_by_thread_group
                .iter()
                .filter(|(name, _)| groups.contains(&name.as_str()))
                .map(|(_, c)| c)
                .sum();
            cores * 1000.0 / rate.max(1e-9)
        };
        // Every thread of the server: async workers and blocking pool,
        // signing threads, the committer (its name cut to 15 bytes by the
        // kernel) and sled's I/O threads.
        let server = per_pass(&[
            "bench-server",
            "blindpass-sign",
            "blindpass-commi",
            "sled-io",
        ]);
        report.figure(
            "CPU per pass, server (async, signing, commit and sled-io threads)",
            server,
            "ms",
        );
        report.figure(
            "CPU per pass, sled-io threads alone",
            per_pass(&["sled-io"]),
            "ms",
        );
        report.figure(
            "CPU per pass, load generator (bench-client)",
            per_pass(&["bench-client"]),
            "ms",
        );
        if let Some(ms) = raw_cpu_ms {
            report.ratio(
                "CPU per raw blind_sign",
                ms,
                "server CPU per pass",
                server,
                None,
            );
        }
    }
    if let Some((p50, mean)) = flush {
        report.figure("sled flush after a small write, p50", p50, "ms");
        report.figure("sled flush after a small write, mean", mean, "ms");
    }
    if let Some(s) = speed {
        report.ratio(
            "passes/s",
            rate,
            format!("openssl speed -multi {n} sign/s"),
            s.sign_per_s,
            Some(TARGET_RATIO),
        );
    }
    report.ratio(
        "passes/s",
        rate,
        format!("raw blind_sign/s on {n} threads (mean of before and after)"),
        raw,
        None,
    );
    report.check(
        "p99 latency (admitted requests)",
        run.admitted.p99_ms,
        "ms",
        TARGET_P99_MS,
    );
    report.note(format!(
        "{checked} of {answered} sampled answers finalized into tokens that verify"
    ));
    if let Some(note) = run.ran_out_note() {
        report.note(note);
    }
    let sent = run.latency.count.max(1) as f64;
    report.figure(
        "requests shed (503 overloaded, Retry-After waited)",
        run.shed as f64,
        "",
    );
    report.figure("requests shed, share", run.shed as f64 * 100.0 / sent, "%");
    report.latency("issue", run.latency);
    report.latency("issue, admitted only", run.admitted);
    report.errors("issue", run.errors);
    report.cpu = run.cpu;
    if matches!(settings.target, Target::External { .. }) {
        report
            .note("the raw and openssl limits are measured on this (the load generator's) machine");
    }
    report.note(
        "the load generator runs on the same cores as the server: its own CPU (bench-client \
         threads) is taken from the server",
    );
    Ok(report)
}

/// The public key, window and challenge digest for `class` today, from
/// the server's directory.
pub(crate) fn issuer_key(
    base: &str,
    class: &str,
) -> Result<(IssuerPublicKey, Window, [u8; 32]), BenchError> {
    let directory = Client::new(base)
        .directory()
        .map_err(|e| BenchError::Setup(format!("GET {}: {e}", paths::DIRECTORY)))?;
    let now = time::OffsetDateTime::now_utc();
    let published = directory
        .keys
        .iter()
        .filter(|k| k.class.as_str() == class && k.window.contains(now, time::Duration::ZERO))
        .min_by_key(|k| k.window.ends_at())
        .ok_or_else(|| {
            BenchError::Setup(format!(
                "the directory has no key for class {class} today (classes: {})",
                directory
                    .keys
                    .iter()
                    .map(|k| k.class.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let spki = published
        .spki()
        .map_err(|e| BenchError::Setup(format!("directory key: {e}")))?;
    let key = IssuerPublicKey::from_spki(&spki)?;
    let digest = TokenChallenge::permit(&directory.issuer_name)
        .digest()
        .map_err(|e| BenchError::Setup(format!("issuer name: {e}")))?;
    Ok((key, published.window, digest))
}

/// An encoded token request, and its pending token if it is in the sample.
type Blinded = (Vec<u8>, Option<PendingToken>);

/// `count` encoded token requests, blinded on every core, and the pending
/// tokens of the first [`SAMPLE`] of them (to finish and check later).
pub(crate) fn blind_all(
    key: &IssuerPublicKey,
    digest: [u8; 32],
    count: usize,
    quiet: bool,
) -> Result<(Vec<Vec<u8>>, Vec<PendingToken>), BenchError> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        "setup: blind",
        counters.clone(),
        Goal::Count(count as u64),
        quiet,
    );
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Blinded>>> = (0..count).map(|_| Mutex::new(None)).collect();
    let failed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores())
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        let (request, pending) = begin_issuance(key, digest)?;
                        let keep = (i < SAMPLE).then_some(pending);
                        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((request.encode(), keep));
                        counters.record(true);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or(Err(blindpass::crypto::CryptoError::Failed))
            })
            .find(Result::is_err)
    });
    drop(progress);
    if let Some(Err(e)) = failed {
        return Err(e.into());
    }
    let mut requests = Vec::with_capacity(count);
    let mut pending = Vec::with_capacity(SAMPLE);
    for slot in slots {
        if let Some((bytes, keep)) = slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            requests.push(bytes);
            pending.extend(keep);
        }
    }
    Ok((requests, pending))
}

/// The shape of a load: how many clients send the prepared requests, for
/// how long, after how long a warm-up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Client threads, each with its own keep-alive connection.
    pub(crate) concurrency: usize,
    /// Untimed warm-up.
    pub(crate) warmup: Duration,
    /// The timed phase.
    pub(crate) duration: Duration,
    /// No progress line.
    pub(crate) quiet: bool,
}

impl Load {
    /// Requests to prepare so that a server answering at `per_s` does not
    /// run out before the end (15 % spare, plus a few per client).
    pub(crate) fn requests_for(&self, per_s: f64) -> usize {
        let total = (self.warmup + self.duration).as_secs_f64();
        (per_s * total * 1.15).ceil() as usize + 4 * self.concurrency.max(1)
    }
}

/// One request of the timed phase: when it was sent, how long the answer
/// took, and whether it was a pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) at: Instant,
    pub(crate) latency: Duration,
    pub(crate) ok: bool,
}

/// What the timed phase measured.
pub(crate) struct TimedRun {
    /// Passes issued in the timed phase.
    pub(crate) ok: u64,
    /// The phase's length (shorter if the prepared requests ran out).
    pub(crate) elapsed: Duration,
    /// Latencies of every timed request, failures included.
    pub(crate) latency: super::stats::LatencySummary,
    /// Latencies of the timed requests the server admitted (not shed).
    pub(crate) admitted: super::stats::LatencySummary,
    /// Timed requests the server shed with `503 overloaded`.
    pub(crate) shed: u64,
    pub(crate) errors: ErrorTally,
    pub(crate) cpu: Option<cpu::CpuUse>,
    /// The answers to the first [`SAMPLE`] requests, to finish and check.
    pub(crate) sample: Vec<Option<Vec<u8>>>,
    /// Seconds into the timed phase when the prepared requests ran out.
    pub(crate) ran_out_after: Option<f64>,
    /// When the timed phase began.
    pub(crate) timed_from: Instant,
    /// Every timed request, in no particular order.
    pub(crate) timeline: Vec<Sent>,
}

impl TimedRun {
    /// Rate over the timed phase.
    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// What to tell the reader if the prepared requests ran out.
    pub(crate) fn ran_out_note(&self) -> Option<String> {
        match self.ran_out_after {
            Some(at) if at > 0.0 => Some(format!(
                "the prepared requests ran out {at:.1} s into the timed phase; the rate is \
                 over that time (pass --requests to prepare more)"
            )),
            Some(_) => Some(
                "the prepared requests ran out during the warm-up: nothing was timed (pass \
                 --requests to prepare more)"
                    .to_owned(),
            ),
            None => None,
        }
    }
}

/// Finishes the sampled answers into tokens as a wallet would and verifies
/// them: `(verified, answered)`.
pub(crate) fn check_sample(
    key: &IssuerPublicKey,
    pending: &[PendingToken],
    run: &TimedRun,
) -> (usize, usize) {
    let mut checked = 0;
    for (p, answer) in pending.iter().zip(run.sample.iter()) {
        let Some(bytes) = answer else { continue };
        let ok = TokenResponse::decode(bytes)
            .ok()
            .and_then(|r| finalize(p, &r).ok())
            .is_some_and(|t| key.verify_signature(&t).is_ok());
        if ok {
            checked += 1;
        }
    }
    let answered = run.sample.iter().filter(|a| a.is_some()).count();
    (checked, answered)
}

/// What one client thread saw.
#[derive(Default)]
struct ClientTally {
    latencies: Latencies,
    admitted: Latencies,
    shed: u64,
    errors: ErrorTally,
    ok: u64,
    timeline: Vec<Sent>,
}

/// Sends the prepared requests from `load.concurrency` threads: a warm-up,
/// then the timed phase. Only requests started inside the timed phase
/// count, and the rate is over its length (as `wrk` does), so requests in
/// flight at either edge balance out.
pub(crate) fn timed_issuance(
    base: &str,
    path: &str,
    sessions: &[String],
    requests: &[Vec<u8>],
    load: Load,
) -> TimedRun {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        "issue",
        counters.clone(),
        Goal::Time(load.warmup + load.duration),
        load.quiet,
    );
    let next = AtomicUsize::new(0);
    let sample: Vec<Mutex<Option<Vec<u8>>>> = (0..SAMPLE).map(|_| Mutex::new(None)).collect();
    let ran_out: Mutex<Option<Instant>> = Mutex::new(None);
    let start = Instant::now();
    let warm_end = start + load.warmup;
    let end = warm_end + load.duration;
    let n = cores();
    let (results, cpu) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..load.concurrency.max(1))
            .filter_map(|w| {
                let (next, counters, sample, ran_out) = (&next, &counters, &sample, &ran_out);
                std::thread::Builder::new()
                    .name(format!("bench-client-{w}"))
                    .spawn_scoped(scope, move || {
                        let client = worker_client(base);
                        let mut tally = ClientTally::default();
                        loop {
                            let t0 = Instant::now();
                            if t0 >= end {
                                break;
                            }
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(body) = requests.get(i) else {
                                let mut at = ran_out.lock().unwrap_or_else(|e| e.into_inner());
                                at.get_or_insert(t0);
                                break;
                            };
                            let session = &sessions[i % sessions.len()];
                            let outcome = send(&client, path, session, body);
                            let elapsed = t0.elapsed();
                            let shed = match &outcome {
                                Err(Failure::Shed { retry_after }) => Some(*retry_after),
                                _ => None,
                            };
                            if let Some(retry_after) = shed {
                                // A well-behaved client waits before its next
                                // request; not past the end of the run.
                                let wait = client::shed_backoff(retry_after)
                                    .min(end.saturating_duration_since(Instant::now()));
                                std::thread::sleep(wait);
                            }
                            counters.record(outcome.is_ok());
                            if let (Ok(answer), Some(slot)) = (&outcome, sample.get(i)) {
                                *slot.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some(answer.clone());
                            }
                            if t0 < warm_end {
                                continue;
                            }
                            tally.latencies.push(elapsed);
                            if shed.is_some() {
                                tally.shed += 1;
                            } else {
                                tally.admitted.push(elapsed);
                            }
                            tally.timeline.push(Sent {
                                at: t0,
                                latency: elapsed,
                                ok: outcome.is_ok(),
                            });
                            match outcome {
                                Ok(_) => tally.ok += 1,
                                Err(failure) => tally.errors.add(failure.kind()),
                            }
                        }
                        tally
                    })
                    .ok()
            })
            .collect();
        // The coordinator samples the CPU counters at the edges of the
        // timed phase.
        std::thread::sleep(warm_end.saturating_duration_since(Instant::now()));
        let before = cpu::snapshot();
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        let after = cpu::snapshot();
        let cpu = before.zip(after).map(|(b, a)| cpu::between(&b, &a, n));
        let results: Vec<_> = workers.into_iter().filter_map(|w| w.join().ok()).collect();
        (results, cpu)
    });
    drop(progress);
    let mut all = ClientTally::default();
    for t in results {
        all.latencies.merge(t.latencies);
        all.admitted.merge(t.admitted);
        all.shed += t.shed;
        all.errors.merge(t.errors);
        all.ok += t.ok;
        all.timeline.extend(t.timeline);
    }
    let ran_out = ran_out.into_inner().unwrap_or_else(|e| e.into_inner());
    let (elapsed, ran_out_after) = match ran_out {
        Some(at) if at < end => {
            let into = at.saturating_duration_since(warm_end);
            (into, Some(into.as_secs_f64()))
        }
        _ => (load.duration, None),
    };
    TimedRun {
        ok: all.ok,
        elapsed,
        latency: all.latencies.summary(),
        admitted: all.admitted.summary(),
        shed: all.shed,
        errors: all.errors,
        cpu,
        sample: sample
            .into_iter()
            .map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect(),
        ran_out_after,
        timed_from: warm_end,
        timeline: all.timeline,
    }
}

/// The path of a token request for `class` and `window`, both named in the
/// query as the wallet does (class names and windows need no escaping).
pub(crate) fn token_request_path(class: &str, window: &Window) -> String {
    format!("{}?class={class}&window={window}", paths::TOKEN_REQUEST)
}

/// One token request, sent once; the answer's bytes, or why not.
fn send(client: &Client, path: &str, session: &str, body: &[u8]) -> Result<Vec<u8>, Failure> {
    let reply = client::expect(
        client.post_raw(path, media::TOKEN_REQUEST, Some(session), body),
        200,
    )?;
    if reply.body.len() == NK {
        Ok(reply.body)
    } else {
        Err(Failure::Malformed("200 wrong-length-response"))
    }
}

/// p50 and mean of sled's flush after a small write, in ms: the price of
/// the durable commit every issuance waits for.
fn flush_latency(authority: &Arc<blindpass::issuer::Authority>) -> Result<(f64, f64), BenchError> {
    let period = authority.current_period()?;
    let store = authority.store();
    let mut latencies = Latencies::default();
    for i in 0..50u32 {
        let mut key = b"bench-flush-probe-".to_vec();
        key.extend_from_slice(&i.to_be_bytes());
        store
            .state_insert(&period, &key, b"x")
            .map_err(blindpass::issuer::IssuerError::from)?;
        let t = Instant::now();
        store
            .flush()
            .map_err(blindpass::issuer::IssuerError::from)?;
        latencies.push(t.elapsed());
    }
    let s = latencies.summary();
    Ok((s.p50_ms, s.mean_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::server::bench_http_config;

    #[test]
    fn a_short_in_process_run_issues_valid_passes() {
        let scratch = tempfile::tempdir().unwrap();
        let report = run(&IssueSettings {
            target: Target::InProcess {
                scratch_parent: scratch.path().to_owned(),
                http: bench_http_config(),
            },
            residents: 2,
            concurrency: 2,
            duration: Duration::from_millis(500),
            warmup: Duration::ZERO,
            class: "medical".into(),
            requests: Some(40),
            openssl_seconds: 0,
            calibration: Duration::from_millis(100),
            quiet: true,
        })
        .unwrap();
        let issued = report
            .figures
            .iter()
            .find(|f| f.what == "passes issued (timed phase)")
            .unwrap()
            .value;
        assert!(issued > 0.0, "{report}");
        assert!(report.errors.iter().all(|(_, e)| e.is_empty()), "{report}");
        assert!(
            report.notes.iter().any(|n| n
                .ends_with("of 40 sampled answers finalized into tokens that verify")
                && n.starts_with("40 ")),
            "{report}"
        );
        // The scratch data directory is gone with the server.
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unknown_class_is_a_setup_error() {
        let scratch = tempfile::tempdir().unwrap();
        let err = run(&IssueSettings {
            target: Target::InProcess {
                scratch_parent: scratch.path().to_owned(),
                http: bench_http_config(),
            },
            residents: 1,
            concurrency: 1,
            duration: Duration::from_millis(100),
            warmup: Duration::ZERO,
            class: "party".into(),
            requests: Some(1),
            openssl_seconds: 0,
            calibration: Duration::from_millis(50),
            quiet: true,
        })
        .unwrap_err();
        assert!(err.to_string().contains("no key for class party"), "{err}");
    }
}
