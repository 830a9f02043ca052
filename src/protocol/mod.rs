//! Wire formats: RFC 9578 tokens and messages, the QR payload, permit
//! classes and windows, and the key directory. Pure data and parsing — no
//! I/O, no logging, no secrets.

pub mod api;
pub mod base45;
pub mod directory;
pub mod permit;
pub mod qr;
pub mod token;

/// Why a piece of outside input was refused. Each variant names the defect
/// without echoing the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A fixed-size structure had the wrong length.
    #[error("{what} must be {expected} bytes, got {got}")]
    WrongLength {
        /// Which structure.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// The token type is not `0x0002`.
    #[error("unknown token type {0:#06x}")]
    UnknownTokenType(u16),
    /// A structure was inconsistent or truncated.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The QR payload does not start with the blindpass prefix.
    #[error("not a blindpass payload (expected prefix {})", qr::QR_PREFIX)]
    WrongPrefix,
    /// The QR payload body is not valid base45.
    #[error("payload is not valid base45")]
    BadEncoding,
    /// A window is neither `YYYY-MM-DD` nor `YYYY-Www`.
    #[error("window must be a date (2026-12-01) or an ISO week (2026-W49)")]
    BadWindow,
    /// A class name has characters other than `a-z`, `0-9`, `-`.
    #[error("class names are 1-32 characters of a-z, 0-9 and -")]
    BadClassName,
}
