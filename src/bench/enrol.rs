//! `bench enrol`: enrolment and login over HTTP at a chosen concurrency,
//! each against the raw Argon2id rate measured in the same run. Both
//! requests are one Argon2id computation plus a sled write and a flush, so
//! Argon2id at the server's parallelism is the limit.
//!
//! Also home of [`prepare_residents`], which other modes use to get logged-in
//! residents before their own timed phase.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::client::{self, Failure, Phase, run_counted};
use super::people;
use super::raw::argon2_rate;
use super::report::Report;
use super::server::{Connection, Target};
use super::stats::ErrorTally;
use super::{BenchError, cores};
use blindpass::client::{Client, Reply};
use blindpass::crypto::kdf::Argon2Params;
use blindpass::protocol::api::{NewSession, ProblemType, media, paths};

/// Settings of `bench enrol`.
#[derive(Debug, Clone)]
pub struct EnrolSettings {
    /// Where to send requests.
    pub target: Target,
    /// Client threads.
    pub concurrency: usize,
    /// Residents to enrol (and then log in).
    pub count: usize,
    /// Seconds of raw Argon2id measurement (half before, half after).
    pub raw_seconds: f64,
    /// No progress line.
    pub quiet: bool,
}

/// Target of both ratios: enrolment (and login) at least this share of raw
/// Argon2id hashes per second at the server's Argon2 parallelism.
pub const TARGET_RATIO: f64 = 0.8;

/// Runs `bench enrol`.
pub fn run(settings: &EnrolSettings) -> Result<Report, BenchError> {
    let conn = Connection::open(&settings.target)?;
    conn.ensure_open_period()?;
    let n = cores();
    // The server's Argon2 parallelism: known for an in-process server; for
    // an external one, the default of `blindpass serve` on a machine like this.
    let permits = conn
        .server
        .as_ref()
        .map_or_else(|| (n / 2).max(1), |s| s.http_config().argon2_permits.max(1));
    let params = conn
        .server
        .as_ref()
        .map_or(Argon2Params::DEFAULT, |s| s.http_config().password_params);
    // Argon2id is memory-bound and so sensitive to whatever else the
    // machine does: measure the limit before and after the HTTP phases
    // (the server idle both times) and divide by the mean.
    let raw_time = Duration::from_secs_f64(settings.raw_seconds.max(0.2) / 2.0);
    let raw_before = argon2_rate(params, permits, raw_time).per_s;

    let tag = super::run_tag();
    let count = settings.count.max(1);
    let enrol = run_counted(
        "enrol",
        &conn.url,
        count,
        settings.concurrency,
        settings.quiet,
        |client, i| post_json(client, paths::RESIDENTS, &people::enrol_body(&tag, i)).map(drop),
    );
    let login = run_counted(
        "login",
        &conn.url,
        count,
        settings.concurrency,
        settings.quiet,
        |client, i| post_json(client, paths::SESSIONS, &people::login_body(&tag, i)).map(drop),
    );
    drop(conn);
    let raw_after = argon2_rate(params, permits, raw_time).per_s;
    let raw_permits = (raw_before + raw_after) / 2.0;
    let raw_all = if permits == n {
        raw_permits
    } else {
        argon2_rate(params, n, raw_time).per_s
    };

    let mut report = Report::new(
        "enrol",
        format!(
            "{} residents, {} client threads, {}",
            count,
            settings.concurrency,
            describe(&settings.target, permits)
        ),
    );
    report.figure("enrolments", enrol.ok as f64, "");
    report.figure("enrolments/s", enrol.rate(), "/s");
    report.figure("logins", login.ok as f64, "");
    report.figure("logins/s", login.rate(), "/s");
    let raw_name = format!(
        "raw Argon2id ({} KiB, t={}, p={}), {permits} thread(s)",
        params.m_cost_kib, params.t_cost, params.p_cost
    );
    report.figure(format!("{raw_name}, before"), raw_before, "/s");
    report.figure(format!("{raw_name}, after"), raw_after, "/s");
    if permits != n {
        report.figure(format!("raw Argon2id, {n} threads"), raw_all, "/s");
    }
    let limit = format!(
        "raw Argon2id/s on {permits} thread(s) (the server's Argon2 permits; mean of before and after)"
    );
    report.ratio(
        "enrolments/s",
        enrol.rate(),
        &limit,
        raw_permits,
        Some(TARGET_RATIO),
    );
    report.ratio(
        "logins/s",
        login.rate(),
        &limit,
        raw_permits,
        Some(TARGET_RATIO),
    );
    if permits != n {
        report.ratio(
            "enrolments/s",
            enrol.rate(),
            format!("raw Argon2id/s on all {n} threads"),
            raw_all,
            None,
        );
    }
    for (what, phase) in [("enrolment", &enrol), ("login", &login)] {
        report.figure(
            format!("{what} attempts shed (503 overloaded, retried after Retry-After)"),
            phase.shed as f64,
            "",
        );
        report.figure(
            format!("{what} attempts shed, share"),
            phase.shed_share() * 100.0,
            "%",
        );
    }
    // Latencies are of the admitted attempts; shed ones are counted above.
    report.latency("enrol", enrol.latency);
    report.latency("login", login.latency);
    report.errors("enrol", enrol.errors);
    report.errors("login", login.errors);
    if matches!(settings.target, Target::External { .. }) {
        report.note(
            "an external `blindpass serve` limits login and enrolment per client address (by \
             default a burst of 20, then 2/s): expect `429 rate-limited` failures unless it \
             runs with a larger --rate-burst and --rate-per-s, or use --in-process",
        );
    }
    report.note(
        "the raw Argon2id figures are measured in this process, on this machine, before and \
         after the HTTP phases; for an external server on another machine the ratio is \
         meaningless",
    );
    Ok(report)
}

fn describe(target: &Target, permits: usize) -> String {
    match target {
        Target::External { url, .. } => format!("server {url}"),
        Target::InProcess { .. } => {
            format!("in-process server (Argon2 permits {permits}, rate limit off)")
        }
    }
}

/// Logged-in residents, ready for a timed phase.
pub(crate) struct Residents {
    /// Session tokens, one per resident that enrolled and logged in.
    pub(crate) sessions: Vec<String>,
    /// The enrolment phase.
    pub(crate) enrol: Phase,
    /// The login phase.
    pub(crate) login: Phase,
    /// Answers `429` that were waited out and retried.
    pub(crate) rate_limited_retries: u64,
}

/// Enrols `count` synthetic residents and logs them in, waiting out `429`
/// answers (an external server's per-address limit) instead of failing.
pub(crate) fn prepare_residents(
    conn: &Connection,
    count: usize,
    concurrency: usize,
    quiet: bool,
) -> Result<Residents, BenchError> {
    let tag = super::run_tag();
    let retries = AtomicU64::new(0);
    let enrol = run_counted(
        "setup: enrol",
        &conn.url,
        count,
        concurrency,
        quiet,
        |client, i| {
            post_patiently(
                client,
                paths::RESIDENTS,
                &people::enrol_body(&tag, i),
                &retries,
            )
            .map(drop)
        },
    );
    let logged_in = log_in(&conn.url, &tag, count, concurrency, quiet);
    if logged_in.sessions.is_empty() {
        return Err(nobody_logged_in(&[&enrol, &logged_in.login]));
    }
    Ok(Residents {
        sessions: logged_in.sessions,
        enrol,
        login: logged_in.login,
        rate_limited_retries: retries.into_inner() + logged_in.rate_limited_retries,
    })
}

/// Sessions of residents who logged in.
pub(crate) struct Sessions {
    /// Session tokens, one per resident that logged in.
    pub(crate) sessions: Vec<String>,
    /// The login phase.
    pub(crate) login: Phase,
    /// Answers `429` that were waited out and retried.
    pub(crate) rate_limited_retries: u64,
}

/// Logs in residents `0..count` of run `tag` (enrolled with the synthetic
/// password, over HTTP or in-process) at `base_url`.
pub(crate) fn log_in(
    base_url: &str,
    tag: &str,
    count: usize,
    concurrency: usize,
    quiet: bool,
) -> Sessions {
    let retries = AtomicU64::new(0);
    let sessions = Mutex::new(vec![None; count]);
    let login = run_counted(
        "setup: log in",
        base_url,
        count,
        concurrency,
        quiet,
        |client, i| {
            let reply = post_patiently(
                client,
                paths::SESSIONS,
                &people::login_body(tag, i),
                &retries,
            )?;
            let session: NewSession = serde_json::from_slice(&reply.body)
                .map_err(|_| Failure::Malformed("201 login: not a session"))?;
            sessions.lock().unwrap_or_else(|e| e.into_inner())[i] =
                Some(session.session_token.clone());
            Ok(())
        },
    );
    Sessions {
        sessions: sessions
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .flatten()
            .collect(),
        login,
        rate_limited_retries: retries.into_inner(),
    }
}

/// The set-up error when no resident could log in, with why.
fn nobody_logged_in(phases: &[&Phase]) -> BenchError {
    let mut why = ErrorTally::default();
    for phase in phases {
        why.merge(phase.errors.clone());
    }
    BenchError::Setup(format!(
        "no resident could enrol and log in ({why}); is a period open? pass \
         --admin-token-file to let the bench open one"
    ))
}

/// `POST` a prepared JSON body to `path`, expecting `201`.
fn post_json(client: &Client, path: &str, body: &[u8]) -> Result<Reply, Failure> {
    client::expect(client.post_raw(path, media::JSON, None, body), 201)
}

/// `POST` a JSON body expecting `201`, waiting out `rate-limited` answers
/// (the per-address limit of login and enrolment) and counting them.
fn post_patiently(
    client: &Client,
    path: &str,
    body: &[u8],
    retries: &AtomicU64,
) -> Result<Reply, Failure> {
    loop {
        match post_json(client, path, body) {
            Err(failure) if failure.is(ProblemType::RateLimited) => {
                retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(600));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::server::bench_http_config;

    #[test]
    fn enrolment_and_login_succeed_in_process() {
        let scratch = tempfile::tempdir().unwrap();
        let report = run(&EnrolSettings {
            target: Target::InProcess {
                scratch_parent: scratch.path().to_owned(),
                http: bench_http_config(),
            },
            concurrency: 2,
            count: 3,
            raw_seconds: 0.2,
            quiet: true,
        })
        .unwrap();
        let figure = |what: &str| {
            report
                .figures
                .iter()
                .find(|f| f.what == what)
                .map(|f| f.value)
                .unwrap()
        };
        assert_eq!(figure("enrolments"), 3.0, "{report}");
        assert_eq!(figure("logins"), 3.0, "{report}");
        assert!(report.errors.iter().all(|(_, e)| e.is_empty()), "{report}");
        assert_eq!(report.ratios.len(), 3, "{report}");
    }
}
