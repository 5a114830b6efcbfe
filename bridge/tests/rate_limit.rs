//! No device can crowd out another: a device flooding the bridge is refused `rate_limited` beyond
//! its limit, cheaply and without touching Redis, while every other device is still answered
//! quickly; and once its bucket refills, the device is decided as usual.

mod support;

use std::time::{Duration, Instant};

use rumqttc::QoS;
use support::Stack;
use tapgate_bridge::shard_index;
use tapgate_bridge::SHARDS;
use tapgate_protocol::keys::{self, COUNTERS_REJECTED as REJECTED};
use tapgate_protocol::{CardId, DeviceId, DeviceKind};
use tapgate_testkit::MqttProbe;

/// Taps in the flood.
const FLOOD: u64 = 20_000;
/// Longest a calm gate's answer may take while another floods (before devices were served in
/// turn, a calm gate waited more than 5 s for its third answer). A debug build on two cores
/// shared with the flood's publisher, mosquitto and Redis has shown single answers of 1.1 s.
const CALM_LIMIT: Duration = Duration::from_millis(1_500);

/// The flood tests run one at a time: three floods of 20,000 taps at once on two cores would
/// measure the machine, not the bridge.
static FLOODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every key in Redis with its value (`DUMP`), sorted: what a refusal must leave unchanged.
async fn snapshot(stack: &Stack) -> Vec<(String, Vec<u8>)> {
    let mut con = stack.redis().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .expect("KEYS");
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let value: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("DUMP");
        out.push((key, value));
    }
    out
}

/// A snapshot without the rejected counters (all, and each device's).
fn without_counters(snapshot: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    snapshot
        .into_iter()
        .filter(|(k, _)| k != REJECTED && !k.starts_with("tapgate:counters:device:"))
        .collect()
}

/// One gate floods ([`FLOOD`] QoS 1 taps, as fast as it can) while a calm gate taps every 250 ms
/// until the flood is handled: returns how long each of the calm gate's answers took (none may be
/// lost: each waits for its own decision).
async fn flood_beside_a_calm_gate(stack: &Stack, calm: &str) -> Vec<Duration> {
    let metrics = stack.metrics.clone().expect("metrics");
    let mut calm = support::device(stack, DeviceKind::Gate, calm).await;
    // Warm up: the calm gate is answered before the flood.
    assert_eq!(calm.tap("1").await["reason"], "no_pass");

    let flooder = MqttProbe::connect(stack.broker.port(), "flooder").await;
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        for n in 0..FLOOD {
            let payload = format!(r#"{{"id":"f{n}","card":"{}"}}"#, n % 500);
            flooder
                .client()
                .publish("tapgate/gate/flood/tap", QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
        }
        (flooder, started.elapsed())
    });

    let handled = |m: &tapgate_bridge::Metrics| {
        let decided: u64 = m.decisions_by_outcome().iter().map(|(_, n)| n).sum();
        decided + m.rate_limited_total()
    };
    let started = Instant::now();
    let mut latencies = Vec::new();
    // At least eight taps, and until the flood is published and handled.
    while latencies.len() < 8 || !flood.is_finished() || handled(&metrics) < FLOOD {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the flood was not handled within 120 s ({} of {FLOOD})",
            handled(&metrics)
        );
        let sent = Instant::now();
        let d = calm.tap("1").await;
        latencies.push(sent.elapsed());
        assert_eq!(d["reason"], "no_pass", "{d}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_flooder, published_in) = flood.await.expect("flood task");
    let decided = stack
        .counter(tapgate_protocol::keys::COUNTERS_DENIED, "no_pass")
        .await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "flood: {FLOOD} QoS 1 taps from one gate published in {published_in:?}, handled in \
         {:?}; {} refused rate_limited; {decided} taps decided in Redis in all; {} taps of the \
         calm gate answered meanwhile, slowest in {slowest:?} (all: {latencies:?})",
        started.elapsed(),
        metrics.rate_limited_total(),
        latencies.len(),
    );
    assert_eq!(metrics.dropped_total(), 0);
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_gate_is_limited_and_does_not_delay_another() {
    let _one_at_a_time = FLOODS.lock().await;
    let stack = Stack::start(|_| {}).await;
    let latencies = flood_beside_a_calm_gate(&stack, "calm").await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < CALM_LIMIT,
        "a calm gate's answer took {slowest:?} while another gate flooded: {latencies:?}"
    );
    let metrics = stack.metrics.clone().expect("metrics");
    // The burst, and the rate over the seconds the flood lasted, were decided; the rest refused.
    let burst = u64::from(stack.config.device_burst);
    assert!(
        metrics.rate_limited_total() >= FLOOD - burst - 20 * 120,
        "only {} refused",
        metrics.rate_limited_total()
    );
}

/// A gate whose messages go to the same worker shard as the flood's, so that they wait behind
/// the flood's backlog unless the shard serves its devices in turn.
fn same_shard_as_flood() -> String {
    let shard = |topic: &str| shard_index(topic, SHARDS);
    let flood = shard("tapgate/gate/flood/tap");
    (0..)
        .map(|n| format!("calm{n}"))
        .find(|id| shard(&format!("tapgate/gate/{id}/tap")) == flood)
        .expect("some id shares the shard")
}

/// Fairness within a shard: with the limit off, a gate sharing the flooding gate's shard waits
/// behind at most one flood tap per turn, not behind the whole backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_the_same_shard_does_not_delay_another() {
    let _one_at_a_time = FLOODS.lock().await;
    let stack = Stack::start(|c| c.device_rate = 0).await;
    let calm = same_shard_as_flood();
    let latencies = flood_beside_a_calm_gate(&stack, &calm).await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < CALM_LIMIT,
        "{calm}'s answer took {slowest:?} while the flood filled its shard: {latencies:?}"
    );
}

/// Fairness by itself: with the limit off, the flood is decided tap by tap in Redis, and the calm
/// gate, served in turn, is still answered quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_limit_a_flood_still_does_not_delay_another() {
    let _one_at_a_time = FLOODS.lock().await;
    let stack = Stack::start(|c| c.device_rate = 0).await;
    let latencies = flood_beside_a_calm_gate(&stack, "calm").await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < CALM_LIMIT,
        "a calm gate's answer took {slowest:?} while another gate flooded: {latencies:?}"
    );
    assert_eq!(
        stack.metrics.clone().expect("metrics").rate_limited_total(),
        0
    );
}

#[tokio::test]
async fn taps_beyond_the_limit_are_refused_and_change_nothing() {
    let stack = Stack::start_manual(|c| {
        c.device_rate = 1;
        c.device_burst = 3;
    })
    .await;
    let mut con = stack.redis().await;
    support::put_pass(
        &mut con,
        &CardId::new("4242").expect("card"),
        "TEN_TRIP",
        10,
    )
    .await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    // The burst: three taps decided.
    for left in [9, 8, 7] {
        let d = g.tap("4242").await;
        assert_eq!(d["outcome"], "granted", "{d}");
        assert_eq!(d["pass"]["trips_remaining"], left, "{d}");
    }
    let before = snapshot(&stack).await;

    // Beyond it: refused with its id, charged nothing.
    let d = g.tap_with_id("over-1", "4242").await;
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert_eq!(d["reason"], "rate_limited", "{d}");
    // More in the same second: refused too, but not answered (one answer a second).
    for n in 2..=5 {
        let payload = serde_json::json!({"id": format!("over-{n}"), "card": "4242"});
        g.send(support::MessageTopic::Tap, payload.to_string())
            .await;
    }
    g.probe
        .publish("tapgate/gate/g1/heartbeat", r#"{"uptime_s":5}"#)
        .await;
    let metrics = stack.metrics.clone().expect("metrics");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.rate_limited_total() < 6 || stack.counter(REJECTED, "rate_limited").await < 6 {
        assert!(Instant::now() < deadline, "refusals not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = g.decisions_within(Duration::from_millis(300)).await;
    assert!(
        late.is_empty(),
        "refusals answered more than once: {late:?}"
    );
    assert_eq!(metrics.rate_limited_total(), 6);
    // Nothing changed in Redis but the rejected counters, which the bridge adds them to once
    // a second.
    assert_eq!(
        without_counters(snapshot(&stack).await),
        without_counters(before),
        "a refused tap changed something in Redis"
    );
    assert_eq!(stack.counter(REJECTED, "rate_limited").await, 6);
    let g1 = keys::device_counters(&DeviceId::new("g1").expect("device"));
    assert_eq!(stack.counter(&g1, "rejected").await, 6);
    assert!(metrics
        .render()
        .contains("tapgate_rejected_total{reason=\"rate_limited\"} 6"));

    // A second later the bucket holds one token again: decided as usual.
    stack.advance(Duration::from_secs(1));
    let d = g.tap("4242").await;
    assert_eq!(d["outcome"], "granted", "{d}");
    assert_eq!(d["pass"]["trips_remaining"], 6, "{d}");
}

/// `EXEC` calls Redis has run (the rejected counters are written in one transaction).
async fn transactions(stack: &Stack) -> u64 {
    let mut con = stack.redis().await;
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .expect("INFO commandstats");
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_exec:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The dashboard's rejected counters (read from Redis) show a flood's rate-limited refusals, all
/// of them, for the device and in all; the bridge writes them at most once a second, not once
/// per message, and what it counted last is written when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_refusals_reach_the_rejected_counters_once_a_second() {
    const TAPS: u64 = 3_000;
    let _one_at_a_time = FLOODS.lock().await;
    let mut stack = Stack::start(|c| {
        c.device_rate = 5;
        c.device_burst = 5;
    })
    .await;
    let metrics = stack.metrics.clone().expect("metrics");
    let flood_counters = keys::device_counters(&DeviceId::new("flood").expect("device"));
    let flooder = MqttProbe::connect(stack.broker.port(), "flooder").await;
    let publish = |from: u64, to: u64| {
        let client = flooder.client().clone();
        async move {
            for n in from..to {
                let payload = format!(r#"{{"id":"f{n}","card":"{}"}}"#, n % 500);
                client
                    .publish("tapgate/gate/flood/tap", QoS::AtLeastOnce, false, payload)
                    .await
                    .expect("publish");
            }
        }
    };
    let handled = |m: &tapgate_bridge::Metrics| {
        let decided: u64 = m.decisions_by_outcome().iter().map(|(_, n)| n).sum();
        decided + m.rate_limited_total()
    };
    let wait_handled = |n: u64| {
        let metrics = metrics.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while handled(&metrics) < n {
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} handled",
                    handled(&metrics)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let exec_before = transactions(&stack).await;
    let started = Instant::now();
    publish(0, TAPS).await;
    wait_handled(TAPS).await;
    let refused = metrics.rate_limited_total();
    assert!(refused > TAPS / 2, "only {refused} of {TAPS} refused");
    // Within a second or two, all of them are in the counters the dashboard reads.
    let deadline = Instant::now() + Duration::from_secs(3);
    while stack.counter(REJECTED, "rate_limited").await < refused as i64 {
        assert!(
            Instant::now() < deadline,
            "{} of {refused} refusals in {REJECTED}",
            stack.counter(REJECTED, "rate_limited").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs();
    let writes = transactions(&stack).await - exec_before;
    assert_eq!(
        stack.counter(REJECTED, "rate_limited").await,
        refused as i64
    );
    assert_eq!(
        stack.counter(&flood_counters, "rejected").await,
        refused as i64
    );
    println!(
        "{refused} of {TAPS} taps refused rate_limited in {seconds} s, written to Redis in {writes} transactions"
    );
    assert!(
        writes <= seconds + 2,
        "{writes} writes in {seconds} s: refusals reached Redis more than once a second"
    );

    // Refused just before the bridge stops: written as it stops, none lost.
    publish(TAPS, TAPS + 200).await;
    wait_handled(TAPS + 200).await;
    let refused = metrics.rate_limited_total();
    stack.stop_bridge().await;
    assert_eq!(
        stack.counter(REJECTED, "rate_limited").await,
        refused as i64
    );
    assert_eq!(
        stack.counter(&flood_counters, "rejected").await,
        refused as i64
    );
}
