//! Shared test stack: real redis-server and mosquitto on free ports, the bridge in-process, and
//! simulated devices that talk to it over MQTT.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use tapgate_bridge::{BridgeConfig, BridgeHandle};
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_testkit::{Mosquitto, MqttProbe, RedisServer};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a decision before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Redis + broker + bridge.
pub struct Stack {
    pub redis: RedisServer,
    pub broker: Mosquitto,
    pub config: BridgeConfig,
    bridge: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    pub metrics: Option<tapgate_bridge::Metrics>,
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
        let handle: BridgeHandle = tapgate_bridge::start(self.config.clone(), token.clone())
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

    /// A simulated device connected to the broker and listening on its decision topic.
    pub async fn device(&self, kind: DeviceKind, id: &str) -> Device {
        Device::connect(self.broker.port(), kind, id).await
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

/// A device on the broker: publishes taps and buttons and reads its decisions.
pub struct Device {
    pub probe: MqttProbe,
    pub kind: DeviceKind,
    pub id: DeviceId,
    pub topics: Topics,
    next: u64,
}

impl Device {
    pub async fn connect(port: u16, kind: DeviceKind, id: &str) -> Self {
        let topics = Topics::default();
        let device = DeviceId::new(id).expect("device id");
        let probe = MqttProbe::connect(port, &format!("dev-{kind}-{id}")).await;
        probe.subscribe(&topics.decision(kind, &device)).await;
        Self {
            probe,
            kind,
            id: device,
            topics,
            next: 0,
        }
    }

    /// A fresh message id.
    pub fn next_id(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.id, self.next)
    }

    /// Publishes a tap with a fresh id and returns the decision.
    pub async fn tap(&mut self, card: &str) -> Value {
        let id = self.next_id();
        self.tap_with_id(&id, card).await
    }

    /// Publishes a tap with the given id and returns the decision for that id.
    pub async fn tap_with_id(&mut self, id: &str, card: &str) -> Value {
        let payload = serde_json::json!({"id": id, "card": card}).to_string();
        self.send(MessageTopic::Tap, payload).await;
        self.decision_for(Some(id)).await
    }

    /// Presses a button with a fresh id and returns the decision.
    pub async fn button(&mut self, pass: &str) -> Value {
        let id = self.next_id();
        let payload = serde_json::json!({"id": id, "pass": pass}).to_string();
        self.send(MessageTopic::Button, payload).await;
        self.decision_for(Some(&id)).await
    }

    /// Publishes raw bytes on this device's tap or button topic.
    pub async fn send(&self, which: MessageTopic, payload: impl Into<Vec<u8>>) {
        let topic = match which {
            MessageTopic::Tap => self.topics.tap(self.kind, &self.id),
            MessageTopic::Button => self.topics.button(&self.id),
        };
        self.probe.publish(&topic, payload).await;
    }

    /// The next decision whose id is `id` (`None`: id null), skipping others.
    pub async fn decision_for(&mut self, id: Option<&str>) -> Value {
        let topic = self.topics.decision(self.kind, &self.id);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self
                .probe
                .recv_timeout(left)
                .await
                .unwrap_or_else(|| panic!("no decision for {id:?} on {topic} within {WAIT:?}"));
            if msg.topic != topic {
                continue;
            }
            let v = msg.json();
            if v["id"].as_str() == id {
                return v;
            }
        }
    }

    /// Any decision that arrives within `window`.
    pub async fn decisions_within(&mut self, window: Duration) -> Vec<Value> {
        self.probe
            .drain_for(window)
            .await
            .into_iter()
            .map(|m| m.json())
            .collect()
    }
}

/// Which of a device's input topics.
#[derive(Debug, Clone, Copy)]
pub enum MessageTopic {
    Tap,
    Button,
}

/// Sells `pass` to `card` at `terminal` through the full flow and returns the issue decision.
pub async fn buy(terminal: &mut Device, card: &str, pass: &str) -> Value {
    let d = terminal.tap(card).await;
    assert_eq!(d["outcome"], "select_pass", "{d}");
    let d = terminal.button(pass).await;
    assert_eq!(d["outcome"], "tap_to_confirm", "{d}");
    assert_eq!(d["selected"], pass, "{d}");
    let d = terminal.tap(card).await;
    assert_eq!(d["outcome"], "pass_issued", "{d}");
    d
}
