//! A bridge that cannot find a Redis primary waits for one instead of exiting, shows "not ready"
//! meanwhile and does not connect to the broker (so it holds no share of the taps); and settings
//! under which a confirmed decision could be lost in a failover are refused at start-up. Real
//! `redis-server`, `redis-server --sentinel` and mosquitto.

mod support;

use std::time::{Duration, Instant};

use tapgate_bridge::{BridgeConfig, BridgeError};
use tapgate_protocol::DeviceKind;
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::{free_port, Mosquitto, SentinelGroup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// `GET path` on the bridge's metrics address: the status code and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_primary_not_ready_and_not_subscribed_then_decides() {
    let group = tokio::task::spawn_blocking(SentinelGroup::start)
        .await
        .expect("group");
    let broker = Mosquitto::start();
    // Two of three sentinels silent: no majority names a primary.
    group.sentinels[1].pause();
    group.sentinels[2].pause();
    let metrics_addr: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let client_id = format!("bridge-{}", broker.port());
    let config = BridgeConfig {
        redis: group.url().parse().expect("redis url"),
        broker: BrokerConfig::url(broker.url()),
        client_id: client_id.clone(),
        metrics_addr: Some(metrics_addr),
        ..BridgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let starting = tokio::spawn(tapgate_bridge::start(config, shutdown.clone()));

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !starting.is_finished(),
        "the bridge gave up or went on without a primary"
    );
    let (status, body) = get(metrics_addr, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready"), "{body}");
    let (_, metrics) = get(metrics_addr, "/metrics").await;
    assert!(metrics.contains("tapgate_ready 0"), "{metrics}");
    assert!(
        !broker.log().contains(&client_id),
        "the bridge connected to the broker before it had a primary:\n{}",
        broker.log()
    );

    group.sentinels[1].resume();
    group.sentinels[2].resume();
    let resumed = Instant::now();
    let bridge = tokio::time::timeout(Duration::from_secs(20), starting)
        .await
        .expect("the bridge starts once a majority names a primary")
        .expect("task")
        .unwrap_or_else(|e| panic!("bridge failed: {e}"));
    println!(
        "started {:?} after the sentinels answered again",
        resumed.elapsed()
    );
    let (status, body) = get(metrics_addr, "/ready").await;
    assert_eq!(status, 200, "{body}");

    let mut gate = support::Device::connect(broker.port(), DeviceKind::Gate, "g1").await;
    let decision = gate.tap("04A1B2C3D4").await;
    assert!(decision.get("outcome").is_some(), "{decision}");

    shutdown.cancel();
    bridge.join().await.expect("clean stop");
}

#[tokio::test]
async fn shutdown_while_waiting_is_a_clean_stop() {
    // Sentinels that do not exist: no primary, ever.
    let hosts: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let config = BridgeConfig {
        redis: format!("redis+sentinel://{}/tapgate", hosts.join(","))
            .parse()
            .expect("redis url"),
        broker: BrokerConfig::url("mqtt://127.0.0.1:1"),
        ..BridgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(tapgate_bridge::run(config, shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!running.is_finished(), "exited instead of waiting");
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops at shutdown")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn refuses_settings_under_which_a_failover_could_lose_a_decision() {
    let start = |redis: &str, wait_replicas: Option<u32>| {
        let config = BridgeConfig {
            redis: redis.parse().expect("redis url"),
            wait_replicas,
            ..BridgeConfig::default()
        };
        tapgate_bridge::start(config, CancellationToken::new())
    };
    let Err(e) = start("redis+sentinel://127.0.0.1:1,127.0.0.1:2/tapgate", None).await else {
        panic!("two sentinels accepted");
    };
    assert!(matches!(e, BridgeError::Config(_)), "{e}");
    assert!(e.to_string().contains("at least three"), "{e}");
    let three = "redis+sentinel://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/tapgate";
    let Err(e) = start(three, Some(0)).await else {
        panic!("wait_replicas 0 accepted with Sentinel");
    };
    assert!(e.to_string().contains("wait_replicas"), "{e}");
    assert!(e.to_string().contains("primary alone"), "{e}");
}
