//! Every pass rule and sales path, driven over real MQTT against real Redis.

mod support;

use std::time::Duration;

use support::{buy, Stack};
use tapgate_protocol::fields::{self, presence};
use tapgate_protocol::stream;
use tapgate_protocol::{keys, DeviceKind};

const GATE: DeviceKind = DeviceKind::Gate;
const TERMINAL: DeviceKind = DeviceKind::Terminal;

#[tokio::test]
async fn single_use_admits_once() {
    let stack = Stack::start(|_| {}).await;
    let mut t = support::device(&stack, TERMINAL, "t1").await;
    let mut g = support::device(&stack, GATE, "g1").await;
    let issued = buy(&mut t, "1001", "SINGLE_USE").await;
    assert_eq!(issued["pass"], serde_json::json!({"type": "SINGLE_USE"}));

    let d = g.tap("1001").await;
    assert_eq!(d["outcome"], "granted", "{d}");
    assert_eq!(d["pass"]["type"], "SINGLE_USE");
    let d = g.tap("1001").await;
    assert_eq!(d["outcome"], "denied", "{d}");
    assert_eq!(d["reason"], "no_pass");

    assert_eq!(stack.counter(keys::COUNTERS_ISSUED, "SINGLE_USE").await, 1);
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "SINGLE_USE").await, 1);
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "no_pass").await, 1);
    assert_eq!(
        stack
            .counter(
                "tapgate:counters:device:g1",
                fields::device_counters::GRANTED
            )
            .await,
        1
    );
    assert_eq!(
        stack
            .counter(
                "tapgate:counters:device:g1",
                fields::device_counters::DENIED
            )
            .await,
        1
    );
    assert_eq!(
        stack.counter("tapgate:counters:device:t1", "issued").await,
        1
    );
}

#[tokio::test]
async fn ten_trip_counts_down_and_card_can_buy_again() {
    let stack = Stack::start(|_| {}).await;
    let mut t = support::device(&stack, TERMINAL, "t1").await;
    let mut g = support::device(&stack, GATE, "g1").await;
    let issued = buy(&mut t, "2002", "TEN_TRIP").await;
    assert_eq!(issued["pass"]["trips_remaining"], 10);
    for left in (0..10).rev() {
        let d = g.tap("2002").await;
        assert_eq!(d["outcome"], "granted", "{d}");
        assert_eq!(d["pass"]["trips_remaining"], left, "{d}");
    }
    let d = g.tap("2002").await;
    assert_eq!(d["reason"], "no_pass", "gone after the tenth: {d}");
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 10);
    // Used up: the card may buy again.
    buy(&mut t, "2002", "SINGLE_USE").await;
}

/// Two hours, the default window.
const TWO_HOURS: Duration = Duration::from_secs(2 * 60 * 60);

#[tokio::test]
async fn two_hour_window_opens_at_first_entry_and_closes_two_hours_later() {
    let stack = Stack::start_manual(|_| {}).await;
    let mut t = support::device(&stack, TERMINAL, "t1").await;
    let mut g = support::device(&stack, GATE, "g1").await;
    let mut events = tapgate_testkit::MqttProbe::connect(stack.broker.port(), "ev").await;
    events.subscribe("tapgate/events/#").await;
    let issued = buy(&mut t, "3003", "TWO_HOUR").await;
    assert!(
        issued["pass"].get("expires_at").is_none(),
        "not active until first entry: {issued}"
    );

    let first = g.tap("3003").await;
    assert_eq!(first["outcome"], "granted", "{first}");
    let expires = first["pass"]["expires_at"].as_u64().expect("expires_at");
    assert_eq!(first["pass"]["remaining_ms"], 7_200_000, "{first}");
    assert_eq!(expires, stack.now_ms() + 7_200_000, "{first}");
    let activated = events
        .expect_on("tapgate/events/pass-activated/TWO_HOUR", support::WAIT)
        .await
        .json();
    assert_eq!(activated["card"], "3003");
    assert_eq!(activated["pass"]["expires_at"], expires);

    for _ in 0..3 {
        stack.advance(Duration::from_secs(30 * 60));
        let d = g.tap("3003").await;
        assert_eq!(d["outcome"], "granted", "unlimited inside the window: {d}");
        assert_eq!(
            d["pass"]["expires_at"], expires,
            "window does not move: {d}"
        );
    }
    // The last millisecond of the window still lets the card in; the next one does not.
    stack.advance(Duration::from_secs(30 * 60) - Duration::from_millis(1));
    let d = g.tap("3003").await;
    assert_eq!(d["outcome"], "granted", "{d}");
    assert_eq!(d["pass"]["remaining_ms"], 1, "{d}");
    stack.advance(Duration::from_millis(1));
    let d = g.tap("3003").await;
    assert_eq!(d["outcome"], "denied", "{d}");
    assert_eq!(d["reason"], "expired");
    let d = g.tap("3003").await;
    assert_eq!(d["reason"], "no_pass", "expired pass removed: {d}");
    buy(&mut t, "3003", "TWO_HOUR").await;
}

#[tokio::test]
async fn unused_passes_do_not_expire_and_one_pass_per_card() {
    let stack = Stack::start_manual(|_| {}).await;
    let mut t = support::device(&stack, TERMINAL, "t1").await;
    buy(&mut t, "4004", "TWO_HOUR").await;
    stack.advance(TWO_HOURS * 12);
    // Longer than the window, but never entered: still held.
    let d = t.tap("4004").await;
    assert_eq!(d["outcome"], "already_has_pass", "{d}");
    assert_eq!(d["pass"]["type"], "TWO_HOUR");
    let mut g = support::device(&stack, GATE, "g1").await;
    let d = g.tap("4004").await;
    assert_eq!(d["outcome"], "granted", "{d}");
}

#[tokio::test]
async fn sale_paths() {
    let stack = Stack::start_manual(|_| {}).await;
    let mut t = support::device(&stack, TERMINAL, "t1").await;

    // Button with no sale.
    let d = t.button("SINGLE_USE").await;
    assert_eq!(d["outcome"], "tap_card_first", "{d}");

    // Mismatched confirm: void, nothing issued, and the sale is gone.
    assert_eq!(t.tap("5005").await["outcome"], "select_pass");
    assert_eq!(t.button("TEN_TRIP").await["outcome"], "tap_to_confirm");
    let d = t.tap("6006").await;
    assert_eq!(d["outcome"], "card_mismatch", "{d}");
    assert_eq!(t.button("TEN_TRIP").await["outcome"], "tap_card_first");
    assert_eq!(stack.counter(keys::COUNTERS_ISSUED, "TEN_TRIP").await, 0);

    // Changing the choice before confirming.
    assert_eq!(t.tap("5005").await["outcome"], "select_pass");
    assert_eq!(t.button("TEN_TRIP").await["selected"], "TEN_TRIP");
    assert_eq!(t.button("TWO_HOUR").await["selected"], "TWO_HOUR");
    let d = t.tap("5005").await;
    assert_eq!(d["pass"]["type"], "TWO_HOUR", "{d}");

    // Already has a pass: nothing sold.
    let d = t.tap("5005").await;
    assert_eq!(d["outcome"], "already_has_pass", "{d}");
    assert_eq!(t.button("SINGLE_USE").await["outcome"], "tap_card_first");

    // Abandoned sale: at the timeout (30 s by default) it still stands, a moment later a button
    // finds no sale.
    assert_eq!(t.tap("7007").await["outcome"], "select_pass");
    stack.advance(Duration::from_secs(30));
    assert_eq!(t.button("TEN_TRIP").await["outcome"], "tap_to_confirm");
    stack.advance(Duration::from_secs(30) + Duration::from_millis(1));
    assert_eq!(t.button("SINGLE_USE").await["outcome"], "tap_card_first");

    // Sales are per terminal: another terminal's sale is independent.
    let mut t2 = support::device(&stack, TERMINAL, "t2").await;
    assert_eq!(t.tap("8008").await["outcome"], "select_pass");
    assert_eq!(t2.button("SINGLE_USE").await["outcome"], "tap_card_first");
    assert_eq!(t.button("SINGLE_USE").await["outcome"], "tap_to_confirm");
}

#[tokio::test]
async fn pass_bought_elsewhere_during_a_sale_is_not_doubled() {
    let stack = Stack::start(|_| {}).await;
    let mut t1 = support::device(&stack, TERMINAL, "t1").await;
    let mut t2 = support::device(&stack, TERMINAL, "t2").await;
    assert_eq!(t1.tap("9009").await["outcome"], "select_pass");
    assert_eq!(t1.button("TEN_TRIP").await["outcome"], "tap_to_confirm");
    buy(&mut t2, "9009", "SINGLE_USE").await;
    let d = t1.tap("9009").await;
    assert_eq!(d["outcome"], "already_has_pass", "{d}");
    assert_eq!(d["pass"]["type"], "SINGLE_USE");
    assert_eq!(stack.counter(keys::COUNTERS_ISSUED, "TEN_TRIP").await, 0);
}

#[tokio::test]
async fn blocked_card_is_denied_everywhere_and_not_sold() {
    let stack = Stack::start(|_| {}).await;
    let mut t = support::device(&stack, TERMINAL, "t1").await;
    let mut g = support::device(&stack, GATE, "g1").await;
    buy(&mut t, "1111", "TEN_TRIP").await;
    let card = tapgate_protocol::CardId::new("1111").expect("card");
    let mut con = stack.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(keys::blocked(&card))
        .arg(fields::blocked::REASON)
        .arg("stolen")
        .query_async(&mut con)
        .await
        .expect("block");
    let d = g.tap("1111").await;
    assert_eq!(
        (d["outcome"].as_str(), d["reason"].as_str()),
        (Some("denied"), Some("blocked"))
    );
    let d = t.tap("1111").await;
    assert_eq!(d["reason"], "blocked", "{d}");
    // The pass itself is untouched while blocked.
    let trips: Option<u32> = redis::cmd("HGET")
        .arg(keys::pass(&card))
        .arg(fields::pass::TRIPS)
        .query_async(&mut con)
        .await
        .expect("HGET");
    assert_eq!(trips, Some(10));
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "blocked").await, 2);
    let _: () = redis::cmd("DEL")
        .arg(keys::blocked(&card))
        .query_async(&mut con)
        .await
        .expect("unblock");
    assert_eq!(g.tap("1111").await["pass"]["trips_remaining"], 9);
}

#[tokio::test]
async fn events_are_published_and_streamed_once() {
    let stack = Stack::start(|_| {}).await;
    let mut events = tapgate_testkit::MqttProbe::connect(stack.broker.port(), "ev").await;
    events.subscribe("tapgate/events/#").await;
    let mut t = support::device(&stack, TERMINAL, "t1").await;
    let mut g = support::device(&stack, GATE, "g1").await;
    buy(&mut t, "1212", "TEN_TRIP").await;
    g.tap("1212").await;
    g.tap("3434").await;
    let got = events.drain_for(Duration::from_millis(500)).await;
    let topics: Vec<_> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "tapgate/events/pass-issued/TEN_TRIP",
            "tapgate/events/pass-used/TEN_TRIP",
            "tapgate/events/pass-denied"
        ]
    );
    let used = got[1].json();
    assert_eq!(used["card"], "1212");
    assert_eq!(used["device"], "g1");
    assert_eq!(used["pass"]["trips_remaining"], 9);
    assert!(used["time"].as_u64().is_some());
    assert!(
        used["seq"].as_str().is_some_and(|s| s.contains('-')),
        "{used}"
    );
    assert_eq!(got[2].json()["reason"], "no_pass");
    assert_eq!(stack.stream_len().await, 3);
    // The card's recent events, newest first, as stream ids.
    let mut con = stack.redis().await;
    let recent: Vec<String> = redis::cmd("LRANGE")
        .arg("tapgate:card:{1212}:recent")
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .expect("LRANGE");
    assert_eq!(
        recent,
        [&used["seq"], &got[0].json()["seq"]].map(|s| s.as_str().unwrap_or_default().to_owned())
    );
    // The stream entry holds the event as published, a field per event field.
    let entry: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg(&recent[0])
        .arg(&recent[0])
        .query_async(&mut con)
        .await
        .expect("XRANGE");
    let values: std::collections::BTreeMap<String, String> = entry.ids[0]
        .map
        .keys()
        .filter_map(|k| Some((k.clone(), entry.ids[0].get::<String>(k)?)))
        .collect();
    let mut streamed = tapgate_protocol::Event::from_stream_map(&values).expect("event");
    streamed.seq = Some(recent[0].clone());
    assert_eq!(serde_json::to_value(&streamed).expect("json"), used);
    assert_eq!(values[stream::EVENT], "pass-used");
    assert_eq!(values[stream::TRIPS], "9");
}

#[tokio::test]
async fn device_presence_is_recorded() {
    let stack = Stack::start(|_| {}).await;
    let probe = tapgate_testkit::MqttProbe::connect(stack.broker.port(), "g7").await;
    probe
        .publish_retained("tapgate/gate/g7/status", "online")
        .await;
    probe
        .publish("tapgate/gate/g7/heartbeat", r#"{"uptime_s":42}"#)
        .await;
    let mut con = stack.redis().await;
    let mut hash = std::collections::HashMap::<String, String>::new();
    for _ in 0..50 {
        hash = redis::cmd("HGETALL")
            .arg("tapgate:device:gate:g7")
            .query_async(&mut con)
            .await
            .expect("HGETALL");
        if hash.get(presence::UPTIME_S).map(String::as_str) == Some("42") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        hash.get(presence::ONLINE).map(String::as_str),
        Some("1"),
        "{hash:?}"
    );
    assert_eq!(
        hash.get(presence::UPTIME_S).map(String::as_str),
        Some("42"),
        "{hash:?}"
    );
    assert!(hash.contains_key(presence::LAST_SEEN));
    probe
        .publish_retained("tapgate/gate/g7/status", "offline")
        .await;
    for _ in 0..50 {
        let online: Option<String> = redis::cmd("HGET")
            .arg("tapgate:device:gate:g7")
            .arg(presence::ONLINE)
            .query_async(&mut con)
            .await
            .expect("HGET");
        if online.as_deref() == Some("0") {
            let member: bool = redis::cmd("SISMEMBER")
                .arg(keys::DEVICES)
                .arg("gate/g7")
                .query_async(&mut con)
                .await
                .expect("SISMEMBER");
            assert!(member);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("offline status not recorded");
}
