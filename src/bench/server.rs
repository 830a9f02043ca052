//! An issuer started inside the benchmark process, through the service's
//! start-up on `127.0.0.1:0` over a fresh data directory, with limits the caller chooses
//! (the per-address rate limit raised, as `blindpass serve --rate-burst
//! --rate-per-s` can also do, so that one load generator on one address is
//! not throttled), and its threads visible to the CPU accounting.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use time::Duration;

use super::{BenchError, ScratchDir};
use blindpass::client::Client;
use blindpass::clock::SystemClock;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::{Passphrase, random_32};
use blindpass::http::HttpConfig;
use blindpass::issuer::{Authority, AuthorityConfig};
use blindpass::protocol::api::{OpenPeriod, PeriodInfo, PeriodList, paths};
use blindpass::service::{
    AdminToken, Expiry, FirstPeriod, KEY_REFRESH, Listen, MasterSource, RunningService, Service,
    ServiceConfig,
};

/// A running in-process issuer; stopped, and its data directory removed,
/// when dropped.
pub struct InProcessServer {
    url: String,
    admin_token: String,
    http: HttpConfig,
    // Shut down (which flushes sled) before the directory is removed.
    service: Option<RunningService>,
    authority: Arc<Authority>,
    _scratch: ScratchDir,
}

impl std::fmt::Debug for InProcessServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl InProcessServer {
    /// Initialises a data directory under `scratch_parent` (real Argon2id
    /// for the master slot, the default classes, signing keys for seven
    /// days), opens a 14-day period, and serves it with `http`, through the
    /// service's own start-up ([`Service::start`]).
    pub fn start(scratch_parent: &Path, http: HttpConfig) -> Result<Self, BenchError> {
        let scratch = ScratchDir::create(scratch_parent, "server")?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr: SocketAddr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let admin_token = hex::encode(random_32());
        let service = Service::start(ServiceConfig {
            data_dir: scratch.path().to_owned(),
            master: MasterSource::Passphrase {
                passphrase: Passphrase::new(hex::encode(random_32())),
                new_slot_argon2: Argon2Params::DEFAULT,
            },
            authority: AuthorityConfig {
                issuer_request_uri: format!("{url}/token-request"),
                ..AuthorityConfig::default()
            },
            clock: Arc::new(SystemClock),
            http: http.clone(),
            admin_token: AdminToken::Given(admin_token.clone()),
            listen: Listen::Bound(listener),
            expiry: Expiry::Cron(blindpass::scheduler::EVERY_MINUTE.to_owned()),
            key_refresh: KEY_REFRESH,
            first_period: Some(FirstPeriod {
                name: "bench".into(),
                length: Duration::days(14),
                grace_s: 0,
            }),
            worker_threads: None,
            thread_name: Some("bench-server".into()),
            witnesses: None,
        })?;
        Ok(Self {
            url,
            admin_token,
            http,
            authority: service.authority().clone(),
            service: Some(service),
            _scratch: scratch,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The limits it runs with.
    pub fn http_config(&self) -> &HttpConfig {
        &self.http
    }

    /// The issuer core behind it.
    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        // Errors no longer matter: the directory goes next.
        if let Some(service) = self.service.take() {
            let _ = service.shutdown();
        }
    }
}

/// Limits for a benchmark server: the defaults of `blindpass serve`
/// (Argon2id parameters, permits, timeouts) except the per-address rate
/// limit, which is raised so that one load generator is not throttled.
pub fn bench_http_config() -> HttpConfig {
    HttpConfig {
        rate_burst: u32::MAX,
        rate_per_s: 1e9,
        ..HttpConfig::default()
    }
}

/// Where a load test sends its requests.
#[derive(Debug, Clone)]
pub enum Target {
    /// A running `blindpass serve`, with the admin token if one was given
    /// (to open a period when none is open).
    External {
        /// Base URL, e.g. `http://127.0.0.1:8080`.
        url: String,
        /// The operator's admin bearer token.
        admin_token: Option<String>,
    },
    /// An issuer started in this process.
    InProcess {
        /// Where its temporary data directory goes.
        scratch_parent: std::path::PathBuf,
        /// Its limits.
        http: HttpConfig,
    },
}

/// A target made ready: the URL to use, and the in-process server if any.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) url: String,
    pub(crate) admin_token: Option<String>,
    pub(crate) server: Option<InProcessServer>,
}

impl Connection {
    pub(crate) fn open(target: &Target) -> Result<Self, BenchError> {
        match target {
            Target::External { url, admin_token } => Ok(Self {
                url: url.trim_end_matches('/').to_owned(),
                admin_token: admin_token.clone(),
                server: None,
            }),
            Target::InProcess {
                scratch_parent,
                http,
            } => {
                let server = InProcessServer::start(scratch_parent, http.clone())?;
                Ok(Self {
                    url: server.url().to_owned(),
                    admin_token: Some(server.admin_token().to_owned()),
                    server: Some(server),
                })
            }
        }
    }

    /// A line for the report's setup.
    pub(crate) fn describe(&self) -> String {
        match &self.server {
            Some(s) => format!(
                "in-process server (sign permits {}, Argon2 permits {}, rate limit off)",
                s.http_config().sign_permits,
                s.http_config().argon2_permits
            ),
            None => format!("server {}", self.url),
        }
    }

    /// Makes sure a period is open for enrolment: if none is and an admin
    /// token is known, opens a 14-day one.
    pub(crate) fn ensure_open_period(&self) -> Result<(), BenchError> {
        let Some(token) = &self.admin_token else {
            return Ok(());
        };
        let client = Client::new(&self.url);
        let list: PeriodList = client
            .get_json(paths::ADMIN_PERIODS, Some(token))
            .map_err(|e| BenchError::Setup(format!("GET {}: {e}", paths::ADMIN_PERIODS)))?;
        let now = time::OffsetDateTime::now_utc();
        let open = list
            .live
            .iter()
            .any(|p| !p.destroy_pending && p.ends_at > now);
        if open {
            return Ok(());
        }
        let body = OpenPeriod {
            name: "bench".into(),
            ends_at: now + Duration::days(14),
            grace_s: 0,
        };
        client
            .post_json::<PeriodInfo>(paths::ADMIN_PERIODS, &body, Some(token), 201)
            .map_err(|e| BenchError::Setup(format!("opening a period: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blindpass::audit::Event;

    /// The load generator's server goes through the service's start-up:
    /// its audit log shows the start, and the period and keys it needs.
    #[test]
    fn the_in_process_server_starts_as_the_service_does() {
        let scratch = tempfile::tempdir().unwrap();
        let server = InProcessServer::start(scratch.path(), bench_http_config()).unwrap();
        let entries = server.authority().journal().entries().unwrap();
        let at = |wanted: fn(&Event) -> bool| entries.iter().position(|e| wanted(&e.event));
        let opened = at(|e| matches!(e, Event::PeriodOpened { .. }));
        let started = at(|e| matches!(e, Event::ServiceStarted));
        let keys = at(|e| matches!(e, Event::SigningKeyPublished { .. }));
        let (Some(opened), Some(started), Some(keys)) = (opened, started, keys) else {
            panic!("a start-up step is missing from the audit log");
        };
        assert!(opened < started && started < keys);
        assert!(server.authority().current_period().is_ok());
        let stream = std::net::TcpStream::connect(server.url().trim_start_matches("http://"));
        assert!(stream.is_ok(), "not accepting");
    }
}
