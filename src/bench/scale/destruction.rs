//! Ending the doomed period through the admin API while the load runs,
//! and watching its destruction from outside: the admin list (key gone),
//! the end call's answer, and the verified audit log (purge done).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::bench::client;
use crate::bench::issue::{Load, TimedRun, timed_issuance};
use blindpass::audit::Event;
use blindpass::client::Client;
use blindpass::ids::PeriodId;
use blindpass::protocol::api::{PeriodList, media, paths};

/// How long to wait for the purge to show in the audit log after the end call.
pub(super) const PURGE_WITHIN: Duration = Duration::from_secs(600);

/// What the destroying thread needs.
pub(super) struct Admin<'a> {
    pub(super) base: &'a str,
    pub(super) token: &'a str,
    pub(super) log_key: &'a str,
    pub(super) period: PeriodId,
}

/// When the doomed period's destruction was asked for and seen done.
pub(super) struct Destruction {
    /// The end call was sent.
    pub(super) called_at: Instant,
    /// Its answer arrived.
    pub(super) answered_at: Instant,
    /// `Ok` for 200, else the kind of failure.
    pub(super) answer: Result<(), String>,
    /// The admin list first showed the period destroyed (key gone).
    pub(super) listed_at: Option<Instant>,
    /// The purge was known finished: the 200 answer if the log already
    /// showed the purge right after it, else the poll that first did.
    pub(super) purged_at: Option<Instant>,
}

/// Runs the load (token requests to `path` of the admin's server), and
/// `end_at` after its start ends the doomed period.
pub(super) fn issue_while_destroying(
    path: &str,
    sessions: &[String],
    requests: &[Vec<u8>],
    load: Load,
    end_at: Duration,
    admin: &Admin<'_>,
) -> (TimedRun, Destruction) {
    let at = Instant::now() + end_at;
    std::thread::scope(|scope| {
        let destroyer = std::thread::Builder::new()
            .name("bench-admin".into())
            .spawn_scoped(scope, || end_and_watch(admin, at));
        let issued = timed_issuance(admin.base, path, sessions, requests, load);
        let destruction = match destroyer.map(|d| d.join()) {
            Ok(Ok(d)) => d,
            // Without the thread there is no destruction to time: say so
            // through a failed answer at the end of the load.
            _ => Destruction {
                called_at: Instant::now(),
                answered_at: Instant::now(),
                answer: Err("the admin thread failed".into()),
                listed_at: None,
                purged_at: None,
            },
        };
        (issued, destruction)
    })
}

/// Ends the period at `at`, watches the admin list for its tombstone while
/// the call runs, and waits for the purge to show in the audit log.
fn end_and_watch(admin: &Admin<'_>, at: Instant) -> Destruction {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_list(admin, &stop));
        let path = paths::admin_period_end(admin.period);
        let admin_client = Client::new(admin.base);
        let called_at = Instant::now();
        let answer = client::expect(
            admin_client.post_raw(&path, media::JSON, Some(admin.token), b"{}"),
            200,
        )
        .map(drop)
        .map_err(|failure| failure.kind());
        let answered_at = Instant::now();
        let purged_at = wait_for_purge(admin, answer.is_ok().then_some(answered_at));
        stop.store(true, Ordering::Relaxed);
        Destruction {
            called_at,
            answered_at,
            answer,
            listed_at: watcher.join().ok().flatten(),
            purged_at,
        }
    })
}

impl Destruction {
    /// The end of the destruction window: the purge seen done, else the
    /// end call's answer.
    pub(super) fn done_at(&self) -> Instant {
        self.purged_at.unwrap_or(self.answered_at)
    }
}

/// Polls `GET /v1/admin/periods` until the period is listed destroyed (its
/// key is gone then); when the answer arrived, or `None` if stopped first.
fn watch_list(admin: &Admin<'_>, stop: &AtomicBool) -> Option<Instant> {
    let admin_client = Client::new(admin.base);
    while !stop.load(Ordering::Relaxed) {
        let listed = admin_client
            .get_json::<PeriodList>(paths::ADMIN_PERIODS, Some(admin.token))
            .is_ok_and(|l| l.destroyed.iter().any(|d| d.id == admin.period));
        if listed {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Waits for the period's `records-purged` entry in the verified audit log.
/// `answered` is the end call's 200 answer: the server sends it after the
/// purge, so if the first look finds the entry, the purge was done then.
fn wait_for_purge(admin: &Admin<'_>, answered: Option<Instant>) -> Option<Instant> {
    let api = Client::new(admin.base);
    let give_up = Instant::now() + PURGE_WITHIN;
    let mut first = answered;
    loop {
        let purged = blindpass::auditor::fetch_log(&api, admin.log_key).is_ok_and(|log| {
            log.entries().iter().any(|e| {
                matches!(&e.event, Event::RecordsPurged { period, .. } if *period == admin.period)
            })
        });
        if purged {
            return Some(first.unwrap_or_else(Instant::now));
        }
        first = None;
        if Instant::now() >= give_up {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The doomed period's steps as the server logged them (its own clock).
#[derive(Default)]
pub(super) struct ServerTimes {
    pub(super) ended: Option<OffsetDateTime>,
    pub(super) key_destroyed: Option<OffsetDateTime>,
    pub(super) purged: Option<(OffsetDateTime, u64)>,
}

pub(super) fn server_times(
    base: &str,
    log_key: &str,
    doomed: &PeriodId,
) -> Result<ServerTimes, String> {
    let log =
        blindpass::auditor::fetch_log(&Client::new(base), log_key).map_err(|e| e.to_string())?;
    let mut times = ServerTimes::default();
    for entry in log.entries() {
        match &entry.event {
            Event::PeriodEnded { period } if period == doomed => times.ended = Some(entry.at),
            Event::PeriodKeyDestroyed { period, .. } if period == doomed => {
                times.key_destroyed = Some(entry.at);
            }
            Event::RecordsPurged { period, entries } if period == doomed => {
                times.purged = Some((entry.at, *entries));
            }
            _ => {}
        }
    }
    Ok(times)
}
