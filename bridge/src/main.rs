//! `tapgate-bridge`: parses settings, sets up logging, and runs the bridge until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tapgate_bridge::BridgeConfig;
use tapgate_runtime::logging::LogFormat;
use tapgate_runtime::mqtt::MqttArgs;
use tapgate_runtime::settings::Overrides;

/// Decides tapgate device taps and button presses against Redis, atomically, over MQTT.
///
/// Settings come from built-in defaults, then the TOML file given with --config, then TAPGATE_*
/// environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(name = "tapgate-bridge", version)]
struct Cli {
    /// TOML settings file (keys as the long flags, with underscores: two_hour_duration = "2h").
    #[arg(long, env = "TAPGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Redis URL: redis://[user:password@]host:port, or
    /// redis+sentinel://host:port,host:port,host:port/primary-name to follow Sentinel failovers
    /// [default: redis://127.0.0.1:6379].
    #[arg(long, env = "TAPGATE_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Replicas that must hold a decision before it is confirmed (Redis WAIT)
    /// [default: 1 with a redis+sentinel:// URL, else 0].
    #[arg(long, env = "TAPGATE_WAIT_REPLICAS")]
    wait_replicas: Option<u32>,
    /// How long to wait for those replicas before trying the message again [default: 500ms].
    #[arg(long, env = "TAPGATE_WAIT_TIMEOUT")]
    wait_timeout: Option<String>,
    /// Redis password, if not in the URL.
    #[arg(long, env = "TAPGATE_REDIS_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
    /// Broker URL, login and TLS files.
    #[command(flatten)]
    broker: MqttArgs,
    /// MQTT client id; keep it stable so the broker keeps taps queued while the bridge is down
    /// [default: tapgate-bridge].
    #[arg(long, env = "TAPGATE_CLIENT_ID")]
    client_id: Option<String>,
    /// Topic prefix shared with the devices [default: tapgate].
    #[arg(long, env = "TAPGATE_PREFIX")]
    prefix: Option<String>,
    /// Shared-subscription group so several bridges split the work [default: none].
    #[arg(long, env = "TAPGATE_SHARED_GROUP")]
    shared_group: Option<String>,
    /// Fare catalogue, a TOML file of products and prices (reloaded on SIGHUP)
    /// [default: built-in: SINGLE_USE, TEN_TRIP, TWO_HOUR at price 0].
    #[arg(long, env = "TAPGATE_FARES")]
    fares: Option<PathBuf>,
    /// Validity of the built-in catalogue's two-hour pass after its first entry, e.g. 2h or 3s
    /// [default: 2h].
    #[arg(long, env = "TAPGATE_TWO_HOUR_DURATION")]
    two_hour_duration: Option<String>,
    /// How long a terminal's sale waits for its next step [default: 30s].
    #[arg(long, env = "TAPGATE_SALE_TIMEOUT")]
    sale_timeout: Option<String>,
    /// How long decisions are remembered for redeliveries [default: 24h].
    #[arg(long, env = "TAPGATE_IDEMPOTENCY_TTL")]
    idempotency_ttl: Option<String>,
    /// Approximate length of the tapgate:events stream [default: 1000000].
    #[arg(long, env = "TAPGATE_STREAM_MAXLEN")]
    stream_maxlen: Option<u64>,
    /// How long a card's recent-events list is kept after its last event [default: 30days].
    #[arg(long, env = "TAPGATE_CARD_RECENT_TTL")]
    card_recent_ttl: Option<String>,
    /// How long a device's presence and counters are kept after it was last heard from
    /// [default: 30days].
    #[arg(long, env = "TAPGATE_DEVICE_TTL")]
    device_ttl: Option<String>,
    /// Messages each worker shard may hold waiting; beyond it QoS 0 messages are dropped
    /// [default: 64].
    #[arg(long, env = "TAPGATE_SHARD_QUEUE")]
    shard_queue: Option<usize>,
    /// Messages a second each device may send on average (taps, buttons, heartbeats); beyond it
    /// and the burst they are refused as rate_limited without reaching Redis; 0: no limit
    /// [default: 20].
    #[arg(long, env = "TAPGATE_DEVICE_RATE")]
    device_rate: Option<u32>,
    /// Messages each device may send at once before the rate applies (a gate sending what it
    /// queued during an outage) [default: 1000].
    #[arg(long, env = "TAPGATE_DEVICE_BURST")]
    device_burst: Option<u32>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, env = "TAPGATE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Longest wait between reconnect attempts [default: 10s].
    #[arg(long, env = "TAPGATE_MAX_BACKOFF")]
    max_backoff: Option<String>,
    /// A waiting tap older than this is answered `stale` and charged nothing; shorter than the
    /// devices' decision timeout (2s) by an answer's trip [default: 1500ms].
    #[arg(long, env = "TAPGATE_DECISION_WINDOW")]
    decision_window: Option<String>,
    /// Refuse message times further ahead of the bridge's clock than this [default: 5s].
    #[arg(long, env = "TAPGATE_MAX_TIME_AHEAD")]
    max_time_ahead: Option<String>,
    /// Flag a device whose clock is off by more than this [default: 1s].
    #[arg(long, env = "TAPGATE_MAX_CLOCK_SKEW")]
    max_clock_skew: Option<String>,
    /// Refuse offline entries that happened longer ago than this [default: 24h].
    #[arg(long, env = "TAPGATE_MAX_OFFLINE_AGE")]
    max_offline_age: Option<String>,
    /// Refuse taps and buttons without time and mode [default: false].
    #[arg(long, env = "TAPGATE_REQUIRE_STAMP")]
    require_stamp: Option<bool>,
    /// Log format: text or json. What is logged comes from RUST_LOG, e.g. RUST_LOG=debug or
    /// RUST_LOG=tapgate_bridge=debug,info [default: info].
    #[arg(long, env = "TAPGATE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        o.put("redis", self.redis.clone());
        o.put("redis_password", self.redis_password.clone());
        o.put("wait_replicas", self.wait_replicas.map(|v| v.to_string()));
        o.put("wait_timeout", self.wait_timeout.clone());
        o.put("client_id", self.client_id.clone());
        o.put("prefix", self.prefix.clone());
        o.put("shared_group", self.shared_group.clone());
        o.put(
            "fares",
            self.fares.as_ref().map(|p| p.display().to_string()),
        );
        o.put("two_hour_duration", self.two_hour_duration.clone());
        o.put("sale_timeout", self.sale_timeout.clone());
        o.put("idempotency_ttl", self.idempotency_ttl.clone());
        o.put("stream_maxlen", self.stream_maxlen.map(|v| v.to_string()));
        o.put("card_recent_ttl", self.card_recent_ttl.clone());
        o.put("device_ttl", self.device_ttl.clone());
        o.put("shard_queue", self.shard_queue.map(|v| v.to_string()));
        o.put("device_rate", self.device_rate.map(|v| v.to_string()));
        o.put("device_burst", self.device_burst.map(|v| v.to_string()));
        o.put("metrics_addr", self.metrics_addr.map(|v| v.to_string()));
        o.put("max_backoff", self.max_backoff.clone());
        o.put("decision_window", self.decision_window.clone());
        o.put("max_time_ahead", self.max_time_ahead.clone());
        o.put("max_clock_skew", self.max_clock_skew.clone());
        o.put("max_offline_age", self.max_offline_age.clone());
        o.put("require_stamp", self.require_stamp.map(|v| v.to_string()));
        o.extend(self.broker.overrides());
        o
    }
}

/// One thread runs every task. Per tap the bridge's tasks hand work to each other several times
/// (MQTT loop, shard worker, Redis connection, back to the MQTT loop); on one thread a hand-over is
/// a queue push, while between threads it is often a futex wake-up and a context switch, which
/// costs more than the work handed over. One core is also more than Redis, single-threaded, can
/// keep busy with decisions.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tapgate_runtime::exit::report(start().await)
}

async fn start() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tapgate_runtime::logging::init(cli.log_format, "info")?;
    let config =
        BridgeConfig::load(cli.config.as_deref(), cli.overrides()).context("invalid settings")?;
    let shutdown = tapgate_runtime::shutdown::on_signals();
    tapgate_bridge::run(config, shutdown)
        .await
        .context("bridge failed")
}
