//! The broker access policy as a table of cases.
//!
//! Both brokers enforce the same policy: every device has its own login (username = client id =
//! device id) whose rules `tapgate-admin` writes (mosquitto: the dynamic-security plugin; EMQX:
//! the built-in authorization database), and the service logins have fixed rules. [`cases`] lists
//! what each kind of client may and may not do; the tests evaluate the table against EMQX's rules
//! ([`crate::emqx::authorize`]) and run it against a real mosquitto provisioned by `tapgate-admin`.
//! Topics come from [`Topics`], never written by hand.

use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::{DeviceId, DeviceKind, EventKind, ProductId, Topics};

use crate::emqx::Action;

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

/// Every case of the policy, under `topics`' prefix.
pub fn cases(topics: &Topics) -> Vec<Case> {
    use DeviceKind::{Gate, Terminal};
    let (g1, g2, t1, t2) = (dev("g1"), dev("g2"), dev("t1"), dev("t2"));
    let used = topics.event(EventKind::PassUsed, Some(ProductId::TEN_TRIP));
    let rejected = topics.event(EventKind::Rejected, None);
    let mut out = Vec::new();
    let mut publish = |username, clientid: &str, topic: String, allowed, why| {
        out.push(Case {
            username,
            clientid: clientid.to_owned(),
            action: Action::Publish,
            probe_topic: topic.clone(),
            topic,
            allowed,
            why,
        });
    };
    // Devices publish only on their own topics.
    publish("g1", "g1", topics.tap(Gate, &g1), true, "own tap");
    publish("g1", "g1", topics.status(Gate, &g1), true, "own status");
    publish(
        "g1",
        "g1",
        topics.heartbeat(Gate, &g1),
        true,
        "own heartbeat",
    );
    publish("t1", "t1", topics.tap(Terminal, &t1), true, "own tap");
    publish("t1", "t1", topics.button(&t1), true, "own button");
    publish(
        "g1",
        "g1",
        topics.tap(Gate, &g2),
        false,
        "another gate's tap",
    );
    publish(
        "g1",
        "g1",
        topics.status(Gate, &g2),
        false,
        "another gate's status",
    );
    publish(
        "t1",
        "t1",
        topics.button(&t2),
        false,
        "another terminal's button",
    );
    publish(
        "g1",
        "g1",
        topics.tap(Terminal, &t1),
        false,
        "a terminal's tap",
    );
    publish(
        "g1",
        "g1",
        topics.decision(Gate, &g1),
        false,
        "its own decision",
    );
    publish(
        "g1",
        "g1",
        topics.decision(Gate, &g2),
        false,
        "another's decision",
    );
    publish("g1", "g1", used.clone(), false, "an event");
    publish("t1", "t1", rejected.clone(), false, "an event");
    // The bridge answers and publishes events, and cannot pose as a device.
    publish(
        BRIDGE_USER,
        BRIDGE_CLIENT,
        topics.decision(Gate, &g1),
        true,
        "a decision",
    );
    publish(
        BRIDGE_USER,
        BRIDGE_CLIENT,
        topics.decision(Terminal, &t1),
        true,
        "a decision",
    );
    publish(BRIDGE_USER, BRIDGE_CLIENT, used.clone(), true, "an event");
    publish(
        BRIDGE_USER,
        BRIDGE_CLIENT,
        rejected.clone(),
        true,
        "an event",
    );
    publish(
        BRIDGE_USER,
        BRIDGE_CLIENT,
        topics.tap(Gate, &g1),
        false,
        "a device's tap",
    );
    // The monitor publishes nothing.
    publish(
        MONITOR_USER,
        MONITOR_CLIENT,
        used.clone(),
        false,
        "an event",
    );
    publish(
        MONITOR_USER,
        MONITOR_CLIENT,
        topics.decision(Gate, &g1),
        false,
        "a decision",
    );
    publish(
        MONITOR_USER,
        MONITOR_CLIENT,
        topics.tap(Gate, &g1),
        false,
        "a tap",
    );

    let mut subscribe = |username, clientid: &str, filter: String, probe: String, allowed, why| {
        out.push(Case {
            username,
            clientid: clientid.to_owned(),
            action: Action::Subscribe,
            topic: filter,
            probe_topic: probe,
            allowed,
            why,
        });
    };
    let d = topics.decision(Gate, &g1);
    subscribe("g1", "g1", d.clone(), d, true, "own decision");
    let d = topics.decision(Terminal, &t1);
    subscribe("t1", "t1", d.clone(), d, true, "own decision");
    let d = topics.decision(Gate, &g2);
    subscribe("g1", "g1", d.clone(), d, false, "another's decision");
    let wildcard = topics.every_kind(MessageKind::Decision);
    subscribe(
        "t1",
        "t1",
        wildcard,
        topics.decision(Terminal, &t2),
        false,
        "every decision",
    );
    subscribe(
        "g1",
        "g1",
        topics.events_filter(),
        rejected.clone(),
        false,
        "events",
    );
    subscribe(
        "g1",
        "g1",
        topics.tap(Gate, &g2),
        topics.tap(Gate, &g2),
        false,
        "another's taps",
    );
    let devices = [(Gate, &g1), (Terminal, &t1)];
    for (filter, (kind, device)) in topics
        .bridge_filters()
        .into_iter()
        .zip(devices.iter().cycle())
    {
        let probe = probe_for(topics, &filter, *kind, device);
        subscribe(
            BRIDGE_USER,
            BRIDGE_CLIENT,
            filter,
            probe,
            true,
            "device messages",
        );
    }
    subscribe(
        BRIDGE_USER,
        BRIDGE_CLIENT,
        topics.events_filter(),
        rejected.clone(),
        false,
        "events (it only writes them)",
    );
    subscribe(
        MONITOR_USER,
        MONITOR_CLIENT,
        topics.events_filter(),
        used,
        true,
        "events",
    );
    subscribe(
        MONITOR_USER,
        MONITOR_CLIENT,
        topics.decision(Gate, &g2),
        topics.decision(Gate, &g2),
        false,
        "decisions",
    );
    subscribe(
        MONITOR_USER,
        MONITOR_CLIENT,
        topics.tap(Gate, &g2),
        topics.tap(Gate, &g2),
        false,
        "taps",
    );
    out
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
