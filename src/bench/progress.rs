//! A progress line on stderr: redrawn in place (`\r`) on a terminal, one
//! line every few seconds otherwise, so logs of a benchmark stay readable.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the workers have done so far.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How far along a phase is: out of a count, or out of a duration.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    Count(u64),
    Time(Duration),
}

/// A running progress line; stops (and ends its line) when dropped.
pub(crate) struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing `label` with the counters, unless `quiet`.
    pub(crate) fn start(label: &str, counters: Arc<Counters>, goal: Goal, quiet: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet {
            return Self { stop, thread: None };
        }
        let label = label.to_owned();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-progress".into())
            .spawn(move || draw(&label, &counters, goal, &flag))
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn draw(label: &str, counters: &Counters, goal: Goal, stop: &AtomicBool) {
    let terminal = std::io::stderr().is_terminal();
    let tick = if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let started = Instant::now();
    let mut last = (started, 0u64);
    let mut next_draw = started + tick;
    loop {
        let done = stop.load(Ordering::Relaxed);
        let now = Instant::now();
        if done || now >= next_draw {
            let ok = counters.ok.load(Ordering::Relaxed);
            let failed = counters.failed.load(Ordering::Relaxed);
            let elapsed = now.duration_since(started).as_secs_f64();
            let window = now.duration_since(last.0).as_secs_f64().max(1e-9);
            let current = (ok + failed).saturating_sub(last.1) as f64 / window;
            last = (now, ok + failed);
            let share = match goal {
                Goal::Count(n) if n > 0 => (ok + failed) as f64 / n as f64,
                Goal::Time(d) if !d.is_zero() => elapsed / d.as_secs_f64(),
                _ => 0.0,
            };
            let line = format!(
                "{label}: {elapsed:6.1} s  {ok:>8} ok  {failed:>6} failed  {current:>8.0}/s  {:>3.0}%",
                (share * 100.0).min(100.0)
            );
            let mut err = std::io::stderr().lock();
            let _ = if terminal {
                write!(err, "\r{line}\x1b[K")
            } else {
                writeln!(err, "{line}")
            };
            if done {
                if terminal {
                    let _ = writeln!(err);
                }
                return;
            }
            next_draw = now + tick;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
