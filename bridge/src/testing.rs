//! A whole test stack in one value: real `redis-server` and `mosquitto` on free ports and this
//! bridge running in-process on them. Enabled by the `testing` feature, for the integration tests
//! of the bridge, the devices and the monitor; not part of a normal build.

use std::time::Duration;

use tapgate_testkit::{Mosquitto, RedisServer};
use tokio_util::sync::CancellationToken;

use crate::{BridgeConfig, BridgeHandle, Metrics};

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
    /// The running bridge's counters.
    pub metrics: Option<Metrics>,
    /// Where the running bridge serves `/metrics`, if configured.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Stack {
    /// Starts Redis, the broker and a bridge with `tweak` applied to its default config.
    pub async fn start(tweak: impl FnOnce(&mut BridgeConfig)) -> Self {
        let redis = RedisServer::start();
        let broker = Mosquitto::start();
        let mut config = BridgeConfig {
            redis: redis.url(),
            mqtt: broker.url(),
            client_id: format!("bridge-{}", broker.port()),
            ..BridgeConfig::default()
        };
        tweak(&mut config);
        let mut stack = Self {
            redis,
            broker,
            config,
            bridge: None,
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
        let handle: BridgeHandle = crate::start(self.config.clone(), token.clone())
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
