//! Enrols N residents into one period, then destroys it, timing the two
//! halves separately: the cryptographic destruction (key gone, master
//! rotated) and the purge of the ciphertexts from sled.
//! `cargo run --release --example destroy_at_scale -- 100000`

use std::sync::Arc;
use std::time::Instant;

use blindpass::clock::ManualClock;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::Passphrase;
use blindpass::issuer::resident::PersonalData;
use blindpass::issuer::{Authority, AuthorityConfig};
use time::macros::{date, datetime};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let start = datetime!(2026-12-01 09:00 UTC);
    let clock = ManualClock::new(start);
    let authority = Authority::init(
        dir.path(),
        &Passphrase::new("scale".into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
        AuthorityConfig::default(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let period = authority
        .open_period("scale", start + time::Duration::days(1), 0)
        .unwrap();
    let t = Instant::now();
    for i in 0..n {
        let p = PersonalData {
            full_name: format!("Resident {i}"),
            date_of_birth: date!(1980 - 01 - 01),
            document_number: format!("S{i:09}"),
            address: format!("Street {i}"),
            phone: "+74950000000".into(),
            employer_tax_number: None,
        };
        authority.enrol(&period, p, None).unwrap();
    }
    authority.store().flush().unwrap();
    let enrol = t.elapsed();
    let disk = authority.store().size_on_disk().unwrap();
    clock.advance(time::Duration::days(2));

    // Step 1: the key (what makes the data unrecoverable).
    authority.dangerous_inject_fault(Some(blindpass::vault::FaultPoint::BeforePurge));
    let t = Instant::now();
    let _ = authority.destroy_period(&period);
    let crypto = t.elapsed();
    authority.dangerous_inject_fault(None);
    // Step 2: the purge (hygiene).
    let t = Instant::now();
    let report = authority.destroy_period(&period).unwrap();
    let purge = t.elapsed();
    println!("records: {n}");
    println!(
        "enrolment: {:.1} s ({:.0}/s)",
        enrol.as_secs_f64(),
        n as f64 / enrol.as_secs_f64()
    );
    println!(
        "sled on disk: {:.1} MiB ({:.0} B/resident)",
        disk as f64 / 1048576.0,
        disk as f64 / n as f64
    );
    println!(
        "cryptographic destruction (intent, ring rewrite, master rotation, audit): {:.1} ms",
        crypto.as_secs_f64() * 1e3
    );
    println!(
        "purge of {} sled entries: {:.2} s",
        report.purged_entries,
        purge.as_secs_f64()
    );
}
