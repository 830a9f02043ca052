//! What a benchmark prints: figures, ratios against their limits (with the
//! target ratio and whether it was met), absolute checks, latency
//! percentiles and failures by kind — as a table, or as JSON.

use std::fmt;

use serde::Serialize;

use super::Machine;
use super::cpu::CpuUse;
use super::stats::{ErrorTally, LatencySummary};

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured.
    pub what: String,
    /// The value.
    pub value: f64,
    /// Its unit (`/s`, `ms`, `entries`, …).
    pub unit: String,
}

/// A figure divided by the limit it is compared with, both from this run.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// The figure.
    pub what: String,
    /// Its value.
    pub value: f64,
    /// The limit.
    pub limit_what: String,
    /// The limit's value.
    pub limit: f64,
    /// `value / limit`.
    pub ratio: f64,
    /// The ratio the figure should reach, if there is a target.
    pub target: Option<f64>,
    /// Whether `ratio >= target`.
    pub met: Option<bool>,
}

/// A figure checked against an absolute bound.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The figure.
    pub what: String,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The bound the value must stay at or under.
    pub at_most: f64,
    /// Whether it did.
    pub met: bool,
}

/// Latency percentiles of a named phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseLatency {
    /// The phase.
    pub phase: String,
    /// Its percentiles.
    pub latency: LatencySummary,
}

/// Everything one mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The mode (`issue`, `enrol`, …).
    pub mode: String,
    /// The setup in a line: target, concurrency, durations.
    pub setup: String,
    /// Where it ran.
    pub machine: Machine,
    /// The figures.
    pub figures: Vec<Figure>,
    /// Figures against the limits measured in the same run.
    pub ratios: Vec<Ratio>,
    /// Figures against absolute bounds.
    pub checks: Vec<Check>,
    /// Latency percentiles per phase.
    pub latencies: Vec<PhaseLatency>,
    /// Failed requests by kind, per phase.
    pub errors: Vec<(String, ErrorTally)>,
    /// CPU use during the timed phase, where it could be read.
    pub cpu: Option<CpuUse>,
    /// What a reader needs to interpret the figures.
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report of `mode`.
    pub fn new(mode: &str, setup: String) -> Self {
        Self {
            mode: mode.to_owned(),
            setup,
            machine: Machine::detect(),
            figures: Vec::new(),
            ratios: Vec::new(),
            checks: Vec::new(),
            latencies: Vec::new(),
            errors: Vec::new(),
            cpu: None,
            notes: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn figure(&mut self, what: impl Into<String>, value: f64, unit: &str) {
        self.figures.push(Figure {
            what: what.into(),
            value,
            unit: unit.to_owned(),
        });
    }

    /// Adds `value / limit`, with an optional target ratio.
    pub fn ratio(
        &mut self,
        what: impl Into<String>,
        value: f64,
        limit_what: impl Into<String>,
        limit: f64,
        target: Option<f64>,
    ) {
        let ratio = if limit > 0.0 { value / limit } else { 0.0 };
        self.ratios.push(Ratio {
            what: what.into(),
            value,
            limit_what: limit_what.into(),
            limit,
            ratio,
            target,
            met: target.map(|t| ratio >= t),
        });
    }

    /// Adds an absolute check `value <= at_most`.
    pub fn check(&mut self, what: impl Into<String>, value: f64, unit: &str, at_most: f64) {
        self.checks.push(Check {
            what: what.into(),
            value,
            unit: unit.to_owned(),
            at_most,
            met: value <= at_most,
        });
    }

    /// Adds a phase's percentiles.
    pub fn latency(&mut self, phase: impl Into<String>, latency: LatencySummary) {
        self.latencies.push(PhaseLatency {
            phase: phase.into(),
            latency,
        });
    }

    /// Adds a phase's failures (also when there were none).
    pub fn errors(&mut self, phase: impl Into<String>, errors: ErrorTally) {
        self.errors.push((phase.into(), errors));
    }

    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Whether every target and check with a verdict was met (the
    /// command prints the verdicts; only the tests ask for the sum).
    #[cfg(test)]
    pub fn all_met(&self) -> bool {
        self.ratios.iter().all(|r| r.met != Some(false)) && self.checks.iter().all(|c| c.met)
    }
}

/// A number with few significant digits, for tables.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || (v.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.starts_with('/') || unit.is_empty() {
        format!("{}{unit}", num(v))
    } else {
        format!("{} {unit}", num(v))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "blindpass bench {} — {}", self.mode, self.setup)?;
        writeln!(
            f,
            "machine: {} cores, {}, Linux {}",
            self.machine.cores, self.machine.cpu, self.machine.kernel
        )?;
        if !self.figures.is_empty() {
            writeln!(f)?;
            let w = self.figures.iter().map(|x| x.what.len()).max().unwrap_or(0);
            for x in &self.figures {
                writeln!(f, "  {:<w$}  {:>14}", x.what, with_unit(x.value, &x.unit))?;
            }
        }
        if !self.latencies.is_empty() {
            writeln!(f)?;
            let w = self
                .latencies
                .iter()
                .map(|x| x.phase.len())
                .max()
                .unwrap_or(0)
                .max(5);
            writeln!(
                f,
                "  {:<w$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                "latency (ms)", "count", "p50", "p95", "p99", "max", "mean"
            )?;
            for x in &self.latencies {
                let l = &x.latency;
                writeln!(
                    f,
                    "  {:<w$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                    x.phase,
                    l.count,
                    num(l.p50_ms),
                    num(l.p95_ms),
                    num(l.p99_ms),
                    num(l.max_ms),
                    num(l.mean_ms)
                )?;
            }
        }
        if !self.ratios.is_empty() {
            writeln!(f)?;
            for r in &self.ratios {
                let verdict = match (r.target, r.met) {
                    (Some(t), Some(true)) => format!("  target ≥ {t:.2}: met"),
                    (Some(t), _) => format!("  target ≥ {t:.2}: NOT MET"),
                    _ => String::new(),
                };
                writeln!(
                    f,
                    "  {} {} / {} {} = {:.3}{verdict}",
                    r.what,
                    num(r.value),
                    r.limit_what,
                    num(r.limit),
                    r.ratio
                )?;
            }
        }
        if !self.checks.is_empty() {
            writeln!(f)?;
            for c in &self.checks {
                writeln!(
                    f,
                    "  {} = {} (bound ≤ {}): {}",
                    c.what,
                    with_unit(c.value, &c.unit),
                    with_unit(c.at_most, &c.unit),
                    if c.met { "met" } else { "NOT MET" }
                )?;
            }
        }
        if let Some(cpu) = &self.cpu {
            writeln!(f)?;
            write!(
                f,
                "  CPU during the timed phase: machine {:.0}% busy",
                cpu.machine_busy * 100.0
            )?;
            let groups: Vec<String> = cpu
                .cores_by_thread_group
                .iter()
                .map(|(name, cores)| format!("{name} {cores:.2}"))
                .collect();
            if !groups.is_empty() {
                write!(f, "; this process, cores by thread: {}", groups.join(", "))?;
            }
            writeln!(f, "; everything else: {:.2} cores", cpu.others_cores)?;
        }
        if !self.errors.is_empty() {
            writeln!(f)?;
            for (phase, errors) in &self.errors {
                if errors.is_empty() {
                    writeln!(f, "  failures ({phase}): none")?;
                } else {
                    writeln!(f, "  failures ({phase}): {} — {errors}", errors.total())?;
                }
            }
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            for n in &self.notes {
                writeln!(f, "  note: {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_checks_carry_their_verdicts() {
        let mut r = Report::new("test", "nothing".into());
        r.ratio("a", 90.0, "b", 100.0, Some(0.85));
        r.ratio("c", 80.0, "d", 100.0, Some(0.85));
        r.ratio("e", 1.0, "f", 0.0, None);
        r.check("p99", 40.0, "ms", 50.0);
        assert_eq!(r.ratios[0].met, Some(true));
        assert_eq!(r.ratios[1].met, Some(false));
        assert_eq!(r.ratios[2].met, None);
        assert!(r.checks[0].met);
        assert!(!r.all_met());
        let text = r.to_string();
        assert!(text.contains("= 0.900  target ≥ 0.85: met"), "{text}");
        assert!(text.contains("NOT MET"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ratios"][0]["ratio"], 0.9);
    }
}
