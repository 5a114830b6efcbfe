//! Money is conserved through card replacements: random sequences of top-ups and pass sales (by
//! the bridge's own decide function), gate entries paid as you go or on a pass, waits across
//! service days and weeks, and replacements of one card by another (the monitor's own script),
//! on a real Redis. A model follows every card: its pass and wallet by the pure rules
//! (`tapgate_protocol::rules::decide`), a replacement by moving both and blocking the old card.
//! After every step each card's stored wallet equals the model's and holds `topped_up = balance +
//! charged`; each replacement goes through or is refused exactly as the model says; and at the
//! end all wallets together hold what the stream's `topped-up` events added less what its
//! `fare-charged` events took.

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redis::aio::MultiplexedConnection;
use support::store_settings;
use tapgate_bridge::Store;
use tapgate_monitor::replace::{replace, ReplaceError};
use tapgate_protocol::payg::Wallet;
use tapgate_protocol::rules::{self, Input, Settings, State};
use tapgate_protocol::{keys, CardId, Catalogue, DeviceKind, Event, EventKind};
use tapgate_testkit::RedisServer;

/// Monday 2026-03-02 10:00 UTC.
const START: u64 = 1_772_445_600_000;
const HOUR: u64 = 3_600_000;
const CARDS: [&str; 6] = ["0E01", "0E02", "0E03", "0E04", "0E05", "0E06"];
/// Riders buy and ride with the first cards; the rest are new cards a replacement may move to.
const IN_USE: usize = 4;

const FARES: &str = r#"
currency = "EUR"
time_zone = "UTC"

[payg]
fare = 250
daily_cap = 700
weekly_cap = 2000
minimum_balance = -250

[[product]]
id = "TOPUP_10"
name = "Top up 10.00"
price = 1000
validity = "top_up"

[[product]]
id = "THREE"
name = "Three trips"
price = 600
validity = "trips"
trips = 3
"#;

#[derive(Debug, Clone)]
enum Op {
    /// Buys the catalogue's product at this index for the card at terminal t1.
    Buy(usize, usize),
    Enter(usize),
    Wait(u64),
    /// Replaces the first card by the second.
    Replace(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..IN_USE, 0..2usize).prop_map(|(c, p)| Op::Buy(c, p)),
        5 => (0..IN_USE).prop_map(Op::Enter),
        2 => prop::sample::select(vec![HOUR, 6 * HOUR, 30 * HOUR, 4 * 24 * HOUR]).prop_map(Op::Wait),
        2 => (0..CARDS.len(), 0..CARDS.len()).prop_map(|(a, b)| Op::Replace(a, b)),
    ]
}

/// One card as the model holds it.
#[derive(Debug, Clone, Default)]
struct Card {
    state: State,
    /// Whether its wallet hash exists (written by a top-up or a charge, or moved onto it).
    wallet_stored: bool,
    replaced: bool,
}

fn settings(catalogue: &Catalogue, now: u64) -> Settings {
    Settings {
        sale_timeout_ms: store_settings().sale_timeout_ms,
        day_ends_at: catalogue.service_day(now).ends_at_ms,
        payg: catalogue.payg,
        fare_day: catalogue.fare_day(now),
        top_ups: catalogue.sells_top_ups(),
    }
}

async fn read_wallet(conn: &mut MultiplexedConnection, card: &str) -> Option<(i64, i64, i64)> {
    let h: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::wallet(&CardId::new(card).expect("card")))
        .query_async(conn)
        .await
        .expect("HGETALL");
    if h.is_empty() {
        return None;
    }
    let n = |f: &str| h.get(f).map_or(0, |v| v.parse::<i64>().expect("amount"));
    Some((n("balance"), n("topped_up"), n("charged")))
}

fn wallet_view(w: &Wallet) -> (i64, i64, i64) {
    (
        w.balance,
        i64::try_from(w.topped_up).expect("amount"),
        i64::try_from(w.charged).expect("amount"),
    )
}

/// What the stream says went onto cards and was taken from them.
async fn stream_money(conn: &mut MultiplexedConnection) -> (i64, i64) {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    let (mut added, mut taken) = (0, 0);
    for (id, fields) in entries {
        let map: HashMap<String, String> = fields.into_iter().collect();
        let e = Event::from_stream(|n| map.get(n).map(String::as_str))
            .unwrap_or_else(|err| panic!("entry {id}: {err}"));
        let price = e.price.map_or(0, |p| i64::try_from(p).expect("price"));
        match e.event {
            EventKind::ToppedUp => added += price,
            EventKind::FareCharged => taken += price,
            _ => {}
        }
    }
    (added, taken)
}

/// The model's answer to replacing `a` by `b`: `None` when it goes through, else the code.
fn predict(cards: &[Card], a: usize, b: usize) -> Option<&'static str> {
    let (from, to) = (&cards[a], &cards[b]);
    if a == b {
        return Some("same_card");
    }
    if from.replaced {
        return Some("already_replaced");
    }
    if from.state.pass.is_none() && !from.wallet_stored {
        return Some("unknown_card");
    }
    if to.state.blocked {
        return Some("target_blocked");
    }
    if to.state.pass.is_some() {
        return Some("target_has_pass");
    }
    if to.wallet_stored && to.state.wallet != Wallet::default() {
        return Some("target_has_wallet");
    }
    None
}

#[test]
fn replacements_conserve_money_and_move_what_the_card_held() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis = RedisServer::start();
    let catalogue = Catalogue::parse("fares.toml", FARES).expect("fares");
    let (driver, conn) = rt.block_on(async {
        let store = Store::connect(&redis.url(), None, store_settings())
            .await
            .expect("store");
        (
            support::Seller::new(store, catalogue.clone()),
            support::redis(&redis).await,
        )
    });
    let driver = std::cell::RefCell::new(driver);
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let seen = std::cell::Cell::new((0u32, 0u32));
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        let mut d = driver.borrow_mut();
        let mut conn = conn.clone();
        rt.block_on(async {
            let () = redis::cmd("FLUSHALL")
                .query_async(&mut conn)
                .await
                .expect("FLUSHALL");
            let mut now = START;
            let mut cards = vec![Card::default(); CARDS.len()];
            for op in &ops {
                match *op {
                    Op::Wait(ms) => now += ms,
                    Op::Buy(c, p) => {
                        let product = &catalogue.products[p];
                        let card = CardId::new(CARDS[c]).expect("card");
                        let mut sale = None;
                        for input in [
                            Input::TerminalTap(card.clone()),
                            Input::Button(product.terms),
                            Input::TerminalTap(card.clone()),
                        ] {
                            let state = State {
                                sale: sale.clone(),
                                ..cards[c].state.clone()
                            };
                            let v = rules::decide(&input, &state, now, settings(&catalogue, now));
                            let got = d.decide(DeviceKind::Terminal, "t1", input, now).await;
                            prop_assert_eq!(&got.outcome, &v.outcome, "{:?}", op);
                            prop_assert_eq!(got.balance, v.balance);
                            if v.wallet != cards[c].state.wallet {
                                cards[c].wallet_stored = true;
                            }
                            cards[c].state.pass = v.pass;
                            cards[c].state.wallet = v.wallet;
                            sale = v.sale;
                        }
                    }
                    Op::Enter(c) => {
                        let input = Input::GateTap(CardId::new(CARDS[c]).expect("card"));
                        let v =
                            rules::decide(&input, &cards[c].state, now, settings(&catalogue, now));
                        let got = d.decide(DeviceKind::Gate, "g1", input, now).await;
                        prop_assert_eq!(&got.outcome, &v.outcome, "{:?}", op);
                        prop_assert_eq!((got.charged, got.balance), (v.charged, v.balance));
                        if v.wallet != cards[c].state.wallet {
                            cards[c].wallet_stored = true;
                        }
                        cards[c].state.pass = v.pass;
                        cards[c].state.wallet = v.wallet;
                    }
                    Op::Replace(a, b) => {
                        let want = predict(&cards, a, b);
                        let (from, to) = (
                            CardId::new(CARDS[a]).expect("card"),
                            CardId::new(CARDS[b]).expect("card"),
                        );
                        let got = replace(&mut conn, &from, &to, "alice", None, now).await;
                        match (&got, want) {
                            (Ok(_), None) => {
                                let moved = std::mem::take(&mut cards[a]);
                                cards[b].state.pass = moved.state.pass;
                                cards[b].state.wallet = moved.state.wallet;
                                cards[b].wallet_stored = moved.wallet_stored;
                                cards[a].state.blocked = true;
                                cards[a].replaced = true;
                                let s = seen.get();
                                seen.set((s.0 + 1, s.1));
                            }
                            (Err(ReplaceError::Refused(r)), Some(code)) => {
                                prop_assert_eq!(r.code(), code, "{:?}", op);
                                let s = seen.get();
                                seen.set((s.0, s.1 + 1));
                            }
                            _ => {
                                return Err(TestCaseError::fail(format!(
                                    "{op:?}: the script answered {got:?}, the model {want:?}"
                                )))
                            }
                        }
                    }
                }
                for (i, card) in CARDS.iter().enumerate() {
                    let stored = read_wallet(&mut conn, card).await;
                    let model = cards[i]
                        .wallet_stored
                        .then(|| wallet_view(&cards[i].state.wallet));
                    prop_assert_eq!(stored, model, "wallet of {} after {:?}", card, op);
                    if let Some((balance, topped_up, charged)) = stored {
                        prop_assert_eq!(topped_up, balance + charged, "{}", card);
                        prop_assert!(balance >= -250, "{} below the minimum", card);
                    }
                }
            }
            let (added, taken) = stream_money(&mut conn).await;
            let mut held = 0;
            for card in CARDS {
                if let Some((balance, _, _)) = read_wallet(&mut conn, card).await {
                    held += balance;
                }
            }
            prop_assert_eq!(
                held,
                added - taken,
                "the cards hold what was added less what was taken"
            );
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (made, refused) = seen.get();
    println!("replacements made {made}, refused {refused}");
    assert!(
        made > 0 && refused > 0,
        "both kinds came up: {made} made, {refused} refused"
    );
}
