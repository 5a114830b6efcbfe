//! Bridge settings.
//!
//! [`BridgeConfig`] is read in layers: built-in defaults, then a TOML file (`--config`), then
//! `TAPGATE_*` environment variables, then command-line flags. Unknown keys in the file are
//! refused, so a typo is an error rather than a silently ignored setting. The flags are
//! [`crate::cli::Cli`]'s, each named as its setting.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapgate_protocol::Topics;
use tapgate_runtime::mqtt::{BrokerConfig, BrokerSettings};
use tapgate_runtime::secret::{refuse_placeholder, url_password};

/// Everything the bridge can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Redis URL, e.g. `redis://127.0.0.1:6379` or `redis://:password@host:6379/0`.
    pub redis: String,
    /// Redis password, if not given in the URL.
    pub redis_password: Option<String>,
    /// Replicas that must hold a decision's writes before it is confirmed to the device (`WAIT`).
    /// Unset: 1 with a `redis+sentinel://` URL (a replica exists), 0 otherwise. With Sentinel it is
    /// a floor: the bridge waits for every replica any sentinel sees up (any may be promoted), and
    /// refuses 0.
    pub wait_replicas: Option<u32>,
    /// How long to wait for those replicas; a decision not replicated in time is not confirmed
    /// and the message is tried again.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// The broker: keys `mqtt`, `mqtt_username`, `mqtt_password` and the TLS files.
    #[serde(flatten)]
    pub broker: BrokerConfig,
    /// MQTT client id. Keep it stable: the broker keeps this session's queued taps while the
    /// bridge is down and hands them over when it returns.
    pub client_id: String,
    /// Topic prefix shared with the devices, checked as it is read.
    #[serde(
        deserialize_with = "tapgate_runtime::settings::topics",
        serialize_with = "tapgate_runtime::settings::topics_prefix"
    )]
    pub prefix: Topics,
    /// Shared-subscription group (`$share/{group}/...`) so several bridges split the work.
    /// Unset: an ordinary subscription.
    pub shared_group: Option<String>,
    /// The fare catalogue (TOML: currency, time zone, service day start, products with prices).
    /// Unset: the built-in catalogue, today's three products at price 0. Reloaded on SIGHUP.
    pub fares: Option<std::path::PathBuf>,
    /// How long the built-in catalogue's two-hour pass stays valid after its first entry (and a
    /// two-hour pass stored before passes kept their terms).
    #[serde(with = "humantime_serde")]
    pub two_hour_duration: Duration,
    /// How long a terminal waits for the next step of a sale before abandoning it.
    #[serde(with = "humantime_serde")]
    pub sale_timeout: Duration,
    /// How long a decision is remembered so a redelivered message gets the same answer.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// Approximate length the `tapgate:events` stream is trimmed to.
    pub stream_maxlen: u64,
    /// How long a card's recent-events list is kept after the card's last event (renewed at
    /// most every sixteenth of this: it goes between 15/16 and all of it after the last event).
    #[serde(with = "humantime_serde")]
    pub card_recent_ttl: Duration,
    /// How long a device's presence (`tapgate:device:…`, its `tapgate:devices` membership) and
    /// its counters are kept after it was last heard from.
    #[serde(with = "humantime_serde")]
    pub device_ttl: Duration,
    /// Messages each of the 64 worker shards may hold waiting. Beyond it QoS 1 messages wait at
    /// the broker (backpressure) and QoS 0 messages are dropped and counted.
    pub shard_queue: usize,
    /// Messages a second each device may send on average (taps, buttons, heartbeats; not its
    /// online/offline status). Beyond it, and beyond `device_burst` at once, a message is refused
    /// (`rate_limited`) without reaching Redis. A rider taps at most about once a second: the
    /// default stops a flood and is never reached by a real gate or terminal. 0 switches the limit
    /// off (load benchmarks). With several bridges in a shared group each counts on its own.
    pub device_rate: u32,
    /// Messages each device may send at once before `device_rate` applies: room for a gate that
    /// comes back from an outage and sends everything it queued meanwhile (devices queue at most
    /// 1000, their `queue_limit`).
    pub device_burst: u32,
    /// Address for the Prometheus `/metrics` endpoint; unset: no endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Longest wait between reconnect attempts to Redis or the broker.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A waiting tap or button older than this when the bridge decides it is answered `stale`
    /// and charged nothing. Keep it shorter than the devices' decision timeout (2s by default) by
    /// the time an answer takes to reach them.
    #[serde(with = "humantime_serde")]
    pub decision_window: Duration,
    /// A message time further ahead of the bridge's clock than this is refused
    /// (`time_in_future`).
    #[serde(with = "humantime_serde")]
    pub max_time_ahead: Duration,
    /// A device whose heartbeat clock is off by more than this is flagged (`clock-skew`). Best
    /// kept below `decision_window`: a clock running behind is never corrected.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// An offline entry that happened longer ago than this is refused (`time_too_old`): older
    /// than a fail-open gate is meant to hold one, or stamped by a clock that was never set.
    #[serde(with = "humantime_serde")]
    pub max_offline_age: Duration,
    /// Refuse taps and buttons without `time` and `mode` (`missing_field`). Off during the
    /// transition: such messages are decided on the bridge's clock as waiting ones.
    pub require_stamp: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            redis: "redis://127.0.0.1:6379".into(),
            redis_password: None,
            wait_replicas: None,
            wait_timeout: Duration::from_millis(500),
            broker: BrokerConfig::default(),
            client_id: "tapgate-bridge".into(),
            prefix: Topics::default(),
            shared_group: None,
            fares: None,
            two_hour_duration: Duration::from_secs(2 * 60 * 60),
            sale_timeout: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            stream_maxlen: 1_000_000,
            card_recent_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            device_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            shard_queue: 64,
            device_rate: 20,
            device_burst: 1000,
            metrics_addr: None,
            max_backoff: Duration::from_secs(10),
            decision_window: Duration::from_millis(1500),
            max_time_ahead: Duration::from_secs(5),
            max_clock_skew: Duration::from_secs(1),
            max_offline_age: Duration::from_secs(24 * 60 * 60),
            require_stamp: false,
        }
    }
}

/// A setting that cannot work (the runtime's, shared by every program).
pub use tapgate_runtime::settings::SettingsError as ConfigError;

impl BridgeConfig {
    /// Layers defaults, the optional TOML file and `overrides` (environment and flags, already
    /// merged by the caller in that order) and validates the result: the one check of the
    /// settings, which [`crate::start`] then takes as they are.
    pub fn load<K: AsRef<str>, V: Into<config::Value>>(
        file: Option<&Path>,
        overrides: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let cfg: BridgeConfig = tapgate_runtime::settings::load(file, overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Replicas a decision must reach before it is confirmed (see `wait_replicas`).
    pub fn redis_wait_replicas(&self) -> u32 {
        self.wait_replicas
            .unwrap_or(u32::from(self.redis.starts_with("redis+sentinel://")))
    }

    /// The broker connection: URL and credentials checked; the TLS files are read when the
    /// connection is built ([`BridgeConfig::validate`] reads them once at load).
    pub fn broker(&self) -> Result<BrokerSettings, ConfigError> {
        self.broker
            .settings()
            .map_err(|e| ConfigError::invalid("mqtt", e.to_string()))
    }

    /// The per-device rate limit.
    pub fn device_rate(&self) -> crate::limit::Rate {
        crate::limit::Rate {
            per_second: self.device_rate,
            burst: self.device_burst,
        }
    }

    /// The rules' time settings.
    pub fn time_settings(&self) -> tapgate_protocol::rules::TimeSettings {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        tapgate_protocol::rules::TimeSettings {
            decision_window_ms: ms(self.decision_window),
            max_future_ms: ms(self.max_time_ahead),
            max_skew_ms: ms(self.max_clock_skew),
            max_offline_age_ms: ms(self.max_offline_age),
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, why: &str| ConfigError::Invalid {
            field,
            why: why.to_owned(),
        };
        for (field, secret) in [
            ("redis_password", self.redis_password.as_deref()),
            ("redis", url_password(&self.redis)),
        ] {
            refuse_placeholder(field, secret).map_err(|e| invalid(field, &e.to_string()))?;
        }
        self.broker
            .checked()
            .map_err(|e| invalid("mqtt", &e.to_string()))?;
        if self.wait_timeout < Duration::from_millis(1) {
            return Err(invalid("wait_timeout", "must be at least 1ms"));
        }
        if self.two_hour_duration.is_zero() {
            return Err(invalid("two_hour_duration", "must be longer than zero"));
        }
        if self.sale_timeout < Duration::from_millis(100) {
            return Err(invalid("sale_timeout", "must be at least 100ms"));
        }
        if self.idempotency_ttl < Duration::from_secs(1) {
            return Err(invalid("idempotency_ttl", "must be at least 1s"));
        }
        if self.stream_maxlen == 0 {
            return Err(invalid("stream_maxlen", "must be at least 1"));
        }
        if self.card_recent_ttl < Duration::from_secs(1) {
            return Err(invalid("card_recent_ttl", "must be at least 1s"));
        }
        if self.device_ttl < Duration::from_secs(60) {
            return Err(invalid("device_ttl", "must be at least 60s"));
        }
        if self.decision_window < Duration::from_millis(100) {
            return Err(invalid("decision_window", "must be at least 100ms"));
        }
        if self.max_clock_skew < Duration::from_millis(100) {
            return Err(invalid("max_clock_skew", "must be at least 100ms"));
        }
        if !(1..=4096).contains(&self.shard_queue) {
            return Err(invalid("shard_queue", "must be 1-4096"));
        }
        if self.device_rate > 1_000_000 {
            return Err(invalid(
                "device_rate",
                "must be 0 (off) to 1000000 a second",
            ));
        }
        if !(1..=1_000_000).contains(&self.device_burst) {
            return Err(invalid("device_burst", "must be 1-1000000"));
        }
        if self.client_id.is_empty() || self.client_id.len() > 128 {
            return Err(invalid("client_id", "must be 1-128 characters"));
        }
        if let Some(g) = &self.shared_group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                return Err(invalid(
                    "shared_group",
                    "must be non-empty without '/', '+' or '#'",
                ));
            }
        }
        Ok(())
    }
}
