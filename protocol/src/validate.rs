//! Validation of device input.
//!
//! Devices are untrusted. [`parse_tap`] and [`parse_button`] accept exactly the contract and
//! refuse everything else with a [`Rejection`] naming the rule that was broken, and the message id
//! when it could be read, so the refusal can be answered on the device's decision topic.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::ProductId;
use crate::ids::{CardId, IdError, MessageId};
use crate::message::{Button, Stamp, Tap, TapMode};
use crate::status::Heartbeat;
use crate::text::escape_untrusted;
use crate::topic::TopicError;

/// Largest payload accepted from a device, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024;

/// Longest refusal detail, in characters (after escaping).
pub const MAX_DETAIL_CHARS: usize = 200;

/// Which rule a refused message broke. The wire name is also the counter field in
/// `tapgate:counters:rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// More than [`MAX_PAYLOAD_BYTES`].
    PayloadTooLarge,
    /// Not valid UTF-8.
    NotUtf8,
    /// Not parseable as JSON.
    MalformedJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A required field is absent.
    MissingField,
    /// A field the contract does not define.
    UnknownField,
    /// A field has the wrong JSON type.
    WrongType,
    /// `id` breaks the id rule.
    InvalidId,
    /// `card` breaks the card rule.
    InvalidCard,
    /// `pass` is not a product id (1–32 of `A-Z 0-9 _`), or names no product of the bridge's
    /// catalogue.
    UnknownPassType,
    /// The topic is not a device topic of the contract.
    BadTopic,
    /// A valid device published something it may not send (a gate's button, a decision).
    UnsupportedMessage,
    /// A tap or button published with the retain flag: it would fire again for every subscriber.
    Retained,
    /// A JSON object names the same field twice (which one would count is ambiguous).
    DuplicateField,
    /// The device reused a message id it had already sent with different content; the stored
    /// decision for that id stands and nothing changed.
    IdReused,
    /// The bridge could not decide the message (a stored record it cannot read, or Redis refused
    /// the operation). It is answered once and not retried; an operator has to look.
    InternalError,
    /// The message's `"time"` is further ahead of the bridge's clock than the bridge allows: the
    /// device's clock cannot be trusted for it. Nothing was decided or charged.
    TimeInFuture,
    /// `"mode": "offline"` on a message that cannot be an entry already made: a terminal tap or a
    /// button press. Nothing was decided or charged.
    OfflineNotAllowed,
    /// An offline entry that happened longer ago than the bridge accepts (`--max-offline-age`):
    /// older than a gate is meant to hold one, or stamped by a clock that was never set. Nothing
    /// was decided or charged.
    TimeTooOld,
    /// The device sent more messages than the bridge's per-device rate limit allows; nothing was
    /// decided or charged. Only the first refusal in a second is answered.
    RateLimited,
}

impl RejectReason {
    /// Every reason, for dashboards and tests.
    pub const ALL: [RejectReason; 20] = [
        RejectReason::PayloadTooLarge,
        RejectReason::NotUtf8,
        RejectReason::MalformedJson,
        RejectReason::NotAnObject,
        RejectReason::MissingField,
        RejectReason::UnknownField,
        RejectReason::WrongType,
        RejectReason::InvalidId,
        RejectReason::InvalidCard,
        RejectReason::UnknownPassType,
        RejectReason::BadTopic,
        RejectReason::UnsupportedMessage,
        RejectReason::Retained,
        RejectReason::DuplicateField,
        RejectReason::IdReused,
        RejectReason::InternalError,
        RejectReason::TimeInFuture,
        RejectReason::OfflineNotAllowed,
        RejectReason::TimeTooOld,
        RejectReason::RateLimited,
    ];

    /// The wire name, e.g. `unknown_field`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::InvalidCard => "invalid_card",
            RejectReason::UnknownPassType => "unknown_pass_type",
            RejectReason::BadTopic => "bad_topic",
            RejectReason::UnsupportedMessage => "unsupported_message",
            RejectReason::Retained => "retained",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::IdReused => "id_reused",
            RejectReason::InternalError => "internal_error",
            RejectReason::TimeInFuture => "time_in_future",
            RejectReason::OfflineNotAllowed => "offline_not_allowed",
            RejectReason::TimeTooOld => "time_too_old",
            RejectReason::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: the rule, an explanation, and the message id if it could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The rule broken.
    pub reason: RejectReason,
    /// What exactly was wrong, for the device's log and the operator.
    pub detail: String,
    /// The message id, when the payload held a valid one.
    pub id: Option<MessageId>,
}

impl Rejection {
    /// A rejection without a known id. The detail is escaped and capped
    /// ([`MAX_DETAIL_CHARS`]): it may quote what a device sent.
    pub fn new(reason: RejectReason, detail: impl AsRef<str>) -> Self {
        Self {
            reason,
            detail: escape_untrusted(detail.as_ref(), MAX_DETAIL_CHARS),
            id: None,
        }
    }

    /// The same rejection, answering message `id`.
    pub fn with_id(self, id: Option<MessageId>) -> Self {
        Self { id, ..self }
    }
}

impl From<&TopicError> for Rejection {
    fn from(e: &TopicError) -> Self {
        let reason = match e {
            TopicError::UnsupportedMessage { .. } => RejectReason::UnsupportedMessage,
            _ => RejectReason::BadTopic,
        };
        Rejection::new(reason, e.to_string())
    }
}

/// Parses a tap payload: `{"id": "...", "card": "...", "time": <Unix ms>, "mode": "online" |
/// "offline"}`, where `time` and `mode` come together or not at all (a payload from before
/// stamps; see [`parse_tap_stamped`]). A stamped tap may add `"replaces": "<id>"`, the waiting tap
/// it replaces ([`Tap::replaces`]); on an unstamped tap that field is refused.
pub fn parse_tap(payload: &[u8]) -> Result<Tap, Rejection> {
    parse_tap_stamped(payload).map(|(tap, _)| tap)
}

/// [`parse_tap`], with the stamp when the payload has one.
pub fn parse_tap_stamped(payload: &[u8]) -> Result<(Tap, Option<Stamp>), Rejection> {
    let (obj, id) = object_with_id(payload, &["id", "card", "time", "mode", "replaces"])?;
    let card = string_field(&obj, "card", &id)?;
    let card = CardId::new(card).map_err(|e| invalid(RejectReason::InvalidCard, e, &id))?;
    let stamp = stamp(&obj, &id)?;
    let replaces = match obj.get("replaces") {
        None => None,
        Some(_) if stamp.is_none() => {
            return Err(Rejection::new(
                RejectReason::UnknownField,
                "field \"replaces\" names the waiting tap an offline entry or a retap \
                 replaces; it is only allowed with \"time\" and \"mode\"",
            )
            .with_id(Some(id)))
        }
        Some(_) => {
            let named = string_field(&obj, "replaces", &id)?;
            let named = MessageId::new(named).map_err(|e| {
                Rejection::new(RejectReason::InvalidId, format!("field \"replaces\": {e}"))
                    .with_id(Some(id.clone()))
            })?;
            if named == id {
                return Err(Rejection::new(
                    RejectReason::InvalidId,
                    "field \"replaces\" names the tap itself; it names the waiting tap this \
                     one replaces",
                )
                .with_id(Some(id)));
            }
            Some(named)
        }
    };
    Ok((Tap { id, card, replaces }, stamp))
}

/// Parses a button payload: `{"id": "...", "pass": "<product id>",
/// "time": <Unix ms>, "mode": "online"}` (`time` and `mode` together or not at all; a button is
/// never offline).
pub fn parse_button(payload: &[u8]) -> Result<Button, Rejection> {
    parse_button_stamped(payload).map(|(button, _)| button)
}

/// [`parse_button`], with the stamp when the payload has one.
pub fn parse_button_stamped(payload: &[u8]) -> Result<(Button, Option<Stamp>), Rejection> {
    let (obj, id) = object_with_id(payload, &["id", "pass", "time", "mode"])?;
    let pass = string_field(&obj, "pass", &id)?;
    let pass = ProductId::new(pass).map_err(|e| {
        Rejection::new(
            RejectReason::UnknownPassType,
            format!(
                "pass {:?} is not a product id: {e}",
                crate::text::escape_untrusted(&truncate(pass), 80)
            ),
        )
        .with_id(Some(id.clone()))
    })?;
    let stamp = stamp(&obj, &id)?;
    if stamp.is_some_and(|s| s.mode == TapMode::Offline) {
        return Err(Rejection::new(
            RejectReason::OfflineNotAllowed,
            "a button press is never an offline entry; send \"mode\": \"online\"",
        )
        .with_id(Some(id)));
    }
    Ok((Button { id, pass }, stamp))
}

/// The `time` and `mode` fields: both or neither.
fn stamp(obj: &Map<String, Value>, id: &MessageId) -> Result<Option<Stamp>, Rejection> {
    let refuse =
        |reason, detail: String| Err(Rejection::new(reason, detail).with_id(Some(id.clone())));
    let time = match obj.get("time") {
        None => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(t) => Some(t),
            None => {
                return refuse(
                    RejectReason::WrongType,
                    "field \"time\" is not a non-negative integer (Unix ms)".into(),
                )
            }
        },
        Some(other) => {
            return refuse(
                RejectReason::WrongType,
                format!(
                    "field \"time\" is a {}, expected a number (Unix ms)",
                    type_name(other)
                ),
            )
        }
    };
    let mode = match obj.get("mode") {
        None => None,
        Some(Value::String(m)) => match TapMode::parse(m) {
            Some(mode) => Some(mode),
            None => {
                return refuse(
                    RejectReason::WrongType,
                    format!(
                        "unknown mode {:?}; expected \"online\" or \"offline\"",
                        truncate(m)
                    ),
                )
            }
        },
        Some(other) => {
            return refuse(
                RejectReason::WrongType,
                format!(
                    "field \"mode\" is a {}, expected a string",
                    type_name(other)
                ),
            )
        }
    };
    match (time, mode) {
        (Some(time), Some(mode)) => Ok(Some(Stamp { time, mode })),
        (None, None) => Ok(None),
        (Some(_), None) => refuse(
            RejectReason::MissingField,
            "missing field \"mode\" (\"time\" and \"mode\" come together)".into(),
        ),
        (None, Some(_)) => refuse(
            RejectReason::MissingField,
            "missing field \"time\" (\"time\" and \"mode\" come together)".into(),
        ),
    }
}

/// Parses a heartbeat payload: `{"uptime_s": <non-negative integer>, "clock_ms": <Unix ms>}`
/// (`clock_ms` optional) and nothing else.
pub fn parse_heartbeat(payload: &[u8]) -> Result<Heartbeat, Rejection> {
    parse_heartbeat_clock(payload).map(|(h, _)| h)
}

/// [`parse_heartbeat`], with the device's clock when the heartbeat reports it.
pub fn parse_heartbeat_clock(payload: &[u8]) -> Result<(Heartbeat, Option<u64>), Rejection> {
    let obj = object(payload)?;
    unknown_fields(&obj, &["uptime_s", "clock_ms"], None)?;
    let clock = match obj.get("clock_ms") {
        None => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            Rejection::new(
                RejectReason::WrongType,
                "field \"clock_ms\" is not a non-negative integer (Unix ms)",
            )
        })?),
        Some(other) => {
            return Err(Rejection::new(
                RejectReason::WrongType,
                format!(
                    "field \"clock_ms\" is a {}, expected a number",
                    type_name(other)
                ),
            ))
        }
    };
    let heartbeat = match obj.get("uptime_s") {
        None => Err(Rejection::new(
            RejectReason::MissingField,
            "missing field \"uptime_s\"",
        )),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|uptime_s| Heartbeat { uptime_s })
            .ok_or_else(|| {
                Rejection::new(
                    RejectReason::WrongType,
                    "field \"uptime_s\" is not a non-negative integer",
                )
            }),
        Some(other) => Err(Rejection::new(
            RejectReason::WrongType,
            format!(
                "field \"uptime_s\" is a {}, expected a number",
                type_name(other)
            ),
        )),
    }?;
    Ok((heartbeat, clock))
}

/// Parses a status payload: `online` (true) or `offline` (false), nothing else.
pub fn parse_status_payload(payload: &[u8]) -> Result<bool, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(too_large(payload.len()));
    }
    crate::status::parse_status(payload).ok_or_else(|| {
        Rejection::new(
            RejectReason::MalformedJson,
            "status must be \"online\" or \"offline\"",
        )
    })
}

fn too_large(len: usize) -> Rejection {
    Rejection::new(
        RejectReason::PayloadTooLarge,
        format!("payload is {len} bytes, at most {MAX_PAYLOAD_BYTES} allowed"),
    )
}

/// Checks size, encoding, JSON syntax (refusing duplicate keys at any depth) and object shape.
fn object(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(too_large(payload.len()));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Rejection::new(RejectReason::NotUtf8, format!("payload is not UTF-8: {e}")))?;
    let value = strict::parse(text).map_err(|e| match e {
        strict::Error::Duplicate(detail) => Rejection::new(RejectReason::DuplicateField, detail),
        strict::Error::Json(e) => Rejection::new(
            RejectReason::MalformedJson,
            format!("payload is not JSON: {e}"),
        ),
    })?;
    match value {
        Value::Object(obj) => Ok(obj),
        other => Err(Rejection::new(
            RejectReason::NotAnObject,
            format!(
                "payload is a JSON {}, expected an object",
                type_name(&other)
            ),
        )),
    }
}

/// [`object`], then the id and the field names; returns the object and the id so the caller can
/// read the remaining fields.
fn object_with_id(
    payload: &[u8],
    fields: &[&'static str],
) -> Result<(Map<String, Value>, MessageId), Rejection> {
    let obj = object(payload)?;
    // Read the id first so that every later refusal can be answered with it.
    let id = match obj.get("id") {
        None => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "missing field \"id\"",
            ))
        }
        Some(Value::String(s)) => MessageId::new(s.as_str())
            .map_err(|e| Rejection::new(RejectReason::InvalidId, e.to_string()))?,
        Some(other) => {
            return Err(Rejection::new(
                RejectReason::WrongType,
                format!("field \"id\" is a {}, expected a string", type_name(other)),
            ))
        }
    };
    unknown_fields(&obj, fields, Some(&id))?;
    Ok((obj, id))
}

fn unknown_fields(
    obj: &Map<String, Value>,
    fields: &[&'static str],
    id: Option<&MessageId>,
) -> Result<(), Rejection> {
    match obj.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(unknown) => Err(Rejection::new(
            RejectReason::UnknownField,
            format!(
                "unknown field {:?}; allowed: {}",
                truncate(unknown),
                fields.join(", ")
            ),
        )
        .with_id(id.cloned())),
        None => Ok(()),
    }
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
    id: &MessageId,
) -> Result<&'a str, Rejection> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        None => Err(Rejection::new(
            RejectReason::MissingField,
            format!("missing field {name:?}"),
        )
        .with_id(Some(id.clone()))),
        Some(other) => Err(Rejection::new(
            RejectReason::WrongType,
            format!(
                "field {name:?} is a {}, expected a string",
                type_name(other)
            ),
        )
        .with_id(Some(id.clone()))),
    }
}

fn invalid(reason: RejectReason, e: IdError, id: &MessageId) -> Rejection {
    Rejection::new(reason, e.to_string()).with_id(Some(id.clone()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Keeps quoted device text short whatever a device sent (quote it with `{:?}`; the whole detail is
/// escaped by [`Rejection::new`]).
fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// JSON parsing that refuses an object naming a field twice, at any depth. (`serde_json`'s own
/// `Value` keeps the last of duplicate keys, so `{"card":"x","card":"D0"}` would read as `D0`.)
mod strict {
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    const DUPLICATE: &str = "duplicate field ";

    pub(super) enum Error {
        /// An object names a field twice; the text names the field and where.
        Duplicate(String),
        /// Any other reason the text is not JSON.
        Json(serde_json::Error),
    }

    pub(super) fn parse(text: &str) -> Result<Value, Error> {
        match serde_json::from_str::<Strict>(text) {
            Ok(Strict(v)) => Ok(v),
            Err(e) if e.is_data() && e.to_string().starts_with(DUPLICATE) => {
                Err(Error::Duplicate(e.to_string()))
            }
            Err(e) => Err(Error::Json(e)),
        }
    }

    struct Strict(Value);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Strict(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format_args!(
                        "{DUPLICATE}{:?}",
                        super::truncate(&key)
                    )));
                }
                let Strict(v) = map.next_value()?;
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(r: Result<Tap, Rejection>) -> RejectReason {
        r.expect_err("should be refused").reason
    }

    #[test]
    fn accepts_contract() {
        let t = parse_tap(br#"{"id":"g1-1","card":"123456"}"#).expect("tap");
        assert_eq!(t.card.as_str(), "123456");
        let b = parse_button(br#"{"pass":"TWO_HOUR","id":"t1-1"}"#).expect("button");
        assert_eq!(b.pass, ProductId::TWO_HOUR);
    }

    #[test]
    fn refuses_each_class() {
        use RejectReason::*;
        let big = format!(r#"{{"id":"a","card":"{}"}}"#, "1".repeat(2000));
        assert_eq!(reason_of(parse_tap(big.as_bytes())), PayloadTooLarge);
        assert_eq!(reason_of(parse_tap(b"\xff\xfe")), NotUtf8);
        assert_eq!(reason_of(parse_tap(b"{\"id\":")), MalformedJson);
        assert_eq!(reason_of(parse_tap(b"")), MalformedJson);
        assert_eq!(reason_of(parse_tap(b"[1,2]")), NotAnObject);
        assert_eq!(reason_of(parse_tap(br#"{"card":"1"}"#)), MissingField);
        assert_eq!(reason_of(parse_tap(br#"{"id":"a"}"#)), MissingField);
        assert_eq!(reason_of(parse_tap(br#"{"id":5,"card":"1"}"#)), WrongType);
        assert_eq!(reason_of(parse_tap(br#"{"id":"a","card":1}"#)), WrongType);
        assert_eq!(
            reason_of(parse_tap(br#"{"id":"a b","card":"1"}"#)),
            InvalidId
        );
        assert_eq!(
            reason_of(parse_tap(br#"{"id":"a","card":"<script>"}"#)),
            InvalidCard
        );
        assert_eq!(
            reason_of(parse_tap(br#"{"id":"a","card":"1","device":"g2"}"#)),
            UnknownField
        );
        let e = parse_button(br#"{"id":"a","pass":"monthly"}"#).expect_err("pass");
        assert_eq!(e.reason, UnknownPassType);
        assert_eq!(e.id.as_ref().map(MessageId::as_str), Some("a"));
        let e = parse_button(br#"{"id":"a","card":"1"}"#).expect_err("button with card");
        assert_eq!(e.reason, UnknownField);
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let e = parse_tap(br#"{"id":"a","card":"not a card!","card":"D0"}"#).expect_err("dup");
        assert_eq!(e.reason, RejectReason::DuplicateField);
        assert!(e.detail.contains("\"card\""), "{}", e.detail);
        let e = parse_tap(br#"{"id":"a","id":"b","card":"D0"}"#).expect_err("dup id");
        assert_eq!(e.reason, RejectReason::DuplicateField);
        let e = parse_heartbeat(br#"{"uptime_s":1,"uptime_s":2}"#).expect_err("dup hb");
        assert_eq!(e.reason, RejectReason::DuplicateField);
        // Nested objects are checked too, before any field rule.
        let e = parse_tap(br#"{"id":"a","card":"1","x":{"k":1,"k":2}}"#).expect_err("nested");
        assert_eq!(e.reason, RejectReason::DuplicateField);
        let e = parse_tap(br#"{"id":"a","card":"1","x":[{"k":1,"k":2}]}"#).expect_err("in array");
        assert_eq!(e.reason, RejectReason::DuplicateField);
        // Same key in sibling objects is fine (then refused for the unknown field only).
        let e = parse_tap(br#"{"id":"a","card":"1","x":[{"k":1},{"k":2}]}"#).expect_err("x");
        assert_eq!(e.reason, RejectReason::UnknownField);
    }

    #[test]
    fn heartbeats_and_status() {
        assert_eq!(
            parse_heartbeat(br#"{"uptime_s":5}"#).expect("hb").uptime_s,
            5
        );
        let reason = |p: &[u8]| parse_heartbeat(p).expect_err("refused").reason;
        assert_eq!(
            reason(br#"{"uptime_s":5,"x":1}"#),
            RejectReason::UnknownField
        );
        assert_eq!(reason(br#"{}"#), RejectReason::MissingField);
        assert_eq!(reason(br#"{"uptime_s":-1}"#), RejectReason::WrongType);
        assert_eq!(reason(br#"{"uptime_s":"5"}"#), RejectReason::WrongType);
        assert_eq!(reason(b"5"), RejectReason::NotAnObject);
        assert_eq!(reason(&[b' '; 2000]), RejectReason::PayloadTooLarge);
        assert_eq!(parse_status_payload(b"online"), Ok(true));
        assert_eq!(parse_status_payload(b"offline"), Ok(false));
        assert_eq!(
            parse_status_payload(&[b'x'; 70 * 1024])
                .expect_err("big")
                .reason,
            RejectReason::PayloadTooLarge
        );
    }

    #[test]
    fn details_never_carry_control_characters() {
        let hostile = r#"{"id":"a","card":"1","\u001b]0;pwned\u0007\u001b[2J\u202e":1}"#;
        let e = parse_tap(hostile.as_bytes()).expect_err("unknown");
        assert_eq!(e.reason, RejectReason::UnknownField);
        assert!(
            !e.detail.chars().any(crate::text::is_unsafe),
            "{:?}",
            e.detail
        );
        assert!(e.detail.contains("\\u{1b}"), "{:?}", e.detail);
        let e = parse_heartbeat(hostile.replace(r#""id":"a","card":"1","#, "").as_bytes())
            .expect_err("hb");
        assert!(
            !e.detail.chars().any(crate::text::is_unsafe),
            "{:?}",
            e.detail
        );
        let e = parse_button(br#"{"id":"a","pass":"\u001b[31mX"}"#).expect_err("pass");
        assert!(
            !e.detail.chars().any(crate::text::is_unsafe),
            "{:?}",
            e.detail
        );
        // A raw control byte inside a JSON string is a syntax error; its message quotes nothing.
        let e = parse_tap(b"{\"id\":\"a\",\"card\":\"\x1b\"}").expect_err("raw");
        assert!(
            !e.detail.chars().any(crate::text::is_unsafe),
            "{:?}",
            e.detail
        );
    }

    #[test]
    fn keeps_id_when_readable() {
        let e = parse_tap(br#"{"id":"g1-9","card":"x-y"}"#).expect_err("bad card");
        assert_eq!(e.id.map(String::from), Some("g1-9".to_owned()));
        let e = parse_tap(br#"{"id":"bad id","card":"1"}"#).expect_err("bad id");
        assert_eq!(e.id, None);
    }

    #[test]
    fn details_are_bounded() {
        let key = "k".repeat(500);
        let payload = format!(r#"{{"id":"a","card":"1","{key}":1}}"#);
        let e = parse_tap(payload.as_bytes()).expect_err("unknown");
        assert!(e.detail.len() < 120, "{}", e.detail);
    }

    #[test]
    fn stamps() {
        let (tap, stamp) =
            parse_tap_stamped(br#"{"id":"g-1","card":"AB","time":1700000000000,"mode":"offline"}"#)
                .expect("stamped");
        assert_eq!(tap.card.as_str(), "AB");
        assert_eq!(stamp, Some(Stamp::offline(1_700_000_000_000)));
        assert_eq!(tap.replaces, None);
        let (tap, _) = parse_tap_stamped(
            br#"{"id":"g-2","card":"AB","time":5,"mode":"offline","replaces":"g-1"}"#,
        )
        .expect("an offline entry naming its waiting tap");
        assert_eq!(tap.replaces.as_ref().map(MessageId::as_str), Some("g-1"));
        let (tap, _) = parse_tap_stamped(
            br#"{"id":"g-3","card":"AB","time":9,"mode":"online","replaces":"g-1"}"#,
        )
        .expect("a retap naming the tap it follows");
        assert_eq!(tap.replaces.as_ref().map(MessageId::as_str), Some("g-1"));
        let (_, stamp) = parse_tap_stamped(br#"{"id":"g-1","card":"AB"}"#).expect("legacy");
        assert_eq!(stamp, None);
        let refused = |p: &[u8]| parse_tap_stamped(p).expect_err("refused");
        for (payload, reason) in [
            (
                &br#"{"id":"g-1","card":"AB","time":5}"#[..],
                RejectReason::MissingField,
            ),
            (
                br#"{"id":"g-1","card":"AB","mode":"online"}"#,
                RejectReason::MissingField,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":-1,"mode":"online"}"#,
                RejectReason::WrongType,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":1.5,"mode":"online"}"#,
                RejectReason::WrongType,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":"5","mode":"online"}"#,
                RejectReason::WrongType,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":5,"mode":"late"}"#,
                RejectReason::WrongType,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":5,"mode":1}"#,
                RejectReason::WrongType,
            ),
            // `replaces` only on a stamped tap, naming another message of the device.
            (
                br#"{"id":"g-1","card":"AB","replaces":"g-0"}"#,
                RejectReason::UnknownField,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":5,"mode":"offline","replaces":7}"#,
                RejectReason::WrongType,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":5,"mode":"offline","replaces":"a b"}"#,
                RejectReason::InvalidId,
            ),
            (
                br#"{"id":"g-1","card":"AB","time":5,"mode":"offline","replaces":"g-1"}"#,
                RejectReason::InvalidId,
            ),
        ] {
            let r = refused(payload);
            assert_eq!(r.reason, reason, "{r}");
            assert_eq!(r.id.as_ref().map(MessageId::as_str), Some("g-1"));
        }
        let (_, stamp) =
            parse_button_stamped(br#"{"id":"t-1","pass":"TWO_HOUR","time":9,"mode":"online"}"#)
                .expect("button");
        assert_eq!(stamp, Some(Stamp::online(9)));
        let r =
            parse_button_stamped(br#"{"id":"t-1","pass":"TWO_HOUR","time":9,"mode":"offline"}"#)
                .expect_err("offline button");
        assert_eq!(r.reason, RejectReason::OfflineNotAllowed);
        let (h, clock) = parse_heartbeat_clock(br#"{"uptime_s":3,"clock_ms":42}"#).expect("hb");
        assert_eq!((h.uptime_s, clock), (3, Some(42)));
        assert_eq!(
            parse_heartbeat_clock(br#"{"uptime_s":3,"clock_ms":"x"}"#)
                .expect_err("bad clock")
                .reason,
            RejectReason::WrongType
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RejectReason::ALL.len());
        for r in RejectReason::ALL {
            assert_eq!(
                serde_json::to_string(&r).expect("json"),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1100)) {
            for r in [parse_tap(&bytes).err(), parse_button(&bytes).err(), parse_heartbeat(&bytes).err()]
                .into_iter()
                .flatten()
            {
                proptest::prop_assert!(!r.detail.chars().any(crate::text::is_unsafe));
                proptest::prop_assert!(r.detail.chars().count() <= MAX_DETAIL_CHARS);
            }
        }
    }
}
