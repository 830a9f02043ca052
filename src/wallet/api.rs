//! A small blocking client for the blindpass HTTP API (`docs/api.md`):
//! JSON in and out, bearer tokens, RFC 9457 problem documents turned into
//! [`WalletError::Problem`], and retries for the one call that is safe to
//! repeat (a token request for the same blinded message).

use std::time::Duration as StdDuration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::WalletError;
use crate::protocol::directory::Directory;
use crate::protocol::permit::{ClassName, Window};
use crate::protocol::token::{TokenRequest, TokenResponse};

/// `Content-Type` of an RFC 9578 token request.
pub const TOKEN_REQUEST_TYPE: &str = "application/private-token-request";

/// Bodies larger than this are refused (a directory of a few hundred keys
/// is well under it).
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// How often, and how patiently, to resend a request that is safe to resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one.
    pub first_delay: StdDuration,
}

impl Default for RetryPolicy {
    /// Four attempts over about 3.5 s.
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: StdDuration::from_millis(500),
        }
    }
}

/// An RFC 9457 problem document from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// The last segment of the problem `type` (`quota-exceeded`, …), or
    /// `about:blank` if the server sent none.
    pub name: String,
    /// The short summary.
    pub title: String,
    /// The explanation, if any.
    pub detail: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        write!(f, " ({} {})", self.status, self.name)
    }
}

#[derive(Deserialize)]
struct ProblemDoc {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// What came back: a status and a body, read in full.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// A client of one blindpass server.
#[derive(Debug, Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
    retry: RetryPolicy,
}

impl Api {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(StdDuration::from_secs(60)))
            .build()
            .into();
        Self {
            agent,
            base: base_url.trim_end_matches('/').to_owned(),
            retry: RetryPolicy::default(),
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn network(&self, url: &str, err: &ureq::Error) -> WalletError {
        WalletError::Network {
            url: url.to_owned(),
            detail: err.to_string(),
        }
    }

    fn finish(
        &self,
        url: &str,
        response: ureq::http::Response<ureq::Body>,
    ) -> Result<Reply, WalletError> {
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .into_with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|e| self.network(url, &e))?;
        Ok(Reply { status, body })
    }

    /// Sends a JSON body that may hold secrets (a password): the caller
    /// passes it already serialized in a buffer that is wiped on drop.
    fn post_json(
        &self,
        path: &str,
        body: &Zeroizing<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<Reply, WalletError> {
        let url = self.url(path);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request
            .send(body.as_slice())
            .map_err(|e| self.network(&url, &e))?;
        self.finish(&url, response)
    }

    fn delete(&self, path: &str, bearer: &str) -> Result<Reply, WalletError> {
        let url = self.url(path);
        let response = self
            .agent
            .delete(&url)
            .header("Authorization", &format!("Bearer {bearer}"))
            .call()
            .map_err(|e| self.network(&url, &e))?;
        self.finish(&url, response)
    }

    fn get(&self, path: &str, bearer: Option<&str>) -> Result<Reply, WalletError> {
        let url = self.url(path);
        let mut request = self.agent.get(&url);
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| self.network(&url, &e))?;
        self.finish(&url, response)
    }

    /// `GET /v1/directory`: the keys with their classes and windows.
    pub fn directory(&self) -> Result<Directory, WalletError> {
        let reply = self.get("/v1/directory", None)?;
        expect_json(reply, 200)
    }

    /// `GET` a public resource and return its body as bytes, which must come
    /// with status `200` (the audit log's checkpoint, key and tiles).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, WalletError> {
        let reply = self.get(path, None)?;
        if reply.status == 200 {
            Ok(reply.body)
        } else {
            Err(error_of(&reply))
        }
    }

    /// `POST` a JSON body (possibly holding a password, hence the wiped buffer) and
    /// decode the answer, which must have status `expected`.
    pub fn post_json_expect<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Zeroizing<Vec<u8>>,
        bearer: Option<&str>,
        expected: u16,
    ) -> Result<T, WalletError> {
        expect_json(self.post_json(path, body, bearer)?, expected)
    }

    /// `GET` with an optional bearer token, decoding a `200` JSON answer.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<T, WalletError> {
        expect_json(self.get(path, bearer)?, 200)
    }

    /// `DELETE` with a bearer token, expecting `204`.
    pub fn delete_expect_no_content(&self, path: &str, bearer: &str) -> Result<(), WalletError> {
        let reply = self.delete(path, bearer)?;
        if reply.status == 204 {
            Ok(())
        } else {
            Err(error_of(&reply))
        }
    }

    /// `POST /token-request?class=..&window=..` with the binary RFC 9578
    /// `TokenRequest`, retried on network failure and on "busy" answers.
    ///
    /// Every attempt sends the very same bytes: the issuer answers a repeated
    /// blinded message with the same signature and charges the quota once,
    /// so a retry can never cost the resident a second pass.
    pub fn token_request(
        &self,
        session: &str,
        class: &ClassName,
        window: &Window,
        request: &TokenRequest,
    ) -> Result<TokenResponse, WalletError> {
        let url = self.url("/token-request");
        let body = request.encode();
        let attempts = self.retry.attempts.max(1);
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            let outcome = self
                .agent
                .post(&url)
                .query("class", class.as_str())
                .query("window", window.to_string())
                .header("Content-Type", TOKEN_REQUEST_TYPE)
                .header("Authorization", &format!("Bearer {session}"))
                .send(body.as_slice())
                .map_err(|e| self.network(&url, &e))
                .and_then(|response| self.finish(&url, response));
            let retryable = match &outcome {
                Err(WalletError::Network { .. }) => true,
                // 503 is the server's "at capacity"; 408 and 504 are
                // timeouts on the way. The request may or may not have been
                // served: resending the same blinded message is safe.
                Ok(reply) => matches!(reply.status, 408 | 503 | 504),
                Err(_) => false,
            };
            if !retryable || attempt >= attempts {
                let reply = outcome?;
                if reply.status != 200 {
                    return Err(error_of(&reply));
                }
                return TokenResponse::decode(&reply.body).map_err(|e| {
                    WalletError::UnexpectedResponse {
                        status: reply.status,
                        detail: e.to_string(),
                    }
                });
            }
            std::thread::sleep(delay);
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
    }
}

fn expect_json<T: DeserializeOwned>(reply: Reply, expected: u16) -> Result<T, WalletError> {
    if reply.status != expected {
        return Err(error_of(&reply));
    }
    serde_json::from_slice(&reply.body).map_err(|e| WalletError::UnexpectedResponse {
        status: reply.status,
        detail: format!("the body is not the expected JSON: {e}"),
    })
}

/// The error for a non-success reply: the problem document if there is one.
fn error_of(reply: &Reply) -> WalletError {
    match serde_json::from_slice::<ProblemDoc>(&reply.body) {
        Ok(doc) if doc.title.is_some() || doc.kind.is_some() => WalletError::Problem(Problem {
            status: reply.status,
            name: doc
                .kind
                .as_deref()
                .map(|k| k.rsplit('/').next().unwrap_or(k).to_owned())
                .unwrap_or_else(|| "about:blank".to_owned()),
            title: doc
                .title
                .unwrap_or_else(|| format!("HTTP {}", reply.status)),
            detail: doc.detail,
        }),
        _ => WalletError::UnexpectedResponse {
            status: reply.status,
            detail: printable_prefix(&reply.body),
        },
    }
}

/// The start of a body as safe, one-line text.
fn printable_prefix(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_are_parsed_and_other_bodies_are_cut_short() {
        let reply = Reply {
            status: 429,
            body: br#"{"type":"https://blindpass.dev/problems/quota-exceeded","title":"Weekly quota exceeded","status":429,"detail":"no more"}"#.to_vec(),
        };
        match error_of(&reply) {
            WalletError::Problem(p) => {
                assert_eq!(p.name, "quota-exceeded");
                assert_eq!(p.title, "Weekly quota exceeded");
                assert_eq!(p.detail.as_deref(), Some("no more"));
                assert_eq!(p.status, 429);
            }
            other => panic!("{other:?}"),
        }
        let reply = Reply {
            status: 502,
            body: format!("<html>\n{}</html>", "x".repeat(500)).into_bytes(),
        };
        match error_of(&reply) {
            WalletError::UnexpectedResponse { status, detail } => {
                assert_eq!(status, 502);
                assert!(!detail.contains('\n'));
                assert!(detail.chars().count() <= 121);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        assert_eq!(Api::new("http://x:1/").base_url(), "http://x:1");
    }
}
