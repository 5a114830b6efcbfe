//! Events as entries of the Redis stream [`crate::keys::EVENTS_STREAM`].
//!
//! An entry holds one [`Event`] as one stream field per event field, named by the constants
//! below, each value a plain string (numbers in decimal). A field the event does not have is
//! either absent or empty. The bridge's decide script always writes the same fields in the same
//! order ([`DECIDE_FIELDS`]), so Redis stores their names once per stream node rather than once
//! per entry; `remaining_ms` is not stored, as it follows from `expires_at` and the time the
//! rules ran at ([`rules_time`]).
//!
//! Entries written before this layout hold the event's JSON in the single field [`EVENT`]; they
//! are still read ([`Event::from_stream`]).

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::event::Event;
use crate::message::TapMode;

/// The event kind (`pass-used`, …); in an entry from before this layout, the whole event's JSON.
pub const EVENT: &str = "event";
/// [`Event::time`], Unix ms.
pub const TIME: &str = "time";
/// [`Event::device`].
pub const DEVICE: &str = "device";
/// [`Event::device_kind`].
pub const DEVICE_KIND: &str = "device_kind";
/// [`Event::id`].
pub const ID: &str = "id";
/// [`Event::card`].
pub const CARD: &str = "card";
/// The pass type of [`Event::pass`].
pub const PASS: &str = "pass";
/// Ten-trip passes: `trips_remaining` of [`Event::pass`].
pub const TRIPS: &str = "trips";
/// `expires_at` of [`Event::pass`], Unix ms.
pub const EXPIRES_AT: &str = "expires_at";
/// [`Event::reason`].
pub const REASON: &str = "reason";
/// [`Event::detail`].
pub const DETAIL: &str = "detail";
/// [`Event::tap_time`], Unix ms.
pub const TAP_TIME: &str = "tap_time";
/// [`Event::mode`].
pub const MODE: &str = "mode";
/// [`Event::clock`].
pub const CLOCK: &str = "clock";
/// [`Event::skew_ms`].
pub const SKEW_MS: &str = "skew_ms";

/// Every field an entry may have, in the order writers use.
pub const FIELDS: [&str; 15] = [
    EVENT,
    TIME,
    DEVICE,
    DEVICE_KIND,
    ID,
    CARD,
    PASS,
    TRIPS,
    EXPIRES_AT,
    REASON,
    DETAIL,
    TAP_TIME,
    MODE,
    CLOCK,
    SKEW_MS,
];

/// The fields the decide script writes on every entry, in this order, empty when unused.
pub const DECIDE_FIELDS: [&str; 13] = [
    EVENT,
    TIME,
    DEVICE,
    DEVICE_KIND,
    ID,
    CARD,
    PASS,
    TRIPS,
    EXPIRES_AT,
    REASON,
    TAP_TIME,
    MODE,
    CLOCK,
];

/// Why a stream entry is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The entry has no `event` field.
    #[error("no `event` field")]
    MissingField,
    /// A field is not text.
    #[error("field `{0}` is not text")]
    NotText(String),
    /// A number field does not hold a number.
    #[error("field `{0}` is not a number")]
    NotNumber(&'static str),
    /// The fields (or, in the older layout, the JSON) do not make an event.
    #[error("not an event: {0}")]
    BadEvent(String),
}

/// The time the rules ran at for an event: the tap's time for an offline entry, else the
/// bridge's. A pass's `remaining_ms` is its `expires_at` less this.
pub fn rules_time(time: u64, tap_time: Option<u64>, mode: Option<TapMode>) -> u64 {
    match (mode, tap_time) {
        (Some(TapMode::Offline), Some(t)) => t,
        _ => time,
    }
}

impl Event {
    /// The entry's fields: every field the event has, in [`FIELDS`] order.
    pub fn stream_fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (EVENT, self.event.as_str().to_owned()),
            (TIME, self.time.to_string()),
        ];
        let mut put = |name: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, v));
            }
        };
        put(DEVICE, self.device.as_ref().map(|d| d.as_str().to_owned()));
        put(DEVICE_KIND, self.device_kind.map(|k| k.as_str().to_owned()));
        put(ID, self.id.as_ref().map(|i| i.as_str().to_owned()));
        put(CARD, self.card.as_ref().map(|c| c.as_str().to_owned()));
        let pass = self.pass.as_ref();
        put(PASS, pass.map(|p| p.pass_type.as_str().to_owned()));
        put(
            TRIPS,
            pass.and_then(|p| p.trips_remaining).map(|t| t.to_string()),
        );
        put(
            EXPIRES_AT,
            pass.and_then(|p| p.expires_at).map(|t| t.to_string()),
        );
        put(REASON, self.reason.clone());
        put(DETAIL, self.detail.clone());
        put(TAP_TIME, self.tap_time.map(|t| t.to_string()));
        put(MODE, self.mode.map(|m| m.as_str().to_owned()));
        put(CLOCK, self.clock.map(|c| c.as_str().to_owned()));
        put(SKEW_MS, self.skew_ms.map(|s| s.to_string()));
        out
    }

    /// Reads an event from an entry's fields (`get` returns a field's value, `None` when the
    /// entry has no such field); an empty value is an absent field. An entry from before this
    /// layout (its `event` field holding JSON, and no `time`) is read as that JSON.
    pub fn from_stream<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Event, EntryError> {
        let kind = get(EVENT).ok_or(EntryError::MissingField)?;
        if get(TIME).is_none() && kind.starts_with('{') {
            return Event::from_json(kind.as_bytes())
                .map_err(|e| EntryError::BadEvent(e.to_string()));
        }
        let text = |name: &str| get(name).filter(|v| !v.is_empty());
        let number = |name: &'static str| -> Result<Option<Value>, EntryError> {
            match text(name) {
                None => Ok(None),
                Some(v) => {
                    let n = if v.starts_with('-') {
                        v.parse::<i64>().map(Number::from).ok()
                    } else {
                        v.parse::<u64>().map(Number::from).ok()
                    };
                    n.map(|n| Some(Value::Number(n)))
                        .ok_or(EntryError::NotNumber(name))
                }
            }
        };
        let mut obj = Map::new();
        obj.insert(EVENT.into(), Value::String(kind.to_owned()));
        for name in [DEVICE, DEVICE_KIND, ID, CARD, REASON, DETAIL, MODE, CLOCK] {
            if let Some(v) = text(name) {
                obj.insert(name.into(), Value::String(v.to_owned()));
            }
        }
        for name in [TIME, TAP_TIME, SKEW_MS] {
            if let Some(v) = number(name)? {
                obj.insert(name.into(), v);
            }
        }
        if let Some(t) = text(PASS) {
            let mut pass = Map::new();
            pass.insert("type".into(), Value::String(t.to_owned()));
            if let Some(v) = number(TRIPS)? {
                pass.insert("trips_remaining".into(), v);
            }
            if let Some(Value::Number(e)) = number(EXPIRES_AT)? {
                let time = number(TIME)?.and_then(|v| v.as_u64()).unwrap_or(0);
                let tap_time = number(TAP_TIME)?.and_then(|v| v.as_u64());
                let mode = text(MODE).and_then(TapMode::parse);
                let at = rules_time(time, tap_time, mode);
                let left = e.as_u64().map(|e| e.saturating_sub(at));
                pass.insert("expires_at".into(), Value::Number(e));
                if let Some(left) = left {
                    pass.insert("remaining_ms".into(), Value::from(left));
                }
            }
            obj.insert(PASS.into(), Value::Object(pass));
        }
        serde_json::from_value(Value::Object(obj)).map_err(|e| EntryError::BadEvent(e.to_string()))
    }

    /// [`Event::from_stream`] over a map of field names to values.
    pub fn from_stream_map(fields: &BTreeMap<String, String>) -> Result<Event, EntryError> {
        Event::from_stream(|name| fields.get(name).map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::ids::{CardId, DeviceId, DeviceKind, MessageId};
    use crate::message::{ClockSource, PassInfo, PassType};

    fn round_trip(e: &Event) -> Event {
        let map: BTreeMap<String, String> = e
            .stream_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Event::from_stream_map(&map).expect("reads back")
    }

    fn used(mode: Option<TapMode>, tap_time: Option<u64>) -> Event {
        let mut e = Event::new(EventKind::PassUsed, 10_000);
        e.device = DeviceId::new("g1").ok();
        e.device_kind = Some(DeviceKind::Gate);
        e.id = MessageId::new("g1-7").ok();
        e.card = CardId::new("04AB").ok();
        e.tap_time = tap_time;
        e.mode = mode;
        e.clock = mode.map(|_| ClockSource::Device);
        let at = rules_time(10_000, tap_time, mode);
        e.pass = Some(PassInfo {
            pass_type: PassType::TwoHour,
            trips_remaining: None,
            expires_at: Some(12_000),
            remaining_ms: Some(12_000 - at),
        });
        e
    }

    #[test]
    fn fields_round_trip() {
        for e in [
            used(None, None),
            used(Some(TapMode::Online), Some(9_990)),
            used(Some(TapMode::Offline), Some(4_000)),
        ] {
            assert_eq!(round_trip(&e), e);
        }
        let mut ten = Event::new(EventKind::PassIssued, 5);
        ten.pass = Some(PassInfo::new(PassType::TenTrip));
        assert_eq!(round_trip(&ten), ten);
        let mut skew = Event::new(EventKind::ClockSkew, 5);
        skew.reason = Some("clock_off".into());
        skew.skew_ms = Some(-90_000);
        assert_eq!(round_trip(&skew), skew);
        let mut rejected = Event::new(EventKind::Rejected, 5);
        rejected.detail = Some("tab\there, \"quotes\" and\nnewlines".into());
        assert_eq!(round_trip(&rejected), rejected);
    }

    #[test]
    fn empty_fields_are_absent_and_json_entries_still_read() {
        let e = used(None, None);
        let mut map: BTreeMap<String, String> = DECIDE_FIELDS
            .iter()
            .map(|f| ((*f).to_owned(), String::new()))
            .collect();
        for (k, v) in e.stream_fields() {
            map.insert(k.to_owned(), v);
        }
        assert_eq!(Event::from_stream_map(&map), Ok(e.clone()));
        let old: BTreeMap<String, String> = [(EVENT.to_owned(), e.to_json())].into();
        assert_eq!(Event::from_stream_map(&old), Ok(e));
    }

    #[test]
    fn unreadable_entries_say_why() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            Event::from_stream_map(&map(&[("other", "x")])),
            Err(EntryError::MissingField)
        );
        assert!(matches!(
            Event::from_stream_map(&map(&[(EVENT, "{not json")])),
            Err(EntryError::BadEvent(_))
        ));
        assert_eq!(
            Event::from_stream_map(&map(&[(EVENT, "pass-used"), (TIME, "soon")])),
            Err(EntryError::NotNumber(TIME))
        );
        assert!(matches!(
            Event::from_stream_map(&map(&[(EVENT, "pass-eaten"), (TIME, "1")])),
            Err(EntryError::BadEvent(_))
        ));
        assert!(matches!(
            Event::from_stream_map(&map(&[
                (EVENT, "pass-used"),
                (TIME, "1"),
                (CARD, "not a card!")
            ])),
            Err(EntryError::BadEvent(_))
        ));
    }

    #[test]
    fn decide_fields_are_fields_in_order() {
        let order: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| DECIDE_FIELDS.contains(f))
            .collect();
        assert_eq!(order, DECIDE_FIELDS);
    }
}
