//! Deadline-driven destruction: `destroy_due` destroys every period whose
//! deadline (end + grace) has passed and retires signing keys whose window
//! is over. It is idempotent, so it can run at startup (a deadline that
//! passed while the service was down is met before the first request), on
//! every scheduler tick, and right after an operator ends a period.

use time::{Duration, OffsetDateTime};

use super::{Authority, DestroyReport, IssuerError};
use crate::ids::PeriodId;

/// What one pass of [`Authority::destroy_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// The clock reading the pass acted on.
    pub now: Option<OffsetDateTime>,
    /// Periods destroyed, with lateness.
    pub destroyed: Vec<DestroyReport>,
    /// Signing keys retired.
    pub retired_keys: usize,
    /// The clock was behind an earlier pass; nothing was done.
    pub clock_went_backwards: bool,
    /// Another node (sharing the key ring) was running the pass; this one
    /// did nothing.
    pub ran_elsewhere: bool,
}

impl Authority {
    /// Destroys every period whose deadline has passed (or whose
    /// destruction was started), and retires signing keys whose window
    /// ended more than `skew` ago. Refuses to act on a clock that moved
    /// backwards since the last pass: a wrong clock must never destroy
    /// early, and nothing destroyed can come back anyway.
    pub fn destroy_due(&self, skew: Duration) -> Result<ExpiryReport, IssuerError> {
        self.expiry_pass(skew, false)
    }

    /// As [`Authority::destroy_due`], but with several nodes, waits for a
    /// pass another node (or this one) is running instead of skipping, so
    /// that what is due when it is called is destroyed when it returns.
    pub fn destroy_due_now(&self, skew: Duration) -> Result<ExpiryReport, IssuerError> {
        self.expiry_pass(skew, true)
    }

    fn expiry_pass(&self, skew: Duration, wait: bool) -> Result<ExpiryReport, IssuerError> {
        // Several nodes: one runs each pass; the others skip it (or wait
        // for it, with `wait`). The lock is held for the whole pass.
        let Some(_pass) = self.expiry_pass_lock(wait)? else {
            tracing::debug!("another node is running the expiry pass");
            return Ok(ExpiryReport {
                ran_elsewhere: true,
                ..ExpiryReport::default()
            });
        };
        // Take in what another node's pass changed before deciding.
        self.refresh_ring()?;
        let now = self.now();
        {
            let mut last = self
                .last_expiry_pass
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(previous) = *last {
                if now < previous {
                    tracing::warn!(
                        behind_s = (previous - now).whole_seconds(),
                        "clock moved backwards; expiry pass skipped"
                    );
                    return Ok(ExpiryReport {
                        now: Some(now),
                        clock_went_backwards: true,
                        ..ExpiryReport::default()
                    });
                }
            }
            *last = Some(now);
        }
        let due: Vec<PeriodId> = self
            .periods()
            .into_iter()
            .filter(|p| p.destroy_pending || p.deadline <= now)
            .map(|p| p.id)
            .collect();
        let mut destroyed = Vec::with_capacity(due.len());
        for period in due {
            let started = std::time::Instant::now();
            let report = self.destroy_period(&period)?;
            tracing::info!(
                period = %period,
                late_by_s = report.late_by_s,
                took_ms = started.elapsed().as_millis() as u64,
                "period destroyed; purge queued"
            );
            destroyed.push(report);
        }
        let retired_keys = self.retire_signing_keys(skew)?;
        Ok(ExpiryReport {
            now: Some(now),
            destroyed,
            retired_keys,
            clock_went_backwards: false,
            ran_elsewhere: false,
        })
    }
}
