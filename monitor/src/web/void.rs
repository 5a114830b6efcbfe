//! Voiding a sale made in error.
//!
//! An operator may void a pass that a terminal sold by mistake, as long as it is unused and was
//! sold less than the void window ago (`void_window`, 0 turns voids off). [`judge`] decides from
//! the pass record alone whether it may be voided, and why not; the card lookup shows the same
//! answer (`status`) so the dashboard offers the button only while it would work.
//!
//! The void itself is one Lua script (`VOID`) that checks again, atomically, that the pass is
//! still the one that was judged (same sale time, service day, terminal, product and terms, and
//! still unused), deletes it, reverses the sale on its service day's revenue hash (sales, amount,
//! the product's and the terminal's fields go down by the sale, `voids` and `voided` go up) and
//! appends a `pass-voided` event, so a reader never sees one without the others. The script
//! holds no field name: the Rust side passes every name, from `tapgate_protocol::fields`. Each
//! void is logged and written to the audit trail with the operator's name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use redis::AsyncCommands;
use serde_json::{json, Value};
use tapgate_protocol::fares::ServiceDay;
use tapgate_protocol::fields::{pass as field, revenue};
use tapgate_protocol::{keys, pass_record, CardId, Currency, DeviceId, DeviceKind, Event};
use tapgate_protocol::{EventKind, PassInfo, ProductId};
use tracing::info;

use super::auth::{audit, client_of, Operator};
use super::blocklist::STREAM_MAXLEN;
use super::data::card_id;
use super::error::WebError;
use super::AppState;
use crate::audit::{Action, Record};

/// Why a sale cannot be voided. Each has a code for programs and a sentence for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoidRefusal {
    /// The void window is 0.
    #[error("voids are turned off on this dashboard (void window 0)")]
    Off,
    /// The card has no pass.
    #[error("the card has no pass to void")]
    NoPass,
    /// The pass was used at a gate.
    #[error("the pass was already used at a gate; only an unused pass can be voided")]
    Used,
    /// The record lacks the terminal or the service day: it was sold before sales kept them.
    #[error(
        "the pass was sold before sales recorded their terminal and service day, so its \
         revenue cannot be reversed"
    )]
    SoldBeforeVoids,
    /// The sale is older than the window.
    #[error("the sale is {} old, past the {} void window", fmt_age(*.age_ms), humantime::format_duration(*.window))]
    WindowPassed {
        /// How long ago it was sold, ms.
        age_ms: u64,
        /// The window.
        window: Duration,
    },
    /// A field of the record does not hold what the bridge writes.
    #[error("the pass record's `{0}` is unreadable; it cannot be voided from here")]
    Unreadable(&'static str),
    /// Between reading and voiding, the pass was used, voided or sold again.
    #[error("the pass changed while it was being voided (used, voided or sold again); look the card up again")]
    Changed,
}

fn fmt_age(ms: u64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(ms / 1000))
}

impl VoidRefusal {
    /// The machine-readable code of the refusal (the `error` of the JSON answer).
    pub const fn code(&self) -> &'static str {
        match self {
            VoidRefusal::Off => "voids_off",
            VoidRefusal::NoPass => "no_pass",
            VoidRefusal::Used => "pass_used",
            VoidRefusal::SoldBeforeVoids => "sold_before_voids",
            VoidRefusal::WindowPassed { .. } => "void_window_passed",
            VoidRefusal::Unreadable(_) => "unreadable_pass",
            VoidRefusal::Changed => "pass_changed",
        }
    }

    /// The HTTP status: 403 when voids are off, 404 without a pass, else 409 (the pass's state
    /// does not allow it).
    pub fn status(&self) -> StatusCode {
        match self {
            VoidRefusal::Off => StatusCode::FORBIDDEN,
            VoidRefusal::NoPass => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        }
    }
}

/// A sale that may be voided, as read from its pass record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// The product sold.
    pub product: ProductId,
    /// What it took, minor units of `currency`.
    pub price: u64,
    /// The price's currency.
    pub currency: Currency,
    /// When it was sold, Unix ms.
    pub issued_at: u64,
    /// The terminal that sold it.
    pub sold_by: DeviceId,
    /// The service day whose revenue counted it, `YYYY-MM-DD`.
    pub day: String,
    /// Until when it may be voided, Unix ms.
    pub voidable_until: u64,
    /// The record's fields the script checks are unchanged, as they were read.
    checks: Vec<(&'static str, String)>,
}

/// A pass record: field → value.
pub(crate) type PassRecord = HashMap<String, String>;

/// Whether the sale behind `pass` may be voided at `now_ms` with a void window of `window`.
pub fn judge(pass: &PassRecord, now_ms: u64, window: Duration) -> Result<Sale, VoidRefusal> {
    if window.is_zero() {
        return Err(VoidRefusal::Off);
    }
    if pass.is_empty() {
        return Err(VoidRefusal::NoPass);
    }
    if pass.contains_key(field::USED_AT) {
        return Err(VoidRefusal::Used);
    }
    let (Some(sold_by), Some(day)) = (pass.get(field::SOLD_BY), pass.get(field::DAY)) else {
        return Err(VoidRefusal::SoldBeforeVoids);
    };
    let stored = pass_record::read(pass, 0)
        .map_err(|u| VoidRefusal::Unreadable(u.field))?
        .ok_or(VoidRefusal::NoPass)?;
    if !pass.contains_key(field::ISSUED_AT) {
        return Err(VoidRefusal::Unreadable(field::ISSUED_AT));
    }
    let issued_at = stored.pass.issued_at;
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let age_ms = now_ms.saturating_sub(issued_at);
    if age_ms > window_ms {
        return Err(VoidRefusal::WindowPassed { age_ms, window });
    }
    let terms = stored.pass.terms;
    let (product, price, currency) = (terms.product, terms.price, terms.currency);
    if i64::try_from(price).is_err() {
        return Err(VoidRefusal::Unreadable(field::TERMS));
    }
    let sold_by =
        DeviceId::new(sold_by.as_str()).map_err(|_| VoidRefusal::Unreadable(field::SOLD_BY))?;
    let day = day_label(day).ok_or(VoidRefusal::Unreadable(field::DAY))?;
    let checks = stored
        .sale_fields()
        .iter()
        .map(|name| (*name, pass.get(*name).cloned().unwrap_or_default()))
        .collect();
    Ok(Sale {
        product,
        price,
        currency,
        issued_at,
        sold_by,
        day,
        voidable_until: issued_at.saturating_add(window_ms),
        checks,
    })
}

/// What the card lookup shows about voiding `pass`: `{"voidable": true, "until": ms}` or
/// `{"voidable": false, "reason": code, "message": text}`.
pub(crate) fn status(pass: &PassRecord, now_ms: u64, window: Duration) -> Value {
    match judge(pass, now_ms, window) {
        Ok(sale) => json!({"voidable": true, "until": sale.voidable_until}),
        Err(r) => json!({"voidable": false, "reason": r.code(), "message": r.to_string()}),
    }
}

/// `s` as a service day label if it is one: `YYYY-MM-DD`, a real calendar date.
pub(crate) fn day_label(s: &str) -> Option<String> {
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let day = ServiceDay {
        date: s.parse().ok()?,
        ..ServiceDay::EPOCH
    };
    let label = day.label();
    (label == s).then_some(label)
}

impl Sale {
    /// The revenue fields a void changes and by how much: the sale comes off every count and
    /// amount it went into, and onto `voids` and `voided`.
    pub fn reversal(&self) -> Vec<(String, i64)> {
        // `judge` only accepts a price that fits.
        let p = i64::try_from(self.price).unwrap_or(i64::MAX);
        let (product, terminal) = (self.product.as_str(), self.sold_by.as_str());
        vec![
            (revenue::SALES.to_owned(), -1),
            (revenue::AMOUNT.to_owned(), -p),
            (revenue::product_sales(product), -1),
            (revenue::product_amount(product), -p),
            (revenue::terminal_sales(terminal), -1),
            (revenue::terminal_amount(terminal), -p),
            (revenue::VOIDS.to_owned(), 1),
            (revenue::VOIDED.to_owned(), p),
        ]
    }

    /// The `pass-voided` event of this sale on `card`, by `operator` at `now_ms`.
    pub fn event(&self, card: &CardId, operator: &str, now_ms: u64) -> Event {
        let mut e = Event::new(EventKind::PassVoided, now_ms);
        e.device = Some(self.sold_by.clone());
        e.device_kind = Some(DeviceKind::Terminal);
        e.card = Some(card.clone());
        e.pass = Some(PassInfo {
            pass_type: self.product,
            trips_remaining: None,
            expires_at: None,
            remaining_ms: None,
        });
        e.price = Some(self.price);
        e.currency = Some(self.currency);
        // `day` is a checked label, so it parses.
        e.day = self.day.parse().ok();
        e.detail = Some(operator.to_owned());
        e
    }
}

/// KEYS: the pass, the revenue of its service day, the stream. ARGV: stream maxlen, the name of
/// the used-at field, N, then N (field, value) pairs the pass must still hold, M, then M
/// (revenue field, increment) pairs, then the event's stream fields and values. Returns
/// `{'voided', stream id}`, or `{refusal}`: `gone`, `used` or `changed`.
pub(crate) const VOID: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
if redis.call('HGET', KEYS[1], ARGV[2]) then return {'used'} end
local i = 4
for _ = 1, tonumber(ARGV[3]) do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return {'changed'} end
  i = i + 2
end
local m = tonumber(ARGV[i])
i = i + 1
redis.call('DEL', KEYS[1])
for _ = 1, m do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return {'voided', redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i))}
";

/// Runs the `VOID` script for `sale` on `card`; returns the event's stream id.
pub async fn apply(
    conn: &mut impl redis::aio::ConnectionLike,
    card: &CardId,
    sale: &Sale,
    event: &Event,
) -> Result<String, WebError> {
    let script = redis::Script::new(VOID);
    let mut inv = script.prepare_invoke();
    inv.key(keys::pass(card))
        .key(keys::revenue(&sale.day))
        .key(keys::EVENTS_STREAM)
        .arg(STREAM_MAXLEN)
        .arg(field::USED_AT)
        .arg(sale.checks.len());
    for (name, value) in &sale.checks {
        inv.arg(*name).arg(value);
    }
    let reversal = sale.reversal();
    inv.arg(reversal.len());
    for (name, by) in &reversal {
        inv.arg(name).arg(*by);
    }
    inv.arg(event.stream_fields());
    let reply: Vec<String> = inv.invoke_async(conn).await?;
    match reply.as_slice() {
        [ok, seq] if ok == "voided" => Ok(seq.clone()),
        [r] if r == "used" => Err(VoidRefusal::Used.into()),
        [r] if r == "gone" || r == "changed" => Err(VoidRefusal::Changed.into()),
        other => Err(WebError::Internal(format!(
            "unexpected void script reply {other:?}"
        ))),
    }
}

/// `POST /api/cards/{card}/void`: voids the card's pass if [`judge`] allows it.
pub(crate) async fn void(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Operator(s): Operator,
    Path(card): Path<String>,
) -> Result<Json<Value>, WebError> {
    let card = card_id(&card)?;
    let window = state.config.void_window;
    if window.is_zero() {
        return Err(VoidRefusal::Off.into());
    }
    let mut redis = state.redis.clone();
    let pass: PassRecord = redis.hgetall(keys::pass(&card)).await?;
    let now = state.clock.now_ms();
    let sale = judge(&pass, now, window)?;
    let ev = sale.event(&card, &s.operator, now);
    let seq = apply(&mut redis, &card, &sale, &ev).await?;
    let ip = client_of(&state, peer, &headers);
    let amount = sale.currency.format(sale.price);
    info!(
        operator = %s.operator, %card, product = %sale.product, price = sale.price,
        currency = %sale.currency, day = %sale.day, terminal = %sale.sold_by, %ip,
        "Sale voided"
    );
    audit(
        &state,
        Record {
            action: Action::Void,
            operator: &s.operator,
            from: Some(ip.to_string()),
            card: Some(card.as_str()),
            reason: None,
            product: Some(sale.product.as_str()),
            price: Some(amount.clone()),
        },
    )
    .await;
    Ok(Json(json!({
        "card": card, "voided": true, "product": sale.product, "price": sale.price,
        "currency": sale.currency, "amount": amount, "day": sale.day, "sold_by": sale.sold_by,
        "issued_at": sale.issued_at, "by": s.operator, "at": now, "seq": seq,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);
    const SOLD: u64 = 1_700_000_000_000;

    fn record(pairs: &[(&str, &str)]) -> PassRecord {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A pass sold now: its terms in one field.
    fn sold() -> PassRecord {
        record(&[
            (field::TYPE, "DAY"),
            (field::TERMS, "service_day 0 0 750 EUR abc"),
            (field::TRIPS, "0"),
            (field::EXPIRES_AT, "1700010000000"),
            (field::ISSUED_AT, "1700000000000"),
            (field::SOLD_BY, "t1"),
            (field::DAY, "2023-11-14"),
        ])
    }

    /// The same sale as written before the terms were one field.
    fn sold_earlier() -> PassRecord {
        record(&[
            (field::TYPE, "DAY"),
            (field::VALIDITY, "service_day"),
            (field::TRIPS, "0"),
            (field::DURATION, "0"),
            (field::PRICE, "750"),
            (field::CURRENCY, "EUR"),
            (field::EXPIRES_AT, "1700010000000"),
            (field::ISSUED_AT, "1700000000000"),
            (field::SOLD_BY, "t1"),
            (field::DAY, "2023-11-14"),
            (field::CATALOGUE, "abc"),
        ])
    }

    #[test]
    fn both_layouts_name_the_same_sale_and_pin_their_own_fields() {
        let now = judge(&sold(), SOLD, WINDOW).expect("voidable");
        let earlier = judge(&sold_earlier(), SOLD, WINDOW).expect("voidable");
        assert_eq!(now.reversal(), earlier.reversal());
        assert!(now
            .checks
            .iter()
            .any(|(f, v)| *f == field::TERMS && v.contains("750")));
        assert!(earlier
            .checks
            .iter()
            .any(|(f, v)| *f == field::PRICE && v == "750"));
    }

    #[test]
    fn an_unused_recent_sale_may_be_voided_until_the_window_ends() {
        let sale = judge(&sold(), SOLD + 1000, WINDOW).expect("voidable");
        assert_eq!(sale.product.as_str(), "DAY");
        assert_eq!((sale.price, sale.currency), (750, Currency::EUR));
        assert_eq!(sale.sold_by.as_str(), "t1");
        assert_eq!(sale.day, "2023-11-14");
        assert_eq!(sale.voidable_until, SOLD + 600_000);
        assert!(
            judge(&sold(), SOLD + 600_000, WINDOW).is_ok(),
            "the window's last ms"
        );
        assert_eq!(
            judge(&sold(), SOLD + 600_001, WINDOW),
            Err(VoidRefusal::WindowPassed {
                age_ms: 600_001,
                window: WINDOW
            })
        );
        // A bridge clock a little ahead of the monitor's is no reason to refuse.
        assert!(judge(&sold(), SOLD - 5000, WINDOW).is_ok());
    }

    #[test]
    fn each_refusal_has_its_own_code() {
        let mut used = sold();
        used.insert(field::USED_AT.into(), (SOLD + 5).to_string());
        let mut legacy = sold();
        legacy.remove(field::SOLD_BY);
        let mut no_day = sold();
        no_day.remove(field::DAY);
        let mut bad_day = sold();
        bad_day.insert(field::DAY.into(), "2023-02-30".into());
        let mut bad_price = sold();
        bad_price.insert(field::TERMS.into(), "service_day 0 0 -1 EUR".into());
        let mut bad_earlier_price = sold_earlier();
        bad_earlier_price.insert(field::PRICE.into(), "-1".into());
        let cases = [
            (sold(), Duration::ZERO, "voids_off"),
            (PassRecord::new(), WINDOW, "no_pass"),
            (used, WINDOW, "pass_used"),
            (legacy, WINDOW, "sold_before_voids"),
            (no_day, WINDOW, "sold_before_voids"),
            (bad_day, WINDOW, "unreadable_pass"),
            (bad_price, WINDOW, "unreadable_pass"),
            (bad_earlier_price, WINDOW, "unreadable_pass"),
        ];
        for (pass, window, code) in cases {
            let r = judge(&pass, SOLD, window).expect_err(code);
            assert_eq!(r.code(), code, "{r}");
            let shown = status(&pass, SOLD, window);
            assert_eq!(shown["voidable"], false);
            assert_eq!(shown["reason"], code);
            assert_eq!(shown["message"], r.to_string());
        }
        let late = judge(&sold(), SOLD + 3_600_000, WINDOW).expect_err("late");
        assert_eq!(
            late.to_string(),
            "the sale is 1h old, past the 10m void window"
        );
    }

    #[test]
    fn a_void_takes_the_sale_off_every_field_it_went_into() {
        let sale = judge(&sold(), SOLD, WINDOW).expect("voidable");
        let r: HashMap<String, i64> = sale.reversal().into_iter().collect();
        assert_eq!(r.len(), 8, "eight distinct fields: {r:?}");
        // A pass sale's fields; top-ups and fares are not a pass's to reverse.
        for f in [
            revenue::SALES,
            revenue::AMOUNT,
            revenue::VOIDS,
            revenue::VOIDED,
        ] {
            assert!(r.contains_key(f), "{f} is changed");
        }
        for f in [
            revenue::TOP_UPS,
            revenue::TOPPED_UP,
            revenue::FARES,
            revenue::FARE_AMOUNT,
        ] {
            assert!(!r.contains_key(f), "{f} is not a pass sale's");
        }
        assert_eq!(r[revenue::SALES], -1);
        assert_eq!(r[revenue::AMOUNT], -750);
        assert_eq!(r[&revenue::product_sales("DAY")], -1);
        assert_eq!(r[&revenue::product_amount("DAY")], -750);
        assert_eq!(r[&revenue::terminal_sales("t1")], -1);
        assert_eq!(r[&revenue::terminal_amount("t1")], -750);
        assert_eq!((r[revenue::VOIDS], r[revenue::VOIDED]), (1, 750));
    }

    #[test]
    fn the_event_names_the_sale_and_the_operator() {
        let sale = judge(&sold(), SOLD, WINDOW).expect("voidable");
        let card = CardId::new("04AB").expect("card");
        let e = sale.event(&card, "alice", SOLD + 10);
        assert_eq!(e.event, EventKind::PassVoided);
        assert_eq!(e.device.as_ref().map(DeviceId::as_str), Some("t1"));
        assert_eq!(e.device_kind, Some(DeviceKind::Terminal));
        assert_eq!(e.pass_type(), Some(sale.product));
        assert_eq!((e.price, e.currency), (Some(750), Some(Currency::EUR)));
        assert_eq!(e.day.map(|d| d.to_string()).as_deref(), Some("2023-11-14"));
        assert_eq!(e.detail.as_deref(), Some("alice"));
    }

    #[test]
    fn day_labels_are_real_dates_in_one_form() {
        assert_eq!(day_label("2024-02-29").as_deref(), Some("2024-02-29"));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "20240101",
            "2024-1-01",
            "2024-01-01T00:00",
            "",
            "２０２４-01-01",
        ] {
            assert_eq!(day_label(bad), None, "{bad:?}");
        }
    }

    /// The script holds no field or key name: the only quoted words are Redis commands and its
    /// own replies.
    #[test]
    fn the_script_names_no_field() {
        let quoted: Vec<&str> = VOID.split('\'').skip(1).step_by(2).collect();
        let allowed = [
            "EXISTS", "HGET", "DEL", "HINCRBY", "XADD", "MAXLEN", "~", "*", "gone", "used",
            "changed", "voided",
        ];
        for q in quoted {
            assert!(allowed.contains(&q), "literal {q:?} in the void script");
        }
    }
}
