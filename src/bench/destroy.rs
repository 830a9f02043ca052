//! `bench destroy`: a period holding N enrolled residents is destroyed, in
//! its two halves timed apart — the cryptographic destruction (intent,
//! key ring rewritten without `K_P` under a new master key, audit entries),
//! after which the records cannot be read, and the purge of the
//! ciphertexts from sled, which is hygiene. The purge rate is divided by
//! the rate at which sled removes the same number of entries one by one,
//! measured through the store on a copy of the same shape.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::people;
use super::progress::{Counters, Goal, Progress};
use super::report::Report;
use super::{BenchError, ScratchDir};
use blindpass::audit::Event;
use blindpass::clock::ManualClock;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::{Passphrase, random_32};
use blindpass::ids::{PeriodId, ResidentId};
use blindpass::issuer::{Authority, AuthorityConfig, IssuerError};
use blindpass::store::{Store, StoreConfig};
use blindpass::vault::{FaultPoint, VaultError};

/// Settings of `bench destroy`.
#[derive(Debug, Clone)]
pub struct DestroySettings {
    /// Residents enrolled in the period before it is destroyed.
    pub records: usize,
    /// Where the temporary data directories go.
    pub scratch_parent: std::path::PathBuf,
    /// No progress line.
    pub quiet: bool,
}

/// Target: the key is gone in less than this.
pub const TARGET_KEY_GONE_MS: f64 = 1000.0;
/// Target: the purge at least this share of sled's one-by-one remove rate.
pub const TARGET_PURGE_RATIO: f64 = 0.7;

/// The count of the period's `records-purged` audit entry.
fn purged_entries(authority: &Authority, period: &PeriodId) -> Result<u64, BenchError> {
    let entries = authority.journal().entries().map_err(IssuerError::from)?;
    entries
        .into_iter()
        .find_map(|e| match e.event {
            Event::RecordsPurged { period: p, entries } if p == *period => Some(entries),
            _ => None,
        })
        .ok_or_else(|| BenchError::Setup("the purge was not audited".into()))
}

/// Runs `bench destroy`.
pub fn run(settings: &DestroySettings) -> Result<Report, BenchError> {
    let n = settings.records.max(1);
    let scratch = ScratchDir::create(&settings.scratch_parent, "destroy")?;
    let start = time::OffsetDateTime::now_utc();
    let clock = ManualClock::new(start);
    let authority = Authority::init(
        &scratch.path().join("issuer"),
        &Passphrase::new(hex::encode(random_32())),
        Argon2Params::DEFAULT,
        AuthorityConfig::default(),
        Arc::new(clock.clone()),
    )?;
    // Signing keys make the key ring its real size (the ring is rewritten twice).
    authority.ensure_signing_keys()?;
    let period = authority.open_period("bench", start + time::Duration::days(1), 0)?;

    let tag = super::run_tag();
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        "setup: enrol (in-process, no password)",
        counters.clone(),
        Goal::Count(n as u64),
        settings.quiet,
    );
    let enrol_started = Instant::now();
    let mut sample_id = None;
    for i in 0..n {
        let id = authority.enrol(&period, people::personal(&tag, i), None)?;
        sample_id.get_or_insert(id);
        counters.record(true);
    }
    authority.store().flush().map_err(IssuerError::from)?;
    let enrol_elapsed = enrol_started.elapsed();
    drop(progress);
    let records = authority
        .store()
        .record_count(&period)
        .map_err(IssuerError::from)?;
    let on_disk = authority
        .store()
        .size_on_disk()
        .map_err(IssuerError::from)?;
    if let Some(id) = &sample_id {
        // The record opens before the destruction: the check after it means something.
        authority.record(&period, id)?;
    }

    // Half one: the key. Stop right before the purge, as a crash would.
    clock.advance(time::Duration::days(2));
    authority.dangerous_inject_fault(Some(FaultPoint::BeforePurge));
    let t = Instant::now();
    match authority.destroy_period(&period) {
        Err(IssuerError::Vault(VaultError::InjectedFault(FaultPoint::BeforePurge))) => {}
        Err(e) => return Err(e.into()),
        Ok(_) => {
            return Err(BenchError::Setup(
                "destruction did not stop before the purge".into(),
            ));
        }
    }
    let key_gone = t.elapsed();
    authority.dangerous_inject_fault(None);
    let unreadable = sample_id.is_none_or(|id| {
        matches!(
            authority.record(&period, &id),
            Err(IssuerError::UnknownPeriod)
        )
    });

    // Half two: the purge (the second call finds the key gone and queues
    // it; it runs in the background and audits its count when done).
    let t = Instant::now();
    authority.destroy_period(&period)?;
    authority.wait_for_purges();
    let purge = t.elapsed();
    let purged_entries = purged_entries(&authority, &period)?;
    drop(authority);

    // The reference: the same entries removed from sled one by one.
    let (raw_entries, raw_elapsed) = raw_removes(&scratch, n, &tag, settings.quiet)?;
    drop(scratch);

    let purge_rate = purged_entries as f64 / purge.as_secs_f64().max(1e-9);
    let raw_rate = raw_entries as f64 / raw_elapsed.as_secs_f64().max(1e-9);
    let mut report = Report::new(
        "destroy",
        format!("one period of {n} residents, in-process, data directory under a scratch dir"),
    );
    report.figure("records in the period", records as f64, "");
    report.figure(
        "enrolment (in-process, no Argon2)",
        n as f64 / enrol_elapsed.as_secs_f64().max(1e-9),
        "/s",
    );
    report.figure("sled size on disk", on_disk as f64 / 1_048_576.0, "MiB");
    report.figure(
        "key destroyed (intent → ring rewritten → master rotated → audit)",
        key_gone.as_secs_f64() * 1e3,
        "ms",
    );
    report.figure("sled entries purged", purged_entries as f64, "");
    report.figure("purge", purge.as_secs_f64(), "s");
    report.figure("purge rate", purge_rate, "entries/s");
    report.figure(
        "sled one-by-one removes (same entries, own db)",
        raw_rate,
        "entries/s",
    );
    report.check(
        "time until the key is gone",
        key_gone.as_secs_f64() * 1e3,
        "ms",
        TARGET_KEY_GONE_MS,
    );
    report.ratio(
        "purge rate",
        purge_rate,
        "sled one-by-one remove rate",
        raw_rate,
        Some(TARGET_PURGE_RATIO),
    );
    if !unreadable {
        report.note("WARNING: a record could still be read after the key was destroyed");
    } else {
        report.note("after the key was destroyed, reading a record failed with `unknown period`, as it must");
    }
    report.note(
        "the reference removes the same number of record and index entries (sealed records \
         of the same size) through the store, one `remove` each, then flushes once",
    );
    Ok(report)
}

/// Writes `n` sealed records and `n` index entries into a fresh store, like
/// an enrolment does, then times removing them one by one and flushing.
fn raw_removes(
    scratch: &ScratchDir,
    n: usize,
    tag: &str,
    quiet: bool,
) -> Result<(usize, Duration), BenchError> {
    let store = Store::open(&scratch.path().join("raw-sled"), StoreConfig::default())
        .map_err(IssuerError::from)?;
    let period = PeriodId::generate();
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        "setup: reference store",
        counters.clone(),
        Goal::Count(n as u64),
        quiet,
    );
    let key = random_32();
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let id = ResidentId::generate();
        let plain = serde_json::to_vec(&blindpass::issuer::ResidentRecord {
            personal: people::personal(tag, i),
            password_hash: None,
        })
        .map_err(|e| BenchError::Setup(e.to_string()))?;
        let sealed = blindpass::crypto::seal::seal(&key, id.as_bytes(), &plain)?;
        store
            .put_record(&period, &id, &sealed)
            .map_err(IssuerError::from)?;
        let index = blindpass::crypto::kdf::hmac_sha256(&key, &[id.as_bytes()]);
        store
            .index_claim(&period, &index, id.as_bytes())
            .map_err(IssuerError::from)?;
        keys.push((id, index));
        counters.record(true);
    }
    store.flush().map_err(IssuerError::from)?;
    drop(progress);
    let t = Instant::now();
    for (id, index) in &keys {
        store
            .remove_record(&period, id)
            .map_err(IssuerError::from)?;
        store
            .index_remove(&period, index)
            .map_err(IssuerError::from)?;
    }
    store.flush().map_err(IssuerError::from)?;
    Ok((2 * keys.len(), t.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_destruction_meets_its_targets_and_leaves_nothing() {
        let scratch = tempfile::tempdir().unwrap();
        let report = run(&DestroySettings {
            records: 300,
            scratch_parent: scratch.path().to_owned(),
            quiet: true,
        })
        .unwrap();
        let purged = report
            .figures
            .iter()
            .find(|f| f.what == "sled entries purged")
            .unwrap()
            .value;
        assert_eq!(purged, 600.0, "{report}");
        assert!(report.checks.iter().all(|c| c.met), "{report}");
        assert!(
            report.notes.iter().all(|n| !n.contains("WARNING")),
            "{report}"
        );
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }
}
