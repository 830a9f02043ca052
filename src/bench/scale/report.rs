//! The report of `bench scale`: figures in the order of the run (set-up,
//! start, load, destruction), the three targets, and notes.

use std::time::{Duration, Instant};

use super::analysis::{mib, ms, peak_rss_mib, split};
use super::destruction::{Destruction, PURGE_WITHIN, ServerTimes};
use super::setup::Filled;
use super::{
    CLASS, SAMPLE_EVERY, ScaleSettings, TARGET_RSS_MIB, TARGET_STALL_RATIO, TARGET_START_S,
};
use crate::bench::cores;
use crate::bench::enrol::Sessions;
use crate::bench::issue::TimedRun;
use crate::bench::report::Report;
use crate::bench::spawned::{Memory, MemorySample};
use crate::bench::stats::ErrorTally;

/// Everything the run measured, for the report.
pub(super) struct Measured {
    pub(super) filled: Filled,
    pub(super) lock_released: bool,
    pub(super) start_time: Duration,
    pub(super) at_ready: Memory,
    pub(super) before_load: Memory,
    pub(super) sessions: Sessions,
    pub(super) issued: TimedRun,
    pub(super) destruction: Destruction,
    pub(super) samples: Vec<MemorySample>,
    pub(super) server_log: Result<ServerTimes, String>,
    pub(super) checked: usize,
    pub(super) answered: usize,
}

pub(super) fn report(settings: &ScaleSettings, m: &Measured) -> Report {
    let mut report = Report::new(
        "scale",
        format!(
            "`blindpass serve` as a child process (sled cache {} MiB, rate limit raised), {} \
             residents + {} in a doomed period, {} logging in, class {CLASS}, {} client \
             threads, {} s timed after {} s warm-up, doomed period ended {} s into it",
            settings.cache_mib,
            settings.residents,
            settings.doomed,
            settings.with_passwords,
            settings.concurrency,
            settings.duration.as_secs_f64(),
            settings.warmup.as_secs_f64(),
            settings.end_after.as_secs_f64(),
        ),
    );
    report_setup(&mut report, settings, &m.filled);
    report_start(&mut report, m);
    report_load(&mut report, m);
    report_destruction(&mut report, m);
    report_notes(&mut report, m);
    report
}

fn report_setup(report: &mut Report, settings: &ScaleSettings, filled: &Filled) {
    let enrolled = (settings.residents + settings.doomed).max(1) as f64;
    report.figure("residents, current period", settings.residents as f64, "");
    report.figure(
        "… of them with a password (log in over HTTP)",
        settings.with_passwords as f64,
        "",
    );
    report.figure("residents, doomed period", settings.doomed as f64, "");
    report.figure(
        "set-up: enrolment in-process (untimed)",
        filled.enrol_rate,
        "/s",
    );
    report.figure("set-up: enrolment took", filled.elapsed.as_secs_f64(), "s");
    report.figure(
        "sled size on disk, both periods (sled's figure)",
        filled.sled_bytes as f64 / 1_048_576.0,
        "MiB",
    );
    report.figure(
        "sled size on disk per resident (sled's figure)",
        filled.sled_bytes as f64 / enrolled,
        "B",
    );
    report.figure(
        "sled directory, allocated blocks per resident",
        filled.sled_allocated as f64 / enrolled,
        "B",
    );
}

fn report_start(report: &mut Report, m: &Measured) {
    let start_s = m.start_time.as_secs_f64();
    report.figure("start: spawn → first GET /healthz 200", start_s, "s");
    report.figure(
        "RSS at the first healthy answer",
        mib(m.at_ready.rss_kib),
        "MiB",
    );
    report.check("start time", start_s, "s", TARGET_START_S);
}

fn report_load(report: &mut Report, m: &Measured) {
    let run = &m.issued;
    report.figure("logins over HTTP (set-up)", m.sessions.login.rate(), "/s");
    report.figure(
        "RSS after the logins, before the load",
        mib(m.before_load.rss_kib),
        "MiB",
    );
    report.figure("passes issued (timed phase)", run.ok as f64, "");
    report.figure("passes/s", run.rate(), "/s");
    let load_from = run.timed_from;
    let called = m.destruction.called_at;
    if let Some(peak) = peak_rss_mib(&m.samples, load_from, called) {
        report.figure(
            "peak RSS sampled, under load before the end call",
            peak,
            "MiB",
        );
    }
    if let Some(peak) = peak_rss_mib(&m.samples, called, m.destruction.done_at()) {
        report.figure("peak RSS sampled, during the destruction", peak, "MiB");
    }
    if let Some(peak) = peak_rss_mib(
        &m.samples,
        load_from,
        m.destruction.done_at().max(load_from),
    ) {
        report.figure(
            "RSS growth under load (peak sampled − RSS before the load)",
            peak - mib(m.before_load.rss_kib),
            "MiB",
        );
    }
    let hwm = m.samples.last().map_or(0, |s| s.memory.hwm_kib);
    report.figure("VmHWM: peak RSS over the server's life", mib(hwm), "MiB");
    report.check("peak RSS (VmHWM)", mib(hwm), "MiB", TARGET_RSS_MIB);
    report.latency("issue (timed phase)", run.latency);
    report.errors("setup: log in", m.sessions.login.errors.clone());
    report.errors("issue", run.errors.clone());
}

fn report_destruction(report: &mut Report, m: &Measured) {
    let d = &m.destruction;
    let since_call = |t: Instant| ms(t.saturating_duration_since(d.called_at));
    report.figure("end call answered after", since_call(d.answered_at), "ms");
    if let Some(t) = d.listed_at {
        report.figure(
            "end call → admin list shows it destroyed",
            since_call(t),
            "ms",
        );
    }
    if let Some(t) = d.purged_at {
        report.figure("end call → purge done (audit log)", since_call(t), "ms");
    }
    if let Ok(times) = &m.server_log {
        if let (Some(ended), Some(gone)) = (times.ended, times.key_destroyed) {
            report.figure(
                "server log: period-ended → period-key-destroyed",
                (gone - ended).as_seconds_f64() * 1e3,
                "ms",
            );
        }
        if let (Some(ended), Some((purged, entries))) = (times.ended, times.purged) {
            report.figure(
                "server log: period-ended → records-purged",
                (purged - ended).as_seconds_f64() * 1e3,
                "ms",
            );
            report.figure("server log: entries purged", entries as f64, "");
        }
    }
    let w = split(&m.issued.timeline, d.called_at, d.done_at());
    report.latency("before the end call", w.before.latency);
    report.latency("during the destruction", w.during.latency);
    report.latency("after the destruction", w.after.latency);
    if let Some(listed) = d.listed_at.filter(|t| *t < d.done_at()) {
        // Which half stalls issuance: the key (vault) or the purge (sled).
        // A request in flight across the boundary counts in both.
        let key = split(&m.issued.timeline, d.called_at, listed).during;
        let purge = split(&m.issued.timeline, listed, d.done_at()).during;
        report.latency("… until listed destroyed (key)", key.latency);
        report.latency("… from then until purged", purge.latency);
    }
    if w.before.latency.count > 0 && w.during.latency.count > 0 {
        report.check(
            "p99 during the destruction ÷ p99 before it",
            w.during.latency.p99_ms / w.before.latency.p99_ms.max(1e-9),
            "×",
            TARGET_STALL_RATIO,
        );
    } else {
        report.note(
            "the stall could not be measured: no timed request was answered before the end \
             call, or none was in flight during the destruction",
        );
    }
    if w.before.latency.count > 0 && w.after.latency.count > 0 {
        // Not part of the target, but the purge's aftermath can stall too.
        report.ratio(
            "p99 after the destruction",
            w.after.latency.p99_ms,
            "p99 before the end call",
            w.before.latency.p99_ms,
            None,
        );
    }
    let failed = [&w.before, &w.during, &w.after].map(|s| s.failed);
    if failed.iter().any(|&f| f > 0) {
        report.note(format!(
            "failed requests before / during / after the destruction: {} / {} / {}",
            failed[0], failed[1], failed[2]
        ));
    }
    if let Err(kind) = &d.answer {
        let mut tally = ErrorTally::default();
        tally.add(kind.clone());
        report.errors("end call", tally);
    }
}

fn report_notes(report: &mut Report, m: &Measured) {
    let d = &m.destruction;
    match (&m.server_log, d.purged_at) {
        (Ok(t), Some(_)) if t.purged.is_some() => report.note(
            "the doomed period was destroyed: the admin API lists it destroyed and the \
             verified audit log holds its records-purged entry",
        ),
        (Err(e), _) => report.note(format!("WARNING: the server's audit log: {e}")),
        _ => report.note(format!(
            "WARNING: the doomed period's purge did not show in the audit log within {} s",
            PURGE_WITHIN.as_secs()
        )),
    }
    let load_end = m.issued.timed_from + m.issued.elapsed;
    if d.done_at() > load_end {
        report.note(format!(
            "the destruction outlasted the load by {:.1} s: its window holds only the \
             requests until the load ended (pass a longer --duration-s)",
            d.done_at().duration_since(load_end).as_secs_f64()
        ));
    }
    report.note(
        "a request counts in the destruction's window if it was in flight at any moment from \
         the end call until the purge was done; p99 before uses those answered before the call",
    );
    report.note(
        "period-key-destroyed carries the time the key was gone; the tombstone in the key ring \
         (written by the same commit that drops the key) carries the time the destruction began",
    );
    report.note(format!(
        "RSS sampled every {} ms from /proc/<pid>/status; VmHWM is the kernel's exact peak, \
         start-up included",
        SAMPLE_EVERY.as_millis()
    ));
    report.note(format!(
        "{} of {} sampled answers finalized into tokens that verify",
        m.checked, m.answered
    ));
    if let Some(note) = m.issued.ran_out_note() {
        report.note(note);
    }
    if !m.lock_released {
        report.note(
            "WARNING: sled's lock on the data directory was still held when the server was \
             started; the start time includes waiting for it",
        );
    }
    report.note(format!(
        "the load generator shares this machine's {} cores with the server",
        cores()
    ));
}
