//! The dashboard server over real HTTP against a real Redis: logins,
//! CSRF, session expiry, the deny list's keys and events, refusals of bad input, escaping, a
//! sale's price in the feed, and live pushes to several browsers at once.

mod support;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use support::*;
use tapgate_protocol::{keys, CardId, DeviceId, DeviceKind, Event, EventKind};
use tapgate_testkit::RedisServer;

async fn stream_len(conn: &mut redis::aio::MultiplexedConnection) -> usize {
    redis::cmd("XLEN")
        .arg(keys::EVENTS_STREAM)
        .query_async(conn)
        .await
        .expect("XLEN")
}

fn assert_security_headers(r: &Resp) {
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_and_what_needs_a_login() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    let (key, _key_dir) = known_session_key(&mut cfg);
    let dash = Dashboard::start(cfg).await;
    let addr = dash.addr;

    let anon = request(addr, "GET", "/", &[], b"").await;
    assert_eq!(anon.status, 303);
    assert_eq!(anon.header("location"), Some("/login"));
    let api = request(addr, "GET", "/api/counters", &[], b"").await;
    assert_eq!(api.status, 401);
    assert_eq!(api.json()["error"], "login_required");

    let wrong = post_login(addr, ALICE.0, "nope").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong name or password"));
    assert!(wrong.cookie("tapgate_session").is_none());
    let unknown = post_login(addr, "mallory", ALICE.1).await;
    assert_eq!(unknown.status, 401);

    let ok = post_login(addr, ALICE.0, ALICE.1).await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/"));
    let set = ok
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("tapgate_session="))
        .expect("session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let token = ok.cookie("tapgate_session").expect("token");
    assert_eq!(token.len(), 64, "256-bit token");
    let cookie = format!("tapgate_session={token}");

    let page = request(addr, "GET", "/", &[("Cookie", &cookie)], b"").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<script src=\"/assets/app.js\""));
    assert_security_headers(&page);
    let s = request(addr, "GET", "/api/session", &[("Cookie", &cookie)], b"").await;
    assert_eq!(s.json()["operator"], "alice");
    let wording = &s.json()["wording"];
    assert_eq!(
        wording,
        &serde_json::json!({"silent_after_ms": 90_000}),
        "products need no wording: events name them"
    );
    let csrf = s.json()["csrf"].as_str().expect("csrf").to_owned();

    let mut conn = redis(&server).await;
    let ttl: i64 = conn
        .ttl(session_redis_key(&key, &token))
        .await
        .expect("TTL");
    assert!(
        (8 * 3600 - 5..=8 * 3600).contains(&ttl),
        "session expires with the TTL: {ttl}"
    );

    // Logout needs the CSRF token too.
    let forged = request(addr, "POST", "/logout", &[("Cookie", &cookie)], b"").await;
    assert_eq!(forged.status, 403);
    let out = request(
        addr,
        "POST",
        "/logout",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        b"",
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(out
        .headers_named("set-cookie")
        .iter()
        .any(|c| c.starts_with("tapgate_session=;") && c.contains("Max-Age=0")));
    let after = request(addr, "GET", "/api/session", &[("Cookie", &cookie)], b"").await;
    assert_eq!(after.status, 401, "the session is gone from Redis");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_form_must_come_from_this_site() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let body = format!(
        "name=alice&password={}&csrf={}",
        urlencode(ALICE.1),
        "a".repeat(64)
    );
    let r = request(
        dash.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.cookie("tapgate_session").is_none());
    let missing = request(
        dash.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=alice",
    )
    .await;
    assert!(
        missing.status == 400 || missing.status == 422,
        "{}",
        missing.status
    );
    assert!(missing.body.contains("<form"), "the form is shown again");
    dash.stop().await;
}

async fn blocked_state(
    conn: &mut redis::aio::MultiplexedConnection,
    card: &str,
) -> (std::collections::HashMap<String, String>, Option<String>) {
    let card = CardId::new(card).expect("card");
    let hash: std::collections::HashMap<String, String> =
        conn.hgetall(keys::blocked(&card)).await.expect("HGETALL");
    let index: Option<String> = conn
        .hget(keys::BLOCKED_INDEX, card.as_str())
        .await
        .expect("HGET");
    (hash, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_and_expired_sessions_change_nothing() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    let (key, _key_dir) = known_session_key(&mut cfg);
    let dash = Dashboard::start(cfg).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;
    let path = "/api/cards/0412AB/block";
    let body = br#"{"reason":"stolen"}"#;
    let cookie = me.cookie_header();
    let no_token = request(
        dash.addr,
        "POST",
        path,
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(no_token.status, 403);
    assert_eq!(no_token.json()["error"], "forbidden");
    let forged = request(
        dash.addr,
        "POST",
        path,
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &"0".repeat(64)),
        ],
        body,
    )
    .await;
    assert_eq!(forged.status, 403);
    // Another operator's token does not work with this session either.
    let bob = login(dash.addr, BOB).await;
    let swapped = request(
        dash.addr,
        "POST",
        path,
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &bob.csrf),
        ],
        body,
    )
    .await;
    assert_eq!(swapped.status, 403);
    assert_eq!(
        blocked_state(&mut conn, "0412AB").await,
        (Default::default(), None)
    );
    assert_eq!(stream_len(&mut conn).await, 0);

    // Expire the session the way Redis would.
    let _: () = conn
        .pexpire(session_redis_key(&key, &me.cookie), 1)
        .await
        .expect("PEXPIRE");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = post_json(dash.addr, &me, path, r#"{"reason":"stolen"}"#).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["error"], "login_required");
    let page = request(dash.addr, "GET", "/", &[("Cookie", &cookie)], b"").await;
    assert_eq!(
        page.status, 303,
        "an expired session goes back to the login page"
    );
    assert_eq!(
        blocked_state(&mut conn, "0412AB").await,
        (Default::default(), None)
    );
    assert_eq!(stream_len(&mut conn).await, 0);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_and_unblock_write_keys_and_events_together() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;

    let r = post_json(
        dash.addr,
        &me,
        "/api/cards/0412AB/block",
        r#"{"reason":"stolen"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (hash, index) = blocked_state(&mut conn, "0412AB").await;
    assert_eq!(hash.get("reason").map(String::as_str), Some("stolen"));
    assert_eq!(hash.get("by").map(String::as_str), Some("alice"));
    assert!(hash.get("at").and_then(|a| a.parse::<u64>().ok()).is_some());
    assert_eq!(index.as_deref(), Some("stolen"));
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    assert_eq!(entries.len(), 1);
    assert_eq!(r.json()["seq"], entries[0].0);
    let fields: std::collections::BTreeMap<String, String> = entries[0].1.iter().cloned().collect();
    let ev = Event::from_stream_map(&fields).expect("event");
    assert_eq!(
        entries[0].1[0],
        ("event".to_owned(), "card-blocked".to_owned())
    );
    assert_eq!(ev.event, EventKind::CardBlocked);
    assert_eq!(ev.card.as_ref().map(CardId::as_str), Some("0412AB"));
    assert_eq!(ev.reason.as_deref(), Some("stolen"));
    assert_eq!(ev.detail.as_deref(), Some("alice"));

    let again = post_json(
        dash.addr,
        &me,
        "/api/cards/0412AB/block",
        r#"{"reason":"lost"}"#,
    )
    .await;
    assert_eq!(again.status, 409);
    let bad_reason = post_json(
        dash.addr,
        &me,
        "/api/cards/77/block",
        r#"{"reason":"<script>"}"#,
    )
    .await;
    assert_eq!(bad_reason.status, 422, "{}", bad_reason.body);
    let extra = post_json(
        dash.addr,
        &me,
        "/api/cards/77/block",
        r#"{"reason":"lost","by":"root"}"#,
    )
    .await;
    assert_eq!(extra.status, 422);
    let bad_card = post_json(
        dash.addr,
        &me,
        "/api/cards/AB-1/block",
        r#"{"reason":"lost"}"#,
    )
    .await;
    assert_eq!(bad_card.status, 400);
    assert!(bad_card.json()["message"]
        .as_str()
        .expect("msg")
        .contains("card"));
    assert_eq!(stream_len(&mut conn).await, 1, "refusals append nothing");

    let list = get(dash.addr, &me, "/api/blocked").await.json();
    assert_eq!(list[0]["card"], "0412AB");
    assert_eq!(list[0]["reason"], "stolen");
    assert_eq!(list[0]["by"], "alice");
    // A card's recent events come with the same words as the feed.
    let id = CardId::new("0412AB").expect("card");
    let mut used = Event::new(EventKind::PassUsed, 1_700_000_000_000);
    used.card = Some(id.clone());
    used.device = DeviceId::new("g1").ok();
    used.device_kind = Some(DeviceKind::Gate);
    let _: () = conn
        .lpush(keys::card_recent(&id), used.to_json())
        .await
        .expect("LPUSH");
    let card = get(dash.addr, &me, "/api/cards/0412AB").await.json();
    assert_eq!(card["blocked"]["reason"], "stolen");
    let recent = &card["recent"][0]["described"];
    assert_eq!(recent["label"], "ENTRY", "{card}");
    assert_eq!(
        recent["text"],
        "journey started: card 0412AB at gate g1, unknown pass"
    );

    let bob = login(dash.addr, BOB).await;
    let un = post_json(dash.addr, &bob, "/api/cards/0412AB/unblock", "").await;
    assert_eq!(un.status, 200, "{}", un.body);
    assert_eq!(
        blocked_state(&mut conn, "0412AB").await,
        (Default::default(), None)
    );
    let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("XREVRANGE");
    let fields: std::collections::BTreeMap<String, String> = last[0].1.iter().cloned().collect();
    let ev = Event::from_stream_map(&fields).expect("event");
    assert_eq!(ev.event, EventKind::CardUnblocked);
    assert_eq!(ev.reason.as_deref(), Some("stolen"));
    assert_eq!(ev.detail.as_deref(), Some("bob"));
    let twice = post_json(dash.addr, &bob, "/api/cards/0412AB/unblock", "").await;
    assert_eq!(twice.status, 404);
    assert_eq!(stream_len(&mut conn).await, 2);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_refusals() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;

    let huge = format!(r#"{{"reason":"lost","pad":"{}"}}"#, "x".repeat(20_000));
    let big = post_json(dash.addr, &me, "/api/cards/77/block", &huge).await;
    assert_eq!(big.status, 413);
    assert_eq!(big.json()["error"], "too_large");
    let big_login = request(
        dash.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        huge.as_bytes(),
    )
    .await;
    assert_eq!(big_login.status, 413);
    assert!(big_login.body.contains("<html"), "pages get a page");

    let page = request(dash.addr, "GET", "/no/such/page", &[], b"").await;
    assert_eq!(page.status, 404);
    assert!(page
        .header("content-type")
        .expect("type")
        .starts_with("text/html"));
    assert_security_headers(&page);
    let api = get(dash.addr, &me, "/api/nothing").await;
    assert_eq!(api.status, 404);
    assert_eq!(api.json()["error"], "not_found");
    let method = request(dash.addr, "DELETE", "/api/counters", &[], b"").await;
    assert_eq!(method.status, 405);
    let asset = request(dash.addr, "GET", "/assets/secret.txt", &[], b"").await;
    assert_eq!(asset.status, 404);
    let not_json = request(
        dash.addr,
        "POST",
        "/api/cards/77/block",
        &[
            ("Cookie", &me.cookie_header()),
            ("X-CSRF-Token", &me.csrf),
            ("Content-Type", "text/plain"),
        ],
        b"reason=lost",
    )
    .await;
    assert_eq!(not_json.status, 415);
    let broken = post_json(dash.addr, &me, "/api/cards/77/block", "{\"reason\":").await;
    assert_eq!(broken.status, 400);
    let limit = get(dash.addr, &me, "/api/events?limit=0").await;
    assert_eq!(limit.status, 400);
    let unknown_q = get(dash.addr, &me, "/api/events?limt=5").await;
    assert_eq!(unknown_q.status, 400);
    assert_eq!(stream_len(&mut conn).await, 0, "nothing changed");
    let blocked: usize = conn.hlen(keys::BLOCKED_INDEX).await.expect("HLEN");
    assert_eq!(blocked, 0);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_text_comes_back_as_json_strings_and_escaped_pages() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;
    let xss = "<script>alert(1)</script>";
    let mut ev = Event::new(EventKind::Rejected, 1_700_000_000_000);
    ev.device = DeviceId::new("g1").ok();
    ev.device_kind = Some(DeviceKind::Gate);
    ev.reason = Some(xss.into());
    ev.detail = Some(format!("field {xss:?} is not allowed"));
    xadd(&mut conn, "*", &ev).await;
    let _: () = conn
        .hset(keys::BLOCKED_INDEX, "99", xss)
        .await
        .expect("HSET");

    let events = get(dash.addr, &me, "/api/events").await;
    assert!(events
        .header("content-type")
        .expect("type")
        .starts_with("application/json"));
    let v = events.json();
    assert_eq!(v["events"][0]["reason"], xss, "kept as data, a JSON string");
    let described = &v["events"][0]["described"];
    assert_eq!(described["label"], "REJECTED", "{described}");
    assert_eq!(
        described["text"],
        format!("gate g1: {xss} (field {xss:?} is not allowed)"),
        "the server writes the words, the page only shows them"
    );
    let blocked = get(dash.addr, &me, "/api/blocked").await.json();
    assert_eq!(blocked[0]["reason"], xss);
    // The only server-rendered text echoes go through the HTML escaper.
    let err = request(dash.addr, "GET", "/assets/%3Cscript%3E", &[], b"").await;
    assert_eq!(err.status, 404);
    assert!(!err.body.contains("<script"), "{}", err.body);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_counters_charts_devices_and_cards() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;
    let card = CardId::new("0412AB").expect("card");
    let day_card = CardId::new("D4").expect("card");
    let g1 = DeviceId::new("g1").expect("dev");
    let now = tapgate_runtime::clock::now_ms();
    let _: () = redis::pipe()
        .hincr(keys::COUNTERS_ENTRIES, "TEN_TRIP", 3)
        .hincr(keys::COUNTERS_ENTRIES, "DAY", 1)
        .hincr(keys::COUNTERS_ENTRIES, "not a product", 5)
        .hincr(keys::COUNTERS_DENIED, "no_pass", 2)
        .hset_multiple(
            keys::pass(&card),
            &[("type", "TEN_TRIP"), ("trips", "7"), ("issued_at", "1")],
        )
        .hset_multiple(
            keys::pass(&day_card),
            &[
                ("type", "DAY"),
                ("trips", "0"),
                ("issued_at", "1"),
                ("expires_at", &(now + 3_600_000).to_string()),
            ],
        )
        .sadd(keys::DEVICES, keys::device_member(DeviceKind::Gate, &g1))
        .sadd(keys::DEVICES, "gate/bad id")
        .hset_multiple(
            keys::device(DeviceKind::Gate, &g1),
            &[("online", "1"), ("last_seen", &now.to_string())],
        )
        .hset_multiple(
            keys::device_counters(&g1),
            &[("granted", "3"), ("denied", "2")],
        )
        .query_async(&mut conn)
        .await
        .expect("seed");
    let mut used = Event::new(EventKind::PassUsed, now);
    used.card = Some(card.clone());
    let _: () = conn
        .lpush(keys::card_recent(&card), used.to_json())
        .await
        .expect("LPUSH");
    // An entry older than an hour is not counted.
    xadd(&mut conn, "1000-0", &used).await;
    let mut last = String::new();
    for _ in 0..3 {
        last = xadd(&mut conn, "*", &used).await;
    }
    xadd(&mut conn, "*", &Event::new(EventKind::PassDenied, now)).await;
    // Newer lists hold stream ids: one still in the stream, one trimmed since (not shown).
    let _: () = conn
        .lpush(keys::card_recent(&card), &["999-0", last.as_str()])
        .await
        .expect("LPUSH");

    // Rate-limited refusals, as the bridge adds them up once a second (no event).
    let _: () = conn
        .hincr(keys::COUNTERS_REJECTED, "rate_limited", 7)
        .await
        .expect("HINCRBY");

    let c = get(dash.addr, &me, "/api/counters").await.json();
    assert_eq!(
        c["entries"],
        serde_json::json!({"DAY": 1, "TEN_TRIP": 3}),
        "the products counted, whatever they are; a field that is no product id is not shown"
    );
    assert_eq!(c["issued"], serde_json::json!({}));
    assert_eq!(c["denied"]["no_pass"], 2);
    assert_eq!(c["rejected"]["unknown_field"], 0);
    assert_eq!(c["rejected"]["rate_limited"], 7);

    let m = get(dash.addr, &me, "/api/charts/minutes").await.json();
    let sum = |k: &str| {
        m[k].as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_u64().expect("n"))
            .sum::<u64>()
    };
    assert_eq!(m["entries"].as_array().expect("a").len(), 60);
    assert_eq!(sum("entries"), 3);
    assert_eq!(sum("denials"), 1);

    let d = get(dash.addr, &me, "/api/devices").await.json();
    assert_eq!(
        d.as_array().expect("devices").len(),
        1,
        "invalid members are skipped"
    );
    assert_eq!(d[0]["device"], "g1");
    assert_eq!(d[0]["online"], true);
    assert_eq!(d[0]["granted"], 3);
    assert_eq!(d[0]["denied"], 2);

    let r = get(dash.addr, &me, "/api/cards/0412AB").await.json();
    assert_eq!(r["pass"]["type"], "TEN_TRIP");
    assert_eq!(r["pass"]["trips_remaining"], 7);
    assert_eq!(r["blocked"], serde_json::Value::Null);
    let mut streamed = used.clone();
    streamed.seq = None;
    let mut recent = r["recent"].clone();
    for e in recent.as_array_mut().expect("recent") {
        let described = e
            .as_object_mut()
            .and_then(|o| o.remove("described"))
            .expect("each recent event carries its wording");
        assert_eq!(described["label"], "ENTRY");
    }
    assert_eq!(
        recent,
        serde_json::json!([streamed, used]),
        "the entry the id names, then the older JSON entry"
    );
    // A pass that does not count trips shows none, and its time left when it expires.
    let day = get(dash.addr, &me, "/api/cards/D4").await.json();
    assert_eq!(day["pass"]["type"], "DAY");
    assert_eq!(day["pass"]["trips_remaining"], serde_json::Value::Null);
    let left = day["pass"]["remaining_ms"].as_i64().expect("time left");
    assert!((3_500_000..=3_600_000).contains(&left), "{left}");
    let none = get(dash.addr, &me, "/api/cards/55").await.json();
    assert_eq!(none["pass"], serde_json::Value::Null);
    dash.stop().await;
}

/// Checks a feed item is the sale of [`sale`]: its fields and the words the page shows.
fn assert_sale_item(item: &serde_json::Value) {
    assert_eq!(item["event"], "pass-issued", "{item}");
    assert_eq!(item["pass"]["type"], "DAY", "{item}");
    assert_eq!(
        (&item["price"], &item["currency"]),
        (&750.into(), &"EUR".into())
    );
    let described = &item["described"];
    assert_eq!(described["label"], "ISSUED", "{described}");
    assert_eq!(described["text"], "DAY pass for card 04AB at terminal t1, ");
    assert_eq!(described["price"], "7.50 EUR", "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_shows_its_price_in_the_feed() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;
    let first = xadd(&mut conn, "*", &sale(1_700_000_000_000)).await;

    let events = get(dash.addr, &me, "/api/events").await.json();
    assert_eq!(events["events"][0]["seq"], first);
    assert_sale_item(&events["events"][0]);

    let mut live = SseClient::open(dash.addr, &me).await;
    let snap = live.next("snapshot").await;
    assert_sale_item(&snap["events"][0]);
    let next = xadd(&mut conn, "*", &sale(tapgate_runtime::clock::now_ms())).await;
    let pushed = live.next("events").await;
    assert_eq!(pushed[0]["seq"], next);
    assert_sale_item(&pushed[0]);

    // The card's recent events carry the same words.
    let card = CardId::new("04AB").expect("card");
    let _: () = conn
        .lpush(keys::card_recent(&card), &next)
        .await
        .expect("LPUSH");
    let r = get(dash.addr, &me, "/api/cards/04AB").await.json();
    assert_eq!(r["recent"][0]["described"]["price"], "7.50 EUR", "{r}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_read_only_reads_but_never_writes() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.public_read_only = true;
    let dash = Dashboard::start(cfg).await;
    assert_eq!(request(dash.addr, "GET", "/", &[], b"").await.status, 200);
    let s = request(dash.addr, "GET", "/api/session", &[], b"")
        .await
        .json();
    assert_eq!(s["read_only"], true);
    assert_eq!(
        request(dash.addr, "GET", "/api/counters", &[], b"")
            .await
            .status,
        200
    );
    let r = request(
        dash.addr,
        "POST",
        "/api/cards/77/block",
        &[("Content-Type", "application/json")],
        br#"{"reason":"lost"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_reach_every_browser_with_the_same_numbers() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let mut conn = redis(&server).await;
    let mut old = Event::new(EventKind::PassIssued, 1);
    old.card = CardId::new("1").ok();
    let first = xadd(&mut conn, "*", &old).await;
    let alice = login(dash.addr, ALICE).await;
    let bob = login(dash.addr, BOB).await;
    let mut a = SseClient::open(dash.addr, &alice).await;
    let mut b = SseClient::open(dash.addr, &bob).await;
    let snap_a = a.next("snapshot").await;
    let snap_b = b.next("snapshot").await;
    assert_eq!(snap_a["events"][0]["seq"], first, "history on load");
    assert_eq!(snap_a["counters"], snap_b["counters"]);

    let mut used = Event::new(EventKind::PassUsed, tapgate_runtime::clock::now_ms());
    used.card = CardId::new("0412AB").ok();
    let sent = Instant::now();
    let _: () = conn
        .hincr(keys::COUNTERS_ENTRIES, "SINGLE_USE", 1)
        .await
        .expect("HINCRBY");
    let id = xadd(&mut conn, "*", &used).await;
    let ev_a = a.next("events").await;
    let latency = sent.elapsed();
    let ev_b = b.next("events").await;
    assert_eq!(ev_a[0]["seq"], id);
    assert_eq!(ev_a, ev_b);
    assert_eq!(
        ev_a.as_array().expect("array").len(),
        1,
        "history is not repeated"
    );
    let c_a = a.next("counters").await;
    let c_b = b.next("counters").await;
    assert_eq!(c_a["entries"]["SINGLE_USE"], 1);
    assert_eq!(c_a, c_b, "both browsers show the same numbers");
    println!(
        "event pushed to the browser {} ms after XADD",
        latency.as_millis()
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_survives_a_redis_restart() {
    let mut server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let alice = login(dash.addr, ALICE).await;
    let mut live = SseClient::open(dash.addr, &alice).await;
    live.next("snapshot").await;
    let mut conn = redis(&server).await;
    let mut ev = Event::new(EventKind::PassDenied, 1);
    ev.card = CardId::new("1").ok();
    let before = xadd(&mut conn, "*", &ev).await;
    assert_eq!(live.next("events").await[0]["seq"], before);
    drop(conn);
    server.restart();
    // The restarted Redis is empty; new events get later ids and must still reach the browser.
    let mut conn = redis(&server).await;
    let after = xadd(&mut conn, "*", &ev).await;
    assert_eq!(live.next("events").await[0]["seq"], after);
    let counters = live.next("counters").await;
    assert_eq!(
        counters["denied"]["no_pass"], 0,
        "counters re-read from the new Redis"
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_ends_with_the_session() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.session_ttl = Duration::from_secs(1);
    let dash = Dashboard::start(cfg).await;
    let me = login(dash.addr, ALICE).await;
    let started = Instant::now();
    let mut live = SseClient::open(dash.addr, &me).await;
    live.next("snapshot").await;
    live.closed().await;
    println!(
        "live stream closed {} ms after opening with a 1 s session",
        started.elapsed().as_millis()
    );
    let again = request(
        dash.addr,
        "GET",
        "/api/live",
        &[("Cookie", &me.cookie_header())],
        b"",
    )
    .await;
    assert_eq!(again.status, 401, "the reconnect is refused");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_blocked_in_lower_case_is_stored_and_shown_canonical() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;
    let r = post_json(
        dash.addr,
        &me,
        "/api/cards/04ab/block",
        r#"{"reason":"lost"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["card"], "04AB");
    let (hash, index) = blocked_state(&mut conn, "04AB").await;
    assert_eq!(hash.get("reason").map(String::as_str), Some("lost"));
    assert_eq!(index.as_deref(), Some("lost"));
    let lower: bool = conn
        .exists("tapgate:card:{04ab}:blocked")
        .await
        .expect("EXISTS");
    assert!(!lower, "no key under the raw spelling");
    let list = get(dash.addr, &me, "/api/blocked").await.json();
    assert_eq!(list[0]["card"], "04AB");
    let card = get(dash.addr, &me, "/api/cards/04aB").await.json();
    assert_eq!(card["card"], "04AB");
    assert_eq!(card["blocked"]["reason"], "lost");
    let again = post_json(
        dash.addr,
        &me,
        "/api/cards/04AB/block",
        r#"{"reason":"lost"}"#,
    )
    .await;
    assert_eq!(again.status, 409, "the same card, whatever its spelling");
    let un = post_json(dash.addr, &me, "/api/cards/04ab/unblock", "").await;
    assert_eq!(un.status, 200, "{}", un.body);
    assert_eq!(un.json()["card"], "04AB");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_says_who_did_what_when_and_from_where() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.public_read_only = true;
    let dash = Dashboard::start(cfg).await;
    let started = tapgate_runtime::clock::now_ms();
    let failed = post_login_from([127, 0, 0, 9], dash.addr, "mal\u{202e}lory", "x", &[]).await;
    assert_eq!(failed.status, 401);
    let wrong = post_login_from([127, 0, 0, 9], dash.addr, ALICE.0, "x", &[]).await;
    assert_eq!(wrong.status, 401);
    let me = login(dash.addr, ALICE).await;
    assert_eq!(
        post_json(
            dash.addr,
            &me,
            "/api/cards/77/block",
            r#"{"reason":"fraud"}"#
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_json(dash.addr, &me, "/api/cards/77/unblock", "")
            .await
            .status,
        200
    );
    let public = request(dash.addr, "GET", "/api/audit", &[], b"").await;
    assert_eq!(public.status, 401, "the public never sees the audit trail");
    let trail = get(dash.addr, &me, "/api/audit").await.json();
    let rows: Vec<(String, String, String)> = trail
        .as_array()
        .expect("records")
        .iter()
        .rev()
        .map(|r| {
            assert!(r["at"].as_u64().expect("at") >= started);
            (
                r["action"].as_str().unwrap_or("").to_owned(),
                r["operator"].as_str().unwrap_or("").to_owned(),
                r["from"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = |a: &str, o: &str, f: &str| (a.to_owned(), o.to_owned(), f.to_owned());
    assert_eq!(
        rows,
        vec![
            expect("failed-login", "mal\\u{202e}lory", "127.0.0.9"),
            expect("failed-login", "alice", "127.0.0.9"),
            expect("login", "alice", "127.0.0.1"),
            expect("block", "alice", "127.0.0.1"),
            expect("unblock", "alice", "127.0.0.1"),
        ]
    );
    assert_eq!(trail[1]["card"], "77");
    assert_eq!(trail[1]["reason"], "fraud");

    // `tail --audit` prints the same, then follows.
    let out = Collected::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (writer, stop) = (out.clone(), shutdown.clone());
    let url = server.url().parse().expect("url");
    let task = tokio::spawn(async move {
        tapgate_monitor::tail::run_audit(&url, 10, false, false, writer, stop).await
    });
    let lines = out.wait_lines(5, Duration::from_secs(10)).await;
    assert!(
        lines[0].ends_with("AUDIT      failed login as \"mal\\u{202e}lory\" from 127.0.0.9"),
        "{lines:?}"
    );
    assert!(
        lines[3].ends_with("AUDIT      block card 77 (fraud) by alice from 127.0.0.1"),
        "{lines:?}"
    );
    let logout = request(
        dash.addr,
        "POST",
        "/logout",
        &[("Cookie", &me.cookie_header()), ("X-CSRF-Token", &me.csrf)],
        b"",
    )
    .await;
    assert_eq!(logout.status, 200);
    let lines = out.wait_lines(6, Duration::from_secs(10)).await;
    assert!(
        lines[5].ends_with("AUDIT      logout alice from 127.0.0.1"),
        "{lines:?}"
    );
    shutdown.cancel();
    task.await.expect("task").expect("tail --audit");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_pushes_device_changes_and_drops_expired_devices() {
    let server = RedisServer::start();
    let mut conn = redis(&server).await;
    let now = tapgate_runtime::clock::now_ms();
    let g1 = DeviceId::new("g1").expect("dev");
    let g2 = DeviceId::new("g2").expect("dev");
    for g in [&g1, &g2] {
        let _: () = redis::pipe()
            .sadd(keys::DEVICES, keys::device_member(DeviceKind::Gate, g))
            .hset_multiple(
                keys::device(DeviceKind::Gate, g),
                &[("online", "1"), ("last_seen", &now.to_string())],
            )
            .query_async(&mut conn)
            .await
            .expect("seed");
    }
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut live = SseClient::open(dash.addr, &me).await;
    let snap = live.next("snapshot").await;
    assert_eq!(snap["devices"].as_array().expect("devices").len(), 2);

    // A tap at g1: only g1's row is pushed.
    let _: () = conn
        .hincr(keys::device_counters(&g1), "granted", 1)
        .await
        .expect("HINCRBY");
    let mut used = Event::new(EventKind::PassUsed, now);
    used.device = Some(g1.clone());
    used.device_kind = Some(DeviceKind::Gate);
    xadd(&mut conn, "*", &used).await;
    let changes = live.next("device-changes").await;
    assert_eq!(
        changes["changed"].as_array().expect("changed").len(),
        1,
        "{changes}"
    );
    assert_eq!(changes["changed"][0]["device"], "g1");
    assert_eq!(changes["changed"][0]["granted"], 1);
    assert_eq!(changes["removed"], serde_json::json!([]));

    // The bridge lets g2's presence expire: the dashboard drops it.
    let _: () = conn
        .del(keys::device(DeviceKind::Gate, &g2))
        .await
        .expect("DEL");
    let started = Instant::now();
    let changes = live.next("device-changes").await;
    assert_eq!(
        changes["removed"],
        serde_json::json!(["gate/g2"]),
        "{changes}"
    );
    assert_eq!(changes["changed"], serde_json::json!([]));
    println!(
        "expired device dropped {} ms after its presence went",
        started.elapsed().as_millis()
    );
    let list = get(dash.addr, &me, "/api/devices").await.json();
    assert_eq!(list.as_array().expect("devices").len(), 1);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_connects_sees_each_device_as_it_is_now() {
    let server = RedisServer::start();
    let mut conn = redis(&server).await;
    let now = tapgate_runtime::clock::now_ms();
    let g1 = DeviceId::new("g1").expect("dev");
    let presence = keys::device(DeviceKind::Gate, &g1);
    let old = now - 10 * 60 * 1000;
    let _: () = redis::pipe()
        .sadd(keys::DEVICES, keys::device_member(DeviceKind::Gate, &g1))
        .hset_multiple(
            &presence,
            &[("online", "1"), ("last_seen", &old.to_string())],
        )
        .query_async(&mut conn)
        .await
        .expect("seed");
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut first = SseClient::open(dash.addr, &me).await;
    let snap = first.next("snapshot").await;
    assert_eq!(snap["devices"][0]["last_seen"], old, "{snap}");
    drop(first);

    // A heartbeat while nobody watches: the next browser's snapshot has it at once, without
    // waiting for the periodic refresh.
    let _: () = conn.hset(&presence, "last_seen", now).await.expect("HSET");
    let mut second = SseClient::open(dash.addr, &me).await;
    let snap = second.next("snapshot").await;
    assert_eq!(snap["devices"][0]["last_seen"], now, "{snap}");
    dash.stop().await;
}
