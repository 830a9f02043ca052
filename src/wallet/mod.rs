//! The resident's wallet: a small JSON file (mode 0600, replaced atomically)
//! holding the session with one issuer and the passes obtained from it, and
//! the client side of every resident flow — enrol, log in, log out, erase,
//! and obtaining a pass by RFC 9578 blind issuance.
//!
//! Obtaining a pass ([`Wallet::request`]): fetch the directory, pick the one
//! key it publishes for exactly the wanted class and window, check in the
//! issuer's public audit log that this key was published for everyone (see
//! below), make a random nonce, blind the token input, send the
//! `TokenRequest`, unblind the answer, check the signature, and store the
//! finished token. The issuer sees only the blinded message, so it cannot
//! recognise the pass when it is shown.
//!
//! Key consistency: a key made for one resident alone would tag every pass
//! signed with it. Before blinding, the wallet fetches the audit log,
//! verifies it against a checkpoint signed by the pinned log key, checks
//! that it only grew since the last checkpoint this wallet saw, and refuses
//! a key that has no `signing-key-published` entry for its class and
//! window, or that shares its class and window with another logged key.
//! The log key is the one the user gave, or else the one `/audit/key`
//! served at first use, kept in the wallet file (trust on first use).
//!
//! The wallet file holds bearer secrets (the session token and the passes
//! themselves); it is created readable by its owner only.

pub mod qr;

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::auditor::{KeyProblem, LogError, SavedCheckpoint};
use crate::client::{Client, ClientError, Problem};
use crate::crypto::blind::{IssuerPublicKey, begin_issuance, finalize};
use crate::crypto::secret::Passphrase;
use crate::protocol::api::{Enrolment, Login, NewSession, PersonalData, paths};
use crate::protocol::directory::{Directory, PublishedKey};
use crate::protocol::permit::{ClassName, Window, WindowKind};
use crate::protocol::qr::{decode_payload, encode_payload};
use crate::protocol::token::TokenChallenge;

pub use crate::protocol::api::Enrolled;

/// The client's name before it served every role; the load generator
/// still uses it.
pub type Api = Client;

/// The wallet file format version written by this code.
const FORMAT_VERSION: u32 = 1;

/// Everything that can go wrong in the wallet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// There is no wallet file yet.
    #[error("no wallet at {}", .0.display())]
    NoWallet(PathBuf),
    /// Reading or writing the wallet file (or an output file) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The wallet file is not a wallet this code understands.
    #[error("{} is not a usable wallet file: {detail}", path.display())]
    CorruptWallet {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The server could not be reached (after any retries).
    #[error("could not reach {url}: {detail}")]
    Network {
        /// What was requested.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The server refused, with an RFC 9457 problem document.
    #[error("{0}")]
    Problem(Problem),
    /// The server answered something that is not the documented answer.
    #[error("unexpected answer from the server (HTTP {status}): {detail}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// The wallet holds no session.
    #[error("not logged in")]
    NotLoggedIn,
    /// The directory offers no keys for this class at all.
    #[error("the issuer offers no class {class:?} (offered: {})", offered.join(", "))]
    UnknownClass {
        /// The class asked for.
        class: String,
        /// The classes the directory does offer.
        offered: Vec<String>,
    },
    /// A week was asked of a daily class, or a day of a weekly one.
    #[error("class {class} has {} windows", kind_name(*kind))]
    WrongWindowKind {
        /// The class.
        class: ClassName,
        /// The kind of window the class uses.
        kind: WindowKind,
    },
    /// The directory has no key for this class and window.
    #[error("the issuer publishes no key for {class} in {window}")]
    NoKeyForWindow {
        /// The class.
        class: ClassName,
        /// The window asked for.
        window: Window,
        /// The windows the directory does have keys for.
        available: Vec<Window>,
    },
    /// The directory lists more than one key for one class and window, or
    /// is otherwise inconsistent; using either could single the holder out.
    #[error("the directory is inconsistent: {0}")]
    BadDirectory(String),
    /// The issuer's answer did not unblind to a valid signature.
    #[error("the issuer's signature does not verify; the pass was not stored")]
    BadSignature,
    /// The key the directory offers is not in the issuer's audit log for
    /// its class and window: it may have been made for this wallet alone.
    #[error(
        "the issuer's key {key_id} for {class} in {window} is not in its public audit log; a pass signed with it could single you out"
    )]
    UnloggedKey {
        /// The key id (hex).
        key_id: String,
        /// The class.
        class: ClassName,
        /// The window.
        window: Window,
    },
    /// The audit log publishes more than one key for this class and window,
    /// so holders of each could be told apart.
    #[error(
        "the issuer's audit log publishes {keys} keys for {class} in {window}; a pass from either could single you out"
    )]
    SplitKey {
        /// The class.
        class: ClassName,
        /// The window.
        window: Window,
        /// How many keys.
        keys: usize,
    },
    /// The issuer's audit log failed verification (bad signature, entries
    /// not matching the checkpoint, rolled back or forked).
    #[error("the issuer's audit log does not verify: {0}")]
    AuditLog(String),
    /// The log key given or stored is not a signed-note verifier key.
    #[error("not an audit log key (name+hex id+base64 key): {0}")]
    BadLogKey(String),
    /// There is no pass with this number.
    #[error("no pass number {number} (the wallet holds {count})")]
    NoSuchPass {
        /// The number asked for (1-based).
        number: usize,
        /// How many passes there are.
        count: usize,
    },
    /// A QR code could not be made.
    #[error("cannot draw the QR code: {0}")]
    Qr(String),
    /// Input given by the user cannot be used.
    #[error("{0}")]
    Input(String),
}

impl From<ClientError> for WalletError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Network { url, detail } => WalletError::Network { url, detail },
            ClientError::Problem(problem) => WalletError::Problem(problem),
            ClientError::UnexpectedResponse { status, detail } => {
                WalletError::UnexpectedResponse { status, detail }
            }
        }
    }
}

fn kind_name(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::Day => "one-day",
        WindowKind::IsoWeek => "ISO-week",
    }
}

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

/// Which window to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowChoice {
    /// The class's window that contains this day (the day itself for daily
    /// classes, its ISO week for weekly ones).
    Containing(Date),
    /// Exactly this window; its kind must be the class's.
    Exactly(Window),
}

/// A wallet file, loaded.
#[derive(Debug)]
pub struct Wallet {
    path: PathBuf,
    state: WalletState,
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

    /// The pinned audit log key, if any.
    pub fn log_key(&self) -> Option<&str> {
        self.state.log_key.as_deref()
    }

    /// Pins `key` as the issuer's audit log key (kept on the next save).
    /// Returns whether it replaced a different key; the checkpoint kept for
    /// the old key is then forgotten.
    pub fn pin_log_key(&mut self, key: &str) -> Result<bool, WalletError> {
        let key = key.trim();
        crate::auditor::check_log_key(key).map_err(|_| WalletError::BadLogKey(key.to_owned()))?;
        if self.state.log_key.as_deref() == Some(key) {
            return Ok(false);
        }
        let replaced = self.state.log_key.is_some();
        self.state.log_key = Some(key.to_owned());
        self.state.log_checkpoint = None;
        Ok(replaced)
    }

    /// The pinned log key, or the one the server serves now, pinned and
    /// saved (trust on first use).
    fn log_key_or_first_use(&mut self, api: &Client) -> Result<String, WalletError> {
        if let Some(key) = &self.state.log_key {
            return Ok(key.clone());
        }
        let body = api.get_bytes(paths::AUDIT_KEY)?;
        let key = String::from_utf8_lossy(&body).trim().to_owned();
        if crate::auditor::check_log_key(&key).is_err() {
            return Err(WalletError::UnexpectedResponse {
                status: 200,
                detail: "/audit/key did not serve a log key".into(),
            });
        }
        self.state.log_key = Some(key.clone());
        self.save()?;
        Ok(key)
    }

    /// Checks in the issuer's audit log that `published` is the one key
    /// logged for `class` and `window` (see the module documentation), and
    /// remembers the verified checkpoint.
    fn check_key_logged(
        &mut self,
        api: &Client,
        published: &PublishedKey,
        class: &ClassName,
        window: &Window,
        now: OffsetDateTime,
    ) -> Result<(), WalletError> {
        let log_key = self.log_key_or_first_use(api)?;
        let log = crate::auditor::fetch_log(api, &log_key).map_err(|e| match e {
            LogError::Transport(e) => e.into(),
            LogError::BadLogKey(key) => WalletError::BadLogKey(key),
            LogError::Failed(failure) => WalletError::AuditLog(failure.to_string()),
        })?;
        if let Some(previous) = &self.state.log_checkpoint {
            if previous.log_key == log_key {
                if let Some(failure) = crate::auditor::consistency(previous, &log) {
                    return Err(WalletError::AuditLog(failure.to_string()));
                }
            }
        }
        crate::auditor::key_logged(&log, &published.key_id, class.as_str(), &window.to_string())
            .map_err(|problem| match problem {
                KeyProblem::NotLogged => WalletError::UnloggedKey {
                    key_id: published.key_id.clone(),
                    class: class.clone(),
                    window: *window,
                },
                KeyProblem::Split { key_ids } => WalletError::SplitKey {
                    class: class.clone(),
                    window: *window,
                    keys: key_ids.len(),
                },
            })?;
        self.state.log_checkpoint = Some(log.saved(api.base_url(), &log_key, now));
        Ok(())
    }

    fn remember_server(&mut self, api: &Client) {
        if self.state.server != api.base_url() {
            self.state.server = api.base_url().to_owned();
        }
    }

    /// `POST /v1/residents`: enrols into the current isolation period.
    /// Records the resident and period ids; does not log in.
    pub fn enrol(
        &mut self,
        api: &Client,
        data: &PersonalData,
        password: &Passphrase,
    ) -> Result<Enrolled, WalletError> {
        let body = Enrolment::new(data, password_text(password)?);
        let enrolled: Enrolled = api.post_json(paths::RESIDENTS, &body, None, 201)?;
        self.remember_server(api);
        self.state.resident_id = Some(enrolled.resident_id.clone());
        self.state.period_id = Some(enrolled.period_id.clone());
        self.save()?;
        Ok(enrolled)
    }

    /// `POST /v1/sessions`: logs in and keeps the session token.
    pub fn login(
        &mut self,
        api: &Client,
        document_number: &str,
        password: &Passphrase,
    ) -> Result<&Session, WalletError> {
        let body = Login {
            document_number: document_number.to_owned(),
            password: password_text(password)?.to_owned(),
        };
        let mut answer: NewSession = api.post_json(paths::SESSIONS, &body, None, 201)?;
        let token = SessionToken::new(std::mem::take(&mut answer.session_token));
        self.remember_server(api);
        self.state.session = Some(Session {
            token,
            expires_at: answer.expires_at,
        });
        self.save()?;
        self.state.session.as_ref().ok_or(WalletError::NotLoggedIn)
    }

    /// `DELETE /v1/sessions`: ends the session on the server, then forgets
    /// it. A session the server no longer knows is forgotten too.
    pub fn logout(&mut self, api: &Client) -> Result<(), WalletError> {
        let session = self
            .state
            .session
            .as_ref()
            .ok_or(WalletError::NotLoggedIn)?;
        match api.delete(paths::SESSIONS, session.token.expose_secret()) {
            Ok(()) => {}
            Err(ClientError::Problem(p)) if p.status == 401 => {}
            Err(e) => return Err(e.into()),
        }
        self.state.session = None;
        self.save()
    }

    /// `DELETE /v1/residents/me`: erases the enrolment on the server now.
    /// The session and ids are forgotten; passes already obtained stay
    /// (they do not name the resident and remain valid in their windows).
    pub fn erase(&mut self, api: &Client) -> Result<(), WalletError> {
        let token = self.session()?.token.clone();
        let result = api
            .delete(paths::RESIDENT_ME, token.expose_secret())
            .map_err(WalletError::from);
        self.forget_dead_session(&result)?;
        result?;
        self.state.session = None;
        self.state.resident_id = None;
        self.state.period_id = None;
        self.save()
    }

    /// The session, if logged in. Its expiry is not checked against the
    /// local clock, which may be off: the server decides, and a `401` makes
    /// the wallet forget the session.
    pub fn session(&self) -> Result<&Session, WalletError> {
        self.state.session.as_ref().ok_or(WalletError::NotLoggedIn)
    }

    /// A `401` means the server no longer honours the session: drop it so
    /// the next command says "log in" instead of failing the same way.
    fn forget_dead_session<T>(
        &mut self,
        result: &Result<T, WalletError>,
    ) -> Result<(), WalletError> {
        if let Err(WalletError::Problem(p)) = result {
            if p.status == 401 {
                self.state.session = None;
                self.save()?;
            }
        }
        Ok(())
    }

    /// Obtains a pass of `class` for the chosen window by blind issuance and
    /// stores it. Returns its number (1-based) in the wallet.
    ///
    /// A network failure during the token request is retried with the same
    /// blinded message (see [`Api::token_request`]), so it is never charged
    /// twice against the quota.
    pub fn request(
        &mut self,
        api: &Client,
        class: &ClassName,
        choice: WindowChoice,
        now: OffsetDateTime,
    ) -> Result<usize, WalletError> {
        let session = self.session()?.token.clone();
        let directory = api.directory()?;
        let (published, window) = select_key(&directory, class, choice)?;
        self.check_key_logged(api, published, class, &window, now)?;
        let spki = published
            .spki()
            .map_err(|e| WalletError::BadDirectory(format!("key {}: {e}", published.key_id)))?;
        let key = IssuerPublicKey::from_spki(&spki).map_err(|_| {
            WalletError::BadDirectory(format!(
                "key {} is not a 2048-bit RSA-PSS key",
                published.key_id
            ))
        })?;
        let digest = TokenChallenge::permit(&directory.issuer_name)
            .digest()
            .map_err(|e| WalletError::BadDirectory(format!("issuer-name: {e}")))?;
        let (request, pending) = begin_issuance(&key, digest).map_err(|_| {
            WalletError::BadDirectory(format!("key {} cannot blind a token", published.key_id))
        })?;
        let result = api
            .token_request(session.expose_secret(), class, &window, &request)
            .map_err(WalletError::from);
        self.forget_dead_session(&result)?;
        let response = result?;
        let token = finalize(&pending, &response).map_err(|_| WalletError::BadSignature)?;
        // finalize already verified; check once more through the verifier's
        // own path, so a stored pass is one a verifier will accept.
        key.verify_signature(&token)
            .map_err(|_| WalletError::BadSignature)?;
        let payload = encode_payload(&token);
        debug_assert!(decode_payload(&payload).is_ok());
        self.state.passes.push(StoredPass {
            payload,
            class: class.clone(),
            window,
            key_id: key.key_id().to_hex(),
            obtained_at: now,
        });
        self.save()?;
        Ok(self.state.passes.len())
    }

    /// Removes pass number `number` (1-based) and returns it.
    pub fn forget(&mut self, number: usize) -> Result<StoredPass, WalletError> {
        self.pass(number)?;
        let pass = self.state.passes.remove(number - 1);
        self.save()?;
        Ok(pass)
    }
}

/// The one key the directory publishes for `class` in the chosen window.
///
/// Exactly one is required: a class and window with two keys would let the
/// issuer sort holders into smaller groups by which key they were given.
pub fn select_key<'d>(
    directory: &'d Directory,
    class: &ClassName,
    choice: WindowChoice,
) -> Result<(&'d PublishedKey, Window), WalletError> {
    let of_class: Vec<&PublishedKey> = directory
        .keys
        .iter()
        .filter(|k| &k.class == class)
        .collect();
    let Some(first) = of_class.first() else {
        let mut offered: Vec<String> = directory.keys.iter().map(|k| k.class.to_string()).collect();
        offered.sort();
        offered.dedup();
        return Err(WalletError::UnknownClass {
            class: class.to_string(),
            offered,
        });
    };
    let kind = first.window.kind();
    if of_class.iter().any(|k| k.window.kind() != kind) {
        return Err(WalletError::BadDirectory(format!(
            "class {class} has keys with both daily and weekly windows"
        )));
    }
    let window = match choice {
        WindowChoice::Containing(date) => Window::containing(kind, date),
        WindowChoice::Exactly(window) if window.kind() == kind => window,
        WindowChoice::Exactly(_) => {
            return Err(WalletError::WrongWindowKind {
                class: class.clone(),
                kind,
            });
        }
    };
    let matching: Vec<&PublishedKey> = of_class
        .iter()
        .copied()
        .filter(|k| k.window == window)
        .collect();
    match matching.as_slice() {
        [only] => Ok((only, window)),
        [] => {
            let mut available: Vec<Window> = of_class.iter().map(|k| k.window).collect();
            available.sort();
            Err(WalletError::NoKeyForWindow {
                class: class.clone(),
                window,
                available,
            })
        }
        _ => Err(WalletError::BadDirectory(format!(
            "{} keys for {class} in {window}",
            matching.len()
        ))),
    }
}

fn password_text(password: &Passphrase) -> Result<&str, WalletError> {
    std::str::from_utf8(password.expose_secret())
        .map_err(|_| WalletError::Input("the password is not valid UTF-8".into()))
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
    use time::macros::{date, datetime};

    fn key(class: &str, window: &str, spki: &[u8]) -> PublishedKey {
        PublishedKey::new(
            spki,
            ClassName::new(class).unwrap(),
            Window::parse(window).unwrap(),
        )
    }

    fn directory(keys: Vec<PublishedKey>) -> Directory {
        Directory {
            issuer_name: "issuer.test".into(),
            issuer_request_uri: "http://127.0.0.1/token-request".into(),
            generated_at: 0,
            max_age_s: 3600,
            keys,
        }
    }

    fn class(name: &str) -> ClassName {
        ClassName::new(name).unwrap()
    }

    #[test]
    fn a_date_picks_the_day_or_the_iso_week_of_the_class() {
        let dir = directory(vec![
            key("personal", "2026-12-01", b"a"),
            key("personal", "2026-12-02", b"b"),
            key("work", "2026-W49", b"c"),
        ]);
        let (k, w) = select_key(
            &dir,
            &class("personal"),
            WindowChoice::Containing(date!(2026 - 12 - 02)),
        )
        .unwrap();
        assert_eq!(
            (k.token_key.as_str(), w.to_string()),
            (dir.keys[1].token_key.as_str(), "2026-12-02".into())
        );
        // Thursday 3 December is in 2026-W49.
        let (k, w) = select_key(
            &dir,
            &class("work"),
            WindowChoice::Containing(date!(2026 - 12 - 03)),
        )
        .unwrap();
        assert_eq!(
            (k.key_id.as_str(), w.to_string()),
            (dir.keys[2].key_id.as_str(), "2026-W49".into())
        );
    }

    #[test]
    fn missing_wrong_kind_unknown_and_duplicate_keys_are_refused() {
        let dir = directory(vec![
            key("personal", "2026-12-01", b"a"),
            key("work", "2026-W49", b"c"),
        ]);
        let on = |d| WindowChoice::Containing(d);
        assert!(matches!(
            select_key(&dir, &class("personal"), on(date!(2026 - 12 - 05))),
            Err(WalletError::NoKeyForWindow { available, .. }) if available.len() == 1
        ));
        assert!(matches!(
            select_key(&dir, &class("medical"), on(date!(2026 - 12 - 01))),
            Err(WalletError::UnknownClass { offered, .. }) if offered == ["personal", "work"]
        ));
        assert!(matches!(
            select_key(
                &dir,
                &class("work"),
                WindowChoice::Exactly(Window::parse("2026-12-01").unwrap())
            ),
            Err(WalletError::WrongWindowKind {
                kind: WindowKind::IsoWeek,
                ..
            })
        ));
        // Two keys for one class and window: either could tag its holders.
        let dir = directory(vec![
            key("personal", "2026-12-01", b"a"),
            key("personal", "2026-12-01", b"b"),
        ]);
        assert!(matches!(
            select_key(&dir, &class("personal"), on(date!(2026 - 12 - 01))),
            Err(WalletError::BadDirectory(_))
        ));
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
    fn enrolment_body_has_the_documented_shape() {
        let data = PersonalData {
            full_name: "Ivan Petrov".into(),
            date_of_birth: date!(1990 - 05 - 17),
            document_number: "4512 345678".into(),
            address: "Tverskaya 1".into(),
            phone: "+74951234567".into(),
            employer_tax_number: None,
        };
        let body = serde_json::to_vec(&Enrolment::new(&data, "long enough pw")).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["date_of_birth"], "1990-05-17");
        assert_eq!(json["password"], "long enough pw");
        assert!(json.get("employer_tax_number").is_none());
        assert_eq!(json.as_object().unwrap().len(), 6);
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
