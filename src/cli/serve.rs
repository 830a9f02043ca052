//! `blindpass serve`: opens (or creates) a data directory and runs the
//! issuer over HTTP. The arguments, the passphrase or the `--master`
//! token (read by `cli::master`), logging and process hardening are this
//! file's; the start-up itself is [`Service::start`]'s,
//! the same as the tests' and the load generator's servers go through.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use clap::ValueEnum;

use super::CliError;
use crate::clock::SystemClock;
use crate::crypto::kdf::Argon2Params;
use crate::crypto::secret::{Passphrase, random_32};
use crate::http::HttpConfig;
use crate::issuer::{AuthorityConfig, IssuerError, RingFollow};
use crate::service::{
    ADMIN_TOKEN_FILE, AdminToken, Expiry, FirstPeriod, KEY_REFRESH, Listen, MasterSource, Service,
    ServiceConfig, ServiceError,
};
use crate::store::{StoreConfig, StoreError, StoreSpec};
use crate::vault::VaultError;
use crate::vault::fsutil;
use crate::vault::pkcs11::TokenUri;

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `blindpass serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (created on first start).
    #[arg(long, env = "BLINDPASS_DATA_DIR", default_value = "blindpass-data")]
    pub data_dir: PathBuf,
    /// Where the per-period data lives (records, index, sessions, quotas):
    /// `sled`, in the data directory; or a PostgreSQL database,
    /// `postgres://user@host/dbname` (also `postgresql://…` or a libpq
    /// conninfo `host=… dbname=…`). With the passphrase slot, one node per
    /// database (the key ring and the audit log stay in the data
    /// directory); with --master pkcs11:…, the key ring, the wrapped master
    /// key and the audit log are the database's too, and several nodes
    /// share it. A password in the flag shows in `ps`: give it through
    /// BLINDPASS_STORE instead. See docs/deployment.md.
    #[arg(
        long,
        env = "BLINDPASS_STORE",
        default_value = "sled",
        value_name = "sled|postgres://…",
        hide_env_values = true
    )]
    pub store: StoreArg,
    /// Connections in the PostgreSQL pool (with --store postgres://…).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub store_pool_size: usize,
    /// Several nodes (--store postgres://… with --master pkcs11:…): re-read
    /// the shared key ring at least this often, in milliseconds, besides
    /// the announcement of each change.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub ring_poll_ms: u64,
    /// Several nodes: use no key (answer 503 ring-stale) once the shared
    /// key ring has not been confirmed for this long, in milliseconds: a
    /// node cut off from the database stops using keys the others may have
    /// destroyed.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub ring_lease_ms: u64,
    /// Address to listen on.
    #[arg(long, env = "BLINDPASS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Development mode: generate and keep the passphrase inside the data
    /// directory (INSECURE: anyone with the directory can read everything),
    /// and open a 14-day default isolation period if none is open.
    #[arg(long)]
    pub dev: bool,
    /// File holding the operator passphrase (first line). Without --dev, the
    /// passphrase comes from this file or from BLINDPASS_PASSPHRASE.
    #[arg(long, env = "BLINDPASS_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Keep the master key in a PKCS#11 token instead of the passphrase
    /// slot: pkcs11:token=<label>?module-path=<module.so>[&pin-source=<file>]
    /// (the PIN from that file or BLINDPASS_PKCS11_PIN; see docs/hsm.md).
    #[arg(long, value_name = "PKCS11_URI")]
    pub master: Option<String>,
    /// Issuer name in the permit challenge (verifiers check it).
    #[arg(long, default_value = "blindpass.local")]
    pub issuer_name: String,
    /// Public base URL, published in the directory (default: http://LISTEN).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Days of signing keys to publish ahead.
    #[arg(long, default_value_t = 7)]
    pub key_horizon_days: u32,
    /// sled page cache, MiB.
    #[arg(long, default_value_t = 64)]
    pub cache_mib: u64,
    /// Login and enrolment attempts one client address may make at once
    /// (the burst of its token bucket). Raise it only for load tests from
    /// a single address.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub rate_burst: u32,
    /// Login and enrolment attempts per second and client address once its
    /// burst is spent (the bucket's refill rate).
    #[arg(long, default_value_t = 2.0, value_name = "PER_S")]
    pub rate_per_s: f64,
    /// Concurrent RSA blind signatures (issuance) [default: cores].
    #[arg(long, value_name = "N")]
    pub sign_permits: Option<usize>,
    /// Concurrent Argon2id computations (login, enrolment); fewer than the
    /// cores keeps a login flood from starving issuance [default: cores / 2,
    /// at least 1].
    #[arg(long, value_name = "N")]
    pub argon2_permits: Option<usize>,
    /// Enrolments and logins that may wait for an Argon2id permit; more are
    /// answered 503 with Retry-After [default: 10 per permit].
    #[arg(long, value_name = "N")]
    pub argon2_queue: Option<usize>,
    /// Token requests that may wait for a signing thread; more are answered
    /// 503 with Retry-After [default: 16 per thread].
    #[arg(long, value_name = "N")]
    pub sign_queue: Option<usize>,
    /// Open connections at most; past it the server stops accepting until
    /// one closes [default: the descriptor limit less 128, at most 4096].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a connection may take to send a request head, or stay idle
    /// between requests, before it is closed.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub header_timeout_s: u64,
    /// Free space under the data directory, MiB, below which /readyz fails.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub min_free_disk_mib: u64,
    /// When the expiry job runs: a six-field cron expression (sec min hour
    /// day month weekday). A pass also runs at every start.
    #[arg(long, default_value = crate::scheduler::EVERY_MINUTE)]
    pub expiry_cron: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Start even though the store (sled/) is missing or behind the last
    /// acknowledged write: enrolments, sessions, quota counts and
    /// issued-pass records written since are gone, so quotas may grant
    /// again. Written to the audit log.
    #[arg(long)]
    pub accept_store_loss: bool,
    /// Leave core dumps on (for debugging only: a core file holds keys and
    /// personal data that no later destruction reaches).
    #[arg(long)]
    pub allow_core_dumps: bool,
    /// Witness policy file (docs/witness.md): send every new audit-log
    /// checkpoint to its witnesses and serve their cosignatures.
    #[arg(long, env = "BLINDPASS_WITNESS_POLICY", value_name = "FILE")]
    pub witness_policy: Option<PathBuf>,
    /// Seconds between two cosignature rounds when the log does not grow.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub witness_interval_s: u64,
}

/// `--store` as given: a connection string may hold a password, so its
/// `Debug` shows nothing of it.
#[derive(Clone)]
pub struct StoreArg(String);

impl std::str::FromStr for StoreArg {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

impl std::fmt::Debug for StoreArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreArg(<redacted>)")
    }
}

const DEV_PASSPHRASE_FILE: &str = "DEV-INSECURE-passphrase";

fn read_first_line(path: &Path) -> anyhow::Result<Passphrase> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(CliError::new(
            format!("{} is empty", path.display()),
            "put the operator passphrase on its first line",
        )
        .into());
    }
    Ok(Passphrase::new(line))
}

fn passphrase(args: &ServeArgs) -> anyhow::Result<Passphrase> {
    if let Some(path) = &args.passphrase_file {
        return read_first_line(path);
    }
    if let Ok(value) = std::env::var("BLINDPASS_PASSPHRASE") {
        if !value.is_empty() {
            return Ok(Passphrase::new(value));
        }
    }
    if args.dev {
        let path = args.data_dir.join(DEV_PASSPHRASE_FILE);
        if !path.exists() {
            fsutil::create_private_dir(&args.data_dir)?;
            let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_32());
            fsutil::atomic_write(&path, value.as_bytes())?;
        }
        eprintln!(
            "warning: --dev keeps the passphrase in {} — deletion guarantees do not hold in this mode",
            path.display()
        );
        return read_first_line(&path);
    }
    Err(CliError::new(
        "no operator passphrase",
        "set BLINDPASS_PASSPHRASE or --passphrase-file, or use --dev for a local trial",
    )
    .into())
}

/// The store's engine from `--store` and `--store-pool-size`. The value
/// is never echoed: a connection string may hold a password.
fn store_spec(args: &ServeArgs) -> anyhow::Result<StoreSpec> {
    let value = args.store.0.trim();
    if value == "sled" {
        return Ok(StoreSpec::Sled);
    }
    if args.store_pool_size == 0 {
        return Err(CliError::new(
            "--store-pool-size must be at least 1",
            "leave it out for the default (16)",
        )
        .into());
    }
    let looks_like_postgres = value.starts_with("postgres://")
        || value.starts_with("postgresql://")
        || value.contains('=');
    match looks_like_postgres.then(|| StoreSpec::postgres(value, args.store_pool_size)) {
        Some(Ok(spec)) => Ok(spec),
        _ => Err(CliError::new(
            "--store is neither `sled` nor a PostgreSQL connection string it can read",
            "use --store sled (the default), --store postgres://user@host/dbname, or a \
             libpq conninfo such as --store 'host=/run/postgresql dbname=blindpass'",
        )
        .into()),
    }
}

/// The HTTP limits: `blindpass serve`'s defaults, with the flags applied.
fn http_config(args: &ServeArgs) -> anyhow::Result<HttpConfig> {
    if args.rate_burst == 0 || !args.rate_per_s.is_finite() || args.rate_per_s <= 0.0 {
        return Err(CliError::new(
            "--rate-burst must be at least 1 and --rate-per-s a positive number",
            "e.g. --rate-burst 20 --rate-per-s 2",
        )
        .into());
    }
    if args.sign_permits == Some(0) || args.argon2_permits == Some(0) {
        return Err(CliError::new(
            "--sign-permits and --argon2-permits must be at least 1",
            "leave them out for the defaults (cores, cores / 2)",
        )
        .into());
    }
    if args.max_connections == Some(0) || args.header_timeout_s == 0 {
        return Err(CliError::new(
            "--max-connections and --header-timeout-s must be at least 1",
            "leave them out for the defaults (from the descriptor limit; 10 s)",
        )
        .into());
    }
    let defaults = HttpConfig::default();
    let sign_permits = args.sign_permits.unwrap_or(defaults.sign_permits);
    let argon2_permits = args.argon2_permits.unwrap_or(defaults.argon2_permits);
    Ok(HttpConfig {
        rate_burst: args.rate_burst,
        rate_per_s: args.rate_per_s,
        sign_permits,
        argon2_permits,
        sign_queue: args
            .sign_queue
            .unwrap_or(crate::http::SIGN_QUEUE_PER_THREAD * sign_permits),
        argon2_queue: args
            .argon2_queue
            .unwrap_or(crate::http::ARGON2_QUEUE_PER_PERMIT * argon2_permits),
        max_connections: args.max_connections.unwrap_or(defaults.max_connections),
        header_read_timeout: std::time::Duration::from_secs(args.header_timeout_s),
        min_free_disk_bytes: args.min_free_disk_mib.saturating_mul(1024 * 1024),
        ..defaults
    })
}

/// The most any `BLINDPASS_LOG` filter can get from a target: the
/// project's own code logs nothing personal at any level, so it may log at
/// every level; sled's debug and trace lines print the keys and values it
/// reads and writes (resident ids, session hashes, records), so it stops at
/// `warn`, as the default filter has it; every other dependency stops at
/// `info`, because their debug and trace lines carry connection detail
/// (axum logs every accepted client's address and port; hyper and h2 their
/// connections and frames) and their `info` and above only start-up and
/// failures. A filter is a ceiling the user's
/// filter is combined with, not a directive in it, so no more specific
/// directive (`sled::tree=trace`) can lift it.
fn log_ceiling() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("blindpass", LevelFilter::TRACE)
        .with_target("sled", LevelFilter::WARN)
}

pub(super) fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BLINDPASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    // Colour codes only for a terminal, never into a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // An event is logged only if both the user's filter and the ceiling
    // let it through (dependencies that use the `log` crate, such as
    // sled, are checked under their own target too).
    let _ = match format {
        LogFormat::Text => builder.finish().with(log_ceiling()).try_init(),
        LogFormat::Json => builder.json().finish().with(log_ceiling()).try_init(),
    };
}

/// The glibc tunable that caps malloc's arenas, and the cap.
const ARENA_TUNABLE: &str = "glibc.malloc.arena_max";
const ARENAS: u32 = 2;

/// Caps glibc's malloc arenas at [`ARENAS`] by re-executing `serve` once
/// (same process id, same arguments) with the tunable set, unless
/// `GLIBC_TUNABLES` already names it. Returns what was done, for the log.
///
/// glibc gives a thread that allocates under contention an arena of its
/// own (up to eight per core), and memory freed into an arena stays with
/// it. The purge thread's arena grew by ~100 MiB while it removed a
/// million residents: `bench scale` peaked at 337 MiB with glibc's default
/// and at 243 MiB with two arenas, at the same issuance rate (mimalloc
/// peaked at 336 MiB). Tunables are read only when a process starts, hence
/// the re-execution; if it fails, `serve` carries on with the default.
fn limit_malloc_arenas() -> &'static str {
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains(ARENA_TUNABLE) {
        return "as GLIBC_TUNABLES sets them";
    }
    let Ok(exe) = std::env::current_exe() else {
        return "left at glibc's default (own path unknown)";
    };
    let tunables = if current.is_empty() {
        format!("{ARENA_TUNABLE}={ARENAS}")
    } else {
        format!("{current}:{ARENA_TUNABLE}={ARENAS}")
    };
    // `exec` only returns on failure.
    let _ = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("GLIBC_TUNABLES", tunables),
    );
    "left at glibc's default (re-execution failed)"
}

/// Runs `blindpass serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let arenas = limit_malloc_arenas();
    let core_dumps = super::hardening::protect_memory(args.allow_core_dumps)?;
    init_logging(args.log_format);
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    tracing::info!(arenas, tunables, "malloc arenas");
    tracing::info!(core_dumps, "core dumps");
    let http = http_config(&args)?;
    let store_spec = store_spec(&args)?;
    // With the master key in a token there is no passphrase to ask for.
    let (master, token) = match args.master.as_deref() {
        Some(spec) => {
            let (uri, pin) = super::master::token(spec)?;
            (
                MasterSource::Token {
                    uri: uri.clone(),
                    pin,
                },
                Some(uri),
            )
        }
        None => (
            MasterSource::Passphrase {
                passphrase: passphrase(&args)?,
                new_slot_argon2: Argon2Params::DEFAULT,
            },
            None,
        ),
    };
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let config = AuthorityConfig {
        issuer_name: args.issuer_name.clone(),
        issuer_request_uri: format!("{public_url}/token-request"),
        key_horizon_days: args.key_horizon_days,
        store_spec,
        store: StoreConfig {
            cache_bytes: args.cache_mib * 1024 * 1024,
        },
        accept_store_loss: args.accept_store_loss,
        ring_follow: RingFollow {
            poll: std::time::Duration::from_millis(args.ring_poll_ms.max(10)),
            lease: std::time::Duration::from_millis(args.ring_lease_ms.max(args.ring_poll_ms)),
        },
        ..AuthorityConfig::default()
    };
    // Read before the start, so that a bad policy file changes nothing.
    let witnesses = args
        .witness_policy
        .as_deref()
        .map(|path| super::witness::collector_config(path, args.witness_interval_s))
        .transpose()?;
    let running = Service::start(ServiceConfig {
        data_dir: args.data_dir.clone(),
        master,
        authority: config,
        clock: Arc::new(SystemClock),
        http,
        admin_token: AdminToken::File,
        listen: Listen::Address(args.listen),
        expiry: Expiry::Cron(args.expiry_cron.clone()),
        key_refresh: KEY_REFRESH,
        first_period: args.dev.then(|| FirstPeriod {
            name: "default".into(),
            length: time::Duration::days(14),
            grace_s: 86_400,
        }),
        worker_threads: None,
        thread_name: None,
        witnesses,
    })
    .map_err(|e| refusal(e, token.as_ref()))?;
    let report = running.report();
    if report.created {
        match &token {
            Some(uri) => eprintln!(
                "initialised a new data directory in {} (master key in token {:?})",
                args.data_dir.display(),
                uri.token
            ),
            None => eprintln!(
                "initialised a new data directory in {}",
                args.data_dir.display()
            ),
        }
    }
    if report.first_period.is_some() {
        eprintln!("dev: opened a 14-day isolation period \"default\"");
    }
    for destroyed in &report.expiry.destroyed {
        eprintln!(
            "destroyed period {} at startup ({} s after its deadline)",
            destroyed.period, destroyed.late_by_s
        );
    }
    let token_path = args.data_dir.join(ADMIN_TOKEN_FILE);
    outln!("blindpass issuer listening on {public_url}");
    outln!("  key directory:  {public_url}/v1/directory");
    outln!("  RFC 9578:       {public_url}/.well-known/private-token-issuer-directory");
    outln!("  admin token in: {}", token_path.display());
    outln!("  audit log:      {public_url}/audit/checkpoint");
    outln!(
        "  audit log key:  {}",
        running.authority().journal().verifier_key()
    );
    running.run_until_signal().context("serving HTTP")?;
    Ok(ExitCode::SUCCESS)
}

/// A start-up failure with what the operator can do about it; `token` is
/// the PKCS#11 token given with `--master`, if any.
fn refusal(error: ServiceError, token: Option<&TokenUri>) -> anyhow::Error {
    let open = match (error, token) {
        (ServiceError::Open(e), None) => e,
        (ServiceError::Open(e), Some(uri)) => match super::master::explain_refusal(e, uri) {
            Ok(e) => e,
            Err(explained) => return explained,
        },
        (ServiceError::Schedule(e), _) => {
            return CliError::new(
                format!("expiry schedule: {e}"),
                "use a six-field cron expression such as \"0 * * * * *\"",
            )
            .into();
        }
        (other, _) => return other.into(),
    };
    match open {
        IssuerError::Vault(VaultError::WrongPassphrase) => CliError::new(
            "the passphrase does not open this data directory's master slot",
            "check BLINDPASS_PASSPHRASE / --passphrase-file; nothing was changed",
        )
        .into(),
        IssuerError::Store(StoreError::Lost(loss)) => CliError::new(
            format!("refusing to start: {loss}"),
            "restore sled/ and sled.generation from a backup taken together; or, to \
             continue without the lost data, start once with --accept-store-loss \
             (the acceptance is written to the audit log)",
        )
        .into(),
        IssuerError::Store(StoreError::Damaged(at)) => CliError::new(
            format!("refusing to start: sled found its files damaged ({at})"),
            "restore sled/ and sled.generation from a backup taken together",
        )
        .into(),
        IssuerError::Store(StoreError::OtherNode) => CliError::new(
            "refusing to start: another blindpass node uses this PostgreSQL database",
            "with the master key in a passphrase slot, one node has the database: stop the \
             other node, or give this one a database of its own; several nodes share one \
             database with the master key in a PKCS#11 token they all reach \
             (--master pkcs11:…, see docs/deployment.md)",
        )
        .into(),
        IssuerError::Store(StoreError::OtherIssuer) => CliError::new(
            "refusing to start: this PostgreSQL database holds another data directory's data",
            "each data directory has a database of its own: give --store the one this data \
             directory was started with, or a new empty database",
        )
        .into(),
        IssuerError::Store(e @ StoreError::SchemaTooNew { .. }) => CliError::new(
            format!("refusing to start: {e}"),
            "run the blindpass version that migrated the database, or restore the \
             database from a backup taken before the upgrade",
        )
        .into(),
        IssuerError::Store(StoreError::Postgres(what)) => CliError::new(
            format!("refusing to start: the PostgreSQL store failed ({what})"),
            "check that the server is running and reachable and that --store names the \
             database, its user and host (postgres://user@host/dbname); nothing was served",
        )
        .into(),
        IssuerError::Audit(crate::audit::AuditError::Corrupt(damage)) => CliError::new(
            format!("refusing to start: {damage}"),
            "nothing was changed; restore audit/entries.log from a backup or a mirror \
             of the public log (only a torn last record is cut automatically)",
        )
        .into(),
        e => anyhow::Error::new(e).context("opening the data directory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn limits_default_to_the_http_defaults() {
        let config = http_config(&parse(&[])).unwrap();
        let defaults = HttpConfig::default();
        assert_eq!(config.rate_burst, 20);
        assert_eq!(config.rate_per_s, 2.0);
        assert_eq!(config.sign_permits, defaults.sign_permits);
        assert_eq!(config.argon2_permits, defaults.argon2_permits);
    }

    #[test]
    fn limit_flags_reach_the_http_config() {
        let config = http_config(&parse(&[
            "--rate-burst",
            "1000000",
            "--rate-per-s",
            "1e6",
            "--sign-permits",
            "8",
            "--argon2-permits",
            "3",
        ]))
        .unwrap();
        assert_eq!(config.rate_burst, 1_000_000);
        assert_eq!(config.rate_per_s, 1e6);
        assert_eq!(config.sign_permits, 8);
        assert_eq!(config.argon2_permits, 3);
        // The queues follow the permits given.
        assert_eq!(config.sign_queue, 8 * crate::http::SIGN_QUEUE_PER_THREAD);
        assert_eq!(
            config.argon2_queue,
            3 * crate::http::ARGON2_QUEUE_PER_PERMIT
        );
    }

    #[test]
    fn overload_flags_reach_the_http_config() {
        let config = http_config(&parse(&[
            "--sign-queue",
            "5",
            "--argon2-queue",
            "0",
            "--max-connections",
            "100",
            "--header-timeout-s",
            "3",
            "--min-free-disk-mib",
            "1",
        ]))
        .unwrap();
        assert_eq!(config.sign_queue, 5);
        assert_eq!(config.argon2_queue, 0);
        assert_eq!(config.max_connections, 100);
        assert_eq!(config.header_read_timeout.as_secs(), 3);
        assert_eq!(config.min_free_disk_bytes, 1024 * 1024);
    }

    #[test]
    fn no_filter_lifts_dependencies_above_the_ceiling() {
        use tracing::Level;
        let ceiling = log_ceiling();
        // (crate, module) pairs, joined below: tests/architecture.rs greps
        // for path-qualified names of these crates outside their modules.
        for (krate, module, level, allowed) in [
            ("blindpass", "http", Level::TRACE, true),
            ("blindpass", "", Level::DEBUG, true),
            ("sled", "", Level::WARN, true),
            ("sled", "tree", Level::INFO, false),
            ("sled", "tree", Level::TRACE, false),
            ("axum", "serve", Level::INFO, true),
            ("axum", "serve", Level::TRACE, false),
            ("hyper", "proto", Level::DEBUG, false),
            ("h2", "codec", Level::TRACE, false),
            ("tokio", "runtime", Level::DEBUG, false),
            // tokio-postgres prints statements' parameters at debug.
            ("tokio_postgres", "query", Level::DEBUG, false),
            ("tokio_postgres", "connection", Level::INFO, true),
        ] {
            let target = if module.is_empty() {
                krate.to_owned()
            } else {
                format!("{krate}::{module}")
            };
            assert_eq!(
                ceiling.would_enable(&target, &level),
                allowed,
                "{target} at {level}"
            );
        }
    }

    #[test]
    fn store_takes_sled_or_a_postgres_connection_string() {
        assert_eq!(store_spec(&parse(&[])).unwrap(), StoreSpec::Sled);
        for url in [
            "postgres://blindpass@db.example/blindpass",
            "postgresql://blindpass:secret@db.example:5433/blindpass",
            "host=/run/postgresql dbname=blindpass",
        ] {
            let spec = store_spec(&parse(&["--store", url, "--store-pool-size", "4"])).unwrap();
            assert_eq!(
                spec,
                StoreSpec::Postgres {
                    url: url.into(),
                    pool_size: 4
                }
            );
            // A connection string may hold a password: never printed.
            assert!(!format!("{spec:?}").contains("secret"));
            let args = parse(&["--store", url]);
            assert!(!format!("{args:?}").contains("secret"));
        }
        for bad in ["mysql://db/x", "sled:", "postgres://[", "host='unclosed"] {
            let refused = store_spec(&parse(&["--store", bad])).unwrap_err();
            let refused = refused.downcast_ref::<CliError>().unwrap();
            assert!(refused.hint.as_deref().unwrap().contains("--store sled"));
            assert!(!refused.message.contains(bad), "{}", refused.message);
        }
        assert!(store_spec(&parse(&["--store", "host=x", "--store-pool-size", "0"])).is_err());
    }

    #[test]
    fn nonsense_limits_are_refused() {
        for bad in [
            &["--rate-burst", "0"][..],
            &["--rate-per-s", "0"],
            &["--rate-per-s", "NaN"],
            &["--sign-permits", "0"],
            &["--argon2-permits", "0"],
            &["--max-connections", "0"],
            &["--header-timeout-s", "0"],
        ] {
            assert!(http_config(&parse(bad)).is_err(), "{bad:?}");
        }
    }
}
