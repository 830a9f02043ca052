//! The expiry scheduler: a tokio-cron-scheduler job that runs
//! [`Authority::destroy_due`] on a six-field cron schedule (every minute by
//! default). tokio-cron-scheduler never catches up on missed runs, so the
//! service also runs one pass at startup, before it accepts requests.

use std::sync::Arc;

use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::issuer::Authority;

/// Default schedule: second 0 of every minute.
pub const EVERY_MINUTE: &str = "0 * * * * *";

/// How far past a window's end verifiers may still accept it; keys are
/// retired only after that.
pub const VERIFIER_SKEW: time::Duration = time::Duration::minutes(5);

/// Runs one expiry pass on the blocking pool and logs the outcome; with
/// several nodes, skipped when another node is running one.
pub async fn tick(authority: Arc<Authority>) {
    pass(authority, false).await;
}

/// As [`tick`], but with several nodes waits for a pass another node is
/// running and then runs one: for a caller that must see the pass done
/// (an operator ending a period with no grace).
pub async fn tick_now(authority: Arc<Authority>) {
    pass(authority, true).await;
}

async fn pass(authority: Arc<Authority>, wait: bool) {
    let outcome = tokio::task::spawn_blocking(move || {
        if wait {
            authority.destroy_due_now(VERIFIER_SKEW)
        } else {
            authority.destroy_due(VERIFIER_SKEW)
        }
    })
    .await;
    match outcome {
        Ok(Ok(report)) if !report.destroyed.is_empty() || report.retired_keys > 0 => {
            tracing::info!(
                destroyed = report.destroyed.len(),
                retired_keys = report.retired_keys,
                "expiry pass"
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "expiry pass failed; will retry next tick"),
        Err(_) => tracing::error!("expiry pass panicked; will retry next tick"),
    }
}

/// Starts the cron job. Keep the returned scheduler alive.
pub async fn start(
    authority: Arc<Authority>,
    schedule: &str,
) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let job = Job::new_async(schedule, move |_id, _scheduler| {
        let authority = authority.clone();
        Box::pin(async move { tick(authority).await })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}
