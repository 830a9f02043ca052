//! The purger: one thread at idle scheduling priority purges destroyed
//! periods in the background, one at a time, in the order queued. What a
//! purge does is the engine's ([`PurgeWork`]): on PostgreSQL, dropping the
//! period's partitions; on sled, what follows.
//!
//! sled's purge removes the entries of a period one by one.
//!
//! Removing entries one by one, not `Db::drop_tree`, is what bounds memory:
//! sled 0.34's `drop_tree` holds every page of the tree until its walk
//! ends, about 530 MiB for a million residents whatever the cache size.
//! One by one, each remove is a short lock-free write like any other, so
//! an idle-priority thread never sits on a lock issuance needs (sled's
//! `apply_batch` would take its global write lock per batch). The emptied
//! trees are dropped at the end, when they hold nothing.
//!
//! The purge is hygiene, not the deletion guarantee (see the module docs
//! of [`crate::store`]): the caller destroys the key first, and a purge cut
//! short by a shutdown is finished at the next start. Dropping the last
//! [`super::Store`] stops the purge after the entry in hand and waits for
//! the thread, so no report arrives after the store is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::sled_engine::{Core, tree_name};
use super::{StoreError, TreeKind};
use crate::ids::PeriodId;

/// How often a long purge reports its progress to the log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What one purge run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Entries removed by this run.
    pub entries: usize,
    /// Every entry and tree of the period is gone; `false` when a shutdown
    /// stopped the run (the next start purges the rest).
    pub complete: bool,
}

/// What a purge reports to whoever queued it, on the purge thread.
pub type PurgeDone = Box<dyn FnOnce(Result<Purged, StoreError>) + Send>;

/// One engine's purge of one period: asked `stop` before each step, with
/// the number of entries removed so far.
pub(super) type PurgeWork =
    Box<dyn Fn(&PeriodId, &dyn Fn(usize) -> bool) -> Result<Purged, StoreError> + Send>;

/// sled's purge, entry by entry (see the module docs).
pub(super) fn on_sled(core: Core) -> PurgeWork {
    Box::new(move |period, stop| purge(&core, period, stop))
}

struct Job {
    period: PeriodId,
    done: PurgeDone,
}

/// Purges queued and not yet finished, with a signal for those who wait.
#[derive(Debug, Default)]
struct Outstanding {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Outstanding {
    fn add(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn finish(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *count = count.saturating_sub(1);
        self.changed.notify_all();
    }

    fn wait_idle(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            count = self.changed.wait(count).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The sending side of the purger thread. Dropping it (with the last
/// [`super::Store`]) stops the thread after the entry it is removing and
/// waits for it; queued purges are reported as not complete.
pub(super) struct Purger {
    jobs: Option<mpsc::Sender<Job>>,
    stop: Arc<AtomicBool>,
    outstanding: Arc<Outstanding>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Purger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger").finish_non_exhaustive()
    }
}

impl Purger {
    pub(super) fn start(work: PurgeWork) -> Self {
        let (jobs, incoming) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let outstanding = Arc::new(Outstanding::default());
        let (thread_stop, thread_outstanding) = (stop.clone(), outstanding.clone());
        // If the thread cannot start, `incoming` is dropped with the closure
        // and `submit` answers every job with `PurgeThread` itself.
        let thread = std::thread::Builder::new()
            .name("blindpass-purge".into())
            .spawn(move || {
                lower_priority();
                run(&work, &incoming, &thread_stop, &thread_outstanding);
            })
            .ok();
        Self {
            jobs: Some(jobs),
            stop,
            outstanding,
            thread,
        }
    }

    pub(super) fn submit(&self, period: PeriodId, done: PurgeDone) {
        self.outstanding.add();
        let job = Job { period, done };
        let refused = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(job) = refused {
            (job.done)(Err(StoreError::PurgeThread));
            self.outstanding.finish();
        }
    }

    pub(super) fn wait_idle(&self) {
        self.outstanding.wait_idle();
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the channel ends the thread's loop once the queue is drained.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `SCHED_IDLE`: the purge gets only the CPU nothing else wants. Best
/// effort; without it the purge runs at normal priority.
fn lower_priority() {
    let _ = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Idle,
        ),
    );
}

fn run(
    work: &PurgeWork,
    incoming: &mpsc::Receiver<Job>,
    stop: &AtomicBool,
    outstanding: &Outstanding,
) {
    while let Ok(job) = incoming.recv() {
        // A panic inside the engine must not leave a waiter blocked for ever.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            work(&job.period, &|_| stop.load(Ordering::Relaxed))
        }))
        .unwrap_or(Err(StoreError::PurgeThread));
        // Nor a panic in the report: the count must still come down.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.done)(outcome)));
        outstanding.finish();
    }
}

/// Removes every entry of the period's trees, then drops the empty trees.
/// `stop` is asked before each entry, with the number removed so far.
fn purge(
    core: &Core,
    period: &PeriodId,
    stop: impl Fn(usize) -> bool,
) -> Result<Purged, StoreError> {
    let started = Instant::now();
    let mut reported = started;
    let mut removed = 0;
    for kind in TreeKind::ALL {
        let Some(tree) = core.existing_tree(period, kind)? else {
            continue;
        };
        // sled's iterators stay valid under concurrent writes; removing
        // behind the cursor never revisits a page.
        for key in tree.iter().keys() {
            if stop(removed) {
                // What was removed is durable at sled's next flush, or
                // found again by the next purge.
                return Ok(Purged {
                    entries: removed,
                    complete: false,
                });
            }
            if tree.remove(key?)?.is_some() {
                removed += 1;
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                tracing::info!(
                    period = %period,
                    removed,
                    elapsed_s = started.elapsed().as_secs(),
                    "purge in progress"
                );
            }
        }
        let name = tree_name(period, kind);
        drop(tree);
        core.forget_tree(&name);
        core.db.drop_tree(name.as_bytes())?;
        // A handle cached while the tree was being dropped would point at a
        // dead tree; forget it again.
        core.forget_tree(&name);
    }
    core.db.flush()?;
    Ok(Purged {
        entries: removed,
        complete: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ResidentId;
    use crate::store::{Store, StoreConfig};

    #[test]
    fn an_interrupted_purge_keeps_the_rest_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let p = PeriodId::generate();
        for _ in 0..50 {
            store.put_record(&p, &ResidentId::generate(), b"x").unwrap();
        }
        assert_eq!(
            purge(store.sled_core(), &p, |removed| removed == 20).unwrap(),
            Purged {
                entries: 20,
                complete: false
            }
        );
        assert_eq!(store.record_count(&p).unwrap(), 30);
        assert_eq!(store.periods_present(), vec![p]);

        assert_eq!(store.purge_period(&p).unwrap(), 30);
        assert!(store.periods_present().is_empty());
    }

    #[test]
    fn background_purges_run_in_order_and_can_be_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let periods: Vec<PeriodId> = (0..3).map(|_| PeriodId::generate()).collect();
        for (n, p) in periods.iter().enumerate() {
            for _ in 0..=n {
                store.put_record(p, &ResidentId::generate(), b"x").unwrap();
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        for p in &periods {
            let seen = seen.clone();
            store.purge_in_background(
                p,
                Box::new(move |outcome| seen.lock().unwrap().push(outcome.unwrap().entries)),
            );
        }
        store.wait_for_purges();
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
        assert!(store.periods_present().is_empty());
    }

    #[test]
    fn the_last_handle_dropped_releases_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let p = PeriodId::generate();
        store.put_record(&p, &ResidentId::generate(), b"x").unwrap();
        store.purge_period(&p).unwrap();
        drop(store);
        // The purger thread held a database handle; it lets go.
        let again = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert!(again.periods_present().is_empty());
    }
}
