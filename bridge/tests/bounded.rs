//! Bounded state and memory: per-card recent lists, device presence and per-device counters
//! expire; a 300,000-message QoS 0 flood leaves the bridge process under its documented memory
//! ceiling and still answering.

mod support;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::QoS;
use support::{Device, Stack};
use tapgate_bridge::store::{Store, StoreSettings};
use tapgate_protocol::{keys, CardId, DeviceId, DeviceKind};
use tapgate_testkit::{free_port, Mosquitto, MqttProbe, RedisServer};

/// Peak resident memory the bridge may reach under the flood (documented in docs/protocol.md).
const RSS_CEILING_KIB: u64 = 48 * 1024;
/// Messages in the flood.
const FLOOD: usize = 300_000;

async fn ttl(con: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query_async(con)
        .await
        .expect("TTL")
}

#[tokio::test]
async fn recent_lists_presence_and_device_counters_expire() {
    let day = Duration::from_secs(24 * 60 * 60);
    let stack = Stack::start(|c| {
        c.card_recent_ttl = day;
        c.device_ttl = 2 * day;
    })
    .await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    assert_eq!(g.tap("1234").await["reason"], "no_pass");
    let rogue = MqttProbe::connect(stack.broker.port(), "rogue").await;
    rogue
        .publish("tapgate/gate/g1/heartbeat", r#"{"uptime_s":5}"#)
        .await;
    rogue.publish("tapgate/gate/fake1/status", "online").await;
    rogue.publish("tapgate/gate/fake2/tap", "junk").await;
    // Wait for all three to be handled: the refusal of fake2's junk is the last.
    let mut fake2 = Device::connect(stack.broker.port(), DeviceKind::Gate, "fake2").await;
    let _ = fake2.decisions_within(Duration::from_millis(50)).await;
    rogue.publish("tapgate/gate/fake2/tap", "junk").await;
    assert_eq!(fake2.decision_for(None).await["reason"], "malformed_json");

    let mut con = stack.redis().await;
    let card = CardId::new("1234").expect("card");
    let recent = ttl(&mut con, &keys::card_recent(&card)).await;
    assert!(recent > 0 && recent <= 86_400, "recent list TTL {recent}");
    let g1 = DeviceId::new("g1").expect("device");
    for key in [
        keys::device(DeviceKind::Gate, &g1),
        keys::device_counters(&g1),
        "tapgate:device:gate:fake1".to_owned(),
        "tapgate:counters:device:fake2".to_owned(),
    ] {
        let t = ttl(&mut con, &key).await;
        assert!(t > 86_400 && t <= 2 * 86_400, "{key}: TTL {t}");
    }

    // Once a device's presence has expired, pruning drops it from the device set.
    let store = Store::connect(
        &stack.redis.url(),
        None,
        StoreSettings {
            legacy_period_ms: 1,
            sale_timeout_ms: 1,
            seen_ttl_s: 1,
            stream_maxlen: 1,
            recent_ttl_s: 1,
            device_ttl_s: 1,
            time: tapgate_protocol::rules::TimeSettings::default(),
        },
    )
    .await
    .expect("store");
    let _: () = redis::cmd("DEL")
        .arg("tapgate:device:gate:fake1")
        .query_async(&mut con)
        .await
        .expect("DEL");
    let _: () = redis::cmd("SADD")
        .arg(keys::DEVICES)
        .arg("not-a-member")
        .query_async(&mut con)
        .await
        .expect("SADD");
    assert_eq!(store.prune_devices().await.expect("prune"), 2);
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::DEVICES)
        .query_async(&mut con)
        .await
        .expect("SMEMBERS");
    assert_eq!(members, ["gate/g1"]);
}

/// The bridge binary as a child process, so its memory is its own.
struct BridgeProcess(Child);

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `VmRSS`/`VmHWM` line of `/proc/{pid}/status`, KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_flood_stays_under_the_memory_ceiling() {
    let redis = RedisServer::start();
    let broker = Mosquitto::start();
    let metrics_port = free_port();
    let bridge = BridgeProcess(
        Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"))
            .env_clear()
            .env("RUST_LOG", "error")
            .args(["--redis", &redis.url(), "--mqtt", &broker.url()])
            .args(["--client-id", "flood-bridge"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tapgate-bridge"),
    );
    let pid = bridge.0.id();
    let mut legit = Device::connect(broker.port(), DeviceKind::Gate, "legit").await;
    // Ready once it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let id = legit.next_id();
        let payload = serde_json::json!({"id": id, "card": "1"}).to_string();
        legit.send(support::MessageTopic::Tap, payload).await;
        let got = legit.decisions_within(Duration::from_millis(300)).await;
        if got.iter().any(|d| d["id"] == id.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "bridge never answered");
    }
    let idle_kib = proc_kib(pid, "VmRSS:");

    let flooder = MqttProbe::connect(broker.port(), "flooder").await;
    let sampler_stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let stop = sampler_stop.clone();
        tokio::spawn(async move {
            let mut max = 0;
            while !stop.is_cancelled() {
                max = max.max(proc_kib(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max
        })
    };
    let started = Instant::now();
    for n in 0..FLOOD {
        let topic = format!("tapgate/gate/flood{}/tap", n % 1000);
        let payload = format!(r#"{{"id":"f{n}","card":"{}"}}"#, n % 5000);
        flooder
            .client()
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
            .expect("publish");
    }
    let published_in = started.elapsed();

    // Still answering during and after the flood.
    let answered = Instant::now();
    assert_eq!(legit.tap("2").await["reason"], "no_pass");
    let answer_latency = answered.elapsed();
    // Let the flood drain, then measure once more.
    let mut last = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = scrape(metrics_port);
        let seen = metric(&m, "tapgate_messages_total{message=\"tap\"}")
            + metric(&m, "tapgate_dropped_total{qos=\"0\"}");
        if seen == last && metric(&m, "tapgate_inflight_messages") == 0 {
            break;
        }
        last = seen;
    }
    sampler_stop.cancel();
    let max_rss = sampler.await.expect("sampler");
    let hwm = proc_kib(pid, "VmHWM:");
    let m = scrape(metrics_port);
    let decided = metric(&m, "tapgate_messages_total{message=\"tap\"}");
    let dropped = metric(&m, "tapgate_dropped_total{qos=\"0\"}");
    let started = Instant::now();
    assert_eq!(legit.tap("3").await["reason"], "no_pass");
    let after_latency = started.elapsed();
    println!(
        "flood: {FLOOD} QoS 0 taps published in {published_in:?}; bridge decided {decided} taps, \
         dropped {dropped}; RSS idle {idle_kib} KiB, max sampled {max_rss} KiB, VmHWM {hwm} KiB \
         (ceiling {RSS_CEILING_KIB} KiB); legit tap answered in {answer_latency:?} during, \
         {after_latency:?} after"
    );
    assert!(
        hwm < RSS_CEILING_KIB,
        "bridge peak RSS {hwm} KiB over the {RSS_CEILING_KIB} KiB ceiling"
    );
    assert!(after_latency < Duration::from_secs(1), "{after_latency:?}");
    assert_eq!(metric(&m, "tapgate_mqtt_reconnects_total"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_flood_with_one_slot_queues_is_all_decided() {
    // One-slot shard queues keep shards full all the time, so QoS 1 messages wait for room while
    // the workers' own decisions and acks go out through the same event loop: every tap must
    // still be decided, none dropped, nothing deadlocked.
    const TAPS: u64 = 5_000;
    let stack = Stack::start(|c| c.shard_queue = 1).await;
    let mut con = stack.redis().await;
    support::put_pass(
        &mut con,
        &CardId::new("7777").expect("card"),
        "TEN_TRIP",
        10,
    )
    .await;
    let mut ordered = support::device(&stack, DeviceKind::Gate, "ordered").await;
    let flooder = MqttProbe::connect(stack.broker.port(), "flooder").await;
    for n in 0..TAPS {
        let topic = format!("tapgate/gate/q{}/tap", n % 200);
        let payload = format!(r#"{{"id":"q{n}","card":"{}"}}"#, n % 300);
        flooder.publish(&topic, payload).await;
        if n % 500 == 0 {
            // One device's taps in the middle of the flood, sent without waiting for answers.
            let id = format!("o{}", n / 500);
            let payload = serde_json::json!({"id": id, "card": "7777"}).to_string();
            ordered.send(support::MessageTopic::Tap, payload).await;
        }
    }
    // Decided in the order sent: each tap took the next trip.
    for i in 0..10u64 {
        let d = ordered.decision_for(Some(&format!("o{i}"))).await;
        assert_eq!(d["pass"]["trips_remaining"], 9 - i, "o{i}: {d}");
    }
    let metrics = stack.metrics.clone().expect("metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided = |m: &tapgate_bridge::Metrics| {
        let text = m.render();
        metric(
            &text,
            "tapgate_decisions_total{device_kind=\"gate\",outcome=\"denied\"}",
        )
    };
    while decided(&metrics) < TAPS {
        assert!(
            Instant::now() < deadline,
            "only {} of {TAPS} decided",
            decided(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metrics.dropped_total(), 0);
    assert_eq!(
        stack.counter(keys::COUNTERS_DENIED, "no_pass").await,
        TAPS as i64
    );
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 10);
    let mut g = support::device(&stack, DeviceKind::Gate, "after").await;
    assert_eq!(g.tap("1").await["reason"], "no_pass");
}
