//! Liveness (`/healthz`) and readiness (`/readyz`) from the state of the
//! store and the disk, not a constant: a store that cannot write makes
//! both fail, and free space under the threshold makes the server not
//! ready, so a load balancer stops sending it work before writes fail.
//!
//! sled keeps an I/O error (a full disk) and returns it from every later
//! write until the database is reopened, even after space comes back; a
//! failed liveness probe is how the orchestrator learns that the process
//! must be restarted. The probe writes and flushes one small record, at
//! most once per `health_probe_interval`, whoever asks.

use std::path::Path;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::problem::Problem;
use crate::protocol::api::ProblemType;

/// What the last probe found.
#[derive(Debug, Clone, Copy)]
pub(super) struct Report {
    /// The store accepted a write and a flush.
    store_writable: bool,
    /// Bytes available to the server under its data directory, if known.
    free_bytes: Option<u64>,
}

/// The cached result of the last probe.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Held while probing, so concurrent checks share one probe.
    last: tokio::sync::Mutex<Option<(Instant, Report)>>,
}

/// Probes the store and the disk, or returns a result younger than the
/// probe interval.
async fn report(state: &AppState) -> Report {
    let mut last = state.health.last.lock().await;
    if let Some((at, report)) = *last {
        if at.elapsed() < state.config.health_probe_interval {
            return report;
        }
    }
    let authority = state.authority.clone();
    let report = tokio::task::spawn_blocking(move || {
        let store_writable = match authority.store().probe() {
            Ok(()) => true,
            Err(e) => {
                // The error names an I/O kind, never a record.
                tracing::error!(error = %e, "health probe: the store cannot write");
                false
            }
        };
        Report {
            store_writable,
            free_bytes: free_bytes(authority.data_dir().root()),
        }
    })
    .await
    .unwrap_or(Report {
        store_writable: false,
        free_bytes: None,
    });
    *last = Some((Instant::now(), report));
    report
}

/// Bytes an unprivileged writer may still use on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn ok() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
        .into_response()
}

fn store_unwritable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ProblemType::StoreUnwritable,
        "Store cannot write",
        "the database failed a write; the server needs a restart once the disk has room",
    )
    .with_retry_after_s(5)
}

/// Liveness: the process can still write its store.
pub(super) async fn healthz(State(state): State<AppState>) -> Result<Response, Problem> {
    if report(&state).await.store_writable {
        Ok(ok())
    } else {
        Err(store_unwritable())
    }
}

/// Readiness: the store can write and the disk has room for more.
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Response, Problem> {
    let report = report(&state).await;
    if !report.store_writable {
        return Err(store_unwritable());
    }
    match report.free_bytes {
        Some(free) if free < state.config.min_free_disk_bytes => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::DiskLow,
            "Disk almost full",
            "free space under the data directory is below the configured minimum",
        )
        .with_retry_after_s(30)),
        _ => Ok(ok()),
    }
}
