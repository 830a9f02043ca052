//! The resident's wallet: a small JSON file (mode 0600, replaced atomically)
//! holding the session with one issuer and the passes obtained from it, and
//! the client side of every resident flow — enrol, log in, log out, erase,
//! and obtaining a pass by RFC 9578 blind issuance.
//!
//! One file per job:
//! - `file.rs`: the wallet file — its contents ([`WalletState`], passes,
//!   the session token), opening, saving, forgetting a pass;
//! - `account.rs`: enrol, log in, log out, erase;
//! - `issuance.rs`: obtaining a pass ([`Wallet::request`], [`select_key`]);
//! - `key_check.rs`: checking the issuer's key against its audit log;
//! - `qr.rs`: drawing a pass as a QR code.
//!
//! The wallet talks to the issuer only through [`crate::client::Client`]
//! and the bodies of [`crate::protocol::api`].
//!
//! The wallet file holds bearer secrets (the session token and the passes
//! themselves); it is created readable by its owner only.

mod account;
mod file;
mod issuance;
mod key_check;
pub mod qr;

use std::path::PathBuf;

use crate::client::{ClientError, Problem};
use crate::protocol::permit::{ClassName, Window, WindowKind};

pub use crate::protocol::api::Enrolled;
pub use file::{
    PassTime, Session, SessionToken, StoredPass, Wallet, WalletState, write_private_file,
};
pub use issuance::{WindowChoice, select_key};

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
            ClientError::Request(detail) => WalletError::Input(detail),
        }
    }
}

fn kind_name(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::Day => "one-day",
        WindowKind::IsoWeek => "ISO-week",
    }
}
