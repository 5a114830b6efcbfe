//! The bridge's INFO line a minute: decisions per second, by outcome, and the latency p99.
//!
//! Deciding logs nothing per message at INFO (a busy bridge would write a line per tap); the
//! counters behind `/metrics` stay exact, and this task turns their change over each interval into
//! one summary line.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;

/// Logs one summary per `every` until `shutdown`; quiet when nothing was decided.
pub(crate) async fn run(metrics: Metrics, every: Duration, shutdown: CancellationToken) {
    let mut last = metrics.decisions_by_outcome();
    let mut buckets = metrics.latency_buckets();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = metrics.decisions_by_outcome();
        let changed: Vec<String> = now
            .iter()
            .zip(&last)
            .filter(|((_, n), (_, l))| n > l)
            .map(|((name, n), (_, l))| format!("{name}={}", n - l))
            .collect();
        let total: u64 = now.iter().zip(&last).map(|((_, n), (_, l))| n - l).sum();
        if total > 0 {
            let p99_ms = metrics
                .latency_quantile_since(&buckets, 0.99)
                .map(|s| s * 1000.0);
            info!(
                decisions = total,
                // Two decimals: a rate, not a float's every digit (4.02, not 4.016666666666667).
                per_second = (total as f64 / every.as_secs_f64() * 100.0).round() / 100.0,
                outcomes = %changed.join(" "),
                p99_ms_at_most = ?p99_ms,
                "Decisions in the last interval"
            );
        }
        last = now;
        buckets = metrics.latency_buckets();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{DeviceKind, Outcome};

    #[test]
    fn quantile_since_a_snapshot_counts_only_newer_decisions() {
        let m = Metrics::default();
        for _ in 0..100 {
            m.decision(
                DeviceKind::Gate,
                &Outcome::SelectPass {
                    products: Vec::new(),
                },
                Duration::from_millis(30),
            );
        }
        let before = m.latency_buckets();
        for _ in 0..99 {
            m.decision(
                DeviceKind::Gate,
                &Outcome::TapCardFirst,
                Duration::from_micros(800),
            );
        }
        m.decision(
            DeviceKind::Gate,
            &Outcome::TapCardFirst,
            Duration::from_millis(300),
        );
        // 99 of the 100 new ones are within 1 ms; the old 30 ms ones do not count.
        assert_eq!(m.latency_quantile_since(&before, 0.99), Some(0.001));
        assert_eq!(m.latency_quantile_since(&before, 1.0), Some(0.5));
        let by = m.decisions_by_outcome();
        assert!(by.contains(&("tap_card_first", 100)));
        assert!(by.contains(&("select_pass", 100)));
    }
}
