//! The harness itself: both servers start, answer, and restart on the same port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tapgate_testkit::{Mosquitto, MqttProbe, RedisServer};

fn redis_ping(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(b"PING\r\n").expect("write");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn redis_answers_and_restarts() {
    let mut redis = RedisServer::start();
    assert_eq!(redis_ping(redis.port()), "+PONG\r\n");
    let port = redis.port();
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis_ping(port), "+PONG\r\n");
    assert!(
        redis.log().contains("Ready to accept connections"),
        "{}",
        redis.log()
    );
}

#[tokio::test]
async fn mosquitto_round_trip() {
    let broker = Mosquitto::start();
    let mut sub = MqttProbe::connect(broker.port(), "sub").await;
    sub.subscribe("t/#").await;
    let publisher = MqttProbe::connect(broker.port(), "pub").await;
    publisher.publish("t/1", r#"{"a":1}"#).await;
    let got = sub.expect_on("t/1", Duration::from_secs(5)).await;
    assert_eq!(got.json()["a"], 1);
}

#[test]
fn sentinels_promote_the_replica_when_the_primary_dies() {
    let mut group = tapgate_testkit::SentinelGroup::start();
    assert_eq!(
        group.sentinels[0].primary_port(),
        Some(group.primary.port())
    );
    assert!(group.url().starts_with("redis+sentinel://127.0.0.1:"));
    group.primary.stop();
    let promoted = group.wait_for_promotion(std::time::Duration::from_secs(30));
    assert_eq!(promoted, group.replicas[0].port());
    let role = tapgate_testkit::sentinel::redis_cli(promoted, &["ROLE"]);
    assert!(role.starts_with("master"), "{role}");
}
