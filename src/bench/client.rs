//! The load generator's HTTP side: the project's one HTTP client
//! ([`blindpass::client::Client`]) through its raw calls, which send once
//! (no retries) and return every answer as it came, so that each failure is
//! counted by kind, never hidden; and a runner that spreads N jobs over C
//! threads, each with a client of its own (its own keep-alive connection).
//!
//! The one exception to "no retries" is a request the server shed (problem
//! type `overloaded`): a well-behaved client waits the `Retry-After` it was
//! given (with jitter), and the runners do, counting every shed answer apart from the
//! admitted ones so the report shows the shed rate and the admitted latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blindpass::client::{Client, ClientError, Reply};
use blindpass::protocol::api::ProblemType;

use super::progress::{Counters, Goal, Progress};
use super::stats::{ErrorTally, Latencies, LatencySummary};

/// A client of the server at `base` for one worker thread.
///
/// Clones of a [`Client`] share one connection pool, which keeps only a
/// few idle connections per host: threads sharing it would close and
/// reopen connections all the time. A client per thread keeps one
/// connection alive for the thread's whole run, as a resident's phone does.
pub(crate) fn worker_client(base: &str) -> Client {
    Client::new(base)
}

/// Why a request did not get the answer it hoped for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server shed the request (`overloaded`), asking the client to
    /// come back after `retry_after`, if it said.
    Shed {
        /// The answer's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Another status than the one hoped for, with its problem type if it
    /// carried a known one.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem type.
        problem: Option<ProblemType>,
    },
    /// The server could not be reached or the answer not read.
    Network(String),
    /// The answer had the status hoped for but not the documented body.
    Malformed(&'static str),
}

impl Failure {
    /// The failure an answer of another status than the one hoped for is.
    pub(crate) fn of(reply: &Reply) -> Self {
        match reply.problem_type() {
            Some(ProblemType::Overloaded) => Failure::Shed {
                retry_after: reply.retry_after_s.map(Duration::from_secs),
            },
            problem => Failure::Refused {
                status: reply.status,
                problem,
            },
        }
    }

    /// Whether the server refused with a problem of type `kind`.
    pub(crate) fn is(&self, kind: ProblemType) -> bool {
        match self {
            Failure::Shed { .. } => kind == ProblemType::Overloaded,
            Failure::Refused { problem, .. } => *problem == Some(kind),
            Failure::Network(_) | Failure::Malformed(_) => false,
        }
    }

    /// The kind it is counted under, e.g. `503 timeout` or `network: …`.
    pub(crate) fn kind(&self) -> String {
        match self {
            Failure::Shed { .. } => format!("503 {}", ProblemType::Overloaded),
            Failure::Refused { status, problem } => {
                let name = problem.map_or("no-known-problem-type", ProblemType::as_str);
                format!("{status} {name}")
            }
            Failure::Network(detail) => format!("network: {detail}"),
            Failure::Malformed(what) => (*what).to_owned(),
        }
    }
}

/// How long a shed client waits: the server's `Retry-After` (1 s if it gave
/// none), spread uniformly over half to one and a half times that. Clients
/// that all waited exactly the same time would come back together, in
/// waves that leave the queue empty between them; real clients are not in
/// step, and well-behaved ones add jitter.
pub(crate) fn shed_backoff(retry_after: Option<Duration>) -> Duration {
    let base = retry_after.unwrap_or(Duration::from_secs(1));
    let mut byte = [0u8; 1];
    rand::fill(&mut byte);
    base.mul_f64(0.5 + f64::from(byte[0]) / 255.0)
}

/// The answer if it has status `expected`, else why not.
pub(crate) fn expect(outcome: Result<Reply, ClientError>, expected: u16) -> Result<Reply, Failure> {
    match outcome {
        Ok(reply) if reply.status == expected => Ok(reply),
        Ok(reply) => Err(Failure::of(&reply)),
        Err(ClientError::Network { detail, .. }) => Err(Failure::Network(detail)),
        Err(other) => Err(Failure::Network(other.to_string())),
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

/// Runs jobs `0..count` on `concurrency` threads, each with its own client
/// of the server at `base`, timing every job. A job the server shed is
/// retried after its `Retry-After`; every other failure is counted by kind.
pub(crate) fn run_counted<F>(
    label: &str,
    base: &str,
    count: usize,
    concurrency: usize,
    quiet: bool,
    job: F,
) -> Phase
where
    F: Fn(&Client, usize) -> Result<(), Failure> + Sync,
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
                        let client = worker_client(base);
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
                                let outcome = job(&client, i);
                                let took = t.elapsed();
                                match outcome {
                                    Err(Failure::Shed { retry_after }) => {
                                        shed += 1;
                                        std::thread::sleep(shed_backoff(retry_after));
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
                                Err(failure) => errors.add(failure.kind()),
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicU64;

    use blindpass::protocol::api::{PROBLEM_BASE, media, paths};

    use super::*;

    fn reply(status: u16, retry_after_s: Option<u64>, kind: &str) -> Reply {
        Reply {
            status,
            etag: None,
            retry_after_s,
            body: format!(r#"{{"type":"{kind}","title":"t","status":{status}}}"#).into_bytes(),
        }
    }

    #[test]
    fn failures_are_classified_by_problem_type_not_by_name() {
        let overloaded = format!("{PROBLEM_BASE}overloaded");
        let shed = Failure::of(&reply(503, Some(2), &overloaded));
        assert_eq!(
            shed,
            Failure::Shed {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(shed.kind(), "503 overloaded");
        // Another server's problem of the same name is not ours to wait out.
        let foreign = Failure::of(&reply(503, Some(2), "https://example.org/p/overloaded"));
        assert!(!matches!(foreign, Failure::Shed { .. }), "{foreign:?}");
        assert_eq!(foreign.kind(), "503 no-known-problem-type");
        // A 429 is waited out only when it is the per-address limit.
        let limited = Failure::of(&reply(429, None, &format!("{PROBLEM_BASE}rate-limited")));
        let quota = Failure::of(&reply(429, None, &format!("{PROBLEM_BASE}quota-exceeded")));
        assert!(limited.is(ProblemType::RateLimited));
        assert!(!quota.is(ProblemType::RateLimited));
        assert_eq!(quota.kind(), "429 quota-exceeded");
        let network = expect(
            Err(ClientError::Network {
                url: "http://x".into(),
                detail: "io: refused".into(),
            }),
            200,
        );
        assert_eq!(
            network.map_err(|f| f.kind()),
            Err("network: io: refused".into())
        );
    }

    /// A keep-alive HTTP server that answers its first request `503
    /// overloaded` (`Retry-After: 0`) and every later one `201 {}`; it
    /// counts the connections it accepts.
    fn keep_alive_server() -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let requests = requests.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            let line = line.to_ascii_lowercase();
                            if let Some(v) = line.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let answer = if requests.fetch_add(1, Ordering::SeqCst) == 0 {
                            let body = format!(r#"{{"type":"{PROBLEM_BASE}overloaded"}}"#);
                            format!(
                                "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\n\
                                 content-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        } else {
                            "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}".to_owned()
                        };
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, connections)
    }

    #[test]
    fn a_worker_keeps_one_connection_and_waits_out_a_shed_answer() {
        let (base, connections) = keep_alive_server();
        let phase = run_counted("test", &base, 5, 1, true, |client, _| {
            expect(
                client.post_raw(paths::RESIDENTS, media::JSON, None, b"{}"),
                201,
            )
            .map(drop)
        });
        assert_eq!(phase.ok, 5, "{:?}", phase.errors);
        assert_eq!(phase.shed, 1);
        assert_eq!(phase.latency.count, 5);
        assert!(phase.errors.is_empty(), "{}", phase.errors);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }
}
