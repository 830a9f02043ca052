//! Filling a data directory in-process: two periods of synthetic
//! residents, enrolled on every core without Argon2 except for the few who
//! must log in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::ScaleSettings;
use crate::bench::progress::{Counters, Goal, Progress};
use crate::bench::{BenchError, cores, people};
use blindpass::clock::SystemClock;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::{Passphrase, random_32};
use blindpass::ids::PeriodId;
use blindpass::issuer::accounts::hash_password;
use blindpass::issuer::{Authority, AuthorityConfig, DataDir, IssuerError};
use blindpass::vault::fsutil;

/// A data directory filled for the run.
pub(super) struct Filled {
    pub(super) data_dir: PathBuf,
    pub(super) passphrase_file: PathBuf,
    pub(super) doomed: PeriodId,
    /// The run tag of the current period's residents (their documents).
    pub(super) tag: String,
    /// Enrolments per second, both periods together.
    pub(super) enrol_rate: f64,
    pub(super) elapsed: Duration,
    /// sled's own figure, and the blocks its directory occupies.
    pub(super) sled_bytes: u64,
    pub(super) sled_allocated: u64,
}

/// Initialises a data directory under `root` (passphrase in a 0600 file),
/// opens the doomed period and then the current one (the newest open
/// period is where logins look), enrols both in-process, flushes and
/// closes it.
pub(super) fn populate(root: &Path, settings: &ScaleSettings) -> Result<Filled, BenchError> {
    let data_dir = root.join("data");
    fsutil::create_private_dir(&data_dir)?;
    let passphrase = Zeroizing::new(hex::encode(random_32()));
    let passphrase_file = root.join("passphrase");
    fsutil::atomic_write(&passphrase_file, format!("{}\n", *passphrase).as_bytes())?;
    let authority = Authority::init(
        &data_dir,
        &Passphrase::new(passphrase.to_string()),
        Argon2Params::DEFAULT,
        AuthorityConfig::default(),
        Arc::new(SystemClock),
    )?;
    // Keys made now keep RSA key generation out of the start being timed.
    authority.ensure_signing_keys()?;
    let ends = authority.now() + time::Duration::days(14);
    let doomed = authority.open_period("doomed", ends, 0)?;
    let current = authority.open_period("scale", ends, 0)?;
    if authority.current_period()? != current {
        return Err(BenchError::Setup(
            "the doomed period would receive the logins".into(),
        ));
    }
    let tag = crate::bench::run_tag();
    let started = Instant::now();
    let main = Cohort {
        period: current,
        tag: &tag,
        count: settings.residents,
        with_passwords: settings.with_passwords,
    };
    enrol_cohort(
        &authority,
        &main,
        "setup: enrol (current period)",
        settings.quiet,
    )?;
    let doomed_tag = crate::bench::run_tag();
    let doomed_cohort = Cohort {
        period: doomed,
        tag: &doomed_tag,
        count: settings.doomed,
        with_passwords: 0,
    };
    enrol_cohort(
        &authority,
        &doomed_cohort,
        "setup: enrol (doomed period)",
        settings.quiet,
    )?;
    authority.store().flush().map_err(IssuerError::from)?;
    let elapsed = started.elapsed();
    let sled_bytes = authority
        .store()
        .size_on_disk()
        .map_err(IssuerError::from)?;
    drop(authority);
    let sled_allocated = allocated_bytes(&DataDir::new(&data_dir).sled())?;
    let enrolled = settings.residents + settings.doomed;
    Ok(Filled {
        data_dir,
        passphrase_file,
        doomed,
        tag,
        enrol_rate: enrolled as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        sled_bytes,
        sled_allocated,
    })
}

/// Residents `0..count` of run `tag`, enrolled into `period`; the first
/// `with_passwords` get the synthetic password.
struct Cohort<'a> {
    period: PeriodId,
    tag: &'a str,
    count: usize,
    with_passwords: usize,
}

/// Enrols a cohort on every core: without Argon2 (no password) for all but
/// the few who must log in, so that millions take minutes, not days.
fn enrol_cohort(
    authority: &Authority,
    cohort: &Cohort<'_>,
    label: &str,
    quiet: bool,
) -> Result<(), BenchError> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        label,
        counters.clone(),
        Goal::Count(cohort.count as u64),
        quiet,
    );
    let next = AtomicUsize::new(0);
    let password = people::password();
    let enrol_next = || -> Result<(), BenchError> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= cohort.count {
                return Ok(());
            }
            let hash = if i < cohort.with_passwords {
                Some(hash_password(&password, Argon2Params::DEFAULT)?)
            } else {
                None
            };
            authority.enrol(&cohort.period, people::personal(cohort.tag, i), hash)?;
            counters.record(true);
        }
    };
    let outcome = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores()).map(|_| scope.spawn(enrol_next)).collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(BenchError::Setup("an enrolment thread panicked".into()))
                })
            })
            .collect::<Result<Vec<()>, BenchError>>()
    });
    drop(progress);
    outcome.map(drop)
}

/// Bytes of the blocks the files under `dir` occupy (what `du` counts).
fn allocated_bytes(dir: &Path) -> Result<u64, BenchError> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            allocated_bytes(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}
