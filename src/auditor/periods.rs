//! What the log says about each isolation period, and whether its key was
//! destroyed in time; and whether every published signing key is logged.

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::Failure;
use crate::audit::{Entry, Event};
use crate::ids::PeriodId;
use crate::protocol::directory::Directory;
use crate::protocol::permit::range;

/// Where a period stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeriodState {
    /// Its key was destroyed (the log has `period-key-destroyed`).
    Destroyed,
    /// Its deadline has not passed (with the tolerance).
    Live,
    /// Its deadline plus the tolerance has passed and the log shows no
    /// destruction: a failure.
    Overdue,
}

impl PeriodState {
    /// The word shown in tables.
    pub fn word(self) -> &'static str {
        match self {
            Self::Destroyed => "destroyed",
            Self::Live => "live",
            Self::Overdue => "OVERDUE",
        }
    }
}

/// One isolation period as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodStatus {
    /// The period.
    pub period: PeriodId,
    /// The operator's label.
    pub name: String,
    /// When it was opened (the `period-opened` entry's time).
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Its end, after any extension or early end.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Its destruction deadline, after any extension or early end.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// When the operator ended it early, if they did.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_early_at: Option<OffsetDateTime>,
    /// When destruction was announced (`destroy-intent`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub destroy_intent_at: Option<OffsetDateTime>,
    /// When its key was destroyed (`period-key-destroyed`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub destroyed_at: Option<OffsetDateTime>,
    /// Seconds the destruction came after the deadline (0 if in time),
    /// computed from the log's own times.
    pub late_by_s: Option<i64>,
    /// Records purged from the database (sum of `records-purged`).
    pub records_purged: u64,
    /// Where it stands.
    pub status: PeriodState,
}

/// A date from the log: outside input to the auditor, so it is range
/// checked before any arithmetic touches it.
fn parse_time(text: &str, what: &str, period: &PeriodId) -> Result<OffsetDateTime, Failure> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        Failure::malformed(format!("period {period}: {what} {text:?} is not RFC 3339"))
    })?;
    if !range::instant_ok(at) {
        return Err(Failure::malformed(format!(
            "period {period}: {what} {text:?} {}",
            range::DATE_RULE
        )));
    }
    Ok(at)
}

fn unopened(period: &PeriodId, entry: &Entry) -> Failure {
    Failure::malformed(format!(
        "entry {} is about period {period}, which the log never opened",
        entry.seq
    ))
}

/// Replays the entries into one [`PeriodStatus`] per period (in the order
/// they were opened) and the failures they show: overdue periods
/// (`deadline + tolerance < now` without a destruction), and destruction
/// entries whose deadline disagrees with the one the log announced.
pub fn period_report(
    entries: &[Entry],
    now: OffsetDateTime,
    tolerance: Duration,
) -> (Vec<PeriodStatus>, Vec<Failure>) {
    let mut periods: BTreeMap<PeriodId, (usize, PeriodStatus, Duration)> = BTreeMap::new();
    let mut failures = Vec::new();
    for entry in entries {
        let result = apply(&mut periods, entry);
        if let Err(failure) = result {
            failures.push(failure);
        }
    }
    let mut list: Vec<(usize, PeriodStatus, Duration)> = periods.into_values().collect();
    list.sort_by_key(|(order, _, _)| *order);
    let mut out = Vec::with_capacity(list.len());
    for (_, mut status, _) in list {
        status.status = if status.destroyed_at.is_some() {
            PeriodState::Destroyed
        } else if status
            .deadline
            .checked_add(tolerance)
            .is_some_and(|late| late < now)
        {
            failures.push(Failure::Overdue {
                period: status.period,
                deadline: status.deadline,
                overdue_by_s: (now - status.deadline).whole_seconds(),
            });
            PeriodState::Overdue
        } else {
            PeriodState::Live
        };
        out.push(status);
    }
    (out, failures)
}

type Periods = BTreeMap<PeriodId, (usize, PeriodStatus, Duration)>;

fn apply(periods: &mut Periods, entry: &Entry) -> Result<(), Failure> {
    let order = periods.len();
    match &entry.event {
        Event::PeriodOpened {
            period,
            name,
            ends_at,
            deadline,
        } => {
            let ends_at = parse_time(ends_at, "ends_at", period)?;
            let deadline = parse_time(deadline, "deadline", period)?;
            if periods.contains_key(period) {
                return Err(Failure::malformed(format!(
                    "entry {} opens period {period} a second time",
                    entry.seq
                )));
            }
            let status = PeriodStatus {
                period: *period,
                name: name.clone(),
                opened_at: entry.at,
                ends_at,
                deadline,
                ended_early_at: None,
                destroy_intent_at: None,
                destroyed_at: None,
                late_by_s: None,
                records_purged: 0,
                status: PeriodState::Live,
            };
            // The grace between end and deadline stays fixed; an early end
            // moves both.
            periods.insert(*period, (order, status, deadline - ends_at));
        }
        Event::PeriodExtended {
            period,
            ends_at,
            deadline,
        } => {
            let (_, status, grace) = periods
                .get_mut(period)
                .ok_or_else(|| unopened(period, entry))?;
            status.ends_at = parse_time(ends_at, "ends_at", period)?;
            status.deadline = parse_time(deadline, "deadline", period)?;
            *grace = status.deadline - status.ends_at;
        }
        Event::PeriodEnded { period } => {
            let (_, status, grace) = periods
                .get_mut(period)
                .ok_or_else(|| unopened(period, entry))?;
            status.ended_early_at = Some(entry.at);
            status.ends_at = entry.at;
            // Both ends were range checked, but the entry's own time was
            // not: an early end cannot move the deadline past what exists.
            status.deadline = entry.at.checked_add(*grace).ok_or_else(|| {
                Failure::malformed(format!(
                    "entry {} ends period {period} at a time whose deadline does not exist",
                    entry.seq
                ))
            })?;
        }
        Event::DestroyIntent { period } => {
            let (_, status, _) = periods
                .get_mut(period)
                .ok_or_else(|| unopened(period, entry))?;
            status.destroy_intent_at.get_or_insert(entry.at);
        }
        Event::PeriodKeyDestroyed {
            period,
            deadline,
            late_by_s,
        } => {
            let (_, status, _) = periods
                .get_mut(period)
                .ok_or_else(|| unopened(period, entry))?;
            if status.destroyed_at.is_some() {
                return Ok(());
            }
            let late = (entry.at - status.deadline).whole_seconds().max(0);
            status.destroyed_at = Some(entry.at);
            status.late_by_s = Some(late);
            let claimed = parse_time(deadline, "deadline", period)?;
            if claimed != status.deadline || *late_by_s != late {
                return Err(Failure::Misreported {
                    period: *period,
                    detail: format!(
                        "the destruction entry {} says deadline {deadline}, {late_by_s} s late; \
                         the log announced deadline {}, which makes it {late} s late",
                        entry.seq,
                        rfc3339(status.deadline)
                    ),
                });
            }
        }
        Event::RecordsPurged { period, entries } => {
            let (_, status, _) = periods
                .get_mut(period)
                .ok_or_else(|| unopened(period, entry))?;
            status.records_purged = status.records_purged.saturating_add(*entries);
        }
        _ => {}
    }
    Ok(())
}

/// RFC 3339 to the second, for messages and tables.
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Key consistency: every key the directory publishes must have a
/// `signing-key-published` entry with the same class and window, and no
/// class and window may have more than one logged key (a second key would
/// split its holders into smaller, recognisable groups).
pub fn key_failures(entries: &[Entry], directory: &Directory) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut by_window: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for entry in entries {
        if let Event::SigningKeyPublished {
            key_id,
            class,
            window,
        } = &entry.event
        {
            let ids = by_window
                .entry((class.clone(), window.clone()))
                .or_default();
            if !ids.contains(key_id) {
                ids.push(key_id.clone());
            }
        }
    }
    for key in &directory.keys {
        let logged = by_window
            .get(&(key.class.to_string(), key.window.to_string()))
            .is_some_and(|ids| ids.contains(&key.key_id));
        if !logged {
            failures.push(Failure::UnloggedKey {
                key_id: key.key_id.clone(),
                class: key.class.to_string(),
                window: key.window.to_string(),
            });
        }
    }
    for ((class, window), key_ids) in by_window {
        if key_ids.len() > 1 {
            failures.push(Failure::SplitKey {
                class,
                window,
                key_ids,
            });
        }
    }
    failures
}

/// Entries that appeared after an earlier checkpoint (seq ≥ `saved_size`)
/// but are dated before that checkpoint was seen (minus the tolerance):
/// they claim a time the auditor can show they were not in the log.
pub fn backdated(
    entries: &[Entry],
    saved_size: u64,
    seen_at: OffsetDateTime,
    tolerance: Duration,
) -> Vec<Failure> {
    entries
        .iter()
        .filter(|e| {
            e.seq >= saved_size && e.at.checked_add(tolerance).is_some_and(|at| at < seen_at)
        })
        .map(|e| Failure::Backdated {
            seq: e.seq,
            at: e.at,
            seen_at,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(seq: u64, at: OffsetDateTime, event: Event) -> Entry {
        Entry { seq, at, event }
    }

    /// A log is outside input to the auditor: dates at the edge of what
    /// `time` can hold are reported as malformed, never a panic.
    #[test]
    fn dates_at_the_end_of_time_are_failures_not_panics() {
        let period = PeriodId::generate();
        let at = datetime!(2026-12-01 09:00 UTC);
        let entries = [
            entry(
                0,
                at,
                Event::PeriodOpened {
                    period,
                    name: "far".into(),
                    ends_at: "9999-12-31T00:00:00Z".into(),
                    deadline: "9999-12-31T23:59:59Z".into(),
                },
            ),
            entry(1, at, Event::PeriodEnded { period }),
        ];
        let (_, failures) = period_report(&entries, at, Duration::hours(1));
        assert!(
            failures
                .iter()
                .any(|f| f.to_string().contains("must lie in the years")),
            "{failures:?}"
        );
        // The entry's own time is not range checked by the log reader: an
        // early end near the end of time is a failure too.
        let entries = [
            entry(
                0,
                at,
                Event::PeriodOpened {
                    period,
                    name: "late".into(),
                    ends_at: "2026-12-31T00:00:00Z".into(),
                    deadline: "2036-12-31T00:00:00Z".into(),
                },
            ),
            entry(
                1,
                datetime!(9999-12-31 00:00 UTC),
                Event::PeriodEnded { period },
            ),
        ];
        let (_, failures) = period_report(&entries, at, Duration::hours(1));
        assert!(
            failures
                .iter()
                .any(|f| f.to_string().contains("does not exist")),
            "{failures:?}"
        );
        let late = backdated(&entries, 0, at, Duration::MAX);
        assert!(late.is_empty());
    }
}
