//! Validation of device input.
//!
//! Devices are untrusted. [`parse_tap`] and [`parse_button`] accept exactly the contract and
//! refuse everything else with a [`Rejection`] naming the rule that was broken, and the message id
//! when it could be read, so the refusal can be answered on the device's decision topic.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{CardId, IdError, MessageId};
use crate::message::{Button, PassType, Tap};
use crate::topic::TopicError;

/// Largest payload accepted from a device, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024;

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
    /// `pass` is not one of the pass types.
    UnknownPassType,
    /// The topic is not a device topic of the contract.
    BadTopic,
    /// A valid device published something it may not send (a gate's button, a decision).
    UnsupportedMessage,
    /// A tap or button published with the retain flag: it would fire again for every subscriber.
    Retained,
}

impl RejectReason {
    /// Every reason, for dashboards and tests.
    pub const ALL: [RejectReason; 13] = [
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
    /// A rejection without a known id.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            id: None,
        }
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

/// Parses a tap payload: `{"id": "...", "card": "..."}` and nothing else.
pub fn parse_tap(payload: &[u8]) -> Result<Tap, Rejection> {
    let (obj, id) = object_with_id(payload, &["id", "card"])?;
    let card = string_field(&obj, "card", &id)?;
    let card = CardId::new(card).map_err(|e| invalid(RejectReason::InvalidCard, e, &id))?;
    Ok(Tap { id, card })
}

/// Parses a button payload: `{"id": "...", "pass": "SINGLE_USE" | "TEN_TRIP" | "TWO_HOUR"}`.
pub fn parse_button(payload: &[u8]) -> Result<Button, Rejection> {
    let (obj, id) = object_with_id(payload, &["id", "pass"])?;
    let pass = string_field(&obj, "pass", &id)?;
    let pass = PassType::parse(pass).ok_or_else(|| Rejection {
        reason: RejectReason::UnknownPassType,
        detail: format!(
            "unknown pass type {:?}; expected one of SINGLE_USE, TEN_TRIP, TWO_HOUR",
            truncate(pass)
        ),
        id: Some(id.clone()),
    })?;
    Ok(Button { id, pass })
}

/// Checks size, encoding, JSON syntax, object shape, field names and the id; returns the object
/// and the id so the caller can read the remaining fields.
fn object_with_id(
    payload: &[u8],
    fields: &[&'static str],
) -> Result<(Map<String, Value>, MessageId), Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::new(
            RejectReason::PayloadTooLarge,
            format!(
                "payload is {} bytes, at most {MAX_PAYLOAD_BYTES} allowed",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Rejection::new(RejectReason::NotUtf8, format!("payload is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            RejectReason::MalformedJson,
            format!("payload is not JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(Rejection::new(
            RejectReason::NotAnObject,
            format!(
                "payload is a JSON {}, expected an object",
                type_name(&value)
            ),
        ));
    };
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
    if let Some(unknown) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(Rejection {
            reason: RejectReason::UnknownField,
            detail: format!(
                "unknown field {:?}; allowed: {}",
                truncate(unknown),
                fields.join(", ")
            ),
            id: Some(id),
        });
    }
    Ok((obj, id))
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
    id: &MessageId,
) -> Result<&'a str, Rejection> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        None => Err(Rejection {
            reason: RejectReason::MissingField,
            detail: format!("missing field {name:?}"),
            id: Some(id.clone()),
        }),
        Some(other) => Err(Rejection {
            reason: RejectReason::WrongType,
            detail: format!(
                "field {name:?} is a {}, expected a string",
                type_name(other)
            ),
            id: Some(id.clone()),
        }),
    }
}

fn invalid(reason: RejectReason, e: IdError, id: &MessageId) -> Rejection {
    Rejection {
        reason,
        detail: e.to_string(),
        id: Some(id.clone()),
    }
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

/// Keeps refusal texts short whatever a device sent.
fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
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
        assert_eq!(b.pass, PassType::TwoHour);
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
        let e = parse_button(br#"{"id":"a","pass":"MONTHLY"}"#).expect_err("pass");
        assert_eq!(e.reason, UnknownPassType);
        assert_eq!(e.id.as_ref().map(MessageId::as_str), Some("a"));
        let e = parse_button(br#"{"id":"a","card":"1"}"#).expect_err("button with card");
        assert_eq!(e.reason, UnknownField);
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
            let _ = parse_tap(&bytes);
            let _ = parse_button(&bytes);
        }
    }
}
