//! The bridge's command line.
//!
//! Every flag but `--config`, `--print-config` and the logging flags
//! ([`settings::NOT_SETTINGS`]) is a setting of
//! [`BridgeConfig`] under the same name: its value reaches the settings through
//! [`tapgate_runtime::settings::given`] (no flag is copied by hand), and `--help` shows its
//! default from [`BridgeConfig::default`]. The typed fields below only check a value as it is
//! typed; the settings read it from the matches.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use tapgate_runtime::logging::LogArgs;
use tapgate_runtime::mqtt::MqttArgs;
use tapgate_runtime::settings::{self, ArgsError, Overrides};

use crate::config::BridgeConfig;

/// Decides tapgate device taps and button presses against Redis, atomically, over MQTT.
///
/// Settings come from built-in defaults, then the TOML file given with --config, then TAPGATE_*
/// environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(name = "tapgate-bridge", version)]
pub struct Cli {
    /// TOML settings file (keys as the long flags, with underscores: two_hour_duration = "2h").
    #[arg(long, env = "TAPGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective settings as TOML (passwords redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Redis URL: redis://[user:password@]host:port, or
    /// redis+sentinel://host:port,host:port,host:port/primary-name to follow Sentinel failovers.
    #[arg(long, env = "TAPGATE_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// Replicas that must hold a decision before it is confirmed (Redis WAIT)
    /// [default: 1 with a redis+sentinel:// URL, else 0].
    #[arg(long, env = "TAPGATE_WAIT_REPLICAS")]
    pub wait_replicas: Option<u32>,
    /// How long to wait for those replicas before trying the message again.
    #[arg(long, env = "TAPGATE_WAIT_TIMEOUT")]
    pub wait_timeout: Option<String>,
    /// Redis password, if not in the URL.
    #[arg(long, env = "TAPGATE_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Broker URL, login and TLS files.
    #[command(flatten)]
    pub broker: MqttArgs,
    /// MQTT client id; keep it stable so the broker keeps taps queued while the bridge is down.
    #[arg(long, env = "TAPGATE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Topic prefix shared with the devices.
    #[arg(long, env = "TAPGATE_PREFIX")]
    pub prefix: Option<String>,
    /// Shared-subscription group so several bridges split the work [default: none].
    #[arg(long, env = "TAPGATE_SHARED_GROUP")]
    pub shared_group: Option<String>,
    /// Fare catalogue, a TOML file of products and prices (reloaded on SIGHUP)
    /// [default: built-in: SINGLE_USE, TEN_TRIP, TWO_HOUR at price 0].
    #[arg(long, env = "TAPGATE_FARES")]
    pub fares: Option<PathBuf>,
    /// Validity of the built-in catalogue's two-hour pass after its first entry, e.g. 2h or 3s.
    #[arg(long, env = "TAPGATE_TWO_HOUR_DURATION")]
    pub two_hour_duration: Option<String>,
    /// How long a terminal's sale waits for its next step.
    #[arg(long, env = "TAPGATE_SALE_TIMEOUT")]
    pub sale_timeout: Option<String>,
    /// How long decisions are remembered for redeliveries.
    #[arg(long, env = "TAPGATE_IDEMPOTENCY_TTL")]
    pub idempotency_ttl: Option<String>,
    /// Approximate length of the tapgate:events stream.
    #[arg(long, env = "TAPGATE_STREAM_MAXLEN")]
    pub stream_maxlen: Option<u64>,
    /// How long a card's recent-events list is kept after its last event.
    #[arg(long, env = "TAPGATE_CARD_RECENT_TTL")]
    pub card_recent_ttl: Option<String>,
    /// How long a device's presence and counters are kept after it was last heard from.
    #[arg(long, env = "TAPGATE_DEVICE_TTL")]
    pub device_ttl: Option<String>,
    /// Messages each worker shard may hold waiting; beyond it QoS 0 messages are dropped.
    #[arg(long, env = "TAPGATE_SHARD_QUEUE")]
    pub shard_queue: Option<usize>,
    /// Messages a second each device may send on average (taps, buttons, heartbeats); beyond it
    /// and the burst they are refused as rate_limited without reaching Redis; 0: no limit.
    #[arg(long, env = "TAPGATE_DEVICE_RATE")]
    pub device_rate: Option<u32>,
    /// Messages each device may send at once before the rate applies (a gate sending what it
    /// queued during an outage).
    #[arg(long, env = "TAPGATE_DEVICE_BURST")]
    pub device_burst: Option<u32>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, env = "TAPGATE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Longest wait between reconnect attempts.
    #[arg(long, env = "TAPGATE_MAX_BACKOFF")]
    pub max_backoff: Option<String>,
    /// A waiting tap older than this is answered `stale` and charged nothing; shorter than the
    /// devices' decision timeout (2s) by an answer's trip.
    #[arg(long, env = "TAPGATE_DECISION_WINDOW")]
    pub decision_window: Option<String>,
    /// Refuse message times further ahead of the bridge's clock than this.
    #[arg(long, env = "TAPGATE_MAX_TIME_AHEAD")]
    pub max_time_ahead: Option<String>,
    /// Flag a device whose clock is off by more than this.
    #[arg(long, env = "TAPGATE_MAX_CLOCK_SKEW")]
    pub max_clock_skew: Option<String>,
    /// Refuse offline entries that happened longer ago than this.
    #[arg(long, env = "TAPGATE_MAX_OFFLINE_AGE")]
    pub max_offline_age: Option<String>,
    /// Refuse taps and buttons without time and mode.
    #[arg(long, env = "TAPGATE_REQUIRE_STAMP")]
    pub require_stamp: Option<bool>,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    /// The command line, each setting's default shown from [`BridgeConfig::default`].
    pub fn command() -> clap::Command {
        settings::show_defaults::<BridgeConfig>(<Self as CommandFactory>::command())
    }

    /// Parses `args` (the program's name first): the flags, and the settings they give as
    /// overrides for [`BridgeConfig::load`].
    pub fn parse_from<I, T>(args: I) -> Result<(Self, Overrides), ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        settings::parse(Self::command(), args, settings::given::<BridgeConfig>)
    }
}
