//! The broker access policy as a table of cases.
//!
//! Both brokers enforce the same policy: every device has its own login (username = client id =
//! device id) whose rules `tapgate-admin` writes (mosquitto: the dynamic-security plugin; EMQX:
//! the built-in authorization database), and the service logins have fixed rules. [`cases`] lists
//! what each kind of client may and may not do. `tapgate-checks` evaluates the table against
//! EMQX's rules ([`crate::authorize`]) and runs it against a real mosquitto provisioned by
//! `tapgate-admin`.
//! Topics come from [`Topics`], never written by hand.

use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::{DeviceId, DeviceKind, EventKind, ProductId, Topics};

use crate::acl::Action;

/// Devices of the cases: (kind, id). A device's username and client id are its id.
pub const DEVICES: [(DeviceKind, &str); 4] = [
    (DeviceKind::Gate, "g1"),
    (DeviceKind::Gate, "g2"),
    (DeviceKind::Terminal, "t1"),
    (DeviceKind::Terminal, "t2"),
];
/// Broker user of the bridge (its client id is the same).
pub const BRIDGE_USER: &str = "tapgate-bridge";
/// Broker user of the monitor (its client id is the same).
pub const MONITOR_USER: &str = "tapgate-monitor";
/// Client id of the bridge: its username.
pub const BRIDGE_CLIENT: &str = BRIDGE_USER;
/// Client id of the monitor: its username.
pub const MONITOR_CLIENT: &str = MONITOR_USER;
/// The bridge's shared subscription group in compose.
pub const SHARED_GROUP: &str = "tapgate-bridge";

/// One access question and its expected answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Broker user name.
    pub username: &'static str,
    /// MQTT client id.
    pub clientid: String,
    /// Publish or subscribe.
    pub action: Action,
    /// The topic published, or the filter subscribed.
    pub topic: String,
    /// For a subscription: a topic the filter covers, to publish on and see whether it arrives.
    /// Chosen so that no allowed subscription of the same client also covers it.
    pub probe_topic: String,
    /// Whether the policy allows it.
    pub allowed: bool,
    /// Why, for failure messages.
    pub why: &'static str,
}

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap_or_else(|_| unreachable!("constant device ids are valid"))
}

/// Every case of the policy, under `topics`' prefix. A login's client id is its username.
pub fn cases(topics: &Topics) -> Vec<Case> {
    use DeviceKind::{Gate, Terminal};
    let (g1, g2, t1, t2) = (dev("g1"), dev("g2"), dev("t1"), dev("t2"));
    let (bridge, monitor) = (BRIDGE_USER, MONITOR_USER);
    let used = topics.event(EventKind::PassUsed, Some(ProductId::TEN_TRIP));
    let rejected = topics.event(EventKind::Rejected, None);
    let (tap, decision) = (|k, d| topics.tap(k, d), |k, d| topics.decision(k, d));
    let (status, heartbeat) = (|k, d| topics.status(k, d), |k, d| topics.heartbeat(k, d));
    let events = topics.events_filter();
    // Devices publish only on their own topics; the bridge answers and publishes events, and
    // cannot pose as a device; the monitor publishes nothing. (who, topic, allowed, why)
    #[rustfmt::skip]
    let publishes = [
        ("g1", tap(Gate, &g1), true, "own tap"),
        ("g1", status(Gate, &g1), true, "own status"),
        ("g1", heartbeat(Gate, &g1), true, "own heartbeat"),
        ("t1", tap(Terminal, &t1), true, "own tap"),
        ("t1", topics.button(&t1), true, "own button"),
        ("g1", tap(Gate, &g2), false, "another gate's tap"),
        ("g1", status(Gate, &g2), false, "another gate's status"),
        ("t1", topics.button(&t2), false, "another terminal's button"),
        ("g1", tap(Terminal, &t1), false, "a terminal's tap"),
        ("g1", decision(Gate, &g1), false, "its own decision"),
        ("g1", decision(Gate, &g2), false, "another's decision"),
        ("g1", used.clone(), false, "an event"),
        ("t1", rejected.clone(), false, "an event"),
        (bridge, decision(Gate, &g1), true, "a decision"),
        (bridge, decision(Terminal, &t1), true, "a decision"),
        (bridge, used.clone(), true, "an event"),
        (bridge, rejected.clone(), true, "an event"),
        (bridge, tap(Gate, &g1), false, "a device's tap"),
        (monitor, used.clone(), false, "an event"),
        (monitor, decision(Gate, &g1), false, "a decision"),
        (monitor, tap(Gate, &g1), false, "a tap"),
    ];
    // Devices read only their own decisions; the bridge reads every device message and no
    // events; the monitor reads the events only. (who, filter, a topic it covers, allowed, why)
    #[rustfmt::skip]
    let mut subscribes = vec![
        ("g1", decision(Gate, &g1), decision(Gate, &g1), true, "own decision"),
        ("t1", decision(Terminal, &t1), decision(Terminal, &t1), true, "own decision"),
        ("g1", decision(Gate, &g2), decision(Gate, &g2), false, "another's decision"),
        ("t1", topics.every_kind(MessageKind::Decision), decision(Terminal, &t2), false, "every decision"),
        ("g1", events.clone(), rejected.clone(), false, "events"),
        ("g1", tap(Gate, &g2), tap(Gate, &g2), false, "another's taps"),
    ];
    let devices = [(Gate, &g1), (Terminal, &t1)];
    for (filter, (kind, device)) in topics
        .bridge_filters()
        .into_iter()
        .zip(devices.iter().cycle())
    {
        let probe = probe_for(topics, &filter, *kind, device);
        subscribes.push((bridge, filter, probe, true, "device messages"));
    }
    #[rustfmt::skip]
    subscribes.extend([
        (bridge, events.clone(), rejected, false, "events (it only writes them)"),
        (monitor, events, used, true, "events"),
        (monitor, decision(Gate, &g2), decision(Gate, &g2), false, "decisions"),
        (monitor, tap(Gate, &g2), tap(Gate, &g2), false, "taps"),
    ]);
    let case = |username: &'static str, action, topic: String, probe_topic, allowed, why| Case {
        username,
        clientid: username.to_owned(),
        action,
        topic,
        probe_topic,
        allowed,
        why,
    };
    let publishes = publishes.into_iter().map(|(who, topic, allowed, why)| {
        case(who, Action::Publish, topic.clone(), topic, allowed, why)
    });
    let subscribes = subscribes
        .into_iter()
        .map(|(who, filter, probe, allowed, why)| {
            case(who, Action::Subscribe, filter, probe, allowed, why)
        });
    publishes.chain(subscribes).collect()
}

/// The same filters as [`Topics::bridge_filters`] with the shared group in front.
pub fn shared_bridge_filters(topics: &Topics) -> Vec<String> {
    topics
        .bridge_filters()
        .into_iter()
        .map(|f| format!("$share/{SHARED_GROUP}/{f}"))
        .collect()
}

/// A concrete topic the bridge filter `filter` covers.
pub fn probe_for(topics: &Topics, filter: &str, kind: DeviceKind, device: &DeviceId) -> String {
    let last = filter.rsplit('/').next().unwrap_or_default();
    match last {
        "button" => topics.button(device),
        "status" => topics.status(kind, device),
        "heartbeat" => topics.heartbeat(kind, device),
        _ => topics.tap(kind, device),
    }
}
