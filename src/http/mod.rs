//! The HTTP face of the issuer (axum): thin handlers over
//! [`crate::issuer::Authority`]. This is the only module that knows axum.
//!
//! Expensive work runs off the async workers, each kind with its own limit,
//! so a login flood cannot starve issuance and neither can stall the async
//! workers: Argon2 (enrolment, login) on the blocking pool behind a
//! semaphore, RSA (issuance, key generation) on a fixed pool of signing
//! threads (`signers`).

pub mod metrics;
pub mod problem;
pub(crate) mod routes;
mod signers;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::crypto::kdf::Argon2Params;
use crate::issuer::Authority;
use metrics::Metrics;
use problem::Problem;

/// Service limits and tuning.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time after which a request is answered with a timeout problem.
    pub request_timeout: Duration,
    /// Argon2id parameters for residents' passwords.
    pub password_params: Argon2Params,
    /// Concurrent Argon2 computations (enrolment, login).
    pub argon2_permits: usize,
    /// Concurrent RSA signatures.
    pub sign_permits: usize,
    /// Session lifetime.
    pub session_ttl: time::Duration,
    /// Login and enrolment attempts per client address: burst size.
    pub rate_burst: u32,
    /// … and refill per second.
    pub rate_per_s: f64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            password_params: Argon2Params::DEFAULT,
            argon2_permits: (cores / 2).max(1),
            sign_permits: cores,
            session_ttl: time::Duration::hours(12),
            rate_burst: 20,
            rate_per_s: 2.0,
        }
    }
}

/// A token bucket per client address, for login and enrolment.
#[derive(Debug, Default)]
struct RateLimiter {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    fn allow(&self, addr: IpAddr, burst: u32, per_s: f64) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Bound memory: forget buckets that have refilled.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_s < f64::from(burst)
            });
        }
        let (tokens, at) = buckets.entry(addr).or_insert((f64::from(burst), now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_s).min(f64::from(burst));
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    authority: Arc<Authority>,
    config: Arc<HttpConfig>,
    admin_token_hash: [u8; 32],
    metrics: Arc<Metrics>,
    argon2: Arc<Semaphore>,
    signers: signers::Signers,
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// State over an authority; `admin_token` is the operator's bearer token.
    pub fn new(
        authority: Arc<Authority>,
        config: HttpConfig,
        admin_token: &str,
    ) -> std::io::Result<Self> {
        use sha2::Digest;
        Ok(Self {
            argon2: Arc::new(Semaphore::new(config.argon2_permits.max(1))),
            signers: signers::Signers::start(config.sign_permits)?,
            authority,
            admin_token_hash: sha2::Sha256::digest(admin_token.as_bytes()).into(),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            limiter: Arc::new(RateLimiter::default()),
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The router with every route and middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route(
            "/.well-known/private-token-issuer-directory",
            get(routes::rfc_directory),
        )
        .route("/v1/directory", get(routes::directory))
        .route("/v1/residents", post(routes::enrol))
        .route("/v1/residents/me", delete(routes::erase))
        .route("/v1/sessions", post(routes::login).delete(routes::logout))
        .route("/token-request", post(routes::token_request))
        .route(
            "/v1/admin/periods",
            get(routes::admin_list).post(routes::admin_open),
        )
        .route("/v1/admin/periods/{id}/extend", post(routes::admin_extend))
        .route("/v1/admin/periods/{id}/end", post(routes::admin_end))
        .route("/audit/checkpoint", get(routes::audit_checkpoint))
        .route("/audit/key", get(routes::audit_key))
        .route("/audit/tile/{*path}", get(routes::audit_tile))
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        // The body limit is enforced in the body readers (to answer with a
        // problem document); this only stops axum buffering more than that.
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Times, limits and logs every request. Logs carry the route template and
/// status only: no query, no body, no client address.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = match tokio::time::timeout(state.config.request_timeout, next.run(request)).await
    {
        Ok(response) => response,
        Err(_) => Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Timed out",
            "the request took too long; retry later",
        )
        .into_response(),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe(&route, status, elapsed);
    // One line per request is a write per pass at thousands of passes a
    // second: routine answers go to debug (the metrics count them), server
    // failures stay visible.
    let elapsed_ms = elapsed.as_millis() as u64;
    if status >= 500 {
        tracing::warn!(%method, route = %route, status, elapsed_ms, "request");
    } else {
        tracing::debug!(%method, route = %route, status, elapsed_ms, "request");
    }
    response
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
