//! Prometheus metrics: counts and latency histograms, labelled only by
//! route template and status class — never by anything a resident sent.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum_s: f64,
    buckets: [u64; BUCKETS_S.len()],
}

/// Request counters and latency histograms.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<std::collections::BTreeMap<(String, u16), Series>>,
    counters: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Records one request on a route template with its status and latency.
    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let entry = series.entry((route.to_owned(), status)).or_default();
        let secs = elapsed.as_secs_f64();
        entry.count += 1;
        entry.sum_s += secs;
        for (i, bound) in BUCKETS_S.iter().enumerate() {
            if secs <= *bound {
                entry.buckets[i] += 1;
            }
        }
    }

    /// Adds one to a named event counter (e.g. passes issued).
    pub fn incr(&self, name: &'static str) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# TYPE blindpass_http_request_duration_seconds histogram\n");
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), s) in series.iter() {
            for (i, bound) in BUCKETS_S.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "blindpass_http_request_duration_seconds_bucket{{route=\"{route}\",status=\"{status}\",le=\"{bound}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "blindpass_http_request_duration_seconds_bucket{{route=\"{route}\",status=\"{status}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "blindpass_http_request_duration_seconds_sum{{route=\"{route}\",status=\"{status}\"}} {}",
                s.sum_s
            );
            let _ = writeln!(
                out,
                "blindpass_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        drop(series);
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in counters.iter() {
            let _ = writeln!(out, "# TYPE blindpass_{name}_total counter");
            let _ = writeln!(out, "blindpass_{name}_total {value}");
        }
        out
    }
}
