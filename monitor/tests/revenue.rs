//! `GET /api/revenue` over real HTTP against a real Redis: a service day's totals (takings, of
//! which top-ups and pass sales; fares; revenue recognised), products (named by the fares file,
//! in its order, then products only the counters know) and terminals, amounts in minor units and
//! as text; today's service day by the catalogue's clock and day start; another day on request;
//! clear refusals of a bad day; the same read access as the counters. A fares file the catalogue
//! refuses stops the dashboard with its file and line.

mod support;

use std::sync::Arc;

use redis::AsyncCommands;
use serde_json::json;
use support::*;
use tapgate_monitor::web::{self, ServeError};
use tapgate_protocol::fields::revenue;
use tapgate_protocol::keys;
use tapgate_runtime::clock::ManualClock;
use tapgate_testkit::RedisServer;

/// 2026-03-03 03:30 UTC: still service day 2026-03-02 (days start at 04:00).
const BEFORE_DAWN: u64 = 1_772_508_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_revenue_by_product_and_terminal() {
    let redis = RedisServer::start();
    let (fares, _, _dir) = fares_file();
    let conn = support::redis(&redis).await;
    let seed = |day: &str, fields: Vec<(String, i64)>| {
        let mut conn = conn.clone();
        let key = keys::revenue(day);
        async move {
            let () = conn.hset_multiple(key, &fields).await.expect("seed");
        }
    };
    seed(
        "2026-03-02",
        vec![
            (revenue::SALES.into(), 3),
            (revenue::AMOUNT.into(), 2750),
            (revenue::VOIDS.into(), 1),
            (revenue::VOIDED.into(), 200),
            (revenue::FARES.into(), 4),
            (revenue::FARE_AMOUNT.into(), 700),
            (revenue::product_sales("DAY"), 1),
            (revenue::product_amount("DAY"), 750),
            (revenue::product_sales("TEN_TRIP"), 1),
            (revenue::product_amount("TEN_TRIP"), 1800),
            (revenue::product_sales("SINGLE_USE"), 0),
            (revenue::product_amount("SINGLE_USE"), 0),
            (revenue::product_sales("NIGHT"), 1),
            (revenue::product_amount("NIGHT"), 200),
            (revenue::terminal_sales("t1"), 2),
            (revenue::terminal_amount("t1"), 2550),
            (revenue::terminal_sales("north-hall-2"), 1),
            (revenue::terminal_amount("north-hall-2"), 200),
        ],
    )
    .await;
    seed(
        "2026-03-03",
        vec![(revenue::SALES.into(), 1), (revenue::AMOUNT.into(), 350)],
    )
    .await;
    let mut cfg = config(&redis.url());
    cfg.fares = Some(fares);
    let dash = Dashboard::start_with_clock(cfg, Arc::new(ManualClock::at(BEFORE_DAWN))).await;
    let alice = login(dash.addr, ALICE).await;

    let today = get(dash.addr, &alice, "/api/revenue").await;
    assert_eq!(today.status, 200, "{}", today.body);
    let v = today.json();
    assert_eq!(
        (&v["day"], &v["today"]),
        (&json!("2026-03-02"), &json!(true))
    );
    assert_eq!(v["currency"], "EUR");
    assert_eq!(
        v["totals"],
        json!({"sales": 3, "amount": 2750, "amount_text": "27.50 EUR", "voids": 1,
               "voided": 200, "voided_text": "2.00 EUR",
               "top_ups": 0, "topped_up": 0, "topped_up_text": "0.00 EUR",
               "pass_sales": 3, "pass_amount": 2750, "pass_amount_text": "27.50 EUR",
               "fares": 4, "fare_amount": 700, "fare_amount_text": "7.00 EUR",
               "recognised": 3450, "recognised_text": "34.50 EUR"})
    );
    assert_eq!(v["payg"], false);
    assert_eq!(
        v["products"],
        json!([
            {"id": "TEN_TRIP", "name": "Ten trip", "sales": 1, "amount": 1800, "amount_text": "18.00 EUR"},
            {"id": "TWO_HOUR", "name": "Two hour", "sales": 0, "amount": 0, "amount_text": "0.00 EUR"},
            {"id": "SINGLE_USE", "name": "Single trip", "sales": 0, "amount": 0, "amount_text": "0.00 EUR"},
            {"id": "DAY", "name": "Day pass", "sales": 1, "amount": 750, "amount_text": "7.50 EUR"},
            {"id": "NIGHT", "name": null, "sales": 1, "amount": 200, "amount_text": "2.00 EUR"},
        ])
    );
    assert_eq!(
        v["terminals"],
        json!([
            {"id": "north-hall-2", "name": null, "sales": 1, "amount": 200, "amount_text": "2.00 EUR"},
            {"id": "t1", "name": null, "sales": 2, "amount": 2550, "amount_text": "25.50 EUR"},
        ])
    );

    // Another day on request; a day with no sales is all zeros.
    let next = get(dash.addr, &alice, "/api/revenue?day=2026-03-03")
        .await
        .json();
    assert_eq!(
        (&next["day"], &next["today"]),
        (&json!("2026-03-03"), &json!(false))
    );
    assert_eq!(next["totals"]["amount_text"], "3.50 EUR");
    let empty = get(dash.addr, &alice, "/api/revenue?day=2025-12-31")
        .await
        .json();
    assert_eq!(empty["totals"]["sales"], 0);
    assert_eq!(empty["terminals"], json!([]));

    // A day that is not a date, or a parameter that is not `day`: 400, saying what is wanted.
    for bad in [
        "day=2026-02-30",
        "day=yesterday",
        "day=2026-3-1",
        "day=2026-03-01T00:00",
        "day=",
    ] {
        let r = get(dash.addr, &alice, &format!("/api/revenue?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        let e = r.json();
        assert_eq!(e["error"], "bad_request", "{bad}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("YYYY-MM-DD")),
            "{bad}: {e}"
        );
    }
    let r = get(dash.addr, &alice, "/api/revenue?date=2026-03-02").await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Read like the counters: a login, or the public view when it is on.
    let anon = request(dash.addr, "GET", "/api/revenue", &[], b"").await;
    assert_eq!(anon.status, 401, "{}", anon.body);
    dash.stop().await;
    let mut public = config(&redis.url());
    public.public_read_only = true;
    let dash = Dashboard::start(public).await;
    let r = request(dash.addr, "GET", "/api/revenue?day=2026-03-02", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without a fares file, products are the built-in catalogue's (names, no prices).
    let v = r.json();
    assert_eq!(v["totals"]["amount"], 2750);
    assert_eq!(v["products"][0]["name"], "Single trip");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_fares_file_stops_the_dashboard_saying_where() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let fares = dir.path().join("fares.toml");
    std::fs::write(
        &fares,
        "currency = \"EUR\"\ntime_zone = \"UTC\"\n\n[[product]]\nid = \"DAY\"\nname = \"Day\"\nprice = -5\nvalidity = \"service_day\"\n",
    )
    .expect("write");
    let mut cfg = config(&redis.url());
    cfg.fares = Some(fares.clone());
    let err = match web::start(cfg, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("the dashboard started with a bad fares file"),
        Err(e) => e,
    };
    assert!(matches!(err, ServeError::Fares(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}:7: product[1].price", fares.display())),
        "{text}"
    );

    let mut cfg = config(&redis.url());
    cfg.fares = Some(dir.path().join("missing.toml"));
    let err = web::start(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("missing.toml:1: file: cannot read it"),
        "{err}"
    );
}
