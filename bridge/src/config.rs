//! Bridge settings.
//!
//! [`BridgeConfig`] is read in layers: built-in defaults, then a TOML file (`--config`), then
//! `TAPGATE_*` environment variables, then command-line flags. Unknown keys in the file are
//! refused, so a typo is an error rather than a silently ignored setting.
//!
//! A setting is one field here: its doc (the first paragraph is also the flag's help), its
//! `#[arg]` (flag, variable, and the parser that checks a value as it is typed) and its default
//! in [`Default`]. The flags reach the settings through [`tapgate_runtime::settings::given`];
//! [`crate::cli::Cli`] only adds `--config`, `--print-config` and the logging flags.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapgate_protocol::Topics;
use tapgate_runtime::mqtt::{BrokerConfig, BrokerSettings};
use tapgate_runtime::redis_url::{RedisUrl, RedisUrlParser};
use tapgate_runtime::secret::refuse_placeholder;
use tapgate_runtime::settings;

/// Everything the bridge can be told.
///
/// Its `clap::Args` derive declares the flags, taken by the command line with
/// [`settings::Flags`]; the values are read by [`BridgeConfig::load`], in layers, never by clap's
/// `FromArgMatches` alone (it would miss the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Redis URL: redis://host:port (user:password@ before the host for a login), or
    /// redis+sentinel://host:port,host:port,host:port/primary-name to follow Sentinel failovers.
    // Parsed once, as it is read.
    #[arg(long, env = "TAPGATE_REDIS", hide_env_values = true, value_parser = RedisUrlParser)]
    pub redis: RedisUrl,
    /// Replicas that must hold a decision's writes before it is confirmed to the device (Redis
    /// WAIT); unset: 1 with a redis+sentinel:// URL, else 0.
    ///
    /// With Sentinel it is a floor: the bridge waits for every replica any sentinel sees up (any
    /// may be promoted), and refuses 0.
    #[arg(long, env = "TAPGATE_WAIT_REPLICAS")]
    pub wait_replicas: Option<u32>,
    /// How long to wait for those replicas before trying the message again.
    ///
    /// A decision not replicated in time is not confirmed and the message is tried again.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_WAIT_TIMEOUT", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
    /// Redis password, if not given in the URL.
    #[arg(long, env = "TAPGATE_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// The broker: keys `mqtt`, `mqtt_username`, `mqtt_password` and the TLS files.
    #[serde(flatten)]
    #[command(flatten)]
    pub broker: BrokerConfig,
    /// MQTT client id; keep it stable so the broker keeps taps queued while the bridge is down.
    #[arg(long, env = "TAPGATE_CLIENT_ID")]
    pub client_id: String,
    /// Topic prefix shared with the devices.
    // Checked as it is read: a `Topics`, never its text again.
    #[serde(
        deserialize_with = "tapgate_runtime::settings::topics",
        serialize_with = "tapgate_runtime::settings::topics_prefix"
    )]
    #[arg(long, env = "TAPGATE_PREFIX", value_parser = settings::prefix)]
    pub prefix: Topics,
    /// Shared-subscription group ($share/{group}/...) so several bridges split the work; unset:
    /// an ordinary subscription.
    #[arg(long, env = "TAPGATE_SHARED_GROUP")]
    pub shared_group: Option<String>,
    /// Fare catalogue, a TOML file of products and prices (reloaded on SIGHUP); unset: the
    /// built-in one, SINGLE_USE, TEN_TRIP and TWO_HOUR at price 0.
    ///
    /// The file gives the currency, the time zone, the service day's start and the products with
    /// their prices.
    #[arg(long, env = "TAPGATE_FARES")]
    pub fares: Option<std::path::PathBuf>,
    /// Validity of the built-in catalogue's two-hour pass after its first entry, e.g. 2h or 3s.
    ///
    /// Also that of a two-hour pass stored before passes kept their terms.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_TWO_HOUR_DURATION", value_parser = humantime::parse_duration)]
    pub two_hour_duration: Duration,
    /// How long a terminal's sale waits for its next step before it is abandoned.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SALE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub sale_timeout: Duration,
    /// How long a decision is remembered, so a redelivered message gets the same answer.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_IDEMPOTENCY_TTL", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,
    /// Approximate length the tapgate:events stream is trimmed to.
    #[arg(long, env = "TAPGATE_STREAM_MAXLEN")]
    pub stream_maxlen: u64,
    /// How long a card's recent-events list is kept after the card's last event.
    ///
    /// Renewed at most every sixteenth of this: it goes between 15/16 and all of it after the
    /// last event.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_CARD_RECENT_TTL", value_parser = humantime::parse_duration)]
    pub card_recent_ttl: Duration,
    /// How long a device's presence and counters are kept after it was last heard from.
    ///
    /// Its presence is its `tapgate:device:…` hash and its `tapgate:devices` membership.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_DEVICE_TTL", value_parser = humantime::parse_duration)]
    pub device_ttl: Duration,
    /// Messages each worker shard may hold waiting; beyond it QoS 0 messages are dropped.
    ///
    /// There are 64 shards. Beyond it QoS 1 messages wait at the broker (backpressure) and QoS 0
    /// messages are dropped and counted.
    #[arg(long, env = "TAPGATE_SHARD_QUEUE")]
    pub shard_queue: usize,
    /// Messages a second each device may send on average (taps, buttons, heartbeats); beyond it
    /// and the burst they are refused as rate_limited without reaching Redis; 0: no limit.
    ///
    /// Not counted: a device's online/offline status. A rider taps at most about once a second:
    /// the default stops a flood and is never reached by a real gate or terminal. 0 is for load
    /// benchmarks. With several bridges in a shared group each counts on its own.
    #[arg(long, env = "TAPGATE_DEVICE_RATE")]
    pub device_rate: u32,
    /// Messages each device may send at once before the rate applies (a gate sending what it
    /// queued during an outage).
    ///
    /// Devices queue at most 1000, their queue_limit.
    #[arg(long, env = "TAPGATE_DEVICE_BURST")]
    pub device_burst: u32,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464; unset: no endpoint.
    #[arg(long, env = "TAPGATE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Longest wait between reconnect attempts to Redis or the broker.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MAX_BACKOFF", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// A waiting tap or button older than this when the bridge decides is answered `stale` and
    /// charged nothing.
    ///
    /// Keep it shorter than the devices' decision timeout (2s by default) by the time an answer
    /// takes to reach them.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_DECISION_WINDOW", value_parser = humantime::parse_duration)]
    pub decision_window: Duration,
    /// Refuse message times further ahead of the bridge's clock than this (time_in_future).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MAX_TIME_AHEAD", value_parser = humantime::parse_duration)]
    pub max_time_ahead: Duration,
    /// Flag a device whose heartbeat clock is off by more than this (clock-skew).
    ///
    /// Best kept below the decision window: a clock running behind is never corrected.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MAX_CLOCK_SKEW", value_parser = humantime::parse_duration)]
    pub max_clock_skew: Duration,
    /// Refuse offline entries that happened longer ago than this (time_too_old).
    ///
    /// Older than a fail-open gate is meant to hold one, or stamped by a clock that was never
    /// set.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MAX_OFFLINE_AGE", value_parser = humantime::parse_duration)]
    pub max_offline_age: Duration,
    /// Refuse taps and buttons without time and mode (missing_field).
    ///
    /// Off during the transition: such messages are decided on the bridge's clock as waiting
    /// ones.
    #[arg(long, env = "TAPGATE_REQUIRE_STAMP", action = clap::ArgAction::Set)]
    pub require_stamp: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            redis: RedisUrl::default(),
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
    pub(crate) fn redis_wait_replicas(&self) -> u32 {
        self.wait_replicas
            .unwrap_or(u32::from(self.redis.is_sentinel()))
    }

    /// The broker connection: the URL as it was parsed when read, placeholder passwords refused;
    /// the TLS files are read when the connection is built ([`BridgeConfig::validate`] reads
    /// them once at load).
    pub(crate) fn broker(&self) -> Result<BrokerSettings, ConfigError> {
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
    pub(crate) fn time_settings(&self) -> tapgate_protocol::rules::TimeSettings {
        tapgate_protocol::rules::TimeSettings {
            decision_window_ms: millis(self.decision_window),
            max_future_ms: millis(self.max_time_ahead),
            max_skew_ms: millis(self.max_clock_skew),
            max_offline_age_ms: millis(self.max_offline_age),
        }
    }

    /// The period of a two-hour pass stored before passes kept their terms (also the built-in
    /// catalogue's two-hour pass), ms.
    pub(crate) fn legacy_period_ms(&self) -> u64 {
        millis(self.two_hour_duration)
    }

    /// The store's rule timings and retention.
    pub(crate) fn store_settings(&self) -> crate::store::StoreSettings {
        crate::store::StoreSettings {
            legacy_period_ms: self.legacy_period_ms(),
            sale_timeout_ms: millis(self.sale_timeout),
            seen_ttl_s: self.idempotency_ttl.as_secs().max(1),
            stream_maxlen: self.stream_maxlen,
            recent_ttl_s: self.card_recent_ttl.as_secs().max(1),
            device_ttl_s: self.device_ttl.as_secs().max(1),
            time: self.time_settings(),
        }
    }

    /// Checks values that parse but cannot work.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, why: &str| ConfigError::Invalid {
            field,
            why: why.to_owned(),
        };
        for (field, secret) in [
            ("redis_password", self.redis_password.as_deref()),
            ("redis", self.redis.password()),
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

/// `d` in whole milliseconds, as the rules and the store count them (`u64::MAX` beyond).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
