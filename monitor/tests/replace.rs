//! Replacing a lost card, over real HTTP against a real Redis, on wallets and passes made by the
//! bridge's own decide function under a pay-as-you-go catalogue: the pass (with its expiry), the
//! wallet (balance, totals, the day's and week's cap progress) and the recent events move to the
//! new card in one step, money is conserved, the lost card is blocked `replaced` and its next tap
//! denied `blocked`, the new card's next entries are charged against the moved caps, the event
//! and the audit trail name both cards, and the card lookup shows balance and caps. Every refusal
//! (same card, nothing to move, a new card holding a pass or money or blocked, a lost card
//! already blocked or replaced, bad ids, bad bodies, no CSRF token, no login, the public view)
//! changes nothing: every key of every card involved, the deny list, the stream and the audit
//! trail are compared before and after. Two replacements of one card at once: one wins, the money
//! exists once. The deployment's own `tapgate-monitor` Redis user may do it all.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use support::*;
use tapgate_protocol::fields::{blocked, wallet};
use tapgate_protocol::rules::Input;
use tapgate_protocol::{keys, CardId, Decision, DenyReason, DeviceKind, Event, EventKind};
use tapgate_protocol::{Catalogue, Outcome, ProductId};
use tapgate_runtime::clock::ManualClock;
use tapgate_testkit::{redis_users, RedisServer};

/// Monday 2026-03-02 10:00 UTC: service day and week 2026-03-02 under [`PAYG_FARES`].
const NOW: u64 = 1_772_445_600_000;
const DAY: &str = "2026-03-02";
const MINUTE: u64 = 60_000;

/// A catalogue with pay as you go (the issue's example terms), a day pass and a top-up.
const PAYG_FARES: &str = r#"
currency = "EUR"
time_zone = "UTC"

[payg]
fare = 250
daily_cap = 700
weekly_cap = 3000

[[product]]
id = "DAY"
name = "Day pass"
price = 750
validity = "service_day"

[[product]]
id = "TOPUP_10"
name = "Top up 10.00"
price = 1000
validity = "top_up"
"#;

type Hash = HashMap<String, String>;

fn payg_fares() -> (std::path::PathBuf, Catalogue, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("fares dir");
    let path = dir.path().join("fares.toml");
    std::fs::write(&path, PAYG_FARES).expect("write fares");
    let catalogue = Catalogue::load(&path).expect("fares parse");
    (path, catalogue, dir)
}

/// Terminals and gates, through the bridge's own decide function, as the bridge calls it under
/// a pay-as-you-go catalogue.
struct Rider(Seller);

impl Rider {
    async fn connect(url: &str, catalogue: Catalogue) -> Self {
        let store = tapgate_bridge::Store::connect(url, None, store_settings())
            .await
            .unwrap_or_else(|e| panic!("bridge store: {e}"));
        Self(Seller::new(store, catalogue))
    }

    async fn decide(&mut self, kind: DeviceKind, device: &str, input: Input, now: u64) -> Decision {
        self.0.decide(kind, device, input, now).await
    }

    /// Buys `product` (a pass or a top-up) for `card` at terminal t1: tap, button, same card.
    async fn buy(&mut self, card: &str, product: &str, now: u64) -> Decision {
        let card = CardId::new(card).expect("card");
        let terms = self
            .0
            .catalogue
            .product(ProductId::parse(product).expect("product id"))
            .expect("on sale")
            .terms;
        let kind = DeviceKind::Terminal;
        let first = self
            .decide(kind, "t1", Input::TerminalTap(card.clone()), now)
            .await;
        assert!(
            matches!(first.outcome, Outcome::SelectPass { .. }),
            "{first:?}"
        );
        let chosen = self.decide(kind, "t1", Input::Button(terms), now).await;
        assert!(
            matches!(chosen.outcome, Outcome::TapToConfirm { .. }),
            "{chosen:?}"
        );
        self.decide(kind, "t1", Input::TerminalTap(card), now).await
    }

    /// Taps `card` at gate g1.
    async fn enter(&mut self, card: &str, now: u64) -> Decision {
        let card = CardId::new(card).expect("card");
        self.decide(DeviceKind::Gate, "g1", Input::GateTap(card), now)
            .await
    }
}

fn card(s: &str) -> CardId {
    CardId::new(s).expect("card")
}

/// Everything a replacement may touch for `cards`, and the shared keys.
#[derive(Debug, PartialEq)]
struct Snapshot {
    cards: Vec<(Hash, Hash, Hash, Vec<String>)>,
    index: Hash,
    stream_len: usize,
    audit_len: usize,
}

async fn snapshot(conn: &mut MultiplexedConnection, cards: &[&str]) -> Snapshot {
    let mut out = Vec::new();
    for c in cards {
        let c = card(c);
        let got: (Hash, Hash, Hash, Vec<String>) = redis::pipe()
            .hgetall(keys::pass(&c))
            .hgetall(keys::wallet(&c))
            .hgetall(keys::blocked(&c))
            .lrange(keys::card_recent(&c), 0, -1)
            .query_async(conn)
            .await
            .expect("card keys");
        out.push(got);
    }
    Snapshot {
        cards: out,
        index: conn.hgetall(keys::BLOCKED_INDEX).await.expect("index"),
        stream_len: conn.xlen(keys::EVENTS_STREAM).await.expect("XLEN"),
        audit_len: conn.xlen(keys::MONITOR_AUDIT).await.expect("XLEN audit"),
    }
}

async fn last_event(conn: &mut MultiplexedConnection) -> (String, Event) {
    let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .expect("XREVRANGE");
    let (id, fields) = v.into_iter().next().expect("an event");
    let map: Hash = fields.into_iter().collect();
    let e = Event::from_stream(|name| map.get(name).map(String::as_str)).expect("readable event");
    (id, e)
}

fn num(h: &Hash, field: &str) -> i64 {
    h.get(field).map_or(0, |v| v.parse().expect("a number"))
}

/// `topped_up = balance + charged`, the wallet's invariant.
fn conserved(w: &Hash) -> bool {
    num(w, wallet::TOPPED_UP) == num(w, wallet::BALANCE) + num(w, wallet::CHARGED)
}

/// A stream id's (ms, seq), for ordering.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, n) = id.split_once('-').expect("a stream id");
    (ms.parse().expect("ms"), n.parse().expect("seq"))
}

async fn post_replace(addr: std::net::SocketAddr, login: &Login, from: &str, to: &str) -> Resp {
    let body = serde_json::json!({ "to": to }).to_string();
    post_json(addr, login, &format!("/api/cards/{from}/replace"), &body).await
}

async fn dashboard(
    url: &str,
    fares: &std::path::Path,
    at: u64,
) -> (Dashboard, ManualClock, tapgate_monitor::ServeConfig) {
    let mut cfg = config(url);
    cfg.fares = Some(fares.to_owned());
    let clock = ManualClock::at(at);
    (
        Dashboard::start_with_clock(cfg.clone(), Arc::new(clock.clone())).await,
        clock,
        cfg,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_moves_the_wallet_and_its_caps_and_conserves_money() {
    let redis = RedisServer::start();
    let (fares, catalogue, _dir) = payg_fares();
    let mut rider = Rider::connect(&redis.url(), catalogue).await;
    let (a, b) = ("04A1", "04B1");
    for i in 0..2 {
        let d = rider.buy(a, "TOPUP_10", NOW + i).await;
        assert!(matches!(d.outcome, Outcome::ToppedUp { .. }), "{d:?}");
    }
    // The new card was tried at a gate before it was handed out: it has recent events too.
    let d = rider.enter(b, NOW + 2).await;
    assert!(matches!(d.outcome, Outcome::Denied { .. }), "{d:?}");
    for (i, fare) in [250, 250].into_iter().enumerate() {
        let d = rider.enter(a, NOW + (i as u64 + 1) * MINUTE).await;
        assert!(matches!(d.outcome, Outcome::Granted { .. }), "{d:?}");
        assert_eq!(d.charged, Some(fare));
    }
    let (dash, _clock, _) = dashboard(&redis.url(), &fares, NOW + 10 * MINUTE).await;
    let alice = login(dash.addr, ALICE).await;
    let mut conn = support::redis(&redis).await;

    // The lookup shows the balance and the day's and week's charges against the caps.
    let looked = get(dash.addr, &alice, "/api/cards/04a1").await.json();
    let w = &looked["wallet"];
    assert_eq!(
        (&w["balance"], &w["balance_text"]),
        (&1500.into(), &"15.00 EUR".into()),
        "{w}"
    );
    assert_eq!(
        (&w["topped_up"], &w["charged"]),
        (&2000.into(), &500.into())
    );
    assert_eq!((&w["day"], &w["week"]), (&DAY.into(), &DAY.into()));
    assert_eq!(
        (&w["day_charged"], &w["daily_cap"]),
        (&500.into(), &700.into())
    );
    assert_eq!(
        (&w["day_charged_text"], &w["daily_cap_text"]),
        (&"5.00 EUR".into(), &"7.00 EUR".into())
    );
    assert_eq!(
        (&w["week_charged"], &w["weekly_cap"]),
        (&500.into(), &3000.into())
    );
    assert_eq!((&w["fare"], &w["next_fare"]), (&250.into(), &200.into()));
    assert_eq!(looked["pass"], serde_json::Value::Null);

    let before = snapshot(&mut conn, &[a, b]).await;
    let (a_wallet, a_recent) = (before.cards[0].1.clone(), before.cards[0].3.clone());
    let b_recent = before.cards[1].3.clone();
    assert!(a_wallet.contains_key(&wallet::day(DAY)), "{a_wallet:?}");
    assert!(a_wallet.contains_key(&wallet::week(DAY)), "{a_wallet:?}");
    assert_eq!((a_recent.len(), b_recent.len()), (4, 1));

    let r = post_replace(dash.addr, &alice, "04a1", "04b1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!((&v["card"], &v["to"]), (&a.into(), &b.into()));
    assert_eq!(
        (&v["pass"], &v["balance"], &v["currency"]),
        (&false.into(), &1500.into(), &"EUR".into())
    );
    assert_eq!(v["by"], "alice");
    let after = snapshot(&mut conn, &[a, b]).await;

    // The wallet moved whole: balance, totals, per-day and per-week progress, kept_from.
    assert_eq!(after.cards[1].1, a_wallet);
    assert!(
        after.cards[0].1.is_empty(),
        "A keeps no wallet: {:?}",
        after.cards[0].1
    );
    let exists: bool = conn.exists(keys::wallet(&card(a))).await.expect("EXISTS");
    assert!(!exists);
    assert!(conserved(&after.cards[1].1), "{:?}", after.cards[1].1);

    // A is blocked `replaced`, by alice, now; the deny list says so.
    let a_blocked = &after.cards[0].2;
    assert_eq!(
        a_blocked.get(blocked::REASON).map(String::as_str),
        Some("replaced")
    );
    assert_eq!(
        a_blocked.get(blocked::BY).map(String::as_str),
        Some("alice")
    );
    assert_eq!(num(a_blocked, blocked::AT), (NOW + 10 * MINUTE) as i64);
    assert_eq!(after.index.get(a).map(String::as_str), Some("replaced"));
    assert!(after.cards[1].2.is_empty(), "B is not blocked");

    // One event naming both cards; it heads both recent lists, B's holding both histories.
    assert_eq!(after.stream_len, before.stream_len + 1);
    let (seq, e) = last_event(&mut conn).await;
    assert_eq!(v["seq"], seq);
    assert_eq!(e.event, EventKind::CardReplaced);
    assert_eq!(e.card.as_ref().map(CardId::as_str), Some(a));
    assert_eq!(e.detail.as_deref(), Some(b));
    assert_eq!(e.reason.as_deref(), Some("replaced"));
    assert_eq!(e.time, NOW + 10 * MINUTE);
    let mut merged: Vec<String> = a_recent.iter().chain(&b_recent).cloned().collect();
    merged.sort_by_key(|id| std::cmp::Reverse(id_key(id)));
    let mut expected = vec![seq.clone()];
    expected.extend(merged);
    assert_eq!(after.cards[1].3, expected);
    assert_eq!(after.cards[0].3, vec![seq.clone()]);

    // The audit trail: who, which cards, what balance moved, from where.
    let audit = get(dash.addr, &alice, "/api/audit").await.json();
    let rec = &audit[0];
    assert_eq!(
        (&rec["action"], &rec["operator"]),
        (&"replace".into(), &"alice".into())
    );
    assert_eq!((&rec["card"], &rec["reason"]), (&a.into(), &b.into()));
    assert_eq!(
        (&rec["price"], &rec["from"]),
        (&"15.00 EUR".into(), &"127.0.0.1".into())
    );

    // The lookups: B holds the balance and the caps' progress; A is blocked and holds nothing.
    let looked = get(dash.addr, &alice, "/api/cards/04B1").await.json();
    assert_eq!(looked["wallet"]["balance"], 1500);
    assert_eq!(looked["wallet"]["day_charged"], 500);
    assert_eq!(looked["wallet"]["next_fare"], 200);
    assert_eq!(looked["recent"][0]["event"], "card-replaced");
    let text = looked["recent"][0]["described"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains(a) && text.contains(b), "{text}");
    let looked = get(dash.addr, &alice, "/api/cards/04A1").await.json();
    assert_eq!(looked["blocked"]["reason"], "replaced");
    assert_eq!(looked["wallet"], serde_json::Value::Null);
    // It stays blocked: its pass and balance are B's now.
    let kept = snapshot(&mut conn, &[a, b]).await;
    let r = post_json(dash.addr, &alice, "/api/cards/04A1/unblock", "").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, "conflict".into()),
        "{}",
        r.body
    );
    assert_eq!(snapshot(&mut conn, &[a, b]).await, kept);

    // A's next tap is denied `blocked`; B's entries are charged against the moved caps: 200,
    // then nothing, and money is still conserved.
    let d = rider.enter(a, NOW + 11 * MINUTE).await;
    assert!(
        matches!(
            d.outcome,
            Outcome::Denied {
                reason: DenyReason::Blocked
            }
        ),
        "{d:?}"
    );
    for (i, fare) in [200, 0].into_iter().enumerate() {
        let d = rider.enter(b, NOW + (12 + i as u64) * MINUTE).await;
        assert!(matches!(d.outcome, Outcome::Granted { .. }), "{d:?}");
        assert_eq!(d.charged, Some(fare), "entry {i}");
    }
    let w: Hash = conn.hgetall(keys::wallet(&card(b))).await.expect("wallet");
    assert_eq!(
        (
            num(&w, wallet::BALANCE),
            num(&w, wallet::CHARGED),
            num(&w, wallet::TOPPED_UP)
        ),
        (1300, 700, 2000)
    );
    assert!(conserved(&w));
    let looked = get(dash.addr, &alice, "/api/cards/04B1").await.json();
    assert_eq!(looked["wallet"]["day_charged_text"], "7.00 EUR");
    assert_eq!(looked["wallet"]["next_fare"], 0);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_moves_with_its_expiry_over_an_empty_wallet() {
    let redis = RedisServer::start();
    let (fares, catalogue, _dir) = payg_fares();
    let mut rider = Rider::connect(&redis.url(), catalogue).await;
    let (a, b) = ("04A2", "04B2");
    let d = rider.buy(a, "DAY", NOW).await;
    assert!(matches!(d.outcome, Outcome::PassIssued { .. }), "{d:?}");
    let mut conn = support::redis(&redis).await;
    // A wallet opened with nothing in it may be overwritten.
    let () = conn
        .hset_multiple(
            keys::wallet(&card(b)),
            &[
                (wallet::BALANCE, "0"),
                (wallet::TOPPED_UP, "0"),
                (wallet::CHARGED, "0"),
                (wallet::CURRENCY, "EUR"),
            ],
        )
        .await
        .expect("empty wallet");
    let pass: Hash = conn.hgetall(keys::pass(&card(a))).await.expect("pass");
    let ttl: i64 = conn.pttl(keys::pass(&card(a))).await.expect("PTTL");
    assert!(ttl > 0, "the bridge gives a day pass an expiry: {ttl}");
    let (dash, _clock, _) = dashboard(&redis.url(), &fares, NOW + MINUTE).await;
    let bob = login(dash.addr, BOB).await;

    let r = post_replace(dash.addr, &bob, a, b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (&r.json()["pass"], &r.json()["balance"]),
        (&true.into(), &serde_json::Value::Null)
    );
    let moved: Hash = conn.hgetall(keys::pass(&card(b))).await.expect("pass");
    assert_eq!(moved, pass);
    let moved_ttl: i64 = conn.pttl(keys::pass(&card(b))).await.expect("PTTL");
    assert!(moved_ttl > 0 && moved_ttl <= ttl, "{moved_ttl} of {ttl}");
    let left: bool = conn.exists(keys::pass(&card(a))).await.expect("EXISTS");
    assert!(!left, "A keeps no pass");
    let w: Hash = conn.hgetall(keys::wallet(&card(b))).await.expect("wallet");
    assert_eq!(num(&w, wallet::BALANCE), 0);

    let d = rider.enter(b, NOW + 2 * MINUTE).await;
    match &d.outcome {
        Outcome::Granted { pass } => assert_eq!(pass.pass_type.as_str(), "DAY"),
        other => panic!("B enters on the moved pass: {other:?}"),
    }
    let d = rider.enter(a, NOW + 3 * MINUTE).await;
    assert!(
        matches!(
            d.outcome,
            Outcome::Denied {
                reason: DenyReason::Blocked
            }
        ),
        "{d:?}"
    );
    let looked = get(dash.addr, &bob, "/api/cards/04B2").await.json();
    assert_eq!(looked["pass"]["type"], "DAY");
    assert_eq!(looked["wallet"]["balance_text"], "0.00 EUR");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_replacements_change_nothing() {
    let redis = RedisServer::start();
    let (fares, catalogue, _dir) = payg_fares();
    let mut rider = Rider::connect(&redis.url(), catalogue).await;
    // MONEY and RICH hold money, PASS a pass, LOST a pass and a block; DONE is replaced by
    // DONE2 below; NADA holds nothing; BLK is blocked with nothing on it.
    for c in ["0C01", "0C02", "0C06"] {
        assert!(matches!(
            rider.buy(c, "TOPUP_10", NOW).await.outcome,
            Outcome::ToppedUp { .. }
        ));
    }
    assert!(matches!(
        rider.buy("0C03", "DAY", NOW).await.outcome,
        Outcome::PassIssued { .. }
    ));
    assert!(matches!(
        rider.buy("0C04", "DAY", NOW).await.outcome,
        Outcome::PassIssued { .. }
    ));
    let (money, rich, pass, lost, done, nada, blk) =
        ("0C01", "0C02", "0C03", "0C04", "0C06", "0C07", "0C08");
    let (dash, _clock, cfg) = dashboard(&redis.url(), &fares, NOW + MINUTE).await;
    let alice = login(dash.addr, ALICE).await;
    for c in [lost, blk] {
        let r = post_json(
            dash.addr,
            &alice,
            &format!("/api/cards/{c}/block"),
            r#"{"reason":"lost"}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = post_replace(dash.addr, &alice, done, "0C09").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut conn = support::redis(&redis).await;
    let cards = [money, rich, pass, lost, done, nada, blk, "0C09", "0C0A"];
    let before = snapshot(&mut conn, &cards).await;

    let long = "0".repeat(33);
    let huge = "A".repeat(20_000);
    let cases: [(&str, &str, u16, &str); 11] = [
        (money, "0c01", 400, "same_card"),
        (nada, "0C0A", 404, "unknown_card"),
        (money, pass, 409, "target_has_pass"),
        (money, rich, 409, "target_has_wallet"),
        (money, blk, 409, "target_blocked"),
        (done, "0C0A", 409, "already_replaced"),
        (done, "0C09", 409, "already_replaced"),
        (money, "0C-0A", 400, "invalid_card"),
        (money, &long, 400, "invalid_card"),
        (money, "0C0A\u{202e}", 400, "invalid_card"),
        (&long, "0C0A", 400, "invalid_card"),
    ];
    for (from, to, status, code) in cases {
        let r = post_replace(dash.addr, &alice, from, to).await;
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (status, code.into()),
            "{from} → {to}: {}",
            r.body
        );
        assert_eq!(
            snapshot(&mut conn, &cards).await,
            before,
            "{from} → {to} changed something"
        );
    }
    // A huge path, odd bodies: refused before Redis is touched.
    let path = format!("/api/cards/{money}/replace");
    for body in [
        "",
        "{}",
        "not json",
        r#"{"to": 12}"#,
        r#"{"to": "0C0A", "balance": 100000}"#,
        &format!(r#"{{"to": "{huge}"}}"#),
    ] {
        let r = post_json(dash.addr, &alice, &path, body).await;
        assert!(
            (400..500).contains(&r.status),
            "{body:?}: {} {}",
            r.status,
            r.body
        );
        assert_eq!(snapshot(&mut conn, &cards).await, before, "{body:?}");
    }
    let r = post_replace(dash.addr, &alice, &huge, "0C0A").await;
    assert!(
        (400..500).contains(&r.status),
        "huge path: {} {}",
        r.status,
        r.body
    );

    // Without the CSRF token, without a login, and as the public: refused, nothing changed.
    let body = br#"{"to":"0C0A"}"#;
    let cookie = alice.cookie_header();
    let headers = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/json"),
    ];
    let no_csrf = request(dash.addr, "POST", &path, &headers, body).await;
    assert_eq!(
        (no_csrf.status, no_csrf.json()["error"].clone()),
        (403, "forbidden".into())
    );
    let wrong_csrf = request(
        dash.addr,
        "POST",
        &path,
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", "0000"),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(wrong_csrf.status, 403, "{}", wrong_csrf.body);
    let anon = request(
        dash.addr,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(anon.status, 401, "{}", anon.body);
    let public = Dashboard::start(tapgate_monitor::ServeConfig {
        public_read_only: true,
        ..cfg.clone()
    })
    .await;
    let viewer = request(
        public.addr,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(
        (viewer.status, viewer.json()["error"].clone()),
        (401, "login_required".into())
    );
    assert_eq!(snapshot(&mut conn, &cards).await, before);

    // A card already blocked as lost (how an operator usually learns of it) is replaced all the
    // same: its pass moves and its block becomes `replaced`.
    let r = post_replace(dash.addr, &alice, lost, "0C0C").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reason: Option<String> = redis::cmd("HGET")
        .arg(keys::blocked(&CardId::new(lost).expect("card")))
        .arg(tapgate_protocol::fields::blocked::REASON)
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert_eq!(reason.as_deref(), Some("replaced"));
    let moved: bool = redis::cmd("EXISTS")
        .arg(keys::pass(&CardId::new("0C0C").expect("card")))
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(moved, "the lost card's pass is on the new one");

    // Two replacements of one card at once: one wins, the other is refused; the money is once.
    let both = tokio::join!(
        post_replace(dash.addr, &alice, money, "0C0A"),
        post_replace(dash.addr, &alice, money, "0C0B"),
    );
    let mut statuses = [both.0.status, both.1.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", both.0.body, both.1.body);
    let loser = if both.0.status == 409 {
        &both.0
    } else {
        &both.1
    };
    assert_eq!(loser.json()["error"], "already_replaced");
    let mut total = 0;
    for c in [money, "0C0A", "0C0B"] {
        let w: Hash = conn.hgetall(keys::wallet(&card(c))).await.expect("wallet");
        assert!(w.is_empty() || conserved(&w), "{c}: {w:?}");
        total += num(&w, wallet::BALANCE);
    }
    assert_eq!(total, 1000);
    public.stop().await;
    dash.stop().await;
}

/// The deployment's ACL file (docker/redis-users.sh): the monitor's own Redis user may look a
/// card up and replace it, and the script's writes stay within what that user may write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployments_monitor_user_may_replace_a_card() {
    let (server, _acl) = redis_users::redis_with_users();
    let (fares, catalogue, _dir) = payg_fares();
    let admin_url = redis_users::url_as(&server, "tapgate-admin");
    let mut rider =
        Rider::connect(&redis_users::url_as(&server, "tapgate-bridge"), catalogue).await;
    assert!(matches!(
        rider.buy("0D01", "TOPUP_10", NOW).await.outcome,
        Outcome::ToppedUp { .. }
    ));
    assert!(matches!(
        rider.enter("0D01", NOW + 1).await.outcome,
        Outcome::Granted { .. }
    ));
    let monitor_url = redis_users::url_as(&server, "tapgate-monitor");
    let (dash, _clock, _) = dashboard(&monitor_url, &fares, NOW + MINUTE).await;
    let alice = login(dash.addr, ALICE).await;
    let looked = get(dash.addr, &alice, "/api/cards/0D01").await;
    assert_eq!(looked.status, 200, "{}", looked.body);
    assert_eq!(looked.json()["wallet"]["balance"], 750);
    let r = post_replace(dash.addr, &alice, "0D01", "0D02").await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, server.log());
    let mut conn = redis::Client::open(admin_url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect as admin");
    let w: Hash = conn
        .hgetall(keys::wallet(&card("0D02")))
        .await
        .expect("wallet");
    assert_eq!(
        (num(&w, wallet::BALANCE), num(&w, wallet::CHARGED)),
        (750, 250)
    );
    let d = rider.enter("0D01", NOW + 2 * MINUTE).await;
    assert!(
        matches!(
            d.outcome,
            Outcome::Denied {
                reason: DenyReason::Blocked
            }
        ),
        "{d:?}"
    );
    dash.stop().await;
}
