//! Events for monitors.
//!
//! Every decision that changes or refuses something produces an [`Event`]. The bridge appends it
//! to the Redis stream [`crate::keys::EVENTS_STREAM`] (a stream field per event field, see
//! [`crate::stream`]; exactly once, in the same atomic step as the decision) and publishes it on
//! `{prefix}/events/{kind}[/{TYPE}]` with `seq` set to the stream entry id. Over MQTT events are
//! a live feed at QoS 0: a subscriber that misses some reads them from the stream, and a
//! redelivered tap republishes the same `seq`, so subscribers can drop repeats.
//!
//! Events about tap time — a stale tap, an unpaid offline entry, a device clock flagged as off —
//! are events like the others (kinds `tap-stale`, `unpaid-entry`, `clock-skew`), in the same
//! stream and under the same topic prefix; the bridge calls them [`Notice`]s where it makes them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fares::Currency;
use crate::ids::ProductId;
use crate::ids::{CardId, DeviceId, DeviceKind, MessageId};
use crate::message::{ClockSource, DenyReason, PassInfo, TapMode};

/// The stream entry field that holds the event kind (in entries from before
/// [`crate::stream`]'s layout, the event's JSON).
pub const STREAM_FIELD: &str = crate::stream::EVENT;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A terminal sold a pass: `price` and `currency` say what it took. Topic
    /// `events/pass-issued/{PRODUCT}`.
    PassIssued,
    /// An operator voided a sale made in error: the unused pass is gone and its revenue is taken
    /// off its service day (`day`); `price`, `currency` and `device` (the terminal that sold it)
    /// are the sale's, `detail` names the operator. Topic `events/pass-voided/{PRODUCT}`.
    PassVoided,
    /// A gate let a card in on its pass. Topic `events/pass-used/{PRODUCT}`.
    PassUsed,
    /// A gate let a card in paid as you go: `price` is what the entry was charged (0 once
    /// capped), `balance` what the card holds after it, `day` the service day whose caps and
    /// revenue it counts on; the pass is `PAYG`. Topic `events/fare-charged/PAYG`.
    FareCharged,
    /// A terminal sold a top-up: `price` was added to the card's balance (`balance` after it);
    /// `day` is the service day it counts on. Topic `events/topped-up/{PRODUCT}`.
    ToppedUp,
    /// A `period` pass's first entry started its window. Topic `events/pass-activated/{PRODUCT}`.
    PassActivated,
    /// A gate or terminal said no to a card. Topic `events/pass-denied`.
    PassDenied,
    /// A device message broke the contract. Topic `events/rejected`.
    Rejected,
    /// An operator put a card on the deny list. Topic `events/card-blocked`.
    CardBlocked,
    /// An operator took a card off the deny list. Topic `events/card-unblocked`.
    CardUnblocked,
    /// An operator replaced a lost card: `card` is the lost one, now blocked with `reason`
    /// `replaced`; `detail` is the card that holds its pass, balance and cap progress now.
    /// Topic `events/card-replaced`.
    CardReplaced,
    /// A waiting tap or button arrived after the decision window: nothing decided or charged.
    /// `tap_time` is when it happened; `reason` is `stale`. Topic `events/tap-stale`.
    TapStale,
    /// A fail-open gate let a card through that could not pay. `reason` is the deny reason;
    /// `tap_time` is when the rider went through. Topic `events/unpaid-entry`.
    UnpaidEntry,
    /// A device's clock is off by more than the bridge allows (or came back within it: `reason`
    /// `clock_ok`). `skew_ms` is the device's clock minus the bridge's. Topic `events/clock-skew`.
    ClockSkew,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 14] = [
        EventKind::PassIssued,
        EventKind::PassVoided,
        EventKind::PassUsed,
        EventKind::FareCharged,
        EventKind::ToppedUp,
        EventKind::PassActivated,
        EventKind::PassDenied,
        EventKind::Rejected,
        EventKind::CardBlocked,
        EventKind::CardUnblocked,
        EventKind::CardReplaced,
        EventKind::TapStale,
        EventKind::UnpaidEntry,
        EventKind::ClockSkew,
    ];

    /// The wire name, e.g. `pass-used`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::PassIssued => "pass-issued",
            EventKind::PassVoided => "pass-voided",
            EventKind::PassUsed => "pass-used",
            EventKind::FareCharged => "fare-charged",
            EventKind::ToppedUp => "topped-up",
            EventKind::PassActivated => "pass-activated",
            EventKind::PassDenied => "pass-denied",
            EventKind::Rejected => "rejected",
            EventKind::CardBlocked => "card-blocked",
            EventKind::CardUnblocked => "card-unblocked",
            EventKind::CardReplaced => "card-replaced",
            EventKind::TapStale => "tap-stale",
            EventKind::UnpaidEntry => "unpaid-entry",
            EventKind::ClockSkew => "clock-skew",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the topic ends with the product.
    pub const fn has_pass_segment(self) -> bool {
        matches!(
            self,
            EventKind::PassIssued
                | EventKind::PassVoided
                | EventKind::PassUsed
                | EventKind::FareCharged
                | EventKind::ToppedUp
                | EventKind::PassActivated
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event about tap time (stale taps, unpaid entries, clock skew): the same [`Event`], named
/// apart where the bridge produces them.
pub type Notice = Event;

/// One event, as stored in the stream and published over MQTT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// When, Unix time in milliseconds (the bridge's clock at decision time).
    pub time: u64,
    /// The device involved, if any (operator actions have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// Its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_kind: Option<DeviceKind>,
    /// The device's message id this event answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<MessageId>,
    /// The card involved, when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardId>,
    /// The pass after the event (trips and time remaining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<PassInfo>,
    /// `pass-denied`: the deny reason; `rejected`: the reject reason; blocks: the operator's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `rejected`: what was wrong; blocks: the operator who acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the tap behind this event happened (Unix ms), when it was stamped; on the bridge's
    /// clock when `clock` is `bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_time: Option<u64>,
    /// The stamped tap's mode: `offline` for an entry a fail-open gate already allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TapMode>,
    /// Which clock `tap_time` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockSource>,
    /// `clock-skew`: the device's clock minus the bridge's, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_ms: Option<i64>,
    /// `pass-issued`, `pass-voided`: what the sale took, minor units of `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    /// The currency of `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// `pass-issued`, `pass-voided`: the service day whose revenue the sale counts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<jiff::civil::Date>,
    /// `fare-charged`, `topped-up`: the card's pay-as-you-go balance afterwards, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    /// MQTT only: the stream entry id of this event, for de-duplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<String>,
}

impl Event {
    /// An event of `event` at `time` with every optional field empty.
    pub fn new(event: EventKind, time: u64) -> Self {
        Self {
            event,
            time,
            device: None,
            device_kind: None,
            id: None,
            card: None,
            pass: None,
            reason: None,
            detail: None,
            tap_time: None,
            mode: None,
            clock: None,
            skew_ms: None,
            price: None,
            currency: None,
            day: None,
            balance: None,
            seq: None,
        }
    }

    /// The product this event is about, for the topic suffix.
    pub fn pass_type(&self) -> Option<ProductId> {
        self.pass.as_ref().map(|p| p.pass_type)
    }

    /// The deny reason of a `pass-denied` event.
    pub fn deny_reason(&self) -> Option<DenyReason> {
        self.reason.as_deref().and_then(DenyReason::parse)
    }

    /// Serialises to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Parses an event from JSON (unknown fields are ignored, for forward compatibility).
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let mut e = Event::new(EventKind::PassUsed, 1_700_000_000_000);
        e.device = DeviceId::new("g1").ok();
        e.device_kind = Some(DeviceKind::Gate);
        e.card = CardId::new("42").ok();
        e.pass = Some(PassInfo {
            pass_type: ProductId::TEN_TRIP,
            trips_remaining: Some(3),
            expires_at: None,
            remaining_ms: None,
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"event": "pass-used", "time": 1_700_000_000_000u64, "device": "g1",
                "device_kind": "gate", "card": "42", "pass": {"type": "TEN_TRIP", "trips_remaining": 3}})
        );
        assert_eq!(Event::from_json(e.to_json().as_bytes()).expect("parse"), e);
        assert_eq!(e.pass_type(), Some(ProductId::TEN_TRIP));
    }

    #[test]
    fn kinds() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn notice_wire_format() {
        let mut n = Notice::new(EventKind::UnpaidEntry, 2_000);
        n.reason = Some("no_pass".into());
        n.tap_time = Some(1_000);
        n.mode = Some(TapMode::Offline);
        n.clock = Some(ClockSource::Device);
        let v: serde_json::Value = serde_json::from_str(&n.to_json()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"event": "unpaid-entry", "time": 2000, "reason": "no_pass",
                "tap_time": 1000, "mode": "offline", "clock": "device"})
        );
        assert_eq!(Event::from_json(n.to_json().as_bytes()).expect("parse"), n);
    }
}
