//! One device message as the decide function takes it: the keys it may touch and its arguments,
//! in the order `decide.lua` reads them (its header lists them).
//!
//! Only the keys a message can touch are passed (a gate tap never reads a sale, a button never a
//! pass), and no argument the script can work out itself (the device kind follows from the op):
//! Redis turns each key and argument into a Lua string and a table slot on every call, about a
//! thousand instructions each.

use std::cell::RefCell;

use redis::Cmd;
use tapgate_protocol::fares::ServiceDay;
use tapgate_protocol::payg::{FareDay, Payg};
use tapgate_protocol::rules::Input;
use tapgate_protocol::{keys, Catalogue, DeviceId, DeviceKind, MessageId, Stamp, TapMode};

use super::library::{Function, Library};

/// A device message as it arrived: who sent it, its id, what it says and when it happened.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The kind of device that sent it.
    pub kind: DeviceKind,
    /// The device that sent it.
    pub device: &'a DeviceId,
    /// Its id, unique per device.
    pub id: &'a MessageId,
    /// What was sent.
    pub input: &'a Input,
    /// When it happened and whether the device waits; `None` for a payload from before stamps.
    pub stamp: Option<Stamp>,
    /// The waiting tap (same device) an offline entry stands for or a retap follows, whose charge
    /// it must not repeat.
    pub replaces: Option<&'a MessageId>,
}

/// One device message to decide.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub kind: DeviceKind,
    pub device: &'a DeviceId,
    pub id: &'a MessageId,
    /// What was sent.
    pub input: &'a Input,
    /// Decision time, Unix ms.
    pub now_ms: u64,
    /// When the message happened and whether the device waits; `None` for a payload from before
    /// stamps.
    pub stamp: Option<Stamp>,
    /// The waiting tap (same device) an offline entry stands for or a retap follows, whose charge
    /// it must not repeat.
    pub replaces: Option<&'a MessageId>,
    /// The service day `now_ms` is in, for a terminal's tap (a sale counts its revenue there and
    /// a `service_day` product is valid until it ends).
    pub day: Option<ServiceDay>,
    /// The fare catalogue's version ([`tapgate_protocol::Catalogue::version`]), stored with a
    /// sale when a button chooses its product.
    pub catalogue: &'a str,
    /// For a gate's tap under a catalogue with pay as you go: its terms, and the fare day of the
    /// time the rules run at ([`tapgate_protocol::rules::fare_time`]).
    pub payg: Option<(Payg, FareDay)>,
    /// For a terminal's tap: whether the catalogue sells top-ups.
    pub top_ups: bool,
}

impl<'a> Request<'a> {
    /// The request the bridge makes for `message` under `fares` at `now_ms`: a terminal's tap
    /// names the service day it is in and whether top-ups are on sale; a gate's tap under pay as
    /// you go names its terms and the fare day of the time the rules run at (the stamp's for an
    /// offline entry, `now_ms` otherwise; see [`Request::at_fare_time`]).
    pub fn new(message: Message<'a>, now_ms: u64, fares: &'a Catalogue) -> Self {
        let Message {
            kind,
            device,
            id,
            input,
            stamp,
            replaces,
        } = message;
        let fare_time = match stamp {
            Some(s) if s.mode == TapMode::Offline => s.time,
            _ => now_ms,
        };
        let gate = matches!(input, Input::GateTap(_));
        let terminal = matches!(input, Input::TerminalTap(_));
        Self {
            kind,
            device,
            id,
            input,
            now_ms,
            stamp,
            replaces,
            day: terminal.then(|| fares.service_day(now_ms)),
            catalogue: &fares.version,
            payg: fares
                .payg
                .filter(|_| gate)
                .map(|p| (p, fare_day(fares, fare_time))),
            top_ups: terminal && fares.sells_top_ups(),
        }
    }

    /// The same request with the fare day of `at`: what the script asks for
    /// ([`super::Answer::FareDayAt`]) when a device's clock lead moved an offline entry across a
    /// service-day boundary.
    pub fn at_fare_time(mut self, fares: &Catalogue, at: u64) -> Self {
        self.payg = self.payg.map(|(p, _)| (p, fares.fare_day(at)));
        self
    }
}

thread_local! {
    /// The fare day last worked out on this thread, with the version of the catalogue it is of.
    /// A service day lasts a day: nearly every gate tap finds its day here rather than in the
    /// time zone's rules.
    static FARE_DAY: RefCell<Option<(String, FareDay)>> = const { RefCell::new(None) };
}

/// The fare day of `at` under `fares` ([`Catalogue::fare_day`]), from the last one when `at`
/// falls in it.
fn fare_day(fares: &Catalogue, at: u64) -> FareDay {
    FARE_DAY.with_borrow_mut(|last| {
        if let Some((version, day)) = last.as_ref() {
            if *version == fares.version && (day.starts_at_ms..day.ends_at_ms).contains(&at) {
                return *day;
            }
        }
        let day = fares.fare_day(at);
        *last = Some((fares.version.clone(), day));
        day
    })
}

/// The op argument of each input. A gate tap's op is its device kind, and a terminal's messages
/// come from terminals: the script takes the device kind from the op.
fn op(input: &Input) -> &'static str {
    match input {
        Input::GateTap(_) => DeviceKind::Gate.as_str(),
        Input::TerminalTap(_) => DeviceKind::Terminal.as_str(),
        Input::Button(_) => "button",
    }
}

/// The `FCALL` deciding `req`; `settings` is [`super::StoreSettings::decide_arg`].
pub fn decide_command(library: &Library, settings: &str, req: &Request<'_>) -> Cmd {
    let mut k = Vec::with_capacity(14);
    k.extend([
        keys::seen(req.kind, req.device, req.id),
        keys::EVENTS_STREAM.to_owned(),
        keys::device_counters(req.device),
        keys::device(req.kind, req.device),
        keys::COUNTERS_STALE.to_owned(),
        keys::COUNTERS_DENIED.to_owned(),
    ]);
    let (mut last, mut after) = (None, None);
    let mut payg = None;
    let mut top_ups = None;
    let subject = match req.input {
        Input::GateTap(c) => {
            k.extend([
                keys::pass(c),
                keys::blocked(c),
                keys::card_recent(c),
                keys::COUNTERS_ENTRIES.to_owned(),
                keys::COUNTERS_UNPAID.to_owned(),
            ]);
            if let Some((_, day)) = &req.payg {
                k.push(keys::wallet(c));
                k.push(keys::revenue(&day.day.to_string()));
            }
            if let Some(waiting) = req.replaces {
                k.push(keys::seen(req.kind, req.device, waiting));
                k.push(keys::settled(req.kind, req.device, waiting));
                last = Some(waiting.as_str().to_owned());
            }
            if let Some((terms, day)) = &req.payg {
                payg = Some((
                    last.take().unwrap_or_default(),
                    terms.to_words(),
                    day.to_words(),
                ));
            }
            c.as_str()
        }
        Input::TerminalTap(c) => {
            k.extend([
                keys::pass(c),
                keys::blocked(c),
                keys::card_recent(c),
                keys::COUNTERS_ISSUED.to_owned(),
                keys::sale(req.device),
            ]);
            // Without a day (never from the bridge) a sale counts on the epoch's day and a
            // service-day pass sold now expires at once: loud in tests, harmless otherwise.
            let day = req.day.unwrap_or(ServiceDay::EPOCH);
            let label = day.label();
            k.push(keys::revenue(&label));
            k.push(keys::wallet(c));
            last = Some(day.ends_at_ms.to_string());
            after = Some(label);
            top_ups = req.top_ups.then_some("1");
            c.as_str()
        }
        Input::Button(t) => {
            k.push(keys::sale(req.device));
            last = Some(format!("{} {}", t.to_words(), req.catalogue));
            t.product.as_str()
        }
    };
    let mut call = library.call(Function::Decide, &k);
    call.arg(op(req.input))
        .arg(req.now_ms)
        .arg(req.device.as_str())
        .arg(req.id.as_str())
        .arg(subject)
        .arg(req.stamp.map(|s| s.time.to_string()).unwrap_or_default())
        .arg(req.stamp.map(|s| s.mode.as_str()).unwrap_or(""))
        .arg(settings);
    match payg {
        Some((replaces, terms, day)) => call.arg(replaces).arg(terms).arg(day),
        None => call.arg(last).arg(after).arg(top_ups),
    };
    call
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{CardId, Catalogue, ProductId};

    fn args(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect()
    }

    /// The remembered fare day is the catalogue's own, across day boundaries, across time
    /// zones' day lengths and across catalogues.
    #[test]
    fn a_remembered_fare_day_is_the_catalogues() {
        let text = |zone: &str| {
            format!(
                "currency = \"EUR\"\ntime_zone = \"{zone}\"\nservice_day_starts = \"03:00\"\n\n\
                 [payg]\nfare = 100\n\n[[product]]\nid = \"T\"\nname = \"T\"\nprice = 500\n\
                 validity = \"top_up\"\n"
            )
        };
        let dublin = Catalogue::parse("a", &text("Europe/Dublin")).expect("fares");
        let tokyo = Catalogue::parse("b", &text("Asia/Tokyo")).expect("fares");
        // 2026-03-28 to 2026-03-30: Dublin moves its clocks on the 29th.
        let start = 1_774_656_000_000u64;
        for step in 0..200u64 {
            let at = start + step * 1_234_567;
            for fares in [&dublin, &tokyo] {
                assert_eq!(fare_day(fares, at), fares.fare_day(at), "{at}");
            }
        }
    }

    /// The script reads the kind from the op: a kind the op does not name would be recorded
    /// wrongly in events and counters.
    #[test]
    fn each_op_names_its_device_kind() {
        let device = DeviceId::new("d1").expect("device");
        let id = MessageId::new("m1").expect("id");
        let card = CardId::new("04AB").expect("card");
        let terms = Catalogue::builtin(1)
            .product(ProductId::TEN_TRIP)
            .expect("ten trip")
            .terms;
        let cases = [
            (DeviceKind::Gate, Input::GateTap(card.clone()), 11, 8),
            (DeviceKind::Terminal, Input::TerminalTap(card), 13, 10),
            (DeviceKind::Terminal, Input::Button(terms), 7, 9),
        ];
        for (kind, input, nkeys, nargs) in cases {
            let req = Request {
                kind,
                device: &device,
                id: &id,
                input: &input,
                now_ms: 1,
                stamp: None,
                replaces: None,
                day: None,
                catalogue: "c1",
                payg: None,
                top_ups: false,
            };
            let a = args(&decide_command(&Library::new(), "s", &req));
            assert_eq!(a[2], nkeys.to_string(), "{input:?}");
            let op = &a[3 + nkeys];
            let script_kind = if op == "button" { "terminal" } else { op };
            assert_eq!(script_kind, kind.as_str(), "{input:?}");
            assert_eq!(
                a.len(),
                3 + nkeys + nargs,
                "{input:?}: no replaces argument"
            );
        }
    }
}
