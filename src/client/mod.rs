//! One blocking HTTP client of a blindpass server (`docs/api.md`), used by
//! the wallet, the verifier's directory sync, the auditor and the admin
//! CLI: JSON in and out through the bodies of [`crate::protocol::api`],
//! bearer tokens, conditional `GET` (`ETag` / `If-None-Match`), RFC 9457
//! problem documents decoded into a [`ProblemType`], and retries for the
//! one call that is safe to repeat (a token request for the same blinded
//! message).
//!
//! [`Client`] is cheap to clone (the connection pool is shared) and knows
//! nothing of any role; it speaks only the wire contract. Callers that
//! count every answer themselves (the load generator) use
//! [`Client::post_raw`] and [`Client::get_raw`], which return the [`Reply`]
//! as it came.

use std::time::Duration as StdDuration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::protocol::api::{ProblemDocument, ProblemType, TokenRequestQuery, media, paths};
use crate::protocol::directory::Directory;
use crate::protocol::permit::{ClassName, Window};
use crate::protocol::token::{TokenRequest, TokenResponse};

/// Bodies larger than this are refused (a directory of a few hundred keys
/// is well under it).
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// How long one request may take, unless changed with [`Client::with_timeout`].
const DEFAULT_TIMEOUT: StdDuration = StdDuration::from_secs(60);

/// What can go wrong talking to the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
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
    /// The request body could not be written (nothing was sent).
    #[error("the request cannot be written: {0}")]
    Request(String),
    /// The server answered something that is not the documented answer.
    #[error("unexpected answer from the server (HTTP {status}): {detail}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
}

/// An RFC 9457 problem document from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// The problem's type, or `None` for `about:blank` or a type this
    /// client does not know.
    pub kind: Option<ProblemType>,
    /// The short summary.
    pub title: String,
    /// The explanation, if any.
    pub detail: Option<String>,
}

impl Problem {
    /// Whether this is a problem of type `kind`.
    pub fn is(&self, kind: ProblemType) -> bool {
        self.kind == Some(kind)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        let name = self
            .kind
            .map_or("unknown problem type", ProblemType::as_str);
        write!(f, " ({} {name})", self.status)
    }
}

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

/// The answer to a conditional `GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// `304`: what the caller holds is current.
    NotModified,
    /// `200` with the body and the `ETag` to send next time, if any.
    Fresh {
        /// The body.
        body: Vec<u8>,
        /// The entity tag.
        etag: Option<String>,
    },
}

/// An answer read in full, for callers that judge every status
/// themselves (the load generator counts them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `ETag`, if any.
    pub etag: Option<String>,
    /// The `Retry-After` in seconds, if any.
    pub retry_after_s: Option<u64>,
    /// The body (at most 4 MiB).
    pub body: Vec<u8>,
}

impl Reply {
    /// The problem type of an error answer, if it carries a problem
    /// document of a known type.
    pub fn problem_type(&self) -> Option<ProblemType> {
        match error_of(self) {
            ClientError::Problem(problem) => problem.kind,
            _ => None,
        }
    }
}

/// A client of one blindpass server.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    retry: RetryPolicy,
}

fn agent(timeout: StdDuration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Self {
        Self {
            agent: agent(DEFAULT_TIMEOUT),
            base: base_url.trim_end_matches('/').to_owned(),
            retry: RetryPolicy::default(),
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The same client with another limit on each request's duration.
    pub fn with_timeout(mut self, timeout: StdDuration) -> Self {
        self.agent = agent(timeout);
        self
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn network(&self, url: &str, err: &ureq::Error) -> ClientError {
        ClientError::Network {
            url: url.to_owned(),
            detail: err.to_string(),
        }
    }

    fn finish(
        &self,
        url: &str,
        response: ureq::http::Response<ureq::Body>,
    ) -> Result<Reply, ClientError> {
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after_s = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response
            .into_body()
            .into_with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|e| self.network(url, &e))?;
        Ok(Reply {
            status,
            etag,
            retry_after_s,
            body,
        })
    }

    /// Sends a JSON body serialized into a buffer that is wiped on drop
    /// (bodies may hold a password or personal data).
    fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        bearer: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut bytes = Zeroizing::new(Vec::new());
        serde_json::to_writer(&mut *bytes, body)
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let url = self.url(path);
        let mut request = self.agent.post(&url).header("Content-Type", media::JSON);
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request
            .send(bytes.as_slice())
            .map_err(|e| self.network(&url, &e))?;
        self.finish(&url, response)
    }

    fn get(
        &self,
        path: &str,
        bearer: Option<&str>,
        etag: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let url = self.url(path);
        let mut request = self.agent.get(&url);
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let response = request.call().map_err(|e| self.network(&url, &e))?;
        self.finish(&url, response)
    }

    /// `POST` raw `body` bytes of `content_type`, with an optional bearer
    /// token, once; any status is returned as it came.
    pub fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, ClientError> {
        let url = self.url(path);
        let mut request = self.agent.post(&url).header("Content-Type", content_type);
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.send(body).map_err(|e| self.network(&url, &e))?;
        self.finish(&url, response)
    }

    /// `GET` with an optional bearer token, once; any status is returned
    /// as it came.
    pub fn get_raw(&self, path: &str, bearer: Option<&str>) -> Result<Reply, ClientError> {
        self.get(path, bearer, None)
    }

    /// `POST` `body` as JSON and decode the answer, which must have status
    /// `expected`.
    pub fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        bearer: Option<&str>,
        expected: u16,
    ) -> Result<T, ClientError> {
        expect_json(self.post(path, body, bearer)?, expected)
    }

    /// `GET` with an optional bearer token, decoding a `200` JSON answer.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<T, ClientError> {
        expect_json(self.get(path, bearer, None)?, 200)
    }

    /// `GET` a public resource and return its body, which must come with
    /// status `200` (the audit log's checkpoint, key and tiles).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let reply = self.get(path, None, None)?;
        if reply.status == 200 {
            Ok(reply.body)
        } else {
            Err(error_of(&reply))
        }
    }

    /// `GET` a public resource, conditionally on its `etag` when one is
    /// given: `304` is [`Conditional::NotModified`].
    pub fn get_conditional(
        &self,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Conditional, ClientError> {
        let reply = self.get(path, None, etag)?;
        match reply.status {
            304 if etag.is_some() => Ok(Conditional::NotModified),
            200 => Ok(Conditional::Fresh {
                body: reply.body,
                etag: reply.etag,
            }),
            _ => Err(error_of(&reply)),
        }
    }

    /// `DELETE` with a bearer token, expecting `204`.
    pub fn delete(&self, path: &str, bearer: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        let response = self
            .agent
            .delete(&url)
            .header("Authorization", &format!("Bearer {bearer}"))
            .call()
            .map_err(|e| self.network(&url, &e))?;
        let reply = self.finish(&url, response)?;
        if reply.status == 204 {
            Ok(())
        } else {
            Err(error_of(&reply))
        }
    }

    /// `GET /v1/directory`: the keys with their classes and windows.
    pub fn directory(&self) -> Result<Directory, ClientError> {
        self.get_json(paths::DIRECTORY, None)
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
    ) -> Result<TokenResponse, ClientError> {
        let url = self.url(paths::TOKEN_REQUEST);
        let query = TokenRequestQuery {
            class: Some(class.to_string()),
            window: Some(window.to_string()),
        };
        let body = request.encode();
        let attempts = self.retry.attempts.max(1);
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            let mut call = self.agent.post(&url);
            for (name, value) in [("class", &query.class), ("window", &query.window)] {
                if let Some(value) = value {
                    call = call.query(name, value);
                }
            }
            let outcome = call
                .header("Content-Type", media::TOKEN_REQUEST)
                .header("Authorization", &format!("Bearer {session}"))
                .send(body.as_slice())
                .map_err(|e| self.network(&url, &e))
                .and_then(|response| self.finish(&url, response));
            let retryable = match &outcome {
                Err(ClientError::Network { .. }) => true,
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
                    ClientError::UnexpectedResponse {
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

fn expect_json<T: DeserializeOwned>(reply: Reply, expected: u16) -> Result<T, ClientError> {
    if reply.status != expected {
        return Err(error_of(&reply));
    }
    serde_json::from_slice(&reply.body).map_err(|e| ClientError::UnexpectedResponse {
        status: reply.status,
        detail: format!("the body is not the expected JSON: {e}"),
    })
}

/// The error for a non-success reply: the problem document if there is one.
fn error_of(reply: &Reply) -> ClientError {
    match serde_json::from_slice::<ProblemDocument>(&reply.body) {
        Ok(doc) if doc.title.is_some() || doc.kind.is_some() => ClientError::Problem(Problem {
            status: reply.status,
            kind: doc.kind.as_deref().and_then(ProblemType::from_uri),
            title: doc
                .title
                .unwrap_or_else(|| format!("HTTP {}", reply.status)),
            detail: doc.detail,
        }),
        _ => ClientError::UnexpectedResponse {
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

    fn reply(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            etag: None,
            retry_after_s: None,
            body: body.to_vec(),
        }
    }

    #[test]
    fn problem_documents_are_parsed_and_other_bodies_are_cut_short() {
        let answer = reply(
            429,
            br#"{"type":"https://blindpass.dev/problems/quota-exceeded","title":"Weekly quota exceeded","status":429,"detail":"no more"}"#,
        );
        match error_of(&answer) {
            ClientError::Problem(p) => {
                assert_eq!(answer.problem_type(), Some(ProblemType::QuotaExceeded));
                assert_eq!(p.kind, Some(ProblemType::QuotaExceeded));
                assert!(p.is(ProblemType::QuotaExceeded));
                assert_eq!(p.title, "Weekly quota exceeded");
                assert_eq!(p.detail.as_deref(), Some("no more"));
                assert_eq!(p.status, 429);
            }
            other => panic!("{other:?}"),
        }
        let answer = reply(
            500,
            br#"{"type":"https://example.org/problems/quota-exceeded","title":"x"}"#,
        );
        match error_of(&answer) {
            ClientError::Problem(p) => assert_eq!(p.kind, None),
            other => panic!("{other:?}"),
        }
        let answer = reply(
            502,
            format!("<html>\n{}</html>", "x".repeat(500)).as_bytes(),
        );
        match error_of(&answer) {
            ClientError::UnexpectedResponse { status, detail } => {
                assert_eq!(status, 502);
                assert!(!detail.contains('\n'));
                assert!(detail.chars().count() <= 121);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A one-connection HTTP server that records each request head and
    /// answers it with `respond(head)`.
    fn serve(
        respond: impl Fn(&str) -> String + Send + 'static,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for stream in listener.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                stream.write_all(respond(&head).as_bytes()).unwrap();
                heads.push(head);
            }
            heads
        });
        (base, handle)
    }

    fn response(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn conditional_get_sends_the_etag_and_reads_304_as_not_modified() {
        let (base, server) = serve(|head| {
            if head.contains("if-none-match: \"v1\"") {
                response("304 Not Modified", "etag: \"v1\"\r\n", "")
            } else {
                response("200 OK", "etag: \"v1\"\r\n", "{}")
            }
        });
        let client = Client::new(&base);
        assert_eq!(
            client.get_conditional(paths::DIRECTORY, None).unwrap(),
            Conditional::Fresh {
                body: b"{}".to_vec(),
                etag: Some("\"v1\"".into())
            }
        );
        assert_eq!(
            client
                .get_conditional(paths::DIRECTORY, Some("\"v1\""))
                .unwrap(),
            Conditional::NotModified
        );
        let heads = server.join().unwrap();
        assert!(!heads[0].contains("if-none-match"));
        assert!(heads[1].starts_with("get /v1/directory "));
    }

    #[test]
    fn raw_replies_keep_status_retry_after_and_problem_type() {
        let (base, server) = serve(|_| {
            response(
                "503 Service Unavailable",
                "retry-after: 2\r\ncontent-type: application/problem+json\r\n",
                r#"{"type":"https://blindpass.dev/problems/overloaded","title":"Overloaded","status":503}"#,
            )
        });
        let client = Client::new(&base);
        let reply = client
            .post_raw(paths::TOKEN_REQUEST, media::TOKEN_REQUEST, Some("s"), b"x")
            .unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.retry_after_s, Some(2));
        assert_eq!(reply.problem_type(), Some(ProblemType::Overloaded));
        match client.get_bytes(paths::AUDIT_KEY) {
            Err(ClientError::Problem(p)) => assert!(p.is(ProblemType::Overloaded)),
            other => panic!("{other:?}"),
        }
        let heads = server.join().unwrap();
        assert!(heads[0].contains("authorization: bearer s"));
        assert!(heads[0].contains("content-type: application/private-token-request"));
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        assert_eq!(Client::new("http://x:1/").base_url(), "http://x:1");
        assert_eq!(
            Client::new("http://x:1/").url(paths::DIRECTORY),
            "http://x:1/v1/directory"
        );
    }
}
