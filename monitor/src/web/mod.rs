//! `tapgate-monitor serve`: the operators' live dashboard.
//!
//! - `error`: [`WebError`], every refusal as a 4xx/5xx JSON body (API) or page (browser).
//! - `security`: the `Host` allow-list, cross-site `POST` refusal, the body size guard and
//!   response headers (strict CSP, no framing, nosniff).
//! - `client`: the client address (trusted proxies, IPv6 /64 buckets) and host names.
//! - `server`: the HTTP/1 accept loop: header-read timeout, connections per address.
//! - `session`: sessions in Redis, cookies, CSRF tokens, and how sessions end.
//! - `session_key`: the server secret that session ids and CSRF tokens are MACs under.
//! - `form_token`: the login form's token, bound to this server.
//! - `throttle`: the bound on password checks and the failed-login limits.
//! - `auth`: the login and logout routes and the extractors that guard every other route.
//! - `data`: reads from Redis: counters, history, per-minute charts, devices, cards, deny list.
//! - `api`: the JSON routes built on `data`.
//! - `blocklist`: blocking and unblocking cards, atomically with their stream event.
//! - [`void`]: voiding a sale made in error: the unused pass, its revenue and its event in one
//!   script, within the void window.
//! - `replace`: replacing a lost card by a new one ([`crate::replace`] does the work).
//! - `revenue`: a service day's revenue by product and terminal, named by the fare catalogue.
//! - `live`: one task follows the stream and pushes events and counters to every browser (SSE).
//! - `pages`: the HTML pages and the embedded assets (no CDN, no inline script).
//!
//! [`start`] binds, spawns the server and returns its address; [`run`] serves until shutdown.

mod api;
mod auth;
mod blocklist;
pub(crate) mod client;
mod data;
mod error;
mod form_token;
mod live;
mod pages;
mod replace;
mod revenue;
mod security;
mod server;
mod session;
mod session_key;
mod throttle;
pub mod void;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tapgate_protocol::Catalogue;
use tapgate_runtime::clock::{Clock, SystemClock};
use tapgate_runtime::redis::{RedisLink, RedisSource};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::audit::{Action, Record};
use crate::config::ServeConfig;
pub use error::WebError;
use session::{Credential, Credentials};
pub use session_key::{KeySource, SessionKey, SessionKeyError};
pub use throttle::SLOT_WAIT;

/// Shared state of every request.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The validated settings.
    pub config: Arc<ServeConfig>,
    /// Redis for request handlers (reconnects by itself).
    pub redis: RedisLink,
    /// Operator name → password hash and its fingerprint.
    pub operators: Arc<Credentials>,
    /// Live updates for every open browser.
    pub live: live::Hub,
    /// The time login delays and tokens are judged by.
    pub clock: Arc<dyn Clock>,
    /// The bound on password checks running at once.
    pub checks: throttle::PasswordChecks,
    /// The key login form tokens are made with.
    pub form_key: form_token::FormKey,
    /// The key session ids and CSRF tokens are made with.
    pub session_key: session_key::SessionKey,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub proxies: Arc<Vec<client::Cidr>>,
    /// The fare catalogue (the bridge's fares file, or the built-in one): product names, the
    /// currency and service days of the revenue shown.
    pub catalogue: Arc<Catalogue>,
}

impl AppState {
    /// The login limits from the settings.
    pub(crate) fn limits(&self) -> throttle::Limits {
        throttle::Limits {
            free_failures: self.config.login_attempts,
            max_delay: self.config.login_max_delay,
            per_address: self.config.login_attempts_per_address,
            window: self.config.login_window,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The fares file cannot be read or is refused (file, line, field and why).
    #[error("fares file {0}")]
    Fares(#[from] tapgate_protocol::fares::FaresError),
    /// Redis could not be reached at start-up.
    #[error("redis at start-up: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis could not be reached at start-up.
    #[error(transparent)]
    RedisConnect(#[from] tapgate_runtime::redis::RedisConnectError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
    /// Something the server needs at start-up failed.
    #[error("start-up: {0}")]
    Startup(#[from] WebError),
    /// The session key cannot be read or made.
    #[error(transparent)]
    SessionKey(#[from] session_key::SessionKeyError),
    /// A server task panicked.
    #[error("server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A running dashboard.
pub struct ServerHandle {
    addr: SocketAddr,
    server: JoinHandle<Result<(), ServeError>>,
    follower: JoinHandle<()>,
}

impl ServerHandle {
    /// The address it listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server has stopped (after shutdown is cancelled).
    pub async fn join(self) -> Result<(), ServeError> {
        let r = self.server.await?;
        self.follower.await?;
        r
    }
}

/// The routes.
pub(crate) fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/logout-everywhere", post(auth::logout_everywhere))
        .route("/assets/{name}", get(pages::asset))
        .route("/api/session", get(api::session))
        .route("/api/counters", get(api::counters))
        .route("/api/events", get(api::events))
        .route("/api/charts/minutes", get(api::minutes))
        .route("/api/devices", get(api::devices))
        .route("/api/cards/{card}", get(api::card))
        .route("/api/cards/{card}/block", post(blocklist::block))
        .route("/api/cards/{card}/unblock", post(blocklist::unblock))
        .route("/api/cards/{card}/void", post(void::void))
        .route("/api/cards/{card}/replace", post(replace::route))
        .route("/api/revenue", get(revenue::route))
        .route("/api/blocked", get(api::blocked))
        .route("/api/audit", get(api::audit))
        .route("/api/live", get(live::sse))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::guard,
        ))
        .with_state(state)
}

/// Connects to Redis, binds, and serves in the background until `shutdown`. `config` is taken as
/// loading checked it ([`ServeConfig::validate`], which `tapgate-monitor serve` calls when it
/// reads its settings): it is not checked again.
pub async fn start(
    config: ServeConfig,
    shutdown: CancellationToken,
) -> Result<ServerHandle, ServeError> {
    start_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// [`start`] with the clock login delays and form tokens are judged by.
pub async fn start_with_clock(
    config: ServeConfig,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<ServerHandle, ServeError> {
    let catalogue = load_catalogue(&config)?;
    let session_key = load_session_key(&config)?;
    // One server, or the primary Redis Sentinel names, followed through a failover.
    let client = RedisSource::at(&config.redis, None);
    let mut redis = RedisLink::open(client.clone()).await?;
    let operators: Credentials = config
        .operators
        .iter()
        .map(|o| (o.name.clone(), Credential::new(&o.password_hash)))
        .collect();
    end_stale_sessions(&mut redis, &operators).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    let proxies: Vec<client::Cidr> = config
        .trusted_proxies
        .iter()
        .filter_map(|p| client::Cidr::parse(p))
        .collect();
    let hub = live::Hub::new(shutdown.clone());
    let follower = tokio::spawn(live::follow(client, redis.clone(), hub.clone()));
    let limits = server::Limits {
        header_timeout: config.header_timeout,
        per_address: config.max_connections_per_address,
        trusted: proxies.clone(),
    };
    let state = AppState {
        checks: throttle::PasswordChecks::new(config.password_check_limit()),
        config: Arc::new(config),
        redis,
        operators: Arc::new(operators),
        live: hub,
        clock,
        form_key: form_token::FormKey::random()?,
        session_key,
        proxies: Arc::new(proxies),
        catalogue: Arc::new(catalogue),
    };
    let app = router(state);
    info!(%addr, "Dashboard listening");
    let server = tokio::spawn(async move {
        server::serve(listener, app, limits, shutdown)
            .await
            .map_err(ServeError::Serve)
    });
    Ok(ServerHandle {
        addr,
        server,
        follower,
    })
}

/// The fare catalogue revenue is shown with (the fares file's, or the built-in one), logged.
fn load_catalogue(config: &ServeConfig) -> Result<Catalogue, ServeError> {
    let catalogue = revenue::load_catalogue(config.fares.as_deref())?;
    match &config.fares {
        Some(path) => info!(
            path = %path.display(), version = %catalogue.version,
            products = catalogue.products.len(), "Fare catalogue read"
        ),
        None => info!("No fares file: revenue is shown with the built-in catalogue's products"),
    }
    Ok(catalogue)
}

/// Ends the sessions of operators removed from the settings or whose password changed since
/// they logged in, each in the audit trail.
async fn end_stale_sessions(
    redis: &mut RedisLink,
    operators: &Credentials,
) -> Result<(), ServeError> {
    for name in session::sweep(redis, operators).await? {
        warn!(operator = %name, "Ended the sessions of a removed operator or changed password");
        let record = Record {
            action: Action::SessionsRevoked,
            operator: &name,
            from: None,
            card: None,
            reason: None,
            product: None,
            price: None,
        };
        if let Err(e) = crate::audit::append(redis, &record).await {
            warn!(error = %e, "Cannot write the audit trail");
        }
    }
    Ok(())
}

/// The session key the settings name, logging where it came from.
fn load_session_key(config: &ServeConfig) -> Result<session_key::SessionKey, ServeError> {
    let (key, source) = session_key::SessionKey::from_setting(config.session_key_file.as_deref())?;
    match source {
        session_key::KeySource::Read(path) => {
            info!(path = %path.display(), "Session key read");
        }
        session_key::KeySource::Created(path) => {
            info!(path = %path.display(), "Session key file created with a new random key");
        }
        session_key::KeySource::Random => {
            warn!(
                "No session_key_file: sessions are bound to a key of this process and end when \
                 the monitor restarts"
            );
        }
    }
    Ok(key)
}

/// Serves until `shutdown` is cancelled.
pub async fn run(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    start(config, shutdown).await?.join().await
}
