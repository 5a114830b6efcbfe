//! Redis key names.
//!
//! The counters, the event stream and the device presence keys are read by the monitor and by
//! Grafana dashboards, so their names are part of the contract. Card keys carry the card in a
//! `{...}` hash tag so that all of one card's keys share a Redis Cluster slot; the card is always
//! in its canonical upper-case form ([`CardId::new`]). The hashes' field names are in
//! [`crate::fields`].
//!
//! | key | type | written by | content |
//! |---|---|---|---|
//! | `tapgate:counters:issued` | hash | bridge | product → passes issued |
//! | `tapgate:counters:entries` | hash | bridge | product → entries granted |
//! | `tapgate:counters:denied` | hash | bridge | deny reason → denials |
//! | `tapgate:counters:rejected` | hash | bridge | reject reason → refused messages |
//! | `tapgate:counters:unpaid` | hash | bridge | deny reason → offline entries that could not be charged |
//! | `tapgate:counters:stale` | hash | bridge | device kind → waiting messages answered `stale` |
//! | `tapgate:counters:clock` | hash | bridge | `flagged`, `cleared` → device clock-skew flag changes |
//! | `tapgate:counters:device:{device}` | hash | bridge | `granted`, `denied`, `issued`, `rejected`, and `unpaid`, `stale`; expires with the device |
//! | `tapgate:events` | stream | bridge, monitor | one [`crate::Event`] per entry, a field per event field ([`crate::stream`]; older entries: field `event`, the JSON) |
//! | `tapgate:card:{CARD}:pass` | hash | bridge (a void, a card replacement: monitor) | [`crate::fields::pass`]: the product, its terms, `expires_at`, `issued_at`, where and on which service day it was sold, its first use |
//! | `tapgate:card:{CARD}:blocked` | hash | monitor | `reason`, `by`, `at` |
//! | `tapgate:card:{CARD}:recent` | list | bridge (a card replacement: monitor) | stream ids of the card's latest events, newest first (older lists: the events' JSON); expires |
//! | `tapgate:blocked` | hash | monitor | card → reason, an index of blocked cards |
//! | `tapgate:sale:{DEVICE}` | hash | bridge | `card`, `selected` (the product; empty until a button), `terms`, `expires_at` |
//! | `tapgate:card:{CARD}:wallet` | hash | bridge (a card replacement: monitor) | a card's pay-as-you-go balance, top-ups and charges in all, and per service day and week: [`crate::fields::wallet`] |
//! | `tapgate:revenue:{DAY}` | hash | bridge (a void: monitor) | sales and amounts of a service day (`YYYY-MM-DD`), net of voids, and its voids: [`crate::fields::revenue`] |
//! | `tapgate:seen:{KIND:DEVICE}:{ID}` | string | bridge | `op:CARD:PASS` fingerprint, newline, the stored result (compact, see `decide.lua`) |
//! | `tapgate:device:{kind}:{device}` | hash | bridge | `online`, `last_seen`, `uptime_s`, `clock_skew_ms`, `clock_flagged`, `clock_checked_at`; expires |
//! | `tapgate:devices` | set | bridge | `{kind}/{device}` of every device seen, pruned on expiry |
//! | `tapgate:emqx:disconnects` | hash | EMQX rule | disconnect reason → count |
//! | `tapgate:emqx:authz` | hash | EMQX rule | authorization result → count |
//! | `tapgate:emqx:dropped` | hash | EMQX rule | drop reason → count |
//! | `tapgate:emqx:dropped_topics` | hash | EMQX rule | topic → dropped messages |
//! | `tapgate:monitor:session:{ID}` | hash | monitor | operator, cred, created; expires. `{ID}` is a keyed MAC of the session token (the monitor's key file), never the token |
//! | `tapgate:monitor:operator:{NAME}:sessions` | set | monitor | the session ids of one operator (for "log out everywhere") |
//! | `tapgate:monitor:operators` | hash | monitor | operator name → fingerprint of their credential at the last start-up |
//! | `tapgate:monitor:login-failures:addr:{BUCKET}` | string | monitor | failed logins from one address (an IPv6 /64) in the window |
//! | `tapgate:monitor:login-failures:pair:{NAME}:{BUCKET}` | string | monitor | failed logins of one operator's name from one address (an IPv6 /64) in the window |
//! | `tapgate:monitor:login-failures:name:{NAME}` | hash | monitor | `failures`, `last`: failed logins of one name, from anywhere |
//! | `tapgate:monitor:audit` | stream | monitor | the operators' audit trail (logins, blocks, voids, …) |

use crate::fields;
use crate::ids::{CardId, DeviceId, DeviceKind, MessageId};

/// Passes issued, by product.
pub const COUNTERS_ISSUED: &str = "tapgate:counters:issued";
/// Entries granted, by product.
pub const COUNTERS_ENTRIES: &str = "tapgate:counters:entries";
/// Denials, by deny reason.
pub const COUNTERS_DENIED: &str = "tapgate:counters:denied";
/// Offline entries that could not be charged, by deny reason.
pub const COUNTERS_UNPAID: &str = "tapgate:counters:unpaid";
/// Waiting messages answered `stale`, by device kind.
pub const COUNTERS_STALE: &str = "tapgate:counters:stale";
/// Device clock-skew flag changes: fields [`CLOCK_FLAGGED`] and [`CLOCK_CLEARED`].
pub const COUNTERS_CLOCK: &str = "tapgate:counters:clock";
/// [`COUNTERS_CLOCK`] field: a device's clock was flagged as off.
pub const CLOCK_FLAGGED: &str = fields::clock_counters::FLAGGED;
/// [`COUNTERS_CLOCK`] field: a flagged device's clock came back within the limit.
pub const CLOCK_CLEARED: &str = fields::clock_counters::CLEARED;
/// Per-device counter fields for tap time, next to [`DEVICE_COUNTER_FIELDS`].
pub const DEVICE_TIME_COUNTER_FIELDS: [&str; 2] = [
    fields::device_counters::UNPAID,
    fields::device_counters::STALE,
];
/// Presence hash field: the device's clock minus the bridge's at its last heartbeat, ms.
pub const FIELD_CLOCK_SKEW: &str = fields::presence::CLOCK_SKEW_MS;
/// Presence hash field: `1` while the device's clock is flagged as off, else `0`.
pub const FIELD_CLOCK_FLAGGED: &str = fields::presence::CLOCK_FLAGGED;
/// Presence hash field: when the skew was last measured (bridge clock, Unix ms).
pub const FIELD_CLOCK_CHECKED_AT: &str = fields::presence::CLOCK_CHECKED_AT;
/// Refused device messages, by reject reason.
pub const COUNTERS_REJECTED: &str = "tapgate:counters:rejected";
/// Prefix of the per-device counter hashes.
pub const COUNTERS_DEVICE_PREFIX: &str = "tapgate:counters:device:";
/// Fields of a per-device counter hash.
pub const DEVICE_COUNTER_FIELDS: [&str; 4] = [
    fields::device_counters::GRANTED,
    fields::device_counters::DENIED,
    fields::device_counters::ISSUED,
    fields::device_counters::REJECTED,
];
/// The event log stream.
pub const EVENTS_STREAM: &str = "tapgate:events";
/// Index of blocked cards: card → reason.
pub const BLOCKED_INDEX: &str = "tapgate:blocked";
/// Set of `{kind}/{device}` for every device the bridge has heard from.
pub const DEVICES: &str = "tapgate:devices";
/// EMQX rule counter: client disconnections, field = disconnect reason.
pub const EMQX_DISCONNECTS: &str = "tapgate:emqx:disconnects";
/// EMQX rule counter: authorization checks, field = result (`allow` / `deny`).
pub const EMQX_AUTHZ: &str = "tapgate:emqx:authz";
/// EMQX rule counter: dropped messages, field = drop reason.
pub const EMQX_DROPPED: &str = "tapgate:emqx:dropped";
/// EMQX rule counter: dropped messages, field = topic.
pub const EMQX_DROPPED_TOPICS: &str = "tapgate:emqx:dropped_topics";
/// The keys the EMQX rule engine (`emqx/etc/tapgate-rules.hocon`) writes, all hashes
/// incremented with `HINCRBY`.
pub const EMQX_KEYS: [&str; 4] = [
    EMQX_DISCONNECTS,
    EMQX_AUTHZ,
    EMQX_DROPPED,
    EMQX_DROPPED_TOPICS,
];
/// How many of a card's latest events are shown. [`card_recent`] holds their stream ids and is
/// trimmed back to this many once it holds twice as many.
pub const CARD_RECENT_LEN: usize = 20;

/// Per-device counters: `tapgate:counters:device:{device}`.
pub fn device_counters(device: &DeviceId) -> String {
    format!("{COUNTERS_DEVICE_PREFIX}{device}")
}

/// Prefix of the revenue hashes, one per service day.
pub const REVENUE_PREFIX: &str = "tapgate:revenue:";

/// A service day's revenue: `tapgate:revenue:{YYYY-MM-DD}` (the day's
/// [`crate::fares::ServiceDay::label`]); fields in [`crate::fields::revenue`].
pub fn revenue(day: &str) -> String {
    format!("{REVENUE_PREFIX}{day}")
}

/// Every card key, as a `SCAN` pattern.
pub const CARD_KEYS: &str = "tapgate:card:{*}:*";

/// The card's key of kind `kind` (`pass`, `wallet`, `blocked`, `recent`):
/// `tapgate:card:{CARD}:{kind}`.
pub fn card_key(card: &CardId, kind: &str) -> String {
    format!("tapgate:card:{{{card}}}:{kind}")
}

/// A card key's card, as written in it (not checked), and its kind: the inverse of
/// [`card_key`]; none for a key that is no card key.
pub fn split_card_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix("tapgate:card:{")?.split_once("}:")
}

/// The card's pass: `tapgate:card:{CARD}:pass`.
pub fn pass(card: &CardId) -> String {
    card_key(card, "pass")
}

/// The card's pay-as-you-go wallet: `tapgate:card:{CARD}:wallet`; fields in
/// [`crate::fields::wallet`].
pub fn wallet(card: &CardId) -> String {
    card_key(card, "wallet")
}

/// The card's deny-list entry: `tapgate:card:{CARD}:blocked`.
pub fn blocked(card: &CardId) -> String {
    card_key(card, "blocked")
}

/// The stream ids of the card's latest events, newest first: `tapgate:card:{CARD}:recent`.
pub fn card_recent(card: &CardId) -> String {
    card_key(card, "recent")
}

/// A terminal's sale in progress: `tapgate:sale:{DEVICE}`.
pub fn sale(terminal: &DeviceId) -> String {
    format!("tapgate:sale:{{{terminal}}}")
}

/// The stored result of a device message, for redeliveries.
pub fn seen(kind: DeviceKind, device: &DeviceId, id: &MessageId) -> String {
    format!("tapgate:seen:{{{kind}:{device}}}:{id}")
}

/// Which message a granted waiting tap was replaced by (an offline entry or a retap settled on
/// its charge): `tapgate:settled:{KIND:DEVICE}:{ID}`, holding that message's id. A granted tap
/// pays for one replacement; another naming it is a ride of its own.
pub fn settled(kind: DeviceKind, device: &DeviceId, waiting: &MessageId) -> String {
    format!("tapgate:settled:{{{kind}:{device}}}:{waiting}")
}

/// A device's presence hash: `tapgate:device:{kind}:{device}`.
pub fn device(kind: DeviceKind, device: &DeviceId) -> String {
    format!("tapgate:device:{kind}:{device}")
}

/// The member naming a device in [`DEVICES`]: `{kind}/{device}`.
pub fn device_member(kind: DeviceKind, device: &DeviceId) -> String {
    format!("{kind}/{device}")
}

/// The monitor's session with id `id` (a keyed MAC of the browser's token, never the token).
pub fn monitor_session(id: &str) -> String {
    format!("tapgate:monitor:session:{id}")
}

/// The set of one operator's session ids.
pub fn monitor_operator_sessions(operator: &str) -> String {
    format!("tapgate:monitor:operator:{operator}:sessions")
}

/// Operator name → fingerprint of their credential, as of the monitor's last start-up.
pub const MONITOR_OPERATORS: &str = "tapgate:monitor:operators";

/// Failed logins from one address bucket (an IPv4 address or an IPv6 /64).
pub fn monitor_login_failures_address(bucket: &str) -> String {
    format!("tapgate:monitor:login-failures:addr:{bucket}")
}

/// Failed logins of one operator's name from one address bucket (an IPv4 address or an IPv6
/// /64). Names hold no `:`, so the name ends at the first one.
pub fn monitor_login_failures_pair(name: &str, bucket: &str) -> String {
    format!("tapgate:monitor:login-failures:pair:{name}:{bucket}")
}

/// Failed logins of one operator name.
pub fn monitor_login_failures_name(name: &str) -> String {
    format!("tapgate:monitor:login-failures:name:{name}")
}

/// The operators' audit trail (a stream).
pub const MONITOR_AUDIT: &str = "tapgate:monitor:audit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let card = CardId::new("0412AB").expect("card");
        let dev = DeviceId::new("g1").expect("dev");
        let id = MessageId::new("g1-1").expect("id");
        assert_eq!(pass(&card), "tapgate:card:{0412AB}:pass");
        let lower = CardId::new("0412ab").expect("card");
        assert_eq!(blocked(&lower), "tapgate:card:{0412AB}:blocked");
        assert_eq!(blocked(&card), "tapgate:card:{0412AB}:blocked");
        assert_eq!(card_recent(&card), "tapgate:card:{0412AB}:recent");
        assert_eq!(sale(&dev), "tapgate:sale:{g1}");
        assert_eq!(
            seen(DeviceKind::Gate, &dev, &id),
            "tapgate:seen:{gate:g1}:g1-1"
        );
        assert_eq!(device_counters(&dev), "tapgate:counters:device:g1");
        assert_eq!(
            device(DeviceKind::Terminal, &dev),
            "tapgate:device:terminal:g1"
        );
        assert_eq!(device_member(DeviceKind::Gate, &dev), "gate/g1");
    }

    #[test]
    fn a_card_key_splits_back_into_its_card_and_kind() {
        let card = CardId::new("0412AB").expect("card");
        for key in [
            pass(&card),
            wallet(&card),
            blocked(&card),
            card_recent(&card),
        ] {
            let (written, kind) = split_card_key(&key).expect("a card key");
            assert_eq!(written, "0412AB");
            assert_eq!(card_key(&card, kind), key);
        }
        assert_eq!(
            split_card_key("tapgate:card:{04ab}:pass"),
            Some(("04ab", "pass"))
        );
        assert_eq!(split_card_key("tapgate:sale:{g1}"), None);
        assert_eq!(split_card_key("tapgate:card:04AB:pass"), None);
    }
}
