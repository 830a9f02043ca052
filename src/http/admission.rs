//! Admission control: a bound on how much work may wait in front of each
//! expensive pool (Argon2, signing). A request over the bound is shed at
//! once with 503 and `Retry-After`, before any work is done, so the queue
//! — and with it the latency of the requests that are admitted — stays
//! bounded under overload instead of growing with the number of clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::problem::Problem;
use crate::protocol::api::ProblemType;

/// Counts the requests running or waiting for one pool.
#[derive(Debug)]
pub(super) struct Admission {
    /// Requests admitted and not yet finished.
    in_flight: AtomicUsize,
    /// The most that may be admitted at once: workers plus queue.
    limit: usize,
    metrics: Arc<Metrics>,
    /// The counter of shed requests in `/metrics`.
    shed_counter: &'static str,
}

/// The Argon2 permits with the bound on the requests waiting for them.
#[derive(Debug)]
pub(super) struct Argon2Pool {
    /// How many hashes run at once.
    pub(super) permits: Arc<Semaphore>,
    /// How many may run or wait.
    pub(super) admission: Arc<Admission>,
}

/// Proof of admission; leaving the pool (drop) makes room for another.
#[derive(Debug)]
pub(super) struct Ticket {
    gate: Arc<Admission>,
}

impl Admission {
    /// A gate admitting `workers + queue` requests at once (at least
    /// one); each request shed adds one to `shed_counter`.
    pub(super) fn new(
        workers: usize,
        queue: usize,
        metrics: Arc<Metrics>,
        shed_counter: &'static str,
    ) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            limit: workers.saturating_add(queue).max(1),
            metrics,
            shed_counter,
        })
    }

    /// Admits one request, or answers 503 with `Retry-After` when the pool
    /// and its queue are full.
    pub(super) fn try_enter(self: &Arc<Self>) -> Result<Ticket, Problem> {
        match self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            }) {
            Ok(_) => Ok(Ticket { gate: self.clone() }),
            Err(_) => {
                self.metrics.incr(self.shed_counter);
                Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ProblemType::Overloaded,
                    "Overloaded",
                    "the server is at capacity; retry after the time in Retry-After",
                )
                .with_retry_after_s(1))
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_frees_a_place_on_drop() {
        let metrics = Arc::new(Metrics::default());
        let gate = Admission::new(2, 1, metrics.clone(), "shed_test");
        let held: Vec<Ticket> = (0..3).map(|_| gate.try_enter().unwrap()).collect();
        let shed = gate.try_enter().unwrap_err();
        assert_eq!(shed.status, 503, "a fourth is over the bound");
        assert_eq!(shed.retry_after_s, Some(1));
        assert!(metrics.render().contains("blindpass_shed_test_total 1"));
        drop(held);
        assert!(gate.try_enter().is_ok(), "leaving makes room again");
    }
}
