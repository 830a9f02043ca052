//! The auditor's side: checking from outside, with nothing but the public
//! audit log and a pinned log key, that deletion happened on time
//! ([`verify`]); and checking on site, with the operator's data directory,
//! that destroyed keys are really gone and no personal data lies in plain
//! text ([`inspect()`]); and checking a running issuer's memory for
//! destroyed keys and personal data ([`memory::inspect_memory`]).
//!
//! [`verify`] proves, in order:
//!
//! 1. the checkpoint is signed by the pinned key ([`Failure::BadSignature`]);
//! 2. the entries served rebuild exactly the tree the checkpoint signs
//!    ([`Failure::EntriesDoNotMatchCheckpoint`]);
//! 3. the log only grew since the checkpoint this auditor saw last: it is
//!    not smaller ([`Failure::RolledBack`]) and its prefix of that size has
//!    the same root ([`Failure::Forked`]); nothing new is dated before that
//!    last look ([`Failure::Backdated`]);
//! 4. every period whose deadline has passed has its `period-key-destroyed`
//!    entry ([`Failure::Overdue`]), dated against the deadline the log
//!    announced ([`Failure::Misreported`]);
//! 5. every key in the issuer's directory is logged for its class and
//!    window ([`Failure::UnloggedKey`]), and no class and window has two
//!    keys ([`Failure::SplitKey`]).
//!
//! With a witness policy ([`verify_witnessed`]), step 1 also requires a
//! quorum of the policy's witnesses to have cosigned the checkpoint
//! ([`Failure::NoQuorum`]).
//!
//! The new checkpoint is remembered only if the log itself passed 1–3
//! (findings about the operator, 4–5, do not make the log untrustworthy,
//! and remembering it makes the next consistency check stronger).

mod inspect;
pub mod log;
pub mod memory;
pub mod periods;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use crate::client::{Client, ClientError};
use crate::ids::PeriodId;
use crate::protocol::directory::Directory;

pub use inspect::{
    DirUsage, InspectError, InspectFailure, InspectReport, VaultFindings, inspect, inspect_shared,
    inspect_with,
};
pub use log::{
    KeyProblem, LogError, SavedCheckpoint, VerifiedLog, check_log_key, consistency, fetch_log,
    fetch_witnessed_log, key_logged, verify_log,
};
pub use periods::{PeriodState, PeriodStatus};

/// How long past a deadline a destruction may still be missing before it
/// counts as overdue (the issuer's job runs every minute; clocks differ).
pub const DEFAULT_TOLERANCE: Duration = Duration::minutes(5);

/// Something the auditor caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Failure {
    /// The checkpoint is not signed by the pinned log key.
    #[error("the checkpoint is not signed by the pinned log key")]
    BadSignature,
    /// The log is smaller than a checkpoint seen before.
    #[error("the log was rolled back: {size} entries now, {saved_size} seen before")]
    RolledBack {
        /// Size of the checkpoint seen before.
        saved_size: u64,
        /// Size now.
        size: u64,
    },
    /// The log's first `size` entries are not the ones seen before.
    #[error(
        "the log was rewritten or forked: its first {size} entries have root {root}, not {saved_root} as seen before"
    )]
    Forked {
        /// Size of the checkpoint seen before.
        size: u64,
        /// Its root, base64.
        saved_root: String,
        /// The root of the same prefix now, base64.
        root: String,
    },
    /// The entries served do not rebuild the tree the checkpoint signs.
    #[error("the served entries do not match the signed checkpoint")]
    EntriesDoNotMatchCheckpoint,
    /// A period's deadline passed without a destruction in the log.
    #[error("period {period} is OVERDUE: its deadline {} passed {overdue_by_s} s ago and the log shows no destruction", periods::rfc3339(*deadline))]
    Overdue {
        /// The period.
        period: PeriodId,
        /// Its deadline.
        #[serde(with = "time::serde::rfc3339")]
        deadline: OffsetDateTime,
        /// Seconds since the deadline, by the auditor's clock.
        overdue_by_s: i64,
    },
    /// A destruction entry's deadline or lateness disagrees with the
    /// deadline the log announced for the period.
    #[error("period {period}: {detail}")]
    Misreported {
        /// The period.
        period: PeriodId,
        /// What disagrees.
        detail: String,
    },
    /// A key in the directory has no `signing-key-published` entry for its
    /// class and window.
    #[error("directory key {key_id} ({class} {window}) is not in the log")]
    UnloggedKey {
        /// The key id, hex.
        key_id: String,
        /// Its class, as the directory says.
        class: String,
        /// Its window, as the directory says.
        window: String,
    },
    /// More than one key was logged for one class and window.
    #[error("{} keys were published for {class} {window}: holders can be told apart by key", key_ids.len())]
    SplitKey {
        /// The class.
        class: String,
        /// The window.
        window: String,
        /// The key ids.
        key_ids: Vec<String>,
    },
    /// An entry that was not in the log when the auditor last looked is
    /// dated before that look. (An issuer recovering from a crash between
    /// a key rotation and its log entry dates the entry at the rotation;
    /// if an auditor looked in between, this is reported too.)
    #[error("entry {seq} is dated {} but was not in the log seen at {}", periods::rfc3339(*at), periods::rfc3339(*seen_at))]
    Backdated {
        /// The entry.
        seq: u64,
        /// The time it claims.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// When the auditor saw the log without it.
        #[serde(with = "time::serde::rfc3339")]
        seen_at: OffsetDateTime,
    },
    /// The checkpoint lacks the cosignatures the witness policy requires:
    /// it may be a view of the log that the witnesses never saw (a fork or
    /// a rewrite).
    #[error(
        "the checkpoint carries valid cosignatures from {valid} of the policy's {witnesses} witnesses; {quorum} are required"
    )]
    NoQuorum {
        /// Distinct policy witnesses whose cosignature verified.
        valid: usize,
        /// The policy's quorum.
        quorum: usize,
        /// Witnesses in the policy.
        witnesses: usize,
    },
    /// The checkpoint or an entry does not parse, or the entries are out of
    /// order.
    #[error("malformed log: {detail}")]
    Malformed {
        /// What does not parse.
        detail: String,
    },
}

impl From<crate::witness::QuorumError> for Failure {
    fn from(error: crate::witness::QuorumError) -> Self {
        match error {
            crate::witness::QuorumError::NotEnough {
                valid,
                quorum,
                witnesses,
            } => Self::NoQuorum {
                valid,
                quorum,
                witnesses,
            },
            other => Self::malformed(other.to_string()),
        }
    }
}

impl Failure {
    /// A [`Failure::Malformed`].
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::Malformed {
            detail: detail.into(),
        }
    }

    /// Whether this failure makes the log itself untrustworthy (as opposed
    /// to a finding about the operator that the log honestly shows).
    pub fn is_log_integrity(&self) -> bool {
        matches!(
            self,
            Self::BadSignature
                | Self::RolledBack { .. }
                | Self::Forked { .. }
                | Self::EntriesDoNotMatchCheckpoint
                | Self::Backdated { .. }
                | Self::NoQuorum { .. }
                | Self::Malformed { .. }
        )
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The server audited.
    pub server: String,
    /// The log's origin, if the checkpoint could be read.
    pub origin: Option<String>,
    /// The checkpoint's size, if the log verified.
    pub checkpoint_size: Option<u64>,
    /// The checkpoint's root (base64), if the log verified.
    pub root: Option<String>,
    /// The checkpoint this auditor had seen before, if any.
    pub previous: Option<PreviousCheckpoint>,
    /// Keys in the directory.
    pub directory_keys: usize,
    /// Every period in the log.
    pub periods: Vec<PeriodStatus>,
    /// What was caught; empty means the audit passed.
    pub failures: Vec<Failure>,
    /// Whether the new checkpoint was remembered for the next run.
    pub saved: bool,
}

impl AuditReport {
    /// No failures.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The earlier checkpoint an audit was compared with.
#[derive(Debug, Clone, Serialize)]
pub struct PreviousCheckpoint {
    /// Its size.
    pub size: u64,
    /// When it was seen.
    #[serde(with = "time::serde::rfc3339")]
    pub seen_at: OffsetDateTime,
}

/// Why an audit could not be done (as opposed to a [`Failure`] found).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditorError {
    /// The pinned log key is not a verifier key.
    #[error("the log key is not a verifier key (name+hex id+base64 key): {0}")]
    BadLogKey(String),
    /// The server could not be reached or answered with an error.
    #[error(transparent)]
    Transport(#[from] ClientError),
    /// The auditor's state file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The state file for this server is not usable.
    #[error("auditor state {} is not usable: {detail}", path.display())]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

/// The auditor's local memory: the last verified checkpoint per server,
/// one JSON file each in a directory.
#[derive(Debug, Clone)]
pub struct AuditorState {
    dir: PathBuf,
}

impl AuditorState {
    /// State kept in `dir` (created on first save).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The file holding the checkpoint of `server`.
    pub fn path(&self, server: &str) -> PathBuf {
        let digest = Sha256::digest(server.trim_end_matches('/').as_bytes());
        self.dir
            .join(format!("checkpoint-{}.json", hex::encode(&digest[..8])))
    }

    /// The last checkpoint saved for `server`, checked against `log_key`.
    pub fn load(
        &self,
        server: &str,
        log_key: &str,
    ) -> Result<Option<SavedCheckpoint>, AuditorError> {
        let path = self.path(server);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AuditorError::Io { path, source }),
        };
        let bad = |detail: String| AuditorError::BadState {
            path: path.clone(),
            detail,
        };
        let saved: SavedCheckpoint =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        saved.check(log_key).map_err(bad)?;
        Ok(Some(saved))
    }

    /// Remembers `checkpoint` (atomically replacing the previous one).
    pub fn save(&self, checkpoint: &SavedCheckpoint) -> Result<(), AuditorError> {
        let path = self.path(&checkpoint.server);
        let io = |source| AuditorError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(checkpoint).map_err(|e| AuditorError::BadState {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        crate::fsutil::atomic_write(&path, &json).map_err(io)
    }
}

/// Audits the server behind `api`: fetches and verifies its log under the
/// pinned `log_key`, compares it with the checkpoint remembered in
/// `state`, fetches its directory, and checks periods and keys as of `now`.
pub fn verify(
    api: &Client,
    log_key: &str,
    state: &AuditorState,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<AuditReport, AuditorError> {
    verify_witnessed(api, log_key, None, state, now, tolerance)
}

/// [`verify`], and with a witness `policy` the checkpoint must also carry
/// a quorum of valid cosignatures ([`Failure::NoQuorum`]) — which protects
/// an auditor with no saved checkpoint from a rewritten history.
pub fn verify_witnessed(
    api: &Client,
    log_key: &str,
    policy: Option<&crate::witness::WitnessPolicy>,
    state: &AuditorState,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<AuditReport, AuditorError> {
    check_log_key(log_key).map_err(|_| AuditorError::BadLogKey(log_key.to_owned()))?;
    let log = match fetch_witnessed_log(api, log_key, policy) {
        Ok(log) => Ok(log),
        Err(LogError::Failed(failure)) => Err(failure),
        Err(LogError::Transport(e)) => return Err(e.into()),
        Err(LogError::BadLogKey(key)) => return Err(AuditorError::BadLogKey(key)),
    };
    let directory = match &log {
        Ok(_) => api.directory()?,
        Err(_) => Directory {
            issuer_name: String::new(),
            issuer_request_uri: String::new(),
            generated_at: 0,
            max_age_s: 0,
            keys: Vec::new(),
        },
    };
    audit(
        api.base_url(),
        log_key,
        log,
        &directory,
        state,
        now,
        tolerance,
    )
}

/// The checks of [`verify`] on a log already fetched (or the failure that
/// stopped it) and a directory: for tests and for other transports.
pub fn audit(
    server: &str,
    log_key: &str,
    log: Result<VerifiedLog, Failure>,
    directory: &Directory,
    state: &AuditorState,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<AuditReport, AuditorError> {
    let server = server.trim_end_matches('/');
    let previous = state.load(server, log_key)?;
    let mut report = AuditReport {
        server: server.to_owned(),
        origin: None,
        checkpoint_size: None,
        root: None,
        previous: previous.as_ref().map(|p| PreviousCheckpoint {
            size: p.size,
            seen_at: p.seen_at,
        }),
        directory_keys: directory.keys.len(),
        periods: Vec::new(),
        failures: Vec::new(),
        saved: false,
    };
    let log = match log {
        Ok(log) => log,
        Err(failure) => {
            report.failures.push(failure);
            return Ok(report);
        }
    };
    let saved = log.saved(server, log_key, now);
    report.origin = Some(log.origin().to_owned());
    report.checkpoint_size = Some(log.size());
    report.root = Some(saved.root.clone());
    if let Some(previous) = &previous {
        if let Some(failure) = consistency(previous, &log) {
            report.failures.push(failure);
        } else {
            report.failures.extend(periods::backdated(
                log.entries(),
                previous.size,
                previous.seen_at,
                tolerance,
            ));
        }
    }
    let (list, failures) = periods::period_report(log.entries(), now, tolerance);
    report.periods = list;
    report.failures.extend(failures);
    report
        .failures
        .extend(periods::key_failures(log.entries(), directory));
    if !report.failures.iter().any(Failure::is_log_integrity) {
        state.save(&saved)?;
        report.saved = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Entry, Event};
    use time::macros::datetime;

    #[test]
    fn every_failure_serializes_as_a_tagged_json_object() {
        let at = datetime!(2026-12-01 09:00 UTC);
        let period = PeriodId::generate();
        let all = vec![
            Failure::BadSignature,
            Failure::RolledBack {
                saved_size: 3,
                size: 2,
            },
            Failure::Forked {
                size: 2,
                saved_root: "a".into(),
                root: "b".into(),
            },
            Failure::EntriesDoNotMatchCheckpoint,
            Failure::Overdue {
                period,
                deadline: at,
                overdue_by_s: 1,
            },
            Failure::Misreported {
                period,
                detail: "x".into(),
            },
            Failure::UnloggedKey {
                key_id: "k".into(),
                class: "c".into(),
                window: "w".into(),
            },
            Failure::SplitKey {
                class: "c".into(),
                window: "w".into(),
                key_ids: vec!["a".into(), "b".into()],
            },
            Failure::Backdated {
                seq: 1,
                at,
                seen_at: at,
            },
            Failure::NoQuorum {
                valid: 1,
                quorum: 2,
                witnesses: 3,
            },
            Failure::malformed("x"),
        ];
        for failure in all {
            let json = serde_json::to_value(&failure).unwrap();
            assert!(json["kind"].is_string(), "{json}");
            assert!(!failure.to_string().is_empty());
        }
        let inspect = InspectFailure::CanaryFound {
            canary: 1,
            file: "f".into(),
        };
        assert_eq!(
            serde_json::to_value(&inspect).unwrap()["kind"],
            "canary-found"
        );
    }

    #[test]
    fn an_early_end_moves_the_deadline_by_the_same_grace() {
        let t = datetime!(2026-12-01 09:00 UTC);
        let p = PeriodId::generate();
        let entry = |seq, at, event| Entry { seq, at, event };
        let entries = vec![
            entry(
                0,
                t,
                Event::PeriodOpened {
                    period: p,
                    name: "p".into(),
                    ends_at: "2026-12-10T00:00:00Z".into(),
                    deadline: "2026-12-10T01:00:00Z".into(),
                },
            ),
            entry(1, t + Duration::hours(1), Event::PeriodEnded { period: p }),
        ];
        let tolerance = DEFAULT_TOLERANCE;
        // Deadline 11:00; at 11:04 not yet overdue, at 11:06 overdue.
        let (list, failures) =
            periods::period_report(&entries, t + Duration::minutes(124), tolerance);
        assert_eq!(list[0].deadline, t + Duration::hours(2));
        assert!(failures.is_empty());
        let (list, failures) =
            periods::period_report(&entries, t + Duration::minutes(126), tolerance);
        assert_eq!(list[0].status, PeriodState::Overdue);
        assert!(matches!(failures.as_slice(), [Failure::Overdue { .. }]));
        // A destruction entry claiming another deadline is misreported.
        let mut lying = entries.clone();
        lying.push(entry(
            2,
            t + Duration::hours(3),
            Event::PeriodKeyDestroyed {
                period: p,
                deadline: "2026-12-01T12:00:00Z".into(),
                late_by_s: 0,
            },
        ));
        let (list, failures) = periods::period_report(&lying, t + Duration::hours(4), tolerance);
        assert_eq!(list[0].late_by_s, Some(3600));
        assert!(matches!(failures.as_slice(), [Failure::Misreported { .. }]));
    }
}
