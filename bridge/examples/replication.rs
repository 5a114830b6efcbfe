//! What confirming decisions only once replicated (`WAIT 1`) costs: the same closed-loop load
//! (real redis-server with one replica, real mosquitto, the bridge in-process) run twice in one
//! invocation, without and with `--wait-replicas 1`, and the round trips compared.
//!
//! `cargo run --release -p tapgate-bridge --example replication -- [gates] [taps-per-gate]`

mod common;

use std::time::{Duration, Instant};

use common::{closed_loop, pct};
use tapgate_bridge::BridgeConfig;
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::{Mosquitto, RedisServer};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let gates: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let per_gate: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);

    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::with_args(&["--replicaof", "127.0.0.1", &port]);
    // The first sync waits for the primary's snapshot (several seconds by default): measure only
    // once the replica is in sync, as in production.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tapgate_testkit::sentinel::redis_cli(replica.port(), &["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "replica not in sync within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let broker = Mosquitto::start();
    println!("replication cost: {gates} gates x {per_gate} taps, closed loop, primary + 1 replica on loopback");
    let mut rows = Vec::new();
    for (run, replicas) in [("nowait", 0u32), ("wait", 1u32)] {
        let config = BridgeConfig {
            redis: primary.url().parse().expect("redis url"),
            broker: BrokerConfig::url(broker.url()),
            client_id: format!("bridge-{run}"),
            wait_replicas: Some(replicas),
            ..BridgeConfig::default()
        };
        let shutdown = CancellationToken::new();
        let bridge = tapgate_bridge::start(config, shutdown.clone())
            .await
            .expect("bridge starts");
        let started = Instant::now();
        let all = closed_loop(&broker, run, gates, per_gate).await;
        let elapsed = started.elapsed();
        shutdown.cancel();
        bridge.join().await.expect("clean stop");
        println!(
            "  wait_replicas {replicas}: {:.0} decisions/s  p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}",
            all.len() as f64 / elapsed.as_secs_f64(),
            pct(&all, 0.5),
            pct(&all, 0.99),
            pct(&all, 0.999),
            all[all.len() - 1]
        );
        rows.push(all);
    }
    let ratio = |p: f64| pct(&rows[1], p).as_secs_f64() / pct(&rows[0], p).as_secs_f64();
    println!(
        "  with WAIT / without: p50 x{:.2}  p99 x{:.2}",
        ratio(0.5),
        ratio(0.99)
    );
}
