//! The burst of issue 24, on real servers: one gate publishes [`BURST`] QoS 1 taps as fast as it
//! can while another gate taps ten times a second, through mosquitto with the queue limits of
//! `mosquitto/tapgate.conf` (read from that file), real `redis-server` and the bridge.
//!
//! Reported before the per-device limit, fair dispatch and a sized broker queue: the calm gate's
//! answers were delayed up to 4.1 s, and mosquitto dropped 6,904 taps it had already acknowledged
//! to the sender, its queue for the bridge full. Asserted here:
//!
//! - every tap of the calm gate is answered, each with its own normal decision (`no_pass`), and
//!   the slowest within [`CALM_LIMIT`];
//! - mosquitto acknowledges (PUBACK) every one of the burst's taps, and the bridge handles every
//!   one of them exactly: decided or refused `rate_limited`, together exactly [`BURST`], so none
//!   was lost between the broker's acknowledgement and the bridge;
//! - mosquitto dropped nothing: `$SYS/broker/publish/messages/dropped` reads 0 and its log has no
//!   "Outgoing messages are being dropped".
//!
//! Without the sized queue (`max_queued_messages 1000`), with or without the rate limit, the calm
//! gate's third tap is never answered and mosquitto logs that it drops the bridge's messages.
//! Without the rate limit but with the sized queue, nothing is lost and the calm gate is still
//! answered within 100 ms (fair dispatch), but all 120,000 taps are decided in Redis, which takes
//! about a minute: too long for CI.

mod support;

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tapgate_bridge::{BridgeConfig, Metrics};
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::{Mosquitto, MqttProbe, RedisServer};
use tokio_util::sync::CancellationToken;

/// Taps in the burst, as in the report. The report's took 1.1 s; here one debug-built client on
/// two cores shared with mosquitto and the bridge publishes them in 3 to 4.6 s (a larger
/// inflight window of its own did not make it faster): the machine, not the client, sets the
/// pace.
const BURST: u64 = 120_000;
/// Time between two of the calm gate's taps: ten a second.
const CALM_EVERY: Duration = Duration::from_millis(100);
/// Longest a calm gate's answer may take during the burst. Measured in six runs of a debug
/// build on two shared cores: median 8 to 14 ms, slowest 52 to 276 ms. The bound is the one
/// `rate_limit.rs` holds a calm gate to beside a smaller flood on the same machine (where single
/// answers of 1.1 s were seen): room for a busy machine, still under half the 4.1 s reported and
/// well under the 5 s a device waits for an answer.
const CALM_LIMIT: Duration = Duration::from_millis(1_500);
/// How long the burst may take to be handled before the test gives up.
const HANDLED_WITHIN: Duration = Duration::from_secs(90);
/// mosquitto's counter of messages it dropped (queue or inflight limits).
const SYS_DROPPED: &str = "$SYS/broker/publish/messages/dropped";

/// The queue and inflight lines of the project's broker configuration, as they are there.
fn queue_settings() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../mosquitto/tapgate.conf");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("max_queued_") || l.starts_with("max_inflight_"))
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("max_queued_messages ")),
        "{path} sets no max_queued_messages"
    );
    lines.join("\n")
}

/// Publishes `BURST` QoS 1 taps as `device` as fast as the client goes; returns how many
/// mosquitto acknowledged and how long publishing took until the last acknowledgement.
async fn burst(port: u16, device: &DeviceId) -> (u64, Duration) {
    let topic = Topics::default().tap(DeviceKind::Gate, device);
    let mut opts = MqttOptions::new(format!("dev-gate-{device}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 1024);
    let started = Instant::now();
    let publisher = tokio::spawn(async move {
        for n in 0..BURST {
            let payload = format!(r#"{{"id":"b{n}","card":"{}"}}"#, n % 500);
            client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
        }
        client
    });
    let mut acked = 0;
    while acked < BURST {
        match tokio::time::timeout(HANDLED_WITHIN, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the burst's connection failed after {acked} acks: {e}"),
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    let client = publisher.await.expect("publisher");
    let _ = client.disconnect().await;
    (acked, took)
}

/// Messages handled by the bridge: decided, or refused by the rate limit. A refusal the bridge
/// answers (one a second) also counts as a decision `rejected`; the taps here are well formed, so
/// no other is `rejected`, and those are left out to count each tap once.
fn handled(m: &Metrics) -> u64 {
    let decided: u64 = m
        .decisions_by_outcome()
        .iter()
        .filter(|(outcome, _)| *outcome != "rejected")
        .map(|(_, n)| n)
        .sum();
    decided + m.rate_limited_total()
}

/// The value mosquitto last published on [`SYS_DROPPED`] (it publishes `$SYS` retained, every
/// `sys_interval`).
async fn dropped_by_broker(port: u16) -> u64 {
    let mut probe = MqttProbe::connect(port, "sys-reader").await;
    probe.subscribe(SYS_DROPPED).await;
    let m = probe.expect_on(SYS_DROPPED, Duration::from_secs(5)).await;
    m.text()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{SYS_DROPPED}: {:?}: {e}", m.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_120000_taps_loses_nothing_and_does_not_delay_another_gate() {
    let redis = RedisServer::start();
    let broker = Mosquitto::with_config(&format!(
        "allow_anonymous true\nsys_interval 1\n{}\n",
        queue_settings()
    ));
    let config = BridgeConfig {
        redis: redis.url().parse().expect("redis url"),
        broker: BrokerConfig::url(broker.url()),
        client_id: format!("bridge-{}", broker.port()),
        ..BridgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let bridge = tapgate_bridge::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("bridge: {e}\n{}", broker.log()));
    let metrics = bridge.metrics().clone();

    let mut calm = support::Device::connect(broker.port(), DeviceKind::Gate, "calm").await;
    assert_eq!(calm.tap("1").await["reason"], "no_pass", "warm-up");
    let before = handled(&metrics);

    let flooder = DeviceId::new("flood").expect("device id");
    let port = broker.port();
    let flood = tokio::spawn(async move { burst(port, &flooder).await });

    let started = Instant::now();
    let mut latencies = Vec::new();
    while latencies.len() < 10 || !flood.is_finished() || handled(&metrics) < before + BURST {
        assert!(
            started.elapsed() < HANDLED_WITHIN,
            "the burst was not handled within {HANDLED_WITHIN:?}: {} of {BURST}\n{}",
            handled(&metrics) - before,
            broker.log()
        );
        let sent = Instant::now();
        let d = calm.tap("1").await;
        latencies.push(sent.elapsed());
        assert_eq!(d["outcome"], "denied", "{d}");
        assert_eq!(d["reason"], "no_pass", "{d}");
        tokio::time::sleep(CALM_EVERY).await;
    }
    let (acked, published_in) = flood.await.expect("burst task");
    let handled_in = started.elapsed();
    // Anything delivered twice would show here, a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = metrics.rate_limited_total();
    let burst_handled = handled(&metrics) - before - (latencies.len() as u64);
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    let mut sorted = latencies.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    // `$SYS` is published every second: wait for the one after the burst.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let dropped = dropped_by_broker(broker.port()).await;
    println!(
        "burst: {BURST} QoS 1 taps acknowledged by mosquitto in {published_in:?}, handled by the \
         bridge in {handled_in:?} ({} decided, {refused} refused rate_limited); mosquitto \
         dropped {dropped}; calm gate: {} taps answered, median {median:?}, slowest {slowest:?}",
        burst_handled - refused,
        latencies.len(),
    );

    assert_eq!(acked, BURST, "mosquitto acknowledged {acked} of {BURST}");
    assert_eq!(
        burst_handled, BURST,
        "the bridge handled {burst_handled} of the {BURST} taps mosquitto acknowledged"
    );
    assert_eq!(dropped, 0, "mosquitto dropped messages\n{}", broker.log());
    assert!(
        !broker.log().contains("Outgoing messages are being dropped"),
        "{}",
        broker.log()
    );
    assert!(
        slowest < CALM_LIMIT,
        "the calm gate's slowest answer took {slowest:?} during the burst: {latencies:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), bridge.join())
        .await
        .expect("bridge stops")
        .expect("bridge stopped cleanly");
}
