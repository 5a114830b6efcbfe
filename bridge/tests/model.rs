//! The real Redis script against the pure reference model (`tapgate_protocol::rules::decide`,
//! `decide_stored` for corrupt pass records): random sequences of taps, buttons, blocks, corrupted
//! pass records, redeliveries, reused ids and clock jumps must give the same decisions and leave
//! the same passes. With time (`decide_timed`): stamped and unstamped messages, waiting ones inside
//! and past the decision window, offline entries hours old, times too far ahead, and devices
//! whose measured clock skew is within or beyond the limit. Each case draws its own fare
//! catalogue (products of every validity, with their trips, periods and prices, written as a fares
//! file and parsed as the bridge parses it), and up to two more it may change to mid-sequence, as a
//! reload does (the same product ids on other terms: passes sold and sales in progress keep
//! theirs); it sells across service days and checks that each day's revenue counters equal the
//! prices of the sales the model made.
//!
//! Pay as you go: most catalogues drawn have a `[payg]` section (fare, optional daily and weekly
//! caps, a minimum balance of 0 or below) and a top-up product. Gate taps without a usable pass
//! are charged from the card's wallet, offline entries on their own service day's caps, clock
//! jumps cross service-day and week boundaries; after every message the wallet the script keeps
//! must equal the model's (balance, top-ups and charges in all, per day and per week), the
//! decision must carry the model's `charged` and `balance`, and on every card money is
//! conserved: top-ups = balance + charges, with charges per day and week within the caps in
//! force and the balance never below the minimum.
//!
//! Offline entries and retaps naming an earlier gate tap (`Op::Settle`): one that names a tap
//! granted is settled on that tap's charge (an offline entry at its time, a retap within
//! `RETAP_ACCEPTED_WITHIN_MS` after it), with no change, no event and that tap's amounts, once:
//! a granted tap pays for one replacement; any other is decided as usual. Late redeliveries (`Op::Forget`): a waiting tap sent again past
//! its decision window after its stored answer has gone is answered from the card's history,
//! exactly as first decided, while its events are among the card's recent ones, and is `stale`
//! (nothing charged) once they are not.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use tapgate_bridge::store::{Answer, Message, Request, Store, StoreSettings};
use tapgate_protocol::pass_record;
use tapgate_protocol::payg::{Wallet, PAYG_PRODUCT};
use tapgate_protocol::rules::{
    decide_timed, fare_time, Input, Pass, Sale, Settings, State, TimeSettings, Verdict, When,
    RETAP_ACCEPTED_WITHIN_MS,
};
use tapgate_protocol::{
    fields, keys, CardId, Catalogue, Currency, DenyReason, DeviceId, DeviceKind, MessageId,
    Outcome, PassInfo, ProductId, Stamp, TapMode, Validity,
};
use tapgate_testkit::RedisServer;

const SALE_TIMEOUT_MS: u64 = 3_000;
/// The period of a pass stored before terms were (a `TWO_HOUR` record without them).
const LEGACY_PERIOD_MS: u64 = 10_000;
const DAY_MS: u64 = 86_400_000;
const TIME: TimeSettings = TimeSettings {
    decision_window_ms: 1_500,
    max_future_ms: 5_000,
    max_skew_ms: 30_000,
    // Offline entries an hour old are settled (after passes sold since, which did not pay for
    // them), three hours old refused.
    max_offline_age_ms: 7_200_000,
};
const CARDS: [&str; 3] = ["11", "22", "33"];
const TERMINALS: [&str; 2] = ["t1", "t2"];

/// A message's stamp: none (a payload from before stamps), or the event this many ms before the
/// device's `now` (negative: ahead), waiting or offline.
type StampOp = Option<(i64, TapMode)>;

/// Device clock skews the model sets (device minus bridge, ms).
const SKEWS: [i64; 4] = [0, 20_000, 600_000, -600_000];

#[derive(Debug, Clone)]
enum Op {
    Gate(usize, StampOp),
    TerminalTap(usize, usize, StampOp),
    /// A terminal's button for the catalogue's product at this index (modulo its length).
    Button(usize, usize, StampOp),
    /// Sets the measured clock skew of the gate (`None`) or a terminal.
    Skew(Option<usize>, usize),
    Advance(u64),
    Block(usize),
    Unblock(usize),
    /// Overwrites the card's pass record with one of the garbled forms.
    Corrupt(usize, usize),
    /// Sends an earlier message again, same id and content (a redelivery).
    Redeliver(usize),
    /// Sends an earlier message's id from the same device with a gate or terminal tap of a card.
    Reuse(usize, usize),
    /// Puts the drawn catalogue at this index (modulo their number) in force, as a reload does.
    Reload(usize),
    /// A whole sale at a terminal: tap the card, press the product's button, tap the card again
    /// (three messages, fresh and waiting).
    Buy(usize, usize, usize),
    /// A gate message naming an earlier gate tap (the one at this index of those sent, modulo)
    /// as the one it replaces, for the same card: an offline entry at that tap's time (`true`),
    /// as a fail-open gate queues when the answer does not come, or a retap now (`false`), as a
    /// fail-closed gate's rider makes. Settled on that tap's charge when it was granted.
    Settle(usize, bool),
    /// A waiting card tap sent earlier (at this index of those eligible, modulo), sent again once
    /// it is past the decision window and its stored answer has gone: answered from the card's
    /// history (`decided_before` in the script) while its events are among the card's recent
    /// ones, else `stale`.
    Forget(usize),
}

/// Pass records the script cannot read: a type without terms that no earlier version wrote,
/// known types with garbled fields, an unknown validity, terms missing what they need, in each
/// layout.
const GARBLED: [&[(&str, &str)]; 11] = [
    &[("type", "MONTHLY"), ("trips", "0"), ("issued_at", "0")],
    &[("type", "TEN_TRIP"), ("trips", "lots"), ("issued_at", "0")],
    &[("type", "TWO_HOUR"), ("trips", "0"), ("expires_at", "soon")],
    &[("trips", "3")],
    &[("type", "DAY"), ("validity", "forever"), ("issued_at", "0")],
    &[("type", "DAY"), ("validity", "period"), ("issued_at", "0")],
    &[
        ("type", "TEN"),
        ("validity", "trips"),
        ("price", "-5"),
        ("trips", "2"),
    ],
    &[
        ("type", "DAY"),
        ("terms", "period 0 x 0 EUR"),
        ("issued_at", "0"),
    ],
    &[
        ("type", "DAY"),
        ("terms", "top_up 0 0 500 EUR"),
        ("issued_at", "0"),
    ],
    &[
        ("type", "TEN"),
        ("terms", "trips 10 0 500 EUR v1"),
        ("issued_at", "0"),
    ],
    &[
        ("type", "DAY"),
        ("terms", "service_day 0 0 500 EUR"),
        ("trips", "0"),
        ("expires_at", "99999999999999"),
        ("used_at", "soon"),
    ],
];

/// Drawn `[payg]` terms: fare, daily cap, weekly cap, minimum balance.
type PaygDraw = (u64, Option<u64>, Option<u64>, i64);

fn payg() -> impl Strategy<Value = Option<PaygDraw>> {
    prop_oneof![
        1 => Just(None),
        3 => (
            prop::sample::select(vec![1u64, 250, 400]),
            prop::sample::select(vec![None, Some(300u64), Some(700)]),
            prop::sample::select(vec![None, Some(1_000u64)]),
            prop::sample::select(vec![0i64, -250]),
        )
            .prop_map(Some),
    ]
}

/// A random fare catalogue as a fares file: one to five products of any validity, and pay as you
/// go with a top-up product (of 500 or 1,000) most of the time. A top-up drawn without pay as you
/// go is sold as a single instead.
fn catalogue() -> impl Strategy<Value = String> {
    let product = (
        prop::sample::select(Validity::ALL.to_vec()),
        1u32..4,
        prop::sample::select(vec![60_000u64, 120_000, 3_600_000]),
        prop::sample::select(vec![0u64, 1, 250, 750, 2_000]),
    );
    (
        prop::collection::vec(product, 1..5),
        payg(),
        prop::sample::select(vec![500u64, 1_000]),
    )
        .prop_map(|(products, payg, top_up)| {
            let mut f = String::from(
                "currency = \"EUR\"\ntime_zone = \"UTC\"\nservice_day_starts = \"04:00\"\n",
            );
            if let Some((fare, daily, weekly, minimum)) = payg {
                f += &format!("\n[payg]\nfare = {fare}\nminimum_balance = {minimum}\n");
                if let Some(cap) = daily {
                    f += &format!("daily_cap = {cap}\n");
                }
                if let Some(cap) = weekly {
                    f += &format!("weekly_cap = {cap}\n");
                }
                f += &format!(
                    "\n[[product]]\nid = \"TOPUP\"\nname = \"Top up\"\nprice = {top_up}\n\
                 validity = \"top_up\"\n"
                );
            }
            for (i, (validity, trips, duration_ms, price)) in products.into_iter().enumerate() {
                let (validity, price) = match validity {
                    Validity::TopUp if payg.is_none() => (Validity::Single, price),
                    Validity::TopUp => (validity, price.max(1)),
                    v => (v, price),
                };
                f += &format!(
                    "\n[[product]]\nid = \"P{i}\"\nname = \"Product {i}\"\nprice = {price}\n\
                 validity = \"{validity}\"\n"
                );
                match validity {
                    Validity::Trips => f += &format!("trips = {trips}\n"),
                    Validity::Period => f += &format!("duration = \"{}s\"\n", duration_ms / 1000),
                    _ => {}
                }
            }
            f
        })
}

/// Decides `req` as the bridge does: asked again with the fare day of the time the script names.
async fn decide(store: &Store, catalogue: &Catalogue, req: Request<'_>) -> Answer {
    store.decide_under(req, catalogue).await.expect("script")
}

/// A card's wallet as the script keeps it.
async fn read_wallet(con: &mut redis::aio::MultiplexedConnection, c: usize) -> Wallet {
    let f: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::wallet(&card(c)))
        .query_async(con)
        .await
        .expect("HGETALL");
    let mut w = Wallet::default();
    for (name, v) in &f {
        let n = || v.parse::<u64>().expect("amount");
        let date = |d: &str| d.parse::<tapgate_protocol::payg::Date>().expect("date");
        match name.as_str() {
            "balance" => w.balance = v.parse().expect("balance"),
            "topped_up" => w.topped_up = n(),
            "charged" => w.charged = n(),
            "currency" => {}
            "kept_from" => w.kept_from = Some(date(v)),
            other => {
                if let Some(d) = other.strip_prefix("day:") {
                    w.days.insert(date(d), n());
                } else if let Some(d) = other.strip_prefix("week:") {
                    w.weeks.insert(date(d), n());
                } else {
                    panic!("unknown wallet field {other}");
                }
            }
        }
    }
    w
}

fn stamp() -> impl Strategy<Value = StampOp> {
    prop_oneof![
        1 => Just(None),
        3 => (
            prop::sample::select(vec![0i64, 1_000, 1_500, 1_501, 4_000, 3_600_000, 10_800_000, -4_999, -5_001]),
            prop::sample::select(vec![TapMode::Online, TapMode::Offline]),
        )
            .prop_map(Some),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..CARDS.len(), stamp()).prop_map(|(c, s)| Op::Gate(c, s)),
        3 => (0..TERMINALS.len(), 0..CARDS.len(), stamp())
            .prop_map(|(t, c, s)| Op::TerminalTap(t, c, s)),
        3 => (0..TERMINALS.len(), 0..5usize, stamp())
            .prop_map(|(t, p, s)| Op::Button(t, p, s)),
        1 => (prop::option::of(0..TERMINALS.len()), 0..SKEWS.len())
            .prop_map(|(t, k)| Op::Skew(t, k)),
        1 => prop::sample::select(vec![1u64, 500, 2_999, 3_001, 9_999, 10_001, 60_001, DAY_MS / 3])
            .prop_map(Op::Advance),
        1 => (0..CARDS.len()).prop_map(Op::Block),
        1 => (0..CARDS.len()).prop_map(Op::Unblock),
        1 => (0..CARDS.len(), 0..GARBLED.len()).prop_map(|(c, g)| Op::Corrupt(c, g)),
        1 => any::<usize>().prop_map(Op::Redeliver),
        1 => (any::<usize>(), 0..CARDS.len()).prop_map(|(n, c)| Op::Reuse(n, c)),
        1 => (0..3usize).prop_map(Op::Reload),
        2 => (0..TERMINALS.len(), 0..CARDS.len(), 0..5usize)
            .prop_map(|(t, c, p)| Op::Buy(t, c, p)),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(k, offline)| Op::Settle(k, offline)),
        1 => any::<usize>().prop_map(Op::Forget),
    ]
}

#[derive(Default)]
struct Model {
    passes: HashMap<usize, Pass>,
    sales: HashMap<usize, Sale>,
    blocked: HashSet<usize>,
    corrupt: HashSet<usize>,
    wallets: HashMap<usize, Wallet>,
    /// Events each card's recent list has received.
    pushed: HashMap<usize, u64>,
    /// Measured skew by device name.
    skews: HashMap<&'static str, i64>,
    /// Granted waiting taps already paid for a replacement, and by which message: a granted tap
    /// pays for one.
    settled_by: HashMap<MessageId, MessageId>,
}

/// How often each pay-as-you-go case came up over all runs, so the test shows it covered them:
/// charged, charged 0 (capped), insufficient funds, topped up, settled offline; and messages
/// settled on the charge of the waiting tap they name.
/// And late redeliveries answered from the card's history, and those answered `stale`.
static SEEN: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

fn seen(i: usize) {
    SEEN[i].fetch_add(1, Ordering::Relaxed);
}

/// A message the model sent, for redeliveries and reused ids.
#[derive(Debug, Clone)]
struct Sent {
    kind: DeviceKind,
    device: &'static str,
    id: MessageId,
    input: Input,
    stamp: Option<Stamp>,
    /// The waiting tap it named, if any.
    replaces: Option<MessageId>,
    outcome: Outcome,
    /// Pay as you go's amounts in its answer.
    charged: Option<u64>,
    balance: Option<i64>,
    /// The tapped card, and how many events its recent list had received once this was decided
    /// (its own included) and how many were its own.
    card: Option<usize>,
    pushed: u64,
    events: usize,
    /// Its stored answer was removed (`Op::Forget`): no longer redelivered or reused.
    forgotten: bool,
}

impl Sent {
    /// This message again as the bridge would take it, with `input` (its own, or other content
    /// under its id).
    fn message<'a>(&'a self, device: &'a DeviceId, input: &'a Input) -> Message<'a> {
        Message {
            kind: self.kind,
            device,
            id: &self.id,
            input,
            stamp: self.stamp,
            replaces: self.replaces.as_ref(),
        }
    }
}

fn card(i: usize) -> CardId {
    CardId::new(CARDS[i]).expect("card")
}

/// What a stored pass holds: product, validity, trips left, period, price, currency, expiry,
/// issue time, first use. (A record keeps the trips left, not how many the product had.)
type PassView = (
    ProductId,
    Validity,
    u32,
    u64,
    u64,
    Currency,
    Option<u64>,
    u64,
    Option<u64>,
);

fn view(p: &Pass) -> PassView {
    let t = p.terms;
    (
        t.product,
        t.validity,
        p.trips,
        t.duration_ms,
        t.price,
        t.currency,
        p.expires_at,
        p.issued_at,
        p.used_at,
    )
}

async fn read_pass(con: &mut redis::aio::MultiplexedConnection, c: usize) -> Option<PassView> {
    let f: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::pass(&card(c)))
        .query_async(con)
        .await
        .expect("HGETALL");
    pass_record::read(&f, LEGACY_PERIOD_MS)
        .expect("a readable pass record")
        .map(|stored| view(&stored.pass))
}

/// A service day's revenue hash.
async fn read_revenue(
    con: &mut redis::aio::MultiplexedConnection,
    day: &str,
) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(keys::revenue(day))
        .query_async(con)
        .await
        .expect("HGETALL")
}

async fn run_case(
    redis: &RedisServer,
    store: &Store,
    fares: Vec<String>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let catalogues: Vec<Catalogue> = fares
        .iter()
        .map(|f| Catalogue::parse("drawn.toml", f).expect("a drawn catalogue parses"))
        .collect();
    let mut catalogue = &catalogues[0];

    let fresh = Some((0, TapMode::Online));
    let ops: Vec<Op> = ops
        .into_iter()
        .flat_map(|op| match op {
            Op::Buy(t, c, p) => vec![
                Op::TerminalTap(t, c, fresh),
                Op::Button(t, p, fresh),
                Op::TerminalTap(t, c, fresh),
            ],
            op => vec![op],
        })
        .collect();
    let mut con = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut con)
        .await
        .expect("FLUSHALL");
    let mut model = Model::default();
    let mut sent: Vec<Sent> = Vec::new();
    let mut now: u64 = 1_700_000_000_000;
    // Expected revenue by service day: sales, amount, and amount by product and by terminal.
    let mut revenue: HashMap<String, HashMap<String, i64>> = HashMap::new();
    for (n, op) in ops.iter().enumerate() {
        // The earlier tap an `Op::Settle` names.
        let mut replaced: Option<Sent> = None;
        let (kind, device, input, card_i, term_i) = match op {
            Op::Corrupt(c, g) => {
                let key = keys::pass(&card(*c));
                let mut cmd = redis::cmd("HSET");
                cmd.arg(&key);
                for (f, v) in GARBLED[*g] {
                    cmd.arg(*f).arg(*v);
                }
                let _: () = redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut con)
                    .await
                    .expect("DEL");
                let _: () = cmd.query_async(&mut con).await.expect("corrupt");
                model.corrupt.insert(*c);
                model.passes.remove(c);
                continue;
            }
            Op::Redeliver(k) | Op::Reuse(k, _) if sent.iter().all(|s| s.forgotten) => {
                let _ = k;
                continue;
            }
            Op::Redeliver(k) => {
                let live: Vec<&Sent> = sent.iter().filter(|s| !s.forgotten).collect();
                let s = live[k % live.len()].clone();
                let device = DeviceId::new(s.device).expect("device");
                let req = Request::new(s.message(&device, &s.input), now, catalogue);
                let got = decide(store, catalogue, req).await;
                let Answer::Decided(got) = got else {
                    return Err(TestCaseError::fail(format!("op {n}: redelivery refused")));
                };
                prop_assert!(got.replayed, "op {} {:?}", n, op);
                prop_assert_eq!(&got.decision.outcome, &s.outcome, "op {} {:?}", n, op);
                continue;
            }
            Op::Reuse(k, c) => {
                let live: Vec<&Sent> = sent.iter().filter(|s| !s.forgotten).collect();
                let s = live[k % live.len()].clone();
                let input = match s.kind {
                    DeviceKind::Gate => Input::GateTap(card(*c)),
                    DeviceKind::Terminal => Input::TerminalTap(card(*c)),
                };
                let device = DeviceId::new(s.device).expect("device");
                let req = Request::new(s.message(&device, &input), now, catalogue);
                let got = decide(store, catalogue, req).await;
                match got {
                    Answer::Decided(d) => {
                        prop_assert_eq!(&input, &s.input, "op {}: other content replayed", n);
                        prop_assert!(d.replayed);
                        prop_assert_eq!(&d.decision.outcome, &s.outcome);
                    }
                    Answer::IdReused => {
                        prop_assert_ne!(&input, &s.input, "op {}: same content refused", n);
                    }
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "op {n}: reuse answered {other:?}"
                        )));
                    }
                }
                // Either way nothing changed: the passes and wallets still match the model.
                for c in 0..CARDS.len() {
                    if !model.corrupt.contains(&c) {
                        let stored = read_pass(&mut con, c).await;
                        prop_assert_eq!(stored, model.passes.get(&c).map(view), "op {}", n);
                    }
                    let wallet = read_wallet(&mut con, c).await;
                    prop_assert_eq!(&wallet, &model.wallets.get(&c).cloned().unwrap_or_default());
                }
                continue;
            }
            Op::Advance(ms) => {
                now += ms;
                continue;
            }
            Op::Forget(k) => {
                let eligible: Vec<usize> = (0..sent.len())
                    .filter(|&i| {
                        let s = &sent[i];
                        !s.forgotten
                            && s.replaces.is_none()
                            && s.card.is_some()
                            && s.stamp.is_some_and(|st| st.mode == TapMode::Online)
                    })
                    .collect();
                if eligible.is_empty() {
                    continue;
                }
                let i = eligible[k % eligible.len()];
                let s = sent[i].clone();
                let skew = model.skews.get(s.device).copied();
                let Ok((at, _)) = tapgate_protocol::rules::resolve_time(s.stamp, now, skew, TIME)
                else {
                    continue;
                };
                if now.saturating_sub(at) <= TIME.decision_window_ms {
                    continue;
                }
                let device = DeviceId::new(s.device).expect("device");
                let _: () = redis::cmd("DEL")
                    .arg(keys::seen(s.kind, &device, &s.id))
                    .query_async(&mut con)
                    .await
                    .expect("DEL");
                sent[i].forgotten = true;
                let message = Message {
                    replaces: None,
                    ..s.message(&device, &s.input)
                };
                let req = Request::new(message, now, catalogue);
                let Answer::Decided(got) = decide(store, catalogue, req).await else {
                    return Err(TestCaseError::fail(format!(
                        "op {n}: a late redelivery refused"
                    )));
                };
                let c = s.card.expect("a card tap");
                let pushed = model.pushed.entry(c).or_default();
                let recent = u64::try_from(keys::CARD_RECENT_LEN).expect("length");
                if s.events > 0 && *pushed - s.pushed < recent {
                    // Answered from the card's history, as first decided; a denial's balance is
                    // not in its event.
                    prop_assert!(got.replayed, "op {} {:?}", n, op);
                    prop_assert_eq!(&got.decision.outcome, &s.outcome, "op {} {:?}", n, op);
                    let balance = match s.outcome {
                        Outcome::Denied { .. } => None,
                        _ => s.balance,
                    };
                    prop_assert_eq!(
                        (got.decision.charged, got.decision.balance),
                        (s.charged, balance)
                    );
                    seen(6);
                } else {
                    // Nothing to answer from: stale, and nothing charged.
                    prop_assert!(!got.replayed, "op {} {:?}", n, op);
                    prop_assert_eq!(&got.decision.outcome, &Outcome::Stale, "op {} {:?}", n, op);
                    *pushed += 1;
                    seen(7);
                }
                for c in 0..CARDS.len() {
                    if !model.corrupt.contains(&c) {
                        let stored = read_pass(&mut con, c).await;
                        prop_assert_eq!(stored, model.passes.get(&c).map(view), "op {}", n);
                    }
                }
                continue;
            }
            Op::Reload(k) => {
                catalogue = &catalogues[k % catalogues.len()];
                continue;
            }
            Op::Block(c) => {
                let _: () = redis::cmd("HSET")
                    .arg(keys::blocked(&card(*c)))
                    .arg("reason")
                    .arg("lost")
                    .query_async(&mut con)
                    .await
                    .expect("block");
                model.blocked.insert(*c);
                continue;
            }
            Op::Unblock(c) => {
                let _: () = redis::cmd("DEL")
                    .arg(keys::blocked(&card(*c)))
                    .query_async(&mut con)
                    .await
                    .expect("unblock");
                model.blocked.remove(c);
                continue;
            }
            Op::Skew(t, k) => {
                let (kind, device) = match t {
                    None => (DeviceKind::Gate, "g1"),
                    Some(t) => (DeviceKind::Terminal, TERMINALS[*t]),
                };
                let device_id = DeviceId::new(device).expect("device");
                let _: () = redis::cmd("HSET")
                    .arg(keys::device(kind, &device_id))
                    .arg(keys::FIELD_CLOCK_SKEW)
                    .arg(SKEWS[*k])
                    .query_async(&mut con)
                    .await
                    .expect("skew");
                model.skews.insert(device, SKEWS[*k]);
                continue;
            }
            Op::Buy(..) => unreachable!("expanded above"),
            Op::Settle(k, _) => {
                let taps: Vec<&Sent> = sent
                    .iter()
                    .filter(|s| {
                        matches!(s.input, Input::GateTap(_)) && s.replaces.is_none() && !s.forgotten
                    })
                    .collect();
                let Some(s) = (!taps.is_empty()).then(|| taps[k % taps.len()]) else {
                    continue;
                };
                let Input::GateTap(c) = &s.input else {
                    continue;
                };
                let c = CARDS
                    .iter()
                    .position(|x| *x == c.as_str())
                    .expect("a model card");
                replaced = Some(s.clone());
                (
                    DeviceKind::Gate,
                    "g1",
                    Input::GateTap(card(c)),
                    Some(c),
                    None,
                )
            }
            Op::Gate(c, _) => (
                DeviceKind::Gate,
                "g1",
                Input::GateTap(card(*c)),
                Some(*c),
                None,
            ),
            Op::TerminalTap(t, c, _) => (
                DeviceKind::Terminal,
                TERMINALS[*t],
                Input::TerminalTap(card(*c)),
                Some(*c),
                Some(*t),
            ),
            Op::Button(t, p, _) => (
                DeviceKind::Terminal,
                TERMINALS[*t],
                Input::Button(catalogue.products[p % catalogue.products.len()].terms),
                None,
                Some(*t),
            ),
        };
        let stamp_op = match op {
            Op::Gate(_, s) | Op::TerminalTap(_, _, s) | Op::Button(_, _, s) => *s,
            Op::Settle(_, false) => Some((0, TapMode::Online)),
            _ => None,
        };
        let skew = model.skews.get(device).copied();
        // The device's clock runs `skew` ahead of the bridge's.
        let mut stamp = stamp_op.map(|(age, mode)| Stamp {
            time: now
                .saturating_add_signed(skew.unwrap_or(0))
                .saturating_add_signed(-age),
            mode,
        });
        if let (Op::Settle(_, true), Some(r)) = (op, &replaced) {
            // The offline entry stands for the waiting tap: same time, the rider let through.
            stamp = Some(Stamp::offline(r.stamp.map_or(now, |s| s.time)));
        }
        if matches!(input, Input::Button(_)) && stamp.is_some_and(|s| s.mode == TapMode::Offline) {
            // Refused by validation before the script; nothing to compare.
            continue;
        }
        let state = State {
            pass: card_i.and_then(|c| model.passes.get(&c).cloned()),
            blocked: card_i.is_some_and(|c| model.blocked.contains(&c)),
            sale: term_i.and_then(|t| model.sales.get(&t).cloned()),
            wallet: card_i
                .and_then(|c| model.wallets.get(&c).cloned())
                .unwrap_or_default(),
        };
        let corrupt = card_i.is_some_and(|c| model.corrupt.contains(&c));
        let day = catalogue.service_day(now);
        let fare_day = catalogue.fare_day(fare_time(stamp, now, skew, TIME).unwrap_or(now));
        let settings = Settings {
            sale_timeout_ms: SALE_TIMEOUT_MS,
            day_ends_at: day.ends_at_ms,
            payg: catalogue.payg,
            fare_day,
            top_ups: catalogue.sells_top_ups(),
        };
        let when = When {
            stamp,
            now,
            skew_ms: skew,
        };
        let mut timed = decide_timed(&input, &state, corrupt, when, settings, TIME);
        let id = MessageId::new(format!("m{n}")).expect("id");
        // A message naming a waiting tap that was granted is settled on that tap's charge, with
        // no change and no event (decide.lua's settle_replaced): an offline entry at that tap's
        // time, a retap up to RETAP_ACCEPTED_WITHIN_MS after it (and at most max_skew before).
        let settled = match (&mut timed, &replaced, stamp) {
            (Ok(t), Some(r), Some(st)) if !matches!(t.verdict.outcome, Outcome::Stale) => {
                let earlier = r.stamp.filter(|s| s.mode == TapMode::Online);
                let in_bounds = earlier.is_some_and(|e| match st.mode {
                    TapMode::Offline => e.time == st.time,
                    TapMode::Online => {
                        let (t0, at) = (i128::from(e.time), i128::from(t.at));
                        at - t0 <= i128::from(RETAP_ACCEPTED_WITHIN_MS)
                            && t0 - at <= i128::from(TIME.max_skew_ms)
                    }
                });
                let first = model.settled_by.get(&r.id).is_none_or(|by| *by == id);
                match &r.outcome {
                    Outcome::Granted { pass } if in_bounds && first => {
                        model.settled_by.insert(r.id.clone(), id.clone());
                        let rules_at = if st.mode == TapMode::Offline {
                            t.at
                        } else {
                            now
                        };
                        let pass = PassInfo {
                            remaining_ms: pass.expires_at.map(|e| e.saturating_sub(rules_at)),
                            ..pass.clone()
                        };
                        let outcome = match st.mode {
                            TapMode::Offline => Outcome::EntrySettled { pass },
                            TapMode::Online => Outcome::Granted { pass },
                        };
                        t.verdict = Verdict {
                            charged: r.charged,
                            balance: r.balance,
                            ..Verdict::new(outcome, state.pass.clone(), state.sale.clone(), &state)
                        };
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if settled {
            seen(5);
        }
        let device_id = DeviceId::new(device).expect("device");
        let req = Request::new(
            Message {
                kind,
                device: &device_id,
                id: &id,
                input: &input,
                stamp,
                replaces: replaced.as_ref().map(|r| &r.id),
            },
            now,
            catalogue,
        );
        let got = decide(store, catalogue, req).await;
        let expected = match (timed, got) {
            (Err(want), Answer::Refused(reason)) => {
                prop_assert_eq!(reason, want, "op {} {:?}", n, op);
                // Refused: nothing changed.
                for c in 0..CARDS.len() {
                    if !model.corrupt.contains(&c) {
                        let stored = read_pass(&mut con, c).await;
                        prop_assert_eq!(stored, model.passes.get(&c).map(view), "op {}", n);
                    }
                }
                continue;
            }
            (Ok(timed), Answer::Decided(got)) => (timed, got),
            (want, got) => {
                return Err(TestCaseError::fail(format!(
                    "op {n} {op:?}: model {want:?}, script {got:?}"
                )))
            }
        };
        let (timed, got) = expected;
        let expected = timed.verdict;
        prop_assert!(!got.replayed);
        sent.push(Sent {
            kind,
            device,
            id: id.clone(),
            input: input.clone(),
            stamp,
            replaces: replaced.as_ref().map(|r| r.id.clone()),
            outcome: got.decision.outcome.clone(),
            charged: got.decision.charged,
            balance: got.decision.balance,
            card: card_i,
            pushed: card_i.map_or(0, |c| {
                let p = model.pushed.entry(c).or_default();
                *p += (got.events.len() + got.notices.len()) as u64;
                *p
            }),
            events: got.events.len() + got.notices.len(),
            forgotten: false,
        });
        prop_assert_eq!(
            &got.decision.outcome,
            &expected.outcome,
            "op {} {:?} with {:?}",
            n,
            op,
            state
        );
        prop_assert_eq!(
            (got.decision.charged, got.decision.balance),
            (expected.charged, expected.balance),
            "amounts of op {} {:?} with {:?}",
            n,
            op,
            state
        );
        if let Some(c) = card_i {
            let before = model.wallets.get(&c).cloned().unwrap_or_default();
            let w = &expected.wallet;
            // Money is conserved on the card; charges stay within the caps in force.
            prop_assert_eq!(
                i128::from(w.topped_up),
                i128::from(w.balance) + i128::from(w.charged)
            );
            // A settled message charges nothing new: its amounts are the earlier tap's.
            if let (Some(p), Some(charged)) =
                (catalogue.payg, expected.charged.filter(|_| !settled))
            {
                prop_assert!(w.balance >= p.minimum_balance || charged == 0);
                let day_total = |w: &Wallet| w.days.get(&fare_day.day).copied().unwrap_or(0);
                let week_total = |w: &Wallet| w.weeks.get(&fare_day.week).copied().unwrap_or(0);
                if let Some(cap) = p.daily_cap.filter(|cap| day_total(&before) <= *cap) {
                    prop_assert!(day_total(w) <= cap, "daily cap: op {}", n);
                }
                if let Some(cap) = p.weekly_cap.filter(|cap| week_total(&before) <= *cap) {
                    prop_assert!(week_total(w) <= cap, "weekly cap: op {}", n);
                }
            }
            model.wallets.insert(c, w.clone());
            let stored = read_wallet(&mut con, c).await;
            prop_assert_eq!(&stored, w, "wallet after op {} {:?}", n, op);
        }
        if let Some(c) = card_i.filter(|c| model.corrupt.contains(c)) {
            // Never granted, sold over or rewritten: still the garbled record.
            let exists: bool = redis::cmd("EXISTS")
                .arg(keys::pass(&card(c)))
                .query_async(&mut con)
                .await
                .expect("EXISTS");
            prop_assert!(exists, "op {} {:?}: corrupt record removed", n, op);
        } else if let Some(c) = card_i {
            match &expected.pass {
                Some(p) => model.passes.insert(c, p.clone()),
                None => model.passes.remove(&c),
            };
            let stored = read_pass(&mut con, c).await;
            prop_assert_eq!(
                stored,
                expected.pass.as_ref().map(view),
                "pass after op {} {:?}",
                n,
                op
            );
        }
        if let Outcome::PassIssued { pass, price, .. } = &expected.outcome {
            let price = i64::try_from(*price).expect("price");
            let day_revenue = revenue.entry(day.label()).or_default();
            for (field, by) in [
                (fields::revenue::SALES.to_owned(), 1),
                (fields::revenue::AMOUNT.to_owned(), price),
                (fields::revenue::product_sales(pass.pass_type.as_str()), 1),
                (
                    fields::revenue::product_amount(pass.pass_type.as_str()),
                    price,
                ),
                (fields::revenue::terminal_sales(device), 1),
                (fields::revenue::terminal_amount(device), price),
            ] {
                *day_revenue.entry(field).or_default() += by;
            }
            // The sale's event carries what it took.
            let issued = got
                .events
                .iter()
                .find(|e| e.event.as_str() == "pass-issued");
            prop_assert_eq!(issued.and_then(|e| e.price), Some(price.unsigned_abs()));
        }
        if let Outcome::ToppedUp {
            selected, price, ..
        } = &expected.outcome
        {
            seen(3);
            let price = i64::try_from(*price).expect("price");
            let day_revenue = revenue.entry(day.label()).or_default();
            for (field, by) in [
                (fields::revenue::SALES.to_owned(), 1),
                (fields::revenue::AMOUNT.to_owned(), price),
                (fields::revenue::TOP_UPS.to_owned(), 1),
                (fields::revenue::TOPPED_UP.to_owned(), price),
                (fields::revenue::product_sales(selected.as_str()), 1),
                (fields::revenue::product_amount(selected.as_str()), price),
                (fields::revenue::terminal_sales(device), 1),
                (fields::revenue::terminal_amount(device), price),
            ] {
                *day_revenue.entry(field).or_default() += by;
            }
            let topped = got.events.iter().find(|e| e.event.as_str() == "topped-up");
            prop_assert_eq!(topped.and_then(|e| e.balance), expected.balance);
        }
        let paid_as_you_go = !settled
            && matches!(
                &expected.outcome,
                Outcome::Granted { pass } | Outcome::EntrySettled { pass }
                    if pass.pass_type == PAYG_PRODUCT
            );
        if matches!(
            expected.outcome,
            Outcome::Denied {
                reason: DenyReason::InsufficientFunds
            } | Outcome::UnpaidEntry {
                reason: DenyReason::InsufficientFunds
            }
        ) {
            seen(2);
        }
        if paid_as_you_go {
            let charged = expected.charged.expect("charged");
            seen(if charged > 0 { 0 } else { 1 });
            if matches!(expected.outcome, Outcome::EntrySettled { .. }) {
                seen(4);
            }
            let day_revenue = revenue.entry(fare_day.day.to_string()).or_default();
            *day_revenue
                .entry(fields::revenue::FARES.to_owned())
                .or_default() += 1;
            if charged > 0 {
                *day_revenue
                    .entry(fields::revenue::FARE_AMOUNT.to_owned())
                    .or_default() += i64::try_from(charged).expect("charged");
            }
            let event = got
                .events
                .iter()
                .find(|e| e.event.as_str() == "fare-charged");
            prop_assert_eq!(
                event.map(|e| (e.price, e.balance, e.day)),
                Some((Some(charged), expected.balance, Some(fare_day.day)))
            );
        }
        if let Some(t) = term_i {
            match &expected.sale {
                Some(s) => model.sales.insert(t, s.clone()),
                None => model.sales.remove(&t),
            };
        }
        // Events follow the outcome.
        let mut kinds: Vec<_> = got.events.iter().map(|e| e.event.as_str()).collect();
        kinds.extend(got.notices.iter().map(|e| e.event.as_str()));
        let want: Vec<&str> = match &expected.outcome {
            _ if settled => vec![],
            _ if paid_as_you_go => vec!["fare-charged"],
            Outcome::ToppedUp { .. } => vec!["topped-up"],
            Outcome::Granted { .. } | Outcome::EntrySettled { .. } if expected.activated => {
                vec!["pass-activated", "pass-used"]
            }
            Outcome::Granted { .. } | Outcome::EntrySettled { .. } => vec!["pass-used"],
            Outcome::Denied { .. } => vec!["pass-denied"],
            Outcome::PassIssued { .. } => vec!["pass-issued"],
            Outcome::Stale => vec!["tap-stale"],
            Outcome::UnpaidEntry { .. } => vec!["unpaid-entry"],
            _ => vec![],
        };
        prop_assert_eq!(kinds, want);
        // Stamped events say when the tap happened and on which clock.
        for e in &got.events {
            if stamp.is_some() {
                prop_assert_eq!(e.tap_time, Some(timed.at), "op {}", n);
                prop_assert_eq!(e.clock, Some(timed.clock), "op {}", n);
            }
            prop_assert_eq!(e.time, now, "events are on the bridge's clock");
        }
    }
    // Every sale is counted on its service day, by product and by terminal, at its price.
    for (day, want) in &revenue {
        let stored = read_revenue(&mut con, day).await;
        prop_assert_eq!(&stored, want, "revenue of {}", day);
    }
    Ok(())
}

#[test]
fn script_matches_reference_model() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(Store::connect(
            &redis.url(),
            None,
            StoreSettings {
                legacy_period_ms: LEGACY_PERIOD_MS,
                sale_timeout_ms: SALE_TIMEOUT_MS,
                // Shorter than the history's: a card with nothing keeps its history this long
                // (real seconds; the cases' clock is virtual), so both lifetimes are set.
                seen_ttl_s: 1800,
                stream_maxlen: 10_000,
                recent_ttl_s: 3600,
                device_ttl_s: 3600,
                time: TIME,
            },
        ))
        .expect("store");
    let config = ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        fares in prop::collection::vec(catalogue(), 1..4),
        ops in prop::collection::vec(op(), 1..60),
    )| {
        rt.block_on(run_case(&redis, &store, fares, ops))?;
    });
    let seen: Vec<usize> = SEEN.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    println!(
        "pay as you go: charged {}, capped {}, insufficient {}, topped up {}, settled offline {}; settled on a named tap's charge {}; late redeliveries answered from history {}, stale {}",
        seen[0], seen[1], seen[2], seen[3], seen[4], seen[5], seen[6], seen[7]
    );
    assert!(
        seen.iter().all(|n| *n > 0),
        "a pay-as-you-go case never came up: {seen:?}"
    );
}
