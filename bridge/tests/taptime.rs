//! Tap time over the real broker and Redis: stale waiting taps, offline entries settled at the
//! time they happened, unpaid entries, and device clocks the bridge measures and flags. Times are
//! supplied by the devices (stamps, heartbeat clocks), never waited for.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{device, Device, MessageTopic, Stack, WAIT};
use tapgate_bridge::store::{Answer, Request, Store};
use tapgate_protocol::rules::{Input, TimeSettings};
use tapgate_protocol::{
    keys, CardId, DeviceId, DeviceKind, MessageId, Outcome, PassType, Stamp, TapMode,
};
use tapgate_runtime::clock::now_ms;
use tapgate_testkit::{MqttProbe, RedisServer};

const HOUR: u64 = 3_600_000;

/// Puts a fresh pass of `pass_type` on `card`, as a terminal sale would.
async fn give_pass(stack: &Stack, card: &str, pass_type: PassType) {
    let mut con = stack.redis().await;
    let trips = if pass_type == PassType::TenTrip {
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
    give_pass(&stack, "C1", PassType::TenTrip).await;
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
    give_pass(&stack, "C1", PassType::TenTrip).await;
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
    give_pass(&stack, "TEN", PassType::TenTrip).await;
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
    give_pass(&stack, "TWO", PassType::TwoHour).await;
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

/// The same at the script with the bridge's clock given: first used offline at 08:00, settled
/// at 08:30, the pass expires at 10:00 — an entry at 09:59:59.999 is paid, one at 10:00 is not.
#[tokio::test]
async fn offline_two_hour_entry_at_eight_settled_at_half_past_expires_at_ten() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, support::store_settings())
        .await
        .expect("store");
    let card = CardId::new("TWO").expect("card");
    let mut con = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    support::put_pass(&mut con, &card, "TWO_HOUR", 0).await;
    // 2026-12-01 08:00 UTC.
    let eight = 1_796_112_000_000;
    let g1 = DeviceId::new("g1").expect("device");
    let input = Input::GateTap(card.clone());
    let decide = |n: u32, at: u64, now: u64| {
        let id = MessageId::new(format!("g1-{n}")).expect("id");
        let store = store.clone();
        let input = input.clone();
        let g1 = g1.clone();
        async move {
            let got = store
                .decide(&Request {
                    kind: DeviceKind::Gate,
                    device: &g1,
                    id: &id,
                    input: &input,
                    now_ms: now,
                    stamp: Some(Stamp::offline(at)),
                    replaces: None,
                })
                .await
                .expect("script");
            match got {
                Answer::Decided(d) => d.decision.outcome,
                other => panic!("{other:?}"),
            }
        }
    };
    let half_past = eight + HOUR / 2;
    match decide(1, eight, half_past).await {
        Outcome::EntrySettled { pass } => assert_eq!(pass.expires_at, Some(eight + 2 * HOUR)),
        other => panic!("{other:?}"),
    }
    let ten = eight + 2 * HOUR;
    assert!(matches!(
        decide(2, ten - 1, ten + HOUR).await,
        Outcome::EntrySettled { .. }
    ));
    assert_eq!(
        decide(3, ten, ten + HOUR).await,
        Outcome::UnpaidEntry {
            reason: tapgate_protocol::DenyReason::Expired
        }
    );
}

#[tokio::test]
async fn device_clock_ten_minutes_fast_is_flagged_and_corrected() {
    let stack = Stack::start(|_| {}).await;
    let mut events = MqttProbe::connect(stack.broker.port(), "watch-clock").await;
    events.subscribe("tapgate/events/#").await;
    give_pass(&stack, "C1", PassType::TenTrip).await;
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

/// A waiting tap's idempotency record lives only until a redelivery would be `stale` anyway; an
/// offline entry's and an unstamped tap's for the configured lifetime. A redelivery after the
/// record has gone charges nothing: it is answered with the decision the card's history shows
/// (its first answer may never have reached the device), or `stale` if it was never decided.
#[tokio::test]
async fn seen_records_live_as_long_as_a_redelivery_can_be_decided() {
    let redis = RedisServer::start();
    let time = TimeSettings::default();
    let store = Store::connect(&redis.url(), None, support::store_settings())
        .await
        .expect("store");
    let card = CardId::new("TEN").expect("card");
    let mut con = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    support::put_pass(&mut con, &card, "TEN_TRIP", 10).await;
    let g1 = DeviceId::new("g1").expect("device");
    let input = Input::GateTap(card.clone());
    let now = now_ms();
    let decide = |id: &'static str, stamp: Option<Stamp>, now: u64| {
        let store = store.clone();
        let input = input.clone();
        let g1 = g1.clone();
        async move {
            let id = MessageId::new(id).expect("id");
            match store
                .decide(&Request {
                    kind: DeviceKind::Gate,
                    device: &g1,
                    id: &id,
                    input: &input,
                    now_ms: now,
                    stamp,
                    replaces: None,
                })
                .await
                .expect("script")
            {
                Answer::Decided(d) => d,
                other => panic!("{other:?}"),
            }
        }
    };
    let pttl = |id: &'static str| {
        let key = keys::seen(DeviceKind::Gate, &g1, &MessageId::new(id).expect("id"));
        let mut con = con.clone();
        async move {
            let ms: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut con)
                .await
                .expect("PTTL");
            ms
        }
    };
    let bound = i64::try_from(time.decision_window_ms + time.max_future_ms).expect("ms");

    decide("online", Some(Stamp::online(now)), now).await;
    let ttl = pttl("online").await;
    assert!(ttl > 0 && ttl <= bound, "online tap kept {ttl} ms");
    // A stamp ahead of the bridge's clock is kept that much longer.
    decide("ahead", Some(Stamp::online(now + 2000)), now).await;
    let ttl = pttl("ahead").await;
    assert!(
        ttl > bound && ttl <= bound + 2000,
        "tap 2 s ahead kept {ttl} ms"
    );
    decide("offline", Some(Stamp::offline(now - 1000)), now).await;
    assert!(pttl("offline").await > 3_000_000);
    decide("unstamped", None, now).await;
    assert!(pttl("unstamped").await > 3_000_000);
    // A terminal's tap starts a sale, which no event records: its record outlives the sale.
    let t1 = DeviceId::new("t1").expect("device");
    let sale_tap = MessageId::new("sale").expect("id");
    let started = store
        .decide(&Request {
            kind: DeviceKind::Terminal,
            device: &t1,
            id: &sale_tap,
            input: &Input::TerminalTap(CardId::new("NEW").expect("card")),
            now_ms: now,
            stamp: Some(Stamp::online(now)),
            replaces: None,
        })
        .await
        .expect("script");
    assert!(
        matches!(&started, Answer::Decided(d) if d.decision.outcome == Outcome::SelectPass),
        "{started:?}"
    );
    let sale_ms = i64::try_from(support::store_settings().sale_timeout_ms).expect("ms");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(keys::seen(DeviceKind::Terminal, &t1, &sale_tap))
        .query_async(&mut con)
        .await
        .expect("PTTL");
    assert!(
        ttl > bound + sale_ms - 1_000 && ttl <= bound + sale_ms,
        "terminal tap kept {ttl} ms"
    );

    // Within the record's life a redelivery is replayed from it; once it has gone, from the
    // card's history: the same answer, nothing charged.
    let again = decide("online", Some(Stamp::online(now)), now + 10).await;
    assert!(again.replayed);
    let _: () = redis::cmd("DEL")
        .arg(keys::seen(
            DeviceKind::Gate,
            &g1,
            &MessageId::new("online").expect("id"),
        ))
        .query_async(&mut con)
        .await
        .expect("DEL");
    let late = decide(
        "online",
        Some(Stamp::online(now)),
        now + u64::try_from(bound).expect("ms"),
    )
    .await;
    assert!(late.replayed, "{late:?}");
    assert!(
        matches!(&late.decision.outcome, Outcome::Granted { pass } if pass.trips_remaining == Some(9)),
        "{late:?}"
    );
    // Answer, events (their times and stream ids): as the seen record gave them.
    assert_eq!(late, again);
    // A tap as old that was never decided is stale.
    let never = decide(
        "never",
        Some(Stamp::online(now)),
        now + u64::try_from(bound).expect("ms"),
    )
    .await;
    assert_eq!(never.decision.outcome, Outcome::Stale);
    assert!(!never.replayed);
    assert_eq!(
        pass_trips(&mut con, &card).await,
        10 - 4,
        "four taps charged, no more"
    );
}

async fn pass_trips(con: &mut redis::aio::MultiplexedConnection, card: &CardId) -> u64 {
    redis::cmd("HGET")
        .arg(keys::pass(card))
        .arg("trips")
        .query_async(con)
        .await
        .expect("HGET")
}

/// A fail-open gate's offline entry names the waiting tap it replaces, and the ride is charged
/// once whichever the bridge decides first: a waiting tap granted in time whose answer came late
/// or was lost settles the entry (from its seen record, or from the card's history once that has
/// gone); an entry decided first leaves the waiting tap `stale`. An entry naming a tap of another
/// time is charged as usual.
#[tokio::test]
async fn an_offline_entry_and_the_waiting_tap_it_replaces_charge_once() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, support::store_settings())
        .await
        .expect("store");
    let card = CardId::new("TEN").expect("card");
    let mut con = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    support::put_pass(&mut con, &card, "TEN_TRIP", 10).await;
    let g1 = DeviceId::new("g1").expect("device");
    let input = Input::GateTap(card.clone());
    let decide = |id: &'static str, stamp: Stamp, replaces: Option<&'static str>, now: u64| {
        let (store, input, g1) = (store.clone(), input.clone(), g1.clone());
        async move {
            let id = MessageId::new(id).expect("id");
            let replaces = replaces.map(|r| MessageId::new(r).expect("id"));
            match store
                .decide(&Request {
                    kind: DeviceKind::Gate,
                    device: &g1,
                    id: &id,
                    input: &input,
                    now_ms: now,
                    stamp: Some(stamp),
                    replaces: replaces.as_ref(),
                })
                .await
                .expect("script")
            {
                Answer::Decided(d) => d,
                other => panic!("{other:?}"),
            }
        }
    };
    let trips_left = |d: &tapgate_bridge::store::Decided| match &d.decision.outcome {
        Outcome::Granted { pass } | Outcome::EntrySettled { pass } => pass.trips_remaining,
        _ => None,
    };
    let settled = |d: &tapgate_bridge::store::Decided| {
        matches!(d.decision.outcome, Outcome::EntrySettled { .. })
    };
    let t = now_ms();

    // Granted in time, answer lost; the gate gave up and sent its entry: settled by that charge.
    let w1 = decide("w1", Stamp::online(t), None, t + 100).await;
    assert_eq!(trips_left(&w1), Some(9), "{w1:?}");
    let e1 = decide("e1", Stamp::offline(t), Some("w1"), t + 2_000).await;
    assert!(settled(&e1) && trips_left(&e1) == Some(9), "{e1:?}");
    assert!(e1.events.is_empty(), "no second entry event: {e1:?}");
    assert_eq!(pass_trips(&mut con, &card).await, 9);
    // Its redelivery is the same answer.
    let again = decide("e1", Stamp::offline(t), Some("w1"), t + 3_000).await;
    assert!(again.replayed && trips_left(&again) == Some(9), "{again:?}");

    // The same, with the waiting tap's seen record gone: found in the card's history.
    let t2 = t + 10_000;
    let w2 = decide("w2", Stamp::online(t2), None, t2 + 100).await;
    assert_eq!(trips_left(&w2), Some(8));
    del_seen(&mut con, &g1, "w2").await;
    let e2 = decide("e2", Stamp::offline(t2), Some("w2"), t2 + 60_000).await;
    assert!(settled(&e2) && trips_left(&e2) == Some(8), "{e2:?}");
    assert_eq!(pass_trips(&mut con, &card).await, 8);

    // The entry first (the waiting tap still queued): charged, and the waiting tap, arriving
    // inside its window after all, is stale.
    let t3 = t + 20_000;
    let e3 = decide("e3", Stamp::offline(t3), Some("w3"), t3 + 1_600).await;
    assert!(settled(&e3) && trips_left(&e3) == Some(7), "{e3:?}");
    let w3 = decide("w3", Stamp::online(t3), None, t3 + 1_000).await;
    assert_eq!(w3.decision.outcome, Outcome::Stale, "{w3:?}");
    assert_eq!(pass_trips(&mut con, &card).await, 7);

    // A waiting tap that was denied or stale charged nothing: the entry is settled as usual.
    let t4 = t + 30_000;
    let w4 = decide("w4", Stamp::online(t4), None, t4 + 5_000).await;
    assert_eq!(w4.decision.outcome, Outcome::Stale);
    let e4 = decide("e4", Stamp::offline(t4), Some("w4"), t4 + 5_100).await;
    assert!(settled(&e4) && trips_left(&e4) == Some(6), "{e4:?}");

    // Naming a granted tap of another time (a second ride, or a lie) settles nothing for free:
    // with the seen record, and from the card's history.
    let t5 = t + 40_000;
    let e5 = decide("e5", Stamp::offline(t5), Some("w1"), t5).await;
    assert!(settled(&e5) && trips_left(&e5) == Some(5), "{e5:?}");
    let e6 = decide("e6", Stamp::offline(t5 + 5_000), Some("w2"), t5 + 5_000).await;
    assert!(settled(&e6) && trips_left(&e6) == Some(4), "{e6:?}");
    assert_eq!(pass_trips(&mut con, &card).await, 4, "six rides, six trips");

    // Another gate naming this gate's granted tap, same card and time: its own ride.
    let g2 = DeviceId::new("g2").expect("device");
    let (e7, w1) = (
        MessageId::new("e7").expect("id"),
        MessageId::new("w1").expect("id"),
    );
    let Answer::Decided(e7) = store
        .decide(&Request {
            kind: DeviceKind::Gate,
            device: &g2,
            id: &e7,
            input: &input,
            now_ms: t + 2_000,
            stamp: Some(Stamp::offline(t)),
            replaces: Some(&w1),
        })
        .await
        .expect("script")
    else {
        panic!("not decided");
    };
    assert!(settled(&e7) && trips_left(&e7) == Some(3), "{e7:?}");
    assert_eq!(pass_trips(&mut con, &card).await, 3, "seven rides");
}

async fn del_seen(con: &mut redis::aio::MultiplexedConnection, device: &DeviceId, id: &str) {
    let _: () = redis::cmd("DEL")
        .arg(keys::seen(
            DeviceKind::Gate,
            device,
            &MessageId::new(id).expect("id"),
        ))
        .query_async(con)
        .await
        .expect("DEL");
}
