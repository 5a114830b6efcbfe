//! No poison message: whatever the bridge cannot handle is answered once, counted, acknowledged,
//! and never stalls other devices or the bridge's connection. Runs on a real mosquitto left at its
//! default (no packet limit), so oversized packets do reach the bridge.

mod support;

use std::time::{Duration, Instant};

use support::{buy, Device, MessageTopic, Stack};
use tapgate_protocol::text::is_unsafe;
use tapgate_protocol::{keys, CardId, DeviceId, DeviceKind, MessageId};
use tapgate_testkit::MqttProbe;

/// How quickly an unaffected device must still be answered.
const SECOND: Duration = Duration::from_secs(1);

/// Taps a card with no pass on `other` and checks the answer comes within a second.
async fn still_answered(other: &mut Device, card: &str) {
    let started = Instant::now();
    let d = other.tap(card).await;
    assert_eq!(d["outcome"], "denied", "{d}");
    assert!(
        started.elapsed() < SECOND,
        "other device waited {:?}",
        started.elapsed()
    );
}

/// Asserts nothing more arrives for `device` for a moment: each message was answered once.
async fn answered_once(device: &mut Device) {
    let more = device.decisions_within(Duration::from_millis(300)).await;
    assert!(more.is_empty(), "answered again: {more:?}");
}

fn reconnects(stack: &Stack) -> u64 {
    stack
        .metrics
        .as_ref()
        .expect("bridge running")
        .mqtt_reconnects_total()
}

#[tokio::test]
async fn oversized_publishes_are_refused_without_a_reconnect_loop() {
    let mut stack = Stack::start(|_| {}).await;
    let mut g1 = support::device(&stack, DeviceKind::Gate, "g1").await;
    let mut g2 = support::device(&stack, DeviceKind::Gate, "g2").await;
    let rogue = MqttProbe::connect(stack.broker.port(), "rogue").await;
    let big = format!(r#"{{"id":"big","card":"{}"}}"#, "1".repeat(70 * 1024));
    assert!(big.len() > 70 * 1024);

    for (topic, retained) in [
        ("tapgate/gate/g1/tap", false),
        ("tapgate/gate/g1/tap", true),
        ("tapgate/gate/g1/status", true),
        ("tapgate/gate/g1/heartbeat", false),
    ] {
        if retained {
            rogue.publish_retained(topic, big.clone()).await;
        } else {
            rogue.publish(topic, big.clone()).await;
        }
        let d = g1.decision_for(None).await;
        assert_eq!(d["outcome"], "rejected", "{topic}: {d}");
        assert_eq!(d["reason"], "payload_too_large", "{topic}: {d}");
        still_answered(&mut g2, "5555").await;
    }
    answered_once(&mut g1).await;
    assert_eq!(reconnects(&stack), 0, "{}", stack.broker.log());
    assert_eq!(
        stack
            .counter(keys::COUNTERS_REJECTED, "payload_too_large")
            .await,
        4
    );
    assert_eq!(
        stack
            .counter("tapgate:counters:device:g1", "rejected")
            .await,
        4
    );

    // A new session receives the retained copies on subscribing: refused, not looped over.
    stack.stop_bridge().await;
    stack.config.client_id = "fresh-bridge".into();
    stack.start_bridge().await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        reasons.push(g1.decision_for(None).await["reason"].clone());
    }
    reasons.sort_by_key(|r| r.to_string());
    assert_eq!(reasons, ["payload_too_large", "retained"], "{reasons:?}");
    still_answered(&mut g2, "5556").await;
    answered_once(&mut g1).await;
    assert_eq!(reconnects(&stack), 0, "{}", stack.broker.log());
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "no_pass").await, 5);
}

#[tokio::test]
async fn unknown_pass_type_is_denied_corrupt_pass_and_left_alone() {
    let stack = Stack::start(|_| {}).await;
    let mut g1 = support::device(&stack, DeviceKind::Gate, "g1").await;
    let mut g2 = support::device(&stack, DeviceKind::Gate, "g2").await;
    let mut t1 = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let key = keys::pass(&CardId::new("AA01").expect("card"));
    let mut con = stack.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("type")
        .arg("MONTHLY")
        .arg("trips")
        .arg(0)
        .query_async(&mut con)
        .await
        .expect("HSET");

    let started = Instant::now();
    let d = g1.tap("AA01").await;
    assert_eq!(d["outcome"], "denied", "{d}");
    assert_eq!(d["reason"], "corrupt_pass", "{d}");
    assert!(started.elapsed() < SECOND);
    answered_once(&mut g1).await;
    // Not sold over either.
    let d = t1.tap("aa01").await;
    assert_eq!(d["reason"], "corrupt_pass", "{d}");
    still_answered(&mut g2, "5555").await;
    still_answered(&mut g1, "5556").await;
    let t: String = redis::cmd("HGET")
        .arg(&key)
        .arg("type")
        .query_async(&mut con)
        .await
        .expect("HGET");
    assert_eq!(t, "MONTHLY", "the record is left for an operator");
    assert_eq!(
        stack.counter(keys::COUNTERS_DENIED, "corrupt_pass").await,
        2
    );
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "MONTHLY").await, 0);
}

#[tokio::test]
async fn unreadable_stored_result_is_refused_once() {
    let stack = Stack::start(|_| {}).await;
    let mut g1 = support::device(&stack, DeviceKind::Gate, "g1").await;
    let mut g2 = support::device(&stack, DeviceKind::Gate, "g2").await;
    let dev = DeviceId::new("g1").expect("device");
    let mut con = stack.redis().await;
    for (id, garbage) in [
        ("x1", "garbage\u{1b}]0;pwned\u{7}"),
        (
            "x2",
            "{\"decision\":{\"outcome\":\"granted\",\"pass\":{\"type\":\"monthly pass\"}}}",
        ),
        ("x3", "gate:5555:\n{not json"),
    ] {
        let key = keys::seen(DeviceKind::Gate, &dev, &MessageId::new(id).expect("id"));
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(garbage)
            .query_async(&mut con)
            .await
            .expect("SET");
        let started = Instant::now();
        let d = g1.tap_with_id(id, "5555").await;
        assert_eq!(d["outcome"], "rejected", "{id}: {d}");
        assert_eq!(d["reason"], "internal_error", "{id}: {d}");
        let detail = d["detail"].as_str().expect("detail");
        assert!(!detail.chars().any(is_unsafe), "{detail:?}");
        assert!(started.elapsed() < SECOND, "{id}: {:?}", started.elapsed());
        answered_once(&mut g1).await;
        still_answered(&mut g2, "5556").await;
        still_answered(&mut g1, "5557").await;
    }
    assert_eq!(
        stack
            .counter(keys::COUNTERS_REJECTED, "internal_error")
            .await,
        3
    );
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "MONTHLY").await, 0);
}

#[tokio::test]
async fn reused_id_with_other_content_is_refused_and_changes_nothing() {
    let stack = Stack::start(|_| {}).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    buy(&mut t, "7777", "TEN_TRIP").await;
    buy(&mut t, "8888", "TEN_TRIP").await;
    let first = g.tap_with_id("g1-boot-1", "7777").await;
    assert_eq!(first["pass"]["trips_remaining"], 9, "{first}");

    // Pre-seeded or predicted: the same id with another card is refused, not replayed.
    let d = g.tap_with_id("g1-boot-1", "8888").await;
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert_eq!(d["reason"], "id_reused", "{d}");
    // The same id with the same content is a redelivery: same answer, no second charge. Card
    // ids are compared canonically.
    assert_eq!(g.tap_with_id("g1-boot-1", "7777").await, first);
    // Nothing changed for either card.
    assert_eq!(g.tap("8888").await["pass"]["trips_remaining"], 9);
    assert_eq!(g.tap("7777").await["pass"]["trips_remaining"], 8);
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 3);
    assert_eq!(stack.counter(keys::COUNTERS_REJECTED, "id_reused").await, 1);

    // A terminal's tap id reused for a button press is refused too.
    let d = t.tap_with_id("t1-x", "9999").await;
    assert_eq!(d["outcome"], "select_pass");
    let payload = serde_json::json!({"id": "t1-x", "pass": "TWO_HOUR"}).to_string();
    t.send(MessageTopic::Button, payload).await;
    let d = t.decision_for(Some("t1-x")).await;
    assert_eq!(d["reason"], "id_reused", "{d}");
    assert_eq!(t.button("SINGLE_USE").await["outcome"], "tap_to_confirm");
}

#[tokio::test]
async fn duplicate_keys_and_hostile_text_are_refused_and_escaped() {
    let stack = Stack::start(|_| {}).await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    let mut events = MqttProbe::connect(stack.broker.port(), "ev").await;
    events.subscribe("tapgate/events/rejected").await;

    g.send(
        MessageTopic::Tap,
        r#"{"id":"d1","card":"not a card!","card":"D0"}"#,
    )
    .await;
    let d = g.decision_for(None).await;
    assert_eq!(d["reason"], "duplicate_field", "{d}");
    events
        .expect_on("tapgate/events/rejected", support::WAIT)
        .await;
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "no_pass").await, 0);

    // Status and heartbeat refusals are answered on the device's decision topic and counted
    // against it; device text in them is escaped everywhere it lands.
    let rogue = MqttProbe::connect(stack.broker.port(), "rogue").await;
    let hostile = r#"{"uptime_s":1,"\u001b]0;owned\u0007\u001b[2J\u202ex":1}"#;
    rogue.publish("tapgate/gate/g1/heartbeat", hostile).await;
    let d = g.decision_for(None).await;
    assert_eq!(d["reason"], "unknown_field", "{d}");
    let detail = d["detail"].as_str().expect("detail");
    assert!(!detail.chars().any(is_unsafe), "{detail:?}");
    assert!(detail.contains("\\u{1b}"), "{detail:?}");
    let e = events
        .expect_on("tapgate/events/rejected", support::WAIT)
        .await;
    assert!(!e.text().chars().any(is_unsafe), "{}", e.text());
    rogue
        .publish(
            "tapgate/gate/g1/heartbeat",
            r#"{"uptime_s":1,"uptime_s":2}"#,
        )
        .await;
    assert_eq!(g.decision_for(None).await["reason"], "duplicate_field");
    rogue.publish("tapgate/gate/g1/status", "maybe").await;
    assert_eq!(g.decision_for(None).await["reason"], "malformed_json");
    assert_eq!(
        stack
            .counter("tapgate:counters:device:g1", "rejected")
            .await,
        4
    );
    // The stream holds no raw control character either.
    let mut con = stack.redis().await;
    let raw: redis::Value = redis::cmd("XRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("XRANGE");
    let text = format!("{raw:?}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "{text}"
    );
    assert_eq!(g.tap("1234").await["reason"], "no_pass");
}

#[tokio::test]
async fn a_redis_error_that_retrying_cannot_fix_is_refused_once() {
    let stack = Stack::start(|_| {}).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let mut g1 = support::device(&stack, DeviceKind::Gate, "g1").await;
    let mut g2 = support::device(&stack, DeviceKind::Gate, "g2").await;
    buy(&mut t, "4444", "SINGLE_USE").await;
    // The deny counter is no longer a hash: every denial now fails inside Redis (WRONGTYPE).
    let mut con = stack.redis().await;
    let _: () = redis::cmd("SET")
        .arg(keys::COUNTERS_DENIED)
        .arg("oops")
        .query_async(&mut con)
        .await
        .expect("SET");
    let started = Instant::now();
    let d = g1.tap_with_id("w1", "5555").await;
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert_eq!(d["reason"], "internal_error", "{d}");
    assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());
    answered_once(&mut g1).await;
    // Other devices, and the same device, still get decisions that do not hit the broken key.
    let started = Instant::now();
    assert_eq!(g2.tap("4444").await["outcome"], "granted");
    assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());
    assert_eq!(g1.tap("5555").await["reason"], "internal_error");
    assert_eq!(
        stack
            .counter(keys::COUNTERS_REJECTED, "internal_error")
            .await,
        2
    );
}
