//! End-to-end bridge benchmark: real redis-server and mosquitto on free ports, the bridge
//! in-process, and N gate clients tapping in a closed loop. Prints throughput, decision round-trip
//! latency percentiles and the process's peak memory.
//!
//! `cargo run --release -p tapgate-bridge --example bench -- [gates] [taps-per-gate]`

use std::time::{Duration, Instant};

use tapgate_bridge::BridgeConfig;
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_testkit::{Mosquitto, MqttProbe, RedisServer};
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
    let topics = Topics::default();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for g in 0..gates {
        let port = broker.port();
        let topics = topics.clone();
        tasks.push(tokio::spawn(async move {
            let device = DeviceId::new(format!("bench{g}")).expect("device");
            let mut probe = MqttProbe::connect(port, &format!("bench-gate-{g}")).await;
            probe
                .subscribe(&topics.decision(DeviceKind::Gate, &device))
                .await;
            let tap_topic = topics.tap(DeviceKind::Gate, &device);
            let mut latencies = Vec::with_capacity(per_gate);
            for i in 0..per_gate {
                let payload = format!(r#"{{"id":"{g}-{i}","card":"{}"}}"#, 1000 + i % 97);
                let sent = Instant::now();
                probe.publish(&tap_topic, payload).await;
                probe
                    .recv_timeout(Duration::from_secs(10))
                    .await
                    .expect("decision within 10 s");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("gate task"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
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
