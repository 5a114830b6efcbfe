//! The real Redis script against the pure reference model (`tapgate_protocol::rules::decide`):
//! random sequences of taps, buttons, blocks and clock jumps must give the same decisions and
//! leave the same passes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use tapgate_bridge::store::{Request, Store, StoreSettings};
use tapgate_protocol::rules::{decide, Input, Pass, Sale, Settings, State};
use tapgate_protocol::{keys, CardId, DeviceId, DeviceKind, MessageId, Outcome, PassType};
use tapgate_testkit::RedisServer;

const SETTINGS: Settings = Settings {
    two_hour_ms: 10_000,
    sale_timeout_ms: 3_000,
};
const CARDS: [&str; 3] = ["11", "22", "33"];
const TERMINALS: [&str; 2] = ["t1", "t2"];

#[derive(Debug, Clone)]
enum Op {
    Gate(usize),
    TerminalTap(usize, usize),
    Button(usize, PassType),
    Advance(u64),
    Block(usize),
    Unblock(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..CARDS.len()).prop_map(Op::Gate),
        3 => (0..TERMINALS.len(), 0..CARDS.len()).prop_map(|(t, c)| Op::TerminalTap(t, c)),
        3 => (0..TERMINALS.len(), prop::sample::select(PassType::ALL.to_vec()))
            .prop_map(|(t, p)| Op::Button(t, p)),
        1 => prop::sample::select(vec![1u64, 500, 2_999, 3_001, 9_999, 10_001])
            .prop_map(Op::Advance),
        1 => (0..CARDS.len()).prop_map(Op::Block),
        1 => (0..CARDS.len()).prop_map(Op::Unblock),
    ]
}

#[derive(Default)]
struct Model {
    passes: HashMap<usize, Pass>,
    sales: HashMap<usize, Sale>,
    blocked: HashSet<usize>,
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
    let t = f.get("type")?;
    Some(Pass {
        pass_type: PassType::parse(t).expect("type"),
        trips: f.get("trips").and_then(|v| v.parse().ok()).unwrap_or(0),
        expires_at: f.get("expires_at").and_then(|v| v.parse().ok()),
        issued_at: f.get("issued_at").and_then(|v| v.parse().ok()).unwrap_or(0),
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
    let mut now: u64 = 1_700_000_000_000;
    for (n, op) in ops.iter().enumerate() {
        let (kind, device, input, card_i, term_i) = match op {
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
            Op::Gate(c) => (
                DeviceKind::Gate,
                "g1",
                Input::GateTap(card(*c)),
                Some(*c),
                None,
            ),
            Op::TerminalTap(t, c) => (
                DeviceKind::Terminal,
                TERMINALS[*t],
                Input::TerminalTap(card(*c)),
                Some(*c),
                Some(*t),
            ),
            Op::Button(t, p) => (
                DeviceKind::Terminal,
                TERMINALS[*t],
                Input::Button(*p),
                None,
                Some(*t),
            ),
        };
        let state = State {
            pass: card_i.and_then(|c| model.passes.get(&c).cloned()),
            blocked: card_i.is_some_and(|c| model.blocked.contains(&c)),
            sale: term_i.and_then(|t| model.sales.get(&t).cloned()),
        };
        let expected = decide(&input, &state, now, SETTINGS);
        let device = DeviceId::new(device).expect("device");
        let id = MessageId::new(format!("m{n}")).expect("id");
        let got = store
            .decide(&Request {
                kind,
                device: &device,
                id: &id,
                input: &input,
                now_ms: now,
            })
            .await
            .expect("script");
        prop_assert_eq!(
            &got.decision.outcome,
            &expected.outcome,
            "op {} {:?} with {:?}",
            n,
            op,
            state
        );
        if let Some(c) = card_i {
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
        let kinds: Vec<_> = got.events.iter().map(|e| e.event.as_str()).collect();
        let want: Vec<&str> = match &expected.outcome {
            Outcome::Granted { .. } if expected.activated => vec!["pass-activated", "pass-used"],
            Outcome::Granted { .. } => vec!["pass-used"],
            Outcome::Denied { .. } => vec!["pass-denied"],
            Outcome::PassIssued { .. } => vec!["pass-issued"],
            _ => vec![],
        };
        prop_assert_eq!(kinds, want);
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
            Duration::from_secs(1),
            StoreSettings {
                two_hour_ms: SETTINGS.two_hour_ms,
                sale_timeout_ms: SETTINGS.sale_timeout_ms,
                seen_ttl_s: 3600,
                stream_maxlen: 10_000,
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
