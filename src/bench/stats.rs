//! Latency percentiles and error tallies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Latencies of one phase, in microseconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies {
    micros: Vec<u32>,
}

impl Latencies {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            micros: Vec::with_capacity(n),
        }
    }

    pub(crate) fn push(&mut self, elapsed: Duration) {
        self.micros
            .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
    }

    pub(crate) fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    pub(crate) fn summary(mut self) -> LatencySummary {
        self.micros.sort_unstable();
        let n = self.micros.len();
        let at = |q: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            // Nearest rank: the smallest value with at least q of the
            // samples at or below it.
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(self.micros[rank - 1]) / 1000.0
        };
        let mean_ms = if n == 0 {
            0.0
        } else {
            self.micros.iter().map(|&m| f64::from(m)).sum::<f64>() / n as f64 / 1000.0
        };
        LatencySummary {
            count: n as u64,
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            mean_ms,
        }
    }
}

/// Percentiles of a phase's latencies (nearest rank), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Requests measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Failed requests, by kind (`503 timeout`, `429 rate-limited`, `network: io`, …).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ErrorTally(BTreeMap<String, u64>);

impl ErrorTally {
    pub(crate) fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_insert(0) += 1;
    }

    pub(crate) fn merge(&mut self, other: ErrorTally) {
        for (kind, n) in other.0 {
            *self.0.entry(kind).or_insert(0) += n;
        }
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Kinds and counts, by kind.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, n)| (k.as_str(), *n))
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `kind × count, kind × count, …`, by kind.
impl std::fmt::Display for ErrorTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (kind, n)) in self.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{kind} × {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=100u64 {
            l.push(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(Latencies::default().summary().p99_ms, 0.0);
    }

    #[test]
    fn tallies_merge() {
        let mut a = ErrorTally::default();
        a.add("503 timeout");
        let mut b = ErrorTally::default();
        b.add("503 timeout");
        b.add("network: io");
        a.merge(b);
        assert_eq!(a.total(), 3);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![("503 timeout", 2), ("network: io", 1)]
        );
        assert_eq!(a.to_string(), "503 timeout × 2, network: io × 1");
        assert_eq!(ErrorTally::default().to_string(), "");
    }
}
