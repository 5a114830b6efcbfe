//! Prometheus metrics, kept by the `prometheus` crate and served on `GET /metrics` by axum.
//!
//! Labels are low-cardinality enums (message kind, device kind, outcome, reason): never a card or
//! device id. Every label value is created up front, so a scrape shows each series from zero, and
//! its handle is kept: counting a message is an index and an atomic add, with no label lookup.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::core::{Collector, Metric as _};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::{DeviceKind, Outcome, RejectReason};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Upper bounds of the decision latency histogram, seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
const MESSAGES: [MessageKind; 4] = [
    MessageKind::Tap,
    MessageKind::Button,
    MessageKind::Status,
    MessageKind::Heartbeat,
];
/// The values of `change` on `tapgate_clock_skew_flags_total`.
const CLOCK_CHANGES: [&str; 2] = ["flagged", "cleared"];

struct Inner {
    registry: Registry,
    /// By position in [`MESSAGES`].
    messages: Vec<IntCounter>,
    /// By position in [`DeviceKind::ALL`], then in [`Outcome::NAMES`].
    decisions: Vec<Vec<IntCounter>>,
    /// By position in [`RejectReason::ALL`].
    rejected: Vec<IntCounter>,
    replays: IntCounter,
    /// By position in [`CLOCK_CHANGES`].
    clock_flags: Vec<IntCounter>,
    unstamped: IntCounter,
    latency: Histogram,
    redis_reconnects: IntCounter,
    mqtt_reconnects: IntCounter,
    dropped: IntCounter,
    rate_limited: IntCounter,
    inflight: IntGauge,
    ready: IntGauge,
    redis_memory: RedisMemoryGauges,
}

/// Redis memory against its limit (`INFO memory`), and the writes it refused at the limit.
struct RedisMemoryGauges {
    used: IntGauge,
    max: IntGauge,
    full: IntCounter,
}

/// The bridge's counters. Cheap to clone; all clones share the same values.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let r = Register(&registry);
        Self(Arc::new(Inner {
            messages: r.series(
                "tapgate_messages_total",
                "Device messages received, by message kind.",
                "message",
                &MESSAGES,
            ),
            decisions: decisions(&r),
            rejected: r.series(
                "tapgate_rejected_total",
                "Device messages refused, by reason.",
                "reason",
                &RejectReason::ALL,
            ),
            replays: r.counter(
                "tapgate_replays_total",
                "Redelivered messages answered with their stored decision.",
            ),
            clock_flags: r.series(
                "tapgate_clock_skew_flags_total",
                "Device clocks flagged as off by more than max_clock_skew, or cleared again.",
                "change",
                &CLOCK_CHANGES,
            ),
            unstamped: r.counter(
                "tapgate_unstamped_messages_total",
                "Taps and buttons without time and mode, decided on the bridge's clock (transition).",
            ),
            latency: latency(&r),
            redis_reconnects: r.counter(
                "tapgate_redis_reconnects_total",
                "Redis calls retried after a connection failure.",
            ),
            mqtt_reconnects: r.counter(
                "tapgate_mqtt_reconnects_total",
                "MQTT connection losses followed by a reconnect attempt.",
            ),
            dropped: dropped(&r),
            rate_limited: r.counter(
                "tapgate_rate_limited_total",
                "Device messages refused (rate_limited) because their device sent more than \
                 device_rate a second and device_burst at once; none reached Redis.",
            ),
            inflight: r.gauge(
                "tapgate_inflight_messages",
                "Messages received and not yet acknowledged.",
            ),
            ready: r.gauge(
                "tapgate_ready",
                "1 while the bridge has a Redis primary and is subscribed; 0 while it waits for one.",
            ),
            redis_memory: RedisMemoryGauges::new(&r),
            registry,
        }))
    }
}

/// The metrics' definitions are constants: a failure to make or register one is a programming
/// error.
const VALID: &str = "metric definitions are valid and registered once";

/// Makes metrics and registers each in one registry.
struct Register<'a>(&'a Registry);

impl Register<'_> {
    /// `metric`, registered.
    fn add<M: Collector + Clone + 'static>(&self, metric: prometheus::Result<M>) -> M {
        let metric = metric.expect(VALID);
        self.0.register(Box::new(metric.clone())).expect(VALID);
        metric
    }

    /// A counter without labels.
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    /// A gauge without labels.
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    /// A counter family with one label, and its series for each of `values`, in their order.
    fn series<T: ToString>(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[T],
    ) -> Vec<IntCounter> {
        let family = self.add(IntCounterVec::new(Opts::new(name, help), &[label]));
        values
            .iter()
            .map(|value| family.with_label_values(&[value.to_string()]))
            .collect()
    }
}

/// `tapgate_decisions_total`: by position in [`DeviceKind::ALL`], then in [`Outcome::NAMES`].
fn decisions(r: &Register) -> Vec<Vec<IntCounter>> {
    let decisions = r.add(IntCounterVec::new(
        Opts::new(
            "tapgate_decisions_total",
            "Decisions published, by device kind and outcome.",
        ),
        &["device_kind", "outcome"],
    ));
    DeviceKind::ALL
        .iter()
        .map(|kind| {
            let kind = kind.to_string();
            Outcome::NAMES
                .iter()
                .map(|outcome| decisions.with_label_values(&[kind.as_str(), outcome]))
                .collect()
        })
        .collect()
}

/// `tapgate_decision_latency_seconds`, in [`BUCKETS`].
fn latency(r: &Register) -> Histogram {
    r.add(Histogram::with_opts(
        HistogramOpts::new(
            "tapgate_decision_latency_seconds",
            "Time from receiving a message to publishing its decision.",
        )
        .buckets(BUCKETS.to_vec()),
    ))
}

/// `tapgate_dropped_total`, with the constant label `qos="0"`: QoS 1 messages are never dropped.
fn dropped(r: &Register) -> IntCounter {
    r.add(IntCounter::with_opts(
        Opts::new(
            "tapgate_dropped_total",
            "QoS 0 messages dropped because their worker shard's queue was full.",
        )
        .const_label("qos", "0"),
    ))
}

impl RedisMemoryGauges {
    /// The Redis memory gauges and the refusals counter, registered.
    fn new(r: &Register) -> Self {
        Self {
            used: r.gauge(
                "tapgate_redis_used_memory_bytes",
                "Memory Redis uses (INFO memory used_memory), read every few seconds.",
            ),
            max: r.gauge(
                "tapgate_redis_maxmemory_bytes",
                "Redis's memory limit (maxmemory); 0 when it has none.",
            ),
            full: r.counter(
                "tapgate_redis_full_refusals_total",
                "Redis writes refused because Redis reached maxmemory (OOM): nothing was stored.",
            ),
        }
    }
}

impl Metrics {
    /// Whether the bridge can decide now: it has a Redis primary and its subscription.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.0.ready.set(i64::from(ready));
    }

    /// What [`Metrics::set_ready`] last said.
    pub(crate) fn is_ready(&self) -> bool {
        self.0.ready.get() == 1
    }

    /// A message arrived on a device topic of this kind.
    pub fn message(&self, kind: MessageKind) {
        if let Some(c) = position(&MESSAGES, &kind).and_then(|i| self.0.messages.get(i)) {
            c.inc();
        }
    }

    /// A decision was published, `latency` after the message arrived.
    pub fn decision(&self, kind: DeviceKind, outcome: &Outcome, latency: Duration) {
        if let Some(c) = self.decision_counter(kind, outcome.name()) {
            c.inc();
        }
        self.latency(latency);
    }

    fn decision_counter(&self, kind: DeviceKind, name: &str) -> Option<&IntCounter> {
        let by_kind = self.0.decisions.get(position(&DeviceKind::ALL, &kind)?)?;
        by_kind.get(Outcome::NAMES.iter().position(|n| *n == name)?)
    }

    /// Decisions so far, by outcome name (both device kinds together).
    pub fn decisions_by_outcome(&self) -> Vec<(&'static str, u64)> {
        Outcome::NAMES
            .iter()
            .map(|name| {
                let n = DeviceKind::ALL
                    .iter()
                    .filter_map(|kind| self.decision_counter(*kind, name))
                    .map(IntCounter::get)
                    .sum();
                (*name, n)
            })
            .collect()
    }

    /// The smallest latency bucket bound (seconds) that holds at least `q` of all decisions
    /// counted since `since` (bucket counts taken earlier by [`Metrics::latency_buckets`]).
    pub(crate) fn latency_quantile_since(&self, since: &[u64], q: f64) -> Option<f64> {
        let now = self.latency_buckets();
        let total = now.last().copied().unwrap_or(0) - since.last().copied().unwrap_or(0);
        if total == 0 {
            return None;
        }
        let want = (total as f64 * q).ceil() as u64;
        BUCKETS
            .iter()
            .zip(now.iter().zip(since))
            .find(|(_, (n, s))| **n - **s >= want)
            .map(|(bound, _)| *bound)
    }

    /// Cumulative latency bucket counts (the last one holds every decision up to 10 s).
    pub(crate) fn latency_buckets(&self) -> Vec<u64> {
        self.0
            .latency
            .metric()
            .get_histogram()
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect()
    }

    /// Records a decision latency.
    pub(crate) fn latency(&self, latency: Duration) {
        self.0.latency.observe(latency.as_secs_f64());
    }

    /// A message was refused.
    pub fn rejected(&self, reason: RejectReason) {
        if let Some(c) = position(&RejectReason::ALL, &reason).and_then(|i| self.0.rejected.get(i))
        {
            c.inc();
        }
    }

    /// A redelivered message was answered from its stored decision.
    pub(crate) fn replay(&self) {
        self.0.replays.inc();
    }

    /// A device's clock was flagged as off (`true`) or cleared (`false`).
    pub fn clock_flag(&self, flagged: bool) {
        if let Some(c) = self.0.clock_flags.get(usize::from(!flagged)) {
            c.inc();
        }
    }

    /// A tap or button without `time` and `mode` was decided on the bridge's clock.
    pub(crate) fn unstamped(&self) {
        self.0.unstamped.inc();
    }

    /// A Redis call failed on the connection and is being retried.
    pub(crate) fn redis_reconnect(&self) {
        self.0.redis_reconnects.inc();
    }

    /// The MQTT connection dropped and is being re-established.
    pub(crate) fn mqtt_reconnect(&self) {
        self.0.mqtt_reconnects.inc();
    }

    /// A QoS 0 message was dropped because its shard's queue was full.
    pub fn dropped(&self) {
        self.0.dropped.inc();
    }

    /// QoS 0 messages dropped so far.
    pub fn dropped_total(&self) -> u64 {
        self.0.dropped.get()
    }

    /// MQTT connection losses so far.
    pub fn mqtt_reconnects_total(&self) -> u64 {
        self.0.mqtt_reconnects.get()
    }

    /// A message was refused by its device's rate limit.
    pub(crate) fn rate_limited(&self) {
        self.0.rate_limited.inc();
        self.rejected(RejectReason::RateLimited);
    }

    /// Messages refused by the per-device rate limit so far.
    pub fn rate_limited_total(&self) -> u64 {
        self.0.rate_limited.get()
    }

    /// Messages received but not yet acknowledged.
    pub fn inflight_add(&self, delta: i64) {
        self.0.inflight.add(delta);
    }

    /// Redis's memory use and limit, bytes (`INFO memory`; a limit of 0 means none).
    pub fn set_redis_memory(&self, used: u64, max: u64) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.0.redis_memory.used.set(gauge(used));
        self.0.redis_memory.max.set(gauge(max));
    }

    /// Redis refused a write because it reached `maxmemory`.
    pub fn redis_full(&self) {
        self.0.redis_memory.full.inc();
    }

    /// Writes Redis refused at its memory limit so far.
    pub fn redis_full_total(&self) -> u64 {
        self.0.redis_memory.full.get()
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.0.registry.gather())
            .unwrap_or_else(|e| {
                warn!(error = %e, "Metrics could not be encoded");
                String::new()
            })
    }
}

/// Where `item` is in `all`.
fn position<T: PartialEq>(all: &[T], item: &T) -> Option<usize> {
    all.iter().position(|x| x == item)
}

/// Serves `GET /metrics` and `GET /ready` (200 when [`Metrics::is_ready`], else 503) until
/// `shutdown`. Each response closes its connection, so a scraper
/// that reads to the end of the stream gets the whole body and shutdown never waits on an idle
/// keep-alive connection.
pub(crate) async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "Serving metrics on /metrics");
    }
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/ready", get(ready))
        .fallback(not_found)
        .with_state(metrics);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        warn!(error = %e, "Metrics endpoint stopped");
    }
}

async fn scrape(axum::extract::State(metrics): axum::extract::State<Metrics>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, prometheus::TEXT_FORMAT),
            (header::CONNECTION, "close"),
        ],
        metrics.render(),
    )
}

/// Readiness for an orchestrator: not ready while the bridge waits for a Redis primary.
async fn ready(axum::extract::State(metrics): axum::extract::State<Metrics>) -> impl IntoResponse {
    let (status, body) = if metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no Redis primary named by a majority of the sentinels, or not subscribed\n",
        )
    };
    (status, [(header::CONNECTION, "close")], body)
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [(header::CONNECTION, "close")],
        "only GET /metrics and GET /ready are served here\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.message(MessageKind::Tap);
        m.decision(
            DeviceKind::Gate,
            &Outcome::CardMismatch,
            Duration::from_millis(3),
        );
        m.rejected(RejectReason::UnknownField);
        m.dropped();
        let text = m.render();
        assert!(text.contains("tapgate_dropped_total{qos=\"0\"} 1"));
        assert!(text.contains("tapgate_messages_total{message=\"tap\"} 1"));
        assert!(text
            .contains("tapgate_decisions_total{device_kind=\"gate\",outcome=\"card_mismatch\"} 1"));
        assert!(text.contains("tapgate_rejected_total{reason=\"unknown_field\"} 1"));
        assert!(text.contains("tapgate_decision_latency_seconds_bucket{le=\"0.002\"} 0"));
        assert!(text.contains("tapgate_decision_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("tapgate_decision_latency_seconds_count 1"));
    }
}

#[cfg(test)]
mod endpoint {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn request(addr: SocketAddr, raw: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(raw).await.expect("send");
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("read to end");
        out
    }

    /// The compose health check: an HTTP/1.0 request without a Host header, the reply read to
    /// the end of the stream and grepped for `^tapgate_inflight_messages`.
    #[tokio::test]
    async fn answers_the_compose_health_check_and_closes() {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Metrics::default(), shutdown.clone()));
        let reply = request(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(
            reply.lines().next().unwrap_or_default().contains(" 200 "),
            "{reply}"
        );
        assert!(
            reply
                .lines()
                .any(|l| l.starts_with("tapgate_inflight_messages")),
            "{reply}"
        );
        let reply = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            reply.lines().next().unwrap_or_default().contains(" 200 "),
            "{reply}"
        );
        let reply = request(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            reply.lines().next().unwrap_or_default().contains(" 404 "),
            "{reply}"
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("stops on shutdown")
            .expect("server task");
    }
}
