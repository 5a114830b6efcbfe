//! Taps made while the broker is down are queued by the device and arrive after it returns, with
//! their original ids; the device says online/offline on its status topic, never retained.

mod support;

use std::time::Duration;

use rumqttc::MqttOptions;
use support::{DeviceStack, Rig, Stack};
use tapgate_device::prompt::{Prompt, Sound};
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_testkit::MqttProbe;

#[tokio::test]
async fn taps_queued_while_the_broker_is_down_keep_their_ids() {
    let mut stack = Stack::start(|_| {}).await;
    let topics = Topics::default();
    let g1 = DeviceId::new("g1").expect("id");
    // A watcher with a persistent session, so it keeps its subscription across the restart.
    let mut opts = MqttOptions::new("watch-taps", "127.0.0.1", stack.broker.port());
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(5));
    let mut watch = MqttProbe::connect_with(opts).await;
    watch.subscribe(&topics.tap(DeviceKind::Gate, &g1)).await;
    watch.subscribe(&topics.status(DeviceKind::Gate, &g1)).await;

    let mut cfg = stack.device_config("g1");
    cfg.decision_timeout = Duration::from_millis(300);
    let mut gate = Rig::gate(cfg).await;
    let online = watch
        .expect_on(
            &topics.status(DeviceKind::Gate, &g1),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(online.text(), "online", "{}", stack.broker.log());
    assert!(!online.retain, "status must not be retained");

    // One tap while everything is up, to learn the id scheme.
    gate.tap("FIRST1");
    let first = watch
        .expect_on(&topics.tap(DeviceKind::Gate, &g1), Duration::from_secs(5))
        .await
        .json();
    assert_eq!(gate.sounds(2).await[1], Sound::Say(Prompt::AccessDenied));
    let first_id = first["id"].as_str().expect("id").to_owned();
    // `{boot}-{counter}-{random}`: compare boot and counter, the random part differs per tap.
    let boot_and_counter = |id: &str| {
        let mut parts = id.splitn(3, '-');
        (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        )
    };
    let (boot, n) = boot_and_counter(&first_id);
    assert_eq!(n, "1");

    // Broker down: three taps, each denied as unavailable (fail-closed) but kept for sending.
    stack.broker.stop();
    for card in ["QUEUED1", "QUEUED2", "QUEUED3"] {
        gate.tap(card);
        assert_eq!(
            gate.sounds(2).await,
            vec![Sound::Buzzer, Sound::Say(Prompt::ServiceUnavailable)]
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stack.broker.restart();

    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.len() < 3 && tokio::time::Instant::now() < deadline {
        if let Some(m) = watch.recv_timeout(Duration::from_millis(200)).await {
            if m.topic == topics.tap(DeviceKind::Gate, &g1) {
                let v = m.json();
                let (b, n) = boot_and_counter(v["id"].as_str().unwrap_or(""));
                let pair = (format!("{b}-{n}"), v["card"].clone());
                if !got.contains(&pair) {
                    got.push(pair);
                }
            }
        }
    }
    let expected: Vec<(String, serde_json::Value)> = ["QUEUED1", "QUEUED2", "QUEUED3"]
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{boot}-{}", i + 2), serde_json::json!(c)))
        .collect();
    assert_eq!(got, expected, "queued taps arrive in order with their ids");

    // A clean stop says offline.
    // (An `online` from the reconnect may still be ahead of it.)
    gate.stop().await;
    let status_topic = topics.status(DeviceKind::Gate, &g1);
    let mut last = String::new();
    for _ in 0..3 {
        last = watch
            .expect_on(&status_topic, Duration::from_secs(5))
            .await
            .text();
        if last == "offline" {
            break;
        }
    }
    assert_eq!(last, "offline");
}

/// A broker may acknowledge a tap and still deliver it to nobody (mosquitto forgets shared
/// subscriptions at a restart, until the bridges subscribe again). The device publishes an
/// undecided message again, with the same id, so a bridge that subscribes late still gets it.
#[tokio::test]
async fn a_tap_that_reached_nobody_is_published_again_with_its_id() {
    use tapgate_device::link::{Link, LinkConfig, RETRY_AFTER};
    use tapgate_device::logic::{system_clock, Outbound, TapIds};
    use tapgate_runtime::mqtt::BrokerSettings;

    let broker = tapgate_testkit::Mosquitto::start();
    let topics = Topics::default();
    let g1 = DeviceId::new("g1").expect("id");
    let cfg = LinkConfig {
        broker: BrokerSettings::new(&broker.url()).expect("url"),
        topics: topics.clone(),
        kind: DeviceKind::Gate,
        device: g1.clone(),
        queue_limit: 10,
        clock: system_clock(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (link, _decisions, task) = Link::start(cfg, shutdown.clone()).expect("link");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !link
        .stats()
        .connected
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", broker.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nobody subscribes to taps yet: this one reaches nobody.
    let tap = tapgate_protocol::Tap::new(
        TapIds::new(1).next_id(),
        tapgate_protocol::CardId::new("LOST1").expect("card"),
    );
    let id = tap.id.to_string();
    link.publish(&Outbound::Tap(tap, tapgate_protocol::Stamp::online(1)));

    // A bridge subscribes late, as after a broker restart.
    let mut late = MqttProbe::connect(broker.port(), "late-bridge").await;
    let tap_topic = topics.tap(DeviceKind::Gate, &g1);
    late.subscribe(&tap_topic).await;
    let again = late
        .expect_on(&tap_topic, RETRY_AFTER + Duration::from_secs(3))
        .await
        .json();
    assert_eq!(again["id"], id.as_str(), "the same message, the same id");
    assert!(
        link.stats()
            .republished
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    shutdown.cancel();
    task.await.expect("link task");
}
