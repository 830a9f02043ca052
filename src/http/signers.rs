//! A fixed pool of signing threads pulling from one queue. When a thread
//! finishes a signature it takes the next queued job at once, instead of
//! releasing a permit that wakes an async task that hands a closure to a
//! blocking thread: on a virtual machine each of those wake-ups costs an
//! inter-processor interrupt, and the chain left the cores idle between
//! signatures.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

type Job = Box<dyn FnOnce() + Send>;

/// The pool; its threads end when the last handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct Signers {
    jobs: mpsc::Sender<Job>,
}

impl Signers {
    /// Starts `threads` signing threads (at least one).
    pub(super) fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("blindpass-sign-{i}"))
                .spawn(move || work(&queue))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on a signing thread and waits for its result; `None` if
    /// the job panicked or the pool is gone.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let boxed: Job = Box::new(move || {
            // The requester may have timed out; the result is then dropped.
            let _ = reply.send(job());
        });
        self.jobs.send(boxed).ok()?;
        answer.await.ok()
    }
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let next = {
            let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.recv()
        };
        let Ok(job) = next else { return };
        // A panicking job loses its answer (the waiter sees `None`), not
        // the thread.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_loses_its_answer_not_the_thread() {
        let pool = Signers::start(1).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await, Some(4));
        let panicked: Option<u8> = pool.run(|| panic!("job failed")).await;
        assert_eq!(panicked, None);
        // The one thread is still there to take the next job.
        assert_eq!(pool.run(|| "next").await, Some("next"));
    }
}
