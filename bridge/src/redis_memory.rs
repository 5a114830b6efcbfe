//! Redis memory against its limit, for the operator to see coming: `INFO memory` read every few
//! seconds into `tapgate_redis_used_memory_bytes` and `tapgate_redis_maxmemory_bytes`
//! (Prometheus alerts before the limit, `prometheus/alerts.yml`).
//!
//! At the limit a Redis with policy `noeviction` refuses writes, and every decision is refused
//! ([`crate::StoreError::Full`]); any other policy may evict a pass a rider paid for, so a
//! setting other than `noeviction`, or no limit at all, is logged as a warning when first seen.

use std::time::Duration;

use tapgate_runtime::redis::RedisLink;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Metrics;

/// The policy under which Redis never evicts: at the limit it refuses writes.
pub(crate) const NO_EVICTION: &str = "noeviction";

/// What `INFO memory` says about memory and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisMemory {
    /// `used_memory`, bytes.
    pub used: u64,
    /// `maxmemory`, bytes; 0 when Redis has no limit.
    pub max: u64,
    /// `maxmemory_policy`.
    pub policy: String,
}

impl RedisMemory {
    /// Reads the fields of an `INFO memory` reply; `None` if `used_memory` or `maxmemory` is
    /// missing or not a number.
    pub fn parse(info: &str) -> Option<Self> {
        let field = |name: &str| {
            info.lines()
                .filter_map(|l| l.trim_end().split_once(':'))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        Some(Self {
            used: field("used_memory")?.parse().ok()?,
            max: field("maxmemory")?.parse().ok()?,
            policy: field("maxmemory_policy").unwrap_or_default().to_owned(),
        })
    }

    /// Used memory as a share of the limit (0 without one).
    pub(crate) fn fill(&self) -> f64 {
        if self.max == 0 {
            0.0
        } else {
            self.used as f64 / self.max as f64
        }
    }
}

/// Reads `INFO memory` through `link`.
pub(crate) async fn read(link: &RedisLink) -> Result<RedisMemory, redis::RedisError> {
    let mut con = link.clone();
    let text: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut con)
        .await?;
    RedisMemory::parse(&text).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "INFO memory without used_memory and maxmemory",
        ))
    })
}

/// Keeps the memory gauges of `metrics` up to date, reading every `every`, until `shutdown`.
/// Logs once (and again after it changes) a Redis without a limit or with an evicting policy,
/// a failing read, and memory above nine tenths of the limit.
pub(crate) async fn watch(
    link: RedisLink,
    metrics: Metrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut said: Option<(u64, String)> = None;
    let mut failing = false;
    let mut high = false;
    loop {
        match tokio::time::timeout(tapgate_runtime::redis::TIMEOUT, read(&link)).await {
            Ok(Ok(memory)) => {
                failing = false;
                metrics.set_redis_memory(memory.used, memory.max);
                let setting = (memory.max, memory.policy.clone());
                if said.as_ref() != Some(&setting) {
                    report_setting(&memory);
                    said = Some(setting);
                }
                let now_high = memory.fill() >= 0.9;
                if now_high && !high {
                    warn!(
                        used = memory.used,
                        maxmemory = memory.max,
                        "Redis memory above 90 % of its limit; at the limit every decision is \
                         refused"
                    );
                } else if !now_high && high {
                    info!(
                        used = memory.used,
                        maxmemory = memory.max,
                        "Redis memory back under 90 % of its limit"
                    );
                }
                high = now_high;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                warn!(error = %e, "Cannot read Redis memory (INFO memory); will try again");
            }
            Err(_) if !failing => {
                failing = true;
                warn!("Cannot read Redis memory (INFO memory timed out); will try again");
            }
            _ => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn report_setting(memory: &RedisMemory) {
    if memory.max == 0 {
        warn!(
            used = memory.used,
            "Redis has no memory limit (maxmemory 0): a flood of taps can fill the host's memory; \
             set maxmemory with maxmemory-policy noeviction"
        );
    } else if memory.policy != NO_EVICTION {
        warn!(
            maxmemory = memory.max,
            policy = ?memory.policy,
            "Redis may evict keys at its memory limit, passes in use among them (they expire); \
             set maxmemory-policy noeviction"
        );
    } else {
        info!(
            used = memory.used,
            maxmemory = memory.max,
            policy = %memory.policy,
            "Redis memory limit in force; at the limit writes are refused, never evicted"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_info_memory() {
        let info = "# Memory\r\nused_memory:1049112\r\nused_memory_human:1.00M\r\n\
                    maxmemory:67108864\r\nmaxmemory_human:64.00M\r\n\
                    maxmemory_policy:noeviction\r\n";
        let m = RedisMemory::parse(info).expect("parsed");
        assert_eq!(
            m,
            RedisMemory {
                used: 1_049_112,
                max: 67_108_864,
                policy: "noeviction".into()
            }
        );
        assert!((m.fill() - 1_049_112.0 / 67_108_864.0).abs() < 1e-12);
        let unlimited = RedisMemory::parse("used_memory:5\nmaxmemory:0\n").expect("parsed");
        assert_eq!(unlimited.fill(), 0.0);
        assert_eq!(
            RedisMemory::parse("used_memory_human:1.00M\nmaxmemory:0\n"),
            None
        );
        assert_eq!(RedisMemory::parse("used_memory:x\nmaxmemory:0\n"), None);
    }
}
