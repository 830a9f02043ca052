//! Where the CPU went during a phase (Linux `/proc` only): how busy the
//! whole machine was, and how much of it this process's threads used,
//! grouped by thread name. Both are read as ticks and turned into shares
//! of the same interval, so the tick length never matters.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// Non-idle and total ticks of all CPUs together (`/proc/stat`).
    busy: u64,
    total: u64,
    /// Thread id → (thread-name group, utime + stime ticks) for each of
    /// this process's threads. Kept per thread, not per group: a thread
    /// that was just joined can linger in `/proc` for a moment, and must
    /// not be subtracted from its successors of the same name.
    threads: BTreeMap<u32, (String, u64)>,
}

/// CPU use between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Share of all cores that was busy (any process), 0..1.
    pub machine_busy: f64,
    /// Cores' worth of CPU used by each group of this process's threads.
    pub cores_by_thread_group: BTreeMap<String, f64>,
    /// Cores' worth of CPU used by everything else on the machine (other
    /// processes, the kernel's own threads): how disturbed the run was.
    pub others_cores: f64,
}

/// Reads the counters, or `None` where `/proc` is not available.
pub(crate) fn snapshot() -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let mut threads = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((name, ticks)) = thread_ticks(&text) {
            threads.insert(tid, (group(&name), ticks));
        }
    }
    Some(Snapshot {
        busy: total.saturating_sub(idle),
        total,
        threads,
    })
}

/// `(comm, utime + stime)` from a `/proc/<pid>/task/<tid>/stat` line.
fn thread_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    // Fields after the name start at field 3 (state); utime and stime are
    // fields 14 and 15.
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Thread names without their trailing numbers (`bench-client-3` → `bench-client`).
fn group(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '#')
        .to_owned()
}

/// The use between `before` and `after`, over `cores` CPUs.
pub(crate) fn between(before: &Snapshot, after: &Snapshot, cores: usize) -> CpuUse {
    let total = after.total.saturating_sub(before.total).max(1) as f64;
    let busy = after.busy.saturating_sub(before.busy) as f64;
    // A thread born during the interval counts from zero; one that died
    // during it is lost (its counters left with it).
    let mut cores_by_thread_group: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, ticks)) in &after.threads {
        let earlier = match before.threads.get(tid) {
            Some((same, t)) if same == name => *t,
            _ => 0,
        };
        *cores_by_thread_group.entry(name.clone()).or_insert(0.0) +=
            ticks.saturating_sub(earlier) as f64 / total * cores as f64;
    }
    let ours: f64 = cores_by_thread_group.values().sum();
    let machine_busy = busy / total;
    CpuUse {
        machine_busy,
        cores_by_thread_group: cores_by_thread_group
            .into_iter()
            .filter(|(_, used)| *used >= 0.005)
            .collect(),
        others_cores: (machine_busy * cores as f64 - ours).max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_stat_lines_parse() {
        let line = "4242 (bench-client-1) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(thread_ticks(line), Some(("bench-client-1".to_owned(), 175)));
        // Names may hold spaces and parentheses.
        let line = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 3 4 0 0";
        assert_eq!(thread_ticks(line), Some(("a (b) c".to_owned(), 7)));
        assert_eq!(group("bench-client-12"), "bench-client");
        assert_eq!(group("tokio-runtime-worker"), "tokio-runtime-worker");
    }

    #[test]
    fn shares_are_of_the_interval() {
        let before = Snapshot {
            busy: 100,
            total: 400,
            threads: BTreeMap::from([
                (1, ("server".to_owned(), 10)),
                // Joined and lingering: must not be subtracted from thread 3.
                (2, ("client".to_owned(), 500)),
            ]),
        };
        let after = Snapshot {
            busy: 250,
            total: 600,
            threads: BTreeMap::from([
                (1, ("server".to_owned(), 110)),
                (3, ("client".to_owned(), 20)),
            ]),
        };
        let used = between(&before, &after, 2);
        assert!((used.machine_busy - 0.75).abs() < 1e-9);
        assert!((used.cores_by_thread_group["server"] - 1.0).abs() < 1e-9);
        assert!((used.cores_by_thread_group["client"] - 0.2).abs() < 1e-9);
        assert!((used.others_cores - 0.3).abs() < 1e-9);
    }
}
