//! The simulator's figures: counters, the latency histogram, progress lines and the summary.
//!
//! Latency is measured from each message's scheduled send time (open loop), so a stalled
//! system shows up as latency instead of as fewer messages (no coordinated omission). It is kept
//! in microseconds in an HdrHistogram with three significant digits.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Running counters of a simulation.
#[derive(Debug)]
pub struct Tally {
    /// Taps published (gates and terminals, including the stranger taps).
    pub taps_sent: u64,
    /// Button presses published.
    pub buttons_sent: u64,
    /// Garbage payloads published.
    pub garbage_sent: u64,
    /// Decisions received, by outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Decisions that differed from the rules' prediction.
    pub mismatches: u64,
    /// The first few mismatches, explained.
    pub mismatch_examples: Vec<String>,
    /// Decisions explained by an operator blocking or unblocking the card meanwhile.
    pub operator_actions: u64,
    /// Messages published again (same id) after waiting too long for their decision.
    pub republished: u64,
    /// Decisions for ids already answered (QoS 1 redelivery).
    pub duplicates: u64,
    /// Decisions for ids never sent, or unparseable decisions.
    pub unexpected: u64,
    /// Schedule slots with no rider or device free to act.
    pub skipped_slots: u64,
    /// Messages the client refused to queue.
    pub send_failures: u64,
    /// Device connections dropped on purpose.
    pub connection_drops: u64,
    /// Decision latency from the scheduled send time, µs.
    pub latency: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            taps_sent: 0,
            buttons_sent: 0,
            garbage_sent: 0,
            outcomes: BTreeMap::new(),
            mismatches: 0,
            mismatch_examples: Vec::new(),
            operator_actions: 0,
            republished: 0,
            duplicates: 0,
            unexpected: 0,
            skipped_slots: 0,
            send_failures: 0,
            connection_drops: 0,
            // 1 µs to 10 min, 3 significant digits: cannot fail for these bounds.
            latency: Histogram::new_with_bounds(1, 600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
        }
    }
}

impl Tally {
    /// Messages sent of every kind.
    pub fn sent(&self) -> u64 {
        self.taps_sent + self.buttons_sent + self.garbage_sent
    }

    /// Decisions received (matched to a message).
    pub fn decided(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// Records a decision's latency.
    pub fn record_latency(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 600_000_000);
        let _ = self.latency.record(us);
    }

    /// Records a mismatch.
    pub fn mismatch(&mut self, why: String) {
        self.mismatches += 1;
        if self.mismatch_examples.len() < 10 {
            self.mismatch_examples.push(why);
        }
    }

    /// One progress line.
    pub fn progress(&self, elapsed: Duration, inflight: usize) -> String {
        format!(
            "[{:>4.0}s] sent {} decided {} inflight {} mismatches {} p99 {:.1}ms max {:.1}ms drops {}",
            elapsed.as_secs_f64(),
            self.sent(),
            self.decided(),
            inflight,
            self.mismatches,
            ms(self.latency.value_at_quantile(0.99)),
            ms(self.latency.max()),
            self.connection_drops,
        )
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Decisions measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The end-of-run summary (also written as JSON with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Seconds spent sending.
    pub duration_s: f64,
    /// Target messages per second.
    pub target_rate: f64,
    /// Messages sent per second achieved.
    pub achieved_rate: f64,
    /// Taps sent.
    pub taps_sent: u64,
    /// Button presses sent.
    pub buttons_sent: u64,
    /// Garbage payloads sent.
    pub garbage_sent: u64,
    /// Decisions by outcome.
    pub decisions: BTreeMap<String, u64>,
    /// Messages that never got a decision.
    pub lost: u64,
    /// Decisions that differed from the prediction.
    pub mismatches: u64,
    /// Examples of mismatches.
    pub mismatch_examples: Vec<String>,
    /// Decisions explained by an operator's block or unblock (not mismatches).
    pub operator_actions: u64,
    /// Messages published again after waiting too long for a decision.
    pub republished: u64,
    /// Redelivered decisions.
    pub duplicates: u64,
    /// Decisions nobody asked for.
    pub unexpected: u64,
    /// Slots nobody could use.
    pub skipped_slots: u64,
    /// Messages the client refused.
    pub send_failures: u64,
    /// Connections dropped on purpose.
    pub connection_drops: u64,
    /// Decision latency from the scheduled send time.
    pub latency: Latency,
}

impl Summary {
    /// The summary of `tally` after `sending` time, with `lost` unanswered messages.
    pub fn new(tally: &Tally, sending: Duration, target_rate: f64, lost: u64) -> Self {
        let h = &tally.latency;
        let q = |x: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(x))
            }
        };
        let secs = sending.as_secs_f64().max(1e-9);
        Self {
            duration_s: sending.as_secs_f64(),
            target_rate,
            achieved_rate: tally.sent() as f64 / secs,
            taps_sent: tally.taps_sent,
            buttons_sent: tally.buttons_sent,
            garbage_sent: tally.garbage_sent,
            decisions: tally.outcomes.clone(),
            lost,
            mismatches: tally.mismatches,
            mismatch_examples: tally.mismatch_examples.clone(),
            operator_actions: tally.operator_actions,
            republished: tally.republished,
            duplicates: tally.duplicates,
            unexpected: tally.unexpected,
            skipped_slots: tally.skipped_slots,
            send_failures: tally.send_failures,
            connection_drops: tally.connection_drops,
            latency: Latency {
                count: h.len(),
                p50_ms: q(0.5),
                p90_ms: q(0.9),
                p99_ms: q(0.99),
                p999_ms: q(0.999),
                max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
            },
        }
    }

    /// The summary as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!(
            "sent {} taps, {} buttons, {} garbage in {:.1}s ({:.0}/s, target {:.0}/s)",
            self.taps_sent,
            self.buttons_sent,
            self.garbage_sent,
            self.duration_s,
            self.achieved_rate,
            self.target_rate
        ));
        let outcomes: Vec<String> = self
            .decisions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line(format!("decisions: {}", outcomes.join(", ")));
        line(format!(
            "lost {} | mismatches {} | operator blocks/unblocks seen {} | republished {} | duplicates {} | unexpected {} | skipped slots {} | send failures {} | connection drops {}",
            self.lost,
            self.mismatches,
            self.operator_actions,
            self.republished,
            self.duplicates,
            self.unexpected,
            self.skipped_slots,
            self.send_failures,
            self.connection_drops
        ));
        let l = &self.latency;
        line(format!(
            "latency (from scheduled send, n={}): p50 {:.2}ms p90 {:.2}ms p99 {:.2}ms p99.9 {:.2}ms max {:.2}ms",
            l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        ));
        for m in &self.mismatch_examples {
            line(format!("mismatch: {m}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_text() {
        let mut t = Tally::default();
        for ms in 1..=1000u64 {
            t.record_latency(Duration::from_millis(ms));
        }
        t.taps_sent = 1000;
        t.outcomes.insert("granted".into(), 1000);
        let s = Summary::new(&t, Duration::from_secs(2), 500.0, 0);
        assert_eq!(s.latency.count, 1000);
        assert!(
            (s.latency.p50_ms - 500.0).abs() < 1.0,
            "{}",
            s.latency.p50_ms
        );
        assert!(
            (s.latency.p99_ms - 990.0).abs() < 1.0,
            "{}",
            s.latency.p99_ms
        );
        assert!((s.latency.max_ms - 1000.0).abs() < 1.0);
        assert_eq!(s.achieved_rate, 500.0);
        assert!(s.render().contains("decisions: granted 1000"));
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["lost"], 0);
    }
}
