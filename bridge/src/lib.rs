//! The tapgate bridge: decides device taps and button presses against Redis, atomically, over MQTT.
//!
//! Its surface is what the binary and other crates' tests use: [`start`], [`run`],
//! [`BridgeConfig`] and [`Cli`], the [`store`] (the monitor's tests decide through it),
//! [`Metrics`], and the `testing` stack (feature `testing`); everything else is `pub(crate)`, and
//! `unreachable_pub` keeps it so. Inside:
//!
//! - `config`: settings, layered defaults → file → environment → flags, each declared once.
//! - `cli`: the command line, each flag named as its setting.
//! - `fares`: the fare catalogue in force, reloaded on SIGHUP.
//! - `mqtt`: broker options, subscription filters, start-up handshake, sharing check.
//! - `connection`: the task that owns the connection once it is up: reads, batched writes,
//!   keep-alive, reconnects.
//! - `outbox`: the one line of decisions, events and acknowledgements the workers queue.
//! - `dispatch`: per-device ordering with a fixed set of worker shards, served fairly.
//! - `limit`: the per-device rate limit (a token bucket per device, bounded in memory).
//! - `refusals`: refusals for that limit, added to Redis's rejected counters once a second.
//! - `process`: one message: validate, decide, answer, acknowledge.
//! - [`store`]: the Redis scripts that apply the rules and record effects in one atomic step.
//! - `metrics`: Prometheus counters and the `/metrics` endpoint.
//! - `summary`: one INFO line a minute instead of one per decision.
//! - `redis_memory`: Redis memory and its limit, read every few seconds for the metrics.
//! - `testing` (feature `testing`): a real Redis + broker + bridge stack for integration tests.
//!
//! [`start`] connects (failing fast with the address of whatever is unreachable; with Sentinel it
//! waits instead, not ready and not subscribed, until a majority of the sentinels names a primary
//! that answers), subscribes and returns a [`BridgeHandle`]; [`run`] does the same and waits until `shutdown` is cancelled. Both
//! decide by the system clock; [`start_with_clock`] takes any [`Clock`] (tests move a
//! `ManualClock` instead of sleeping until a pass or sale expires).

#![warn(unreachable_pub)]

mod cli;
mod config;
mod connection;
mod dispatch;
mod fares;
mod inbound;
mod limit;
mod metrics;
mod mqtt;
mod outbox;
mod process;
mod redis_memory;
mod refusals;
pub mod store;
mod summary;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tapgate_runtime::clock::{Clock, SystemClock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use cli::Cli;
pub use config::{BridgeConfig, ConfigError};
pub use dispatch::shard_index;
pub use metrics::Metrics;
pub use mqtt::MqttError;
pub use redis_memory::RedisMemory;
pub use store::{Store, StoreError};

/// Number of worker shards: messages of one device are handled in order by one shard.
pub const SHARDS: usize = 64;

/// Why the bridge could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The fares file cannot be read or is refused (its line and field are named).
    #[error("fare catalogue refused: {0}")]
    Fares(#[from] tapgate_protocol::fares::FaresError),
    /// Shutdown was asked for while the bridge was still waiting for a Redis primary.
    #[error("stopped before a Redis primary was found")]
    StoppedWaiting,
    /// The metrics address could not be bound.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running bridge.
pub struct BridgeHandle {
    shutdown: CancellationToken,
    stop_loop: CancellationToken,
    workers: TaskTracker,
    event_loop: JoinHandle<()>,
    metrics: Metrics,
    metrics_addr: Option<SocketAddr>,
    /// Rate-limited refusals not yet in Redis, written once the shards have stopped.
    refusals: refusals::Tally,
    store: Store,
}

impl BridgeHandle {
    /// The bridge's counters (also served on `/metrics` when configured).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The address `/metrics` is served on, if any (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Waits for the shutdown token, then stops cleanly: workers finish the message in hand,
    /// what they queued is written, and the connection closes. Unacknowledged messages stay with the
    /// broker for the next start.
    pub async fn join(self) -> Result<(), BridgeError> {
        self.shutdown.cancelled().await;
        self.workers.close();
        self.workers.wait().await;
        if let Err(e) = self.refusals.flush(&self.store).await {
            warn!(
                error = %e,
                lost = self.refusals.pending(),
                "Could not add the last rate-limited refusals to the rejected counters"
            );
        }
        self.stop_loop.cancel();
        let _ = self.event_loop.await;
        info!("Bridge stopped");
        Ok(())
    }
}

/// Connects to Redis and the broker, subscribes, and starts deciding by the system clock. Returns
/// once subscribed; fails fast with the unreachable address. `config` is taken as
/// [`BridgeConfig::load`] checked it (or as its `Default` is): it is not checked again.
pub async fn start(
    config: BridgeConfig,
    shutdown: CancellationToken,
) -> Result<BridgeHandle, BridgeError> {
    start_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// [`start`], deciding by `clock`: the time every decision, presence record and refusal is
/// stamped with, and against which passes, sales and waiting taps expire.
pub async fn start_with_clock(
    config: BridgeConfig,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<BridgeHandle, BridgeError> {
    // The Redis URL was parsed when the settings were read: the topology check and every
    // connection attempt use it as it is.
    check_topology(&config)?;
    let fares = load_fares(&config)?;
    let metrics = Metrics::default();
    let workers = TaskTracker::new();
    // Served before Redis is reached, so an orchestrator sees "not ready" while the bridge waits.
    let metrics_addr = serve_metrics(&config, &metrics, &workers, &shutdown).await?;
    let store = match connect_store(&config, &metrics, &shutdown).await {
        Ok(store) => store,
        Err(e) => {
            workers.close();
            workers.wait().await;
            return Err(e);
        }
    };
    migrate_card_keys(&store).await?;
    let refusals = refusals::Tally::default();
    spawn_redis_upkeep(&config, &store, &refusals, &metrics, &workers, &shutdown);
    workers.spawn(summary::run(
        metrics.clone(),
        Duration::from_secs(60),
        shutdown.clone(),
    ));
    workers.spawn(fares::reload_on_hangup(fares.clone(), shutdown.clone()));
    let (out, line) = outbox::line();
    let processor = process::Processor {
        store: store.clone(),
        out,
        topics: config.prefix.clone(),
        metrics: metrics.clone(),
        max_backoff: config.max_backoff,
        require_stamp: config.require_stamp,
        clock,
        fares,
        shutdown: shutdown.clone(),
        device_rate: config.device_rate(),
        refusals: refusals.clone(),
    };
    let dispatcher = dispatch::Dispatcher::start(
        SHARDS,
        config.shard_queue,
        processor,
        metrics.clone(),
        &workers,
        shutdown.clone(),
    );
    let link = store.link().clone();
    let (event_loop, stop_loop) = connect_broker(
        &config, dispatcher, line, link, &metrics, &workers, &shutdown,
    )
    .await?;
    Ok(BridgeHandle {
        shutdown,
        stop_loop,
        workers,
        event_loop,
        metrics,
        metrics_addr,
        refusals,
        store,
    })
}

/// Connects to the broker and subscribes (see [`subscribe`]), marks the bridge ready, then hands
/// the connection to a task of its own ([`connection::drive`]), which passes what arrives to
/// `dispatcher` and writes what `line` holds until the returned token stops it.
async fn connect_broker(
    config: &BridgeConfig,
    dispatcher: dispatch::Dispatcher,
    mut line: outbox::Line,
    link: tapgate_runtime::redis::RedisLink,
    metrics: &Metrics,
    workers: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(JoinHandle<()>, CancellationToken), BridgeError> {
    let opts = mqtt::options(&config.broker()?, &config.client_id)?;
    let broker = format!("{}:{}", opts.broker_address().0, opts.broker_address().1);
    let (client, mut eventloop) = mqtt::client(opts);
    let filters = mqtt::filters(config, &config.prefix);
    subscribe(
        config,
        &filters,
        (&client, &mut eventloop),
        &broker,
        &dispatcher,
        &mut line,
    )
    .await?;
    let in_group = ready(config, link, metrics, workers, shutdown);
    let stop_loop = CancellationToken::new();
    // The client served the handshake; from here the connection task reads and writes itself.
    drop(client);
    let event_loop = tokio::spawn(connection::drive(
        eventloop,
        connection::Drive {
            filters,
            dispatcher,
            line,
            metrics: metrics.clone(),
            max_backoff: config.max_backoff,
            in_group,
        },
        stop_loop.clone(),
    ));
    Ok((event_loop, stop_loop))
}

/// Connects to the broker and subscribes to `filters`, failing fast with its address; in a shared
/// group, then checks that the broker shares the taps out ([`mqtt::verify_sharing`]). What
/// arrives meanwhile goes to `dispatcher`, and what it answers out through `line`.
async fn subscribe(
    config: &BridgeConfig,
    filters: &[String],
    (client, eventloop): (&rumqttc::AsyncClient, &mut rumqttc::EventLoop),
    broker: &str,
    dispatcher: &dispatch::Dispatcher,
    line: &mut outbox::Line,
) -> Result<(), MqttError> {
    mqtt::handshake(eventloop, client, filters, broker, dispatcher, line).await?;
    if let Some(group) = &config.shared_group {
        let topics = &config.prefix;
        mqtt::verify_sharing(eventloop, client, topics, group, broker, dispatcher, line).await?;
    }
    info!(%broker, client_id = %config.client_id, ?filters, "Subscribed; deciding");
    Ok(())
}

/// Starts the bridge's periodic work on Redis until `shutdown`: reading its memory for the
/// metrics, adding rate-limited `refusals` to the rejected counters, and pruning devices whose
/// presence expired.
fn spawn_redis_upkeep(
    config: &BridgeConfig,
    store: &Store,
    refusals: &refusals::Tally,
    metrics: &Metrics,
    workers: &TaskTracker,
    shutdown: &CancellationToken,
) {
    workers.spawn(redis_memory::watch(
        store.link().clone(),
        metrics.clone(),
        Duration::from_secs(5),
        shutdown.clone(),
    ));
    workers.spawn(refusals::run(
        refusals.clone(),
        store.clone(),
        refusals::FLUSH_EVERY,
        shutdown.clone(),
    ));
    workers.spawn(prune_devices(
        store.clone(),
        config.device_ttl,
        shutdown.clone(),
    ));
}

/// The fare catalogue in force at start-up (the file's, or the built-in one), logged.
fn load_fares(config: &BridgeConfig) -> Result<fares::Fares, BridgeError> {
    let fares = fares::Fares::load(config.fares.clone(), config.legacy_period_ms())?;
    let c = fares.current();
    info!(
        file = ?config.fares,
        version = %c.version,
        currency = %c.currency,
        time_zone = c.time_zone.iana_name().unwrap_or("fixed offset"),
        products = %c.ids(),
        "Fare catalogue in force"
    );
    Ok(fares)
}

/// Serves `/metrics` (and `/ready`) on the configured address, if any, until `shutdown`;
/// returns the address it listens on (useful with port 0).
async fn serve_metrics(
    config: &BridgeConfig,
    metrics: &Metrics,
    workers: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Option<SocketAddr>, BridgeError> {
    let Some(addr) = config.metrics_addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BridgeError::Metrics { addr, source })?;
    let bound = listener.local_addr().ok();
    workers.spawn(metrics::serve(listener, metrics.clone(), shutdown.clone()));
    Ok(bound)
}

/// Moves card keys written before card ids were canonical (lower-case ones) to their upper-case
/// ids, and says what it did and what this Redis user could not do.
async fn migrate_card_keys(store: &Store) -> Result<(), BridgeError> {
    let migration = store.migrate_card_keys().await?;
    if migration.moved + migration.dropped > 0 || !migration.conflicts.is_empty() {
        info!(
            moved = migration.moved,
            dropped = migration.dropped,
            conflicts = ?migration.conflicts,
            "Moved card keys to canonical (upper-case) card ids"
        );
    }
    if migration.unlisted {
        info!(
            "Did not look for card keys from before card ids were canonical: this Redis user may \
             not list keys; after upgrading from a version that wrote lower-case card ids, start \
             the bridge once as the Redis admin user to move them"
        );
    }
    if !migration.skipped.is_empty() {
        warn!(
            skipped = ?migration.skipped,
            "Left legacy (lower-case) card keys or block-index fields this Redis user may not \
             change (the block index is the dashboard's list; taps are decided by each card's \
             own keys); start the bridge once as the Redis admin user to move them"
        );
    }
    Ok(())
}

/// Once subscribed: the bridge is ready, and from then on only while Redis answers through
/// `link` ([`watch_readiness`]). Returns whether the bridge stays in its shared group, for the
/// connection task to follow: in a shared group with Sentinel, a bridge that cannot reach a
/// majority of the sentinels leaves the group until it can, so the broker hands its share of
/// taps to the others ([`watch_sentinels`]). `None`: it always stays (no group, or one Redis
/// server).
fn ready(
    config: &BridgeConfig,
    link: tapgate_runtime::redis::RedisLink,
    metrics: &Metrics,
    workers: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<tokio::sync::watch::Receiver<bool>> {
    metrics.set_ready(true);
    let source = link.source().clone();
    workers.spawn(watch_readiness(link, metrics.clone(), shutdown.clone()));
    if config.shared_group.is_none() || !source.is_sentinel() {
        return None;
    }
    let (tx, rx) = tokio::sync::watch::channel(true);
    workers.spawn(watch_sentinels(source, tx, shutdown.clone()));
    Some(rx)
}

/// [`start`], then wait until `shutdown` is cancelled and stop cleanly.
pub async fn run(config: BridgeConfig, shutdown: CancellationToken) -> Result<(), BridgeError> {
    match start(config, shutdown).await {
        Ok(bridge) => bridge.join().await,
        Err(BridgeError::StoppedWaiting) => {
            info!("Bridge stopped before it found a Redis primary");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Refuses Redis settings under which a confirmed decision could be lost in a failover.
///
/// With Sentinel the primary is the node a majority of the sentinels names, so fewer than three
/// sentinels cannot lose one and still choose; and a decision confirmed on the primary alone
/// (`wait_replicas` 0) is lost when a failover promotes a replica that never had it. The store
/// waits for every replica the sentinels could promote, at least `wait_replicas` (see
/// `docs/scaling.md`).
fn check_topology(config: &BridgeConfig) -> Result<(), ConfigError> {
    let tapgate_runtime::redis::RedisTarget::Sentinel { sentinels, .. } = config.redis.target()
    else {
        if config.redis_wait_replicas() == 0 {
            warn!(
                redis = %config.redis,
                "One Redis server and wait_replicas 0: a decision is confirmed once that server \
                 holds it, and lost with it if it fails before its disk or a replica has it"
            );
        }
        return Ok(());
    };
    if sentinels.len() < 3 {
        return Err(ConfigError::invalid(
            "redis",
            format!(
                "{} sentinel(s) named: at least three are needed, so that a majority still names \
                 the primary when one is lost or cut off (list them all in the URL)",
                sentinels.len()
            ),
        ));
    }
    if config.wait_replicas == Some(0) {
        return Err(ConfigError::invalid(
            "wait_replicas",
            "must be at least 1 with Sentinel: a decision confirmed on the primary alone is lost \
             when a failover promotes a replica that never had it",
        ));
    }
    Ok(())
}

/// Connects to Redis: the store, waiting for `wait_replicas` and counting into `metrics`. With
/// Sentinel, a primary that cannot be found (no majority of the sentinels names one, or it does
/// not answer) is waited for, with backoff, until it can or `shutdown`: the bridge subscribes to
/// no taps meanwhile. One server: fails at once.
async fn connect_store(
    config: &BridgeConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Store, BridgeError> {
    let store = wait_for_primary(config, shutdown)
        .await?
        .with_replication(config.redis_wait_replicas(), config.wait_timeout)
        .with_metrics(metrics.clone());
    info!(
        redis = %store.link().url(),
        node = ?store.link().address(),
        wait_replicas = store.link().replicas_to_wait(config.redis_wait_replicas()),
        "Connected to Redis"
    );
    Ok(store)
}

/// [`Store::connect_to`], tried again with backoff while Sentinel names no primary that answers.
async fn wait_for_primary(
    config: &BridgeConfig,
    shutdown: &CancellationToken,
) -> Result<Store, BridgeError> {
    let (redis, password) = (&config.redis, config.redis_password.as_deref());
    let settings = config.store_settings();
    let mut backoff = tapgate_runtime::Backoff::new(Duration::from_millis(250), config.max_backoff);
    loop {
        let error = match Store::connect_to(redis, password, settings).await {
            Ok(store) => return Ok(store),
            Err(StoreError::Connect(e)) if redis.is_sentinel() => e,
            Err(e) => return Err(e.into()),
        };
        let delay = backoff.next_delay();
        warn!(
            error = %error,
            retry_in = ?delay,
            "No Redis primary yet; not ready, not subscribed, waiting"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Err(BridgeError::StoppedWaiting),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Keeps `tapgate_ready` and `/ready` true to whether Redis answers through `link`, checking
/// every second.
async fn watch_readiness(
    link: tapgate_runtime::redis::RedisLink,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let mut con = link.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut con);
        let up = matches!(
            tokio::time::timeout(tapgate_runtime::redis::TIMEOUT, ping).await,
            Ok(Ok(_))
        );
        if up != metrics.is_ready() {
            if up {
                info!(node = ?link.address(), "Redis primary reachable again; ready");
            } else {
                warn!("No Redis primary; not ready");
            }
            metrics.set_ready(up);
        }
    }
}

/// Keeps `in_group` true to whether a majority of the sentinels answers, asking every
/// [`tapgate_runtime::redis::CHECK_EVERY`] (each within its
/// [`tapgate_runtime::sentinel::ASK_TIMEOUT`]). A bridge that cannot reach them is cut off from
/// Redis (a failover elsewhere leaves the sentinels answering, and the bridge stays in the group
/// to wait for the new primary like the others): in the group it would go on taking a share of
/// the taps from the broker, which hands them round the members whether or not they acknowledge,
/// and hold them until it is back. What it holds stays in its session and is decided when Redis
/// answers. A check that fails wrongly costs little: the others take the share until the next.
async fn watch_sentinels(
    source: tapgate_runtime::redis::RedisSource,
    in_group: tokio::sync::watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tapgate_runtime::redis::CHECK_EVERY) => {}
        }
        let answered = match source.quorum().await {
            None | Some(Ok(_)) => true,
            Some(Err(e)) => e.sentinels - e.unreachable >= e.need,
        };
        in_group.send_if_modified(|now| std::mem::replace(now, answered) != answered);
    }
}

/// Drops devices whose presence expired from the device set, every tenth of the device TTL (at
/// least every minute, at most every hour).
async fn prune_devices(store: Store, ttl: std::time::Duration, shutdown: CancellationToken) {
    let every = (ttl / 10).clamp(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(3600),
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match store.prune_devices().await {
            Ok(0) => {}
            Ok(n) => info!(
                removed = n,
                "Pruned devices not heard from within the device TTL"
            ),
            Err(e) => tracing::warn!(error = %e, "Cannot prune devices; will try again"),
        }
    }
}
