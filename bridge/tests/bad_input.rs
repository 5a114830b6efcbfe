//! Every class of bad input is refused with a specific reason, recorded, and changes nothing.

mod support;

use std::time::Duration;

use support::{MessageTopic, Stack};
use tapgate_protocol::{keys, DeviceKind};
use tapgate_testkit::MqttProbe;

/// Sends `payload` on the terminal's tap or button topic and returns the decision.
async fn refused(
    t: &mut support::Device,
    which: MessageTopic,
    payload: &[u8],
    id: Option<&str>,
) -> serde_json::Value {
    t.send(which, payload.to_vec()).await;
    let d = t.decision_for(id).await;
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert!(d["detail"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
    d
}

#[tokio::test]
async fn each_bad_payload_is_refused_with_its_reason_and_touches_nothing() {
    let stack = Stack::start(|_| {}).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    // A sale in progress must survive all the garbage below.
    assert_eq!(t.tap("4242").await["outcome"], "select_pass");

    let big = format!(r#"{{"id":"big","card":"{}"}}"#, "1".repeat(2000));
    let cases: Vec<(MessageTopic, Vec<u8>, Option<&str>, &str)> = vec![
        (
            MessageTopic::Tap,
            b"{not json".to_vec(),
            None,
            "malformed_json",
        ),
        (MessageTopic::Tap, b"".to_vec(), None, "malformed_json"),
        (MessageTopic::Tap, vec![0xff, 0xfe, 0x00], None, "not_utf8"),
        (
            MessageTopic::Tap,
            big.into_bytes(),
            None,
            "payload_too_large",
        ),
        (
            MessageTopic::Tap,
            b"[1,2,3]".to_vec(),
            None,
            "not_an_object",
        ),
        (
            MessageTopic::Tap,
            br#"{"card":"1"}"#.to_vec(),
            None,
            "missing_field",
        ),
        (
            MessageTopic::Tap,
            br#"{"id":"b1"}"#.to_vec(),
            Some("b1"),
            "missing_field",
        ),
        (
            MessageTopic::Tap,
            br#"{"id":7,"card":"1"}"#.to_vec(),
            None,
            "wrong_type",
        ),
        (
            MessageTopic::Tap,
            br#"{"id":"b2","card":12}"#.to_vec(),
            Some("b2"),
            "wrong_type",
        ),
        (
            MessageTopic::Tap,
            br#"{"id":"b 3","card":"1"}"#.to_vec(),
            None,
            "invalid_id",
        ),
        (
            MessageTopic::Tap,
            br#"{"id":"b4","card":"<script>"}"#.to_vec(),
            Some("b4"),
            "invalid_card",
        ),
        (
            MessageTopic::Tap,
            br#"{"id":"b5","card":"4242","device":"g9"}"#.to_vec(),
            Some("b5"),
            "unknown_field",
        ),
        (
            MessageTopic::Button,
            br#"{"id":"b6","pass":"MONTHLY"}"#.to_vec(),
            Some("b6"),
            "unknown_pass_type",
        ),
        (
            MessageTopic::Button,
            br#"{"id":"b7","pass":"single_use"}"#.to_vec(),
            Some("b7"),
            "unknown_pass_type",
        ),
        (
            MessageTopic::Button,
            br#"{"id":"b8","card":"4242"}"#.to_vec(),
            Some("b8"),
            "unknown_field",
        ),
        // Only a gate's stamped tap may name a waiting tap it replaces (this is a terminal).
        (
            MessageTopic::Tap,
            br#"{"id":"b9","card":"4242","time":1,"mode":"online","replaces":"b1"}"#.to_vec(),
            Some("b9"),
            "unknown_field",
        ),
        (
            MessageTopic::Tap,
            br#"{"id":"b10","card":"4242","replaces":"b1"}"#.to_vec(),
            Some("b10"),
            "unknown_field",
        ),
    ];
    for (which, payload, id, reason) in &cases {
        let d = refused(&mut t, *which, payload, *id).await;
        assert_eq!(
            d["reason"],
            *reason,
            "payload {:?}: {d}",
            String::from_utf8_lossy(payload)
        );
    }
    for (reason, n) in [
        ("malformed_json", 2),
        ("unknown_field", 4),
        ("unknown_pass_type", 2),
        ("missing_field", 2),
    ] {
        assert_eq!(
            stack.counter(keys::COUNTERS_REJECTED, reason).await,
            n,
            "{reason}"
        );
    }
    assert_eq!(
        stack
            .counter("tapgate:counters:device:t1", "rejected")
            .await,
        cases.len() as i64
    );
    // Nothing was sold, and the sale in progress is intact.
    assert_eq!(stack.counter(keys::COUNTERS_ISSUED, "SINGLE_USE").await, 0);
    assert_eq!(t.button("SINGLE_USE").await["outcome"], "tap_to_confirm");
    assert_eq!(t.tap("4242").await["outcome"], "pass_issued");
}

#[tokio::test]
async fn spoofed_and_foreign_topics_are_refused() {
    let stack = Stack::start(|_| {}).await;
    let mut events = MqttProbe::connect(stack.broker.port(), "ev").await;
    events.subscribe("tapgate/events/rejected").await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    let rogue = MqttProbe::connect(stack.broker.port(), "rogue").await;

    // A gate has no buttons: refused and answered on the gate's decision topic.
    rogue
        .publish(
            "tapgate/gate/g1/button",
            r#"{"id":"x1","pass":"SINGLE_USE"}"#,
        )
        .await;
    let d = g.decision_for(None).await;
    assert_eq!(d["reason"], "unsupported_message", "{d}");
    let e = events
        .expect_on("tapgate/events/rejected", support::WAIT)
        .await
        .json();
    assert_eq!(e["reason"], "unsupported_message");
    assert_eq!(e["device"], "g1");

    // Unknown kind and invalid device: no device to answer, but counted and logged as events.
    rogue
        .publish("tapgate/bus/b1/tap", r#"{"id":"x","card":"1"}"#)
        .await;
    rogue
        .publish("tapgate/gate/g%1/tap", r#"{"id":"x","card":"1"}"#)
        .await;
    for _ in 0..2 {
        let e = events
            .expect_on("tapgate/events/rejected", support::WAIT)
            .await
            .json();
        assert_eq!(e["reason"], "bad_topic", "{e}");
        assert!(e.get("device").is_none());
    }
    assert_eq!(stack.counter(keys::COUNTERS_REJECTED, "bad_topic").await, 2);

    // A retained tap would fire again for every new subscriber: refused.
    rogue
        .publish_retained("tapgate/gate/g1/tap", r#"{"id":"r1","card":"1"}"#)
        .await;
    // (Delivered live without the retain flag to the running bridge, so it is decided; the
    // refusal applies to the copy a restarted bridge would get on subscribing.)
    let d = g.decision_for(Some("r1")).await;
    assert_eq!(d["outcome"], "denied");

    // The bridge keeps working after all of it.
    assert_eq!(g.tap("1234").await["reason"], "no_pass");
    assert!(g
        .decisions_within(Duration::from_millis(200))
        .await
        .is_empty());
}

#[tokio::test]
async fn retained_tap_seen_on_subscribe_is_refused() {
    let mut stack = Stack::start(|_| {}).await;
    stack.stop_bridge().await;
    // A fresh bridge session (new client id) subscribes and receives the retained copy.
    let rogue = MqttProbe::connect(stack.broker.port(), "rogue").await;
    rogue
        .publish_retained("tapgate/gate/g2/tap", r#"{"id":"r2","card":"1"}"#)
        .await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g2").await;
    stack.config.client_id = "another-bridge".into();
    stack.start_bridge().await;
    let d = g.decision_for(Some("r2")).await;
    assert_eq!(d["reason"], "retained", "{d}");
    assert_eq!(stack.counter(keys::COUNTERS_DENIED, "no_pass").await, 0);
}
