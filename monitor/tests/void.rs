//! Voiding a sale, over real HTTP against a real Redis, on sales made by the bridge's own decide
//! function: a void inside the window removes the pass, takes exactly its price off every revenue
//! field it went into, adds it to `voids`/`voided`, appends one `pass-voided` event and records
//! the operator in the audit trail. Every refusal (used pass, window passed, no pass, a pass sold
//! before sales kept their terminal, voids off, a second void, a race, a pass changed between
//! the read and the script, no CSRF token, no login, the public read-only view) changes nothing:
//! the passes, the revenue hash and the stream are compared before and after. Time is a manual
//! clock, never a sleep.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use support::*;
use tapgate_monitor::web::void;
use tapgate_protocol::fields::{self, revenue};
use tapgate_protocol::{keys, CardId, Event, EventKind};
use tapgate_runtime::clock::ManualClock;
use tapgate_testkit::RedisServer;

/// 2026-03-02 10:00 UTC: service day 2026-03-02 under [`FARES`] (UTC, days from 04:00).
const NOW: u64 = 1_772_445_600_000;
const DAY: &str = "2026-03-02";
const MINUTE: u64 = 60_000;

type Hash = HashMap<String, String>;

/// What a refused void must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    passes: Vec<Hash>,
    revenue: Hash,
    stream_len: usize,
}

async fn snapshot(conn: &mut MultiplexedConnection, cards: &[&str]) -> Snapshot {
    let mut passes = Vec::new();
    for c in cards {
        let card = CardId::new(*c).expect("card");
        passes.push(conn.hgetall(keys::pass(&card)).await.expect("HGETALL pass"));
    }
    Snapshot {
        passes,
        revenue: conn
            .hgetall(keys::revenue(DAY))
            .await
            .expect("HGETALL revenue"),
        stream_len: conn.xlen(keys::EVENTS_STREAM).await.expect("XLEN"),
    }
}

async fn last_event(conn: &mut MultiplexedConnection) -> Event {
    let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .expect("XREVRANGE");
    let (_, fields) = v.into_iter().next().expect("an event");
    let map: Hash = fields.into_iter().collect();
    Event::from_stream(|name| map.get(name).map(String::as_str)).expect("readable event")
}

fn num(h: &Hash, field: &str) -> i64 {
    h.get(field).map_or(0, |v| v.parse().expect("a number"))
}

async fn post_void(addr: std::net::SocketAddr, login: &Login, card: &str) -> Resp {
    post_json(addr, login, &format!("/api/cards/{card}/void"), "").await
}

/// Settings of a dashboard on `redis` reading the fares file at `fares`. Every dashboard a test
/// starts on one Redis uses a clone of the same settings: a start-up with other password hashes
/// would end the sessions of the operators whose password "changed".
fn settings(redis: &RedisServer, fares: &std::path::Path) -> tapgate_monitor::ServeConfig {
    let mut cfg = config(&redis.url());
    cfg.fares = Some(fares.to_owned());
    cfg
}

/// A dashboard with `cfg`, on a manual clock at [`NOW`].
async fn dashboard(cfg: tapgate_monitor::ServeConfig) -> (Dashboard, ManualClock) {
    let clock = ManualClock::at(NOW);
    (
        Dashboard::start_with_clock(cfg, Arc::new(clock.clone())).await,
        clock,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_in_the_window_reverses_exactly_its_sale() {
    let redis = RedisServer::start();
    let (fares, catalogue, _dir) = fares_file();
    let mut seller = Seller::connect(&redis, catalogue).await;
    assert!(seller.sell("t1", "04AB", "DAY", NOW).await);
    assert!(seller.sell("t2", "0405", "SINGLE_USE", NOW + 1).await);
    assert!(seller.sell("t1", "0406", "TEN_TRIP", NOW + 2).await);
    let (dash, clock) = dashboard(settings(&redis, &fares)).await;
    clock.advance(9 * MINUTE);
    let alice = login(dash.addr, ALICE).await;
    let mut conn = support::redis(&redis).await;

    // The lookup shows the sale and offers the void until ten minutes after it.
    let card = get(dash.addr, &alice, "/api/cards/04ab").await.json();
    let pass = &card["pass"];
    assert_eq!(pass["type"], "DAY");
    assert_eq!(
        (&pass["price"], &pass["price_text"]),
        (&750.into(), &"7.50 EUR".into())
    );
    assert_eq!(
        (&pass["sold_by"], &pass["day"]),
        (&"t1".into(), &DAY.into())
    );
    assert_eq!(pass["issued_at"], NOW);
    assert_eq!(pass["used_at"], serde_json::Value::Null);
    assert_eq!(
        pass["void"],
        serde_json::json!({"voidable": true, "until": NOW + 10 * MINUTE})
    );

    let mut live = SseClient::open(dash.addr, &alice).await;
    live.next("snapshot").await;
    let before = snapshot(&mut conn, &["04AB", "0405", "0406"]).await;
    let r = post_void(dash.addr, &alice, "04ab").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["card"], "04AB");
    assert_eq!((&v["product"], &v["price"]), (&"DAY".into(), &750.into()));
    assert_eq!((&v["amount"], &v["day"]), (&"7.50 EUR".into(), &DAY.into()));
    assert_eq!((&v["sold_by"], &v["by"]), (&"t1".into(), &"alice".into()));
    let after = snapshot(&mut conn, &["04AB", "0405", "0406"]).await;

    // The pass is gone; the other cards' passes are as they were.
    assert!(after.passes[0].is_empty(), "{:?}", after.passes[0]);
    assert_eq!(after.passes[1..], before.passes[1..]);

    // Exactly the sale's price comes off every field it went into, and nothing else moves.
    let mut expected: HashMap<String, i64> = before
        .revenue
        .keys()
        .map(|k| (k.clone(), num(&before.revenue, k)))
        .collect();
    for (field, by) in [
        (revenue::SALES.to_owned(), -1),
        (revenue::AMOUNT.to_owned(), -750),
        (revenue::product_sales("DAY"), -1),
        (revenue::product_amount("DAY"), -750),
        (revenue::terminal_sales("t1"), -1),
        (revenue::terminal_amount("t1"), -750),
        (revenue::VOIDS.to_owned(), 1),
        (revenue::VOIDED.to_owned(), 750),
    ] {
        *expected.entry(field).or_default() += by;
    }
    let got: HashMap<String, i64> = after
        .revenue
        .keys()
        .map(|k| (k.clone(), num(&after.revenue, k)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(num(&after.revenue, revenue::AMOUNT), 200 + 1800);
    assert_eq!(num(&after.revenue, &revenue::terminal_amount("t1")), 1800);
    assert_eq!(num(&after.revenue, &revenue::product_sales("DAY")), 0);

    // One event, the sale's, naming the operator.
    assert_eq!(after.stream_len, before.stream_len + 1);
    let e = last_event(&mut conn).await;
    assert_eq!(e.event, EventKind::PassVoided);
    assert_eq!(e.card.as_ref().map(CardId::as_str), Some("04AB"));
    assert_eq!(e.pass_type().map(|p| p.to_string()).as_deref(), Some("DAY"));
    assert_eq!(e.price, Some(750));
    assert_eq!(e.currency.map(|c| c.to_string()).as_deref(), Some("EUR"));
    assert_eq!(e.day.map(|d| d.to_string()).as_deref(), Some(DAY));
    assert_eq!(e.device.as_ref().map(|d| d.as_str()), Some("t1"));
    assert_eq!(e.detail.as_deref(), Some("alice"));
    assert_eq!(e.time, NOW + 9 * MINUTE);

    // The live feed shows it, described as the tail prints it.
    let pushed = live.next("events").await;
    let pushed = &pushed[0];
    assert_eq!(pushed["event"], "pass-voided");
    assert_eq!(pushed["described"]["label"], "VOIDED");
    assert!(
        pushed["described"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("04AB") && t.contains("voided by alice")),
        "{pushed}"
    );

    // The audit trail says who, what and for how much.
    let audit = get(dash.addr, &alice, "/api/audit").await.json();
    let rec = &audit[0];
    assert_eq!(
        (&rec["action"], &rec["operator"]),
        (&"void".into(), &"alice".into())
    );
    assert_eq!(
        (&rec["card"], &rec["product"]),
        (&"04AB".into(), &"DAY".into())
    );
    assert_eq!(rec["price"], "7.50 EUR");
    assert_eq!(rec["from"], "127.0.0.1");

    // The lookup shows no pass; the day's revenue is net of the void.
    let card = get(dash.addr, &alice, "/api/cards/04AB").await.json();
    assert_eq!(card["pass"], serde_json::Value::Null);
    let rev = get(dash.addr, &alice, "/api/revenue").await.json();
    assert_eq!(rev["day"], DAY);
    // Net of the void in every total it went into; no top-ups or fares that day.
    assert_eq!(
        rev["totals"],
        serde_json::json!({"sales": 2, "amount": 2000, "amount_text": "20.00 EUR",
                           "voids": 1, "voided": 750, "voided_text": "7.50 EUR",
                           "pass_sales": 2, "pass_amount": 2000, "pass_amount_text": "20.00 EUR",
                           "top_ups": 0, "topped_up": 0, "topped_up_text": "0.00 EUR",
                           "fares": 0, "fare_amount": 0, "fare_amount_text": "0.00 EUR",
                           "recognised": 2000, "recognised_text": "20.00 EUR"})
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_voids_change_nothing() {
    let redis = RedisServer::start();
    let (fares, catalogue, _dir) = fares_file();
    let mut seller = Seller::connect(&redis, catalogue.clone()).await;
    // USED: sold and through a gate. OLD: sold eleven minutes before the first void. FRESH:
    // voidable throughout. LEGACY: a record from before sales kept their terminal and day.
    assert!(
        seller
            .sell("t1", "0A01", "TEN_TRIP", NOW + 5 * MINUTE)
            .await
    );
    assert!(matches!(
        seller.enter("g1", "0A01", NOW + 6 * MINUTE).await,
        tapgate_protocol::Outcome::Granted { .. }
    ));
    assert!(seller.sell("t1", "0A02", "DAY", NOW).await);
    assert!(
        seller
            .sell("t2", "0A03", "SINGLE_USE", NOW + 8 * MINUTE)
            .await
    );
    let mut conn = support::redis(&redis).await;
    let legacy = CardId::new("0A04").expect("card");
    let () = conn
        .hset_multiple(
            keys::pass(&legacy),
            &[
                (fields::pass::TYPE, "TEN_TRIP"),
                (fields::pass::TRIPS, "10"),
                (fields::pass::EXPIRES_AT, "0"),
                (fields::pass::ISSUED_AT, &(NOW + 9 * MINUTE).to_string()),
            ],
        )
        .await
        .expect("legacy pass");
    let cards = ["0A01", "0A02", "0A03", "0A04", "0A05"];

    let cfg = settings(&redis, &fares);
    let (dash, clock) = dashboard(cfg.clone()).await;
    clock.set(NOW + 11 * MINUTE);
    let alice = login(dash.addr, ALICE).await;
    let before = snapshot(&mut conn, &cards).await;
    let used_pass = &before.passes[0];
    assert!(
        used_pass.contains_key(fields::pass::USED_AT),
        "{used_pass:?}"
    );

    let refusals = [
        ("0A01", 409, "pass_used", "already used"),
        (
            "0A02",
            409,
            "void_window_passed",
            "11m old, past the 10m void window",
        ),
        (
            "0A04",
            409,
            "sold_before_voids",
            "sold before sales recorded",
        ),
        ("0A05", 404, "no_pass", "no pass"),
    ];
    for (card, status, code, words) in refusals {
        let lookup = get(dash.addr, &alice, &format!("/api/cards/{card}"))
            .await
            .json();
        if status == 409 {
            assert_eq!(lookup["pass"]["void"]["voidable"], false, "{card}");
            assert_eq!(lookup["pass"]["void"]["reason"], code, "{card}");
        }
        let r = post_void(dash.addr, &alice, card).await;
        assert_eq!(r.status, status, "{card}: {}", r.body);
        let v = r.json();
        assert_eq!(v["error"], code, "{card}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(words)),
            "{card}: {v}"
        );
        assert_eq!(snapshot(&mut conn, &cards).await, before, "{card} changed");
    }

    // Without the CSRF token, without a login, and as the public: refused, nothing changed.
    let path = "/api/cards/0A03/void";
    let cookie = alice.cookie_header();
    let no_csrf = request(dash.addr, "POST", path, &[("Cookie", &cookie)], b"").await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert_eq!(no_csrf.json()["error"], "forbidden");
    let anon = request(dash.addr, "POST", path, &[], b"").await;
    assert_eq!(anon.status, 401, "{}", anon.body);
    let (public, _) = dashboard(tapgate_monitor::ServeConfig {
        public_read_only: true,
        ..cfg.clone()
    })
    .await;
    let viewer = request(public.addr, "POST", path, &[], b"").await;
    assert_eq!(viewer.status, 401, "{}", viewer.body);
    assert_eq!(viewer.json()["error"], "login_required");
    let seen = request(public.addr, "GET", "/api/cards/0A03", &[], b"").await;
    assert_eq!(seen.status, 200, "the public may look: {}", seen.body);
    assert_eq!(snapshot(&mut conn, &cards).await, before);

    // With voids off, even a fresh sale is refused, and the lookup says so.
    let (off, off_clock) = dashboard(tapgate_monitor::ServeConfig {
        void_window: Duration::ZERO,
        ..cfg.clone()
    })
    .await;
    off_clock.set(NOW + 11 * MINUTE);
    let bob = login(off.addr, BOB).await;
    let lookup = get(off.addr, &bob, "/api/cards/0A03").await.json();
    assert_eq!(lookup["pass"]["void"]["reason"], "voids_off");
    let r = post_void(off.addr, &bob, "0A03").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (403, "voids_off".into())
    );
    assert_eq!(snapshot(&mut conn, &cards).await, before);

    // The fresh sale voids once; a second void finds no pass and changes nothing more.
    let r = post_void(dash.addr, &alice, "0A03").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let once = snapshot(&mut conn, &cards).await;
    assert_ne!(once, before);
    let again = post_void(dash.addr, &alice, "0A03").await;
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (404, "no_pass".into())
    );
    assert_eq!(snapshot(&mut conn, &cards).await, once);

    // The window is judged by the clock: voidable at its last millisecond, not one after.
    assert!(seller.sell("t2", "0A06", "DAY", NOW + 11 * MINUTE).await);
    clock.set(NOW + 21 * MINUTE + 1);
    let late = post_void(dash.addr, &alice, "0A06").await;
    assert_eq!(late.json()["error"], "void_window_passed", "{}", late.body);
    clock.set(NOW + 21 * MINUTE);
    let r = post_void(dash.addr, &alice, "0A06").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Only voids are in the audit trail's void records: the one that went through.
    let audit = get(dash.addr, &alice, "/api/audit").await.json();
    let voids: Vec<&str> = audit
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "void")
        .filter_map(|r| r["card"].as_str())
        .collect();
    assert_eq!(voids, ["0A06", "0A03"]);
    off.stop().await;
    public.stop().await;
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_voids_and_a_pass_changed_after_the_read_void_at_most_once() {
    let redis = RedisServer::start();
    let (fares, catalogue, _dir) = fares_file();
    let mut seller = Seller::connect(&redis, catalogue.clone()).await;
    let (dash, _clock) = dashboard(settings(&redis, &fares)).await;
    let alice = login(dash.addr, ALICE).await;
    let bob = login(dash.addr, BOB).await;
    let mut conn = support::redis(&redis).await;

    // Two operators void the same sale at once: one wins, the other is refused.
    for (i, card) in ["0B01", "0B02", "0B03", "0B04"].into_iter().enumerate() {
        assert!(seller.sell("t1", card, "DAY", NOW).await);
        let before = snapshot(&mut conn, &[card]).await;
        let (a, b) = tokio::join!(
            post_void(dash.addr, &alice, card),
            post_void(dash.addr, &bob, card)
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert!(
            statuses == [200, 404] || statuses == [200, 409],
            "round {i}: {} {} / {} {}",
            a.status,
            a.body,
            b.status,
            b.body
        );
        let after = snapshot(&mut conn, &[card]).await;
        assert_eq!(after.stream_len, before.stream_len + 1, "one event");
        assert_eq!(
            num(&after.revenue, revenue::VOIDED) - num(&before.revenue, revenue::VOIDED),
            750
        );
        assert_eq!(
            num(&before.revenue, revenue::AMOUNT) - num(&after.revenue, revenue::AMOUNT),
            750
        );
    }

    // A pass judged voidable, then used, or voided and sold again, before the script runs: the
    // script refuses and nothing changes.
    let card = CardId::new("0B10").expect("card");
    assert!(seller.sell("t1", "0B10", "TEN_TRIP", NOW).await);
    let read: Hash = conn.hgetall(keys::pass(&card)).await.expect("HGETALL");
    let sale = void::judge(&read, NOW, Duration::from_secs(600)).expect("voidable");
    let event = sale.event(&card, "alice", NOW);
    assert!(matches!(
        seller.enter("g1", "0B10", NOW + 1).await,
        tapgate_protocol::Outcome::Granted { .. }
    ));
    let before = snapshot(&mut conn, &["0B10"]).await;
    let err = void::apply(&mut conn, &card, &sale, &event)
        .await
        .expect_err("used meanwhile");
    assert_eq!(err.to_string(), void::VoidRefusal::Used.to_string());
    assert_eq!(snapshot(&mut conn, &["0B10"]).await, before);

    let card = CardId::new("0B11").expect("card");
    assert!(seller.sell("t1", "0B11", "DAY", NOW).await);
    let key = keys::pass(&card);
    let first: Hash = conn.hgetall(&key).await.expect("HGETALL");
    let sale = void::judge(&first, NOW, Duration::from_secs(600)).expect("voidable");
    let event = sale.event(&card, "alice", NOW);
    // Voided by someone else and sold again, a second later, at another terminal.
    let r = post_void(dash.addr, &bob, "0B11").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(seller.sell("t2", "0B11", "DAY", NOW + 1000).await);
    let before = snapshot(&mut conn, &["0B11"]).await;
    let err = void::apply(&mut conn, &card, &sale, &event)
        .await
        .expect_err("changed meanwhile");
    assert_eq!(err.to_string(), void::VoidRefusal::Changed.to_string());
    assert_eq!(snapshot(&mut conn, &["0B11"]).await, before);
    dash.stop().await;
}
