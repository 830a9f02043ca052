//! Splitting the load's requests and the memory samples by the
//! destruction's window.

use std::time::{Duration, Instant};

use crate::bench::issue::Sent;
use crate::bench::spawned::MemorySample;
use crate::bench::stats::{Latencies, LatencySummary};

/// Requests of the timed phase, split by the destruction: answered before
/// the end call; in flight at any moment from the end call until the purge
/// was done; sent after that.
pub(super) struct Windows {
    pub(super) before: Slice,
    pub(super) during: Slice,
    pub(super) after: Slice,
}

/// The latencies of one window, and its failures.
pub(super) struct Slice {
    pub(super) latency: LatencySummary,
    pub(super) failed: u64,
}

pub(super) fn split(timeline: &[Sent], from: Instant, to: Instant) -> Windows {
    let mut parts: [(Latencies, u64); 3] = Default::default();
    for sent in timeline {
        let part = if sent.at + sent.latency <= from {
            0
        } else if sent.at < to {
            1
        } else {
            2
        };
        parts[part].0.push(sent.latency);
        parts[part].1 += u64::from(!sent.ok);
    }
    let [before, during, after] = parts.map(|(latencies, failed)| Slice {
        latency: latencies.summary(),
        failed,
    });
    Windows {
        before,
        during,
        after,
    }
}

/// The largest resident size sampled in `[from, to]`, MiB.
pub(super) fn peak_rss_mib(samples: &[MemorySample], from: Instant, to: Instant) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .map(|s| s.memory.rss_kib)
        .max()
        .map(mib)
}

pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::spawned::Memory;

    fn sent(at: Instant, ms: u64) -> Sent {
        Sent {
            at,
            latency: Duration::from_millis(ms),
            ok: true,
        }
    }

    #[test]
    fn requests_in_flight_during_the_destruction_fall_in_its_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let timeline = [
            sent(at(0), 10),   // answered before the call at 100
            sent(at(90), 5),   // answered at 95: before
            sent(at(95), 20),  // in flight at 100: during
            sent(at(150), 30), // inside: during
            sent(at(190), 50), // sent before the end at 200: during
            sent(at(200), 1),  // sent at the end: after
            sent(at(300), 2),  // after
        ];
        let w = split(&timeline, at(100), at(200));
        assert_eq!(w.before.latency.count, 2);
        assert_eq!(w.during.latency.count, 3);
        assert_eq!(w.after.latency.count, 2);
        assert_eq!(w.during.latency.max_ms, 50.0);
        assert_eq!(w.before.failed + w.during.failed + w.after.failed, 0);
    }

    #[test]
    fn peaks_are_taken_inside_the_window() {
        let t0 = Instant::now();
        let sample = |ms: u64, rss_kib: u64| MemorySample {
            at: t0 + Duration::from_millis(ms),
            memory: Memory {
                rss_kib,
                hwm_kib: rss_kib,
            },
        };
        let samples = [sample(0, 9000), sample(100, 2048), sample(200, 4096)];
        let within = |a: u64, b: u64| {
            peak_rss_mib(
                &samples,
                t0 + Duration::from_millis(a),
                t0 + Duration::from_millis(b),
            )
        };
        assert_eq!(within(50, 250), Some(4.0));
        assert_eq!(within(50, 150), Some(2.0));
        assert_eq!(within(300, 400), None);
    }
}
