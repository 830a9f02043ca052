//! Route handlers: parse, authenticate, call the core, map the answer.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::Problem;
use super::{AppState, wire};
use crate::crypto::secret::Passphrase;
use crate::ids::PeriodId;
use crate::issuer::accounts::{SessionOwner, Signed};
use crate::issuer::resident::PersonalData;
use crate::issuer::{Authority, IssuerError};
use crate::protocol::api::{
    ChallengeQuery, Enrolled, Enrolment, ExtendPeriod, Login, NewSession, OpenPeriod, PeriodInfo,
    PeriodList, ProblemType, TokenRequestQuery, media,
};
use crate::protocol::permit::{ClassName, Window};
use crate::protocol::token::{TokenChallenge, TokenRequest};

type Answer = Result<Response, Problem>;

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

async fn read_body(state: &AppState, body: Body) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ProblemType::PayloadTooLarge,
                "Payload too large",
                format!(
                    "request bodies are limited to {} bytes",
                    state.config.max_body_bytes
                ),
            )
        })
}

async fn json_body<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Problem> {
    if !content_type_is(headers, media::JSON) {
        return Err(unsupported_media_type(media::JSON));
    }
    let bytes = read_body(state, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message names the field and the expected shape; it can
        // quote a value for some type errors, so only the category goes out.
        let detail = match e.classify() {
            serde_json::error::Category::Data => "a field is missing or has the wrong type",
            _ => "the body is not valid JSON",
        };
        Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemType::MalformedJson,
            "Malformed JSON",
            detail,
        )
    })
}

fn unsupported_media_type(expected: &str) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ProblemType::UnsupportedMediaType,
        "Unsupported media type",
        format!("send Content-Type: {expected}"),
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The per-address limit on login and enrolment attempts.
fn check_rate(state: &AppState, addr: SocketAddr) -> Result<(), Problem> {
    if state
        .limiter
        .allow(addr.ip(), state.config.rate_burst, state.config.rate_per_s)
    {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ProblemType::RateLimited,
            "Too many attempts",
            "slow down and retry in a few seconds",
        ))
    }
}

fn busy() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ProblemType::Timeout,
        "Busy",
        "the server is at capacity; retry shortly",
    )
}

/// Runs `work` on the blocking pool while holding a permit of `pool`, or
/// sheds it at once when too many already wait for one.
async fn blocking<T: Send + 'static>(
    pool: &super::admission::Argon2Pool,
    work: impl FnOnce() -> Result<T, IssuerError> + Send + 'static,
) -> Result<T, Problem> {
    let ticket = pool.admission.try_enter()?;
    let permit = pool
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| busy())?;
    let joined = tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        drop(ticket);
        out
    })
    .await;
    match joined {
        Ok(result) => result.map_err(Problem::from),
        Err(_) => Err(Problem::internal()),
    }
}

/// Runs a call that reads or writes the store from an async handler: on
/// the blocking pool when the store's engine waits on the network (a
/// worker blocked on a round trip serves nothing else meanwhile), in place
/// when it is sled (a lookup in memory, cheaper than the hop).
async fn store_call<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Authority) -> Result<T, IssuerError> + Send + 'static,
) -> Result<T, Problem> {
    let authority = state.authority.clone();
    if !authority.store().waits_on_network() {
        return work(&authority).map_err(Problem::from);
    }
    match tokio::task::spawn_blocking(move || work(&authority)).await {
        Ok(result) => result.map_err(Problem::from),
        Err(_) => Err(Problem::internal()),
    }
}

async fn session(state: &AppState, headers: &HeaderMap) -> Result<SessionOwner, Problem> {
    let token = bearer(headers)
        .ok_or_else(Problem::unauthorized)?
        .to_owned();
    store_call(state, move |authority| authority.session(&token))
        .await?
        .ok_or_else(Problem::unauthorized)
}

fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    let token = bearer(headers).ok_or_else(Problem::unauthorized)?;
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if bool::from(hash.ct_eq(&state.admin_token_hash)) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            ProblemType::Forbidden,
            "Forbidden",
            "this needs the operator's admin token",
        ))
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = state.metrics.render();
    // Several nodes: every node's generation is the same once a ring
    // change (a period opened or destroyed, new keys) has reached it.
    if state.authority.ring_is_shared() {
        body.push_str(&format!(
            "# TYPE blindpass_key_ring_generation gauge\nblindpass_key_ring_generation {}\n",
            state.authority.ring_generation()
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub(super) async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        ProblemType::NotFound,
        "Not found",
        "no such endpoint",
    )
}

pub(super) async fn method_not_allowed() -> Problem {
    super::problem::for_status(StatusCode::METHOD_NOT_ALLOWED)
}

fn with_cache(
    state: &AppState,
    headers: &HeaderMap,
    body: Vec<u8>,
    etag_source: &[u8],
    content_type: &'static str,
) -> Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(etag_source)[..16]));
    let max_age = state.authority.config().directory_max_age_s;
    let cache = format!("public, max-age={max_age}");
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if !not_modified {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

fn directory_etag_source(dir: &crate::protocol::directory::Directory) -> Vec<u8> {
    let mut out = dir.issuer_name.clone().into_bytes();
    for key in &dir.keys {
        out.extend_from_slice(key.key_id.as_bytes());
    }
    out
}

pub(super) async fn rfc_directory(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let dir = state.authority.directory();
    let body = serde_json::to_vec(&dir.to_rfc()).unwrap_or_default();
    with_cache(
        &state,
        &headers,
        body,
        &directory_etag_source(&dir),
        media::RFC_DIRECTORY,
    )
}

pub(super) async fn directory(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let dir = state.authority.directory();
    let body = serde_json::to_vec(&dir).unwrap_or_default();
    with_cache(
        &state,
        &headers,
        body,
        &directory_etag_source(&dir),
        media::JSON,
    )
}

pub(super) async fn enrol(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    check_rate(&state, addr)?;
    let mut body: Enrolment = json_body(&state, &headers, body).await?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date_of_birth = time::Date::parse(body.date_of_birth.trim(), &format).map_err(|_| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::InvalidInput,
            "Invalid input",
            "date_of_birth: must be YYYY-MM-DD",
        )
    })?;
    // The wire body wipes itself on drop; its strings move out, not copy.
    let personal = PersonalData {
        full_name: std::mem::take(&mut body.full_name),
        date_of_birth,
        document_number: std::mem::take(&mut body.document_number),
        address: std::mem::take(&mut body.address),
        phone: std::mem::take(&mut body.phone),
        employer_tax_number: body
            .employer_tax_number
            .take()
            .filter(|t| !t.trim().is_empty()),
    };
    let password = Passphrase::new(std::mem::take(&mut body.password));
    let authority = state.authority.clone();
    let params = state.config.password_params;
    let (period, resident) = blocking(&state.argon2, move || {
        authority.enrol_with_password(personal, &password, params)
    })
    .await?;
    state.metrics.incr("enrolments");
    Ok(json(
        StatusCode::CREATED,
        &Enrolled {
            resident_id: resident.to_string(),
            period_id: period.to_string(),
        },
    ))
}

pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    check_rate(&state, addr)?;
    let mut body: Login = json_body(&state, &headers, body).await?;
    let password = Passphrase::new(std::mem::take(&mut body.password));
    let authority = state.authority.clone();
    let ttl = state.config.session_ttl;
    let params = state.config.password_params;
    let document = std::mem::take(&mut body.document_number);
    let session = blocking(&state.argon2, move || {
        authority.login(&document, &password, ttl, params)
    })
    .await?;
    match session {
        Some(s) => Ok(json(
            StatusCode::CREATED,
            &NewSession {
                session_token: s.token,
                expires_at: s.expires_at,
            },
        )),
        None => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::InvalidCredentials,
            "Invalid credentials",
            "document number or password is wrong",
        )),
    }
}

pub(super) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let token = bearer(&headers)
        .ok_or_else(Problem::unauthorized)?
        .to_owned();
    store_call(&state, move |authority| authority.logout(&token)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn erase(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let owner = session(&state, &headers).await?;
    store_call(&state, move |authority| authority.erase(&owner)).await?;
    state.metrics.incr("erasures");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 422 for a `TokenRequest` the issuer cannot process (RFC 9578 §6.2).
/// The detail is fixed: it never echoes the request's bytes.
fn unprocessable_token_request() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ProblemType::BadTokenRequest,
        "Bad token request",
        "send a blind RSA TokenRequest (token type 2) for a key in the issuer directory",
    )
}

/// A query string that does not parse: 400 `malformed-query`, with a
/// fixed detail that says what the route takes (never the query itself).
fn malformed_query(detail: &'static str) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        ProblemType::MalformedQuery,
        "Malformed query",
        detail,
    )
}

pub(super) async fn token_request(
    State(state): State<AppState>,
    query: Result<Query<TokenRequestQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Query(query) = query
        .map_err(|_| malformed_query("the query may hold class and window, each at most once"))?;
    if !content_type_is(&headers, media::TOKEN_REQUEST) {
        return Err(unsupported_media_type(media::TOKEN_REQUEST));
    }
    let owner = session(&state, &headers).await?;
    let asked_window = match &query.window {
        Some(text) => Some(Window::parse(text).map_err(|_| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::InvalidInput,
                "Invalid input",
                "window: must be YYYY-MM-DD or YYYY-Www",
            )
        })?),
        None => None,
    };
    let bytes = read_body(&state, body).await?;
    let request = TokenRequest::decode(&bytes).map_err(|_| unprocessable_token_request())?;
    // The truncated key id names the key, and the key its class and window.
    let named = state
        .authority
        .keys_for_truncated_id(request.truncated_token_key_id);
    if named.is_empty() {
        return Err(unprocessable_token_request());
    }
    let agrees = |(class, window): &(ClassName, Window)| {
        query.class.as_deref().is_none_or(|c| c == class.as_str())
            && asked_window.is_none_or(|w| w == *window)
    };
    let mut agreeing = named.iter().filter(|k| agrees(k));
    let (class, window) = match (agreeing.next(), agreeing.next()) {
        (Some(key), None) => key.clone(),
        (Some(_), Some(_)) => {
            // Only a ring from before truncated ids were kept unique.
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::AmbiguousKey,
                "Ambiguous key",
                "two keys share this truncated key id; send class and window in the query",
            ));
        }
        (None, _) => {
            // An unknown class is named as such, whatever the key.
            if let Some(asked) = &query.class {
                if let Err(IssuerError::UnknownClass) =
                    state.authority.signing_key(asked, &named[0].1)
                {
                    return Err(IssuerError::UnknownClass.into());
                }
            }
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::KeyMismatch,
                "Key does not match",
                "the token request's key is not the key of the class and window asked for",
            ));
        }
    };
    let class = class.to_string();
    let authority = state.authority.clone();
    // Shed at once when the signing queue is full; the ticket leaves with
    // the job, so a request that timed out still counts until signed.
    let ticket = state.sign_admission.try_enter()?;
    // A signing thread does the signature only; the commit waits for the
    // disk on the committer thread, so the cores keep signing.
    let signed = state
        .signers
        .run(move || {
            let signed = authority.sign_pass(&owner, &class, &window, &request);
            drop(ticket);
            signed
        })
        .await
        .ok_or_else(Problem::internal)??;
    let response = match signed {
        Signed::Again(replay) => state.authority.commit_replay_queued(replay).await?,
        Signed::New(pass) => state.authority.commit_pass_queued(pass).await?,
    };
    state.metrics.incr("passes_issued");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, media::TOKEN_RESPONSE)],
        response.encode(),
    )
        .into_response())
}

/// The RFC 9577 challenge for a pass of `(class, window)`: 401 with
/// `WWW-Authenticate: PrivateToken challenge="…", token-key="…"`, both
/// base64url. A client that knows only RFC 9577/9578 learns from it which
/// key to blind for, then posts to the directory's `issuer-request-uri`.
pub(super) async fn challenge(
    State(state): State<AppState>,
    query: Result<Query<ChallengeQuery>, QueryRejection>,
) -> Answer {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE;
    let Query(query) = query.map_err(|_| malformed_query("send class and window, each once"))?;
    let window = Window::parse(&query.window).map_err(|_| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::InvalidInput,
            "Invalid input",
            "window: must be YYYY-MM-DD or YYYY-Www",
        )
    })?;
    let key = state
        .authority
        .public_key(&query.class, &window)
        .map_err(|e| match e {
            IssuerError::NoSigningKey => IssuerError::WindowOutOfRange,
            other => other,
        })?;
    let challenge = TokenChallenge::permit(&state.authority.directory().issuer_name)
        .encode()
        .map_err(|_| Problem::internal())?;
    let value = format!(
        "PrivateToken challenge=\"{}\", token-key=\"{}\"",
        URL_SAFE.encode(challenge),
        URL_SAFE.encode(key.spki()),
    );
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        ProblemType::TokenRequired,
        "Token required",
        "answer the PrivateToken challenge in WWW-Authenticate",
    )
    .into_response();
    let value = HeaderValue::from_str(&value).map_err(|_| Problem::internal())?;
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, value);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(super) async fn admin_list(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    admin(&state, &headers)?;
    Ok(json(
        StatusCode::OK,
        &PeriodList {
            live: state.authority.periods(),
            destroyed: state
                .authority
                .destroyed_periods()
                .into_iter()
                .map(wire::destroyed)
                .collect(),
        },
    ))
}

pub(super) async fn admin_open(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    admin(&state, &headers)?;
    let body: OpenPeriod = json_body(&state, &headers, body).await?;
    let authority = state.authority.clone();
    let id = state
        .signers
        .run(move || authority.open_period(&body.name, body.ends_at, body.grace_s))
        .await
        .ok_or_else(Problem::internal)??;
    let info = state
        .authority
        .period_info(&id)
        .ok_or_else(Problem::internal)?;
    Ok(json(StatusCode::CREATED, &info))
}

fn period_id(text: &str) -> Result<PeriodId, Problem> {
    PeriodId::parse(text).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            ProblemType::NotFound,
            "Not found",
            "no such period",
        )
    })
}

pub(super) async fn admin_extend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    admin(&state, &headers)?;
    let id = period_id(&id)?;
    let body: ExtendPeriod = json_body(&state, &headers, body).await?;
    Ok(json(
        StatusCode::OK,
        &state.authority.extend_period(&id, body.ends_at)?,
    ))
}

pub(super) async fn admin_end(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    admin(&state, &headers)?;
    let id = period_id(&id)?;
    let mut info = state.authority.end_period(&id)?;
    if info.grace_s == 0 {
        // Nothing to wait for: destroy now rather than at the next tick,
        // and answer what is true after it: still live (destruction
        // pending) or gone from the live periods, destroyed.
        crate::scheduler::tick_now(state.authority.clone()).await;
        info = match state.authority.period_info(&id) {
            Some(now) => now,
            None => PeriodInfo {
                destroy_pending: true,
                ..info
            },
        };
    }
    Ok(json(StatusCode::OK, &info))
}

fn text(body: impl Into<axum::body::Body>, cache: &'static str) -> Response {
    let mut response = (StatusCode::OK, body.into()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

pub(super) async fn audit_checkpoint(State(state): State<AppState>) -> Answer {
    // With witnesses, the checkpoint they were last asked to cosign, with
    // every cosignature they gave (see `witness::collector`).
    if let Some(note) = state.cosigned.as_ref().and_then(|c| c.latest()) {
        return Ok(text(note, "no-store"));
    }
    let note = state.authority.journal().checkpoint().map_err(|e| {
        tracing::error!(error = %e, "checkpoint signing failed");
        Problem::internal()
    })?;
    Ok(text(note, "no-store"))
}

pub(super) async fn audit_key(State(state): State<AppState>) -> Response {
    text(
        format!("{}\n", state.authority.journal().verifier_key()),
        "public, max-age=86400",
    )
}

/// `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`.
pub(super) async fn audit_tile(State(state): State<AppState>, Path(path): Path<String>) -> Answer {
    use crate::audit::tlog::parse_index_path;
    let missing = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            ProblemType::NotFound,
            "Not found",
            "no such tile",
        )
    };
    let (kind, rest) = path.split_once('/').ok_or_else(missing)?;
    let (index, width) = parse_index_path(rest).map_err(|_| missing())?;
    let journal = state.authority.journal();
    let body = if kind == "entries" {
        journal.entry_bundle(index, width)
    } else {
        let level: u8 = kind.parse().map_err(|_| missing())?;
        journal.hash_tile(level, index, width)
    }
    .ok_or_else(missing)?;
    // Full tiles never change; partial ones are replaced by wider ones.
    let cache = if width == crate::audit::tlog::TILE_WIDTH {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=10"
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}
