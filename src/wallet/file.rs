//! The wallet file: what it holds (the session, the passes, the pinned
//! audit log key and checkpoint), and opening, saving and editing it. The
//! file is JSON, created with mode 0600 and replaced atomically.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::WalletError;
use crate::auditor::SavedCheckpoint;
use crate::protocol::permit::{ClassName, Window};

/// The wallet file format version written by this code.
const FORMAT_VERSION: u32 = 1;

/// A session token: a bearer secret, wiped on drop and redacted in `Debug`.
/// It is serialized on purpose, into the wallet file only.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionToken(String);

impl SessionToken {
    /// Wraps a token received from the server.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token. Named so that every use is easy to audit.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A logged-in session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The bearer token.
    pub token: SessionToken,
    /// When the server stops accepting it.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A pass in the wallet. The payload is a bearer credential: whoever shows
/// it holds the pass, so it is kept out of `Debug`.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredPass {
    /// The QR payload text, `BP1:` + base45 of the token.
    pub payload: String,
    /// The class its key grants.
    pub class: ClassName,
    /// The window it is valid in.
    pub window: Window,
    /// The signing key's id (hex), for matching against a directory.
    pub key_id: String,
    /// When the wallet obtained it.
    #[serde(with = "time::serde::rfc3339")]
    pub obtained_at: OffsetDateTime,
}

impl fmt::Debug for StoredPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPass")
            .field("class", &self.class)
            .field("window", &self.window)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Where a pass stands in time, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassTime {
    /// Its window has not started.
    Upcoming,
    /// Its window contains now.
    Current,
    /// Its window is over.
    Expired,
}

impl StoredPass {
    /// Where the pass stands at `now`.
    pub fn time_at(&self, now: OffsetDateTime) -> PassTime {
        if now < self.window.starts_at() {
            PassTime::Upcoming
        } else if now < self.window.ends_at() {
            PassTime::Current
        } else {
            PassTime::Expired
        }
    }
}

/// The content of the wallet file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletState {
    /// File format version.
    pub version: u32,
    /// The server this wallet last talked to.
    pub server: String,
    /// The resident id from enrolment (hex), if enrolled from this wallet.
    #[serde(default)]
    pub resident_id: Option<String>,
    /// The isolation period of that enrolment (hex).
    #[serde(default)]
    pub period_id: Option<String>,
    /// The current session, if logged in.
    #[serde(default)]
    pub session: Option<Session>,
    /// The passes, oldest first.
    #[serde(default)]
    pub passes: Vec<StoredPass>,
    /// The issuer's audit log key (signed-note verifier key): given by the
    /// user, or taken from `/audit/key` at first use (trust on first use).
    #[serde(default)]
    pub log_key: Option<String>,
    /// The last audit log checkpoint this wallet verified.
    #[serde(default)]
    pub log_checkpoint: Option<SavedCheckpoint>,
}

/// A wallet file, loaded.
#[derive(Debug)]
pub struct Wallet {
    pub(super) path: PathBuf,
    pub(super) state: WalletState,
}

impl Wallet {
    /// Opens the wallet at `path`.
    pub fn open(path: &Path) -> Result<Self, WalletError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalletError::NoWallet(path.to_owned()));
            }
            Err(source) => {
                return Err(WalletError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let corrupt = |detail: String| WalletError::CorruptWallet {
            path: path.to_owned(),
            detail,
        };
        let state: WalletState =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if state.version != FORMAT_VERSION {
            return Err(corrupt(format!("unknown format version {}", state.version)));
        }
        Ok(Self {
            path: path.to_owned(),
            state,
        })
    }

    /// Opens the wallet at `path`, or starts a new, empty one for `server`
    /// (written on the first change).
    pub fn open_or_new(path: &Path, server: &str) -> Result<Self, WalletError> {
        match Self::open(path) {
            Err(WalletError::NoWallet(_)) => Ok(Self {
                path: path.to_owned(),
                state: WalletState {
                    version: FORMAT_VERSION,
                    server: server.trim_end_matches('/').to_owned(),
                    resident_id: None,
                    period_id: None,
                    session: None,
                    passes: Vec::new(),
                    log_key: None,
                    log_checkpoint: None,
                },
            }),
            other => other,
        }
    }

    /// The wallet file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wallet's content.
    pub fn state(&self) -> &WalletState {
        &self.state
    }

    /// The passes, oldest first; shown to users numbered from 1.
    pub fn passes(&self) -> &[StoredPass] {
        &self.state.passes
    }

    /// Pass number `number` (1-based, as listed).
    pub fn pass(&self, number: usize) -> Result<&StoredPass, WalletError> {
        number
            .checked_sub(1)
            .and_then(|i| self.state.passes.get(i))
            .ok_or(WalletError::NoSuchPass {
                number,
                count: self.state.passes.len(),
            })
    }

    /// Writes the wallet: created with mode 0600, replaced atomically
    /// (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self) -> Result<(), WalletError> {
        let io = |source| WalletError::Io {
            path: self.path.clone(),
            source,
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&self.state).map_err(|e| {
            WalletError::CorruptWallet {
                path: self.path.clone(),
                detail: e.to_string(),
            }
        })?);
        let path = crate::fsutil::with_explicit_parent(&self.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        crate::fsutil::atomic_write(&path, &json).map_err(io)
    }

    /// Removes pass number `number` (1-based) and returns it.
    pub fn forget(&mut self, number: usize) -> Result<StoredPass, WalletError> {
        self.pass(number)?;
        let pass = self.state.passes.remove(number - 1);
        self.save()?;
        Ok(pass)
    }
}

/// Writes an output file holding a pass (a PNG or SVG of its QR code):
/// created readable by its owner only, since the picture is the pass.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let io = |source| WalletError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    // `mode` applies only when the file is created; tighten an existing one.
    crate::fsutil::set_owner_only(path, 0o600).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn class(name: &str) -> ClassName {
        ClassName::new(name).unwrap()
    }

    #[test]
    fn the_wallet_file_is_private_and_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub").join("wallet.json");
        assert!(matches!(Wallet::open(&path), Err(WalletError::NoWallet(_))));
        let mut wallet = Wallet::open_or_new(&path, "http://127.0.0.1:9/").unwrap();
        assert_eq!(wallet.state().server, "http://127.0.0.1:9");
        wallet.state.session = Some(Session {
            token: SessionToken::new("session-secret".into()),
            expires_at: datetime!(2026-12-01 21:00 UTC),
        });
        wallet.state.passes.push(StoredPass {
            payload: "BP1:PAYLOAD-SECRET".into(),
            class: class("personal"),
            window: Window::parse("2026-12-01").unwrap(),
            key_id: "00".repeat(32),
            obtained_at: datetime!(2026-12-01 09:00 UTC),
        });
        wallet.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Wallet::open(&path).unwrap();
        assert_eq!(again.passes().len(), 1);
        assert_eq!(
            again.session().unwrap().token.expose_secret(),
            "session-secret"
        );
        // Secrets stay out of Debug output.
        let shown = format!("{again:?}");
        assert!(!shown.contains("session-secret") && !shown.contains("PAYLOAD-SECRET"));
        assert!(shown.contains("personal"));
        // Numbering is 1-based; forgetting removes and saves.
        assert!(matches!(again.pass(0), Err(WalletError::NoSuchPass { .. })));
        assert!(matches!(
            again.pass(2),
            Err(WalletError::NoSuchPass { count: 1, .. })
        ));
        let mut again = again;
        again.forget(1).unwrap();
        assert!(Wallet::open(&path).unwrap().passes().is_empty());
        // Not a wallet.
        std::fs::write(&path, "{}").unwrap();
        assert!(matches!(
            Wallet::open(&path),
            Err(WalletError::CorruptWallet { .. })
        ));
    }

    #[test]
    fn pass_time_follows_the_window() {
        let pass = StoredPass {
            payload: String::new(),
            class: class("personal"),
            window: Window::parse("2026-12-01").unwrap(),
            key_id: String::new(),
            obtained_at: datetime!(2026-11-30 09:00 UTC),
        };
        assert_eq!(
            pass.time_at(datetime!(2026-11-30 23:59 UTC)),
            PassTime::Upcoming
        );
        assert_eq!(
            pass.time_at(datetime!(2026-12-01 00:00 UTC)),
            PassTime::Current
        );
        assert_eq!(
            pass.time_at(datetime!(2026-12-02 00:00 UTC)),
            PassTime::Expired
        );
    }
}
