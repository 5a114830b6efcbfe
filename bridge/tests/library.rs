//! The function library: a Redis that lost it (restarted without persistence, `FUNCTION FLUSH`)
//! gets it back on the next call of each function, and a redelivery decided before the library
//! (a seen record holding the older JSON result) still gets its stored answer.

mod support;

use tapgate_bridge::store::{Answer, Request, Store};
use tapgate_protocol::rules::Input;
use tapgate_protocol::{
    keys, CardId, DeviceId, DeviceKind, Event, EventKind, MessageId, Outcome, ProductId,
};
use tapgate_testkit::RedisServer;

const NOW: u64 = 1_700_000_000_000;

async fn flush_functions(con: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(con)
        .await
        .expect("FUNCTION FLUSH");
}

async fn gate_tap(store: &Store, device: &DeviceId, id: &str, card: &CardId) -> Answer {
    let id = MessageId::new(id).expect("id");
    let input = Input::GateTap(card.clone());
    store
        .decide(&Request {
            kind: DeviceKind::Gate,
            device,
            id: &id,
            input: &input,
            now_ms: NOW,
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

#[tokio::test]
async fn functions_lost_by_redis_are_loaded_again() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, support::store_settings())
        .await
        .expect("store");
    let mut con = support::admin(&redis).await;
    let g1 = DeviceId::new("g1").expect("device");
    let card = CardId::new("04AB").expect("card");

    flush_functions(&mut con).await;
    let Answer::Decided(d) = gate_tap(&store, &g1, "g1-1", &card).await else {
        panic!("decided");
    };
    assert!(matches!(d.decision.outcome, Outcome::Denied { .. }));

    flush_functions(&mut con).await;
    let mut rejected = Event::new(EventKind::Rejected, NOW);
    rejected.device = Some(g1.clone());
    rejected.detail = Some("bad\tinput".into());
    let e = store
        .reject(rejected, "malformed_json")
        .await
        .expect("reject");
    assert!(e.seq.is_some());

    flush_functions(&mut con).await;
    let notice = store
        .clock(DeviceKind::Gate, &g1, NOW + 600_000, NOW)
        .await
        .expect("clock")
        .expect("a flag");
    assert_eq!(notice.skew_ms, Some(600_000));
    assert_eq!(notice.reason.as_deref(), Some("clock_off"));

    let len: u64 = redis::cmd("XLEN")
        .arg(keys::EVENTS_STREAM)
        .query_async(&mut con)
        .await
        .expect("XLEN");
    assert_eq!(len, 3, "each call ran once");
}

#[tokio::test]
async fn a_result_stored_as_json_is_replayed() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, support::store_settings())
        .await
        .expect("store");
    let mut con = support::admin(&redis).await;
    let g1 = DeviceId::new("g1").expect("device");
    let card = CardId::new("04AB").expect("card");
    let id = MessageId::new("g1-9").expect("id");
    let stored = concat!(
        "gate:04AB:\n",
        r#"{"decision":{"outcome":"granted","pass":{"type":"TEN_TRIP","trips_remaining":4},"id":"g1-9"},"#,
        r#""events":[{"seq":"5-0","event":{"event":"pass-used","time":5,"device":"g1","#,
        r#""device_kind":"gate","id":"g1-9","card":"04AB","pass":{"type":"TEN_TRIP","trips_remaining":4}}}]}"#
    );
    let _: () = redis::cmd("SET")
        .arg(keys::seen(DeviceKind::Gate, &g1, &id))
        .arg(stored)
        .query_async(&mut con)
        .await
        .expect("SET");
    let Answer::Decided(d) = gate_tap(&store, &g1, "g1-9", &card).await else {
        panic!("decided");
    };
    assert!(d.replayed);
    let Outcome::Granted { pass } = &d.decision.outcome else {
        panic!("granted: {:?}", d.decision);
    };
    assert_eq!(pass.pass_type, ProductId::TEN_TRIP);
    assert_eq!(pass.trips_remaining, Some(4));
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].seq.as_deref(), Some("5-0"));
    // The same id with other content is still refused.
    let other = CardId::new("04AC").expect("card");
    assert_eq!(
        gate_tap(&store, &g1, "g1-9", &other).await,
        Answer::IdReused
    );
}
