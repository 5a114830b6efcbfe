//! A primary that refuses writes for want of replicas (`min-replicas-to-write`) is a passing
//! condition: the decision is not written, and the bridge retries it rather than answering
//! `internal_error`.

mod support;

use tapgate_bridge::store::{Message, Request, Store};
use tapgate_protocol::rules::Input;
use tapgate_protocol::{CardId, Catalogue, DeviceId, DeviceKind, MessageId};
use tapgate_testkit::RedisServer;

#[tokio::test]
async fn a_primary_short_of_replicas_refuses_and_the_bridge_retries() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, support::store_settings())
        .await
        .expect("store");
    // The replicas went away after the bridge started.
    let mut con = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-replicas-to-write")
        .arg("1")
        .query_async(&mut con)
        .await
        .expect("CONFIG SET");
    let fares = Catalogue::builtin(7_200_000);
    let (device, id) = (
        DeviceId::new("g1").expect("device"),
        MessageId::new("m1").expect("id"),
    );
    let input = Input::GateTap(CardId::new("04AB").expect("card"));
    let req = Request::new(
        Message {
            kind: DeviceKind::Gate,
            device: &device,
            id: &id,
            input: &input,
            stamp: None,
            replaces: None,
        },
        1_700_000_000_000,
        &fares,
    );
    let err = store
        .decide(&req)
        .await
        .expect_err("no replica: the write is refused");
    assert!(err.to_string().contains("NOREPLICAS"), "{err}");
    assert!(err.is_transient(), "{err}");
}
