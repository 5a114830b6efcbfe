//! `tapgate-monitor serve`: the operators' live dashboard.
//!
//! - [`error`]: [`WebError`], every refusal as a 4xx/5xx JSON body (API) or page (browser).
//! - [`security`]: response headers (strict CSP, no framing, nosniff) and the body size guard.
//! - [`session`]: logins: sessions in Redis, cookies, CSRF tokens, failed-login rate limit.
//! - [`auth`]: the login and logout routes and the extractors that guard every other route.
//! - [`data`]: reads from Redis: counters, history, per-minute charts, devices, cards, deny list.
//! - [`api`]: the JSON routes built on [`data`].
//! - [`blocklist`]: blocking and unblocking cards, atomically with their stream event.
//! - [`live`]: one task follows the stream and pushes events and counters to every browser (SSE).
//! - [`pages`]: the HTML pages and the embedded assets (no CDN, no inline script).
//!
//! [`start`] binds, spawns the server and returns its address; [`run`] serves until shutdown.

pub mod api;
pub mod auth;
pub mod blocklist;
pub mod data;
pub mod error;
pub mod live;
pub mod pages;
pub mod security;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ServeConfig;
pub use error::WebError;

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    /// The validated settings.
    pub config: Arc<ServeConfig>,
    /// Redis for request handlers (reconnects by itself).
    pub redis: ConnectionManager,
    /// Operator name → password hash.
    pub operators: Arc<HashMap<String, String>>,
    /// Live updates for every open browser.
    pub live: live::Hub,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The settings are unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Redis could not be reached at start-up.
    #[error("redis at start-up: {0}")]
    Redis(#[from] redis::RedisError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
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
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/{name}", get(pages::asset))
        .route("/api/session", get(api::session))
        .route("/api/counters", get(api::counters))
        .route("/api/events", get(api::events))
        .route("/api/charts/minutes", get(api::minutes))
        .route("/api/devices", get(api::devices))
        .route("/api/cards/{card}", get(api::card))
        .route("/api/cards/{card}/block", post(blocklist::block))
        .route("/api/cards/{card}/unblock", post(blocklist::unblock))
        .route("/api/blocked", get(api::blocked))
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

/// Connects to Redis, binds, and serves in the background until `shutdown`.
pub async fn start(
    config: ServeConfig,
    shutdown: CancellationToken,
) -> Result<ServerHandle, ServeError> {
    config.validate()?;
    let client = redis::Client::open(config.redis.as_str())?;
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2);
    let redis = ConnectionManager::new_with_config(client.clone(), manager_config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    let operators = config
        .operators
        .iter()
        .map(|o| (o.name.clone(), o.password_hash.clone()))
        .collect();
    let hub = live::Hub::new(shutdown.clone());
    let follower = tokio::spawn(live::follow(client, redis.clone(), hub.clone()));
    let state = AppState {
        config: Arc::new(config),
        redis,
        operators: Arc::new(operators),
        live: hub,
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    info!(%addr, "Dashboard listening");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(ServeError::Serve)
    });
    Ok(ServerHandle {
        addr,
        server,
        follower,
    })
}

/// Serves until `shutdown` is cancelled.
pub async fn run(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    start(config, shutdown).await?.join().await
}
