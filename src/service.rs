//! The issuer service's start-up and shutdown, in one place: `blindpass
//! serve`, the integration tests' server and the load generator's
//! in-process server all start through [`Service::start`], so all three run
//! the same steps in the same order:
//!
//! 1. **open the store** ([`open_store`]): the master key (the passphrase
//!    slot, or a key in a PKCS#11 token: [`MasterSource`]), the key ring,
//!    the audit log and the store (sled, or PostgreSQL as
//!    `AuthorityConfig::store_spec` says), checked against their last
//!    acknowledged state, and recovery (an interrupted destruction is
//!    finished); a new data directory is created when there is no master
//!    key yet;
//! 2. the first period, if the caller asks for one and none is open;
//! 3. `service-started` in the audit log;
//! 4. an **expiry pass**: deadlines that passed while the service was down
//!    are met before any request is accepted;
//! 5. **signing keys** up to the horizon; keys past their window retired;
//! 6. the **scheduler**'s expiry job;
//! 7. the **witness collector**, if the service has witnesses (it sends
//!    each new audit-log checkpoint to them and `/audit/checkpoint` serves
//!    their cosignatures); then the **listener**, and serving;
//! 8. the **hourly refresh** of signing keys;
//! 9. **shutdown**: stop accepting, let open requests finish, flush sled.
//!
//! The caller keeps what is its own: `serve` its arguments, passphrase or
//! token PIN, logging and process hardening; a test its clock; the load generator its
//! scratch directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine as _;

use crate::audit::Event;
use crate::clock::Clock;
use crate::crypto::kdf::Argon2Params;
use crate::crypto::secret::{Passphrase, random_32};
use crate::http::{AppState, HttpConfig};
use crate::ids::PeriodId;
use crate::issuer::expiry::ExpiryReport;
use crate::issuer::{Authority, AuthorityConfig, DataDir, IssuerError};
use crate::scheduler::VERIFIER_SKEW;
use crate::store::StoreSpec;
use crate::vault::pkcs11::{MASTER_FILE, TokenMaster, TokenPin, TokenUri};
use crate::vault::{Vault, VaultError, fsutil};
use crate::witness::collector::{self, Collector, CollectorConfig, Cosigned, JournalSource};

/// How often signing keys are topped up to the horizon (and old ones
/// retired) while the service runs.
pub const KEY_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// The admin token file's name in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Everything a start needs.
pub struct ServiceConfig {
    /// The data directory (created if it holds no master slot yet).
    pub data_dir: PathBuf,
    /// Where the master key is, and what opens it.
    pub master: MasterSource,
    /// The issuer's settings.
    pub authority: AuthorityConfig,
    /// Where the issuer reads time.
    pub clock: Arc<dyn Clock>,
    /// The HTTP face's limits.
    pub http: HttpConfig,
    /// The admin API's bearer token.
    pub admin_token: AdminToken,
    /// Where to accept connections.
    pub listen: Listen,
    /// When expiry passes run after the one at start.
    pub expiry: Expiry,
    /// How often signing keys are topped up while it runs ([`KEY_REFRESH`]).
    pub key_refresh: std::time::Duration,
    /// A period to open at start if none is open.
    pub first_period: Option<FirstPeriod>,
    /// Async worker threads [default: one per core].
    pub worker_threads: Option<usize>,
    /// The async runtime's thread name prefix (tokio's default if `None`).
    pub thread_name: Option<String>,
    /// The witnesses to collect audit-log cosignatures from (`serve
    /// --witness-policy`); none if `None`.
    pub witnesses: Option<CollectorConfig>,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// Where the master key is, and what opens it (step 1).
pub enum MasterSource {
    /// The passphrase slot `vault/master.slot`, opened with the operator's
    /// passphrase; created with it when the data directory has no master
    /// key yet.
    Passphrase {
        /// The operator's passphrase.
        passphrase: Passphrase,
        /// Argon2id parameters of a slot created now (an existing slot
        /// keeps its own).
        new_slot_argon2: Argon2Params,
    },
    /// A non-extractable key in a PKCS#11 token (`vault/master.pkcs11`,
    /// `serve --master pkcs11:…`, see `docs/hsm.md`); the token key is
    /// generated when the data directory has no master key yet.
    Token {
        /// Which token, through which module.
        uri: TokenUri,
        /// The token's user PIN.
        pin: TokenPin,
    },
}

impl std::fmt::Debug for MasterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Passphrase { .. } => f.write_str("Passphrase(<redacted>)"),
            Self::Token { uri, .. } => f
                .debug_struct("Token")
                .field("token", &uri.token)
                .finish_non_exhaustive(),
        }
    }
}

/// Where the admin token comes from.
#[derive(Clone)]
pub enum AdminToken {
    /// `admin.token` in the data directory (mode 0600), created with a
    /// random token on first start: how an operator's service runs.
    File,
    /// A token the caller chose (tests, the load generator).
    Given(String),
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File => f.write_str("File"),
            Self::Given(_) => f.write_str("Given(<redacted>)"),
        }
    }
}

/// Where the service accepts connections.
#[derive(Debug)]
pub enum Listen {
    /// Bind this address at the listener step.
    Address(SocketAddr),
    /// A socket the caller bound already, e.g. on port 0 to learn the port
    /// before the issuer's request URI is set. Nothing is accepted from it
    /// before the listener step.
    Bound(std::net::TcpListener),
}

/// When the expiry job runs besides the pass at start.
#[derive(Debug, Clone)]
pub enum Expiry {
    /// On a six-field cron schedule (sec min hour day month weekday).
    Cron(String),
    /// Only when the caller runs it (`scheduler::tick`, `destroy_due`):
    /// for tests whose clock moves only when they say, where a job on the
    /// wall clock's minutes would act at an arbitrary point of the test.
    CallerDriven,
}

/// A period opened at start when none is open.
#[derive(Debug, Clone)]
pub struct FirstPeriod {
    /// The operator's label.
    pub name: String,
    /// Its length from now.
    pub length: time::Duration,
    /// Grace after its end, seconds.
    pub grace_s: u64,
}

/// What the start-up steps did, for the caller to report.
#[derive(Debug, Clone)]
pub struct StartReport {
    /// The data directory was created by this start.
    pub created: bool,
    /// The period opened because none was.
    pub first_period: Option<PeriodId>,
    /// The expiry pass at start.
    pub expiry: ExpiryReport,
    /// Signing keys generated at start.
    pub keys_generated: usize,
}

/// Why the service did not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The data directory could not be opened or created; nothing was
    /// served. The cause says which part refused.
    #[error("opening the data directory: {0}")]
    Open(#[source] IssuerError),
    /// A later start-up step of the issuer failed.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The expiry job's schedule was refused.
    #[error("expiry schedule: {0}")]
    Schedule(String),
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Files, threads or the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The serving thread stopped by panicking.
    #[error("the serving thread panicked")]
    Panicked,
}

/// The start-up order, as one function.
#[derive(Debug)]
pub struct Service;

impl Service {
    /// Runs the start-up steps (see the module documentation) and returns
    /// once the service accepts connections.
    pub fn start(config: ServiceConfig) -> Result<RunningService, ServiceError> {
        let ServiceConfig {
            data_dir,
            master,
            authority,
            clock,
            http,
            admin_token,
            listen,
            expiry,
            key_refresh,
            first_period,
            worker_threads,
            thread_name,
            witnesses,
        } = config;
        // Each step logs what it took: a slow start can be traced to the
        // master slot and sled's recovery, the expiry pass, or key generation.
        let step = std::time::Instant::now();
        let (authority, created) =
            open_store(&data_dir, master, authority, clock).map_err(ServiceError::Open)?;
        let authority = Arc::new(authority);
        tracing::info!(
            took_ms = step.elapsed().as_millis() as u64,
            "data directory open (master slot, key ring, audit log, store, recovery)"
        );
        // Several nodes: ring changes made elsewhere reach this one (the
        // thread ends with the authority).
        let follow = authority.config().ring_follow;
        if crate::issuer::follow_ring(&authority, follow)?.is_some() {
            tracing::info!(
                poll_ms = follow.poll.as_millis() as u64,
                lease_ms = follow.lease.as_millis() as u64,
                "following the shared key ring"
            );
        }
        authority.refresh_ring()?;
        let first_period = match first_period {
            Some(first) if authority.current_period().is_err() => {
                let ends = authority.now() + first.length;
                Some(authority.open_period(&first.name, ends, first.grace_s)?)
            }
            _ => None,
        };
        authority
            .journal()
            .append(authority.now(), Event::ServiceStarted)
            .map_err(IssuerError::from)?;
        // Deadlines that passed while the service was down are met now,
        // before any request is accepted.
        let step = std::time::Instant::now();
        let expiry_report = authority.destroy_due(VERIFIER_SKEW)?;
        tracing::info!(
            took_ms = step.elapsed().as_millis() as u64,
            destroyed = expiry_report.destroyed.len(),
            "expiry pass at start"
        );
        let step = std::time::Instant::now();
        let keys_generated = authority.ensure_signing_keys()?;
        authority.retire_signing_keys(VERIFIER_SKEW)?;
        tracing::info!(
            generated = keys_generated,
            took_ms = step.elapsed().as_millis() as u64,
            "signing keys ready"
        );
        let token = match admin_token {
            AdminToken::File => read_or_create_admin_token(&data_dir)?,
            AdminToken::Given(token) => token,
        };
        let state = AppState::new(authority.clone(), http, &token)?;
        drop(token);

        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        if let Some(n) = worker_threads {
            builder.worker_threads(n.max(1));
        }
        if let Some(name) = &thread_name {
            builder.thread_name(name.clone());
        }
        let runtime = builder.build()?;
        let handle = runtime.handle().clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
        let served = authority.clone();
        let main_name = match &thread_name {
            Some(name) => format!("{name}-main"),
            None => "blindpass-serve".to_owned(),
        };
        let thread = std::thread::Builder::new().name(main_name).spawn(move || {
            let outcome = runtime.block_on(run(
                served,
                state,
                listen,
                expiry,
                witnesses,
                key_refresh,
                ready_tx,
                stop_rx,
            ));
            let _ = ended_tx.send(());
            outcome
        })?;
        match ready_rx.recv() {
            Ok(Ok(local_addr)) => Ok(RunningService {
                local_addr,
                authority,
                report: StartReport {
                    created,
                    first_period,
                    expiry: expiry_report,
                    keys_generated,
                },
                handle,
                stop: Some(stop_tx),
                ended: Some(ended_rx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread ended without a word: it panicked.
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(ServiceError::Panicked),
            },
        }
    }
}

/// Step 1, the one call a different store replaces: opens the data
/// directory with its master key, or creates it when it holds none.
/// `Authority::open` opens the store `config.store_spec` names (sled,
/// checked against its last acknowledged generation; or PostgreSQL, with
/// its node lock and migrations) and runs recovery before it returns. Returns whether the directory was
/// created.
pub fn open_store(
    data_dir: &std::path::Path,
    master: MasterSource,
    config: AuthorityConfig,
    clock: Arc<dyn Clock>,
) -> Result<(Authority, bool), IssuerError> {
    let (uri, pin) = match master {
        MasterSource::Passphrase {
            passphrase,
            new_slot_argon2,
        } => {
            if DataDir::new(data_dir).master_slot().exists() {
                return Ok((
                    Authority::open(data_dir, &passphrase, config, clock)?,
                    false,
                ));
            }
            fsutil::create_private_dir(data_dir).map_err(VaultError::from)?;
            tracing::info!("initialising a new data directory");
            let authority = Authority::init(data_dir, &passphrase, new_slot_argon2, config, clock)?;
            return Ok((authority, true));
        }
        MasterSource::Token { uri, pin } => (uri, pin),
    };
    let layout = DataDir::new(data_dir);
    if matches!(config.store_spec, StoreSpec::Postgres { .. }) {
        // PostgreSQL and a token every node reaches: the key ring, master
        // slot and audit log are the database's, shared by every node. A
        // data directory with a key ring of its own is not moved there.
        if layout.vault().exists() {
            return Err(VaultError::Shared(
                "this data directory has a key ring of its own (vault/); nodes that share a \
                 database start from a data directory without one"
                    .into(),
            )
            .into());
        }
        return Authority::open_shared(data_dir, &uri, &pin, config, clock);
    }
    if layout.master_slot().exists() {
        // The master key is in a passphrase slot: moving it into a token is
        // not supported.
        return Err(VaultError::AlreadyInitialised.into());
    }
    let file = layout.vault().join(MASTER_FILE);
    if file.exists() {
        let master = TokenMaster::open(&file, &uri, &pin)?;
        let authority = Authority::open_with_provider(data_dir, Box::new(master), config, clock)?;
        return Ok((authority, false));
    }
    // The token makes the vault directory only once it has accepted the
    // PIN: a refused first start leaves nothing behind.
    let master = TokenMaster::create(&file, &uri, &pin)?;
    fsutil::create_private_dir(data_dir).map_err(VaultError::from)?;
    tracing::info!("initialising a new data directory (master key in a PKCS#11 token)");
    drop(Vault::create(&layout.vault(), Box::new(master.clone()))?);
    let authority = Authority::open_with_provider(data_dir, Box::new(master), config, clock)?;
    Ok((authority, true))
}

/// Reads or creates the operator's admin token (mode 0600).
fn read_or_create_admin_token(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if !path.exists() {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_32());
        fsutil::atomic_write(&path, format!("{token}\n").as_bytes())?;
    }
    Ok(std::fs::read_to_string(&path)?.trim().to_owned())
}

impl JournalSource for Authority {
    fn journal(&self) -> &crate::audit::Journal {
        Authority::journal(self)
    }
}

/// Step 7's witness collector: a background thread that nothing waits for
/// (see `witness::collector`); its answers are counted in the metrics.
fn start_collector(
    authority: Arc<Authority>,
    config: CollectorConfig,
    state: AppState,
) -> Result<(AppState, Collector), ServiceError> {
    let cosigned = Arc::new(Cosigned::default());
    let metrics = state.shared_metrics();
    let asked = config
        .policy
        .witnesses()
        .iter()
        .filter(|w| w.url.is_some())
        .count();
    let interval_s = config.interval.as_secs();
    let running = collector::spawn(authority, config, cosigned.clone(), move |name| {
        metrics.incr(name);
    })?;
    tracing::info!(witnesses = asked, interval_s, "collecting cosignatures");
    Ok((state.with_cosignatures(cosigned), running))
}

/// Steps 6 to 9, on the service's runtime: scheduler, witness collector,
/// listener, refresh, serving until `stop`, and the flush after it.
#[allow(clippy::too_many_arguments)] // One call, from `Service::start`.
async fn run(
    authority: Arc<Authority>,
    state: AppState,
    listen: Listen,
    expiry: Expiry,
    witnesses: Option<CollectorConfig>,
    key_refresh: std::time::Duration,
    ready: std::sync::mpsc::Sender<Result<SocketAddr, ServiceError>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), ServiceError> {
    let scheduler = match &expiry {
        Expiry::Cron(schedule) => {
            match crate::scheduler::start(authority.clone(), schedule).await {
                Ok(s) => Some(s),
                Err(e) => {
                    let _ = ready.send(Err(ServiceError::Schedule(e.to_string())));
                    return Ok(());
                }
            }
        }
        Expiry::CallerDriven => None,
    };
    // Runs until serving ends (dropping it stops the thread).
    let (state, _collector) = match witnesses {
        Some(config) => match start_collector(authority.clone(), config, state) {
            Ok((state, collector)) => (state, Some(collector)),
            Err(e) => {
                let _ = ready.send(Err(e));
                return Ok(());
            }
        },
        None => (state, None),
    };
    let listener = match listen {
        Listen::Address(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServiceError::Bind { addr, source }),
        Listen::Bound(socket) => socket
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(socket))
            .map_err(ServiceError::from),
    };
    let listener = match listener.and_then(|l| Ok((l.local_addr()?, l))) {
        Ok((addr, listener)) => {
            let _ = ready.send(Ok(addr));
            listener
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let refresher = tokio::spawn(refresh_keys(authority.clone(), key_refresh));
    let served = crate::http::serve(listener, state, async {
        let _ = stop.await;
    })
    .await;
    refresher.abort();
    drop(scheduler);
    served?;
    authority.store().flush().map_err(IssuerError::from)?;
    Ok(())
}

/// Step 8: tops signing keys up to the horizon every `every`; the first
/// run is one period after start, which made the keys just now.
async fn refresh_keys(authority: Arc<Authority>, every: std::time::Duration) {
    // A zero period would make `interval_at` panic.
    let every = every.max(std::time::Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let a = authority.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = a
                .ensure_signing_keys()
                .and_then(|_| a.retire_signing_keys(VERIFIER_SKEW))
            {
                tracing::error!(error = %e, "signing key refresh failed");
            }
        })
        .await;
    }
}

/// A started service. Dropping it shuts it down (see
/// [`RunningService::shutdown`]), ignoring errors.
pub struct RunningService {
    local_addr: SocketAddr,
    authority: Arc<Authority>,
    report: StartReport,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
    thread: Option<JoinHandle<Result<(), ServiceError>>>,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// The address it accepts connections on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The issuer core behind it.
    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// What the start-up steps did.
    pub fn report(&self) -> &StartReport {
        &self.report
    }

    /// Serves until the process gets SIGINT (Ctrl-C) or serving fails,
    /// then shuts down.
    pub fn run_until_signal(mut self) -> Result<(), ServiceError> {
        if let Some(ended) = self.ended.take() {
            self.handle.block_on(async {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = ended => {}
                }
            });
        }
        self.shutdown()
    }

    /// Step 9: stops accepting, lets the requests in flight finish, and
    /// flushes sled; returns how serving ended.
    pub fn shutdown(mut self) -> Result<(), ServiceError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServiceError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| ServiceError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use time::macros::datetime;

    use super::*;
    use crate::clock::ManualClock;
    use crate::issuer::IssuerError;
    use crate::vault::VaultError;

    fn config(dir: &std::path::Path, clock: &ManualClock, passphrase: &str) -> ServiceConfig {
        ServiceConfig {
            data_dir: dir.to_owned(),
            master: MasterSource::Passphrase {
                passphrase: Passphrase::new(passphrase.into()),
                new_slot_argon2: Argon2Params::INSECURE_FAST_FOR_TESTS,
            },
            authority: AuthorityConfig {
                key_horizon_days: 2,
                ..AuthorityConfig::default()
            },
            clock: Arc::new(clock.clone()),
            http: HttpConfig::default(),
            admin_token: AdminToken::Given("admin".into()),
            listen: Listen::Address(SocketAddr::from(([127, 0, 0, 1], 0))),
            expiry: Expiry::CallerDriven,
            key_refresh: KEY_REFRESH,
            first_period: None,
            worker_threads: Some(1),
            witnesses: None,
            thread_name: None,
        }
    }

    fn status_of(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.lines().next().unwrap_or("").to_owned())
    }

    /// What the audit log shows after the last `service-started`, by kind.
    fn after_last_start(authority: &Authority) -> Vec<&'static str> {
        let entries = authority.journal().entries().unwrap();
        let last = entries
            .iter()
            .rposition(|e| matches!(e.event, Event::ServiceStarted))
            .expect("a service-started entry");
        entries[last..]
            .iter()
            .map(|e| match e.event {
                Event::ServiceStarted => "service-started",
                Event::PeriodKeyDestroyed { .. } => "period-key-destroyed",
                Event::MasterRotated { .. } => "master-rotated",
                Event::SigningKeyPublished { .. } => "signing-key-published",
                Event::SigningKeyRetired { .. } => "signing-key-retired",
                Event::RecordsPurged { .. } => "records-purged",
                _ => "other",
            })
            .collect()
    }

    /// A restart after a missed deadline: the period is destroyed and old
    /// keys retired, then new keys are made, all before the address
    /// answers; shutdown stops serving.
    #[test]
    fn a_start_runs_its_steps_in_order_before_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(datetime!(2026-12-01 09:00 UTC));
        let mut first = config(dir.path(), &clock, "service tests");
        first.first_period = Some(FirstPeriod {
            name: "short".into(),
            length: time::Duration::hours(1),
            grace_s: 60,
        });
        let running = Service::start(first).unwrap();
        assert!(running.report().created);
        let period = running.report().first_period.expect("a period was opened");
        // Every key the directory publishes was made by this start.
        let published = running.authority().directory().keys.len();
        assert!(published > 0);
        assert_eq!(running.report().keys_generated, published);
        let addr = running.local_addr();
        assert_eq!(status_of(addr, "/healthz").unwrap(), "HTTP/1.1 200 OK");
        running.shutdown().unwrap();
        assert!(status_of(addr, "/healthz").is_err(), "still answering");

        // Down for a day.
        clock.advance(time::Duration::days(1));
        let running = Service::start(config(dir.path(), &clock, "service tests")).unwrap();
        let report = running.report();
        assert!(!report.created);
        assert_eq!(report.first_period, None);
        assert_eq!(report.expiry.destroyed.len(), 1);
        assert_eq!(report.expiry.destroyed[0].period, period);
        assert!(running.authority().period_info(&period).is_none());
        let steps = after_last_start(running.authority());
        let at = |kind: &str| steps.iter().position(|s| *s == kind);
        let (Some(destroyed), Some(published), Some(retired)) = (
            at("period-key-destroyed"),
            at("signing-key-published"),
            at("signing-key-retired"),
        ) else {
            panic!("a step is missing: {steps:?}");
        };
        // The expiry pass (destruction, then retirement of keys past their
        // window) comes before the new keys.
        assert!(destroyed < retired && retired < published, "{steps:?}");
        assert_eq!(
            status_of(running.local_addr(), "/healthz").unwrap(),
            "HTTP/1.1 200 OK"
        );
    }

    /// While it runs, keys are topped up to the horizon without anyone
    /// asking: a day later, the next day's windows have keys.
    #[test]
    fn running_keys_are_refreshed_on_their_period() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(datetime!(2026-12-01 09:00 UTC));
        let mut config = config(dir.path(), &clock, "service tests");
        config.key_refresh = std::time::Duration::from_millis(50);
        let running = Service::start(config).unwrap();
        let authority = running.authority().clone();
        let newest = || {
            let directory = authority.directory();
            directory.keys.iter().map(|k| k.window.first_day()).max()
        };
        let before = newest().expect("keys at start");
        clock.advance(time::Duration::days(1));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while newest() == Some(before) {
            assert!(
                std::time::Instant::now() < deadline,
                "no refresh made the next day's keys"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(newest(), Some(before + time::Duration::days(1)));
        running.shutdown().unwrap();
    }

    #[test]
    fn a_wrong_passphrase_or_schedule_is_refused_and_nothing_serves() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(datetime!(2026-12-01 09:00 UTC));
        Service::start(config(dir.path(), &clock, "service tests"))
            .unwrap()
            .shutdown()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut wrong = config(dir.path(), &clock, "another passphrase");
        wrong.listen = Listen::Bound(listener);
        assert!(matches!(
            Service::start(wrong),
            Err(ServiceError::Open(IssuerError::Vault(
                VaultError::WrongPassphrase
            )))
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr_2 = listener.local_addr().unwrap();
        let mut bad = config(dir.path(), &clock, "service tests");
        bad.expiry = Expiry::Cron("every day at noon".into());
        bad.listen = Listen::Bound(listener);
        assert!(matches!(
            Service::start(bad),
            Err(ServiceError::Schedule(_))
        ));
        // Both sockets were closed, never served.
        assert!(status_of(addr, "/healthz").is_err());
        assert!(status_of(addr_2, "/healthz").is_err());
    }
}
