//! The offline verifier: a cached copy of the issuer's key directory
//! ([`DirectoryCache`]), the full check of a pass against it
//! ([`DirectoryCache::check`]), and reading a pass from a QR image
//! ([`scan`]).
//!
//! A check needs no network: the directory is synced beforehand and every
//! decision is made from the cached keys. The verifier learns the class and
//! window of a valid pass and nothing else — there is nothing else in it.
//!
//! The check runs in a fixed order, and the first failure is the verdict:
//!
//! 1. strict parse of the QR payload (`BP1:` + base45 of the 354-byte token);
//! 2. the token's `token_key_id` names a key in the cached directory;
//! 3. its `challenge_digest` is the issuer's permit challenge;
//! 4. the RSA-PSS signature verifies under that key;
//! 5. the key's window contains the verifier's clock, widened by the skew.
//!
//! A directory older than its `max-age-s` is still used, and the report says
//! so ([`CheckReport::staleness`]): it is neither silently trusted nor
//! silently rejected.

mod cache;
pub mod scan;

use std::fmt;
use std::path::PathBuf;

use time::{Duration, OffsetDateTime};

use crate::protocol::permit::{ClassName, Window};

pub use cache::{DIRECTORY_FILE, DirectoryCache, SyncOutcome};

/// Why the verifier could not do its job (as opposed to a pass being
/// invalid, which is a [`Verdict`], not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierError {
    /// There is no cached directory yet.
    #[error("no cached directory in {}", .0.display())]
    NoCache(PathBuf),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The cached or fetched directory is not usable (bad JSON, a key that
    /// does not parse or does not match its id, a key id listed twice).
    #[error("the key directory is not usable: {0}")]
    BadDirectory(String),
    /// The server could not be reached.
    #[error("could not reach {url}: {detail}")]
    Network {
        /// What was fetched.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The server answered with an error.
    #[error("{url} answered {status}{}", title.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
    Server {
        /// What was fetched.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The problem title, if the server sent an RFC 9457 document.
        title: Option<String>,
    },
    /// An image could not be read or decoded as PNG/JPEG.
    #[error("cannot read image {}: {detail}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's complaint.
        detail: String,
    },
    /// The image holds no QR code that could be decoded.
    #[error("no readable QR code in {}", .0.display())]
    NoQrCode(PathBuf),
    /// The image is over the scan's bounds (bytes, pixels or time).
    #[error("cannot scan image {}: {detail}", path.display())]
    ImageTooLarge {
        /// The image file.
        path: PathBuf,
        /// Which bound, with the image's figure and the limit.
        detail: String,
    },
}

/// A pass that passed every check. Only [`DirectoryCache::check`] can make
/// one, so holding a `ValidPass` is proof the check ran and succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPass {
    class: ClassName,
    window: Window,
}

impl ValidPass {
    /// The permit class the pass grants.
    pub fn class(&self) -> &ClassName {
        &self.class
    }

    /// The window the pass is valid in.
    pub fn window(&self) -> Window {
        self.window
    }
}

/// Why a pass is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The payload is not a well-formed blindpass token; the detail names
    /// the defect without echoing the input.
    Malformed(String),
    /// The token names a key the cached directory does not have (a forgery,
    /// another issuer, or a directory that needs a sync).
    UnknownKey,
    /// The token answers a different challenge: it was issued for another
    /// issuer name.
    WrongIssuer,
    /// The signature does not verify: the token was altered or forged.
    BadSignature,
    /// A genuine pass whose window has not started yet.
    NotYetValid {
        /// The pass's class.
        class: ClassName,
        /// The pass's window.
        window: Window,
    },
    /// A genuine pass whose window is over.
    Expired {
        /// The pass's class.
        class: ClassName,
        /// The pass's window.
        window: Window,
    },
}

impl InvalidReason {
    /// A stable machine-readable code (`expired`, `bad-signature`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownKey => "unknown-key",
            Self::WrongIssuer => "wrong-issuer",
            Self::BadSignature => "bad-signature",
            Self::NotYetValid { .. } => "not-yet-valid",
            Self::Expired { .. } => "expired",
        }
    }

    /// The class and window of a genuine pass refused only for its time.
    pub fn class_and_window(&self) -> Option<(&ClassName, Window)> {
        match self {
            Self::NotYetValid { class, window } | Self::Expired { class, window } => {
                Some((class, *window))
            }
            _ => None,
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(detail) => write!(f, "malformed payload ({detail})"),
            Self::UnknownKey => f.write_str("unknown key (not in the cached directory)"),
            Self::WrongIssuer => f.write_str("wrong issuer (challenge does not match)"),
            Self::BadSignature => f.write_str("bad signature"),
            Self::NotYetValid { window, .. } => write!(f, "not yet valid (window {window})"),
            Self::Expired { window, .. } => write!(f, "expired (window {window})"),
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Valid(ValidPass),
    /// A check failed; the reason says which.
    Invalid(InvalidReason),
}

impl Verdict {
    /// Whether the pass is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid(_))
    }
}

/// The cached directory is older than its `max-age-s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// When the directory was fetched.
    pub fetched_at: OffsetDateTime,
    /// How long the issuer said it may be relied on.
    pub max_age_s: u64,
    /// How far past its max-age it is.
    pub overdue: Duration,
}

/// A verdict plus what the verifier should say about its own key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Valid or not, and why.
    pub verdict: Verdict,
    /// `Some` when the directory used was stale. The verdict still stands;
    /// the verifier is told so that it syncs.
    pub staleness: Option<Staleness>,
}

impl CheckReport {
    /// Whether the directory used was stale.
    pub fn stale(&self) -> bool {
        self.staleness.is_some()
    }
}
