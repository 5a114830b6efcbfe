//! End-to-end bridge benchmark: real redis-server and mosquitto on free ports, the bridge
//! in-process, and N gate clients tapping in a closed loop. Prints throughput, decision round-trip
//! latency percentiles and the process's peak memory.
//!
//! `cargo run --release -p tapgate-bridge --example bench -- [gates] [taps-per-gate]`

mod common;

use std::time::Instant;

use common::{closed_loop, pct};
use tapgate_bridge::BridgeConfig;
use tapgate_testkit::{Mosquitto, RedisServer};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let gates: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let per_gate: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);

    let redis = RedisServer::start();
    let broker = Mosquitto::start();
    let config = BridgeConfig {
        redis: redis.url(),
        mqtt: broker.url(),
        ..BridgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let bridge = tapgate_bridge::start(config, shutdown.clone())
        .await
        .expect("bridge starts");

    let used_memory = || {
        let info = tapgate_testkit::sentinel::redis_cli(redis.port(), &["INFO", "memory"]);
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let memory_before = used_memory();
    let started = Instant::now();
    let all = closed_loop(&broker, "bench", gates, per_gate).await;
    let elapsed = started.elapsed();
    let pct = |p: f64| pct(&all, p);
    println!("bridge bench: {gates} gates x {per_gate} taps, closed loop, loopback");
    println!(
        "  decisions: {}  in {:.2?}  = {:.0} decisions/s",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  round trip: p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        all[all.len() - 1]
    );
    let retained = used_memory() - memory_before;
    println!(
        "  Redis memory retained: {} bytes for {} taps = {} bytes per tap (default TTLs)",
        retained,
        all.len(),
        retained / all.len().max(1) as i64
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        {
            println!("  process (bench + bridge + clients) {line}");
        }
    }
    shutdown.cancel();
    bridge.join().await.expect("clean stop");
}
