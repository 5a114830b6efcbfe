//! Reading what the decide function returns: the decision and the events it appended, as one
//! line of tab-separated fields (layout in `decide.lua`), or, for a redelivery of a message
//! decided before that layout, the JSON stored then.
//!
//! Events are rebuilt through [`Event::from_stream`] from the same fields the stream entry
//! holds, so what the bridge publishes and what a reader of the stream sees are one thing.

use serde::Deserialize;
use tapgate_protocol::stream;
use tapgate_protocol::{
    Currency, Decision, DeviceId, DeviceKind, Event, MessageId, Outcome, PassInfo, ProductId, Stamp,
};

/// Why a result cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadResult(pub String);

/// The message a result answers: what the stream entries repeat from it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub kind: DeviceKind,
    pub device: &'a DeviceId,
    pub id: &'a MessageId,
    /// The card, for taps.
    pub card: Option<&'a str>,
    /// The stamp, if any.
    pub stamp: Option<Stamp>,
}

/// A decision with its events (with `seq` set), in the order appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The answer.
    pub decision: Decision,
    /// The events.
    pub events: Vec<Event>,
}

/// Fixed fields before the events.
const FIXED: usize = 11;
/// Fixed fields of a line stored before prices (no price and currency). Such a line has ten
/// fields when it has no events (the last one empty), else its tenth is an event kind, never a
/// price's digits nor empty.
const FIXED_BEFORE_PRICES: usize = 9;

/// Reads a result line (or an older JSON result).
pub fn parse(text: &str, asked: &Asked<'_>) -> Result<Parsed, BadResult> {
    if text.starts_with('{') {
        return parse_json(text);
    }
    let bad = |why: &str| bad(text, why);
    let fields = line_fields(text);
    let (fixed, rest) = fields
        .split_at_checked(FIXED)
        .ok_or_else(|| bad("too few fields"))?;
    let line = Fixed::new(fixed).ok_or_else(|| bad("too few fields"))?;
    let number = |v: &str| number(v, text);
    let time_ms = number(line.time)?.ok_or_else(|| bad("no time"))?;
    let tap_ms = number(line.tap_time)?;
    let sold = line.sold(text)?;
    let outcome = Outcome::from_parts(
        line.outcome,
        line.reason,
        line.selected,
        line.pass_info(time_ms, tap_ms, asked, text)?,
        sold,
    )
    .ok_or_else(|| bad("not a decision"))?;
    // Pay as you go's "=charged,balance", in lines stored since it (before, this place holds an
    // event's kind, or is empty).
    let (money, rest) = match rest.split_first() {
        Some((m, rest)) if m.starts_with('=') => (Some(&m[1..]), rest),
        _ => (None, rest),
    };
    let (charged, balance) = amounts(money, text)?;
    let decision = Decision {
        id: Some(asked.id.clone()),
        outcome,
        charged,
        balance,
        balance_currency: sold
            .map(|(_, c)| c)
            .filter(|_| money.is_some_and(|m| m != ",")),
    };
    let balance_text = money.and_then(|m| m.split_once(',')).map_or("", |(_, b)| b);
    let rest: &[&str] = if rest == [""] { &[] } else { rest };
    let events = line.events(rest, balance_text, asked, text)?;
    Ok(Parsed { decision, events })
}

/// Why `text` cannot be read, quoting it (escaped, cut short).
fn bad(text: &str, why: &str) -> BadResult {
    BadResult(format!(
        "{why}: {:?}",
        tapgate_protocol::text::escape_untrusted(text, 200)
    ))
}

/// A number field of `text`: none when empty.
fn number(v: &str, text: &str) -> Result<Option<u64>, BadResult> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| bad(text, "not a number"))
}

/// The fields of a result line, a line stored before prices given an empty price and currency.
fn line_fields(text: &str) -> Vec<&str> {
    let mut fields = split_tabs(text);
    let before_prices = fields.len() == FIXED_BEFORE_PRICES + 1
        || fields
            .get(FIXED_BEFORE_PRICES)
            .is_some_and(|f| !f.is_empty() && !f.bytes().all(|b| b.is_ascii_digit()));
    if before_prices {
        fields.splice(FIXED_BEFORE_PRICES..FIXED_BEFORE_PRICES, ["", ""]);
    }
    fields
}

/// Pay as you go's amounts, "charged,balance" (either may be empty), when the line has them.
fn amounts(money: Option<&str>, text: &str) -> Result<(Option<u64>, Option<i64>), BadResult> {
    let Some(m) = money else {
        return Ok((None, None));
    };
    let (c, b) = m
        .split_once(',')
        .ok_or_else(|| bad(text, "unreadable amounts"))?;
    let balance = if b.is_empty() {
        None
    } else {
        Some(b.parse::<i64>().map_err(|_| bad(text, "not a balance"))?)
    };
    Ok((number(c, text)?, balance))
}

/// The fixed fields of a result line, in their order.
struct Fixed<'t> {
    outcome: &'t str,
    reason: &'t str,
    selected: &'t str,
    pass: &'t str,
    trips: &'t str,
    expires_at: &'t str,
    time: &'t str,
    tap_time: &'t str,
    clock: &'t str,
    price: &'t str,
    currency: &'t str,
}

impl<'t> Fixed<'t> {
    /// The fixed fields, if there are [`FIXED`] of them.
    fn new(fixed: &[&'t str]) -> Option<Self> {
        let [outcome, reason, selected, pass, trips, expires_at, time, tap_time, clock, price, currency] =
            *fixed
        else {
            return None;
        };
        Some(Self {
            outcome,
            reason,
            selected,
            pass,
            trips,
            expires_at,
            time,
            tap_time,
            clock,
            price,
            currency,
        })
    }

    /// The pass the decision reports, if any; its time left counted from the time the rules
    /// ran at (the bridge's `time_ms`, or the tap's `tap_ms` for an offline entry).
    fn pass_info(
        &self,
        time_ms: u64,
        tap_ms: Option<u64>,
        asked: &Asked<'_>,
        text: &str,
    ) -> Result<Option<PassInfo>, BadResult> {
        if self.pass.is_empty() {
            return Ok(None);
        }
        let pass_type = ProductId::parse(self.pass).ok_or_else(|| bad(text, "unknown product"))?;
        let trips_remaining = number(self.trips, text)?
            .map(u32::try_from)
            .transpose()
            .map_err(|_| bad(text, "trips out of range"))?;
        let expires_at = number(self.expires_at, text)?;
        let at = stream::rules_time(time_ms, tap_ms, asked.stamp.map(|s| s.mode));
        Ok(Some(PassInfo {
            pass_type,
            trips_remaining,
            expires_at,
            remaining_ms: expires_at.map(|e| e.saturating_sub(at)),
        }))
    }

    /// The price and currency of a sale or charge, if the decision has one.
    fn sold(&self, text: &str) -> Result<Option<(u64, Currency)>, BadResult> {
        match (number(self.price, text)?, self.currency) {
            (None, "") => Ok(None),
            (Some(p), c) => Ok(Some((
                p,
                Currency::parse(c).ok_or_else(|| bad(text, "unknown currency"))?,
            ))),
            (None, _) => Err(bad(text, "a currency without a price")),
        }
    }

    /// The events that follow the fixed fields (and the amounts), three fields each: kind,
    /// stream id and reason (a sale's service day); the rest of each is the decision's.
    fn events(
        &self,
        rest: &[&str],
        balance: &str,
        asked: &Asked<'_>,
        text: &str,
    ) -> Result<Vec<Event>, BadResult> {
        if rest.len() % 3 != 0 {
            return Err(bad(text, "events do not come in threes"));
        }
        let mut events = Vec::with_capacity(rest.len() / 3);
        for e in rest.chunks_exact(3) {
            let [kind, seq, ev_reason] = e else {
                continue;
            };
            let mut event = self.event(kind, ev_reason, balance, asked, text)?;
            event.seq = Some((*seq).to_owned());
            events.push(event);
        }
        Ok(events)
    }

    /// One event of kind `kind`, built from the fields its stream entry holds.
    fn event(
        &self,
        kind: &str,
        ev_reason: &str,
        balance: &str,
        asked: &Asked<'_>,
        text: &str,
    ) -> Result<Event, BadResult> {
        use tapgate_protocol::EventKind;
        let with_pass = EventKind::parse(kind).is_some_and(EventKind::has_pass_segment);
        // Events with an amount: their reason slot holds the service day they count on.
        let sold_event = [
            EventKind::PassIssued,
            EventKind::ToppedUp,
            EventKind::FareCharged,
        ]
        .iter()
        .any(|k| k.as_str() == kind);
        let wallet_event = sold_event && kind != EventKind::PassIssued.as_str();
        let mode = asked.stamp.map(|s| s.mode.as_str()).unwrap_or("");
        let get = |name: &str| -> Option<&str> {
            Some(match name {
                stream::EVENT => kind,
                stream::TIME => self.time,
                stream::DEVICE => asked.device.as_str(),
                stream::DEVICE_KIND => asked.kind.as_str(),
                stream::ID => asked.id.as_str(),
                stream::CARD => asked.card.unwrap_or(""),
                stream::PASS if with_pass => self.pass,
                stream::TRIPS if with_pass => self.trips,
                stream::EXPIRES_AT if with_pass => self.expires_at,
                // A sale's reason slot holds its service day.
                stream::REASON if !sold_event => ev_reason,
                stream::DAY if sold_event => ev_reason,
                stream::TAP_TIME => self.tap_time,
                stream::MODE if !self.tap_time.is_empty() => mode,
                stream::CLOCK => self.clock,
                stream::PRICE if sold_event => self.price,
                stream::CURRENCY if sold_event => self.currency,
                stream::BALANCE if wallet_event => balance,
                _ => return None,
            })
        };
        Event::from_stream(get).map_err(|e| bad(text, &e.to_string()))
    }
}

/// The line's tab-separated fields. A byte scan: a tab is ASCII, so every piece is still valid
/// UTF-8. On a result line (many short fields) it executes about a quarter of the instructions
/// `str::split` does (counted with the bench's `TAPGATE_BENCH_CALLGRIND`).
fn split_tabs(text: &str) -> Vec<&str> {
    let mut fields = Vec::with_capacity(24);
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\t' {
            fields.push(&text[start..i]);
            start = i + 1;
        }
    }
    fields.push(&text[start..]);
    fields
}

#[derive(Deserialize)]
struct JsonResult {
    decision: Decision,
    #[serde(default)]
    events: Vec<JsonEvent>,
}

#[derive(Deserialize)]
struct JsonEvent {
    seq: String,
    event: Event,
}

/// A result stored as JSON, before the tab-separated layout.
fn parse_json(text: &str) -> Result<Parsed, BadResult> {
    let r: JsonResult = serde_json::from_str(text).map_err(|e| {
        BadResult(format!(
            "{e}: {:?}",
            tapgate_protocol::text::escape_untrusted(text, 200)
        ))
    })?;
    Ok(Parsed {
        decision: r.decision,
        events: r
            .events
            .into_iter()
            .map(|e| Event {
                seq: Some(e.seq),
                ..e.event
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{ClockSource, EventKind, Outcome, PassInfo, ProductId, TapMode};

    #[test]
    fn tab_fields_are_those_of_str_split() {
        for text in [
            "",
            "\t",
            "a",
            "a\tb",
            "\ta\t\tb\t",
            "granted\t\t\tTWO_HOUR\t\t17\t16\t\t\t400\tEUR\tpass-used\t16-0\t",
            "é\tß\t€\t\u{1F68C}",
        ] {
            assert_eq!(
                split_tabs(text),
                text.split('\t').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }

    fn asked<'a>(device: &'a DeviceId, id: &'a MessageId, stamp: Option<Stamp>) -> Asked<'a> {
        Asked {
            kind: DeviceKind::Gate,
            device,
            id,
            card: Some("04AB"),
            stamp,
        }
    }

    #[test]
    fn activation_with_two_events() {
        let (device, id) = (
            DeviceId::new("g1").expect("device"),
            MessageId::new("m1").expect("id"),
        );
        let stamp = Stamp {
            time: 990,
            mode: TapMode::Online,
        };
        let line = "granted\t\t\tTWO_HOUR\t\t8000\t1000\t990\tdevice\t\t\tpass-activated\t1-0\t\tpass-used\t1-1\t";
        let p = parse(line, &asked(&device, &id, Some(stamp))).expect("parse");
        let pass = PassInfo {
            pass_type: ProductId::TWO_HOUR,
            trips_remaining: None,
            expires_at: Some(8000),
            remaining_ms: Some(7000),
        };
        assert_eq!(
            p.decision,
            Decision::new(Some(id.clone()), Outcome::Granted { pass: pass.clone() })
        );
        assert_eq!(p.events.len(), 2);
        let used = &p.events[1];
        assert_eq!(used.event, EventKind::PassUsed);
        assert_eq!(used.seq.as_deref(), Some("1-1"));
        assert_eq!(used.pass, Some(pass));
        assert_eq!(used.tap_time, Some(990));
        assert_eq!(used.mode, Some(TapMode::Online));
        assert_eq!(used.clock, Some(ClockSource::Device));
        assert_eq!(used.card.as_ref().map(|c| c.as_str()), Some("04AB"));
    }

    #[test]
    fn denial_without_stamp_and_no_events() {
        let (device, id) = (
            DeviceId::new("g1").expect("device"),
            MessageId::new("m1").expect("id"),
        );
        // Stored before prices (nine fixed fields) and after (eleven): both read.
        for line in [
            "denied\tno_pass\t\t\t\t\t5\t\t\tpass-denied\t2-0\tno_pass",
            "denied\tno_pass\t\t\t\t\t5\t\t\t\t\tpass-denied\t2-0\tno_pass",
        ] {
            let p = parse(line, &asked(&device, &id, None)).expect("parse");
            assert_eq!(p.events.len(), 1, "{line:?}");
            assert_eq!(p.events[0].reason.as_deref(), Some("no_pass"));
            assert_eq!(p.events[0].pass, None);
            assert_eq!(p.events[0].mode, None);
        }
        for line in [
            "select_pass\t\t\t\t\t\t5\t\t\t",
            "select_pass\t\t\t\t\t\t5\t\t\t\t\t",
        ] {
            let p = parse(line, &asked(&device, &id, None)).expect("p");
            let select = Outcome::SelectPass {
                products: Vec::new(),
            };
            assert_eq!(p.decision.outcome, select, "{line:?}");
            assert!(p.events.is_empty());
        }
        for bad in [
            "",
            "granted\t\t",
            "nonsense\t\t\t\t\t\t5\t\t\t\t\t",
            "denied\tno_pass\t\t\t\t\t5\t\t\t\t\tx",
            "tap_to_confirm\t\tDAY\t\t\t\t5\t\t\t750\teuro\t",
            "tap_to_confirm\t\tDAY\t\t\t\t5\t\t\t\tEUR\t",
        ] {
            assert!(parse(bad, &asked(&device, &id, None)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_sale_carries_its_price_and_service_day() {
        let (device, id) = (
            DeviceId::new("t1").expect("device"),
            MessageId::new("m1").expect("id"),
        );
        let asked = Asked {
            kind: DeviceKind::Terminal,
            ..asked(&device, &id, None)
        };
        // Stored since sales kept their day (in the event's reason slot), and before.
        for (line, day) in [
            (
                "pass_issued\t\t\tDAY\t\t\t5\t\t\t750\tEUR\tpass-issued\t3-0\t2026-12-06",
                Some("2026-12-06"),
            ),
            (
                "pass_issued\t\t\tDAY\t\t\t5\t\t\t750\tEUR\tpass-issued\t3-0\t",
                None,
            ),
        ] {
            let p = parse(line, &asked).expect("parse");
            let sold = &p.events[0];
            assert_eq!(sold.event, EventKind::PassIssued);
            assert_eq!((sold.price, sold.reason.as_deref()), (Some(750), None));
            assert_eq!(sold.day.map(|d| d.to_string()).as_deref(), day, "{line:?}");
        }
        let bad = "pass_issued\t\t\tDAY\t\t\t5\t\t\t750\tEUR\tpass-issued\t3-0\tsoon";
        assert!(parse(bad, &asked).is_err());
    }
}
