//! The mosquitto policy (mosquitto/tapgate.conf and the logins `tapgate-admin` makes in the
//! dynamic-security plugin), run for real.
//!
//! Every case of `tapgate_broker_model::policy::cases` is tried against a real mosquitto: each
//! client subscribes only to what it may read, publishes what the case says, and the test
//! checks who received what. Allowed cases must arrive (so a broker that drops everything
//! fails), refused ones must arrive nowhere.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, Packet};
use tapgate_broker_model::policy::{
    self as access, Case, BRIDGE_CLIENT, BRIDGE_USER, MONITOR_CLIENT, MONITOR_USER,
};
use tapgate_broker_model::Action;
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_testkit::MqttProbe;

/// Who may write a topic under the policy: the device it names, or the bridge.
fn writer_for(topics: &Topics, topic: &str) -> (&'static str, String) {
    match topics.parse(topic) {
        Ok(inbound) => ("device", inbound.device.to_string()),
        Err(_) => (BRIDGE_USER, BRIDGE_CLIENT.to_owned()),
    }
}

#[tokio::test]
async fn policy_table_holds_on_a_real_mosquitto() {
    let broker = support::broker().await;
    let port = broker.port();
    let topics = Topics::default();
    let cases = access::cases(&topics);

    // One connection per client, each subscribed to what it reads in normal operation.
    let mut clients: BTreeMap<String, MqttProbe> = BTreeMap::new();
    let bridge = support::client(port, BRIDGE_USER, BRIDGE_CLIENT).await;
    for f in topics.bridge_filters() {
        bridge.subscribe(&f).await;
    }
    clients.insert(BRIDGE_CLIENT.to_owned(), bridge);
    let monitor = support::client(port, MONITOR_USER, MONITOR_CLIENT).await;
    monitor.subscribe(&topics.events_filter()).await;
    clients.insert(MONITOR_CLIENT.to_owned(), monitor);
    for (kind, id) in [
        (DeviceKind::Gate, "g1"),
        (DeviceKind::Gate, "g2"),
        (DeviceKind::Terminal, "t1"),
        (DeviceKind::Terminal, "t2"),
    ] {
        let device = support::client(port, id, id).await;
        let dev = DeviceId::new(id).expect("id");
        device.subscribe(&topics.decision(kind, &dev)).await;
        clients.insert(id.to_owned(), device);
    }
    // The subscriptions under test.
    for case in cases.iter().filter(|c| c.action == Action::Subscribe) {
        clients[&case.clientid].subscribe(&case.topic).await;
    }

    // Publish every case: publish cases from their own client, subscribe cases' probes from
    // the client allowed to write the probe topic.
    let payload = |i: usize| format!("case-{i}");
    for (i, case) in cases.iter().enumerate() {
        let from = match case.action {
            Action::Publish => case.clientid.clone(),
            Action::Subscribe => writer_for(&topics, &case.probe_topic).1,
        };
        clients[&from].publish(&case.probe_topic, payload(i)).await;
    }

    // Collect: wait until every allowed case has arrived somewhere, then a little longer for
    // anything that should not arrive.
    let mut received: Vec<(String, String, String)> = Vec::new(); // (receiver, topic, payload)
    let expected: Vec<String> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c.allowed)
        .map(|(i, _)| payload(i))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for (name, probe) in clients.iter_mut() {
            for m in probe.drain_for(Duration::from_millis(50)).await {
                received.push((name.clone(), m.topic.clone(), m.text()));
            }
        }
        let all_there = expected.iter().all(|p| received.iter().any(|r| &r.2 == p));
        if all_there || tokio::time::Instant::now() > deadline {
            break;
        }
    }
    for (name, probe) in clients.iter_mut() {
        for m in probe.drain_for(Duration::from_millis(500)).await {
            received.push((name.clone(), m.topic.clone(), m.text()));
        }
    }

    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let p = payload(i);
        let got: Vec<&(String, String, String)> = received.iter().filter(|r| r.2 == p).collect();
        let ok = match (case.action, case.allowed) {
            (Action::Publish, true) => !got.is_empty(),
            (Action::Publish, false) => got.is_empty(),
            (Action::Subscribe, allowed) => got.iter().any(|r| r.0 == case.clientid) == allowed,
        };
        if !ok {
            wrong.push(describe(case, &got));
        }
    }
    assert!(
        wrong.is_empty(),
        "the mosquitto ACL does not enforce the policy:\n{}\n{}",
        wrong.join("\n"),
        broker.log()
    );
}

fn describe(case: &Case, got: &[&(String, String, String)]) -> String {
    format!(
        "  - {} as {} {:?} {} (probe {}): expected {}, received by {:?} ({})",
        case.clientid,
        case.username,
        case.action,
        case.topic,
        case.probe_topic,
        if case.allowed { "allowed" } else { "refused" },
        got.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        case.why
    )
}

#[tokio::test]
async fn bridges_share_device_messages_through_a_shared_group() {
    let broker = support::broker().await;
    let port = broker.port();
    let topics = Topics::default();
    // A second bridge has a login of its own: a client id is bound to one login.
    let mut admin = support::admin(&broker).await;
    admin
        .add_service(
            "tapgate-bridge-2",
            tapgate_admin::ServiceRole::Bridge,
            &support::password("tapgate-bridge-2"),
        )
        .await
        .expect("second bridge login");
    admin.close().await;
    let mut a = support::client(port, BRIDGE_USER, BRIDGE_CLIENT).await;
    let mut b = support::client(port, "tapgate-bridge-2", "tapgate-bridge-2").await;
    for f in access::shared_bridge_filters(&topics) {
        a.subscribe(&f).await;
        b.subscribe(&f).await;
    }
    let g1 = support::client(port, "g1", "g1").await;
    let dev = DeviceId::new("g1").expect("id");
    let n = 20;
    for i in 0..n {
        g1.publish(&topics.tap(DeviceKind::Gate, &dev), format!("tap-{i}"))
            .await;
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(
            a.drain_for(Duration::from_millis(50))
                .await
                .into_iter()
                .map(|m| m.text()),
        );
        got.extend(
            b.drain_for(Duration::from_millis(50))
                .await
                .into_iter()
                .map(|m| m.text()),
        );
    }
    got.extend(
        a.drain_for(Duration::from_millis(300))
            .await
            .into_iter()
            .map(|m| m.text()),
    );
    got.extend(
        b.drain_for(Duration::from_millis(300))
            .await
            .into_iter()
            .map(|m| m.text()),
    );
    got.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("tap-{i}")).collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "each tap reaches exactly one bridge of the group\n{}",
        broker.log()
    );
}

/// Polls a fresh connection until the broker answers: Ok on CONNACK, Err with the refusal.
async fn try_connect(opts: rumqttc::MqttOptions) -> Result<(), String> {
    let (_client, mut eventloop): (AsyncClient, _) = AsyncClient::new(opts, 10);
    let attempt = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => continue,
                Err(ConnectionError::ConnectionRefused(code)) => return Err(format!("{code:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

#[tokio::test]
async fn only_known_users_with_their_password_connect() {
    let broker = support::broker().await;
    let port = broker.port();
    let anonymous = rumqttc::MqttOptions::new("g1", "127.0.0.1", port);
    assert!(
        try_connect(anonymous).await.is_err(),
        "anonymous login refused"
    );
    let mut wrong = support::options(port, "g1", "g1");
    wrong.set_credentials("g1", "not-the-password");
    assert!(try_connect(wrong).await.is_err(), "wrong password refused");
    let mut unknown = support::options(port, "g1", "g1");
    unknown.set_credentials("intruder", support::password("intruder"));
    assert!(try_connect(unknown).await.is_err(), "unknown user refused");
    for (user, id) in [
        ("g1", "g1"),
        (BRIDGE_USER, BRIDGE_CLIENT),
        (MONITOR_USER, MONITOR_CLIENT),
    ] {
        assert_eq!(
            try_connect(support::options(port, user, id)).await,
            Ok(()),
            "{user} logs in\n{}",
            broker.log()
        );
    }
}
