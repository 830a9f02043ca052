//! The committer: one thread applies quota charges in arrival order and
//! flushes once per batch. While it flushes, new orders queue; the next
//! batch takes all of them. So the flush rate follows the disk, not the
//! request rate, and no request holds a thread (or an RSA permit) while it
//! waits for the disk.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{Charge, ChargeOrder, Core, StoreError};

/// Most orders applied under one flush: bounds how long the first order of
/// a burst waits for the last.
const MAX_BATCH: usize = 512;

type Answer = Result<Charge, StoreError>;

struct Job {
    order: ChargeOrder,
    reply: oneshot::Sender<Answer>,
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
        let _ = self.jobs.send(Job { order, reply });
        PendingCharge { answer }
    }
}

/// A charge handed to the committer; its outcome arrives after the flush
/// that made it durable.
#[derive(Debug)]
pub struct PendingCharge {
    answer: oneshot::Receiver<Answer>,
}

impl PendingCharge {
    /// Waits for the outcome.
    pub async fn outcome(self) -> Answer {
        self.answer
            .await
            .unwrap_or(Err(StoreError::CommitterStopped))
    }
}

fn run(core: &Core, incoming: &mpsc::Receiver<Job>) {
    while let Ok(first) = incoming.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcomes: Vec<Answer> = batch
            .iter()
            .map(|job| core.charge_unflushed(&job.order))
            .collect();
        // Every answer waits for the flush, replays too: a replay may have
        // found an entry written earlier in this same batch.
        let flushed = core.durable();
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            let answer = match &flushed {
                Ok(()) => outcome,
                Err(e) => Err(e.clone()),
            };
            // The requester may have given up (timeout); nothing to do.
            let _ = job.reply.send(answer);
        }
    }
}
