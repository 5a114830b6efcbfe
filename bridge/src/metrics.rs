//! Prometheus metrics: counters kept in atomics and a tiny `/metrics` HTTP endpoint.
//!
//! Labels are low-cardinality enums (message kind, device kind, outcome, reason): never a card or
//! device id.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::{DeviceKind, Outcome, RejectReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

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

#[derive(Default)]
struct Inner {
    messages: [AtomicU64; 4],
    decisions: [[AtomicU64; Outcome::NAMES.len()]; 2],
    rejected: [AtomicU64; RejectReason::ALL.len()],
    replays: AtomicU64,
    clock_flags: [AtomicU64; 2],
    unstamped: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    redis_reconnects: AtomicU64,
    mqtt_reconnects: AtomicU64,
    dropped: AtomicU64,
    inflight: AtomicI64,
}

/// The bridge's counters. Cheap to clone; all clones share the same values.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

fn kind_index(kind: DeviceKind) -> usize {
    match kind {
        DeviceKind::Gate => 0,
        DeviceKind::Terminal => 1,
    }
}

impl Metrics {
    /// A message arrived on a device topic of this kind.
    pub fn message(&self, kind: MessageKind) {
        if let Some(i) = MESSAGES.iter().position(|m| *m == kind) {
            self.0.messages[i].fetch_add(1, Relaxed);
        }
    }

    /// A decision was published, `latency` after the message arrived.
    pub fn decision(&self, kind: DeviceKind, outcome: &Outcome, latency: Duration) {
        if let Some(i) = Outcome::NAMES.iter().position(|n| *n == outcome.name()) {
            self.0.decisions[kind_index(kind)][i].fetch_add(1, Relaxed);
        }
        self.latency(latency);
    }

    /// Decisions so far, by outcome name (both device kinds together).
    pub fn decisions_by_outcome(&self) -> Vec<(&'static str, u64)> {
        Outcome::NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let n = self.0.decisions.iter().map(|k| k[i].load(Relaxed)).sum();
                (*name, n)
            })
            .collect()
    }

    /// The smallest latency bucket bound (seconds) that holds at least `q` of all decisions
    /// counted since `since` (bucket counts taken earlier by [`Metrics::latency_buckets`]).
    pub fn latency_quantile_since(&self, since: &[u64], q: f64) -> Option<f64> {
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
    pub fn latency_buckets(&self) -> Vec<u64> {
        self.0
            .latency_buckets
            .iter()
            .map(|b| b.load(Relaxed))
            .collect()
    }

    /// Records a decision latency.
    pub fn latency(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.0.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.0.latency_count.fetch_add(1, Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.latency_sum_us.fetch_add(us, Relaxed);
    }

    /// A message was refused.
    pub fn rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.0.rejected[i].fetch_add(1, Relaxed);
        }
    }

    /// A redelivered message was answered from its stored decision.
    pub fn replay(&self) {
        self.0.replays.fetch_add(1, Relaxed);
    }

    /// A device's clock was flagged as off (`true`) or cleared (`false`).
    pub fn clock_flag(&self, flagged: bool) {
        self.0.clock_flags[usize::from(!flagged)].fetch_add(1, Relaxed);
    }

    /// A tap or button without `time` and `mode` was decided on the bridge's clock.
    pub fn unstamped(&self) {
        self.0.unstamped.fetch_add(1, Relaxed);
    }

    /// A Redis call failed on the connection and is being retried.
    pub fn redis_reconnect(&self) {
        self.0.redis_reconnects.fetch_add(1, Relaxed);
    }

    /// The MQTT connection dropped and is being re-established.
    pub fn mqtt_reconnect(&self) {
        self.0.mqtt_reconnects.fetch_add(1, Relaxed);
    }

    /// A QoS 0 message was dropped because its shard's queue was full.
    pub fn dropped(&self) {
        self.0.dropped.fetch_add(1, Relaxed);
    }

    /// QoS 0 messages dropped so far.
    pub fn dropped_total(&self) -> u64 {
        self.0.dropped.load(Relaxed)
    }

    /// MQTT connection losses so far.
    pub fn mqtt_reconnects_total(&self) -> u64 {
        self.0.mqtt_reconnects.load(Relaxed)
    }

    /// Messages received but not yet acknowledged.
    pub fn inflight_add(&self, delta: i64) {
        self.0.inflight.fetch_add(delta, Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let m = &self.0;
        let mut text = String::with_capacity(4096);
        header(
            &mut text,
            "tapgate_messages_total",
            "counter",
            "Device messages received, by message kind.",
        );
        for (i, kind) in MESSAGES.iter().enumerate() {
            let _ = writeln!(
                text,
                "tapgate_messages_total{{message=\"{kind}\"}} {}",
                m.messages[i].load(Relaxed)
            );
        }
        header(
            &mut text,
            "tapgate_decisions_total",
            "counter",
            "Decisions published, by device kind and outcome.",
        );
        for kind in DeviceKind::ALL {
            for (i, outcome) in Outcome::NAMES.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "tapgate_decisions_total{{device_kind=\"{kind}\",outcome=\"{outcome}\"}} {}",
                    m.decisions[kind_index(kind)][i].load(Relaxed)
                );
            }
        }
        header(
            &mut text,
            "tapgate_rejected_total",
            "counter",
            "Device messages refused, by reason.",
        );
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            let _ = writeln!(
                text,
                "tapgate_rejected_total{{reason=\"{reason}\"}} {}",
                m.rejected[i].load(Relaxed)
            );
        }
        header(
            &mut text,
            "tapgate_replays_total",
            "counter",
            "Redelivered messages answered with their stored decision.",
        );
        let _ = writeln!(text, "tapgate_replays_total {}", m.replays.load(Relaxed));
        header(
            &mut text,
            "tapgate_clock_skew_flags_total",
            "counter",
            "Device clocks flagged as off by more than max_clock_skew, or cleared again.",
        );
        for (i, change) in ["flagged", "cleared"].iter().enumerate() {
            let _ = writeln!(
                text,
                "tapgate_clock_skew_flags_total{{change=\"{change}\"}} {}",
                m.clock_flags[i].load(Relaxed)
            );
        }
        header(
            &mut text,
            "tapgate_unstamped_messages_total",
            "counter",
            "Taps and buttons without time and mode, decided on the bridge's clock (transition).",
        );
        let _ = writeln!(
            text,
            "tapgate_unstamped_messages_total {}",
            m.unstamped.load(Relaxed)
        );
        header(
            &mut text,
            "tapgate_decision_latency_seconds",
            "histogram",
            "Time from receiving a message to publishing its decision.",
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                text,
                "tapgate_decision_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                m.latency_buckets[i].load(Relaxed)
            );
        }
        let count = m.latency_count.load(Relaxed);
        let _ = writeln!(
            text,
            "tapgate_decision_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = m.latency_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(text, "tapgate_decision_latency_seconds_sum {sum}");
        let _ = writeln!(text, "tapgate_decision_latency_seconds_count {count}");
        header(
            &mut text,
            "tapgate_redis_reconnects_total",
            "counter",
            "Redis calls retried after a connection failure.",
        );
        let _ = writeln!(
            text,
            "tapgate_redis_reconnects_total {}",
            m.redis_reconnects.load(Relaxed)
        );
        header(
            &mut text,
            "tapgate_mqtt_reconnects_total",
            "counter",
            "MQTT connection losses followed by a reconnect attempt.",
        );
        let _ = writeln!(
            text,
            "tapgate_mqtt_reconnects_total {}",
            m.mqtt_reconnects.load(Relaxed)
        );
        header(
            &mut text,
            "tapgate_dropped_total",
            "counter",
            "QoS 0 messages dropped because their worker shard's queue was full.",
        );
        let _ = writeln!(
            text,
            "tapgate_dropped_total{{qos=\"0\"}} {}",
            m.dropped.load(Relaxed)
        );
        header(
            &mut text,
            "tapgate_inflight_messages",
            "gauge",
            "Messages received and not yet acknowledged.",
        );
        let _ = writeln!(
            text,
            "tapgate_inflight_messages {}",
            m.inflight.load(Relaxed)
        );
        text
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Binds the metrics endpoint (failing fast if the address is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "Serving metrics on /metrics");
    }
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => { debug!(error = %e, "Metrics accept failed"); continue; }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let line = request.lines().next().unwrap_or_default();
            let response = if line.starts_with("GET /metrics ") || line == "GET /metrics" {
                let body = metrics.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let line = tapgate_protocol::text::escape_untrusted(line, 200);
                debug!(%peer, line = ?line, "Metrics: not found");
                let body = "only GET /metrics is served here\n";
                format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
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
