//! Turning stream entries into terminal lines and JSON lines.
//!
//! Pure functions: an [`Entry`] goes in, a line comes out. Passes are described from the event's
//! data, never from a list of products: the product id, the trips left of a pass that counts
//! trips, the time left of one that expires, and the price of a sale. Colours follow what
//! operators expect: passes issued yellow with their price in yellow, activations magenta,
//! journeys started blue with "N trips remaining" in yellow, denials red, rejected input dim red,
//! blocks bold red and unblocks green. Text that came from a device or an operator is stripped of
//! control characters, so an event cannot move the cursor or recolour the terminal.

use std::time::{Duration, UNIX_EPOCH};

use tapgate_protocol::status::HEARTBEAT_INTERVAL_SECS;
use tapgate_protocol::{DeviceId, DeviceKind, Event, EventKind, PassInfo};

use crate::stream::Entry;
use crate::text::{escape_json, escape_untrusted, MAX_TEXT};

/// A colour (SGR attributes) for one piece of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paint {
    /// No colour.
    Plain,
    /// Dim, for secondary text.
    Dim,
    /// Passes issued, a sale's price, trips left.
    Yellow,
    /// A pass's window started (activated); device clocks.
    Magenta,
    /// Journey started (pass used).
    Blue,
    /// Denied.
    Red,
    /// Rejected input.
    DimRed,
    /// Card blocked.
    BoldRed,
    /// Card unblocked.
    Green,
}

impl Paint {
    const fn sgr(self) -> &'static str {
        match self {
            Paint::Plain => "",
            Paint::Dim => "2",
            Paint::Yellow => "33",
            Paint::Magenta => "35",
            Paint::Blue => "34",
            Paint::Red => "31",
            Paint::DimRed => "2;31",
            Paint::BoldRed => "1;31",
            Paint::Green => "32",
        }
    }
}

/// A line as coloured pieces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Line(pub Vec<(Paint, String)>);

impl Line {
    /// Appends a piece.
    pub(crate) fn push(&mut self, paint: Paint, text: impl Into<String>) {
        self.0.push((paint, text.into()));
    }

    /// The line with ANSI colours (`color`) or as plain text.
    pub(crate) fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for (paint, text) in &self.0 {
            if color && *paint != Paint::Plain {
                out.push_str("\x1b[");
                out.push_str(paint.sgr());
                out.push('m');
                out.push_str(text);
                out.push_str("\x1b[0m");
            } else {
                out.push_str(text);
            }
        }
        out
    }
}

/// Device text for a terminal line: controls and bidi characters escaped, length capped.
pub(crate) fn sanitize(s: &str) -> String {
    escape_untrusted(s, MAX_TEXT)
}

/// `2026-11-22T02:33:16Z` for Unix milliseconds.
pub(crate) fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `1h 05m`, `4m 10s`, `12s` for a remaining duration in milliseconds.
pub(crate) fn format_remaining(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

fn place(kind: Option<DeviceKind>, device: Option<&DeviceId>) -> String {
    match (kind, device) {
        (Some(k), Some(d)) => format!(" at {k} {d}"),
        (None, Some(d)) => format!(" at {d}"),
        _ => String::new(),
    }
}

fn card(e: &Event) -> String {
    e.card
        .as_ref()
        .map_or_else(|| "card ?".to_owned(), |c| format!("card {c}"))
}

/// The product a pass was sold as, by its id (as the event names it).
fn product(p: Option<&PassInfo>) -> &str {
    p.map_or("unknown", |p| p.pass_type.as_str())
}

fn remaining(p: &PassInfo) -> Option<String> {
    p.remaining_ms.map(format_remaining)
}

/// `1 trip`, `10 trips`.
fn trips(n: u32) -> String {
    if n == 1 {
        "1 trip".to_owned()
    } else {
        format!("{n} trips")
    }
}

/// What a sale took, as people read it (`7.50 EUR`), when the event says.
fn price(e: &Event) -> Option<String> {
    let (minor, currency) = e.price.zip(e.currency)?;
    Some(currency.format(minor))
}

/// The short label of an event kind: `ISSUED`, `ENTRY`, `DENIED` …
pub(crate) const fn label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::PassIssued => "ISSUED",
        EventKind::PassVoided => "VOIDED",
        EventKind::PassActivated => "ACTIVATED",
        EventKind::PassUsed => "ENTRY",
        EventKind::FareCharged => "FARE",
        EventKind::ToppedUp => "TOP-UP",
        EventKind::PassDenied => "DENIED",
        EventKind::Rejected => "REJECTED",
        EventKind::CardBlocked => "BLOCKED",
        EventKind::CardUnblocked => "UNBLOCKED",
        EventKind::CardReplaced => "REPLACED",
        EventKind::TapStale => "STALE",
        EventKind::UnpaidEntry => "UNPAID",
        EventKind::ClockSkew => "CLOCK",
    }
}

/// The coloured line for one event: time, label, then [`describe`]; the label takes the colour
/// of the words after it.
pub(crate) fn event_line(e: &Event) -> Line {
    let mut line = Line::default();
    line.push(Paint::Dim, format_time(e.time));
    line.push(Paint::Plain, "  ");
    let mut words = describe(e).0.into_iter();
    if let Some((paint, text)) = words.next() {
        line.push(paint, format!("{:<11}{text}", label(e.event)));
    }
    line.0.extend(words);
    line
}

/// The description of an event for the dashboard: `label`, `text`, and the pieces the tail
/// highlights after it, each shown apart: `trips` (a pass's "N trips remaining") and `price`
/// (what a sale took, "7.50 EUR"), when there are.
pub(crate) fn described(e: &Event) -> serde_json::Value {
    let mut text = String::new();
    let (mut trips, mut price) = (None, None);
    for (_, mark, piece) in pieces(e) {
        match mark {
            Mark::Text => text.push_str(&piece),
            Mark::Trips => trips = Some(piece),
            Mark::Price => price = Some(piece),
        }
    }
    serde_json::json!({"label": label(e.event), "text": text, "trips": trips, "price": price})
}

/// The facts the dashboard shows that the monitor holds: how long an online device may stay
/// unheard before it shows as silent. Products need no wording: events name them by id.
pub(crate) fn wording() -> serde_json::Value {
    serde_json::json!({ "silent_after_ms": SILENT_AFTER.as_millis() })
}

/// An online device not heard from for this long (three missed heartbeats) shows as silent.
pub(crate) const SILENT_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT_INTERVAL_SECS);

/// What a piece of a description is, so the dashboard can show the highlighted ones apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Part of the sentence.
    Text,
    /// A pass's trips left.
    Trips,
    /// What a sale took.
    Price,
}

/// The words for one event after its label, as coloured pieces: the one description the tail
/// prints and the dashboard shows. Device and operator text in it is sanitized.
pub(crate) fn describe(e: &Event) -> Line {
    Line(pieces(e).into_iter().map(|(p, _, t)| (p, t)).collect())
}

/// A description being built: coloured pieces, each marked with what it is.
#[derive(Default)]
struct Pieces(Vec<(Paint, Mark, String)>);

impl Pieces {
    /// Appends a piece of the sentence.
    fn push(&mut self, paint: Paint, text: impl Into<String>) {
        self.mark(paint, Mark::Text, text);
    }

    /// Appends a piece the dashboard shows apart.
    fn mark(&mut self, paint: Paint, mark: Mark, text: impl Into<String>) {
        self.0.push((paint, mark, text.into()));
    }
}

/// [`describe`], each piece marked with what it is.
fn pieces(e: &Event) -> Vec<(Paint, Mark, String)> {
    let mut line = Pieces::default();
    match e.event {
        EventKind::PassIssued
        | EventKind::PassVoided
        | EventKind::FareCharged
        | EventKind::ToppedUp => line.sale(e),
        EventKind::PassActivated
        | EventKind::PassUsed
        | EventKind::PassDenied
        | EventKind::TapStale
        | EventKind::UnpaidEntry => line.ride(e),
        EventKind::CardBlocked | EventKind::CardUnblocked | EventKind::CardReplaced => {
            line.operator_action(e);
        }
        EventKind::Rejected | EventKind::ClockSkew => line.device_trouble(e),
    }
    line.0
}

impl Pieces {
    /// Money taken or given back: a pass sold or voided, a fare paid as you go, a top-up; each
    /// with its price (and the balance left, when the event says).
    fn sale(&mut self, e: &Event) {
        let at = place(e.device_kind, e.device.as_ref());
        let pass = e.pass.as_ref();
        let (paint, sign) = match e.event {
            EventKind::PassIssued => {
                let mut text = format!("{} pass for {}{at}", product(pass), card(e));
                let holds: Vec<String> = [
                    pass.and_then(|p| p.trips_remaining).map(trips),
                    pass.and_then(remaining).map(|left| format!("{left} left")),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !holds.is_empty() {
                    text.push_str(&format!(" ({})", holds.join(", ")));
                }
                self.push(Paint::Yellow, text);
                (Paint::Yellow, "")
            }
            EventKind::PassVoided => {
                let detail = e.detail.as_deref().map(sanitize);
                let by = detail.as_deref().unwrap_or("an operator");
                self.push(
                    Paint::Red,
                    format!("{} pass of {}{at} voided by {by}", product(pass), card(e)),
                );
                (Paint::Red, "-")
            }
            EventKind::FareCharged => {
                self.push(
                    Paint::Blue,
                    format!("journey started: {}{at}, paid as you go", card(e)),
                );
                (Paint::Yellow, "")
            }
            _ => {
                self.push(
                    Paint::Yellow,
                    format!("{} top-up for {}{at}", product(pass), card(e)),
                );
                (Paint::Yellow, "")
            }
        };
        if let Some(p) = price(e) {
            self.push(Paint::Plain, ", ");
            self.mark(paint, Mark::Price, format!("{sign}{p}"));
        }
        if let (EventKind::FareCharged | EventKind::ToppedUp, Some(b), Some(c)) =
            (e.event, e.balance, e.currency)
        {
            self.push(Paint::Plain, format!(", balance {}", c.format(b)));
        }
    }

    /// A card at a gate or terminal: a pass activated or used, a tap denied, answered too late,
    /// or let in offline without paying.
    fn ride(&mut self, e: &Event) {
        let at = place(e.device_kind, e.device.as_ref());
        let reason = e.reason.as_deref().map(sanitize);
        let reason = reason.as_deref().unwrap_or("no reason given");
        let pass = e.pass.as_ref();
        match e.event {
            EventKind::PassActivated => {
                let mut text = format!("{} pass activated by {}{at}", product(pass), card(e));
                if let Some(left) = pass.and_then(remaining) {
                    text.push_str(&format!(", {left} left"));
                }
                self.push(Paint::Magenta, text);
            }
            EventKind::PassUsed => {
                self.push(
                    Paint::Blue,
                    format!("journey started: {}{at}, {} pass", card(e), product(pass)),
                );
                if let Some(n) = pass.and_then(|p| p.trips_remaining) {
                    self.push(Paint::Plain, ", ");
                    self.mark(
                        Paint::Yellow,
                        Mark::Trips,
                        format!("{} remaining", trips(n)),
                    );
                }
                if let Some(left) = pass.and_then(remaining) {
                    self.push(Paint::Plain, format!(", {left} left"));
                }
            }
            EventKind::PassDenied => self.push(Paint::Red, format!("{}{at}: {reason}", card(e))),
            EventKind::TapStale => self.push(
                Paint::Dim,
                format!(
                    "{}{at}: answered too late{}, nothing charged",
                    card(e),
                    tapped(e)
                ),
            ),
            _ => self.push(
                Paint::BoldRed,
                format!("{}{at} let in offline{}: {reason}", card(e), tapped(e)),
            ),
        }
    }

    /// An operator's doing: a card blocked, unblocked or replaced.
    fn operator_action(&mut self, e: &Event) {
        let detail = e.detail.as_deref().map(sanitize);
        let by = detail
            .as_deref()
            .map_or_else(String::new, |d| format!(" by {d}"));
        match e.event {
            EventKind::CardBlocked => {
                let reason = e.reason.as_deref().map(sanitize);
                let reason = reason.as_deref().unwrap_or("no reason given");
                self.push(Paint::BoldRed, format!("{}: {reason}{by}", card(e)));
            }
            EventKind::CardUnblocked => self.push(Paint::Green, format!("{}{by}", card(e))),
            _ => {
                let to = detail.as_deref().unwrap_or("?");
                self.push(
                    Paint::BoldRed,
                    format!(
                        "{} replaced by card {to}: blocked, its pass and balance moved",
                        card(e)
                    ),
                );
            }
        }
    }

    /// A device's message refused, or its clock out of (or back in) step.
    fn device_trouble(&mut self, e: &Event) {
        let reason = e.reason.as_deref().map(sanitize);
        if let EventKind::ClockSkew = e.event {
            let who = place(e.device_kind, e.device.as_ref());
            let skew = e
                .skew_ms
                .map_or_else(String::new, |s| format!(" ({s:+} ms)"));
            let text = if reason.as_deref() == Some("clock_ok") {
                format!("device clock back in step{who}{skew}")
            } else {
                format!("device clock off{who}{skew}")
            };
            self.push(Paint::Magenta, text);
            return;
        }
        let who = match (e.device_kind, e.device.as_ref()) {
            (Some(k), Some(d)) => format!("{k} {d}"),
            (None, Some(d)) => d.to_string(),
            _ => "unknown device".to_owned(),
        };
        let id =
            e.id.as_ref()
                .map_or_else(String::new, |i| format!(" message {i}"));
        let mut text = format!(
            "{who}{id}: {}",
            reason.as_deref().unwrap_or("no reason given")
        );
        if let Some(d) = e.detail.as_deref().map(sanitize) {
            text.push_str(&format!(" ({d})"));
        }
        self.push(Paint::DimRed, text);
    }
}

/// ` (tapped 08:00:00Z on the device clock)` for an event that carries when its tap happened.
fn tapped(e: &Event) -> String {
    e.tap_time.map_or_else(String::new, |t| {
        let clock = e.clock.map_or("", |c| {
            if matches!(c, tapgate_protocol::message::ClockSource::Bridge) {
                " on the bridge clock"
            } else {
                ""
            }
        });
        format!(" (tapped {}{clock})", format_time(t))
    })
}

/// The line for a stream entry: its event, or `unreadable event <id>` with why.
pub(crate) fn entry_line(entry: &Entry) -> Line {
    match &entry.event {
        Ok(e) => event_line(e),
        Err(why) => {
            let mut line = Line::default();
            line.push(Paint::Dim, format_time(entry.id.ms));
            line.push(Paint::Plain, "  ");
            line.push(
                Paint::Plain,
                format!(
                    "unreadable event {} ({})",
                    entry.id,
                    sanitize(&why.to_string())
                ),
            );
            line
        }
    }
}

/// A stream entry as the dashboard reads it: [`event_value`] with the event's description
/// ([`described`]) under `described`.
pub(crate) fn entry_value(entry: &Entry) -> serde_json::Value {
    let mut v = event_value(entry);
    if let (Ok(e), Some(map)) = (&entry.event, v.as_object_mut()) {
        map.insert("described".into(), described(e));
    }
    v
}

/// A stream entry as JSON: the event with `seq` set to the stream id, or
/// `{"seq": id, "unreadable": why}`.
pub(crate) fn event_value(entry: &Entry) -> serde_json::Value {
    let unreadable =
        |why: String| serde_json::json!({"seq": entry.id.to_string(), "unreadable": why});
    match &entry.event {
        Ok(e) => {
            let mut e = e.clone();
            e.seq = Some(entry.id.to_string());
            escape_json(serde_json::to_value(&e).unwrap_or_else(|err| unreadable(err.to_string())))
        }
        Err(why) => escape_json(unreadable(why.to_string())),
    }
}

/// [`event_value`] as one line of JSON, for `tail --json`.
pub(crate) fn entry_json(entry: &Entry) -> String {
    event_value(entry).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{StreamId, Unreadable};
    use tapgate_protocol::{CardId, Currency, MessageId, ProductId};

    const T: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn ev(kind: EventKind, pass: Option<PassInfo>) -> Event {
        let mut e = Event::new(kind, T);
        e.device = DeviceId::new("g1").ok();
        e.device_kind = Some(DeviceKind::Gate);
        e.card = CardId::new("0412AB").ok();
        e.pass = pass;
        e
    }

    const DAY: ProductId = ProductId::from_static("DAY");

    fn pass(t: ProductId, trips: Option<u32>, left: Option<u64>) -> Option<PassInfo> {
        Some(PassInfo {
            pass_type: t,
            trips_remaining: trips,
            expires_at: left.map(|l| T + l),
            remaining_ms: left,
        })
    }

    /// A sale at terminal t1.
    fn sold(p: Option<PassInfo>, price: u64, currency: Currency) -> Event {
        let mut e = ev(EventKind::PassIssued, p);
        e.device = DeviceId::new("t1").ok();
        e.device_kind = Some(DeviceKind::Terminal);
        e.price = Some(price);
        e.currency = Some(currency);
        e
    }

    #[test]
    fn each_kind_reads_as_a_sentence() {
        let issued = sold(
            pass(ProductId::TEN_TRIP, Some(10), None),
            2_000,
            Currency::EUR,
        );
        assert_eq!(
            event_line(&issued).render(false),
            "2023-11-14T22:13:20Z  ISSUED     TEN_TRIP pass for card 0412AB at terminal t1 (10 trips), 20.00 EUR"
        );
        let act = ev(
            EventKind::PassActivated,
            pass(ProductId::TWO_HOUR, None, Some(7_200_000)),
        );
        assert_eq!(
            event_line(&act).render(false),
            "2023-11-14T22:13:20Z  ACTIVATED  TWO_HOUR pass activated by card 0412AB at gate g1, 2h 00m left"
        );
        let used = ev(
            EventKind::PassUsed,
            pass(ProductId::TEN_TRIP, Some(9), None),
        );
        assert_eq!(
            event_line(&used).render(false),
            "2023-11-14T22:13:20Z  ENTRY      journey started: card 0412AB at gate g1, TEN_TRIP pass, 9 trips remaining"
        );
        let last = ev(EventKind::PassUsed, pass(DAY, Some(1), None));
        assert!(event_line(&last)
            .render(false)
            .ends_with("DAY pass, 1 trip remaining"));
        let single = ev(EventKind::PassUsed, pass(ProductId::SINGLE_USE, None, None));
        assert!(event_line(&single)
            .render(false)
            .ends_with("SINGLE_USE pass"));
        let two = ev(
            EventKind::PassUsed,
            pass(ProductId::TWO_HOUR, None, Some(61_000)),
        );
        assert!(event_line(&two)
            .render(false)
            .ends_with("TWO_HOUR pass, 1m 01s left"));
        let mut denied = ev(EventKind::PassDenied, None);
        denied.reason = Some("no_pass".into());
        assert_eq!(
            event_line(&denied).render(false),
            "2023-11-14T22:13:20Z  DENIED     card 0412AB at gate g1: no_pass"
        );
        let mut rej = ev(EventKind::Rejected, None);
        rej.card = None;
        rej.id = MessageId::new("m7").ok();
        rej.reason = Some("unknown_field".into());
        rej.detail = Some("field \"x\" is not allowed".into());
        assert_eq!(
            event_line(&rej).render(false),
            "2023-11-14T22:13:20Z  REJECTED   gate g1 message m7: unknown_field (field \"x\" is not allowed)"
        );
        let mut blocked = Event::new(EventKind::CardBlocked, T);
        blocked.card = CardId::new("77").ok();
        blocked.reason = Some("stolen".into());
        blocked.detail = Some("alice".into());
        assert_eq!(
            event_line(&blocked).render(false),
            "2023-11-14T22:13:20Z  BLOCKED    card 77: stolen by alice"
        );
        blocked.event = EventKind::CardUnblocked;
        assert_eq!(
            event_line(&blocked).render(false),
            "2023-11-14T22:13:20Z  UNBLOCKED  card 77 by alice"
        );
    }

    #[test]
    fn a_sale_shows_its_product_and_price_whatever_the_product() {
        let day = sold(pass(DAY, None, None), 750, Currency::EUR);
        assert_eq!(
            event_line(&day).render(false),
            "2023-11-14T22:13:20Z  ISSUED     DAY pass for card 0412AB at terminal t1, 7.50 EUR"
        );
        // A pass valid to the end of the service day says how long it has left.
        let today = sold(
            pass(DAY, None, Some(3_600_000 * 20 + 60_000 * 30)),
            750,
            Currency::EUR,
        );
        assert!(
            event_line(&today)
                .render(false)
                .ends_with("terminal t1 (20h 30m left), 7.50 EUR"),
            "{}",
            event_line(&today).render(false)
        );
        let yen = sold(
            pass(ProductId::SINGLE_USE, None, None),
            300,
            Currency::parse("JPY").expect("JPY"),
        );
        assert!(event_line(&yen).render(false).ends_with(", 300 JPY"));
        let free = sold(pass(ProductId::SINGLE_USE, None, None), 0, Currency::EUR);
        assert!(event_line(&free).render(false).ends_with(", 0.00 EUR"));
        // An event from before sales carried prices says nothing of one.
        let mut old = sold(pass(ProductId::TEN_TRIP, Some(10), None), 0, Currency::EUR);
        (old.price, old.currency) = (None, None);
        assert!(event_line(&old)
            .render(false)
            .ends_with("terminal t1 (10 trips)"));
        let coloured = event_line(&day).render(true);
        assert!(coloured.contains("\x1b[33mISSUED"), "{coloured:?}");
        assert!(
            coloured.ends_with(", \x1b[33m7.50 EUR\x1b[0m"),
            "{coloured:?}"
        );

        let d = described(&day);
        assert_eq!(d["label"], "ISSUED");
        assert_eq!(d["text"], "DAY pass for card 0412AB at terminal t1, ");
        assert_eq!(d["price"], "7.50 EUR");
        assert_eq!(d["trips"], serde_json::Value::Null);
        assert_eq!(described(&old)["price"], serde_json::Value::Null);
    }

    #[test]
    fn colours_as_expected() {
        let colour_of = |e: &Event| event_line(e).0[2].0;
        assert_eq!(colour_of(&ev(EventKind::PassIssued, None)), Paint::Yellow);
        assert_eq!(
            colour_of(&ev(EventKind::PassActivated, None)),
            Paint::Magenta
        );
        assert_eq!(colour_of(&ev(EventKind::PassUsed, None)), Paint::Blue);
        assert_eq!(colour_of(&ev(EventKind::PassDenied, None)), Paint::Red);
        assert_eq!(colour_of(&ev(EventKind::Rejected, None)), Paint::DimRed);
        assert_eq!(colour_of(&ev(EventKind::CardBlocked, None)), Paint::BoldRed);
        assert_eq!(colour_of(&ev(EventKind::CardUnblocked, None)), Paint::Green);
        let ten = event_line(&ev(
            EventKind::PassUsed,
            pass(ProductId::TEN_TRIP, Some(3), None),
        ));
        assert_eq!(ten.0[4], (Paint::Yellow, "3 trips remaining".to_owned()));
        let coloured = ten.render(true);
        assert!(coloured.contains("\x1b[34mENTRY"), "{coloured:?}");
        assert!(coloured.contains("\x1b[33m3 trips remaining\x1b[0m"));
        assert!(!ten.render(false).contains('\x1b'));
    }

    #[test]
    fn device_text_cannot_drive_the_terminal() {
        let mut e = ev(EventKind::PassDenied, None);
        e.reason = Some("x\x1b[2J\ny".into());
        let line = event_line(&e).render(false);
        assert!(!line.contains('\x1b') && !line.contains('\n'), "{line:?}");
        assert!(line.ends_with("x\\u{1b}[2J\\u{a}y"), "{line:?}");
    }

    #[test]
    fn json_and_text_escape_c1_del_and_bidi() {
        let mut e = ev(EventKind::Rejected, None);
        e.reason = Some("a\u{9b}2Jb\x7f".into());
        e.detail = Some("evil\u{202e}txt.exe\u{2066}".into());
        let entry = Entry {
            id: StreamId { ms: T, seq: 0 },
            event: Ok(e.clone()),
        };
        let json = entry_json(&entry);
        assert!(!json.chars().any(crate::text::is_unsafe), "{json:?}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["reason"], "a\\u{9b}2Jb\\u{7f}");
        assert_eq!(v["detail"], "evil\\u{202e}txt.exe\\u{2066}");
        let line = event_line(&e).render(true);
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{9b}'),
            "{line:?}"
        );
        e.detail = Some("x".repeat(10_000));
        assert!(
            event_line(&e).render(false).chars().count() < 700,
            "length capped"
        );
    }

    #[test]
    fn unreadable_entries_are_shown() {
        let entry = Entry {
            id: StreamId { ms: T, seq: 3 },
            event: Err(Unreadable::MissingField),
        };
        assert_eq!(
            entry_line(&entry).render(false),
            "2023-11-14T22:13:20Z  unreadable event 1700000000000-3 (no `event` field)"
        );
        let v: serde_json::Value = serde_json::from_str(&entry_json(&entry)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"seq": "1700000000000-3", "unreadable": "no `event` field"})
        );
    }

    #[test]
    fn json_carries_the_stream_id() {
        let entry = Entry {
            id: StreamId { ms: T, seq: 0 },
            event: Ok(ev(EventKind::PassDenied, None)),
        };
        let v: serde_json::Value = serde_json::from_str(&entry_json(&entry)).expect("json");
        assert_eq!(v["seq"], "1700000000000-0");
        assert_eq!(v["event"], "pass-denied");
        assert_eq!(v["card"], "0412AB");
    }

    #[test]
    fn the_dashboard_gets_the_tails_words() {
        let mut used = ev(
            EventKind::PassUsed,
            pass(ProductId::TEN_TRIP, Some(3), None),
        );
        used.seq = None;
        let entry = Entry {
            id: StreamId { ms: T, seq: 1 },
            event: Ok(used.clone()),
        };
        let v = entry_value(&entry);
        let d = &v["described"];
        assert_eq!(d["label"], "ENTRY");
        assert_eq!(
            d["text"],
            "journey started: card 0412AB at gate g1, TEN_TRIP pass, "
        );
        assert_eq!(d["trips"], "3 trips remaining");
        assert_eq!(d["price"], serde_json::Value::Null);
        let line = event_line(&used).render(false);
        assert!(
            line.ends_with(&format!(
                "ENTRY      {}{}",
                d["text"].as_str().expect("text"),
                d["trips"].as_str().expect("trips")
            )),
            "{line}"
        );
        let plain: serde_json::Value = serde_json::from_str(&entry_json(&entry)).expect("json");
        assert!(
            plain.get("described").is_none(),
            "tail --json stays the event"
        );
        let sale = sold(pass(DAY, None, None), 750, Currency::EUR);
        let d = described(&sale);
        assert!(event_line(&sale).render(false).ends_with(&format!(
            "ISSUED     {}{}",
            d["text"].as_str().expect("text"),
            d["price"].as_str().expect("price")
        )));
        let denied = described(&ev(EventKind::PassDenied, None));
        assert_eq!(denied["trips"], serde_json::Value::Null);

        let w = wording();
        assert_eq!(w, serde_json::json!({"silent_after_ms": 90_000}));
    }

    proptest::proptest! {
        #[test]
        fn any_device_text_renders_on_one_clean_line(reason in "\\PC*|[\\x00-\\x1f\\x7f]*", detail in ".*") {
            let mut e = ev(EventKind::Rejected, None);
            e.reason = Some(reason);
            e.detail = Some(detail);
            let plain = event_line(&e).render(false);
            proptest::prop_assert!(!plain.chars().any(char::is_control), "{:?}", plain);
            let coloured = event_line(&e).render(true);
            // The only escapes are the ones we add: ESC always followed by our SGR codes.
            for (i, _) in coloured.match_indices('\x1b') {
                let rest = &coloured[i..];
                proptest::prop_assert!(rest.starts_with("\x1b[2;31m") || rest.starts_with("\x1b[0m") || rest.starts_with("\x1b[2m"), "{:?}", rest);
            }
        }
    }

    #[test]
    fn remaining_times() {
        assert_eq!(format_remaining(0), "0s");
        assert_eq!(format_remaining(59_999), "59s");
        assert_eq!(format_remaining(60_000), "1m 00s");
        assert_eq!(format_remaining(3_723_000), "1h 02m");
    }
}
