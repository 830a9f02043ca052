//! On-site inspection of an issuer's data directory: the audit log read
//! straight from disk, the key ring opened read-only with the operator's
//! passphrase and compared with the log, and every file scanned for canary
//! strings (test values enrolled beforehand that must never appear in
//! plain text). Nothing under the data directory is changed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::audit::{Entry, Event};
use crate::crypto::secret::Passphrase;
use crate::ids::PeriodId;
use crate::issuer::{DataDir, IssuerError, VaultSummary, inspect_vault};

/// Why an inspection could not be done (as opposed to a finding).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The directory is not an issuer data directory.
    #[error("{} is not a blindpass data directory (no audit/entries.log)", .0.display())]
    NotADataDir(PathBuf),
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A canary is empty (it would match everything).
    #[error("canary {0} is empty")]
    EmptyCanary(usize),
    /// The vault could not be opened (wrong passphrase, damaged files).
    #[error("cannot open the key ring: {0}")]
    Vault(#[from] IssuerError),
    /// The process's memory could not be read.
    #[error("cannot read the memory of process {pid}: {source}")]
    Process {
        /// The process.
        pid: u32,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Something the inspection caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum InspectFailure {
    /// The log says the period's key was destroyed, but the key ring still
    /// holds it.
    #[error("period {period} is logged as destroyed but its key is still in the key ring")]
    DestroyedPeriodLive {
        /// The period.
        period: PeriodId,
    },
    /// A live key is the very key a destroyed period had (same commitment).
    #[error("live period {live}'s key is the key of destroyed period {destroyed}")]
    DestroyedKeyReused {
        /// The destroyed period whose key it is.
        destroyed: PeriodId,
        /// The live period holding it.
        live: PeriodId,
    },
    /// A live key does not match its period's `period-key-created` entry.
    #[error("live period {period}'s key is not the one the log committed to")]
    KeyNotAsLogged {
        /// The period.
        period: PeriodId,
    },
    /// More than one key-ring file is present: an old ring (holding keys
    /// since destroyed) was left behind.
    #[error("{} key-ring files are present (master versions {versions:?}); only the current one may be", versions.len())]
    ExtraKeyRings {
        /// Their master versions.
        versions: Vec<u64>,
    },
    /// A canary was found in plain text.
    #[error("canary {canary} found in {file}")]
    CanaryFound {
        /// Which canary (1-based, in the order given).
        canary: usize,
        /// The file, relative to the data directory.
        file: String,
    },
    /// The audit log on disk does not parse or is out of order.
    #[error("audit log: {detail}")]
    LogMalformed {
        /// What does not parse.
        detail: String,
    },
}

impl InspectFailure {
    fn log_malformed(detail: String) -> Self {
        Self::LogMalformed { detail }
    }
}

/// Files and bytes under one top-level entry of the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirUsage {
    /// The top-level name (`.` for files directly in the data directory).
    pub name: String,
    /// Regular files.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

/// What the key ring shows, without any key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultFindings {
    /// Master key version.
    pub master_version: u64,
    /// Live periods in the ring.
    pub live_periods: usize,
    /// Destroyed periods (tombstones) in the ring.
    pub destroyed_periods: usize,
    /// Signing keys held.
    pub signing_keys: usize,
    /// Key-ring files present, by master version.
    pub ring_files: Vec<u64>,
}

/// The outcome of [`inspect`].
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Files and bytes per top-level subdirectory.
    pub usage: Vec<DirUsage>,
    /// Entries in the audit log.
    pub log_entries: u64,
    /// Bytes at the end of the log file that do not form a whole entry (a
    /// torn append the issuer cuts off when it next opens the log).
    pub log_torn_tail_bytes: u64,
    /// Periods the log shows as destroyed.
    pub destroyed_in_log: usize,
    /// The key ring, if a passphrase was given (`None`: check skipped).
    pub vault: Option<VaultFindings>,
    /// How many canaries were searched for.
    pub canaries: usize,
    /// Files scanned for them.
    pub files_scanned: u64,
    /// What was caught; empty means the inspection passed.
    pub failures: Vec<InspectFailure>,
}

impl InspectReport {
    /// No failures.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The log file's entries (`u32 BE length ‖ entry JSON`, repeated), read
/// without opening it for writing; also the length of a torn tail.
fn read_log(path: &Path) -> Result<(Vec<Vec<u8>>, u64), InspectError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InspectError::NotADataDir(
                path.parent()
                    .and_then(Path::parent)
                    .unwrap_or(path)
                    .to_owned(),
            ));
        }
        Err(source) => {
            return Err(InspectError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut entries = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            break;
        }
        entries.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    Ok((entries, rest.len() as u64))
}

/// What the audit log on disk says about period keys.
pub(super) struct LoggedKeys {
    /// Entries in the log.
    pub entries: u64,
    /// Bytes of a torn last append.
    pub torn: u64,
    /// Entries that do not parse or are out of order.
    pub failures: Vec<InspectFailure>,
    /// Periods logged as destroyed, in log order.
    pub destroyed: Vec<PeriodId>,
    /// Every `period-key-created` commitment (hex), by period.
    pub commitments: BTreeMap<PeriodId, Vec<String>>,
}

impl LoggedKeys {
    /// Reads `audit/entries.log` under the data directory `root`.
    pub fn read(root: &Path) -> Result<Self, InspectError> {
        let (raw, torn) = read_log(&DataDir::new(root).audit_log())?;
        Ok(Self::of(&raw, torn))
    }

    /// What the entries `raw` say (`torn`: bytes of a torn last append).
    pub fn of(raw: &[Vec<u8>], torn: u64) -> Self {
        let mut failures = Vec::new();
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
        for (index, bytes) in raw.iter().enumerate() {
            match Entry::from_bytes(bytes) {
                Ok(entry) if entry.seq == index as u64 => entries.push(entry),
                Ok(entry) => failures.push(InspectFailure::log_malformed(format!(
                    "entry {index} says it is entry {}",
                    entry.seq
                ))),
                Err(_) => failures.push(InspectFailure::log_malformed(format!(
                    "entry {index} does not parse"
                ))),
            }
        }
        let mut destroyed: Vec<PeriodId> = Vec::new();
        let mut commitments: BTreeMap<PeriodId, Vec<String>> = BTreeMap::new();
        for entry in &entries {
            match &entry.event {
                Event::PeriodKeyDestroyed { period, .. } if !destroyed.contains(period) => {
                    destroyed.push(*period);
                }
                Event::PeriodKeyCreated { period, commitment } => {
                    commitments
                        .entry(*period)
                        .or_default()
                        .push(commitment.clone());
                }
                _ => {}
            }
        }
        Self {
            entries: raw.len() as u64,
            torn,
            failures,
            destroyed,
            commitments,
        }
    }
}

/// Inspects the data directory at `root`: the audit log on disk; with the
/// `passphrase`, the key ring against the log; and every file for each of
/// the `canaries`.
pub fn inspect(
    root: &Path,
    passphrase: Option<&Passphrase>,
    canaries: &[String],
) -> Result<InspectReport, InspectError> {
    inspect_with(
        root,
        passphrase.map(|p| move || inspect_vault(root, p)),
        canaries,
    )
}

/// As [`inspect`], with the key ring opened read-only and summarised by
/// `open_ring` (with the master key in a PKCS#11 token: `cli::master`).
pub fn inspect_with(
    root: &Path,
    open_ring: Option<impl FnOnce() -> Result<VaultSummary, IssuerError>>,
    canaries: &[String],
) -> Result<InspectReport, InspectError> {
    inspect_logged(root, LoggedKeys::read(root)?, open_ring, canaries)
}

/// As [`inspect_with`] for one of several nodes: the audit log is
/// `entries`, read from the database the nodes share, and `root` is the
/// node's data directory (its files are still scanned for the canaries).
pub fn inspect_shared(
    root: &Path,
    entries: &[Vec<u8>],
    open_ring: Option<impl FnOnce() -> Result<VaultSummary, IssuerError>>,
    canaries: &[String],
) -> Result<InspectReport, InspectError> {
    inspect_logged(root, LoggedKeys::of(entries, 0), open_ring, canaries)
}

fn inspect_logged(
    root: &Path,
    logged: LoggedKeys,
    open_ring: Option<impl FnOnce() -> Result<VaultSummary, IssuerError>>,
    canaries: &[String],
) -> Result<InspectReport, InspectError> {
    if let Some(i) = canaries.iter().position(String::is_empty) {
        return Err(InspectError::EmptyCanary(i + 1));
    }
    let LoggedKeys {
        entries: log_entries,
        torn,
        mut failures,
        destroyed,
        commitments,
    } = logged;

    let vault = match open_ring {
        None => None,
        Some(open_ring) => {
            let summary = open_ring()?;
            for (period, commitment) in &summary.live {
                if destroyed.contains(period) {
                    failures.push(InspectFailure::DestroyedPeriodLive { period: *period });
                }
                for gone in &destroyed {
                    let reused = gone != period
                        && commitments
                            .get(gone)
                            .is_some_and(|c| c.contains(commitment));
                    if reused {
                        failures.push(InspectFailure::DestroyedKeyReused {
                            destroyed: *gone,
                            live: *period,
                        });
                    }
                }
                if !commitments
                    .get(period)
                    .is_some_and(|c| c.contains(commitment))
                {
                    failures.push(InspectFailure::KeyNotAsLogged { period: *period });
                }
            }
            if summary.ring_files.len() > 1 {
                let mut versions = summary.ring_files.clone();
                versions.sort_unstable();
                failures.push(InspectFailure::ExtraKeyRings { versions });
            }
            Some(VaultFindings {
                master_version: summary.master_version,
                live_periods: summary.live.len(),
                destroyed_periods: summary.destroyed.len(),
                signing_keys: summary.signing_keys.len(),
                ring_files: summary.ring_files,
            })
        }
    };

    let mut usage: BTreeMap<String, DirUsage> = BTreeMap::new();
    let mut files_scanned = 0u64;
    let needles: Vec<&[u8]> = canaries.iter().map(|c| c.as_bytes()).collect();
    for (path, size) in files_under(root)? {
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let top = if relative.components().count() > 1 {
            relative
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            ".".to_owned()
        };
        let slot = usage.entry(top.clone()).or_insert(DirUsage {
            name: top,
            files: 0,
            bytes: 0,
        });
        slot.files += 1;
        slot.bytes += size;
        if needles.is_empty() {
            continue;
        }
        files_scanned += 1;
        for canary in contained(&path, &needles)? {
            failures.push(InspectFailure::CanaryFound {
                canary: canary + 1,
                file: relative.display().to_string(),
            });
        }
    }

    Ok(InspectReport {
        data_dir: root.to_owned(),
        usage: usage.into_values().collect(),
        log_entries,
        log_torn_tail_bytes: torn,
        destroyed_in_log: destroyed.len(),
        vault,
        canaries: canaries.len(),
        files_scanned,
        failures,
    })
}

/// Every regular file under `root` with its size, sorted; symbolic links
/// are not followed (they could point outside the data directory).
fn files_under(root: &Path) -> Result<Vec<(PathBuf, u64)>, InspectError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| InspectError::Io { path, source }
    };
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                out.push((path, meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Which of `needles` occur in the file, reading it in chunks (sled files
/// can be large) with enough overlap that no match straddles unseen.
fn contained(path: &Path, needles: &[&[u8]]) -> Result<Vec<usize>, InspectError> {
    const CHUNK: usize = 1 << 20;
    let io = |source| InspectError::Io {
        path: path.to_owned(),
        source,
    };
    let longest = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let keep = longest.saturating_sub(1);
    let mut file = File::open(path).map_err(io)?;
    let mut found = vec![false; needles.len()];
    let mut window: Vec<u8> = Vec::with_capacity(CHUNK + keep);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        window.extend_from_slice(&chunk[..n]);
        for (i, needle) in needles.iter().enumerate() {
            if !found[i] && window.windows(needle.len()).any(|w| w == *needle) {
                found[i] = true;
            }
        }
        let cut = window.len().saturating_sub(keep);
        window.drain(..cut);
    }
    Ok((0..needles.len()).filter(|&i| found[i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_straddling_two_chunks_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let mut bytes = vec![b'.'; (1 << 20) - 3];
        bytes.extend_from_slice(b"CANARY-XYZ");
        bytes.extend_from_slice(&[b'.'; 100]);
        std::fs::write(&path, &bytes).unwrap();
        let needles: Vec<&[u8]> = vec![b"CANARY-XYZ", b"absent"];
        assert_eq!(contained(&path, &needles).unwrap(), vec![0]);
    }

    #[test]
    fn a_torn_log_tail_is_measured_not_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries.log");
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&[0, 0, 0, 9, b'x']);
        std::fs::write(&path, &bytes).unwrap();
        let (entries, torn) = read_log(&path).unwrap();
        assert_eq!(entries, vec![b"abc".to_vec()]);
        assert_eq!(torn, 5);
    }
}
