//! Auto-expiry with an injected clock: a period ends, one scheduler tick
//! later its key is gone and its records are unreadable; a deadline that
//! passes while the service is down is met before the first request; a
//! clock that moves backwards changes nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use blindpass::audit::Event;
use blindpass::clock::ManualClock;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::Passphrase;
use blindpass::issuer::resident::PersonalData;
use blindpass::issuer::{Authority, AuthorityConfig, IssuerError};
use common::{ADMIN, START, TestServer};
use time::Duration;
use time::macros::date;

fn resident(canary: &str, n: usize) -> PersonalData {
    PersonalData {
        full_name: format!("{canary} {n}"),
        date_of_birth: date!(1970 - 02 - 03),
        document_number: format!("EXP{n:07}"),
        address: format!("{canary} road {n}"),
        phone: "+74950000000".into(),
        employer_tax_number: None,
    }
}

#[test]
fn a_thousand_residents_are_gone_one_tick_after_the_deadline() {
    let server = TestServer::start();
    let authority = server.authority.clone();
    let period = authority.current_period().unwrap();
    let canary = "EXPIRY-CANARY-51c2";
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..1000 {
        ids.push(authority.enrol(&period, resident(canary, n), None).unwrap());
    }
    let enrol_time = started.elapsed();
    // Some residents use the service for real, too.
    server.enrol("HTTP0001", None);
    let session = server.login("HTTP0001");
    server.obtain(&session, "personal", "2026-12-02").1.unwrap();
    authority.store().flush().unwrap();

    // The operator ends the period; the grace (1 h) then passes.
    let (status, _) = server.post_json(
        &format!("/v1/admin/periods/{period}/end"),
        &serde_json::json!({}),
        Some(ADMIN),
    );
    assert_eq!(status, 200);
    assert!(
        authority.record(&period, &ids[0]).is_ok(),
        "still inside the grace"
    );
    server
        .clock
        .advance(Duration::hours(1) + Duration::seconds(1));

    // A real tokio-cron-scheduler job, ticking every second.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let destroyed_after = rt.block_on(async {
        let _scheduler = blindpass::scheduler::start(authority.clone(), "* * * * * *")
            .await
            .unwrap();
        let t0 = Instant::now();
        // The key goes first; the purge of its sled data (and its audit
        // entry) follows it.
        let purged_logged =
            || {
                authority.journal().entries().unwrap().iter().any(
                    |e| matches!(&e.event, Event::RecordsPurged { period: p, .. } if *p == period),
                )
            };
        while authority.period_info(&period).is_some() || !purged_logged() {
            assert!(
                t0.elapsed() < StdDuration::from_secs(10),
                "no tick destroyed the period"
            );
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
        t0.elapsed()
    });
    eprintln!(
        "enrolled 1000 in {enrol_time:?}; destroyed within {destroyed_after:?} of the scheduler start"
    );

    assert!(matches!(
        authority.record(&period, &ids[0]),
        Err(IssuerError::UnknownPeriod)
    ));
    assert_eq!(authority.store().record_count(&period).unwrap(), 0);
    let entries = authority.journal().entries().unwrap();
    let destroyed = entries
        .iter()
        .find_map(|e| match &e.event {
            Event::PeriodKeyDestroyed {
                period: p,
                late_by_s,
                ..
            } if *p == period => Some(*late_by_s),
            _ => None,
        })
        .expect("the audit log shows the destruction");
    assert!((0..=5).contains(&destroyed), "late by {destroyed} s");
    assert!(entries.iter().any(|e| matches!(&e.event, Event::RecordsPurged { period: p, entries } if *p == period && *entries >= 1000)));
    assert!(server.stored_files_containing(canary.as_bytes()).is_empty());
    // The session died with the period.
    assert_eq!(
        server
            .obtain(&session, "medical", "2026-12-02")
            .1
            .unwrap_err(),
        401
    );
}

#[test]
fn a_deadline_missed_while_down_is_met_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let pass = Passphrase::new("operator".into());
    let period = {
        let authority = Authority::init(
            dir.path(),
            &pass,
            Argon2Params::INSECURE_FAST_FOR_TESTS,
            AuthorityConfig::default(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        let period = authority
            .open_period("short", START + Duration::hours(1), 60)
            .unwrap();
        authority.enrol(&period, resident("DOWN", 1), None).unwrap();
        period
    };
    // Down for a day.
    clock.advance(Duration::days(1));
    let authority = Authority::open(
        dir.path(),
        &pass,
        AuthorityConfig::default(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert!(
        authority.period_info(&period).is_some(),
        "opening alone does not destroy"
    );
    // What `serve` does before it binds its listener:
    let report = authority
        .destroy_due(blindpass::scheduler::VERIFIER_SKEW)
        .unwrap();
    assert_eq!(report.destroyed.len(), 1);
    assert_eq!(report.destroyed[0].late_by_s, 86_400 - 3600 - 60);
    assert!(authority.period_info(&period).is_none());
}

#[test]
fn a_clock_that_moves_backwards_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let authority = Authority::init(
        dir.path(),
        &Passphrase::new("operator".into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
        AuthorityConfig::default(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let period = authority
        .open_period("p", START + Duration::hours(2), 0)
        .unwrap();
    clock.advance(Duration::hours(1));
    assert!(
        authority
            .destroy_due(Duration::ZERO)
            .unwrap()
            .destroyed
            .is_empty()
    );
    clock.advance(Duration::hours(-3));
    let report = authority.destroy_due(Duration::ZERO).unwrap();
    assert!(report.clock_went_backwards);
    assert!(authority.period_info(&period).is_some());
    // Extending is refused after the deadline, and allowed before it.
    clock.set(START + Duration::hours(1));
    authority
        .extend_period(&period, START + Duration::hours(5))
        .unwrap();
    clock.set(START + Duration::hours(6));
    assert!(
        authority
            .extend_period(&period, START + Duration::hours(9))
            .is_err()
    );
    let report = authority.destroy_due(Duration::ZERO).unwrap();
    assert_eq!(report.destroyed.len(), 1);
    assert_eq!(report.destroyed[0].late_by_s, 3600);
}
