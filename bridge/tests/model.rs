//! The real Redis script against the pure reference model (`tapgate_protocol::rules::decide`,
//! `decide_stored` for corrupt pass records): random sequences of taps, buttons, blocks, corrupted
//! pass records, redeliveries, reused ids and clock jumps must give the same decisions and leave
//! the same passes. With time (`decide_timed`): stamped and unstamped messages, waiting ones inside
//! and past the decision window, offline entries hours old, times too far ahead, and devices
//! whose measured clock skew is within or beyond the limit.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use tapgate_bridge::store::{Answer, Request, Store, StoreSettings};
use tapgate_protocol::rules::{decide_timed, Input, Pass, Sale, Settings, State, TimeSettings};
use tapgate_protocol::{
    fields, keys, CardId, DeviceId, DeviceKind, MessageId, Outcome, PassType, Stamp, TapMode,
};
use tapgate_testkit::RedisServer;

const SETTINGS: Settings = Settings {
    two_hour_ms: 10_000,
    sale_timeout_ms: 3_000,
};
const TIME: TimeSettings = TimeSettings {
    decision_window_ms: 1_500,
    max_future_ms: 5_000,
    max_skew_ms: 30_000,
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
    Button(usize, PassType, StampOp),
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
}

/// Pass records the script cannot read: an unknown type, and known types with garbled fields.
const GARBLED: [&[(&str, &str)]; 4] = [
    &[("type", "MONTHLY"), ("trips", "0"), ("issued_at", "0")],
    &[("type", "TEN_TRIP"), ("trips", "lots"), ("issued_at", "0")],
    &[("type", "TWO_HOUR"), ("trips", "0"), ("expires_at", "soon")],
    &[("trips", "3")],
];

fn stamp() -> impl Strategy<Value = StampOp> {
    prop_oneof![
        1 => Just(None),
        3 => (
            prop::sample::select(vec![0i64, 1_000, 1_500, 1_501, 4_000, 3_600_000, -4_999, -5_001]),
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
        3 => (0..TERMINALS.len(), prop::sample::select(PassType::ALL.to_vec()), stamp())
            .prop_map(|(t, p, s)| Op::Button(t, p, s)),
        1 => (prop::option::of(0..TERMINALS.len()), 0..SKEWS.len())
            .prop_map(|(t, k)| Op::Skew(t, k)),
        1 => prop::sample::select(vec![1u64, 500, 2_999, 3_001, 9_999, 10_001])
            .prop_map(Op::Advance),
        1 => (0..CARDS.len()).prop_map(Op::Block),
        1 => (0..CARDS.len()).prop_map(Op::Unblock),
        1 => (0..CARDS.len(), 0..GARBLED.len()).prop_map(|(c, g)| Op::Corrupt(c, g)),
        1 => any::<usize>().prop_map(Op::Redeliver),
        1 => (any::<usize>(), 0..CARDS.len()).prop_map(|(n, c)| Op::Reuse(n, c)),
    ]
}

#[derive(Default)]
struct Model {
    passes: HashMap<usize, Pass>,
    sales: HashMap<usize, Sale>,
    blocked: HashSet<usize>,
    corrupt: HashSet<usize>,
    /// Measured skew by device name.
    skews: HashMap<&'static str, i64>,
}

/// A message the model sent, for redeliveries and reused ids.
#[derive(Debug, Clone)]
struct Sent {
    kind: DeviceKind,
    device: &'static str,
    id: MessageId,
    input: Input,
    stamp: Option<Stamp>,
    outcome: Outcome,
}

fn card(i: usize) -> CardId {
    CardId::new(CARDS[i]).expect("card")
}

async fn read_pass(con: &mut redis::aio::MultiplexedConnection, c: usize) -> Option<Pass> {
    let f: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::pass(&card(c)))
        .query_async(con)
        .await
        .expect("HGETALL");
    let t = f.get(fields::pass::TYPE)?;
    let num = |name: &str| f.get(name).and_then(|v| v.parse::<u64>().ok());
    Some(Pass {
        pass_type: PassType::parse(t).expect("type"),
        trips: f
            .get(fields::pass::TRIPS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        expires_at: num(fields::pass::EXPIRES_AT),
        issued_at: num(fields::pass::ISSUED_AT).unwrap_or(0),
    })
}

async fn run_case(redis: &RedisServer, store: &Store, ops: Vec<Op>) -> Result<(), TestCaseError> {
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
    for (n, op) in ops.iter().enumerate() {
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
            Op::Redeliver(k) | Op::Reuse(k, _) if sent.is_empty() => {
                let _ = k;
                continue;
            }
            Op::Redeliver(k) => {
                let s = sent[k % sent.len()].clone();
                let device = DeviceId::new(s.device).expect("device");
                let got = store
                    .decide(&Request {
                        kind: s.kind,
                        device: &device,
                        id: &s.id,
                        input: &s.input,
                        now_ms: now,
                        stamp: s.stamp,
                        replaces: None,
                    })
                    .await
                    .expect("script");
                let Answer::Decided(got) = got else {
                    return Err(TestCaseError::fail(format!("op {n}: redelivery refused")));
                };
                prop_assert!(got.replayed, "op {} {:?}", n, op);
                prop_assert_eq!(&got.decision.outcome, &s.outcome, "op {} {:?}", n, op);
                continue;
            }
            Op::Reuse(k, c) => {
                let s = sent[k % sent.len()].clone();
                let input = match s.kind {
                    DeviceKind::Gate => Input::GateTap(card(*c)),
                    DeviceKind::Terminal => Input::TerminalTap(card(*c)),
                };
                let device = DeviceId::new(s.device).expect("device");
                let got = store
                    .decide(&Request {
                        kind: s.kind,
                        device: &device,
                        id: &s.id,
                        input: &input,
                        now_ms: now,
                        stamp: s.stamp,
                        replaces: None,
                    })
                    .await
                    .expect("script");
                match got {
                    Answer::Decided(d) => {
                        prop_assert_eq!(&input, &s.input, "op {}: other content replayed", n);
                        prop_assert!(d.replayed);
                        prop_assert_eq!(&d.decision.outcome, &s.outcome);
                    }
                    Answer::IdReused => {
                        prop_assert_ne!(&input, &s.input, "op {}: same content refused", n);
                    }
                    Answer::Refused(r) => {
                        return Err(TestCaseError::fail(format!("op {n}: reuse refused {r}")));
                    }
                }
                // Either way nothing changed: the passes still match the model.
                for c in 0..CARDS.len() {
                    if !model.corrupt.contains(&c) {
                        let stored = read_pass(&mut con, c).await;
                        prop_assert_eq!(stored.as_ref(), model.passes.get(&c), "op {}", n);
                    }
                }
                continue;
            }
            Op::Advance(ms) => {
                now += ms;
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
                Input::Button(*p),
                None,
                Some(*t),
            ),
        };
        let stamp_op = match op {
            Op::Gate(_, s) | Op::TerminalTap(_, _, s) | Op::Button(_, _, s) => *s,
            _ => None,
        };
        let skew = model.skews.get(device).copied();
        // The device's clock runs `skew` ahead of the bridge's.
        let stamp = stamp_op.map(|(age, mode)| Stamp {
            time: now
                .saturating_add_signed(skew.unwrap_or(0))
                .saturating_add_signed(-age),
            mode,
        });
        if matches!(input, Input::Button(_)) && stamp.is_some_and(|s| s.mode == TapMode::Offline) {
            // Refused by validation before the script; nothing to compare.
            continue;
        }
        let state = State {
            pass: card_i.and_then(|c| model.passes.get(&c).cloned()),
            blocked: card_i.is_some_and(|c| model.blocked.contains(&c)),
            sale: term_i.and_then(|t| model.sales.get(&t).cloned()),
        };
        let corrupt = card_i.is_some_and(|c| model.corrupt.contains(&c));
        let timed = decide_timed(&input, &state, corrupt, stamp, now, skew, SETTINGS, TIME);
        let device_id = DeviceId::new(device).expect("device");
        let id = MessageId::new(format!("m{n}")).expect("id");
        let got = store
            .decide(&Request {
                kind,
                device: &device_id,
                id: &id,
                input: &input,
                now_ms: now,
                stamp,
                replaces: None,
            })
            .await
            .expect("script");
        let expected = match (timed, got) {
            (Err(want), Answer::Refused(reason)) => {
                prop_assert_eq!(reason, want, "op {} {:?}", n, op);
                // Refused: nothing changed.
                for c in 0..CARDS.len() {
                    if !model.corrupt.contains(&c) {
                        let stored = read_pass(&mut con, c).await;
                        prop_assert_eq!(stored.as_ref(), model.passes.get(&c), "op {}", n);
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
            outcome: got.decision.outcome.clone(),
        });
        prop_assert_eq!(
            &got.decision.outcome,
            &expected.outcome,
            "op {} {:?} with {:?}",
            n,
            op,
            state
        );
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
            prop_assert_eq!(&stored, &expected.pass, "pass after op {} {:?}", n, op);
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
                two_hour_ms: SETTINGS.two_hour_ms,
                sale_timeout_ms: SETTINGS.sale_timeout_ms,
                seen_ttl_s: 3600,
                stream_maxlen: 10_000,
                recent_ttl_s: 3600,
                device_ttl_s: 3600,
                time: TIME,
            },
        ))
        .expect("store");
    let config = ProptestConfig {
        cases: 150,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..60))| {
        rt.block_on(run_case(&redis, &store, ops))?;
    });
}
