//! The decide function's upkeep, done every so often rather than on every call (`decide.lua`,
//! "Upkeep"): the event stream stays capped near `stream_maxlen`, and a card's recent list keeps
//! expiring `recent_ttl_s` after its last event (to within a sixteenth of that), renewed when it
//! is new or its renewal is due; a card with no pass, no wallet and no block only `seen_ttl_s`.
//! And what the function keeps between calls to save work, a pass's terms and product id read
//! once per distinct text, stays right once it has forgotten them.

mod support;

use tapgate_bridge::store::{Answer, Request, Store, StoreSettings};
use tapgate_protocol::rules::Input;
use tapgate_protocol::{fields, keys, CardId, DeviceId, DeviceKind, MessageId};
use tapgate_testkit::RedisServer;

const NOW: u64 = 1_700_000_000_000;

/// An unstamped gate tap decided at `now_ms`.
async fn decide_tap(
    store: &Store,
    device: &DeviceId,
    id: &str,
    card: &CardId,
    now_ms: u64,
) -> Answer {
    let id = MessageId::new(id).expect("id");
    let input = Input::GateTap(card.clone());
    store
        .decide(&Request {
            kind: DeviceKind::Gate,
            device,
            id: &id,
            input: &input,
            now_ms,
            stamp: None,
            replaces: None,
            day: None,
            catalogue: "test",
            payg: None,
            top_ups: false,
        })
        .await
        .expect("decide")
}

/// [`decide_tap`], decided (a denial without a pass: it still leaves an event).
async fn tap(store: &Store, device: &DeviceId, id: &str, card: &CardId, now_ms: u64) {
    let answer = decide_tap(store, device, id, card, now_ms).await;
    assert!(matches!(answer, Answer::Decided(_)), "{answer:?}");
}

/// A store with `settings` on a fresh Redis, and an admin connection to it.
async fn cards_store(
    settings: StoreSettings,
) -> (RedisServer, Store, redis::aio::MultiplexedConnection) {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, settings)
        .await
        .expect("store");
    let con = support::admin(&redis).await;
    (redis, store, con)
}

/// The gate and the card the recent-list tests tap.
fn gate_and_card() -> (DeviceId, CardId) {
    (
        DeviceId::new("g1").expect("device"),
        CardId::new("04AB").expect("card"),
    )
}

async fn pttl(con: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(con)
        .await
        .expect("PTTL")
}

/// Leaves `key` 50 s to live, as if it had aged.
async fn age(con: &mut redis::aio::MultiplexedConnection, key: &str) {
    let _: () = redis::cmd("PEXPIRE")
        .arg(key)
        .arg(50_000)
        .query_async(con)
        .await
        .expect("PEXPIRE");
}

#[tokio::test]
async fn the_stream_stays_near_its_cap() {
    let redis = RedisServer::start();
    let maxlen = 300;
    let store = Store::connect(
        &redis.url(),
        None,
        StoreSettings {
            stream_maxlen: maxlen,
            ..support::store_settings()
        },
    )
    .await
    .expect("store");
    let mut con = support::admin(&redis).await;
    let g1 = DeviceId::new("g1").expect("device");
    let mut longest = 0;
    for n in 0..3000 {
        let card = CardId::new(format!("C{:04}", n % 50)).expect("card");
        tap(&store, &g1, &format!("t{n}"), &card, NOW + n).await;
        let len: u64 = redis::cmd("XLEN")
            .arg(keys::EVENTS_STREAM)
            .query_async(&mut con)
            .await
            .expect("XLEN");
        longest = longest.max(len);
    }
    let len: u64 = redis::cmd("XLEN")
        .arg(keys::EVENTS_STREAM)
        .query_async(&mut con)
        .await
        .expect("XLEN");
    // Trimmed every 64 events, by whole stream nodes (100 entries by default).
    assert!(
        longest <= maxlen + 64 + 100,
        "the stream reached {longest} entries"
    );
    assert!(len >= maxlen, "trimmed below the cap: {len} entries");
}

#[tokio::test]
async fn recent_lists_are_renewed_when_due() {
    // A sixteenth of 160 s: renewed at most every 10 s.
    let (_redis, store, mut con) = cards_store(StoreSettings {
        recent_ttl_s: 160,
        ..support::store_settings()
    })
    .await;
    let (g1, card) = gate_and_card();
    let recent = keys::card_recent(&card);
    let full = 160_000;
    let fresh = |t: i64| t > full - 5_000;

    tap(&store, &g1, "t1", &card, NOW).await;
    let t = pttl(&mut con, &recent).await;
    assert!(fresh(t), "a new list: {t} ms left");

    // As if it had aged: not renewed by an event within 10 s of the last renewal...
    age(&mut con, &recent).await;
    tap(&store, &g1, "t2", &card, NOW + 9_999).await;
    let t = pttl(&mut con, &recent).await;
    assert!(t <= 50_000, "renewed early: {t} ms left");
    // ...renewed by the first one after.
    tap(&store, &g1, "t3", &card, NOW + 10_000).await;
    let t = pttl(&mut con, &recent).await;
    assert!(fresh(t), "renewed when due: {t} ms left");

    // A list that went away (deleted, or expired) is renewed by the event that starts it again,
    // however recently it was renewed before.
    let _: () = redis::cmd("DEL")
        .arg(&recent)
        .query_async(&mut con)
        .await
        .expect("DEL");
    tap(&store, &g1, "t4", &card, NOW + 10_001).await;
    let t = pttl(&mut con, &recent).await;
    assert!(fresh(t), "a list started again: {t} ms left");

    // An event from a bridge whose clock is behind the last renewal's renews it too, so a clock
    // running ahead cannot put renewals off.
    age(&mut con, &recent).await;
    tap(&store, &g1, "t5", &card, NOW + 5_000).await;
    let t = pttl(&mut con, &recent).await;
    assert!(fresh(t), "renewed from behind: {t} ms left");
}

#[tokio::test]
async fn a_card_with_nothing_keeps_its_history_only_while_a_redelivery_may_come() {
    // Records kept 60 s, history 160 s: a card with nothing keeps its history 60 s.
    let (_redis, store, mut con) = cards_store(StoreSettings {
        seen_ttl_s: 60,
        recent_ttl_s: 160,
        ..support::store_settings()
    })
    .await;
    let (g1, card) = gate_and_card();
    let recent = keys::card_recent(&card);
    let short = |t: i64| t > 55_000 && t <= 60_000;
    let full = |t: i64| t > 155_000;

    tap(&store, &g1, "t1", &card, NOW).await;
    let t = pttl(&mut con, &recent).await;
    assert!(short(t), "no pass, no block: {t} ms left");
    // Renewed to that lifetime when due (a sixteenth of it, 3.75 s), no longer.
    tap(&store, &g1, "t2", &card, NOW + 4_000).await;
    let t = pttl(&mut con, &recent).await;
    assert!(short(t), "renewed: {t} ms left");

    // Once it has a pass, the first event gives it the full lifetime, however recent the last
    // renewal...
    support::put_pass(&mut con, &card, "SINGLE_USE", 0).await;
    tap(&store, &g1, "t3", &card, NOW + 4_001).await;
    let t = pttl(&mut con, &recent).await;
    assert!(full(t), "with a pass: {t} ms left");
    // ...and an event once the pass is used up never shortens it.
    tap(&store, &g1, "t4", &card, NOW + 30_000).await;
    let t = pttl(&mut con, &recent).await;
    assert!(full(t), "pass used up: {t} ms left");

    // A blocked card keeps it too.
    let blocked = CardId::new("05CD").expect("card");
    let _: () = redis::cmd("HSET")
        .arg(keys::blocked(&blocked))
        .arg("reason")
        .arg("lost")
        .query_async(&mut con)
        .await
        .expect("HSET");
    tap(&store, &g1, "t5", &blocked, NOW + 30_000).await;
    let t = pttl(&mut con, &keys::card_recent(&blocked)).await;
    assert!(full(t), "blocked: {t} ms left");
}

/// A gate tap on `card` at `NOW`: its outcome's name, and the pass's stored expiry after it.
async fn entry(
    store: &Store,
    con: &mut redis::aio::MultiplexedConnection,
    device: &DeviceId,
    n: usize,
    card: &CardId,
) -> (String, Option<u64>) {
    let answer = decide_tap(store, device, &format!("g1-{n}"), card, NOW).await;
    let Answer::Decided(d) = answer else {
        panic!("decided: {answer:?}");
    };
    let expires: Option<u64> = redis::cmd("HGET")
        .arg(keys::pass(card))
        .arg(fields::pass::EXPIRES_AT)
        .query_async(con)
        .await
        .expect("HGET");
    (d.decision.outcome.name().to_owned(), expires)
}

/// The decide function reads a pass's `terms` and product id once per distinct text and keeps
/// at most a thousand of each (then forgets them all): past that, every pass still gets its own
/// period, and an unreadable one is still refused, before and after the forgetting.
#[tokio::test]
async fn pass_terms_are_read_right_past_what_the_function_keeps() {
    let (_redis, store, mut con) = cards_store(support::store_settings()).await;
    let g1 = DeviceId::new("g1").expect("device");
    let passes = 2_500;
    let period = |i: usize| 60_000 + 1_000 * i as u64;
    let card = |i: usize| CardId::new(format!("C{i:04X}")).expect("card");
    // Every pass is a product of its own, and every 500th one's terms are unreadable.
    let terms = |i: usize| {
        if i % 500 == 250 {
            "period 0 soon 100 EUR v1".to_owned()
        } else {
            format!("period 0 {} 100 EUR v1", period(i))
        }
    };
    let mut pipe = redis::pipe();
    for i in 0..passes {
        pipe.cmd("HSET")
            .arg(keys::pass(&card(i)))
            .arg(fields::pass::TYPE)
            .arg(format!("P{i}"))
            .arg(fields::pass::TERMS)
            .arg(terms(i))
            .arg(fields::pass::TRIPS)
            .arg("0")
            .arg(fields::pass::ISSUED_AT)
            .arg("0")
            .ignore();
    }
    let _: () = pipe.query_async(&mut con).await.expect("passes");
    for i in 0..passes {
        let (outcome, expires) = entry(&store, &mut con, &g1, i, &card(i)).await;
        if i % 500 == 250 {
            assert_eq!((outcome.as_str(), expires), ("denied", None), "pass {i}");
        } else {
            assert_eq!(
                (outcome.as_str(), expires),
                ("granted", Some(NOW + period(i))),
                "pass {i}"
            );
        }
    }
}
