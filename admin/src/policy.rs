//! Who may publish and subscribe to what.
//!
//! A device may publish only its own kind's messages under its own id and subscribe only to its
//! own decision topic: literal topics, no wildcards, so nothing depends on a broker substituting
//! `%u` or `${username}` correctly. The bridge reads every device's messages (directly or through
//! a `$share/<group>/` subscription) and writes decisions and events; the monitor reads events,
//! status and heartbeats. Nobody but the broker's administrator touches `$CONTROL` or `$SYS`.

use std::fmt;

use tapgate_protocol::{DeviceId, DeviceKind, MessageKind, Topics};

use crate::AdminError;

/// Publish or subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Publish on a topic (the rule's topic may hold wildcards).
    Publish,
    /// Subscribe to a filter (the rule's filter, or a narrower one for wildcard rules).
    Subscribe,
}

/// One allowed access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Publish or subscribe.
    pub access: Access,
    /// The topic or filter.
    pub topic: String,
}

impl Rule {
    fn publish(topic: String) -> Self {
        Self {
            access: Access::Publish,
            topic,
        }
    }
    fn subscribe(topic: String) -> Self {
        Self {
            access: Access::Subscribe,
            topic,
        }
    }
}

/// The service logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceRole {
    /// A bridge: reads device messages, writes decisions and events.
    Bridge,
    /// The monitor: reads events, status and heartbeats.
    Monitor,
}

impl ServiceRole {
    /// Its name in roles and listings.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Monitor => "monitor",
        }
    }
}

/// What a login is, as the broker records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// A device of this kind.
    Device(DeviceKind),
    /// A service login.
    Service(ServiceRole),
    /// Something this tool did not make (e.g. the broker's admin).
    Other,
}

impl LoginKind {
    /// A gate or a terminal.
    pub const fn is_device(self) -> bool {
        matches!(self, Self::Device(_))
    }
    /// A bridge or the monitor.
    pub const fn is_service(self) -> bool {
        matches!(self, Self::Service(_))
    }
}

impl fmt::Display for LoginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(k) => f.write_str(k.as_str()),
            Self::Service(r) => f.write_str(r.as_str()),
            Self::Other => f.write_str("other"),
        }
    }
}

/// What a device of `kind` called `id` may do.
pub fn device_rules(topics: &Topics, kind: DeviceKind, id: &DeviceId) -> Vec<Rule> {
    let sends: &[MessageKind] = match kind {
        DeviceKind::Gate => &[
            MessageKind::Tap,
            MessageKind::Status,
            MessageKind::Heartbeat,
        ],
        DeviceKind::Terminal => &[
            MessageKind::Tap,
            MessageKind::Button,
            MessageKind::Status,
            MessageKind::Heartbeat,
        ],
    };
    let mut rules: Vec<Rule> = sends
        .iter()
        .map(|m| Rule::publish(topics.device(kind, id, *m)))
        .collect();
    rules.push(Rule::subscribe(topics.decision(kind, id)));
    rules
}

/// What a service login may do. Subscriptions are wildcard filters; a `$share/<group>/` prefix in
/// front of them is allowed by the brokers' own rules (see the backends).
pub fn service_rules(topics: &Topics, role: ServiceRole) -> Vec<Rule> {
    match role {
        ServiceRole::Bridge => {
            let mut rules: Vec<Rule> = topics
                .bridge_filters()
                .into_iter()
                .map(Rule::subscribe)
                .collect();
            for kind in DeviceKind::ALL {
                rules.push(Rule::publish(
                    topics.every_device(kind, MessageKind::Decision),
                ));
            }
            rules.push(Rule::publish(topics.events_filter()));
            // The start-up check that the broker really shares `$share/<group>/…`.
            rules.push(Rule::publish(topics.bridge_probe_filter()));
            rules.push(Rule::subscribe(topics.bridge_probe_filter()));
            rules
        }
        ServiceRole::Monitor => vec![
            Rule::subscribe(topics.events_filter()),
            Rule::subscribe(topics.every_kind(MessageKind::Status)),
            Rule::subscribe(topics.every_kind(MessageKind::Heartbeat)),
        ],
    }
}

/// Service login names: 1–64 of `[A-Za-z0-9_-]` (the same alphabet as device ids, so a name is
/// also a valid MQTT client id with no wildcard or control character in it).
pub fn check_service_name(name: &str) -> Result<(), AdminError> {
    let bad = |why| AdminError::ServiceName {
        name: name.to_owned(),
        why,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("must be 1-64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad("allowed: A-Z a-z 0-9 _ -"));
    }
    if name.eq_ignore_ascii_case(ADMIN) {
        return Err(bad("reserved for the broker's administrator"));
    }
    Ok(())
}

/// The broker's administrator (mosquitto's dynamic-security `admin`, EMQX's dashboard user).
const ADMIN: &str = "admin";

/// The prefix of every service login (`tapgate-bridge`, `tapgate-bridge-2`, `tapgate-monitor`,
/// and the Redis and EMQX users named alike); `emqx/etc/acl.conf` grants by it.
const SERVICE_PREFIX: &str = "tapgate";

/// Whether `id` lives in the services' namespace, in any case: `admin`, `tapgate`, or
/// `tapgate-…`/`tapgate_…`. A device with such an id could be given a service's rights by a rule
/// written for services (EMQX's `acl.conf` matches `^tapgate-bridge(-.+)?$`), or be mistaken
/// for one in a list or a log, so `device add` refuses it.
pub fn check_device_id(id: &DeviceId) -> Result<(), AdminError> {
    let lower = id.as_str().to_ascii_lowercase();
    let reserved = lower == ADMIN
        || lower
            .strip_prefix(SERVICE_PREFIX)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '_']));
    if reserved {
        return Err(AdminError::ReservedDeviceId {
            id: id.as_str().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_namespace_is_refused_for_devices_in_any_case() {
        let check = |id: &str| check_device_id(&DeviceId::new(id).expect("id")).is_ok();
        for id in [
            "admin",
            "Admin",
            "tapgate",
            "tapgate-bridge-9",
            "TapGate_Monitor",
        ] {
            assert!(!check(id), "{id}");
        }
        for id in ["g1", "tapgate1", "gate-tapgate", "administrator", "adm1n"] {
            assert!(check(id), "{id}");
        }
    }

    #[test]
    fn a_gate_sends_its_own_messages_only() {
        let topics = Topics::default();
        let g7 = DeviceId::new("g7").expect("id");
        let rules = device_rules(&topics, DeviceKind::Gate, &g7);
        let topics_of = |a| {
            rules
                .iter()
                .filter(|r| r.access == a)
                .map(|r| r.topic.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            topics_of(Access::Publish),
            [
                "tapgate/gate/g7/tap",
                "tapgate/gate/g7/status",
                "tapgate/gate/g7/heartbeat"
            ]
        );
        assert_eq!(topics_of(Access::Subscribe), ["tapgate/gate/g7/decision"]);
        assert!(rules.iter().all(|r| !r.topic.contains(['+', '#', '$'])));
    }

    #[test]
    fn a_terminal_also_sends_buttons() {
        let topics = Topics::default();
        let t1 = DeviceId::new("t1").expect("id");
        let rules = device_rules(&topics, DeviceKind::Terminal, &t1);
        assert!(rules
            .iter()
            .any(|r| r.access == Access::Publish && r.topic == "tapgate/terminal/t1/button"));
        assert_eq!(rules.len(), 5);
    }

    #[test]
    fn services_never_publish_device_messages() {
        let topics = Topics::default();
        for role in [ServiceRole::Bridge, ServiceRole::Monitor] {
            for r in service_rules(&topics, role) {
                if r.access == Access::Publish {
                    assert!(
                        r.topic.ends_with("/decision")
                            || r.topic.starts_with("tapgate/events/")
                            || r.topic == topics.bridge_probe_filter(),
                        "{role:?} publishes {}",
                        r.topic
                    );
                    // Whatever a service publishes is never a device topic.
                    assert!(
                        topics.parse(&r.topic.replace('+', "x")).is_err(),
                        "{}",
                        r.topic
                    );
                }
            }
        }
        assert!(service_rules(&topics, ServiceRole::Monitor)
            .iter()
            .all(|r| r.access == Access::Subscribe));
    }

    #[test]
    fn service_names_are_checked() {
        assert!(check_service_name("bridge-1").is_ok());
        for bad in ["", "a+b", "a#", "a/b", "a b", "admin", "x\u{1b}"] {
            assert!(check_service_name(bad).is_err(), "{bad:?}");
        }
    }
}
