//! `blindpass witness`: runs a C2SP tlog-witness for one or more issuers'
//! audit logs; and the witness options the other faces share (`serve
//! --witness-policy` starts the cosignature collector, the clients'
//! `--witness-policy` requires a quorum).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{CliError, first_line};
use crate::crypto::secret::random_32;
use crate::fsutil;
use crate::witness::collector::CollectorConfig;
use crate::witness::store::WitnessStore;
use crate::witness::{CosignatureSigner, Witness, WitnessPolicy};

/// The file, in the state directory, holding the witness's private key.
pub const KEY_FILE: &str = "witness.key";
/// The file, in the state directory, holding its verifier key.
pub const PUB_FILE: &str = "witness.pub";

/// Arguments of `blindpass witness`.
#[derive(Debug, clap::Args)]
pub struct WitnessArgs {
    /// The witness's name, a schema-less URL (`witness1.city.example`): it
    /// is part of its key id, so keep it.
    #[arg(long, env = "BLINDPASS_WITNESS_NAME")]
    pub name: String,
    /// Address to listen on; the submission prefix is the root
    /// (`POST /add-checkpoint`).
    #[arg(
        long,
        env = "BLINDPASS_WITNESS_LISTEN",
        default_value = "127.0.0.1:7380"
    )]
    pub listen: SocketAddr,
    /// Directory for the key (created on first start, mode 0600) and the
    /// latest cosigned checkpoint of each log.
    #[arg(
        long,
        env = "BLINDPASS_WITNESS_STATE",
        default_value = "blindpass-witness"
    )]
    pub state: PathBuf,
    /// A log to witness: its verifier key (`blindpass serve` prints it as
    /// "audit log key"). Repeat for several logs.
    #[arg(long = "log-key", value_name = "VKEY")]
    pub log_keys: Vec<String>,
    /// A file holding a log's verifier key (first line). Repeatable.
    #[arg(long = "log-key-file", value_name = "FILE")]
    pub log_key_files: Vec<PathBuf>,
}

/// Reads and checks a witness policy file.
pub fn read_policy(path: &Path) -> anyhow::Result<WitnessPolicy> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            format!("cannot read {}: {e}", path.display()),
            "check the path and its permissions",
        )
    })?;
    WitnessPolicy::parse(&text).map_err(|e| {
        CliError::new(
            format!("{}: {e}", path.display()),
            "each line is `witness <vkey> [<url>]`, `quorum <n>` or a # comment (docs/witness.md)",
        )
        .into()
    })
}

/// Reads the witness's key seed, creating it on first start.
fn seed(state: &Path) -> anyhow::Result<[u8; 32]> {
    let path = state.join(KEY_FILE);
    if !path.exists() {
        fsutil::atomic_write(
            &path,
            format!("{}\n", STANDARD.encode(random_32())).as_bytes(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let line = first_line(&path, "witness key")?;
    STANDARD
        .decode(line)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            CliError::new(
                format!("{} does not hold a base64 32-byte key", path.display()),
                "restore it from a backup (a new key is a new witness for every policy)",
            )
            .into()
        })
}

/// Runs `blindpass witness`.
pub fn run(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    super::serve::init_logging(super::serve::LogFormat::Text);
    let mut log_keys = args.log_keys.clone();
    for path in &args.log_key_files {
        log_keys.push(first_line(path, "log key")?);
    }
    if log_keys.is_empty() {
        return Err(CliError::new(
            "no log to witness",
            "give each issuer's audit log key with --log-key or --log-key-file",
        )
        .into());
    }
    fsutil::create_private_dir(&args.state)
        .with_context(|| format!("creating {}", args.state.display()))?;
    let signer = CosignatureSigner::new(&args.name, &seed(&args.state)?).ok_or_else(|| {
        CliError::new(
            format!("{:?} is not a key name", args.name),
            "use a schema-less URL without spaces or '+', e.g. witness1.city.example",
        )
    })?;
    let store = WitnessStore::open(&args.state.join("logs"))?;
    let witness = Witness::new(signer, &log_keys, store).map_err(|e| {
        CliError::new(
            e.to_string(),
            "give the key exactly as `blindpass serve` prints it (audit log key: …)",
        )
    })?;
    let vkey = witness.verifier_key();
    fsutil::atomic_write(&args.state.join(PUB_FILE), format!("{vkey}\n").as_bytes())?;
    let witness = Arc::new(witness);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        outln!("blindpass witness listening on http://{}", args.listen);
        outln!("  witness key:  {vkey}");
        for origin in witness.origins() {
            outln!("  witnessing:   {origin}");
        }
        crate::http::witness::serve(listener, witness, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving HTTP")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The collector's settings for `serve --witness-policy`: the policy file,
/// which must give at least one witness a URL, and the interval between
/// rounds when the log does not grow. `Service::start` runs the collector.
pub fn collector_config(policy_file: &Path, interval_s: u64) -> anyhow::Result<CollectorConfig> {
    let policy = read_policy(policy_file)?;
    if !policy.witnesses().iter().any(|w| w.url.is_some()) {
        return Err(CliError::new(
            format!("{} gives no witness a URL", policy_file.display()),
            "write each witness as `witness <vkey> <url>` so the issuer can reach it",
        )
        .into());
    }
    Ok(CollectorConfig {
        policy,
        interval: std::time::Duration::from_secs(interval_s.max(1)),
        timeout: std::time::Duration::from_secs(5),
    })
}
