//! The HTTP face of the issuer (axum): thin handlers over
//! [`crate::issuer::Authority`]. This is the only module that knows axum.
//!
//! Expensive work runs off the async workers, each kind with its own limit,
//! so a login flood cannot starve issuance and neither can stall the async
//! workers: Argon2 (enrolment, login) on the blocking pool behind a
//! semaphore, RSA (issuance, key generation) on a fixed pool of signing
//! threads (`signers`). In front of each pool a bound on the queue
//! (`admission`) sheds the excess at once with 503 and `Retry-After`.
//!
//! Connections are served by our own accept loop over hyper (`serve`):
//! a cap on open connections and a header read timeout, so clients that
//! never finish a request cannot hold every descriptor.

mod admission;
mod health;
pub mod metrics;
pub mod problem;
pub(crate) mod routes;
mod signers;
mod web;
mod wire;
pub mod witness;

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
use crate::protocol::api::{ProblemType, paths};
use metrics::Metrics;
use problem::Problem;

/// Enrolments and logins that may wait per Argon2 permit. A hash at the
/// default parameters takes 25–40 ms of one core here (raw Argon2id 24–37
/// per second in `blindpass bench enrol`), so 10 waiting is a quarter to
/// half a second of queue.
pub const ARGON2_QUEUE_PER_PERMIT: usize = 10;

/// Token requests that may wait per signing thread. The server answers
/// about 2,100 passes/s on this machine's two cores (`blindpass bench
/// issue`); by Little's law 16 waiting per thread is about 16 ms of queue.
/// 64 per thread let the admitted p99 reach 200 ms (`docs/benchmarks.md`).
pub const SIGN_QUEUE_PER_THREAD: usize = 16;

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
    /// Open connections at most; past this the server stops accepting
    /// until one closes (the kernel's backlog holds the next ones).
    pub max_connections: usize,
    /// Time a connection may take to send a complete request head, and
    /// may stay idle between requests, before it is closed.
    pub header_read_timeout: Duration,
    /// Enrolments and logins that may wait for an Argon2 permit; more
    /// are shed with 503.
    pub argon2_queue: usize,
    /// Token requests that may wait for a signing thread; more are shed
    /// with 503.
    pub sign_queue: usize,
    /// Free bytes under the data directory below which `/readyz` fails.
    pub min_free_disk_bytes: u64,
    /// How often the health endpoints may probe the store (a write and a
    /// flush); answers in between reuse the last result.
    pub health_probe_interval: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let argon2_permits = (cores / 2).max(1);
        Self {
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            password_params: Argon2Params::DEFAULT,
            argon2_permits,
            sign_permits: cores,
            session_ttl: time::Duration::hours(12),
            rate_burst: 20,
            rate_per_s: 2.0,
            max_connections: default_max_connections(),
            header_read_timeout: Duration::from_secs(10),
            argon2_queue: ARGON2_QUEUE_PER_PERMIT * argon2_permits,
            sign_queue: SIGN_QUEUE_PER_THREAD * cores,
            min_free_disk_bytes: 64 * 1024 * 1024,
            health_probe_interval: Duration::from_secs(1),
        }
    }
}

/// The connection cap when none is configured: the process's descriptor
/// limit less a reserve for the store, the vault, the audit log and the
/// thread pools, at least 64 and at most 4,096.
fn default_max_connections() -> usize {
    const RESERVE: u64 = 128;
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(4096 + RESERVE);
    usize::try_from(soft.saturating_sub(RESERVE).clamp(64, 4096)).unwrap_or(4096)
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
    argon2: Arc<admission::Argon2Pool>,
    signers: signers::Signers,
    sign_admission: Arc<admission::Admission>,
    limiter: Arc<RateLimiter>,
    health: Arc<health::Health>,
    /// The checkpoint with its witnesses' cosignatures, when collected.
    cosigned: Option<Arc<crate::witness::collector::Cosigned>>,
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
        let metrics = Arc::new(Metrics::default());
        Ok(Self {
            argon2: Arc::new(admission::Argon2Pool {
                permits: Arc::new(Semaphore::new(config.argon2_permits.max(1))),
                admission: admission::Admission::new(
                    config.argon2_permits.max(1),
                    config.argon2_queue,
                    metrics.clone(),
                    "shed_argon2",
                ),
            }),
            signers: signers::Signers::start(config.sign_permits)?,
            sign_admission: admission::Admission::new(
                config.sign_permits.max(1),
                config.sign_queue,
                metrics.clone(),
                "shed_signing",
            ),
            health: Arc::default(),
            authority,
            admin_token_hash: sha2::Sha256::digest(admin_token.as_bytes()).into(),
            config: Arc::new(config),
            metrics,
            limiter: Arc::new(RateLimiter::default()),
            cosigned: None,
        })
    }

    /// The same state serving, at `/audit/checkpoint`, the latest checkpoint
    /// with the cosignatures the witness collector got for it.
    pub fn with_cosignatures(mut self, cosigned: Arc<crate::witness::collector::Cosigned>) -> Self {
        self.cosigned = Some(cosigned);
        self
    }

    /// The metrics registry, shared (for background tasks' counters).
    pub fn shared_metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The router with every route and middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(paths::HEALTHZ, get(health::healthz))
        .route(paths::READYZ, get(health::readyz))
        .route(paths::METRICS, get(routes::metrics))
        .route(paths::RFC_DIRECTORY, get(routes::rfc_directory))
        .route(paths::DIRECTORY, get(routes::directory))
        .route(paths::RESIDENTS, post(routes::enrol))
        .route(paths::RESIDENT_ME, delete(routes::erase))
        .route(paths::SESSIONS, post(routes::login).delete(routes::logout))
        .route(paths::TOKEN_REQUEST, post(routes::token_request))
        .route(paths::CHALLENGE, get(routes::challenge))
        .route(
            paths::ADMIN_PERIODS,
            get(routes::admin_list).post(routes::admin_open),
        )
        .route(paths::ADMIN_PERIOD_EXTEND, post(routes::admin_extend))
        .route(paths::ADMIN_PERIOD_END, post(routes::admin_end))
        .route(paths::AUDIT_CHECKPOINT, get(routes::audit_checkpoint))
        .route(paths::AUDIT_KEY, get(routes::audit_key))
        .route(paths::AUDIT_TILE, get(routes::audit_tile))
        .merge(web::routes())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // axum's own rejections (path, method, body limit) answer in text;
        // every error leaves as problem+json.
        .layer(middleware::map_response(problem::ensure_problem))
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
            ProblemType::Timeout,
            "Timed out",
            "the request took too long; retry later",
        )
        .with_retry_after_s(1)
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

/// Serves `router(state)` on `listener` until `shutdown` resolves, then
/// lets open connections finish their requests and returns.
///
/// At most `max_connections` are open at once: when the cap is reached the
/// loop stops accepting until a connection closes. Each connection must
/// send a complete request head within `header_read_timeout`, and is closed
/// after idling that long between requests. Client addresses reach the
/// handlers (for rate limits) but never a log line.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = state.config.max_connections;
    let header_read_timeout = state.config.header_read_timeout;
    let metrics = state.metrics.clone();
    let at_cap = move || metrics.incr("connection_cap_reached");
    accept_loop(
        listener,
        router(state),
        max_connections,
        header_read_timeout,
        at_cap,
        shutdown,
    )
    .await
}

/// The accept loop behind [`serve`] and the witness's server: at most
/// `max_connections` open at once (`at_cap` is called each time the cap
/// stops the loop), `header_read_timeout` per connection, and at shutdown
/// no new connection while the open ones finish their requests.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    header_read_timeout: Duration,
    at_cap: impl Fn(),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_connections));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                at_cap();
                tokio::select! {
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        // The semaphore is never closed.
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before it
                    // was accepted: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            stream,
            addr,
            app.clone(),
            header_read_timeout,
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every open connection holds a slot: all slots back means all closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// Serves one connection until it closes, or until shutdown lets its
/// request in flight finish.
async fn connection(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    use tower::ServiceExt as _;
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        // A connection error (a reset, a header timeout) only ends it.
        _ = conn.as_mut() => return,
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
