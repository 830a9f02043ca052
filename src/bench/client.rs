//! The load generator's HTTP side: a plain ureq agent per worker thread
//! (its own keep-alive connection), no retries — a failure is counted by
//! kind, never hidden — and a runner that spreads N jobs over C threads.
//!
//! The one exception to "no retries" is a request the server shed
//! (`503 overloaded`): a well-behaved client waits the `Retry-After` it was
//! given (with jitter), and the runners do, counting every shed answer apart from the
//! admitted ones so the report shows the shed rate and the admitted latency.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::progress::{Counters, Goal, Progress};
use super::stats::{ErrorTally, Latencies, LatencySummary};

/// `Content-Type` of an RFC 9578 token request.
pub(crate) const TOKEN_REQUEST_TYPE: &str = "application/private-token-request";

/// The error kind of a request the server shed under overload.
pub(crate) const SHED: &str = "503 overloaded";

thread_local! {
    /// The `Retry-After` of this thread's last reply (each worker thread
    /// has its own agent, so this is the reply its last request got).
    static RETRY_AFTER: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// The `Retry-After` of this thread's last reply, if it had one.
pub(crate) fn last_retry_after() -> Option<Duration> {
    RETRY_AFTER.with(Cell::get)
}

/// How long a shed client waits: the server's `Retry-After` (1 s if it gave
/// none), spread uniformly over half to one and a half times that. Clients
/// that all waited exactly the same time would come back together, in
/// waves that leave the queue empty between them; real clients are not in
/// step, and well-behaved ones add jitter.
pub(crate) fn shed_backoff() -> Duration {
    let base = last_retry_after().unwrap_or(Duration::from_secs(1));
    let mut byte = [0u8; 1];
    rand::fill(&mut byte);
    base.mul_f64(0.5 + f64::from(byte[0]) / 255.0)
}

/// A reply read in full.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// An agent for one worker: one connection kept alive, generous timeout.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_idle_connections_per_host(2)
        .build()
        .into()
}

fn read(response: ureq::http::Response<ureq::Body>) -> Result<Reply, ureq::Error> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    RETRY_AFTER.with(|c| c.set(retry_after));
    let body = response
        .into_body()
        .into_with_config()
        .limit(4 * 1024 * 1024)
        .read_to_vec()?;
    Ok(Reply { status, body })
}

/// `POST` with a content type and an optional bearer token.
pub(crate) fn post(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let mut request = agent.post(url).header("Content-Type", content_type);
    if let Some(token) = bearer {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    read(request.send(body)?)
}

/// `GET` with an optional bearer token.
pub(crate) fn get(
    agent: &ureq::Agent,
    url: &str,
    bearer: Option<&str>,
) -> Result<Reply, ureq::Error> {
    let mut request = agent.get(url);
    if let Some(token) = bearer {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    read(request.call()?)
}

#[derive(Deserialize)]
struct ProblemDoc {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// `"<status> <problem name>"` for an error reply, e.g. `503 timeout`.
pub(crate) fn reply_kind(reply: &Reply) -> String {
    let name = serde_json::from_slice::<ProblemDoc>(&reply.body)
        .ok()
        .and_then(|d| d.kind)
        .map(|k| k.rsplit('/').next().unwrap_or(&k).to_owned())
        .unwrap_or_else(|| "no-problem-document".to_owned());
    format!("{} {name}", reply.status)
}

/// A coarse name for a transport failure.
pub(crate) fn network_kind(err: &ureq::Error) -> String {
    let kind = match err {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::Io(_) => "io",
        ureq::Error::ConnectionFailed => "connection-failed",
        ureq::Error::HostNotFound => "host-not-found",
        ureq::Error::Protocol(_) => "protocol",
        _ => "other",
    };
    format!("network: {kind}")
}

/// A status other than `expected` as an error kind; `expected` as success.
pub(crate) fn expect(outcome: Result<Reply, ureq::Error>, expected: u16) -> Result<Reply, String> {
    match outcome {
        Ok(reply) if reply.status == expected => Ok(reply),
        Ok(reply) => Err(reply_kind(&reply)),
        Err(e) => Err(network_kind(&e)),
    }
}

/// What a counted phase did.
#[derive(Debug, Clone)]
pub(crate) struct Phase {
    pub(crate) ok: u64,
    pub(crate) errors: ErrorTally,
    /// Latencies of the admitted attempts (all but the shed ones).
    pub(crate) latency: LatencySummary,
    pub(crate) elapsed: Duration,
    /// Attempts the server shed (each waited out and retried).
    pub(crate) shed: u64,
}

impl Phase {
    /// Successes per second.
    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Shed attempts as a share of all attempts.
    pub(crate) fn shed_share(&self) -> f64 {
        let attempts = self.shed + self.latency.count;
        self.shed as f64 / (attempts as f64).max(1.0)
    }
}

/// Runs jobs `0..count` on `concurrency` threads, each with its own agent,
/// timing every job. `job` returns an error kind on failure; a job the
/// server shed is retried after its `Retry-After`.
pub(crate) fn run_counted<F>(
    label: &str,
    count: usize,
    concurrency: usize,
    quiet: bool,
    job: F,
) -> Phase
where
    F: Fn(&ureq::Agent, usize) -> Result<(), String> + Sync,
{
    let next = AtomicUsize::new(0);
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(label, counters.clone(), Goal::Count(count as u64), quiet);
    let started = Instant::now();
    let results: Vec<(Latencies, ErrorTally, u64, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|w| {
                let (next, counters, job) = (&next, &counters, &job);
                std::thread::Builder::new()
                    .name(format!("bench-client-{w}"))
                    .spawn_scoped(scope, move || {
                        let agent = agent();
                        let mut latencies =
                            Latencies::with_capacity(count / concurrency.max(1) + 1);
                        let mut errors = ErrorTally::default();
                        let mut ok = 0;
                        let mut shed = 0;
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= count {
                                break;
                            }
                            let outcome = loop {
                                let t = Instant::now();
                                let outcome = job(&agent, i);
                                let took = t.elapsed();
                                match outcome {
                                    Err(kind) if kind == SHED => {
                                        shed += 1;
                                        std::thread::sleep(shed_backoff());
                                    }
                                    outcome => {
                                        latencies.push(took);
                                        break outcome;
                                    }
                                }
                            };
                            counters.record(outcome.is_ok());
                            match outcome {
                                Ok(()) => ok += 1,
                                Err(kind) => errors.add(kind),
                            }
                        }
                        (latencies, errors, ok, shed)
                    })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.ok())
            .filter_map(|h| h.join().ok())
            .collect()
    });
    let elapsed = started.elapsed();
    drop(progress);
    let mut latencies = Latencies::default();
    let mut errors = ErrorTally::default();
    let mut ok = 0;
    let mut shed = 0;
    for (l, e, n, s) in results {
        latencies.merge(l);
        errors.merge(e);
        ok += n;
        shed += s;
    }
    Phase {
        ok,
        errors,
        latency: latencies.summary(),
        elapsed,
        shed,
    }
}
