//! MQTT topic names.
//!
//! [`Topics`] formats every topic tapgate uses and parses the ones the bridge receives. The prefix
//! (default `tapgate`) is configurable so several systems can share a broker.
//!
//! ```text
//! {prefix}/gate/{device}/tap            device → bridge   a card tap at a gate
//! {prefix}/terminal/{device}/tap        device → bridge   a card tap at a sales terminal
//! {prefix}/terminal/{device}/button     device → bridge   a pass button pressed
//! {prefix}/{kind}/{device}/decision     bridge → device   the answer to a tap or button
//! {prefix}/{kind}/{device}/status       device            `online`, or `offline` as last will
//! {prefix}/{kind}/{device}/heartbeat    device            uptime, every 30 s
//! {prefix}/events/...                   bridge → anyone   see [`crate::event`]
//! ```

use std::fmt;

use crate::event::EventKind;
use crate::ids::ProductId;
use crate::ids::{DeviceId, DeviceKind, IdError};

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "tapgate";

/// The last segment of a device topic: what the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A card tap (gate or terminal).
    Tap,
    /// A pass button (terminal only).
    Button,
    /// Presence: `online` / `offline`.
    Status,
    /// Periodic liveness with uptime.
    Heartbeat,
    /// Bridge → device answer.
    Decision,
}

impl MessageKind {
    /// The topic segment.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageKind::Tap => "tap",
            MessageKind::Button => "button",
            MessageKind::Status => "status",
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::Decision => "decision",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tap" => MessageKind::Tap,
            "button" => MessageKind::Button,
            "status" => MessageKind::Status,
            "heartbeat" => MessageKind::Heartbeat,
            "decision" => MessageKind::Decision,
            _ => return None,
        })
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device topic the bridge accepts, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTopic {
    /// Gate or terminal.
    pub kind: DeviceKind,
    /// The device that published.
    pub device: DeviceId,
    /// What was published.
    pub message: MessageKind,
}

/// Why a topic is not one the bridge accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not start with the configured prefix.
    #[error("topic is outside the prefix {prefix:?}")]
    ForeignPrefix {
        /// The configured prefix.
        prefix: String,
    },
    /// Not `{prefix}/{kind}/{device}/{message}`.
    #[error("topic does not have the shape {{prefix}}/{{kind}}/{{device}}/{{message}}")]
    WrongShape,
    /// The kind segment is neither `gate` nor `terminal`.
    #[error("unknown device kind {0:?}")]
    UnknownKind(String),
    /// The device segment is not a valid device id.
    #[error("invalid device in topic: {0}")]
    BadDevice(IdError),
    /// A valid device published a message type it may not send (e.g. a gate's `button`, or
    /// anything's `decision`).
    #[error("{kind} {device} may not publish {segment:?}")]
    UnsupportedMessage {
        /// The device kind from the topic.
        kind: DeviceKind,
        /// The (valid) device from the topic.
        device: DeviceId,
        /// The offending last segment.
        segment: String,
    },
}

impl TopicError {
    /// The device the topic names, if it names a valid one: refusals are answered there.
    pub fn device(&self) -> Option<(DeviceKind, &DeviceId)> {
        match self {
            TopicError::UnsupportedMessage { kind, device, .. } => Some((*kind, device)),
            _ => None,
        }
    }
}

/// Formats and parses topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// Why a topic prefix is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "topic prefix {0:?} must be non-empty, without wildcards (+ #), NUL or leading/trailing '/'"
)]
pub struct BadPrefix(pub String);

impl Topics {
    /// Topics under `prefix` (e.g. `tapgate` or `site-a/tapgate`).
    pub fn new(prefix: impl Into<String>) -> Result<Self, BadPrefix> {
        let prefix = prefix.into();
        let bad = prefix.is_empty()
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains("//")
            || prefix.contains(['+', '#', '\0'])
            || prefix.starts_with('$');
        if bad {
            return Err(BadPrefix(prefix));
        }
        Ok(Self { prefix })
    }

    /// The prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}/{kind}/{device}/{message}`.
    pub fn device(&self, kind: DeviceKind, device: &DeviceId, message: MessageKind) -> String {
        format!("{}/{}/{}/{}", self.prefix, kind, device, message)
    }

    /// Where a device publishes taps.
    pub fn tap(&self, kind: DeviceKind, device: &DeviceId) -> String {
        self.device(kind, device, MessageKind::Tap)
    }

    /// Where a terminal publishes button presses.
    pub fn button(&self, terminal: &DeviceId) -> String {
        self.device(DeviceKind::Terminal, terminal, MessageKind::Button)
    }

    /// Where the bridge answers a device.
    pub fn decision(&self, kind: DeviceKind, device: &DeviceId) -> String {
        self.device(kind, device, MessageKind::Decision)
    }

    /// The device's presence topic (also its last will).
    pub fn status(&self, kind: DeviceKind, device: &DeviceId) -> String {
        self.device(kind, device, MessageKind::Status)
    }

    /// The device's heartbeat topic.
    pub fn heartbeat(&self, kind: DeviceKind, device: &DeviceId) -> String {
        self.device(kind, device, MessageKind::Heartbeat)
    }

    /// `{prefix}/{kind}/+/{message}`: one kind of message of every device of a kind (every gate's
    /// decisions, say), for subscriptions and broker rights.
    pub fn every_device(&self, kind: DeviceKind, message: MessageKind) -> String {
        format!("{}/{}/+/{}", self.prefix, kind, message)
    }

    /// The topic an event is published on, e.g. `tapgate/events/pass-used/TEN_TRIP`.
    pub fn event(&self, kind: EventKind, pass: Option<ProductId>) -> String {
        match (kind.has_pass_segment(), pass) {
            (true, Some(pass)) => format!("{}/events/{}/{}", self.prefix, kind, pass),
            _ => format!("{}/events/{}", self.prefix, kind),
        }
    }

    /// `{prefix}/+/+/{message}`: one kind of message of every device of every kind (a wrong kind
    /// included), for subscriptions and broker rights.
    pub fn every_kind(&self, message: MessageKind) -> String {
        format!("{}/+/+/{}", self.prefix, message)
    }

    /// Subscription filters the bridge uses: every device's taps, buttons, status and heartbeat.
    /// The kind segment is a wildcard so that topics with a wrong kind are seen and refused.
    pub fn bridge_filters(&self) -> Vec<String> {
        [
            MessageKind::Tap,
            MessageKind::Button,
            MessageKind::Status,
            MessageKind::Heartbeat,
        ]
        .map(|m| self.every_kind(m))
        .to_vec()
    }

    /// Filter matching every event (`{prefix}/events/#`).
    pub fn events_filter(&self) -> String {
        format!("{}/events/#", self.prefix)
    }

    /// `$share/{group}/{filter}`: `filter` as a shared subscription of `group`, the broker
    /// handing each message to one subscriber of the group (`+` as the group: a rule allowing
    /// any group).
    pub fn shared(group: &str, filter: &str) -> String {
        format!("$share/{group}/{filter}")
    }

    /// `{prefix}/bridge-probe/{nonce}`: where a bridge with a shared-subscription group checks at
    /// start-up that the broker really delivers through `$share/{group}/…`. Three levels, so it
    /// can never look like a device topic.
    pub fn bridge_probe(&self, nonce: &str) -> String {
        format!("{}/bridge-probe/{nonce}", self.prefix)
    }

    /// `{prefix}/bridge-probe/+`: every bridge probe topic, for the bridge logins' broker rights.
    pub fn bridge_probe_filter(&self) -> String {
        format!("{}/bridge-probe/+", self.prefix)
    }

    /// Parses a device topic the bridge received.
    pub fn parse(&self, topic: &str) -> Result<InboundTopic, TopicError> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| TopicError::ForeignPrefix {
                prefix: self.prefix.clone(),
            })?;
        let mut parts = rest.split('/');
        let (Some(kind), Some(device), Some(message), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TopicError::WrongShape);
        };
        let kind = DeviceKind::parse(kind).ok_or_else(|| TopicError::UnknownKind(kind.into()))?;
        let device = DeviceId::new(device).map_err(TopicError::BadDevice)?;
        let unsupported = |device: DeviceId| TopicError::UnsupportedMessage {
            kind,
            device,
            segment: message.to_owned(),
        };
        let message = match MessageKind::parse(message) {
            None | Some(MessageKind::Decision) => return Err(unsupported(device)),
            Some(MessageKind::Button) if kind == DeviceKind::Gate => {
                return Err(unsupported(device))
            }
            Some(m) => m,
        };
        Ok(InboundTopic {
            kind,
            device,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).expect("valid")
    }

    #[test]
    fn formats() {
        let t = Topics::default();
        assert_eq!(t.tap(DeviceKind::Gate, &dev("g1")), "tapgate/gate/g1/tap");
        assert_eq!(t.button(&dev("t1")), "tapgate/terminal/t1/button");
        assert_eq!(
            t.decision(DeviceKind::Terminal, &dev("t1")),
            "tapgate/terminal/t1/decision"
        );
        assert_eq!(
            t.event(EventKind::PassUsed, Some(ProductId::TEN_TRIP)),
            "tapgate/events/pass-used/TEN_TRIP"
        );
        assert_eq!(
            t.event(EventKind::PassDenied, Some(ProductId::TEN_TRIP)),
            "tapgate/events/pass-denied"
        );
        assert_eq!(
            t.event(EventKind::Rejected, None),
            "tapgate/events/rejected"
        );
        assert_eq!(t.events_filter(), "tapgate/events/#");
    }

    #[test]
    fn round_trips() {
        let t = Topics::new("site-a/tapgate").expect("prefix");
        for kind in DeviceKind::ALL {
            for m in [
                MessageKind::Tap,
                MessageKind::Status,
                MessageKind::Heartbeat,
            ] {
                let topic = t.device(kind, &dev("d-1"), m);
                assert_eq!(
                    t.parse(&topic),
                    Ok(InboundTopic {
                        kind,
                        device: dev("d-1"),
                        message: m
                    })
                );
            }
        }
        assert!(t.parse(&t.button(&dev("t1"))).is_ok());
    }

    #[test]
    fn refuses() {
        let t = Topics::default();
        assert!(matches!(
            t.parse("other/gate/g1/tap"),
            Err(TopicError::ForeignPrefix { .. })
        ));
        assert!(matches!(
            t.parse("tapgatex/gate/g1/tap"),
            Err(TopicError::ForeignPrefix { .. })
        ));
        assert_eq!(t.parse("tapgate/gate/g1"), Err(TopicError::WrongShape));
        assert_eq!(
            t.parse("tapgate/gate/g1/tap/x"),
            Err(TopicError::WrongShape)
        );
        assert_eq!(
            t.parse("tapgate/bus/g1/tap"),
            Err(TopicError::UnknownKind("bus".into()))
        );
        assert!(matches!(
            t.parse("tapgate/gate/g%1/tap"),
            Err(TopicError::BadDevice(_))
        ));
        let e = t.parse("tapgate/gate/g1/button").expect_err("gate button");
        assert_eq!(e.device(), Some((DeviceKind::Gate, &dev("g1"))));
        assert!(t.parse("tapgate/gate/g1/decision").is_err());
        assert!(t.parse("tapgate/gate/g1/launch").is_err());
    }

    #[test]
    fn prefixes() {
        for bad in ["", "/a", "a/", "a//b", "a/+", "#", "$SYS"] {
            assert!(Topics::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Topics::default().bridge_filters(),
            vec![
                "tapgate/+/+/tap",
                "tapgate/+/+/button",
                "tapgate/+/+/status",
                "tapgate/+/+/heartbeat"
            ]
        );
        assert_eq!(
            Topics::new("site/tg")
                .expect("prefix")
                .every_device(DeviceKind::Gate, MessageKind::Decision),
            "site/tg/gate/+/decision"
        );
    }
}
