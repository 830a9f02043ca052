//! The committer: one thread applies quota charges in arrival order and
//! flushes once per batch. A batch is every order that arrives within a
//! short window after its first one (and while the previous flush ran), so
//! the flush rate follows the window, not the request rate, and no request
//! holds a thread (or an RSA permit) while it waits for the disk.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::sled_engine::Core;
use super::{Charge, ChargeOrder, StoreError};

/// Most orders applied under one flush: bounds how long the first order of
/// a burst waits for the last.
const MAX_BATCH: usize = 512;

/// How long a batch stays open after its first order. A pass costs about
/// half a millisecond of RSA per core, so at full load a window of one
/// millisecond gathers a few passes per flush; each flush wakes sled's I/O
/// threads, which cost a tenth of a pass's CPU when every pass flushed
/// alone. The added latency is small beside the signature's queueing.
const WINDOW: Duration = Duration::from_millis(1);

type Answer = Result<Charge, StoreError>;

/// What a queued request asks of the committer.
enum Job {
    /// Apply a charge, answer after the flush that covers it.
    Charge {
        order: ChargeOrder,
        reply: oneshot::Sender<Answer>,
    },
    /// Write nothing; answer after the next flush, which covers every write
    /// made before the request was queued (a replay's recorded charge).
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The sending side of the committer thread. The thread ends when this is
/// dropped (the channel closes), releasing its database handle.
#[derive(Debug)]
pub(super) struct Queue {
    jobs: mpsc::Sender<Job>,
}

impl Queue {
    pub(super) fn start(core: Core) -> Self {
        let (jobs, incoming) = mpsc::channel();
        // If the thread cannot be started, `incoming` is dropped with the
        // closure and every order is answered `CommitterStopped`.
        let _ = std::thread::Builder::new()
            .name("blindpass-commit".into())
            .spawn(move || run(&core, &incoming));
        Self { jobs }
    }

    pub(super) fn submit(&self, order: ChargeOrder) -> PendingCharge {
        let (reply, answer) = oneshot::channel();
        // On a closed channel the job, and with it `reply`, is dropped:
        // the waiter sees `CommitterStopped`.
        let _ = self.jobs.send(Job::Charge { order, reply });
        PendingCharge { answer }
    }

    pub(super) fn flush(&self) -> PendingFlush {
        let (reply, answer) = oneshot::channel();
        let _ = self.jobs.send(Job::Flush { reply });
        PendingFlush { answer }
    }
}

/// A charge handed to the committer; its outcome arrives after the flush
/// that made it durable.
#[derive(Debug)]
pub struct PendingCharge {
    answer: oneshot::Receiver<Answer>,
}

impl PendingCharge {
    /// A charge answered elsewhere (the PostgreSQL engine's runtime).
    pub(super) fn answered_by(answer: oneshot::Receiver<Answer>) -> Self {
        Self { answer }
    }

    /// Waits for the outcome.
    pub async fn outcome(self) -> Answer {
        self.answer
            .await
            .unwrap_or(Err(StoreError::CommitterStopped))
    }
}

/// A flush requested from the committer; it resolves once every write made
/// before the request is durable.
#[derive(Debug)]
pub struct PendingFlush {
    answer: oneshot::Receiver<Result<(), StoreError>>,
}

impl PendingFlush {
    /// A flush with nothing to wait for (a committed write is durable).
    pub(super) fn done_already() -> Self {
        let (reply, answer) = oneshot::channel();
        let _ = reply.send(Ok(()));
        Self { answer }
    }

    /// Waits for the flush.
    pub async fn done(self) -> Result<(), StoreError> {
        self.answer
            .await
            .unwrap_or(Err(StoreError::CommitterStopped))
    }
}

fn run(core: &Core, incoming: &mpsc::Receiver<Job>) {
    while let Ok(first) = incoming.recv() {
        let closes = Instant::now() + WINDOW;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let left = closes.saturating_duration_since(Instant::now());
            match incoming.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let applied: Vec<Applied> = batch
            .into_iter()
            .map(|job| match job {
                Job::Charge { order, reply } => {
                    Applied::Charge(reply, core.charge_unflushed(&order))
                }
                Job::Flush { reply } => Applied::Flush(reply),
            })
            .collect();
        // Every answer waits for the flush, replays too: a replay may have
        // found an entry written earlier in this same batch.
        let flushed = core.durable();
        for done in applied {
            // The requester may have given up (timeout); nothing to do.
            match done {
                Applied::Charge(reply, outcome) => {
                    let _ = reply.send(flushed.clone().and(outcome));
                }
                Applied::Flush(reply) => {
                    let _ = reply.send(flushed.clone());
                }
            }
        }
    }
}

/// A job whose writes are done, waiting for the batch's flush.
enum Applied {
    Charge(oneshot::Sender<Answer>, Answer),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}
