//! Turning stream entries into terminal lines and JSON lines.
//!
//! Pure functions: an [`Entry`] goes in, a line comes out. Colours follow what operators expect:
//! passes issued yellow, two-hour activations magenta, journeys started blue with a ten-trip's
//! "N of 10 trips remaining" in yellow, denials red, rejected input dim red, blocks bold red and
//! unblocks green. Text that came from a device or an operator is stripped of control characters,
//! so an event cannot move the cursor or recolour the terminal.

use std::time::{Duration, UNIX_EPOCH};

use tapgate_protocol::status::HEARTBEAT_INTERVAL_SECS;
use tapgate_protocol::{DeviceId, DeviceKind, Event, EventKind, PassInfo, PassType};

use crate::stream::Entry;
use crate::text::{escape_json, escape_untrusted, MAX_TEXT};

/// A colour (SGR attributes) for one piece of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// No colour.
    Plain,
    /// Dim, for secondary text.
    Dim,
    /// Passes issued; ten-trip trips left.
    Yellow,
    /// Two-hour pass activated.
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
pub struct Line(pub Vec<(Paint, String)>);

impl Line {
    /// Appends a piece.
    pub fn push(&mut self, paint: Paint, text: impl Into<String>) {
        self.0.push((paint, text.into()));
    }

    /// The line with ANSI colours (`color`) or as plain text.
    pub fn render(&self, color: bool) -> String {
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
pub fn sanitize(s: &str) -> String {
    escape_untrusted(s, MAX_TEXT)
}

/// `2026-11-22T02:33:16Z` for Unix milliseconds.
pub fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `1h 05m`, `4m 10s`, `12s` for a remaining duration in milliseconds.
pub fn format_remaining(ms: u64) -> String {
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

fn spoken(p: Option<&PassInfo>) -> &'static str {
    p.map_or("unknown", |p| p.pass_type.spoken())
}

fn remaining(p: &PassInfo) -> Option<String> {
    p.remaining_ms.map(format_remaining)
}

/// The short label of an event kind: `ISSUED`, `ENTRY`, `DENIED` …
pub const fn label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::PassIssued => "ISSUED",
        EventKind::PassActivated => "ACTIVATED",
        EventKind::PassUsed => "ENTRY",
        EventKind::PassDenied => "DENIED",
        EventKind::Rejected => "REJECTED",
        EventKind::CardBlocked => "BLOCKED",
        EventKind::CardUnblocked => "UNBLOCKED",
        EventKind::TapStale => "STALE",
        EventKind::UnpaidEntry => "UNPAID",
        EventKind::ClockSkew => "CLOCK",
    }
}

/// The coloured line for one event: time, label, then [`describe`]; the label takes the colour
/// of the words after it.
pub fn event_line(e: &Event) -> Line {
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

/// The description of an event for the dashboard: `label`, `text`, and `trips` (a ten-trip's
/// "N of 10 trips remaining", shown highlighted) when there is one.
pub fn described(e: &Event) -> serde_json::Value {
    let mut text = String::new();
    let mut trips = None;
    for (i, (paint, piece)) in describe(e).0.into_iter().enumerate() {
        if i > 0 && paint == Paint::Yellow {
            trips = Some(piece);
        } else {
            text.push_str(&piece);
        }
    }
    serde_json::json!({"label": label(e.event), "text": text, "trips": trips})
}

/// The facts the dashboard shows that the monitor holds: pass names, a new ten-trip pass's
/// trips, and how long an online device may stay unheard before it shows as silent.
pub fn wording() -> serde_json::Value {
    let passes: serde_json::Map<String, serde_json::Value> = PassType::ALL
        .into_iter()
        .map(|p| (p.as_str().to_owned(), capitalised(p.spoken()).into()))
        .collect();
    serde_json::json!({
        "passes": passes,
        "ten_trip_entries": PassType::TEN_TRIP_ENTRIES,
        "silent_after_ms": SILENT_AFTER.as_millis(),
    })
}

/// An online device not heard from for this long (three missed heartbeats) shows as silent.
pub const SILENT_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT_INTERVAL_SECS);

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

/// The words for one event after its label, as coloured pieces: the one description the tail
/// prints and the dashboard shows. Device and operator text in it is sanitized.
pub fn describe(e: &Event) -> Line {
    let mut line = Line::default();
    let at = place(e.device_kind, e.device.as_ref());
    let reason = e.reason.as_deref().map(sanitize);
    let detail = e.detail.as_deref().map(sanitize);
    match e.event {
        EventKind::PassIssued => {
            let mut text = format!("{} pass for {}{at}", spoken(e.pass.as_ref()), card(e));
            if let Some(n) = e.pass.as_ref().and_then(|p| p.trips_remaining) {
                text.push_str(&format!(" ({n} trips)"));
            }
            line.push(Paint::Yellow, text);
        }
        EventKind::PassActivated => {
            let mut text = format!("two hour pass started by {}{at}", card(e));
            if let Some(left) = e.pass.as_ref().and_then(remaining) {
                text.push_str(&format!(", {left} left"));
            }
            line.push(Paint::Magenta, text);
        }
        EventKind::PassUsed => {
            line.push(
                Paint::Blue,
                format!(
                    "journey started: {}{at}, {} pass",
                    card(e),
                    spoken(e.pass.as_ref())
                ),
            );
            if let Some(p) = e.pass.as_ref() {
                match (p.pass_type, p.trips_remaining) {
                    (PassType::TenTrip, Some(n)) => {
                        line.push(Paint::Plain, ", ");
                        line.push(
                            Paint::Yellow,
                            format!("{n} of {} trips remaining", PassType::TEN_TRIP_ENTRIES),
                        );
                    }
                    (PassType::TwoHour, _) => {
                        if let Some(left) = remaining(p) {
                            line.push(Paint::Plain, format!(", {left} left"));
                        }
                    }
                    _ => {}
                }
            }
        }
        EventKind::PassDenied => {
            line.push(
                Paint::Red,
                format!(
                    "{}{at}: {}",
                    card(e),
                    reason.as_deref().unwrap_or("no reason given")
                ),
            );
        }
        EventKind::Rejected => {
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
            if let Some(d) = detail.as_deref() {
                text.push_str(&format!(" ({d})"));
            }
            line.push(Paint::DimRed, text);
        }
        EventKind::CardBlocked => {
            let by = detail.map_or_else(String::new, |d| format!(" by {d}"));
            line.push(
                Paint::BoldRed,
                format!(
                    "{}: {}{by}",
                    card(e),
                    reason.as_deref().unwrap_or("no reason given")
                ),
            );
        }
        EventKind::CardUnblocked => {
            let by = detail.map_or_else(String::new, |d| format!(" by {d}"));
            line.push(Paint::Green, format!("{}{by}", card(e)));
        }
        EventKind::TapStale => {
            line.push(
                Paint::Dim,
                format!(
                    "{}{at}: answered too late{}, nothing charged",
                    card(e),
                    tapped(e)
                ),
            );
        }
        EventKind::UnpaidEntry => {
            line.push(
                Paint::BoldRed,
                format!(
                    "{}{at} let in offline{}: {}",
                    card(e),
                    tapped(e),
                    reason.as_deref().unwrap_or("no reason given")
                ),
            );
        }
        EventKind::ClockSkew => {
            let who = place(e.device_kind, e.device.as_ref());
            let skew = e
                .skew_ms
                .map_or_else(String::new, |s| format!(" ({s:+} ms)"));
            let text = if reason.as_deref() == Some("clock_ok") {
                format!("device clock back in step{who}{skew}")
            } else {
                format!("device clock off{who}{skew}")
            };
            line.push(Paint::Magenta, text);
        }
    }
    line
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
pub fn entry_line(entry: &Entry) -> Line {
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
pub fn entry_value(entry: &Entry) -> serde_json::Value {
    let mut v = event_value(entry);
    if let (Ok(e), Some(map)) = (&entry.event, v.as_object_mut()) {
        map.insert("described".into(), described(e));
    }
    v
}

/// A stream entry as JSON: the event with `seq` set to the stream id, or
/// `{"seq": id, "unreadable": why}`.
pub fn event_value(entry: &Entry) -> serde_json::Value {
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
pub fn entry_json(entry: &Entry) -> String {
    event_value(entry).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{StreamId, Unreadable};
    use tapgate_protocol::{CardId, MessageId};

    const T: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn ev(kind: EventKind, pass: Option<PassInfo>) -> Event {
        let mut e = Event::new(kind, T);
        e.device = DeviceId::new("g1").ok();
        e.device_kind = Some(DeviceKind::Gate);
        e.card = CardId::new("0412AB").ok();
        e.pass = pass;
        e
    }

    fn pass(t: PassType, trips: Option<u32>, left: Option<u64>) -> Option<PassInfo> {
        Some(PassInfo {
            pass_type: t,
            trips_remaining: trips,
            expires_at: left.map(|l| T + l),
            remaining_ms: left,
        })
    }

    #[test]
    fn each_kind_reads_as_a_sentence() {
        let mut issued = ev(
            EventKind::PassIssued,
            pass(PassType::TenTrip, Some(10), None),
        );
        issued.device = DeviceId::new("t1").ok();
        issued.device_kind = Some(DeviceKind::Terminal);
        assert_eq!(
            event_line(&issued).render(false),
            "2023-11-14T22:13:20Z  ISSUED     ten trip pass for card 0412AB at terminal t1 (10 trips)"
        );
        let act = ev(
            EventKind::PassActivated,
            pass(PassType::TwoHour, None, Some(7_200_000)),
        );
        assert_eq!(
            event_line(&act).render(false),
            "2023-11-14T22:13:20Z  ACTIVATED  two hour pass started by card 0412AB at gate g1, 2h 00m left"
        );
        let used = ev(EventKind::PassUsed, pass(PassType::TenTrip, Some(9), None));
        assert_eq!(
            event_line(&used).render(false),
            "2023-11-14T22:13:20Z  ENTRY      journey started: card 0412AB at gate g1, ten trip pass, 9 of 10 trips remaining"
        );
        let single = ev(EventKind::PassUsed, pass(PassType::SingleUse, None, None));
        assert!(event_line(&single)
            .render(false)
            .ends_with("single trip pass"));
        let two = ev(
            EventKind::PassUsed,
            pass(PassType::TwoHour, None, Some(61_000)),
        );
        assert!(event_line(&two)
            .render(false)
            .ends_with("two hour pass, 1m 01s left"));
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
            pass(PassType::TenTrip, Some(3), None),
        ));
        assert_eq!(
            ten.0[4],
            (Paint::Yellow, "3 of 10 trips remaining".to_owned())
        );
        let coloured = ten.render(true);
        assert!(coloured.contains("\x1b[34mENTRY"), "{coloured:?}");
        assert!(coloured.contains("\x1b[33m3 of 10 trips remaining\x1b[0m"));
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
        let mut used = ev(EventKind::PassUsed, pass(PassType::TenTrip, Some(3), None));
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
            "journey started: card 0412AB at gate g1, ten trip pass, "
        );
        assert_eq!(d["trips"], "3 of 10 trips remaining");
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
        let denied = described(&ev(EventKind::PassDenied, None));
        assert_eq!(denied["trips"], serde_json::Value::Null);

        let w = wording();
        assert_eq!(w["passes"]["SINGLE_USE"], "Single trip");
        assert_eq!(w["passes"]["TWO_HOUR"], "Two hour");
        assert_eq!(w["ten_trip_entries"], 10);
        assert_eq!(w["silent_after_ms"], 90_000);
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
