//! The blindpass HTTP API as data (`docs/api.md`): the route paths, the
//! media types, every JSON request and response body, and the problem
//! types. The server's router and handlers and every client use these
//! definitions, so the contract is written once. No I/O.
//!
//! Bodies that carry a password or personal data are wiped on drop and
//! redacted in `Debug`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ids::PeriodId;

/// Route paths. Templates with `{…}` segments are the router's; the
/// functions beside them fill the segments in for clients.
pub mod paths {
    use std::fmt::Display;

    /// Liveness.
    pub const HEALTHZ: &str = "/healthz";
    /// Readiness.
    pub const READYZ: &str = "/readyz";
    /// Prometheus metrics.
    pub const METRICS: &str = "/metrics";
    /// The RFC 9578 §4 issuer directory.
    pub const RFC_DIRECTORY: &str = "/.well-known/private-token-issuer-directory";
    /// The blindpass directory (keys with class and window).
    pub const DIRECTORY: &str = "/v1/directory";
    /// Enrolment.
    pub const RESIDENTS: &str = "/v1/residents";
    /// The logged-in resident (erasure).
    pub const RESIDENT_ME: &str = "/v1/residents/me";
    /// Log in (`POST`) and out (`DELETE`).
    pub const SESSIONS: &str = "/v1/sessions";
    /// The directory's `issuer-request-uri`: RFC 9578 token requests.
    pub const TOKEN_REQUEST: &str = "/token-request";
    /// The RFC 9577 challenge for a class and window.
    pub const CHALLENGE: &str = "/v1/challenge";
    /// List (`GET`) and open (`POST`) isolation periods.
    pub const ADMIN_PERIODS: &str = "/v1/admin/periods";
    /// Extend a period (router template).
    pub const ADMIN_PERIOD_EXTEND: &str = "/v1/admin/periods/{id}/extend";
    /// End a period (router template).
    pub const ADMIN_PERIOD_END: &str = "/v1/admin/periods/{id}/end";
    /// The audit log's signed checkpoint.
    pub const AUDIT_CHECKPOINT: &str = "/audit/checkpoint";
    /// The audit log's verifier key.
    pub const AUDIT_KEY: &str = "/audit/key";
    /// Hash tiles and entry bundles (router template).
    pub const AUDIT_TILE: &str = "/audit/tile/{*path}";
    /// A witness's submission route (C2SP tlog-witness), below its URL.
    pub const WITNESS_ADD_CHECKPOINT: &str = "/add-checkpoint";
    /// A witness's verifier key.
    pub const WITNESS_KEY: &str = "/key";

    /// [`ADMIN_PERIOD_EXTEND`] for the period `id` (a `PeriodId` or its hex).
    pub fn admin_period_extend(id: impl Display) -> String {
        format!("{ADMIN_PERIODS}/{id}/extend")
    }

    /// [`ADMIN_PERIOD_END`] for the period `id` (a `PeriodId` or its hex).
    pub fn admin_period_end(id: impl Display) -> String {
        format!("{ADMIN_PERIODS}/{id}/end")
    }

    /// An entry bundle: `tile/entries/<index path>[.p/<width>]`, the
    /// part after `/audit/` built by `audit::tlog::index_path`.
    pub fn audit_tile(tile_path: &str) -> String {
        format!("/audit/tile/{tile_path}")
    }

    /// Pages, not API: the web faces `http::web` serves (HTML, the service
    /// worker and static files). They answer `GET` only and are no part of
    /// the contract in `docs/api.md`.
    pub mod pages {
        /// The resident wallet.
        pub const WALLET: &str = "/";
        /// The verifier.
        pub const VERIFY: &str = "/verify";
        /// The public deletion page.
        pub const TRANSPARENCY: &str = "/transparency";
        /// The service worker, at the root so that its scope covers every
        /// page.
        pub const SERVICE_WORKER: &str = "/sw.js";
        /// Scripts, styles, the web app manifests, the icon and the QR
        /// reader's wasm (router template).
        pub const ASSET: &str = "/assets/{name}";
    }
}

/// Media types.
pub mod media {
    /// JSON bodies.
    pub const JSON: &str = "application/json";
    /// RFC 9457 problem documents.
    pub const PROBLEM_JSON: &str = "application/problem+json";
    /// RFC 9578 `TokenRequest`.
    pub const TOKEN_REQUEST: &str = "application/private-token-request";
    /// RFC 9578 `TokenResponse`.
    pub const TOKEN_RESPONSE: &str = "application/private-token-response";
    /// RFC 9578 §4 issuer directory.
    pub const RFC_DIRECTORY: &str = "application/private-token-issuer-directory";
    /// A witness's 409 answer: the tree size it holds (C2SP tlog-witness).
    pub const TLOG_SIZE: &str = "text/x.tlog.size";
}

/// The base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://blindpass.dev/problems/";

macro_rules! problem_types {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Every problem the server answers with; the last segment of the
        /// problem document's `type` URI (`docs/api.md`, "Problem types").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ProblemType {
            $($(#[$doc])* $variant,)*
        }

        impl ProblemType {
            /// Every problem type, in the order of `docs/api.md`.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The stable name (the last segment of the type URI).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $name,)*
                }
            }
        }

        impl FromStr for ProblemType {
            type Err = UnknownProblemType;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $($name => Ok(ProblemType::$variant),)*
                    _ => Err(UnknownProblemType),
                }
            }
        }
    };
}

problem_types! {
    /// 422: a field breaks a rule (the detail names the field).
    InvalidInput => "invalid-input",
    /// 400: the JSON body does not parse or lacks a field.
    MalformedJson => "malformed-json",
    /// 415: the body has another content type than the route takes.
    UnsupportedMediaType => "unsupported-media-type",
    /// 413: the body exceeds the limit.
    PayloadTooLarge => "payload-too-large",
    /// 409: the identity document is already enrolled.
    DuplicateDocument => "duplicate-document",
    /// 503: no isolation period is open.
    NoOpenPeriod => "no-open-period",
    /// 401: wrong document number or password.
    InvalidCredentials => "invalid-credentials",
    /// 401: a missing or unknown bearer token.
    Unauthorized => "unauthorized",
    /// 401: the session has expired.
    SessionExpired => "session-expired",
    /// 403: the admin token is wrong.
    Forbidden => "forbidden",
    /// 404: no such permit class.
    UnknownClass => "unknown-class",
    /// 422: the window is past or has no published key.
    WindowOutOfRange => "window-out-of-range",
    /// 403: the enrolment lacks data the class needs.
    NotEligible => "not-eligible",
    /// 429: no more passes of this class this ISO week.
    QuotaExceeded => "quota-exceeded",
    /// 422: a `TokenRequest` the issuer cannot process (RFC 9578 §6.2).
    BadTokenRequest => "bad-token-request",
    /// 422: the request's key is not the one of the class and window asked for.
    KeyMismatch => "key-mismatch",
    /// 422: two kept keys share the truncated key id; the query must choose.
    AmbiguousKey => "ambiguous-key",
    /// 400: the query string does not parse.
    MalformedQuery => "malformed-query",
    /// 401: the RFC 9577 challenge (`/v1/challenge`).
    TokenRequired => "token-required",
    /// 400: anything else malformed.
    BadRequest => "bad-request",
    /// 405: the route does not take this method.
    MethodNotAllowed => "method-not-allowed",
    /// 404: no such route, period or tile.
    NotFound => "not-found",
    /// 410: the isolation period has ended.
    PeriodEnded => "period-ended",
    /// 429: too many login or enrolment attempts from one address.
    RateLimited => "rate-limited",
    /// 503: the request took too long, or the server is busy.
    Timeout => "timeout",
    /// 503: a bounded queue is full (with `Retry-After`).
    Overloaded => "overloaded",
    /// 503: the store failed a write.
    StoreUnwritable => "store-unwritable",
    /// 503: free disk space is below the minimum.
    DiskLow => "disk-low",
    /// 503: this node (one of several) has not confirmed the shared key
    /// ring lately, so it holds no keys until it has; another node can
    /// answer.
    RingStale => "ring-stale",
    /// 500: the server failed; nothing else is said.
    Internal => "internal",
    /// 404, a witness's answer: it does not witness the checkpoint's log.
    UnknownLog => "unknown-log",
    /// 403, a witness's answer: no signature on the checkpoint verifies
    /// under the log's key.
    BadLogSignature => "bad-log-signature",
    /// 422, a witness's answer: the consistency proof does not verify.
    BadConsistencyProof => "bad-consistency-proof",
}

impl ProblemType {
    /// The full `type` URI.
    pub fn uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.as_str())
    }

    /// The problem type a `type` URI names, if it is one of ours.
    pub fn from_uri(uri: &str) -> Option<Self> {
        uri.strip_prefix(PROBLEM_BASE)?.parse().ok()
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`ProblemType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a blindpass problem type")]
pub struct UnknownProblemType;

/// An RFC 9457 problem document as it travels. Clients read it leniently
/// (every member optional); the server always sends all four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemDocument {
    /// The type URI (`PROBLEM_BASE` + a [`ProblemType`] name).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Short human summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Human explanation; never personal data or request bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a resident gives at enrolment (without the password). The wallet
/// sends it as an [`Enrolment`]; the issuer validates it
/// (`issuer::resident`) and seals it as the resident's record, in this
/// serialisation.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct PersonalData {
    /// Full name as on the identity document.
    pub full_name: String,
    /// `YYYY-MM-DD`.
    #[zeroize(skip)]
    pub date_of_birth: Date,
    /// Identity document number (letters and digits; spaces and dashes ignored).
    pub document_number: String,
    /// Home address.
    pub address: String,
    /// Phone number in international form, e.g. `+74951234567`.
    pub phone: String,
    /// Employer tax number, required by classes that say so.
    #[serde(default)]
    pub employer_tax_number: Option<String>,
}

impl fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonalData(<redacted>)")
    }
}

/// `POST /v1/residents`: what a resident gives at enrolment, and the
/// password. `date_of_birth` travels as `YYYY-MM-DD` text, so the server
/// can name that field when it does not parse.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// Full name as on the identity document.
    pub full_name: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Identity document number.
    pub document_number: String,
    /// Home address.
    pub address: String,
    /// Phone number in international form.
    pub phone: String,
    /// Employer tax number, for classes that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employer_tax_number: Option<String>,
    /// The password for later logins.
    pub password: String,
}

impl Enrolment {
    /// The body for `data` and `password`.
    pub fn new(data: &PersonalData, password: &str) -> Self {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Self {
            full_name: data.full_name.clone(),
            // A `Date` always formats as `YYYY-MM-DD` with a four-digit
            // year in range; should it ever not, the server refuses the
            // empty field by name.
            date_of_birth: data.date_of_birth.format(&format).unwrap_or_default(),
            document_number: data.document_number.clone(),
            address: data.address.clone(),
            phone: data.phone.clone(),
            employer_tax_number: data.employer_tax_number.clone(),
            password: password.to_owned(),
        }
    }
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Enrolment(<redacted>)")
    }
}

/// `201` to an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The new resident's id (hex).
    pub resident_id: String,
    /// The isolation period enrolled into (hex).
    pub period_id: String,
}

/// `POST /v1/sessions`: log in.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The identity document number enrolled with.
    pub document_number: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Login(<redacted>)")
    }
}

/// `201` to a login: the bearer token for later calls.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct NewSession {
    /// The bearer token (`<period>.<random>`).
    pub session_token: String,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    #[zeroize(skip)]
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("session_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The optional query of a token request: the key named by the request
/// decides class and window; when given, these must agree with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequestQuery {
    /// The permit class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The window (`YYYY-MM-DD` or `YYYY-Www`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// The query of `GET /v1/challenge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeQuery {
    /// The permit class.
    pub class: String,
    /// The window (`YYYY-MM-DD` or `YYYY-Www`).
    pub window: String,
}

/// `POST /v1/admin/periods`: open an isolation period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenPeriod {
    /// The operator's label.
    pub name: String,
    /// When it ends.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Seconds after the end before the key is destroyed.
    #[serde(default)]
    pub grace_s: u64,
}

/// `POST /v1/admin/periods/{id}/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendPeriod {
    /// The new end.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// A live period, without its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodInfo {
    /// Random id.
    pub id: PeriodId,
    /// Operator's label.
    pub name: String,
    /// Opened at.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Ends at.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Grace after the end, seconds.
    pub grace_s: u64,
    /// Destruction deadline.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// Destruction has started.
    pub destroy_pending: bool,
}

/// What remains of a destroyed period: when, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedPeriod {
    /// Random id.
    pub id: PeriodId,
    /// The operator's label.
    pub name: String,
    /// When it was opened.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// The deadline it had.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// When its key was destroyed.
    #[serde(with = "time::serde::rfc3339")]
    pub destroyed_at: OffsetDateTime,
}

/// `200` to `GET /v1/admin/periods`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodList {
    /// Periods whose keys are live.
    pub live: Vec<PeriodInfo>,
    /// Destroyed periods.
    pub destroyed: Vec<DestroyedPeriod>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_round_trips_through_its_name_and_uri() {
        let mut names = std::collections::HashSet::new();
        for &kind in ProblemType::ALL {
            assert_eq!(kind.as_str().parse::<ProblemType>(), Ok(kind));
            assert_eq!(ProblemType::from_uri(&kind.uri()), Some(kind));
            assert!(names.insert(kind.as_str()), "{kind} named twice");
        }
        assert_eq!(names.len(), 33);
        assert_eq!("quota".parse::<ProblemType>(), Err(UnknownProblemType));
        assert_eq!(ProblemType::from_uri("about:blank"), None);
        assert_eq!(
            ProblemType::from_uri("https://example.org/problems/quota-exceeded"),
            None
        );
    }

    #[test]
    fn docs_list_exactly_the_problem_types() {
        let doc = include_str!("../../docs/api.md");
        let section = doc
            .split("## Problem types")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        let listed = section.split("`<name>` one of:").nth(1).unwrap();
        let listed = listed.split('.').next().unwrap();
        let mut names: Vec<&str> = listed
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| !n.is_empty())
            .collect();
        names.sort_unstable();
        let mut ours: Vec<&str> = ProblemType::ALL.iter().map(|k| k.as_str()).collect();
        ours.sort_unstable();
        assert_eq!(names, ours);
    }

    #[test]
    fn secret_bodies_are_redacted() {
        let login = Login {
            document_number: "AB123".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{login:?}");
        assert!(!shown.contains("AB123") && !shown.contains("hunter2"));
        let session = NewSession {
            session_token: "p.secret".into(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(!format!("{session:?}").contains("p.secret"));
    }
}
