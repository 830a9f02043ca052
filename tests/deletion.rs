//! The deletion guarantees, shown on real files: no personal data in
//! plaintext anywhere under the data directory; after a period is
//! destroyed, neither the live files nor a copy taken before can be
//! decrypted with the passphrase; crashes at each step of a destruction
//! leave a state that reopens correctly; tampering is a clean error.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use blindpass::audit::Event;
use blindpass::clock::ManualClock;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::Passphrase;
use blindpass::ids::PeriodId;
use blindpass::issuer::resident::PersonalData;
use blindpass::issuer::{Authority, AuthorityConfig, IssuerError};
use blindpass::vault::{FaultPoint, VaultError};
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};

const PASS: &str = "operator passphrase for tests";
const START: OffsetDateTime = datetime!(2026-12-01 09:00 UTC);

fn pass() -> Passphrase {
    Passphrase::new(PASS.into())
}

fn config() -> AuthorityConfig {
    AuthorityConfig {
        key_horizon_days: 0,
        ..AuthorityConfig::default()
    }
}

fn init(dir: &Path, clock: &ManualClock) -> Authority {
    Authority::init(
        dir,
        &pass(),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
        config(),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

fn reopen(dir: &Path, clock: &ManualClock) -> Authority {
    Authority::open(dir, &pass(), config(), Arc::new(clock.clone())).unwrap()
}

fn resident(marker: &str, n: usize) -> PersonalData {
    PersonalData {
        full_name: format!("{marker} Name {n}"),
        date_of_birth: date!(1980 - 01 - 01),
        document_number: format!("DOC{n:08}"),
        address: format!("{marker} Street {n}"),
        phone: format!("+7495{n:07}"),
        employer_tax_number: None,
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    hits
}

/// The entry counts of the period's `records-purged` audit entries, one per
/// purge run.
fn purge_runs(authority: &Authority, doomed: &PeriodId) -> Vec<u64> {
    authority
        .journal()
        .entries()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::RecordsPurged { period, entries } if period == *doomed => Some(entries),
            _ => None,
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn no_plaintext_canary_anywhere_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let canary = "CANARY-7f3a9c";
    {
        let authority = init(dir.path(), &clock);
        let period = authority
            .open_period("lockdown", START + Duration::days(14), 3600)
            .unwrap();
        for n in 0..50 {
            authority.enrol(&period, resident(canary, n), None).unwrap();
        }
        authority.store().flush().unwrap();
    }
    // The check can fail: a canary written in plaintext is found.
    let control = dir.path().join("control.bin");
    fs::write(&control, format!("xx{canary}xx")).unwrap();
    assert_eq!(files_containing(dir.path(), canary.as_bytes()).len(), 1);
    fs::remove_file(&control).unwrap();
    // The real check: nothing blindpass wrote contains it, nor a document number.
    assert!(files_containing(dir.path(), canary.as_bytes()).is_empty());
    assert!(files_containing(dir.path(), b"DOC00000007").is_empty());
}

#[test]
fn destruction_defeats_the_passphrase_even_on_an_old_copy() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let authority = init(dir.path(), &clock);
    let doomed = authority
        .open_period("doomed", START + Duration::days(1), 0)
        .unwrap();
    let kept = authority
        .open_period("kept", START + Duration::days(30), 0)
        .unwrap();
    let mut doomed_ids = Vec::new();
    for n in 0..20 {
        doomed_ids.push(authority.enrol(&doomed, resident("D", n), None).unwrap());
    }
    let kept_id = authority.enrol(&kept, resident("K", 99), None).unwrap();
    assert_eq!(
        authority
            .record(&doomed, &doomed_ids[0])
            .unwrap()
            .personal
            .full_name,
        "D Name 0"
    );
    authority.store().flush().unwrap();
    drop(authority);

    // An attacker's copy of everything, taken before the deadline.
    copy_dir(dir.path(), &backup.path().join("data"));

    clock.advance(Duration::days(2));
    let authority = reopen(dir.path(), &clock);
    let report = authority.destroy_period(&doomed).unwrap();
    assert_eq!(report.late_by_s, 86_400);
    assert_eq!(report.master_version, 2);
    // The purge follows in the background; its count is in the audit log.
    authority.wait_for_purges();
    let purged: u64 = purge_runs(&authority, &doomed).iter().sum();
    assert!(purged >= 40, "{purged}");
    assert!(matches!(
        authority.record(&doomed, &doomed_ids[0]),
        Err(IssuerError::UnknownPeriod)
    ));
    assert_eq!(
        authority
            .record(&kept, &kept_id)
            .unwrap()
            .personal
            .full_name,
        "K Name 99"
    );
    drop(authority);

    // Live directory, reopened with the passphrase: the key is gone.
    let authority = reopen(dir.path(), &clock);
    assert!(authority.periods().iter().all(|p| p.id != doomed));
    assert!(authority.destroyed_periods().iter().any(|p| p.id == doomed));

    // The old copy's sled data, under the live vault and the passphrase:
    // swap the live sled for the backup's, and nothing of the doomed period opens.
    drop(authority);
    fs::remove_dir_all(dir.path().join("sled")).unwrap();
    copy_dir(&backup.path().join("data/sled"), &dir.path().join("sled"));
    let authority =
        Authority::open(dir.path(), &pass(), config(), Arc::new(clock.clone())).unwrap();
    for id in &doomed_ids {
        assert!(authority.record(&doomed, id).is_err());
    }
    // The live period still decrypts from the old copy.
    assert_eq!(
        authority
            .record(&kept, &kept_id)
            .unwrap()
            .personal
            .full_name,
        "K Name 99"
    );
    // And the old copy's own vault files no longer open with the passphrase
    // plus the live master slot: its key ring was sealed under master v1.
    let old_ring = backup.path().join("data/vault/keyring.1.sealed");
    fs::copy(&old_ring, dir.path().join("vault/keyring.1.sealed")).unwrap();
    drop(authority);
    let authority = reopen(dir.path(), &clock);
    assert!(
        !dir.path().join("vault/keyring.1.sealed").exists(),
        "stale ring removed at open"
    );
    assert!(authority.record(&doomed, &doomed_ids[0]).is_err());
}

#[test]
fn a_crash_at_any_step_of_destruction_is_finished_at_restart() {
    for point in [
        FaultPoint::AfterIntent,
        FaultPoint::AfterNewRingWritten,
        FaultPoint::AfterMasterReplaced,
        FaultPoint::BeforePurge,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let authority = init(dir.path(), &clock);
        let doomed = authority
            .open_period("doomed", START + Duration::hours(1), 0)
            .unwrap();
        let kept = authority
            .open_period("kept", START + Duration::days(9), 0)
            .unwrap();
        let gone_id = authority.enrol(&doomed, resident("D", 1), None).unwrap();
        let kept_id = authority.enrol(&kept, resident("K", 2), None).unwrap();
        clock.advance(Duration::hours(2));
        authority.dangerous_inject_fault(Some(point));
        let err = authority.destroy_period(&doomed).unwrap_err();
        assert!(
            matches!(err, IssuerError::Vault(VaultError::InjectedFault(p)) if p == point),
            "{point:?}: {err:?}"
        );
        authority.store().flush().unwrap();
        drop(authority);

        // Restart: recovery finishes the destruction before anything else.
        let authority = reopen(dir.path(), &clock);
        assert!(
            authority.periods().iter().all(|p| p.id != doomed),
            "{point:?}"
        );
        assert!(authority.record(&doomed, &gone_id).is_err(), "{point:?}");
        // The purge is queued by the recovery and runs in the background.
        authority.wait_for_purges();
        assert_eq!(
            authority.store().record_count(&doomed).unwrap(),
            0,
            "{point:?}"
        );
        assert_eq!(
            authority
                .record(&kept, &kept_id)
                .unwrap()
                .personal
                .full_name,
            "K Name 2",
            "{point:?}: the live period survived"
        );
        let events = common::event_kinds(&authority);
        assert!(events.contains(&"destroy-intent".to_owned()), "{point:?}");
        assert!(
            events.contains(&"period-key-destroyed".to_owned()),
            "{point:?}"
        );
    }
}

#[test]
fn a_shutdown_during_the_purge_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let authority = init(dir.path(), &clock);
    let doomed = authority
        .open_period("doomed", START + Duration::hours(1), 0)
        .unwrap();
    for n in 0..3_000 {
        authority.enrol(&doomed, resident("D", n), None).unwrap();
    }
    clock.advance(Duration::hours(2));
    authority.destroy_period(&doomed).unwrap();
    // The destruction has answered; the purge runs in the background. Shut
    // down at once: the purge stops after the entry in hand (or has ended).
    drop(authority);

    let authority = reopen(dir.path(), &clock);
    authority.wait_for_purges();
    assert_eq!(authority.store().record_count(&doomed).unwrap(), 0);
    assert!(authority.store().periods_present().is_empty());
    // Whatever the first run removed, the log accounts for every entry:
    // 3,000 records and their 3,000 document-index entries.
    let runs = purge_runs(&authority, &doomed);
    assert_eq!(runs.iter().sum::<u64>(), 6_000, "{runs:?}");
}

#[test]
fn tampered_records_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let authority = init(dir.path(), &clock);
    let period = authority
        .open_period("p", START + Duration::days(3), 0)
        .unwrap();
    let a = authority.enrol(&period, resident("A", 1), None).unwrap();
    let b = authority.enrol(&period, resident("B", 2), None).unwrap();
    let store = authority.store();

    // A flipped bit.
    let sealed = store.record(&period, &a).unwrap().unwrap();
    let mut flipped = sealed.clone();
    flipped[30] ^= 1;
    store.put_record(&period, &a, &flipped).unwrap();
    assert!(matches!(
        authority.record(&period, &a),
        Err(IssuerError::Crypto(_))
    ));

    // A record moved to another resident's id.
    store.put_record(&period, &b, &sealed).unwrap();
    assert!(matches!(
        authority.record(&period, &b),
        Err(IssuerError::Crypto(_))
    ));

    // A record moved to another period under the same id.
    let other = authority
        .open_period("q", START + Duration::days(3), 0)
        .unwrap();
    store.put_record(&other, &a, &sealed).unwrap();
    assert!(authority.record(&other, &a).is_err());

    // Put back, it opens again: the failures above were the tampering.
    store.put_record(&period, &a, &sealed).unwrap();
    assert_eq!(
        authority.record(&period, &a).unwrap().personal.full_name,
        "A Name 1"
    );
}

#[test]
fn truncated_key_ring_and_wrong_passphrase_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    drop(init(dir.path(), &clock));
    let wrong = Authority::open(
        dir.path(),
        &Passphrase::new("not it".into()),
        config(),
        Arc::new(clock.clone()),
    )
    .unwrap_err();
    assert!(matches!(
        wrong,
        IssuerError::Vault(VaultError::WrongPassphrase)
    ));
    let ring = dir.path().join("vault/keyring.1.sealed");
    let bytes = fs::read(&ring).unwrap();
    fs::write(&ring, &bytes[..bytes.len() - 7]).unwrap();
    let err = Authority::open(dir.path(), &pass(), config(), Arc::new(clock.clone())).unwrap_err();
    assert!(
        matches!(err, IssuerError::Vault(VaultError::Corrupt(_))),
        "{err:?}"
    );
}

#[test]
fn duplicate_documents_are_refused_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let authority = init(dir.path(), &clock);
    let period = authority
        .open_period("p", START + Duration::days(3), 0)
        .unwrap();
    authority.enrol(&period, resident("A", 1), None).unwrap();
    let mut again = resident("B", 1);
    again.document_number = "doc 0000-0001".into();
    assert!(matches!(
        authority.enrol(&period, again, None),
        Err(IssuerError::DuplicateDocument)
    ));
    let unknown = PeriodId::generate();
    assert!(matches!(
        authority.enrol(&unknown, resident("C", 3), None),
        Err(IssuerError::UnknownPeriod)
    ));
}
