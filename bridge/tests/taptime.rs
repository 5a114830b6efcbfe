//! Tap time over the real broker and Redis: stale waiting taps, offline entries settled at the
//! time they happened, unpaid entries, and device clocks the bridge measures and flags. Times are
//! supplied by the devices (stamps, heartbeat clocks), never waited for.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{device, Device, MessageTopic, Stack, WAIT};
use tapgate_protocol::{keys, CardId, DeviceKind, ProductId, TapMode};
use tapgate_runtime::clock::now_ms;
use tapgate_testkit::MqttProbe;

const HOUR: u64 = 3_600_000;

/// Puts a fresh pass of `pass_type` on `card`, as a terminal sale would.
async fn give_pass(stack: &Stack, card: &str, pass_type: ProductId) {
    let mut con = stack.redis().await;
    let trips = if pass_type == ProductId::TEN_TRIP {
        10
    } else {
        0
    };
    let card = CardId::new(card).expect("card");
    support::put_pass(&mut con, &card, pass_type.as_str(), trips).await;
}

async fn pass_field(stack: &Stack, card: &str, field: &str) -> Option<u64> {
    let mut con = stack.redis().await;
    redis::cmd("HGET")
        .arg(keys::pass(&CardId::new(card).expect("card")))
        .arg(field)
        .query_async(&mut con)
        .await
        .expect("HGET")
}

/// Publishes a stamped tap with a fresh id and returns its decision.
async fn stamped_tap(dev: &mut Device, card: &str, time: u64, mode: TapMode) -> Value {
    let id = dev.next_id();
    let payload = json!({"id": id, "card": card, "time": time, "mode": mode.as_str()});
    dev.send(MessageTopic::Tap, payload.to_string()).await;
    dev.decision_for(Some(&id)).await
}

/// The next event on `events/{name}`, within [`WAIT`].
async fn next_event(probe: &mut MqttProbe, name: &str) -> Value {
    let topic = format!("tapgate/events/{name}");
    probe.expect_on(&topic, WAIT).await.json()
}

#[tokio::test]
async fn waiting_tap_older_than_the_window_is_stale_and_free() {
    let stack = Stack::start(|_| {}).await;
    let mut events = MqttProbe::connect(stack.broker.port(), "watch-stale").await;
    events.subscribe("tapgate/events/#").await;
    give_pass(&stack, "C1", ProductId::TEN_TRIP).await;
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;

    // Inside the window (default 1.5 s): decided and charged.
    let d = stamped_tap(&mut g, "C1", now_ms(), TapMode::Online).await;
    assert_eq!(d["outcome"], "granted", "{d}");
    assert_eq!(d["pass"]["trips_remaining"], 9, "{d}");

    // Ten seconds old: the gate gave up long ago; nothing charged, recorded as stale.
    let tapped = now_ms() - 10_000;
    let d = stamped_tap(&mut g, "C1", tapped, TapMode::Online).await;
    assert_eq!(d["outcome"], "stale", "{d}");
    assert_eq!(pass_field(&stack, "C1", "trips").await, Some(9));
    let e = next_event(&mut events, "tap-stale").await;
    assert_eq!(e["tap_time"], tapped, "{e}");
    assert_eq!(e["clock"], "device", "{e}");
    assert_eq!(e["card"], "C1", "{e}");
    assert_eq!(stack.counter(keys::COUNTERS_STALE, "gate").await, 1);
    assert_eq!(
        stack.counter(&keys::device_counters(&g.id), "stale").await,
        1
    );
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 1);
}

#[tokio::test]
async fn the_decision_window_ends_to_the_millisecond_on_the_bridge_clock() {
    let stack = Stack::start_manual(|_| {}).await;
    give_pass(&stack, "C1", ProductId::TEN_TRIP).await;
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;

    // Decided exactly at the end of the window (default 1.5 s): charged.
    let tapped = stack.now_ms();
    stack.advance(Duration::from_millis(1_500));
    let d = stamped_tap(&mut g, "C1", tapped, TapMode::Online).await;
    assert_eq!(d["outcome"], "granted", "{d}");
    assert_eq!(d["pass"]["trips_remaining"], 9, "{d}");

    // One millisecond later: stale, nothing charged.
    let tapped = stack.now_ms();
    stack.advance(Duration::from_millis(1_501));
    let d = stamped_tap(&mut g, "C1", tapped, TapMode::Online).await;
    assert_eq!(d["outcome"], "stale", "{d}");
    assert_eq!(pass_field(&stack, "C1", "trips").await, Some(9));
    assert_eq!(stack.counter(keys::COUNTERS_STALE, "gate").await, 1);
}

#[tokio::test]
async fn offline_entries_settle_at_their_time_and_once() {
    let stack = Stack::start(|_| {}).await;
    let mut events = MqttProbe::connect(stack.broker.port(), "watch-unpaid").await;
    events.subscribe("tapgate/events/#").await;
    give_pass(&stack, "TEN", ProductId::TEN_TRIP).await;
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;
    let now = now_ms();

    // Three entries a fail-open gate let through an hour ago: three trips, no more.
    for (n, left) in [9, 8, 7].into_iter().enumerate() {
        let at = now - HOUR + n as u64 * 60_000;
        let d = stamped_tap(&mut g, "TEN", at, TapMode::Offline).await;
        assert_eq!(d["outcome"], "entry_settled", "{d}");
        assert_eq!(d["pass"]["trips_remaining"], left, "{d}");
    }
    // A redelivery of the last one (same id, same content) is not charged again.
    let last = format!("{}-3", g.id);
    let payload =
        json!({"id": last, "card": "TEN", "time": now - HOUR + 120_000, "mode": "offline"});
    g.send(MessageTopic::Tap, payload.to_string()).await;
    let d = g.decision_for(Some(&last)).await;
    assert_eq!(d["pass"]["trips_remaining"], 7, "{d}");
    assert_eq!(pass_field(&stack, "TEN", "trips").await, Some(7));
    // The same id with another time is other content: refused, nothing charged.
    let payload = json!({"id": last, "card": "TEN", "time": now - HOUR, "mode": "offline"});
    g.send(MessageTopic::Tap, payload.to_string()).await;
    let d = g.decision_for(Some(&last)).await;
    assert_eq!(d["reason"], "id_reused", "{d}");
    assert_eq!(pass_field(&stack, "TEN", "trips").await, Some(7));

    // A card without a pass, and a blocked card: unpaid entries, never a late denial.
    let d = stamped_tap(&mut g, "NOPASS", now - HOUR, TapMode::Offline).await;
    assert_eq!(d["outcome"], "unpaid_entry", "{d}");
    assert_eq!(d["reason"], "no_pass", "{d}");
    let e = next_event(&mut events, "unpaid-entry").await;
    assert_eq!(e["card"], "NOPASS", "{e}");
    assert_eq!(e["tap_time"], now - HOUR, "{e}");
    assert_eq!(e["mode"], "offline", "{e}");
    let mut con = stack.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(keys::blocked(&CardId::new("BAD").expect("card")))
        .arg("reason")
        .arg("stolen")
        .query_async(&mut con)
        .await
        .expect("block");
    let d = stamped_tap(&mut g, "BAD", now - 1_000, TapMode::Offline).await;
    assert_eq!(d["outcome"], "unpaid_entry", "{d}");
    assert_eq!(d["reason"], "blocked", "{d}");
    assert_eq!(stack.counter(keys::COUNTERS_UNPAID, "no_pass").await, 1);
    assert_eq!(stack.counter(keys::COUNTERS_UNPAID, "blocked").await, 1);
    assert_eq!(
        stack.counter(&keys::device_counters(&g.id), "unpaid").await,
        2
    );
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "no_pass").await, 0);
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "blocked").await, 0);
}

/// Over MQTT: a two-hour pass first used offline half an hour ago runs out two hours after that
/// entry, not after its settlement.
#[tokio::test]
async fn two_hour_window_starts_at_the_offline_entry() {
    let stack = Stack::start(|_| {}).await;
    give_pass(&stack, "TWO", ProductId::TWO_HOUR).await;
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;
    let entry = now_ms() - HOUR / 2;
    let d = stamped_tap(&mut g, "TWO", entry, TapMode::Offline).await;
    assert_eq!(d["outcome"], "entry_settled", "{d}");
    assert_eq!(d["pass"]["expires_at"], entry + 2 * HOUR, "{d}");
    assert_eq!(
        pass_field(&stack, "TWO", "expires_at").await,
        Some(entry + 2 * HOUR)
    );
    // Online now: inside the window, which has about 90 minutes left.
    let d = stamped_tap(&mut g, "TWO", now_ms(), TapMode::Online).await;
    assert_eq!(d["outcome"], "granted", "{d}");
    let left = d["pass"]["remaining_ms"].as_u64().expect("remaining");
    assert!(left <= 3 * HOUR / 2 && left > 3 * HOUR / 2 - 60_000, "{d}");
}

#[tokio::test]
async fn device_clock_ten_minutes_fast_is_flagged_and_corrected() {
    let stack = Stack::start(|_| {}).await;
    let mut events = MqttProbe::connect(stack.broker.port(), "watch-clock").await;
    events.subscribe("tapgate/events/#").await;
    give_pass(&stack, "C1", ProductId::TEN_TRIP).await;
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;
    let heartbeat = g.topics.heartbeat(DeviceKind::Gate, &g.id);
    let fast = 10 * 60_000;

    g.probe
        .publish(
            &heartbeat,
            json!({"uptime_s": 5, "clock_ms": now_ms() + fast}).to_string(),
        )
        .await;
    let e = next_event(&mut events, "clock-skew").await;
    assert_eq!(e["reason"], "clock_off", "{e}");
    assert_eq!(e["device"], "g1", "{e}");
    let skew = e["skew_ms"].as_i64().expect("skew");
    assert!((fast as i64 - 5_000..=fast as i64).contains(&skew), "{e}");
    let presence = keys::device(DeviceKind::Gate, &g.id);
    assert_eq!(stack.counter(&presence, keys::FIELD_CLOCK_FLAGGED).await, 1);
    assert_eq!(
        stack
            .counter(keys::COUNTERS_CLOCK, keys::CLOCK_FLAGGED)
            .await,
        1
    );
    // Another heartbeat still off: no second flag.
    g.probe
        .publish(
            &heartbeat,
            json!({"uptime_s": 35, "clock_ms": now_ms() + fast}).to_string(),
        )
        .await;

    // Its tap, stamped ten minutes ahead, is read on the bridge's clock: granted, and says so.
    let d = stamped_tap(&mut g, "C1", now_ms() + fast, TapMode::Online).await;
    assert_eq!(d["outcome"], "granted", "{d}");
    let e = next_event(&mut events, "pass-used/TEN_TRIP").await;
    assert_eq!(e["clock"], "bridge", "{e}");
    let tap_time = e["tap_time"].as_u64().expect("tap time");
    assert!(tap_time.abs_diff(now_ms()) < 5_000, "{e}");
    assert_eq!(
        stack
            .counter(keys::COUNTERS_CLOCK, keys::CLOCK_FLAGGED)
            .await,
        1
    );

    // A device not flagged cannot claim a time ahead of the bridge: refused, nothing charged.
    let mut g2 = device(&stack, DeviceKind::Gate, "g2").await;
    let d = stamped_tap(&mut g2, "C1", now_ms() + fast, TapMode::Online).await;
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert_eq!(d["reason"], "time_in_future", "{d}");
    assert_eq!(pass_field(&stack, "C1", "trips").await, Some(9));

    // The clock is set right: the flag is cleared.
    g.probe
        .publish(
            &heartbeat,
            json!({"uptime_s": 65, "clock_ms": now_ms()}).to_string(),
        )
        .await;
    let e = next_event(&mut events, "clock-skew").await;
    assert_eq!(e["reason"], "clock_ok", "{e}");
    assert_eq!(stack.counter(&presence, keys::FIELD_CLOCK_FLAGGED).await, 0);
    assert_eq!(
        stack
            .counter(keys::COUNTERS_CLOCK, keys::CLOCK_CLEARED)
            .await,
        1
    );
}

#[tokio::test]
async fn offline_is_for_gates_and_unstamped_taps_are_accepted_until_required() {
    let stack = Stack::start(|_| {}).await;
    let mut t = device(&stack, DeviceKind::Terminal, "t1").await;
    let d = stamped_tap(&mut t, "C1", now_ms(), TapMode::Offline).await;
    assert_eq!(d["reason"], "offline_not_allowed", "{d}");
    let id = t.next_id();
    let payload = json!({"id": id, "pass": "TWO_HOUR", "time": now_ms(), "mode": "offline"});
    t.send(MessageTopic::Button, payload.to_string()).await;
    assert_eq!(
        t.decision_for(Some(&id)).await["reason"],
        "offline_not_allowed"
    );
    // Transition: a tap without a stamp is decided on the bridge's clock.
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;
    assert_eq!(g.tap("C1").await["reason"], "no_pass");
    drop(stack);

    let stack = Stack::start(|c| c.require_stamp = true).await;
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;
    let d = g.tap("C1").await;
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert_eq!(d["reason"], "missing_field", "{d}");
    let d = stamped_tap(&mut g, "C1", now_ms(), TapMode::Online).await;
    assert_eq!(d["reason"], "no_pass", "{d}");
}

#[tokio::test]
async fn an_offline_entry_older_than_the_pass_or_the_limit_does_not_spend_it() {
    let stack = Stack::start(|_| {}).await;
    let mut t = device(&stack, DeviceKind::Terminal, "t1").await;
    let sold = support::buy(&mut t, "NEW", "TWO_HOUR").await;
    assert_eq!(sold["outcome"], "pass_issued", "{sold}");
    let mut g = device(&stack, DeviceKind::Gate, "g1").await;
    // A gate whose clock was never set: 1970. Refused, and the pass is as sold.
    let d = stamped_tap(&mut g, "NEW", 1_000, TapMode::Offline).await;
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert_eq!(d["reason"], "time_too_old", "{d}");
    assert_eq!(pass_field(&stack, "NEW", "expires_at").await, None);
    // An hour before the sale (within the 24 h limit): the pass did not pay for that entry.
    let d = stamped_tap(&mut g, "NEW", now_ms() - HOUR, TapMode::Offline).await;
    assert_eq!(d["outcome"], "unpaid_entry", "{d}");
    assert_eq!(d["reason"], "no_pass", "{d}");
    assert_eq!(pass_field(&stack, "NEW", "expires_at").await, None);
    assert_eq!(pass_field(&stack, "NEW", "used_at").await, None);
    // The rider's first real entry starts the two hours.
    let entry = now_ms();
    let d = stamped_tap(&mut g, "NEW", entry, TapMode::Online).await;
    assert_eq!(d["outcome"], "granted", "{d}");
    let expires = pass_field(&stack, "NEW", "expires_at")
        .await
        .expect("activated");
    assert!(expires >= entry + 2 * HOUR - 1_000, "{d}");
}
