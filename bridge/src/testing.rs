//! A whole test stack in one value: real `redis-server` and `mosquitto` on free ports and this
//! bridge running in-process on them. Enabled by the `testing` feature, for the integration tests
//! of the bridge, the devices and the monitor; not part of a normal build.
//!
//! The bridge runs on the system clock ([`Stack::start`]), or on a [`ManualClock`] that a test
//! moves with [`Stack::advance`] ([`Stack::start_manual`]), so expiry is tested without sleeping.

use std::sync::Arc;
use std::time::Duration;

use tapgate_runtime::clock::{Clock, ManualClock, SystemClock};
use tapgate_testkit::{Mosquitto, RedisServer};
use tokio_util::sync::CancellationToken;

use crate::{BridgeConfig, BridgeHandle, Metrics};
use tapgate_runtime::mqtt::BrokerConfig;

/// Redis + broker + bridge.
pub struct Stack {
    /// The Redis server.
    pub redis: RedisServer,
    /// The MQTT broker.
    pub broker: Mosquitto,
    /// The bridge's settings; change them between [`Stack::stop_bridge`] and
    /// [`Stack::start_bridge`].
    pub config: BridgeConfig,
    bridge: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// The clock the bridge decides by; `Some` when tests move it.
    manual: Option<ManualClock>,
    /// The running bridge's counters.
    pub metrics: Option<Metrics>,
    /// Where the running bridge serves `/metrics`, if configured.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Stack {
    /// Starts Redis, the broker and a bridge with `tweak` applied to its default config, deciding
    /// by the system clock.
    pub async fn start(tweak: impl FnOnce(&mut BridgeConfig)) -> Self {
        Self::build(tweak, None).await
    }

    /// [`Stack::start`], but the bridge decides by a [`ManualClock`] set to the system time now,
    /// which moves only by [`Stack::advance`]. Devices that stamp their messages with their own
    /// clock should take the time from [`Stack::now_ms`].
    pub async fn start_manual(tweak: impl FnOnce(&mut BridgeConfig)) -> Self {
        let clock = ManualClock::at(tapgate_runtime::clock::now_ms());
        Self::build(tweak, Some(clock)).await
    }

    async fn build(tweak: impl FnOnce(&mut BridgeConfig), manual: Option<ManualClock>) -> Self {
        let redis = RedisServer::start();
        let broker = Mosquitto::start();
        let mut config = BridgeConfig {
            redis: redis.url().parse().expect("redis url"),
            broker: BrokerConfig::url(broker.url()),
            client_id: format!("bridge-{}", broker.port()),
            ..BridgeConfig::default()
        };
        tweak(&mut config);
        let mut stack = Self {
            redis,
            broker,
            config,
            bridge: None,
            manual,
            metrics: None,
            metrics_addr: None,
        };
        stack.start_bridge().await;
        stack
    }

    /// Starts the bridge (again).
    pub async fn start_bridge(&mut self) {
        assert!(self.bridge.is_none(), "bridge already running");
        let token = CancellationToken::new();
        let clock: Arc<dyn Clock> = match &self.manual {
            Some(manual) => Arc::new(manual.clone()),
            None => Arc::new(SystemClock),
        };
        let handle: BridgeHandle =
            crate::start_with_clock(self.config.clone(), clock, token.clone())
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "bridge failed to start: {e}\n{}\n{}",
                        self.redis.log(),
                        self.broker.log()
                    )
                });
        self.metrics = Some(handle.metrics().clone());
        self.metrics_addr = handle.metrics_addr();
        let join = tokio::spawn(async move {
            handle.join().await.expect("bridge stopped with an error");
        });
        self.bridge = Some((token, join));
    }

    /// The bridge's time now, Unix ms.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(manual) => manual.now_ms(),
            None => tapgate_runtime::clock::now_ms(),
        }
    }

    /// Moves the bridge's clock forward.
    ///
    /// # Panics
    /// On a stack started with [`Stack::start`] (the system clock cannot be moved).
    pub fn advance(&self, by: Duration) {
        let manual = self
            .manual
            .as_ref()
            .expect("Stack::advance needs a stack from Stack::start_manual");
        manual.advance(crate::config::millis(by));
    }

    /// Stops the bridge cleanly and waits for it.
    pub async fn stop_bridge(&mut self) {
        if let Some((token, join)) = self.bridge.take() {
            token.cancel();
            tokio::time::timeout(Duration::from_secs(10), join)
                .await
                .expect("bridge did not stop within 10 s")
                .expect("bridge task panicked");
        }
    }

    /// A Redis connection for assertions.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// A counter field, 0 if absent.
    pub async fn counter(&self, key: &str, field: &str) -> i64 {
        let mut con = self.redis().await;
        let v: Option<i64> = redis::cmd("HGET")
            .arg(key)
            .arg(field)
            .query_async(&mut con)
            .await
            .expect("HGET");
        v.unwrap_or(0)
    }

    /// Number of entries in the event stream.
    pub async fn stream_len(&self) -> usize {
        let mut con = self.redis().await;
        redis::cmd("XLEN")
            .arg(tapgate_protocol::keys::EVENTS_STREAM)
            .query_async(&mut con)
            .await
            .expect("XLEN")
    }
}
