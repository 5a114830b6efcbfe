//! Attacks on the broker that the policy already stops, kept stopped: last wills aimed at topics a
//! device may not publish, MQTT 5 features (topic aliases, response topics, broker-assigned client
//! ids, session expiry) used to reach another device, and password guessing.
//!
//! A real mosquitto with the repository's policy (mosquitto/tapgate.conf and the dynamic-security
//! plugin, logins made by `tapgate-admin`). The broker's administrator, whose role may read every
//! topic, watches `#` and `$CONTROL/dynamic-security/#`: whatever an attacker got through, it
//! would see. "Nothing got through" is checked against a fence: a later message that is allowed
//! (a will on the device's own status topic, or its own publish) which the watcher must see, so
//! anything that leaked arrives before it and no test waits on a fixed sleep.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, Packet, PubAckReason, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions as MqttOptions5};
use rumqttc::{LastWill, QoS};
use support::{ADMIN_PASSWORD, ADMIN_USER};
use tapgate_bridge::BridgeConfig;
use tapgate_broker_model::policy::{BRIDGE_CLIENT, BRIDGE_USER, MONITOR_USER};
use tapgate_checks::repo;
use tapgate_protocol::{
    CardId, DeviceId, DeviceKind, EventKind, MessageId, ProductId, Tap, Topics,
};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::session::{self, MqttSession};
use tapgate_testkit::{Mosquitto, RedisServer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
/// What `$CONTROL` would do if a device's message reached it: make a login of the attacker's.
const CREATE_LOGIN: &str =
    r#"{"commands":[{"command":"createClient","username":"evil","password":"evil"}]}"#;

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).expect("id")
}

fn tap_json(id: &str, card: &str) -> String {
    serde_json::to_string(&Tap::new(
        MessageId::new(id).expect("id"),
        CardId::new(card).expect("card"),
    ))
    .expect("json")
}

/// Options for `client_id` logged in as `user` with its test password.
fn options(broker: &Mosquitto, user: &str, client_id: &str) -> rumqttc::MqttOptions {
    session::options(broker.port(), client_id, user, &support::password(user))
}

async fn connect(broker: &Mosquitto, user: &str, client_id: &str) -> MqttSession {
    MqttSession::connect(options(broker, user, client_id))
        .await
        .unwrap_or_else(|e| panic!("{user} cannot log in: {e}\n{}", broker.log()))
}

/// The broker's administrator, subscribed to every topic and to the plugin's own.
async fn watcher(broker: &Mosquitto) -> MqttSession {
    let opts = session::options(broker.port(), "admin-watch", ADMIN_USER, ADMIN_PASSWORD);
    let mut s = MqttSession::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("the admin cannot log in: {e}\n{}", broker.log()));
    for filter in ["#", "$CONTROL/dynamic-security/#"] {
        assert_eq!(
            s.subscribe(filter).await,
            Ok(true),
            "the admin reads {filter}"
        );
    }
    s
}

/// Messages the watcher saw until a message whose payload is `fence` (excluded); panics if the
/// fence never comes.
async fn seen_until(watch: &mut MqttSession, fence: &str, broker: &Mosquitto) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for m in watch.messages_for(Duration::from_millis(50)).await {
            let text = m.text();
            if text == fence {
                return seen;
            }
            seen.push(format!("{} {text}", m.topic));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fence {fence} never reached the watcher\n{}",
            broker.log()
        );
    }
}

/// g2 logs in with `will` and its socket is then dropped without a DISCONNECT, as a device that
/// loses power or is unplugged. `Err` when the broker refuses the login.
async fn g2_dies_with(broker: &Mosquitto, will: LastWill) -> Result<(), String> {
    let mut opts = options(broker, "g2", "g2");
    opts.set_last_will(will);
    let s = MqttSession::connect(opts).await?;
    // Dropping the session aborts its event loop: the TCP connection closes, no DISCONNECT sent.
    drop(s);
    Ok(())
}

/// A will g2 may leave (on its own status topic) as the fence: the watcher must see `fence`.
async fn will_fence(broker: &Mosquitto, watch: &mut MqttSession, fence: &str) -> Vec<String> {
    let own = Topics::default().status(DeviceKind::Gate, &dev("g2"));
    g2_dies_with(broker, LastWill::new(own, fence, QoS::AtLeastOnce, false))
        .await
        .unwrap_or_else(|e| panic!("g2 with a will on its own status: {e}\n{}", broker.log()));
    seen_until(watch, fence, broker).await
}

async fn no_evil_login(broker: &Mosquitto) {
    let r = MqttSession::connect(session::options(broker.port(), "evil", "evil", "evil")).await;
    assert!(
        r.is_err(),
        "a device's message made a login through $CONTROL\n{}",
        broker.log()
    );
}

#[tokio::test]
async fn wills_on_topics_a_device_may_not_publish_are_never_delivered() {
    let broker = support::broker().await;
    let t = Topics::default();
    let (g1, g2, t1) = (dev("g1"), dev("g2"), dev("t1"));
    let mut watch = watcher(&broker).await;
    let mut gate = connect(&broker, "g1", "g1").await;
    let g1_decision = t.decision(DeviceKind::Gate, &g1);
    assert_eq!(gate.subscribe(&g1_decision).await, Ok(true));
    let targets = [
        g1_decision.clone(),
        t.decision(DeviceKind::Gate, &g2),
        t.event(EventKind::PassUsed, Some(ProductId::TEN_TRIP)),
        t.event(EventKind::Rejected, None),
        t.tap(DeviceKind::Gate, &g1),
        t.status(DeviceKind::Gate, &g1),
        t.button(&t1),
        t.bridge_probe("will"),
        "$CONTROL/dynamic-security/v1".to_owned(),
    ];
    for (n, topic) in targets.iter().enumerate() {
        let payload = if topic.starts_with("$CONTROL") {
            CREATE_LOGIN.to_owned()
        } else {
            format!("attack-will-{n}")
        };
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            // mosquitto takes the will with the login and checks the login's rights when it
            // would publish it, after the socket drops.
            g2_dies_with(&broker, LastWill::new(topic, payload.clone(), qos, false))
                .await
                .unwrap_or_else(|e| panic!("g2 with a will on {topic}: {e}\n{}", broker.log()));
        }
    }
    let seen = will_fence(&broker, &mut watch, "fence-will").await;
    let leaked: Vec<&String> = seen
        .iter()
        .filter(|m| m.contains("attack-") || m.contains("evil"))
        .collect();
    assert!(leaked.is_empty(), "wills got through: {leaked:?}");
    let at_g1 = gate.messages_for(Duration::from_millis(100)).await;
    assert!(at_g1.is_empty(), "g1 received {at_g1:?}");
    no_evil_login(&broker).await;
}

#[tokio::test]
async fn retained_wills_are_refused_and_nothing_is_kept() {
    let broker = support::broker().await;
    let t = Topics::default();
    let mut watch = watcher(&broker).await;
    let own = t.status(DeviceKind::Gate, &dev("g2"));
    let foreign = t.status(DeviceKind::Gate, &dev("g1"));
    for topic in [&own, &foreign] {
        let will = LastWill::new(topic, "attack-retained-will", QoS::AtLeastOnce, true);
        let r = g2_dies_with(&broker, will).await;
        assert!(
            r.is_err(),
            "g2 logged in with a retained will on {topic}\n{}",
            broker.log()
        );
    }
    let seen = will_fence(&broker, &mut watch, "fence-retained").await;
    assert!(
        seen.iter().all(|m| !m.contains("attack-")),
        "a retained will got through: {seen:?}"
    );
    // A later subscriber finds nothing kept on either topic.
    let opts = session::options(broker.port(), "admin-late", ADMIN_USER, ADMIN_PASSWORD);
    let mut late = MqttSession::connect(opts).await.expect("admin logs in");
    assert_eq!(late.subscribe(&format!("{}/#", t.prefix())).await, Ok(true));
    let kept = late.messages_for(Duration::from_millis(300)).await;
    assert!(kept.is_empty(), "retained for new subscribers: {kept:?}");
}

/// What an MQTT 5 connection reported.
#[derive(Debug)]
enum Report5 {
    ConnAck(ConnAck),
    SubAck(Vec<SubscribeReasonCode>),
    PubAck(PubAckReason),
    Message(String, String),
    Closed(String),
}

/// One MQTT 5 connection whose every event is reported to the test.
struct Session5 {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Report5>,
    task: JoinHandle<()>,
}

impl Drop for Session5 {
    fn drop(&mut self) {
        // As a device that loses power: the socket closes, no DISCONNECT.
        self.task.abort();
    }
}

fn options5(broker: &Mosquitto, user: &str, client_id: &str) -> MqttOptions5 {
    let mut opts = MqttOptions5::new(client_id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_credentials(user, support::password(user));
    opts
}

async fn drive5(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Report5>) {
    loop {
        let report = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(a))) => Report5::ConnAck(a),
            Ok(Event::Incoming(Packet::SubAck(a))) => Report5::SubAck(a.return_codes),
            Ok(Event::Incoming(Packet::PubAck(a))) => Report5::PubAck(a.reason),
            Ok(Event::Incoming(Packet::Publish(p))) => Report5::Message(
                String::from_utf8_lossy(&p.topic).into_owned(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            ),
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Report5::Closed(e.to_string()));
                return;
            }
        };
        if tx.send(report).is_err() {
            return;
        }
    }
}

impl Session5 {
    /// Connects; the CONNACK, or `Err` with the broker's refusal.
    async fn connect(opts: MqttOptions5) -> Result<(Self, ConnAck), String> {
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive5(eventloop, tx));
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        let session = Self { client, rx, task };
        match first {
            Ok(Some(Report5::ConnAck(a))) if a.code == ConnectReturnCode::Success => {
                Ok((session, a))
            }
            Ok(other) => Err(format!("{other:?}")),
            Err(_) => Err("no CONNACK within 5 s".into()),
        }
    }

    async fn next(&mut self) -> Option<Report5> {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Subscribes at QoS 1; whether it was granted.
    async fn subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS5::AtLeastOnce)
            .await
            .expect("subscribe queued");
        loop {
            match self.next().await {
                Some(Report5::SubAck(codes)) => {
                    return codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                }
                Some(Report5::Message(..)) => {}
                other => panic!("no SUBACK: {other:?}"),
            }
        }
    }

    /// Publishes at QoS 1 with `properties`; the PUBACK's reason (MQTT 5 says why a publish was
    /// refused), or `Err` when the connection ended first.
    async fn publish(
        &mut self,
        topic: &str,
        payload: &str,
        properties: PublishProperties,
    ) -> Result<PubAckReason, String> {
        self.client
            .publish_with_properties(
                topic,
                QoS5::AtLeastOnce,
                false,
                payload.to_owned(),
                properties,
            )
            .await
            .expect("publish queued");
        loop {
            match self.next().await {
                Some(Report5::PubAck(reason)) => return Ok(reason),
                Some(Report5::Message(..) | Report5::SubAck(_) | Report5::ConnAck(_)) => {}
                Some(Report5::Closed(why)) => return Err(why),
                None => return Err("no PUBACK".into()),
            }
        }
    }

    /// Every message within `window`: (topic, payload).
    async fn messages_for(&mut self, window: Duration) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            if let Report5::Message(t, p) = r {
                out.push((t, p));
            }
        }
        out
    }
}

fn alias(n: u16) -> PublishProperties {
    PublishProperties {
        topic_alias: Some(n),
        ..PublishProperties::default()
    }
}

#[tokio::test]
async fn mqtt5_topic_aliases_reach_no_topic_the_login_may_not_publish() {
    let broker = support::broker().await;
    let t = Topics::default();
    let mut watch = watcher(&broker).await;
    let own = t.status(DeviceKind::Gate, &dev("g2"));
    let foreign = t.decision(DeviceKind::Gate, &dev("g1"));
    let (mut g2, _) = Session5::connect(options5(&broker, "g2", "g2"))
        .await
        .unwrap_or_else(|e| panic!("g2 over MQTT 5: {e}\n{}", broker.log()));
    // Alias 1 names g2's own status topic: allowed.
    assert_eq!(
        g2.publish(&own, "alias-own", alias(1)).await,
        Ok(PubAckReason::Success)
    );
    // Alias 1 re-pointed at g1's decisions, then used with an empty topic; alias 2 set on a
    // foreign topic and on $CONTROL.
    for (topic, payload, n) in [
        (foreign.as_str(), "attack-alias-remap", 1),
        ("", "attack-alias-reuse", 1),
        (foreign.as_str(), "attack-alias-new", 2),
        ("", "attack-alias-new-reuse", 2),
        ("$CONTROL/dynamic-security/v1", CREATE_LOGIN, 3),
        ("", CREATE_LOGIN, 3),
    ] {
        let r = g2.publish(topic, payload, alias(n)).await;
        assert_eq!(
            r,
            Ok(PubAckReason::NotAuthorized),
            "{payload} on {topic:?} with alias {n}\n{}",
            broker.log()
        );
    }
    // Its own topic again, by alias only, as the fence.
    assert_eq!(
        g2.publish(&own, "alias-own-2", alias(1)).await,
        Ok(PubAckReason::Success)
    );
    assert_eq!(
        g2.publish("", "fence-alias", alias(1)).await,
        Ok(PubAckReason::Success)
    );
    let seen = seen_until(&mut watch, "fence-alias", &broker).await;
    let leaked: Vec<&String> = seen
        .iter()
        .filter(|m| m.contains("attack-") || m.contains("evil"))
        .collect();
    assert!(leaked.is_empty(), "got through by alias: {leaked:?}");
    assert!(
        seen.iter().any(|m| m == &format!("{own} alias-own-2")),
        "the allowed alias publish arrives: {seen:?}"
    );
    no_evil_login(&broker).await;
}

#[tokio::test]
async fn mqtt5_a_response_topic_does_not_redirect_decisions() {
    let broker = support::broker().await;
    let redis = RedisServer::start();
    let t = Topics::default();
    let config = BridgeConfig {
        redis: redis.url().parse().expect("redis url"),
        broker: BrokerConfig::url(broker.url()).login(BRIDGE_USER, support::password(BRIDGE_USER)),
        client_id: BRIDGE_CLIENT.into(),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..BridgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let bridge = tapgate_bridge::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("bridge did not start: {e}\n{}", broker.log()));
    let (g1, g2) = (dev("g1"), dev("g2"));
    let mut gate = connect(&broker, "g1", "g1").await;
    assert_eq!(
        gate.subscribe(&t.decision(DeviceKind::Gate, &g1)).await,
        Ok(true)
    );
    let (mut attacker, _) = Session5::connect(options5(&broker, "g2", "g2"))
        .await
        .unwrap_or_else(|e| panic!("g2 over MQTT 5: {e}\n{}", broker.log()));
    let own_decision = t.decision(DeviceKind::Gate, &g2);
    assert!(attacker.subscribe(&own_decision).await);
    for (n, response) in [
        t.decision(DeviceKind::Gate, &g1),
        t.event(EventKind::Rejected, None),
        "$CONTROL/dynamic-security/v1".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("attack-response-{n}");
        let props = PublishProperties {
            response_topic: Some(response.clone()),
            correlation_data: Some(CREATE_LOGIN.as_bytes().to_vec().into()),
            ..PublishProperties::default()
        };
        let r = attacker
            .publish(
                &t.tap(DeviceKind::Gate, &g2),
                &tap_json(&id, "04EE99"),
                props,
            )
            .await;
        assert_eq!(r, Ok(PubAckReason::Success), "g2's own tap");
        // Its decision comes back on its own topic, and only there.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = attacker.messages_for(Duration::from_millis(50)).await;
            let mine = got
                .iter()
                .any(|(topic, p)| topic == &own_decision && p.contains(&id));
            if mine {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "g2's tap {id} was not decided\n{}",
                broker.log()
            );
        }
    }
    // g1 taps: the only message it gets is its own decision.
    gate.publish(
        &t.tap(DeviceKind::Gate, &g1),
        tap_json("g1-fence", "04AA11"),
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let decision = t.decision(DeviceKind::Gate, &g1);
    let mine = gate.message_on(&decision, WAIT).await.expect("g1 decided");
    assert!(mine.text().contains("g1-fence"), "{}", mine.text());
    let extra = gate.messages_for(Duration::from_millis(100)).await;
    assert!(extra.is_empty(), "g1 received {extra:?}");
    no_evil_login(&broker).await;
    shutdown.cancel();
    tokio::time::timeout(WAIT, bridge.join())
        .await
        .expect("bridge stops")
        .expect("bridge stops cleanly");
}

#[tokio::test]
async fn mqtt5_an_empty_client_id_gets_no_broker_assigned_login() {
    let broker = support::broker().await;
    for user in ["g2", "t1", MONITOR_USER, BRIDGE_USER] {
        for clean in [true, false] {
            let mut opts = options5(&broker, user, "");
            opts.set_clean_start(clean);
            let r = Session5::connect(opts).await;
            assert!(
                r.is_err(),
                "{user} logged in with an empty client id (clean start {clean}): {:?}\n{}",
                r.as_ref().ok().map(|(_, a)| a),
                broker.log()
            );
        }
    }
}

#[tokio::test]
async fn mqtt5_session_expiry_keeps_a_session_for_its_owner_only() {
    let broker = support::broker().await;
    let t = Topics::default();
    let (g1, g2) = (dev("g1"), dev("g2"));
    let g1_decision = t.decision(DeviceKind::Gate, &g1);
    let g2_decision = t.decision(DeviceKind::Gate, &g2);
    let day = Some(86_400);
    // g1 keeps its session for a day and goes offline without a DISCONNECT.
    let mut opts = options5(&broker, "g1", "g1");
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(day);
    let (mut owner, ack) = Session5::connect(opts.clone())
        .await
        .unwrap_or_else(|e| panic!("g1 over MQTT 5: {e}\n{}", broker.log()));
    assert!(!ack.session_present);
    assert!(owner.subscribe(&g1_decision).await);
    drop(owner);
    // g2 keeps a session of its own for a day, asking for g1's decisions too (refused).
    let mut g2_opts = options5(&broker, "g2", "g2");
    g2_opts.set_clean_start(false);
    g2_opts.set_session_expiry_interval(day);
    let (mut attacker, _) = Session5::connect(g2_opts.clone())
        .await
        .expect("g2 over MQTT 5");
    assert!(!attacker.subscribe(&g1_decision).await, "g2 reads g1's");
    assert!(attacker.subscribe(&g2_decision).await);
    drop(attacker);
    // Decisions for both arrive while they are offline.
    let mut bridge = connect(&broker, BRIDGE_USER, BRIDGE_CLIENT).await;
    for (topic, payload) in [
        (&g1_decision, "queued-for-g1"),
        (&g2_decision, "queued-for-g2"),
    ] {
        bridge
            .publish_acked(topic, payload, false, WAIT)
            .await
            .expect("the bridge answers");
    }
    // Nobody else picks up g1's kept session: not g2, not the services, with or without a clean
    // start.
    for user in ["g2", "t1", MONITOR_USER, BRIDGE_USER] {
        let mut thief = options5(&broker, user, "g1");
        thief.set_clean_start(false);
        thief.set_session_expiry_interval(day);
        let r = Session5::connect(thief).await;
        assert!(
            r.is_err(),
            "{user} resumed g1's session: {:?}\n{}",
            r.as_ref().ok().map(|(_, a)| a),
            broker.log()
        );
    }
    // g2's own session held only its own decision.
    let (mut attacker, ack) = Session5::connect(g2_opts).await.expect("g2 resumes");
    assert!(ack.session_present, "g2's own session was kept");
    let got = attacker.messages_for(Duration::from_millis(300)).await;
    assert_eq!(
        got,
        vec![(g2_decision.clone(), "queued-for-g2".to_owned())],
        "g2's session"
    );
    // And g1 finds its session, with its decision, intact.
    let (mut owner, ack) = Session5::connect(opts).await.expect("g1 resumes");
    assert!(
        ack.session_present,
        "g1's session was kept\n{}",
        broker.log()
    );
    let got = owner.messages_for(Duration::from_millis(300)).await;
    assert_eq!(got, vec![(g1_decision, "queued-for-g1".to_owned())]);
}

/// The fail2ban filter shipped for mosquitto's log: its `failregex` (with `<HOST>` as a named
/// group), its `datepattern` and `maxlines`.
struct Fail2banFilter {
    failregex: regex::Regex,
    datepattern: String,
    maxlines: usize,
}

const FILTER: &str = "mosquitto/fail2ban/filter.d/tapgate-mosquitto.conf";

fn setting<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('='))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{FILTER} sets {name}"))
}

impl Fail2banFilter {
    fn load() -> Self {
        let text = repo::read(FILTER).expect(FILTER);
        // fail2ban's <HOST> matches an IPv4 or IPv6 address (or a name, with DNS on).
        let failregex = setting(&text, "failregex").replace("<HOST>", r"(?P<host>[0-9A-Fa-f:.]+)");
        Self {
            failregex: regex::Regex::new(&failregex).expect("failregex"),
            // `%%` in fail2ban's files is a literal `%`.
            datepattern: setting(&text, "datepattern").replace("%%", "%"),
            maxlines: setting(&text, "maxlines").parse().expect("maxlines"),
        }
    }

    /// The addresses fail2ban counts a failure against in `log`, read as fail2ban reads it: each
    /// line without its time (the `datepattern`), the last `maxlines` lines joined by newlines
    /// tried after each line, the buffer emptied after a match.
    fn failures(&self, log: &str) -> Vec<String> {
        let time = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}:\s").expect("time");
        let mut buffer: Vec<&str> = Vec::new();
        let mut hosts = Vec::new();
        for line in log.lines() {
            let Some(found) = time.find(line) else {
                continue;
            };
            buffer.push(&line[found.end()..]);
            if buffer.len() > self.maxlines {
                buffer.remove(0);
            }
            if let Some(m) = self.failregex.captures(&buffer.join("\n")) {
                hosts.push(m["host"].to_owned());
                buffer.clear();
            }
        }
        hosts
    }
}

#[tokio::test]
async fn guessed_passwords_never_get_in_and_each_failure_is_logged_for_fail2ban() {
    let filter = Fail2banFilter::load();
    // The filter reads the time as the policy writes it.
    let policy = repo::read("mosquitto/tapgate.conf").expect("policy");
    let format = policy
        .lines()
        .find_map(|l| l.strip_prefix("log_timestamp_format "))
        .expect("the policy sets log_timestamp_format");
    assert_eq!(filter.datepattern, format!(r"^{format}:\s"));
    let broker = support::broker().await;
    let before = filter.failures(&broker.log()).len();
    let started = std::time::Instant::now();
    let mut guesses = 0;
    // A device's login, the admin's, a service's and a name that is no login.
    for (user, tries) in [("g1", 70), (ADMIN_USER, 20), (BRIDGE_USER, 5), ("root", 5)] {
        for n in 0..tries {
            let opts = session::options(broker.port(), user, user, &format!("guess-{n}"));
            assert!(
                MqttSession::connect(opts).await.is_err(),
                "{user:?} with guess {n} got in\n{}",
                broker.log()
            );
            guesses += 1;
        }
    }
    println!(
        "{guesses} wrong passwords refused in {:?}",
        started.elapsed()
    );
    // mosquitto has no lockout: the real password still works at once (so a ban must come from
    // outside the broker).
    connect(&broker, "g1", "g1").await;
    let log = broker.log();
    let failures = filter.failures(&log);
    assert_eq!(
        failures.len() - before,
        guesses,
        "each refused login is one failure for the filter ({FILTER})\n{log}"
    );
    assert!(
        failures.iter().all(|h| h == "127.0.0.1"),
        "counted against the client's address: {failures:?}"
    );
    // Logins that succeed are never counted.
    assert_eq!(before, 0, "a successful login matched the filter\n{log}");
}
