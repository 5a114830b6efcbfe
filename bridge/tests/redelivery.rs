//! Redeliveries, late answers and offline entries at the decide function itself, with the
//! bridge's clock given: how long a message's seen record lives, what a redelivery is answered
//! once it has gone, and an offline entry or a retap charged once with the waiting tap it
//! replaces.

mod support;

use redis::aio::MultiplexedConnection;
use tapgate_bridge::store::{Answer, Decided, Request, Store};
use tapgate_protocol::rules::{Input, TimeSettings};
use tapgate_protocol::{keys, CardId, DenyReason, DeviceId, DeviceKind, MessageId, Outcome, Stamp};
use tapgate_runtime::clock::now_ms;
use tapgate_testkit::RedisServer;

const HOUR: u64 = 3_600_000;

/// A Redis with the function library and one card holding a pass.
struct Script {
    _redis: RedisServer,
    store: Store,
    con: MultiplexedConnection,
    card: CardId,
}

impl Script {
    async fn start(card: &str, pass_type: &str, trips: u32) -> Self {
        let redis = RedisServer::start();
        let store = Store::connect(&redis.url(), None, support::store_settings())
            .await
            .expect("store");
        let mut con = redis::Client::open(redis.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        let card = CardId::new(card).expect("card");
        support::put_pass(&mut con, &card, pass_type, trips).await;
        Self {
            _redis: redis,
            store,
            con,
            card,
        }
    }

    /// Decides `input` sent by `device` (of `kind`) as message `id`.
    async fn decide(
        &self,
        kind: DeviceKind,
        device: &str,
        id: &str,
        input: &Input,
        at: At,
    ) -> Decided {
        let device = DeviceId::new(device).expect("device");
        let id = MessageId::new(id).expect("id");
        let replaces = at.replaces.map(|r| MessageId::new(r).expect("id"));
        match self
            .store
            .decide(&Request {
                kind,
                device: &device,
                id: &id,
                input,
                now_ms: at.now,
                stamp: at.stamp,
                replaces: replaces.as_ref(),
                day: None,
                catalogue: "test",
                payg: None,
                top_ups: false,
            })
            .await
            .expect("script")
        {
            Answer::Decided(d) => *d,
            other => panic!("{other:?}"),
        }
    }

    /// Decides a tap of the card at gate `device`.
    async fn gate(&self, device: &str, id: &str, at: At) -> Decided {
        let input = Input::GateTap(self.card.clone());
        self.decide(DeviceKind::Gate, device, id, &input, at).await
    }

    /// Trips left on the card's ten-trip pass.
    async fn trips(&mut self) -> u64 {
        redis::cmd("HGET")
            .arg(keys::pass(&self.card))
            .arg("trips")
            .query_async(&mut self.con)
            .await
            .expect("HGET")
    }

    /// How long the seen record of `id` from `device` lives on, ms.
    async fn seen_ttl(&mut self, kind: DeviceKind, device: &str, id: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(seen_key(kind, device, id))
            .query_async(&mut self.con)
            .await
            .expect("PTTL")
    }

    /// Drops the seen record of gate `device`'s message `id`, as its expiry would.
    async fn forget(&mut self, device: &str, id: &str) {
        let _: () = redis::cmd("DEL")
            .arg(seen_key(DeviceKind::Gate, device, id))
            .query_async(&mut self.con)
            .await
            .expect("DEL");
    }
}

fn seen_key(kind: DeviceKind, device: &str, id: &str) -> String {
    keys::seen(
        kind,
        &DeviceId::new(device).expect("device"),
        &MessageId::new(id).expect("id"),
    )
}

/// When a message is decided, with what stamp, replacing which waiting tap.
#[derive(Clone, Copy)]
struct At {
    now: u64,
    stamp: Option<Stamp>,
    replaces: Option<&'static str>,
}

impl At {
    fn new(now: u64, stamp: Option<Stamp>) -> Self {
        Self {
            now,
            stamp,
            replaces: None,
        }
    }

    /// An offline entry stamped `time`, decided at `now`, naming waiting tap `waiting`.
    fn entry(time: u64, waiting: &'static str, now: u64) -> Self {
        Self {
            now,
            stamp: Some(Stamp::offline(time)),
            replaces: Some(waiting),
        }
    }

    /// A retap at `time` (a waiting tap), decided at `now`, naming waiting tap `waiting`.
    fn retap(time: u64, waiting: &'static str, now: u64) -> Self {
        Self {
            now,
            stamp: Some(Stamp::online(time)),
            replaces: Some(waiting),
        }
    }
}

fn trips_left(d: &Decided) -> Option<u32> {
    match &d.decision.outcome {
        Outcome::Granted { pass } | Outcome::EntrySettled { pass } => pass.trips_remaining,
        _ => None,
    }
}

fn settled(d: &Decided) -> bool {
    matches!(d.decision.outcome, Outcome::EntrySettled { .. })
}

/// First used offline at 08:00, settled at 08:30, the pass expires at 10:00 — an entry at
/// 09:59:59.999 is paid, one at 10:00 is not.
#[tokio::test]
async fn offline_two_hour_entry_at_eight_settled_at_half_past_expires_at_ten() {
    let s = Script::start("TWO", "TWO_HOUR", 0).await;
    // 2026-12-01 08:00 UTC.
    let eight = 1_796_112_000_000;
    let ten = eight + 2 * HOUR;
    let offline = |at: u64, now: u64| At::new(now, Some(Stamp::offline(at)));
    match s
        .gate("g1", "g1-1", offline(eight, eight + HOUR / 2))
        .await
        .decision
        .outcome
    {
        Outcome::EntrySettled { pass } => assert_eq!(pass.expires_at, Some(ten)),
        other => panic!("{other:?}"),
    }
    let paid = s.gate("g1", "g1-2", offline(ten - 1, ten + HOUR)).await;
    assert!(settled(&paid), "{paid:?}");
    assert_eq!(
        s.gate("g1", "g1-3", offline(ten, ten + HOUR))
            .await
            .decision
            .outcome,
        Outcome::UnpaidEntry {
            reason: DenyReason::Expired
        }
    );
}

/// A waiting tap's seen record lives only until a redelivery would be `stale` anyway (a
/// terminal's the sale timeout longer: it may have started a sale, which no event records); an
/// offline entry's and an unstamped tap's for the configured lifetime. A redelivery after the
/// record has gone charges nothing: it is answered with the decision the card's history shows
/// (its first answer may never have reached the device), or `stale` if it was never decided.
#[tokio::test]
async fn seen_records_live_as_long_as_a_redelivery_can_be_decided() {
    let mut s = Script::start("TEN", "TEN_TRIP", 10).await;
    let time = TimeSettings::default();
    let now = now_ms();
    let online = |t: u64, now: u64| At::new(now, Some(Stamp::online(t)));
    let bound = i64::try_from(time.decision_window_ms + time.max_future_ms).expect("ms");
    let gate = DeviceKind::Gate;

    s.gate("g1", "online", online(now, now)).await;
    let ttl = s.seen_ttl(gate, "g1", "online").await;
    assert!(ttl > 0 && ttl <= bound, "online tap kept {ttl} ms");
    // A stamp ahead of the bridge's clock is kept that much longer.
    s.gate("g1", "ahead", online(now + 2000, now)).await;
    let ttl = s.seen_ttl(gate, "g1", "ahead").await;
    assert!(
        ttl > bound && ttl <= bound + 2000,
        "tap 2 s ahead kept {ttl} ms"
    );
    s.gate(
        "g1",
        "offline",
        At::new(now, Some(Stamp::offline(now - 1000))),
    )
    .await;
    assert!(s.seen_ttl(gate, "g1", "offline").await > 3_000_000);
    s.gate("g1", "unstamped", At::new(now, None)).await;
    assert!(s.seen_ttl(gate, "g1", "unstamped").await > 3_000_000);
    // A terminal's tap starts a sale: its record outlives the sale.
    let new_card = Input::TerminalTap(CardId::new("NEW").expect("card"));
    let started = s
        .decide(
            DeviceKind::Terminal,
            "t1",
            "sale",
            &new_card,
            online(now, now),
        )
        .await;
    assert!(matches!(
        started.decision.outcome,
        Outcome::SelectPass { .. }
    ));
    let sale_ms = i64::try_from(support::store_settings().sale_timeout_ms).expect("ms");
    let ttl = s.seen_ttl(DeviceKind::Terminal, "t1", "sale").await;
    assert!(
        ttl > bound + sale_ms - 1_000 && ttl <= bound + sale_ms,
        "terminal tap kept {ttl} ms"
    );

    // Within the record's life a redelivery is replayed from it; once it has gone, from the
    // card's history: the same answer, nothing charged.
    let again = s.gate("g1", "online", online(now, now + 10)).await;
    assert!(again.replayed);
    s.forget("g1", "online").await;
    let late_now = now + u64::try_from(bound).expect("ms");
    let late = s.gate("g1", "online", online(now, late_now)).await;
    assert!(late.replayed, "{late:?}");
    assert_eq!(trips_left(&late), Some(9), "{late:?}");
    // Answer, events (their times and stream ids): as the seen record gave them.
    assert_eq!(late, again);
    // A tap as old that was never decided is stale.
    let never = s.gate("g1", "never", online(now, late_now)).await;
    assert_eq!(never.decision.outcome, Outcome::Stale);
    assert!(!never.replayed);
    assert_eq!(s.trips().await, 10 - 4, "four taps charged, no more");
}

/// A fail-open gate's offline entry names the waiting tap it replaces, and the ride is charged
/// once whichever the bridge decides first: a waiting tap granted in time whose answer came late
/// or was lost settles the entry (from its seen record, or from the card's history once that has
/// gone); an entry decided first leaves the waiting tap `stale`. An entry naming a tap of another
/// time, or another gate's tap, is charged as usual.
#[tokio::test]
async fn an_offline_entry_and_the_waiting_tap_it_replaces_charge_once() {
    let mut s = Script::start("TEN", "TEN_TRIP", 10).await;
    let online = |t: u64, now: u64| At::new(now, Some(Stamp::online(t)));
    let t = now_ms();

    // Granted in time, answer lost; the gate gave up and sent its entry: settled by that charge.
    let w1 = s.gate("g1", "w1", online(t, t + 100)).await;
    assert_eq!(trips_left(&w1), Some(9), "{w1:?}");
    let e1 = s.gate("g1", "e1", At::entry(t, "w1", t + 2_000)).await;
    assert!(settled(&e1) && trips_left(&e1) == Some(9), "{e1:?}");
    assert!(e1.events.is_empty(), "no second entry event: {e1:?}");
    assert_eq!(s.trips().await, 9);
    // Its redelivery is the same answer.
    let again = s.gate("g1", "e1", At::entry(t, "w1", t + 3_000)).await;
    assert!(again.replayed && trips_left(&again) == Some(9), "{again:?}");

    // The same, with the waiting tap's seen record gone: found in the card's history.
    let t2 = t + 10_000;
    let w2 = s.gate("g1", "w2", online(t2, t2 + 100)).await;
    assert_eq!(trips_left(&w2), Some(8));
    s.forget("g1", "w2").await;
    let e2 = s.gate("g1", "e2", At::entry(t2, "w2", t2 + 60_000)).await;
    assert!(settled(&e2) && trips_left(&e2) == Some(8), "{e2:?}");
    assert_eq!(s.trips().await, 8);

    // The entry first (the waiting tap still queued): charged, and the waiting tap, arriving
    // inside its window after all, is stale.
    let t3 = t + 20_000;
    let e3 = s.gate("g1", "e3", At::entry(t3, "w3", t3 + 1_600)).await;
    assert!(settled(&e3) && trips_left(&e3) == Some(7), "{e3:?}");
    let w3 = s.gate("g1", "w3", online(t3, t3 + 1_000)).await;
    assert_eq!(w3.decision.outcome, Outcome::Stale, "{w3:?}");
    assert_eq!(s.trips().await, 7);

    // A waiting tap that was stale charged nothing: the entry is settled as usual.
    let t4 = t + 30_000;
    let w4 = s.gate("g1", "w4", online(t4, t4 + 5_000)).await;
    assert_eq!(w4.decision.outcome, Outcome::Stale);
    let e4 = s.gate("g1", "e4", At::entry(t4, "w4", t4 + 5_100)).await;
    assert!(settled(&e4) && trips_left(&e4) == Some(6), "{e4:?}");

    // Naming a granted tap of another time (a second ride, or a lie) settles nothing for free:
    // with the seen record, and from the card's history.
    let t5 = t + 40_000;
    let e5 = s.gate("g1", "e5", At::entry(t5, "w1", t5)).await;
    assert!(settled(&e5) && trips_left(&e5) == Some(5), "{e5:?}");
    let e6 = s
        .gate("g1", "e6", At::entry(t5 + 5_000, "w2", t5 + 5_000))
        .await;
    assert!(settled(&e6) && trips_left(&e6) == Some(4), "{e6:?}");
    // Another gate naming this gate's granted tap, same card and time: its own ride.
    let e7 = s.gate("g2", "e7", At::entry(t, "w1", t + 2_000)).await;
    assert!(settled(&e7) && trips_left(&e7) == Some(3), "{e7:?}");
    assert_eq!(s.trips().await, 3, "seven rides, seven trips");
}

/// A fail-closed gate turned the rider away when a tap's answer did not come; the card's next
/// tap there names it. Charged once: a retap after a granted tap is granted on that charge.
#[tokio::test]
async fn a_retap_and_the_waiting_tap_it_follows_charge_once() {
    let mut s = Script::start("TEN", "TEN_TRIP", 10).await;
    let online = |t: u64, now: u64| At::new(now, Some(Stamp::online(t)));
    let granted_on_it = |d: &Decided, trips: u32| {
        matches!(d.decision.outcome, Outcome::Granted { .. })
            && trips_left(d) == Some(trips)
            && d.events.is_empty()
    };
    let t = now_ms();

    // Granted in time, answer lost; the rider taps again 5 s later: granted, no second charge.
    let w1 = s.gate("g1", "w1", online(t, t + 100)).await;
    assert_eq!(trips_left(&w1), Some(9), "{w1:?}");
    let r1 = s
        .gate("g1", "r1", At::retap(t + 5_000, "w1", t + 5_050))
        .await;
    assert!(granted_on_it(&r1, 9), "{r1:?}");
    assert_eq!(s.trips().await, 9);
    let again = s
        .gate("g1", "r1", At::retap(t + 5_000, "w1", t + 5_500))
        .await;
    assert!(again.replayed && granted_on_it(&again, 9), "{again:?}");
    // Its answer lost too: the next retap, 40 s later, names it and is granted on it as well.
    let r1b = s
        .gate("g1", "r1b", At::retap(t + 45_000, "r1", t + 45_050))
        .await;
    assert!(granted_on_it(&r1b, 9), "{r1b:?}");

    // The waiting tap's seen record gone: found in the card's history.
    let t2 = t + 100_000;
    let w2 = s.gate("g1", "w2", online(t2, t2 + 100)).await;
    assert_eq!(trips_left(&w2), Some(8));
    s.forget("g1", "w2").await;
    let r2 = s
        .gate("g1", "r2", At::retap(t2 + 20_000, "w2", t2 + 20_050))
        .await;
    assert!(granted_on_it(&r2, 8), "{r2:?}");
    assert_eq!(s.trips().await, 8);

    // The retap first (the waiting tap still queued somewhere): charged, and the waiting tap,
    // arriving inside its window after all, is stale.
    let t3 = t + 200_000;
    let r3 = s
        .gate("g1", "r3", At::retap(t3 + 3_000, "w3", t3 + 3_050))
        .await;
    assert_eq!(trips_left(&r3), Some(7), "{r3:?}");
    assert_eq!(r3.events.len(), 1, "charged: {r3:?}");
    let w3 = s.gate("g1", "w3", online(t3 + 3_000, t3 + 3_100)).await;
    assert_eq!(w3.decision.outcome, Outcome::Stale, "{w3:?}");
    assert_eq!(s.trips().await, 7);

    // A waiting tap that was denied or stale charged nothing: the retap is decided as usual.
    let t4 = t + 300_000;
    let w4 = s.gate("g1", "w4", online(t4, t4 + 5_000)).await;
    assert_eq!(w4.decision.outcome, Outcome::Stale);
    let r4 = s
        .gate("g1", "r4", At::retap(t4 + 6_000, "w4", t4 + 6_050))
        .await;
    assert_eq!(trips_left(&r4), Some(6), "{r4:?}");

    // Naming a granted tap from over a minute before (a second ride, or a lie) is a ride of its
    // own: with the seen record, and from the card's history.
    let t5 = t + 400_000;
    let w5 = s.gate("g1", "w5", online(t5, t5 + 100)).await;
    assert_eq!(trips_left(&w5), Some(5));
    let r5 = s
        .gate("g1", "r5", At::retap(t5 + 60_001, "w5", t5 + 60_050))
        .await;
    assert_eq!(trips_left(&r5), Some(4), "{r5:?}");
    let r6 = s
        .gate("g1", "r6", At::retap(t5 + 90_000, "w1", t5 + 90_050))
        .await;
    assert_eq!(trips_left(&r6), Some(3), "{r6:?}");
    // Another gate naming this gate's granted tap: its own ride.
    let w7 = s.gate("g1", "w7", online(t5 + 100_000, t5 + 100_100)).await;
    assert_eq!(trips_left(&w7), Some(2));
    let r7 = s
        .gate("g2", "r7", At::retap(t5 + 102_000, "w7", t5 + 102_050))
        .await;
    assert_eq!(trips_left(&r7), Some(1), "{r7:?}");
    assert_eq!(s.trips().await, 1, "nine rides, nine trips");

    // Another card at the same gate naming a granted tap (a card passed back): its own ride.
    let other = CardId::new("OTHER").expect("card");
    support::put_pass(&mut s.con, &other, "TEN_TRIP", 10).await;
    let t8 = t5 + 110_000;
    let w8 = s.gate("g1", "w8", online(t8, t8 + 100)).await;
    assert_eq!(trips_left(&w8), Some(0));
    let input = Input::GateTap(other.clone());
    let r8 = s
        .decide(
            DeviceKind::Gate,
            "g1",
            "r8",
            &input,
            At::retap(t8 + 3_000, "w8", t8 + 3_050),
        )
        .await;
    assert_eq!(trips_left(&r8), Some(9), "{r8:?}");
    assert_eq!(r8.events.len(), 1, "charged: {r8:?}");
}

/// Five offline entries and five retaps all naming one granted tap: the first rides on its
/// charge, every other is a ride of its own; the first, sent again after its record has gone,
/// is still settled on it.
#[tokio::test]
async fn a_granted_tap_pays_for_one_replacement() {
    let mut s = Script::start("TEN", "TEN_TRIP", 10).await;
    let t = now_ms();
    let w = s
        .gate("g1", "w", At::new(t + 100, Some(Stamp::online(t))))
        .await;
    assert_eq!(trips_left(&w), Some(9), "{w:?}");
    let first = s.gate("g1", "e0", At::entry(t, "w", t + 3_000)).await;
    assert!(settled(&first) && first.events.is_empty(), "{first:?}");
    assert_eq!(
        s.trips().await,
        9,
        "the first replacement rides on the tap's charge"
    );
    const ENTRIES: [&str; 4] = ["e1", "e2", "e3", "e4"];
    const RETAPS: [&str; 5] = ["r1", "r2", "r3", "r4", "r5"];
    for (i, id) in ENTRIES.iter().enumerate() {
        let d = s.gate("g1", id, At::entry(t, "w", t + 4_000)).await;
        assert_eq!(d.events.len(), 1, "charged: {d:?}");
        assert_eq!(trips_left(&d), Some(8 - i as u32), "{d:?}");
    }
    for (i, id) in RETAPS.iter().enumerate() {
        let at = t + 10_000 + i as u64 * 1_000;
        let d = s.gate("g1", id, At::retap(at, "w", at + 50)).await;
        assert_eq!(d.events.len(), 1, "charged: {d:?}");
        assert_eq!(trips_left(&d), Some(4 - i as u32), "{d:?}");
    }
    let left: bool = redis::cmd("EXISTS")
        .arg(keys::pass(&s.card))
        .query_async(&mut s.con)
        .await
        .expect("EXISTS");
    assert!(!left, "ten rides, ten trips: the pass is used up");
    // The first entry again, its seen record gone: settled on the tap's charge as before.
    s.forget("g1", "e0").await;
    let again = s.gate("g1", "e0", At::entry(t, "w", t + 30_000)).await;
    assert!(settled(&again) && again.events.is_empty(), "{again:?}");
}
