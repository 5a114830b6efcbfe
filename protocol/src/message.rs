//! Payloads between devices and the bridge.
//!
//! Device → bridge: [`Tap`] and [`Button`], each with a [`Stamp`] (`"time"`, `"mode"`): when the
//! event happened on the device's clock, and whether the device waits for the answer or already let
//! the rider through. Bridge → device: [`Decision`], always
//! `{"id": <the id it answers>, "outcome": "...", ...}`. Device payloads are parsed with
//! [`crate::validate`], which refuses anything outside the contract with a specific reason.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fares::{Currency, Terms, Validity};
use crate::ids::{CardId, MessageId, ProductId};
use crate::validate::RejectReason;

/// A card tap: `{"id": "...", "card": "..."}`, and on a gate's offline entry or retap
/// `"replaces"`: the id of the waiting tap whose answer did not come in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tap {
    /// Unique per device, never reused; redeliveries repeat it.
    pub id: MessageId,
    /// The card that was tapped.
    pub card: CardId,
    /// A gate's waiting tap whose answer did not come in time, which this one replaces: named by
    /// a fail-open gate's offline entry (standing for it) and by a fail-closed gate's next tap of
    /// the same card (a retap, the rider having been turned away). The bridge charges the ride
    /// once (the waiting tap may have been decided and charged while its answer was late or
    /// lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<MessageId>,
}

impl Tap {
    /// A tap of `card` with message id `id`.
    pub fn new(id: MessageId, card: CardId) -> Self {
        Self {
            id,
            card,
            replaces: None,
        }
    }
}

/// What the device does with the answer to a tap or button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapMode {
    /// The device waits for the decision (a gate keeps the rider at the barrier). An answer the
    /// bridge cannot give within its decision window is `stale` and charges nothing.
    Online,
    /// Gates only: the gate already let the rider through under the fail-open policy; the bridge
    /// settles the entry at the time it happened and the answer is for the record.
    Offline,
}

impl TapMode {
    /// Both modes.
    pub const ALL: [TapMode; 2] = [TapMode::Online, TapMode::Offline];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TapMode::Online => "online",
            TapMode::Offline => "offline",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        TapMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for TapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a tap or button press happened and what the device does with the answer: the `"time"`
/// and `"mode"` fields of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The device's clock at the event, Unix time in milliseconds.
    pub time: u64,
    /// Waiting for the answer, or already let through.
    pub mode: TapMode,
}

impl Stamp {
    /// A waiting event at `time`.
    pub const fn online(time: u64) -> Self {
        Self {
            time,
            mode: TapMode::Online,
        }
    }

    /// An entry already allowed at `time` (fail-open).
    pub const fn offline(time: u64) -> Self {
        Self {
            time,
            mode: TapMode::Offline,
        }
    }
}

/// A device message with its [`Stamp`], as published: the message's fields plus `"time"` and
/// `"mode"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stamped<'a, T> {
    /// The tap or button.
    #[serde(flatten)]
    pub message: &'a T,
    /// When and how.
    #[serde(flatten)]
    pub stamp: Stamp,
}

impl<T: Serialize> Stamped<'_, T> {
    /// The payload.
    pub fn to_json(&self) -> String {
        // Ids, cards, pass types and integers only: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Which clock a decision's event time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// The device's stamp, trusted (less the device's small measured lead, if its clock runs
    /// ahead within the allowed skew).
    Device,
    /// The bridge's own clock: the message had no stamp, or the device's clock is flagged as
    /// running ahead and its stamp was corrected by the measured skew.
    Bridge,
}

impl ClockSource {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClockSource::Device => "device",
            ClockSource::Bridge => "bridge",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [ClockSource::Device, ClockSource::Bridge]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// A product button press at a terminal: `{"id": "...", "pass": "TEN_TRIP"}`; `pass` is a
/// product id of the bridge's fare catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    /// Unique per device, never reused; redeliveries repeat it.
    pub id: MessageId,
    /// The product the rider chose.
    pub pass: ProductId,
}

/// A pass as reported in decisions and events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassInfo {
    /// The product it was sold as.
    #[serde(rename = "type")]
    pub pass_type: ProductId,
    /// A `trips` product only: entries left (after this entry, in a gate decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trips_remaining: Option<u32>,
    /// A `period` product once activated, or a `service_day` product: when it stops being valid,
    /// Unix time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// With `expires_at`: milliseconds left at decision time, so a device without a synchronised
    /// clock can show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<u64>,
}

impl PassInfo {
    /// A pass as just issued on `terms`, valid until `expires_at` if that is fixed at the sale
    /// (a `service_day` product), at `now`.
    pub fn new(terms: &Terms, expires_at: Option<u64>, now: u64) -> Self {
        Self {
            pass_type: terms.product,
            trips_remaining: (terms.validity == Validity::Trips).then_some(terms.trips),
            expires_at,
            remaining_ms: expires_at.map(|e| e.saturating_sub(now)),
        }
    }
}

/// A product a terminal may sell, as its first answer lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// What its button sends as `pass`.
    pub id: ProductId,
    /// What to show and say.
    pub name: String,
    /// Its price in minor units of `currency`.
    pub price: u64,
    /// The price's currency.
    pub currency: Currency,
}

/// Why a gate (or a terminal, for a blocked card) said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// The card holds no pass.
    NoPass,
    /// The card's two-hour pass has run out (the pass is removed; the card may buy again).
    Expired,
    /// An operator put the card on the deny list.
    Blocked,
    /// The card's stored pass cannot be read (an unknown type or a garbled field): nothing is
    /// granted or sold on it until an operator repairs or removes it.
    CorruptPass,
    /// No usable pass, and the card's pay-as-you-go balance cannot pay the fare.
    InsufficientFunds,
}

impl DenyReason {
    /// Every reason.
    pub const ALL: [DenyReason; 5] = [
        DenyReason::NoPass,
        DenyReason::Expired,
        DenyReason::Blocked,
        DenyReason::CorruptPass,
        DenyReason::InsufficientFunds,
    ];

    /// The wire name, also the counter field.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoPass => "no_pass",
            DenyReason::Expired => "expired",
            DenyReason::Blocked => "blocked",
            DenyReason::CorruptPass => "corrupt_pass",
            DenyReason::InsufficientFunds => "insufficient_funds",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        DenyReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the bridge decided. Serialised flat into [`Decision`] with an `"outcome"` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Gate: open. Carries the pass after this entry.
    Granted {
        /// The pass after this entry.
        pass: PassInfo,
    },
    /// Gate (or terminal, for a blocked card): no.
    Denied {
        /// Why.
        reason: DenyReason,
    },
    /// Terminal: the card has no pass; choose one with a button. Lists the products on sale.
    SelectPass {
        /// The catalogue's products, in its order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        products: Vec<Offer>,
    },
    /// Terminal: the card already holds a pass; nothing sold.
    AlreadyHasPass {
        /// The pass it holds.
        pass: PassInfo,
    },
    /// Terminal: a product was chosen; tap the same card to confirm and pay `price`.
    TapToConfirm {
        /// The chosen product.
        selected: ProductId,
        /// What it costs, minor units of `currency`.
        price: u64,
        /// The price's currency.
        currency: Currency,
    },
    /// Terminal: the pass is on the card and `price` is taken.
    PassIssued {
        /// The new pass.
        pass: PassInfo,
        /// What it cost, minor units of `currency`.
        price: u64,
        /// The price's currency.
        currency: Currency,
    },
    /// Terminal: a `top_up` product was sold; `price` is added to the card's balance (the
    /// decision's `balance` says what it holds now).
    ToppedUp {
        /// The top-up product sold.
        selected: ProductId,
        /// What it cost and added, minor units of `currency`.
        price: u64,
        /// The price's currency.
        currency: Currency,
    },
    /// Terminal: the confirming tap was another card; the sale is void, nothing issued.
    CardMismatch,
    /// Terminal: a button was pressed with no sale in progress; tap a card first.
    TapCardFirst,
    /// A waiting tap or button that reached the bridge after its decision window: the device has
    /// already given up on it, so nothing was decided or charged.
    Stale,
    /// Gate, offline entry: charged against the card's pass at the time it happened.
    EntrySettled {
        /// The pass after this entry.
        pass: PassInfo,
    },
    /// Gate, offline entry: the rider went through but the card could not pay (no pass, expired,
    /// blocked, unreadable). Recorded for revenue protection; never a late denial.
    UnpaidEntry {
        /// Why it could not be charged.
        reason: DenyReason,
    },
    /// Any device: the message broke the contract and was not acted on.
    Rejected {
        /// Which rule it broke.
        reason: RejectReason,
        /// A human-readable explanation.
        detail: String,
    },
}

impl Outcome {
    /// The `"outcome"` value, e.g. `granted`.
    pub const fn name(&self) -> &'static str {
        match self {
            Outcome::Granted { .. } => "granted",
            Outcome::Denied { .. } => "denied",
            Outcome::SelectPass { .. } => "select_pass",
            Outcome::AlreadyHasPass { .. } => "already_has_pass",
            Outcome::TapToConfirm { .. } => "tap_to_confirm",
            Outcome::PassIssued { .. } => "pass_issued",
            Outcome::ToppedUp { .. } => "topped_up",
            Outcome::CardMismatch => "card_mismatch",
            Outcome::TapCardFirst => "tap_card_first",
            Outcome::Stale => "stale",
            Outcome::EntrySettled { .. } => "entry_settled",
            Outcome::UnpaidEntry { .. } => "unpaid_entry",
            Outcome::Rejected { .. } => "rejected",
        }
    }

    /// The outcome named `name` (a [`Outcome::name`]) from its parts as text, as the decide
    /// function reports them: `reason` for a denial or an unpaid entry, `selected` for a chosen
    /// product, `pass` for the outcomes that carry one, `price` (price and currency) for a chosen
    /// or sold product. `None` when a part the outcome needs is missing or unreadable, or the
    /// name is unknown. Not for `rejected`, which the bridge builds itself; `select_pass` comes
    /// without its product list, which the bridge adds from its catalogue.
    pub fn from_parts(
        name: &str,
        reason: &str,
        selected: &str,
        pass: Option<PassInfo>,
        price: Option<(u64, Currency)>,
    ) -> Option<Outcome> {
        let deny = || DenyReason::parse(reason);
        Some(match name {
            "granted" => Outcome::Granted { pass: pass? },
            "denied" => Outcome::Denied { reason: deny()? },
            "select_pass" => Outcome::SelectPass {
                products: Vec::new(),
            },
            "already_has_pass" => Outcome::AlreadyHasPass { pass: pass? },
            "tap_to_confirm" => Outcome::TapToConfirm {
                selected: ProductId::parse(selected)?,
                price: price?.0,
                currency: price?.1,
            },
            "pass_issued" => Outcome::PassIssued {
                pass: pass?,
                price: price?.0,
                currency: price?.1,
            },
            "topped_up" => Outcome::ToppedUp {
                selected: ProductId::parse(selected)?,
                price: price?.0,
                currency: price?.1,
            },
            "card_mismatch" => Outcome::CardMismatch,
            "tap_card_first" => Outcome::TapCardFirst,
            "stale" => Outcome::Stale,
            "entry_settled" => Outcome::EntrySettled { pass: pass? },
            "unpaid_entry" => Outcome::UnpaidEntry { reason: deny()? },
            _ => return None,
        })
    }

    /// Every outcome name, for metrics and dashboards.
    pub const NAMES: [&'static str; 13] = [
        "granted",
        "denied",
        "select_pass",
        "already_has_pass",
        "tap_to_confirm",
        "pass_issued",
        "topped_up",
        "card_mismatch",
        "tap_card_first",
        "stale",
        "entry_settled",
        "unpaid_entry",
        "rejected",
    ];
}

/// The bridge's answer on `{prefix}/{kind}/{device}/decision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The id of the message answered; `null` when it could not be read from a refused payload.
    pub id: Option<MessageId>,
    /// What was decided.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Pay as you go: what this entry cost (0 once capped), minor units of the catalogue's
    /// currency. Present on an entry paid from the card's balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<u64>,
    /// Pay as you go: the card's balance after this decision, minor units. Present with
    /// `charged`, on a top-up, and on a denial for `insufficient_funds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    /// The currency of `charged` and `balance`, with them when the bridge knows it. (Not
    /// `currency`: a price's outcome has that field already.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_currency: Option<Currency>,
}

impl Decision {
    /// A decision with no pay-as-you-go amounts.
    pub fn new(id: Option<MessageId>, outcome: Outcome) -> Self {
        Self {
            id,
            outcome,
            charged: None,
            balance: None,
            balance_currency: None,
        }
    }

    /// Serialises to the wire format.
    pub fn to_json(&self) -> String {
        // A Decision holds only strings, integers and enums: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Parses a decision as a device receives it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fares::Catalogue;
    use serde_json::json;

    fn id(s: &str) -> Option<MessageId> {
        Some(MessageId::new(s).expect("id"))
    }

    /// Every outcome the decide function reports comes back from its parts as the same value
    /// serde reads from its JSON, and a part it needs that is missing or unknown gives `None`.
    #[test]
    fn outcomes_from_parts_match_their_json() {
        let pass = PassInfo {
            pass_type: ProductId::TWO_HOUR,
            trips_remaining: None,
            expires_at: Some(9),
            remaining_ms: Some(4),
        };
        let pass_json = json!({"type": "TWO_HOUR", "expires_at": 9, "remaining_ms": 4});
        for name in Outcome::NAMES {
            if name == "rejected" {
                assert_eq!(Outcome::from_parts(name, "", "", None, None), None);
                continue;
            }
            let built = Outcome::from_parts(
                name,
                "expired",
                "TEN_TRIP",
                Some(pass.clone()),
                Some((750, Currency::EUR)),
            )
            .unwrap_or_else(|| panic!("{name}"));
            assert_eq!(built.name(), name);
            let mut v = json!({"outcome": name});
            match name {
                "denied" | "unpaid_entry" => v["reason"] = json!("expired"),
                "tap_to_confirm" | "topped_up" => {
                    v["selected"] = json!("TEN_TRIP");
                    v["price"] = json!(750);
                    v["currency"] = json!("EUR");
                }
                "pass_issued" => {
                    v["pass"] = pass_json.clone();
                    v["price"] = json!(750);
                    v["currency"] = json!("EUR");
                }
                "granted" | "already_has_pass" | "entry_settled" => {
                    v["pass"] = pass_json.clone();
                }
                _ => {}
            }
            assert_eq!(
                serde_json::from_value::<Outcome>(v).expect("json"),
                built,
                "{name}"
            );
        }
        assert_eq!(Outcome::from_parts("granted", "", "", None, None), None);
        assert_eq!(Outcome::from_parts("denied", "late", "", None, None), None);
        assert_eq!(
            Outcome::from_parts("tap_to_confirm", "", "day", None, Some((1, Currency::EUR))),
            None
        );
        assert_eq!(
            Outcome::from_parts("tap_to_confirm", "", "DAY", None, None),
            None
        );
        assert_eq!(
            Outcome::from_parts("pass_issued", "", "", Some(pass.clone()), None),
            None
        );
        assert_eq!(
            Outcome::from_parts("GRANTED", "", "", Some(pass), None),
            None
        );
    }

    #[test]
    fn pay_as_you_go_amounts_on_the_wire() {
        let d = Decision {
            charged: Some(250),
            balance: Some(-150),
            balance_currency: Some(Currency::EUR),
            ..Decision::new(
                id("g1-8"),
                Outcome::Granted {
                    pass: crate::rules::payg_pass(),
                },
            )
        };
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).expect("json");
        assert_eq!(
            v,
            json!({"id": "g1-8", "outcome": "granted", "pass": {"type": "PAYG"},
                "charged": 250, "balance": -150, "balance_currency": "EUR"})
        );
        assert_eq!(
            Decision::from_json(d.to_json().as_bytes()).expect("parse"),
            d
        );
        // An outcome with a price of its own keeps its currency.
        let topped = Decision {
            balance: Some(1000),
            balance_currency: Some(Currency::EUR),
            ..Decision::new(
                id("t1-2"),
                Outcome::ToppedUp {
                    selected: ProductId::from_static("TOPUP_10"),
                    price: 1000,
                    currency: Currency::EUR,
                },
            )
        };
        assert_eq!(
            Decision::from_json(topped.to_json().as_bytes()).expect("parse"),
            topped
        );
    }

    #[test]
    fn decision_wire_format() {
        let d = Decision::new(
            id("g1-7"),
            Outcome::Granted {
                pass: PassInfo {
                    pass_type: ProductId::TEN_TRIP,
                    trips_remaining: Some(9),
                    expires_at: None,
                    remaining_ms: None,
                },
            },
        );
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).expect("json");
        assert_eq!(
            v,
            json!({"id": "g1-7", "outcome": "granted", "pass": {"type": "TEN_TRIP", "trips_remaining": 9}})
        );
        assert_eq!(
            Decision::from_json(d.to_json().as_bytes()).expect("parse"),
            d
        );

        let r = Decision::new(
            None,
            Outcome::Rejected {
                reason: RejectReason::MalformedJson,
                detail: "x".into(),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(
            v,
            json!({"id": null, "outcome": "rejected", "reason": "malformed_json", "detail": "x"})
        );
        assert_eq!(
            Decision::from_json(r.to_json().as_bytes()).expect("parse"),
            r
        );
    }

    #[test]
    fn every_outcome_round_trips() {
        let two = Catalogue::builtin(7_200_000);
        let terms = |id| two.product(id).expect("builtin").terms;
        let pass = PassInfo::new(&terms(ProductId::TWO_HOUR), None, 0);
        let all = [
            Outcome::Granted { pass: pass.clone() },
            Outcome::Denied {
                reason: DenyReason::Expired,
            },
            Outcome::SelectPass {
                products: vec![Offer {
                    id: ProductId::SINGLE_USE,
                    name: "Single".into(),
                    price: 250,
                    currency: Currency::EUR,
                }],
            },
            Outcome::AlreadyHasPass { pass: pass.clone() },
            Outcome::TapToConfirm {
                selected: ProductId::SINGLE_USE,
                price: 250,
                currency: Currency::EUR,
            },
            Outcome::PassIssued {
                pass,
                price: 0,
                currency: Currency::EUR,
            },
            Outcome::ToppedUp {
                selected: ProductId::from_static("TOPUP_10"),
                price: 1000,
                currency: Currency::EUR,
            },
            Outcome::CardMismatch,
            Outcome::TapCardFirst,
            Outcome::Stale,
            Outcome::EntrySettled {
                pass: PassInfo::new(&terms(ProductId::TEN_TRIP), None, 0),
            },
            Outcome::UnpaidEntry {
                reason: DenyReason::NoPass,
            },
            Outcome::Rejected {
                reason: RejectReason::UnknownField,
                detail: "d".into(),
            },
        ];
        for (o, name) in all.into_iter().zip(Outcome::NAMES) {
            assert_eq!(o.name(), name);
            let d = Decision::new(id("x"), o);
            let back = Decision::from_json(d.to_json().as_bytes()).expect("parse");
            assert_eq!(back, d);
            assert!(d.to_json().contains(&format!("\"outcome\":\"{name}\"")));
        }
    }

    #[test]
    fn stamped_payload() {
        let tap = Tap::new(
            MessageId::new("g1-1").expect("id"),
            CardId::new("04AB").expect("card"),
        );
        let json = Stamped {
            message: &tap,
            stamp: Stamp::offline(1_700_000_000_000),
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(
            v,
            json!({"id": "g1-1", "card": "04AB", "time": 1_700_000_000_000u64, "mode": "offline"})
        );
        for m in TapMode::ALL {
            assert_eq!(TapMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(TapMode::parse("OFFLINE"), None);
    }

    #[test]
    fn passes_as_issued() {
        let c = Catalogue::builtin(7_200_000);
        let terms = |id| c.product(id).expect("builtin").terms;
        let ten = PassInfo::new(&terms(ProductId::TEN_TRIP), None, 0);
        assert_eq!(ten.trips_remaining, Some(10));
        let single = PassInfo::new(&terms(ProductId::SINGLE_USE), None, 0);
        assert_eq!(single.trips_remaining, None);
        let day = PassInfo::new(&terms(ProductId::SINGLE_USE), Some(50), 20);
        assert_eq!((day.expires_at, day.remaining_ms), (Some(50), Some(30)));
        let json = serde_json::to_value(&ten).expect("json");
        assert_eq!(json, json!({"type": "TEN_TRIP", "trips_remaining": 10}));
    }
}
