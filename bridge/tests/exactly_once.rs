//! Atomicity and exactly-once: contention on one card, redeliveries, and bridge restarts (clean
//! and SIGKILL) with taps published while it is down.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{buy, Device, Stack};
use tapgate_protocol::{keys, CardId, DeviceKind};
use tokio::task::JoinSet;

async fn give_pass(stack: &Stack, card: &str, pass_type: &str, trips: u32) {
    let mut con = stack.redis().await;
    let card = CardId::new(card).expect("card");
    support::put_pass(&mut con, &card, pass_type, trips).await;
}

/// Connects `n` gates and has each tap `card` once, all at the same moment.
async fn tap_from_many_gates(stack: &Stack, n: usize, card: &str) -> Vec<serde_json::Value> {
    let mut gates = Vec::new();
    for i in 0..n {
        gates.push(support::device(stack, DeviceKind::Gate, &format!("g{i}")).await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut set = JoinSet::new();
    for mut gate in gates {
        let start = start.clone();
        let card = card.to_owned();
        set.spawn(async move {
            start.wait().await;
            gate.tap(&card).await
        });
    }
    let mut out = Vec::new();
    while let Some(d) = set.join_next().await {
        out.push(d.expect("gate task"));
    }
    out
}

fn granted(decisions: &[serde_json::Value]) -> usize {
    decisions
        .iter()
        .filter(|d| d["outcome"] == "granted")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_gates_one_single_use_card_exactly_one_entry() {
    let stack = Stack::start(|_| {}).await;
    give_pass(&stack, "5050", "SINGLE_USE", 0).await;
    let decisions = tap_from_many_gates(&stack, 50, "5050").await;
    assert_eq!(decisions.len(), 50);
    assert_eq!(granted(&decisions), 1, "{decisions:?}");
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "SINGLE_USE").await, 1);
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "no_pass").await, 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_trip_under_thirty_way_contention_exactly_ten() {
    let stack = Stack::start(|_| {}).await;
    give_pass(&stack, "3030", "TEN_TRIP", 10).await;
    let decisions = tap_from_many_gates(&stack, 30, "3030").await;
    assert_eq!(granted(&decisions), 10, "{decisions:?}");
    let mut left: Vec<u64> = decisions
        .iter()
        .filter_map(|d| d["pass"]["trips_remaining"].as_u64())
        .collect();
    left.sort_unstable();
    assert_eq!(left, (0..10).collect::<Vec<_>>(), "each count given once");
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 10);
}

#[tokio::test]
async fn redelivery_gets_the_same_decision_and_one_charge() {
    let stack = Stack::start(|_| {}).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    buy(&mut t, "7777", "TEN_TRIP").await;
    let first = g.tap_with_id("g1-boot1-1", "7777").await;
    assert_eq!(first["pass"]["trips_remaining"], 9);
    for _ in 0..3 {
        let again = g.tap_with_id("g1-boot1-1", "7777").await;
        assert_eq!(again, first, "same answer for the same id");
    }
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 1);
    assert_eq!(
        stack.counter("tapgate:counters:device:g1", "granted").await,
        1
    );
    // issued + one pass-used
    assert_eq!(stack.stream_len().await, 2);
    // The same id from another device is another message.
    let mut g2 = support::device(&stack, DeviceKind::Gate, "g2").await;
    assert_eq!(
        g2.tap_with_id("g1-boot1-1", "7777").await["pass"]["trips_remaining"],
        8
    );
    // A redelivered sale step does not sell twice either.
    let d = t.tap_with_id("t1-x", "8888").await;
    assert_eq!(d["outcome"], "select_pass");
    let id = t.next_id();
    let payload = serde_json::json!({"id": id, "pass": "SINGLE_USE"}).to_string();
    t.send(support::MessageTopic::Button, payload.clone()).await;
    t.decision_for(Some(&id)).await;
    let confirm = t.tap_with_id("t1-confirm", "8888").await;
    assert_eq!(confirm["outcome"], "pass_issued");
    assert_eq!(t.tap_with_id("t1-confirm", "8888").await, confirm);
    assert_eq!(stack.counter(keys::COUNTERS_ISSUED, "SINGLE_USE").await, 1);
}

#[tokio::test]
async fn clean_restart_mid_stream_decides_each_tap_once_in_order() {
    let mut stack = Stack::start(|_| {}).await;
    give_pass(&stack, "1010", "TEN_TRIP", 10).await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    let mut seen = Vec::new();
    for i in 1..=4 {
        seen.push(g.tap_with_id(&format!("a{i}"), "1010").await);
    }
    stack.stop_bridge().await;
    for i in 5..=7 {
        let payload = serde_json::json!({"id": format!("a{i}"), "card": "1010"}).to_string();
        g.send(support::MessageTopic::Tap, payload).await;
    }
    assert!(
        g.decisions_within(Duration::from_millis(300))
            .await
            .is_empty(),
        "nobody decides while the bridge is down"
    );
    stack.start_bridge().await;
    for i in 5..=7 {
        seen.push(g.decision_for(Some(&format!("a{i}"))).await);
    }
    for i in 8..=10 {
        seen.push(g.tap_with_id(&format!("a{i}"), "1010").await);
    }
    let left: Vec<_> = seen
        .iter()
        .map(|d| d["pass"]["trips_remaining"].as_u64())
        .collect();
    assert_eq!(
        left,
        (0..10).rev().map(Some).collect::<Vec<_>>(),
        "in order, once each"
    );
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 10);
}

struct BridgeProcess(Child);

impl BridgeProcess {
    fn spawn(stack: &Stack) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"))
            .args(["--redis", stack.config.redis.unredacted()])
            .args(["--mqtt", &stack.config.broker.mqtt.to_string()])
            .args(["--client-id", &stack.config.client_id])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tapgate-bridge");
        Self(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_bridge_loses_nothing_and_charges_nothing_twice() {
    let mut stack = Stack::start(|_| {}).await;
    stack.stop_bridge().await;
    const CARDS: usize = 150;
    for i in 0..CARDS {
        give_pass(&stack, &format!("9{i:04}"), "SINGLE_USE", 0).await;
    }
    let mut gate = Device::connect(stack.broker.port(), DeviceKind::Gate, "g1").await;
    let mut bridge = BridgeProcess::spawn(&stack);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut answers = std::collections::HashMap::new();
    for i in 0..CARDS {
        let payload = serde_json::json!({"id": format!("k{i}"), "card": format!("9{i:04}")});
        gate.send(support::MessageTopic::Tap, payload.to_string())
            .await;
        if i == CARDS / 3 {
            // Kill it mid-stream, publish more while it is down, then bring it back.
            tokio::time::sleep(Duration::from_millis(20)).await;
            bridge.kill();
        }
        if i == CARDS * 2 / 3 {
            bridge = BridgeProcess::spawn(&stack);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while answers.len() < CARDS && tokio::time::Instant::now() < deadline {
        if let Some(m) = gate.probe.recv_timeout(Duration::from_millis(500)).await {
            let d = m.json();
            let id = d["id"].as_str().expect("id").to_owned();
            if let Some(previous) = answers.insert(id.clone(), d.clone()) {
                assert_eq!(previous, d, "a redelivery must repeat the decision");
            }
        }
    }
    drop(bridge);
    assert_eq!(answers.len(), CARDS, "every tap answered");
    assert!(
        answers.values().all(|d| d["outcome"] == "granted"),
        "no tap charged twice: {:?}",
        answers.values().find(|d| d["outcome"] != "granted")
    );
    assert_eq!(
        stack.counter(keys::COUNTERS_ENTRIES, "SINGLE_USE").await,
        CARDS as i64
    );
    assert_eq!(stack.stream_len().await, CARDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_in_a_shared_group_decide_each_tap_once() {
    let stack = Stack::start(|c| c.shared_group = Some("bridges".into())).await;
    let mut second = stack.config.clone();
    second.client_id = format!("{}-b", second.client_id);
    let token = tokio_util::sync::CancellationToken::new();
    let other = tapgate_bridge::start(second, token.clone())
        .await
        .expect("second bridge");
    let mut gates = Vec::new();
    for i in 0..10 {
        gates.push(support::device(&stack, DeviceKind::Gate, &format!("s{i}")).await);
    }
    for gate in &mut gates {
        for n in 0..10 {
            let d = gate.tap(&format!("{n}")).await;
            assert_eq!(d["reason"], "no_pass", "{d}");
        }
    }
    let mut extra = 0;
    for gate in &mut gates {
        extra += gate
            .decisions_within(Duration::from_millis(100))
            .await
            .len();
    }
    assert_eq!(extra, 0, "no tap answered twice");
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "no_pass").await, 100);
    let shared = other.metrics().render();
    assert!(
        !shared.contains("tapgate_decisions_total{device_kind=\"gate\",outcome=\"denied\"} 0\n"),
        "the second bridge took part of the work"
    );
    token.cancel();
    other.join().await.expect("stop");
}
