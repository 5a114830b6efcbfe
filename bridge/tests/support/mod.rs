//! Shared test stack: real redis-server and mosquitto on free ports, the bridge in-process, and
//! simulated devices that talk to it over MQTT.
#![allow(dead_code)]

use std::time::Duration;

use redis::aio::ConnectionLike;
use serde_json::Value;
use tapgate_bridge::store::StoreSettings;
pub use tapgate_bridge::testing::Stack;
use tapgate_protocol::rules::TimeSettings;
use tapgate_protocol::{fields, keys, CardId, DeviceId, DeviceKind, Topics};
use tapgate_testkit::MqttProbe;

/// How long a test waits for a decision before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A simulated device connected to `stack`'s broker and listening on its decision topic.
pub async fn device(stack: &Stack, kind: DeviceKind, id: &str) -> Device {
    Device::connect(stack.broker.port(), kind, id).await
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

/// A plain connection to `redis`, for setting up and reading what the store wrote.
pub async fn admin(redis: &tapgate_testkit::RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Store settings for tests that call the store directly: two-hour passes of two hours, 30 s
/// sales, records and history kept an hour, a stream of 1,000, default time limits.
pub fn store_settings() -> StoreSettings {
    StoreSettings {
        legacy_period_ms: 2 * 3_600_000,
        sale_timeout_ms: 30_000,
        seen_ttl_s: 3600,
        stream_maxlen: 1000,
        recent_ttl_s: 3600,
        device_ttl_s: 3600,
        time: TimeSettings::default(),
    }
}

/// Writes a pass on `card` the way the decide function stores a fresh one (issued at 0).
pub async fn put_pass(con: &mut impl ConnectionLike, card: &CardId, pass_type: &str, trips: u32) {
    let _: () = redis::cmd("HSET")
        .arg(keys::pass(card))
        .arg(fields::pass::TYPE)
        .arg(pass_type)
        .arg(fields::pass::TRIPS)
        .arg(trips)
        .arg(fields::pass::ISSUED_AT)
        .arg(0)
        .query_async(con)
        .await
        .expect("HSET pass");
}
