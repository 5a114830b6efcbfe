//! Events as entries of the Redis stream [`crate::keys::EVENTS_STREAM`].
//!
//! An entry holds one [`Event`] as one stream field per event field, named by the constants
//! below, each value a plain string (numbers in decimal). A field the event does not have is
//! either absent or empty. The bridge's decide script writes one of two fixed layouts: every
//! field of [`DECIDE_FIELDS`] on an entry with an amount (a sale, a top-up, a fare charged), and
//! the same without the last four ([`AMOUNT_FIELDS`]) on every other entry. A stream node stores
//! its first entry's field names once and, for each later entry with the same fields, only the
//! values: the common layout (a pass used, a denial) is stored compactly, and entries with an
//! amount, far fewer, carry their names. `remaining_ms` is not stored, as it follows from
//! `expires_at` and the time the rules ran at ([`rules_time`]).
//!
//! Entries written before this layout hold the event's JSON in the single field [`EVENT`]; they
//! are still read ([`Event::from_stream`]).

use std::collections::BTreeMap;

use crate::event::{Event, EventKind};
use crate::fares::Currency;
use crate::ids::ProductId;
use crate::ids::{CardId, DeviceId, DeviceKind, MessageId};
use crate::message::{ClockSource, PassInfo, TapMode};

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
/// The product of [`Event::pass`].
pub const PASS: &str = "pass";
/// A `trips` pass: `trips_remaining` of [`Event::pass`].
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
/// [`Event::price`], minor units.
pub const PRICE: &str = "price";
/// [`Event::currency`].
pub const CURRENCY: &str = "currency";
/// [`Event::day`], `YYYY-MM-DD`.
pub const DAY: &str = "day";
/// [`Event::balance`], minor units.
pub const BALANCE: &str = "balance";

/// Every field an entry may have, in the order writers use.
pub const FIELDS: [&str; 19] = [
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
    PRICE,
    CURRENCY,
    DAY,
    BALANCE,
];

/// The fields the decide script writes on an entry with an amount, in this order, empty when
/// unused; other entries have all but the last four ([`AMOUNT_FIELDS`]).
pub const DECIDE_FIELDS: [&str; 17] = [
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
    PRICE,
    CURRENCY,
    DAY,
    BALANCE,
];

/// The fields of an amount: the decide script writes them (last, in this order) only on
/// entries that have one.
pub const AMOUNT_FIELDS: [&str; 4] = [PRICE, CURRENCY, DAY, BALANCE];

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
        put(PRICE, self.price.map(|p| p.to_string()));
        put(CURRENCY, self.currency.map(|c| c.as_str().to_owned()));
        put(DAY, self.day.map(|d| d.to_string()));
        put(BALANCE, self.balance.map(|b| b.to_string()));
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
        let number = |name: &'static str| -> Result<Option<u64>, EntryError> {
            text(name)
                .map(|v| v.parse::<u64>().map_err(|_| EntryError::NotNumber(name)))
                .transpose()
        };
        // A value that does not name one of its type's values.
        let unknown = |name: &str, v: &str| {
            EntryError::BadEvent(format!(
                "{name} {:?} is not known",
                crate::text::escape_untrusted(v, 80)
            ))
        };
        let id = |e: crate::ids::IdError| EntryError::BadEvent(e.to_string());
        let event = EventKind::parse(kind).ok_or_else(|| unknown(EVENT, kind))?;
        let time = number(TIME)?.ok_or_else(|| EntryError::BadEvent("no `time`".into()))?;
        let mut e = Event::new(event, time);
        e.device = text(DEVICE).map(DeviceId::new).transpose().map_err(id)?;
        e.device_kind = text(DEVICE_KIND)
            .map(|v| DeviceKind::parse(v).ok_or_else(|| unknown(DEVICE_KIND, v)))
            .transpose()?;
        e.id = text(ID).map(MessageId::new).transpose().map_err(id)?;
        e.card = text(CARD).map(CardId::new).transpose().map_err(id)?;
        e.reason = text(REASON).map(str::to_owned);
        e.detail = text(DETAIL).map(str::to_owned);
        e.tap_time = number(TAP_TIME)?;
        e.mode = text(MODE)
            .map(|v| TapMode::parse(v).ok_or_else(|| unknown(MODE, v)))
            .transpose()?;
        e.clock = text(CLOCK)
            .map(|v| ClockSource::parse(v).ok_or_else(|| unknown(CLOCK, v)))
            .transpose()?;
        e.skew_ms = text(SKEW_MS)
            .map(|v| v.parse::<i64>().map_err(|_| EntryError::NotNumber(SKEW_MS)))
            .transpose()?;
        e.price = number(PRICE)?;
        e.currency = text(CURRENCY)
            .map(|v| Currency::parse(v).ok_or_else(|| unknown(CURRENCY, v)))
            .transpose()?;
        e.day = text(DAY)
            .map(|v| v.parse::<jiff::civil::Date>().map_err(|_| unknown(DAY, v)))
            .transpose()?;
        e.balance = text(BALANCE)
            .map(|v| v.parse::<i64>().map_err(|_| EntryError::NotNumber(BALANCE)))
            .transpose()?;
        if let Some(t) = text(PASS) {
            let pass_type = ProductId::parse(t).ok_or_else(|| unknown(PASS, t))?;
            let trips_remaining = text(TRIPS)
                .map(|v| v.parse::<u32>().map_err(|_| EntryError::NotNumber(TRIPS)))
                .transpose()?;
            let expires_at = number(EXPIRES_AT)?;
            let at = rules_time(e.time, e.tap_time, e.mode);
            e.pass = Some(PassInfo {
                pass_type,
                trips_remaining,
                expires_at,
                remaining_ms: expires_at.map(|x| x.saturating_sub(at)),
            });
        }
        Ok(e)
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
    use crate::message::{ClockSource, PassInfo};

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
            pass_type: ProductId::TWO_HOUR,
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
        let builtin = crate::fares::Catalogue::builtin(1);
        let terms = builtin.product(ProductId::TEN_TRIP).expect("ten").terms;
        ten.pass = Some(PassInfo::new(&terms, None, 5));
        ten.price = Some(2_000);
        ten.currency = Some(Currency::EUR);
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
        for (field, value) in [
            (DEVICE_KIND, "kiosk"),
            (MODE, "later"),
            (CLOCK, "sundial"),
            (PASS, "day pass"),
            (CURRENCY, "euro"),
            (DEVICE, "g 1"),
        ] {
            assert!(
                matches!(
                    Event::from_stream_map(&map(&[
                        (EVENT, "pass-used"),
                        (TIME, "1"),
                        (field, value)
                    ])),
                    Err(EntryError::BadEvent(_))
                ),
                "{field}"
            );
        }
        for (field, value) in [(TAP_TIME, "-5"), (SKEW_MS, "x"), (EXPIRES_AT, "1e3")] {
            assert_eq!(
                Event::from_stream_map(&map(&[
                    (EVENT, "pass-used"),
                    (TIME, "1"),
                    (PASS, "TWO_HOUR"),
                    (field, value)
                ])),
                Err(EntryError::NotNumber(field)),
                "{field}"
            );
        }
        assert_eq!(
            Event::from_stream_map(&map(&[
                (EVENT, "pass-used"),
                (TIME, "1"),
                (PASS, "TEN_TRIP"),
                (TRIPS, "-1")
            ])),
            Err(EntryError::NotNumber(TRIPS))
        );
    }

    #[test]
    fn decide_fields_are_fields_in_order() {
        let order: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| DECIDE_FIELDS.contains(f))
            .collect();
        assert_eq!(order, DECIDE_FIELDS);
        assert_eq!(DECIDE_FIELDS[DECIDE_FIELDS.len() - 4..], AMOUNT_FIELDS);
    }

    #[test]
    fn a_sale_and_its_void_keep_their_service_day() {
        for kind in [EventKind::PassIssued, EventKind::PassVoided] {
            let mut e = Event::new(kind, 10_000);
            e.price = Some(750);
            e.currency = Currency::parse("EUR");
            e.day = "2026-12-06".parse().ok();
            e.detail = (kind == EventKind::PassVoided).then(|| "alice".to_owned());
            assert_eq!(round_trip(&e), e);
        }
        let mut map = BTreeMap::new();
        map.insert(EVENT.to_owned(), "pass-issued".to_owned());
        map.insert(TIME.to_owned(), "1".to_owned());
        map.insert(DAY.to_owned(), "2026-13-40".to_owned());
        assert!(Event::from_stream_map(&map).is_err());
    }
}
