//! RFC 9457 problem documents: the one place where errors become HTTP
//! statuses and bodies. Bodies carry a stable `type`, a title and a fixed
//! detail; internal error text goes to the log (without personal data),
//! never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::issuer::IssuerError;
pub use crate::protocol::api::PROBLEM_BASE;
use crate::protocol::api::{ProblemType, media};

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Stable URI naming the problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// Human explanation; never personal data or internals.
    pub detail: String,
    /// Seconds after which a retry may succeed, sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after_s: Option<u32>,
}

impl Problem {
    /// A problem of type `kind`.
    pub fn new(
        status: StatusCode,
        kind: ProblemType,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.uri(),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    /// The same problem with a `Retry-After` of `seconds`.
    pub fn with_retry_after_s(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// 500 with nothing revealed.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::Internal,
            "Internal error",
            "the server failed; the operator has the details",
        )
    }

    /// 401 for a missing or unknown bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::Unauthorized,
            "Unauthorized",
            "send a valid bearer token",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media::PROBLEM_JSON),
        );
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<IssuerError> for Problem {
    fn from(err: IssuerError) -> Self {
        use StatusCode as S;
        match err {
            IssuerError::Invalid(field) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                ProblemType::InvalidInput,
                "Invalid input",
                field.to_string(),
            ),
            IssuerError::DuplicateDocument => Problem::new(
                S::CONFLICT,
                ProblemType::DuplicateDocument,
                "Already enrolled",
                "this identity document is already enrolled in the current period",
            ),
            IssuerError::NoOpenPeriod => Problem::new(
                S::SERVICE_UNAVAILABLE,
                ProblemType::NoOpenPeriod,
                "No open isolation period",
                "enrolment opens when the operator opens an isolation period",
            ),
            IssuerError::PeriodEnded => Problem::new(
                S::GONE,
                ProblemType::PeriodEnded,
                "Isolation period ended",
                "no passes are issued after the isolation period ends",
            ),
            IssuerError::UnknownPeriod => Problem::new(
                S::NOT_FOUND,
                ProblemType::NotFound,
                "Not found",
                "no such live isolation period",
            ),
            IssuerError::UnknownResident => Problem::unauthorized(),
            IssuerError::SessionExpired => Problem::new(
                S::UNAUTHORIZED,
                ProblemType::SessionExpired,
                "Session expired",
                "log in again",
            ),
            IssuerError::UnknownClass => Problem::new(
                S::NOT_FOUND,
                ProblemType::UnknownClass,
                "Unknown permit class",
                "see /v1/directory for the classes offered",
            ),
            IssuerError::NoSigningKey | IssuerError::WindowOutOfRange => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                ProblemType::WindowOutOfRange,
                "Window out of range",
                "passes are issued for current and upcoming windows with published keys",
            ),
            IssuerError::NotEligible => Problem::new(
                S::FORBIDDEN,
                ProblemType::NotEligible,
                "Not eligible",
                "this class needs data your enrolment does not have (e.g. an employer tax number)",
            ),
            IssuerError::QuotaExceeded => Problem::new(
                S::TOO_MANY_REQUESTS,
                ProblemType::QuotaExceeded,
                "Weekly quota exceeded",
                "no more passes of this class this ISO week",
            ),
            IssuerError::BadTokenRequest => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                ProblemType::BadTokenRequest,
                "Bad token request",
                "the token request does not match the key for this class and window",
            ),
            IssuerError::RingStale => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemType::RingStale,
                "Key ring not confirmed",
                "this node has lost touch with the shared key ring; try again, or another node",
            ),
            other => {
                // Internal errors are logged by kind only; none carries personal data.
                tracing::error!(error = %other, "internal error");
                Problem::internal()
            }
        }
    }
}

/// The problem for an error answered before a handler ran or without one:
/// axum's own rejections (path, method, body limit) and anything else that
/// left without a problem document. Keyed by status only, so no detail can
/// carry the request's bytes.
pub fn for_status(status: StatusCode) -> Problem {
    use StatusCode as S;
    let (name, title, detail) = match status {
        S::BAD_REQUEST => (
            ProblemType::BadRequest,
            "Bad request",
            "the request is malformed",
        ),
        S::NOT_FOUND => (ProblemType::NotFound, "Not found", "no such resource"),
        S::METHOD_NOT_ALLOWED => (
            ProblemType::MethodNotAllowed,
            "Method not allowed",
            "this endpoint does not accept that method; see docs/api.md",
        ),
        S::PAYLOAD_TOO_LARGE => (
            ProblemType::PayloadTooLarge,
            "Payload too large",
            "the request body exceeds the limit",
        ),
        S::UNSUPPORTED_MEDIA_TYPE => (
            ProblemType::UnsupportedMediaType,
            "Unsupported media type",
            "send the content type docs/api.md names for this endpoint",
        ),
        S::UNPROCESSABLE_ENTITY => (
            ProblemType::InvalidInput,
            "Invalid input",
            "the request is invalid",
        ),
        s if s.is_server_error() => return Problem::internal(),
        _ => (
            ProblemType::BadRequest,
            "Bad request",
            "the request cannot be served",
        ),
    };
    Problem::new(status, name, title, detail)
}

/// Replaces the body of an error response that is not already a problem
/// document with the problem for its status; keeps its other headers
/// (`Allow` on 405, `Retry-After`).
pub async fn ensure_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == media::PROBLEM_JSON.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let replacement = for_status(status).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::PROBLEM_JSON),
    );
    Response::from_parts(parts, replacement.into_body())
}
