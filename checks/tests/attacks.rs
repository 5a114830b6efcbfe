//! The broker's trust boundary, tried as an attacker would.
//!
//! A real mosquitto with the repository's policy, its logins made by `tapgate-admin`, and the
//! real bridge behind it deciding taps against a real Redis. Every test tries one family of
//! attacks with the credential an attacker could hold (one device's password, the monitor's or
//! the bridge's login, none at all), shows each refused, and then shows that the next legitimate
//! tap from a real gate is still decided within one second.
//!
//! "Refused" is observed, not assumed: a SUBACK failure code, a refused CONNACK, a connection cut
//! by the broker, or a publish that never reaches an observer that sees every device message
//! (checked with a later legitimate message as a fence, so no test waits on a fixed sleep).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::QoS;
use tapgate_bridge::BridgeConfig;
use tapgate_broker_model::policy::{BRIDGE_CLIENT, BRIDGE_USER, MONITOR_USER};
use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::{CardId, DeviceId, DeviceKind, MessageId, Tap, Topics};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::session::{self, MqttSession};
use tapgate_testkit::{Mosquitto, RedisServer};
use tokio_util::sync::CancellationToken;

const OBSERVER: &str = "tapgate-bridge-observer";
const OTHER_BRIDGE: &str = "tapgate-bridge-2";
const ONE_SECOND: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(10);

/// The broker, Redis, the running bridge, an observer of every device message and a live gate g1
/// subscribed to its decisions.
struct Stack {
    broker: Mosquitto,
    _redis: RedisServer,
    shutdown: CancellationToken,
    bridge: Option<tapgate_bridge::BridgeHandle>,
    topics: Topics,
    observer: MqttSession,
    gate: MqttSession,
    taps: u32,
}

fn tap_json(id: &str, card: &str) -> String {
    serde_json::to_string(&Tap::new(
        MessageId::new(id).expect("id"),
        CardId::new(card).expect("card"),
    ))
    .expect("json")
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).expect("id")
}

impl Stack {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let broker = support::broker().await;
        let mut admin = support::admin(&broker).await;
        admin
            .add_service(
                OBSERVER,
                tapgate_admin::ServiceRole::Bridge,
                &support::password(OBSERVER),
            )
            .await
            .expect("observer login");
        admin
            .add_service(
                OTHER_BRIDGE,
                tapgate_admin::ServiceRole::Bridge,
                &support::password(OTHER_BRIDGE),
            )
            .await
            .expect("second bridge login");
        admin.close().await;
        let topics = Topics::default();
        let config = BridgeConfig {
            redis: redis.url().parse().expect("redis url"),
            broker: BrokerConfig::url(broker.url())
                .login(BRIDGE_USER, support::password(BRIDGE_USER)),
            client_id: BRIDGE_CLIENT.into(),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..BridgeConfig::default()
        };
        let shutdown = CancellationToken::new();
        let bridge = tapgate_bridge::start(config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("bridge did not start: {e}\n{}", broker.log()));
        let mut observer = connect(&broker, OBSERVER, OBSERVER).await;
        for f in topics.bridge_filters() {
            assert_eq!(observer.subscribe(&f).await, Ok(true), "observer reads {f}");
        }
        let mut gate = connect(&broker, "g1", "g1").await;
        let decision = topics.decision(DeviceKind::Gate, &dev("g1"));
        assert_eq!(
            gate.subscribe(&decision).await,
            Ok(true),
            "g1 reads its decisions"
        );
        let mut stack = Self {
            broker,
            _redis: redis,
            shutdown,
            bridge: Some(bridge),
            topics,
            observer,
            gate,
            taps: 0,
        };
        // The bridge subscribes after it starts; wait for its first answer.
        stack.tap_decided(WAIT).await;
        stack
    }

    /// g1 taps a card; returns once the bridge's decision arrives, panicking after `within`.
    async fn tap_decided(&mut self, within: Duration) {
        self.taps += 1;
        let id = format!("g1-legit-{}", self.taps);
        let g1 = dev("g1");
        let started = tokio::time::Instant::now();
        self.gate
            .publish(
                &self.topics.tap(DeviceKind::Gate, &g1),
                tap_json(&id, "04AA11"),
                QoS::AtLeastOnce,
                false,
            )
            .await;
        let decision = self.topics.decision(DeviceKind::Gate, &g1);
        loop {
            let left = within.saturating_sub(started.elapsed());
            let Some(m) = self.gate.message_on(&decision, left).await else {
                panic!(
                    "the legitimate tap {id} was not decided within {within:?}\n{}",
                    self.broker.log()
                );
            };
            if m.json()["id"].as_str() == Some(id.as_str()) {
                return;
            }
        }
    }

    /// Publishes a legitimate tap of g1 as a fence and returns every device message the observer
    /// saw up to and including it: anything an attacker got through arrives before the fence.
    async fn seen_until_fence(&mut self) -> Vec<(String, String)> {
        self.taps += 1;
        let fence = format!("g1-fence-{}", self.taps);
        let topic = self.topics.tap(DeviceKind::Gate, &dev("g1"));
        self.gate
            .publish(&topic, tap_json(&fence, "04AA11"), QoS::AtLeastOnce, false)
            .await;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = self.observer.messages_for(Duration::from_millis(50)).await;
            for m in got {
                let text = m.text();
                if m.topic == topic && text.contains(&fence) {
                    return seen;
                }
                seen.push((m.topic, text));
            }
            assert!(!left.is_zero(), "the fence tap never reached the observer");
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(b) = self.bridge.take() {
            tokio::time::timeout(WAIT, b.join())
                .await
                .expect("bridge stops within 10 s")
                .expect("bridge stops cleanly");
        }
    }
}

async fn connect(broker: &Mosquitto, user: &str, client_id: &str) -> MqttSession {
    MqttSession::connect(session::options(
        broker.port(),
        client_id,
        user,
        &support::password(user),
    ))
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{user} as {client_id:?} cannot log in: {e}\n{}",
            broker.log()
        )
    })
}

async fn try_connect(
    broker: &Mosquitto,
    user: &str,
    password: &str,
    client_id: &str,
) -> Result<MqttSession, String> {
    MqttSession::connect(session::options(broker.port(), client_id, user, password)).await
}

#[tokio::test]
async fn a_device_subscribes_only_to_its_own_decisions() {
    let mut stack = Stack::start().await;
    let mut g2 = connect(&stack.broker, "g2", "g2").await;
    let own = stack.topics.decision(DeviceKind::Gate, &dev("g2"));
    assert_eq!(g2.subscribe(&own).await, Ok(true), "its own decisions");
    let p = stack.topics.prefix().to_owned();
    for filter in [
        "#".to_owned(),
        "$SYS/#".to_owned(),
        "$CONTROL/#".to_owned(),
        "$CONTROL/dynamic-security/v1/response".to_owned(),
        stack.topics.decision(DeviceKind::Gate, &dev("g1")),
        stack.topics.every_kind(MessageKind::Decision),
        format!("{p}/gate/+/decision"),
        format!("{p}/gate/g2/#"),
        format!("{p}/#"),
        format!("$share/x/{p}/gate/g1/decision"),
        stack.topics.tap(DeviceKind::Gate, &dev("g1")),
        stack.topics.events_filter(),
    ] {
        assert_eq!(
            g2.subscribe(&filter).await,
            Ok(false),
            "g2 must not subscribe to {filter}\n{}",
            stack.broker.log()
        );
    }
    // Nor do the services reach beyond their job, or into $CONTROL and $SYS.
    for user in [MONITOR_USER, OTHER_BRIDGE] {
        let mut s = connect(&stack.broker, user, user).await;
        for filter in [
            "#".to_owned(),
            "$SYS/#".to_owned(),
            "$CONTROL/#".to_owned(),
            "$CONTROL/dynamic-security/v1/response".to_owned(),
            format!("{p}/#"),
            format!("$share/x/{p}/#"),
        ] {
            assert_eq!(
                s.subscribe(&filter).await,
                Ok(false),
                "{user} must not subscribe to {filter}"
            );
        }
    }
    let mut monitor = connect(&stack.broker, MONITOR_USER, MONITOR_USER).await;
    for filter in [
        stack.topics.decision(DeviceKind::Gate, &dev("g1")),
        format!("{p}/+/+/tap"),
        format!("{p}/+/+/button"),
    ] {
        assert_eq!(
            monitor.subscribe(&filter).await,
            Ok(false),
            "the monitor must not read {filter}"
        );
    }
    // g1's decisions go to g1 only.
    stack.tap_decided(ONE_SECOND).await;
    let leaked = g2.messages_for(Duration::from_millis(200)).await;
    assert!(leaked.is_empty(), "g2 received {leaked:?}");
    stack.stop().await;
}

#[tokio::test]
async fn client_ids_other_than_the_username_are_refused() {
    let mut stack = Stack::start().await;
    let pw = support::password("g2");
    for client_id in [
        "+",
        "#",
        "g2/#",
        "g1",
        "g2\u{1b}]0;owned\u{7}",
        "g2\n",
        "g2\u{202e}",
        "",
    ] {
        let r = try_connect(&stack.broker, "g2", &pw, client_id).await;
        assert!(
            r.is_err(),
            "g2 logged in with client id {client_id:?}\n{}",
            stack.broker.log()
        );
    }
    // The monitor's and the bridge's logins cannot pose as a device either.
    for user in [MONITOR_USER, OTHER_BRIDGE] {
        let r = try_connect(&stack.broker, user, &support::password(user), "g2").await;
        assert!(r.is_err(), "{user} logged in as client g2");
    }
    connect(&stack.broker, "g2", "g2").await;
    stack.tap_decided(ONE_SECOND).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_second_login_cannot_take_a_live_device_session() {
    let mut stack = Stack::start().await;
    // Another device's password, and the bridge's and monitor's, with g1's client id.
    for user in ["g2", "t1", OTHER_BRIDGE, MONITOR_USER] {
        let r = try_connect(&stack.broker, user, &support::password(user), "g1").await;
        assert!(r.is_err(), "{user} took client id g1");
    }
    // A wrong password for g1 itself.
    let r = try_connect(&stack.broker, "g1", "pw-g2-3f9a-for-tests", "g1").await;
    assert!(r.is_err(), "g1 with g2's password");
    // The live g1 was never disconnected: it is still decided within a second.
    assert_eq!(stack.gate.closed(Duration::from_millis(100)).await, None);
    stack.tap_decided(ONE_SECOND).await;
    stack.stop().await;
}

#[tokio::test]
async fn only_the_holder_of_a_device_secret_can_replace_its_connection() {
    // MQTT lets a new connection with the same client id replace the old one. With per-device
    // logins that needs this device's own password: the same device reconnecting, or someone
    // holding its secret (then remove the device, see the revocation test).
    let mut stack = Stack::start().await;
    let mut first = connect(&stack.broker, "t2", "t2").await;
    let second = connect(&stack.broker, "t2", "t2").await;
    assert!(
        first.closed(WAIT).await.is_some(),
        "the older connection of t2 is replaced"
    );
    drop(second);
    stack.tap_decided(ONE_SECOND).await;
    stack.stop().await;
}

#[tokio::test]
async fn services_and_devices_cannot_publish_what_is_not_theirs() {
    let mut stack = Stack::start().await;
    let t = stack.topics.clone();
    let (g1, g2, t1) = (dev("g1"), dev("g2"), dev("t1"));
    let mut attempts: Vec<(&str, String)> = Vec::new();
    for user in [MONITOR_USER, BRIDGE_USER] {
        for topic in [
            t.tap(DeviceKind::Gate, &g1),
            t.tap(DeviceKind::Terminal, &t1),
            t.button(&t1),
            t.status(DeviceKind::Gate, &g1),
            t.heartbeat(DeviceKind::Terminal, &t1),
        ] {
            attempts.push((user, topic));
        }
    }
    attempts.push((MONITOR_USER, t.decision(DeviceKind::Gate, &g1)));
    // A gate on terminal topics under its own id, and on another gate's topics.
    for topic in [
        t.button(&g2),
        t.tap(DeviceKind::Terminal, &g2),
        t.status(DeviceKind::Terminal, &g2),
        t.tap(DeviceKind::Gate, &g1),
        t.status(DeviceKind::Gate, &g1),
        t.heartbeat(DeviceKind::Gate, &g1),
        t.decision(DeviceKind::Gate, &g2),
        t.decision(DeviceKind::Gate, &g1),
        t.button(&t1),
        format!("{}/events/pass_issued/ten_trip", t.prefix()),
        "$CONTROL/dynamic-security/v1".to_owned(),
    ] {
        attempts.push(("g2-as-attacker", topic));
    }
    for (user, topic) in &attempts {
        // The bridge's attempts use the login of another bridge (logging in as the running
        // bridge's own login would only replace its connection, as any login may do to itself).
        let (login, client) = match *user {
            "g2-as-attacker" => ("g2", "g2"),
            BRIDGE_USER => (OTHER_BRIDGE, OTHER_BRIDGE),
            u => (u, u),
        };
        let mut s = connect(&stack.broker, login, client).await;
        // A refused QoS 1 publish is still acknowledged by mosquitto (MQTT 3.1.1 has no
        // refusal code); the PUBACK shows the broker has handled it before the fence.
        let payload = if topic.starts_with("$CONTROL") {
            r#"{"commands":[{"command":"createClient","username":"evil","password":"evil"}]}"#
                .to_owned()
        } else {
            tap_json(&format!("attack-{login}"), "04EE99")
        };
        s.publish_acked(topic, payload, false, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{login} publishing {topic}: {e}"));
    }
    let seen = stack.seen_until_fence().await;
    let leaked: Vec<&(String, String)> =
        seen.iter().filter(|(_, p)| p.contains("attack-")).collect();
    assert!(leaked.is_empty(), "got through the broker: {leaked:?}");
    // The $CONTROL attempt made no login.
    assert!(
        try_connect(&stack.broker, "evil", "evil", "evil")
            .await
            .is_err(),
        "a device created a login through $CONTROL"
    );
    stack.tap_decided(ONE_SECOND).await;
    stack.stop().await;
}

#[tokio::test]
async fn unknown_logins_are_refused() {
    let mut stack = Stack::start().await;
    for (user, pw) in [
        ("g9", "pw-g9-3f9a-for-tests"),
        ("intruder", "whatever-password"),
        ("admin", "not-the-admin-password"),
        ("", ""),
    ] {
        assert!(
            try_connect(&stack.broker, user, pw, user).await.is_err(),
            "{user:?} logged in"
        );
    }
    let anonymous = rumqttc::MqttOptions::new("g9", "127.0.0.1", stack.broker.port());
    assert!(MqttSession::connect(anonymous).await.is_err(), "anonymous");
    stack.tap_decided(ONE_SECOND).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_removed_device_is_cut_off_at_once_and_cannot_return() {
    let mut stack = Stack::start().await;
    let mut g2 = connect(&stack.broker, "g2", "g2").await;
    let mut admin = support::admin(&stack.broker).await;
    admin
        .remove("g2", tapgate_admin::Expect::Device)
        .await
        .expect("device remove g2");
    let listed = admin.list().await.expect("list");
    admin.close().await;
    assert!(listed.iter().all(|l| l.username != "g2"), "{listed:?}");
    assert!(
        g2.closed(WAIT).await.is_some(),
        "the live session of a removed device is cut\n{}",
        stack.broker.log()
    );
    let r = try_connect(&stack.broker, "g2", &support::password("g2"), "g2").await;
    assert!(r.is_err(), "a removed device logged in again");
    stack.tap_decided(ONE_SECOND).await;
    stack.stop().await;
}

#[tokio::test]
async fn retained_and_oversized_publishes_are_refused() {
    let mut stack = Stack::start().await;
    let g2 = dev("g2");
    let status = stack.topics.status(DeviceKind::Gate, &g2);
    let tap = stack.topics.tap(DeviceKind::Gate, &g2);
    let big = format!(
        "{{\"id\":\"attack-big\",\"card\":\"{}\"}}",
        "A".repeat(70 * 1024)
    );
    for (topic, payload, retain, what) in [
        (
            &status,
            "attack-retained-online".to_owned(),
            true,
            "a retained status",
        ),
        (
            &tap,
            tap_json("attack-retained-tap", "04EE99"),
            true,
            "a retained tap",
        ),
        (&tap, big.clone(), false, "a 70 KiB tap"),
        (&status, big.clone(), true, "a 70 KiB retained status"),
    ] {
        let mut s = connect(&stack.broker, "g2", "g2").await;
        let r = s.publish_acked(topic, payload, retain, WAIT).await;
        assert!(
            r.is_err(),
            "{what} was accepted (the connection should be cut)\n{}",
            stack.broker.log()
        );
    }
    let seen = stack.seen_until_fence().await;
    let leaked: Vec<&(String, String)> =
        seen.iter().filter(|(_, p)| p.contains("attack-")).collect();
    assert!(leaked.is_empty(), "got through the broker: {leaked:?}");
    // No retained copy exists for a new subscriber.
    let mut late = connect(&stack.broker, OBSERVER, OBSERVER).await;
    assert_eq!(late.subscribe(&status).await, Ok(true));
    stack.tap_decided(ONE_SECOND).await;
    let retained = late.messages_for(Duration::from_millis(200)).await;
    assert!(retained.iter().all(|m| !m.retain), "{retained:?}");
    // The bridge kept deciding: the next tap within a second, again.
    stack.tap_decided(ONE_SECOND).await;
    stack.stop().await;
}
