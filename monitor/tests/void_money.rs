//! Money is conserved through voids: random sequences of sales (by the bridge's own decide
//! function), gate entries, waits (across service days) and voids over HTTP, on a real Redis.
//! After each sequence, for every service day, the revenue counters agree with the event stream:
//! `amount` is what that day's `pass-issued` events took less what its `pass-voided` events gave
//! back, `voided` is the latter, and the same holds per product and per terminal. A small model
//! predicts each void's answer: it goes through exactly when the card holds an unused pass sold
//! within the window.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use support::*;
use tapgate_protocol::fields::revenue;
use tapgate_protocol::{keys, Event, EventKind, Outcome};
use tapgate_runtime::clock::ManualClock;
use tapgate_testkit::RedisServer;

/// 2026-03-02 10:00 UTC.
const START: u64 = 1_772_445_600_000;
const MINUTE: u64 = 60_000;
const WINDOW_MS: u64 = 10 * MINUTE;
const CARDS: [&str; 5] = ["0C01", "0C02", "0C03", "0C04", "0C05"];
const TERMINALS: [&str; 3] = ["t1", "t2", "t3"];

#[derive(Debug, Clone)]
enum Op {
    Sell {
        terminal: usize,
        card: usize,
        product: usize,
    },
    Enter {
        card: usize,
    },
    Wait {
        ms: u64,
    },
    Void {
        card: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..TERMINALS.len(), 0..CARDS.len(), 0..4usize)
            .prop_map(|(terminal, card, product)| Op::Sell { terminal, card, product }),
        1 => (0..CARDS.len()).prop_map(|card| Op::Enter { card }),
        3 => (0..15 * MINUTE).prop_map(|ms| Op::Wait { ms }),
        1 => (15 * MINUTE..20 * 60 * MINUTE).prop_map(|ms| Op::Wait { ms }),
        4 => (0..CARDS.len()).prop_map(|card| Op::Void { card }),
    ]
}

/// What the model knows of a card's pass.
#[derive(Debug, Clone, Copy)]
struct Held {
    issued_at: u64,
    price: u64,
    used: bool,
}

/// Per service day: (sales, amount) per key (`*` for the day, `product:P`, `terminal:T`), from
/// the stream; and the voids.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    net: BTreeMap<String, (i64, i64)>,
    voids: i64,
    voided: i64,
}

async fn tally_stream(conn: &mut MultiplexedConnection) -> BTreeMap<String, Tally> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    let mut days: BTreeMap<String, Tally> = BTreeMap::new();
    for (id, fields) in entries {
        let map: HashMap<String, String> = fields.into_iter().collect();
        let e = Event::from_stream(|n| map.get(n).map(String::as_str))
            .unwrap_or_else(|err| panic!("entry {id}: {err}"));
        let sign = match e.event {
            EventKind::PassIssued => 1,
            EventKind::PassVoided => -1,
            _ => continue,
        };
        let day = e.day.expect("a sale's day").to_string();
        let price = i64::try_from(e.price.expect("a sale's price")).expect("price");
        let product = e.pass_type().expect("product").to_string();
        let terminal = e.device.as_ref().expect("terminal").to_string();
        let t = days.entry(day).or_default();
        for key in [
            "*".to_owned(),
            format!("product:{product}"),
            format!("terminal:{terminal}"),
        ] {
            let n = t.net.entry(key).or_default();
            n.0 += sign;
            n.1 += sign * price;
        }
        if sign < 0 {
            t.voids += 1;
            t.voided += price;
        }
    }
    days
}

/// The same tally from the revenue counters of `day`, keyed like [`tally_stream`]'s.
async fn tally_counters(conn: &mut MultiplexedConnection, day: &str, seen: &Tally) -> Tally {
    let h: HashMap<String, i64> = conn.hgetall(keys::revenue(day)).await.expect("HGETALL");
    let get = |f: &str| h.get(f).copied().unwrap_or(0);
    let mut out = Tally {
        voids: get(revenue::VOIDS),
        voided: get(revenue::VOIDED),
        ..Tally::default()
    };
    for key in seen.net.keys() {
        let (sales, amount) = if key == "*" {
            (get(revenue::SALES), get(revenue::AMOUNT))
        } else if let Some(p) = key.strip_prefix("product:") {
            (
                get(&revenue::product_sales(p)),
                get(&revenue::product_amount(p)),
            )
        } else {
            let t = key.strip_prefix("terminal:").expect("terminal key");
            (
                get(&revenue::terminal_sales(t)),
                get(&revenue::terminal_amount(t)),
            )
        };
        out.net.insert(key.clone(), (sales, amount));
    }
    out
}

#[test]
fn voids_conserve_money_per_service_day() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis = RedisServer::start();
    let (fares, catalogue, _dir) = fares_file();
    let clock = ManualClock::at(START);
    let (dash, seller, admin) = rt.block_on(async {
        let mut cfg = config(&redis.url());
        cfg.fares = Some(fares.clone());
        cfg.void_window = Duration::from_millis(WINDOW_MS);
        let dash = Dashboard::start_with_clock(cfg, Arc::new(clock.clone())).await;
        let seller = Seller::connect(&redis, catalogue.clone()).await;
        (dash, seller, support::redis(&redis).await)
    });
    // The runner takes a `Fn`: each case borrows the seller for its run.
    let seller = std::cell::RefCell::new(seller);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        let mut seller = seller.borrow_mut();
        let mut admin = admin.clone();
        rt.block_on(async {
            let () = redis::cmd("FLUSHALL")
                .query_async(&mut admin)
                .await
                .expect("FLUSHALL");
            let alice = login(dash.addr, ALICE).await;
            let mut now = START;
            clock.set(now);
            let mut held: HashMap<usize, Held> = HashMap::new();
            let mut voided = 0;
            for op in &ops {
                match *op {
                    Op::Sell {
                        terminal,
                        card,
                        product,
                    } => {
                        let p = &catalogue.products[product];
                        let id = p.id().to_string();
                        if seller
                            .sell(TERMINALS[terminal], CARDS[card], &id, now)
                            .await
                        {
                            held.insert(
                                card,
                                Held {
                                    issued_at: now,
                                    price: p.terms.price,
                                    used: false,
                                },
                            );
                        }
                    }
                    Op::Enter { card } => match seller.enter("g1", CARDS[card], now).await {
                        Outcome::Granted { .. } => {
                            if let Some(h) = held.get_mut(&card) {
                                h.used = true;
                            }
                        }
                        // Denied: no pass, or an expired one the bridge has now removed.
                        _ => {
                            held.remove(&card);
                        }
                    },
                    Op::Wait { ms } => {
                        now += ms;
                        clock.set(now);
                    }
                    Op::Void { card } => {
                        let expect = held
                            .get(&card)
                            .filter(|h| !h.used && now - h.issued_at <= WINDOW_MS)
                            .copied();
                        let r = post_json(
                            dash.addr,
                            &alice,
                            &format!("/api/cards/{}/void", CARDS[card]),
                            "",
                        )
                        .await;
                        match expect {
                            Some(h) => {
                                prop_assert_eq!(r.status, 200, "{:?}: {}", op, r.body);
                                prop_assert_eq!(&r.json()["price"], &serde_json::json!(h.price));
                                held.remove(&card);
                                voided += 1;
                            }
                            None => prop_assert!(
                                [404, 409].contains(&r.status),
                                "{:?} should be refused: {} {}",
                                op,
                                r.status,
                                r.body
                            ),
                        }
                    }
                }
            }
            let stream = tally_stream(&mut admin).await;
            let voids_seen: i64 = stream.values().map(|t| t.voids).sum();
            prop_assert_eq!(voids_seen, voided, "one pass-voided event per void");
            let mut revenue_keys: Vec<String> = redis::cmd("KEYS")
                .arg(keys::revenue("*"))
                .query_async(&mut admin)
                .await
                .expect("KEYS");
            revenue_keys.sort();
            let stream_days: Vec<String> = stream.keys().map(|d| keys::revenue(d)).collect();
            prop_assert_eq!(
                revenue_keys,
                stream_days,
                "revenue exactly on the days sold"
            );
            for (day, seen) in &stream {
                let counted = tally_counters(&mut admin, day, seen).await;
                prop_assert_eq!(&counted, seen, "day {}", day);
            }
            Ok(())
        })
    });
    rt.block_on(dash.stop());
    if let Err(e) = result {
        panic!("{e}\n{}", redis.log());
    }
}
