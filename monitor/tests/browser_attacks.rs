//! Forged entries in the event stream, shown in real headless Chromium (via chromedriver).
//!
//! Whoever holds the bridge's Redis credential can `XADD` anything to the stream and write the
//! card and revenue hashes the dashboard reads. These tests write entries as such an attacker
//! would, straight into a real Redis, with markup and script in every text field the dashboard
//! shows (device, card, event, reason, detail, pass, a blocked card's reason and operator, product
//! and terminal ids of the day's revenue), very long text and control characters, and check in
//! the browser that nothing runs (no alert, no marker set on `window`, no element made from the
//! text) and that the text is shown as text (long text cut, control and bidi characters escaped),
//! on the live feed, after a reload, in the card lookup, the deny list and the revenue view.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`);
//! without them the test fails saying so.

mod browser_support;
mod support;

use browser_support::{click, log_in, wait_text, Driver};
use fantoccini::{Client, Locator};
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use serde_json::json;
use support::{config, Dashboard, ALICE};
use tapgate_protocol::fields::{blocked, revenue};
use tapgate_protocol::keys::{self, EVENTS_STREAM};
use tapgate_protocol::stream::{CARD, DETAIL, DEVICE, DEVICE_KIND, EVENT, PASS, REASON, TIME};
use tapgate_protocol::CardId;
use tapgate_testkit::RedisServer;

/// Each payload, if it ever ran, sets `window.__pwned` (and the alert ones open an alert).
const IMG: &str = r#"<img src=x onerror="window.__pwned='img';alert(1)">"#;
const SCRIPT: &str = r#"</script><script>window.__pwned='script';alert(2)</script>"#;
const SVG: &str =
    r#"<svg onload="window.__pwned='svg'"><a href="javascript:window.__pwned='a'">go</a></svg>"#;
const JS_URL: &str = "javascript:window.__pwned='url';alert(3)//";
const CONTROL: &str = "ctl\u{0}\u{7}\u{1b}[2J\u{202e}gpj.exe\u{2066}end";
/// The card the forged entries name (a valid id, so they reach its lookup).
const CARD_ID: &str = "04C0FFEE";

/// Appends `fields` to the stream as a raw `XADD`, as a stolen bridge credential could.
async fn forge(conn: &mut MultiplexedConnection, fields: &[(&str, String)]) -> String {
    redis::cmd("XADD")
        .arg(EVENTS_STREAM)
        .arg("*")
        .arg(fields)
        .query_async(conn)
        .await
        .expect("XADD")
}

fn now_ms() -> u64 {
    tapgate_runtime::clock::Clock::now_ms(&tapgate_runtime::clock::SystemClock)
}

/// Nothing the payloads carry ran in `c`, and no element was made from them.
async fn nothing_ran(c: &Client, where_: &str) {
    assert!(
        c.get_alert_text().await.is_err(),
        "{where_}: an alert is open"
    );
    let marker = c
        .execute(
            "return window.__pwned === undefined ? null : String(window.__pwned);",
            vec![],
        )
        .await
        .expect("read marker");
    assert_eq!(marker, json!(null), "{where_}: a payload ran");
    let made = c
        .execute(
            "return Array.from(document.querySelectorAll(\
             '#feed *, #card-result *, #blocked-body *, #revenue-products *, #revenue-terminals *, #audit-body *'))\
             .filter(e => ['IMG', 'SCRIPT', 'A', 'IFRAME', 'OBJECT', 'EMBED'].includes(e.tagName)\
             || e.namespaceURI !== 'http://www.w3.org/1999/xhtml'\
             || Array.from(e.attributes).some(a => a.name.startsWith('on') || a.name === 'href'))\
             .map(e => e.outerHTML.slice(0, 200));",
            vec![],
        )
        .await
        .expect("query elements");
    assert_eq!(made, json!([]), "{where_}: elements made from stream text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stream_entries_show_as_text_and_run_nothing() {
    let redis = RedisServer::start();
    let (fares, catalogue, _fares_dir) = support::fares_file();
    let mut conn = support::redis(&redis).await;
    let mut dash_config = config(&redis.url());
    dash_config.fares = Some(fares);
    let dash = Dashboard::start(dash_config).await;
    let driver = Driver::start();
    let profiles = tempfile::tempdir().expect("profiles");
    let c = driver.browser(&profiles.path().join("a")).await;
    log_in(&c, &dash, ALICE).await;

    // Entries the dashboard can read, with hostile free text.
    let now = now_ms();
    let long = format!("{IMG}{}", "A".repeat(50_000));
    let rejected = forge(
        &mut conn,
        &[
            (EVENT, "rejected".into()),
            (TIME, now.to_string()),
            (DEVICE, "g1".into()),
            (DEVICE_KIND, "gate".into()),
            (CARD, CARD_ID.into()),
            (REASON, IMG.into()),
            (DETAIL, SCRIPT.into()),
        ],
    )
    .await;
    let denied = forge(
        &mut conn,
        &[
            (EVENT, "pass-denied".into()),
            (TIME, now.to_string()),
            (DEVICE, "g1".into()),
            (DEVICE_KIND, "gate".into()),
            (CARD, CARD_ID.into()),
            (REASON, SVG.into()),
        ],
    )
    .await;
    let blocked_ev = forge(
        &mut conn,
        &[
            (EVENT, "card-blocked".into()),
            (TIME, now.to_string()),
            (CARD, CARD_ID.into()),
            (REASON, JS_URL.into()),
            (DETAIL, CONTROL.into()),
        ],
    )
    .await;
    let long_ev = forge(
        &mut conn,
        &[
            (EVENT, "rejected".into()),
            (TIME, now.to_string()),
            (DEVICE, "g2".into()),
            (DEVICE_KIND, "gate".into()),
            (REASON, long.clone()),
            (DETAIL, CONTROL.into()),
        ],
    )
    .await;
    // Entries that break the contract: markup where ids and names belong.
    let unreadable = forge(
        &mut conn,
        &[
            (EVENT, SCRIPT.into()),
            (TIME, now.to_string()),
            (DEVICE, IMG.into()),
            (DEVICE_KIND, SVG.into()),
            (CARD, JS_URL.into()),
            (PASS, IMG.into()),
            (IMG, SCRIPT.into()),
        ],
    )
    .await;
    let bad_device = forge(
        &mut conn,
        &[
            (EVENT, "pass-used".into()),
            (TIME, now.to_string()),
            (DEVICE, IMG.into()),
            (DEVICE_KIND, "gate".into()),
            (CARD, CARD_ID.into()),
            (PASS, SCRIPT.into()),
        ],
    )
    .await;
    let feed_items = 6;
    let feed_text = wait_text(&c, "#feed", |t| {
        t.lines().filter(|l| !l.trim().is_empty()).count() >= feed_items && t.contains("unreadable")
    })
    .await;
    nothing_ran(&c, "live feed").await;
    for shown in [IMG, SCRIPT, SVG] {
        assert!(
            feed_text.contains(shown),
            "{shown} shown as text on the live feed: {}",
            &feed_text[..feed_text.len().min(2000)]
        );
    }

    // The card's lookup: its recent list holds the forged entries, and its deny-list entry a
    // forged reason and operator.
    let card = CardId::new(CARD_ID).expect("card");
    let recent: Vec<&str> = vec![&bad_device, &unreadable, &blocked_ev, &denied, &rejected];
    let _: i64 = conn
        .lpush(keys::card_recent(&card), recent)
        .await
        .expect("recent");
    let _: i64 = conn
        .lpush(keys::card_recent(&card), &long_ev)
        .await
        .expect("recent");
    let _: () = conn
        .hset_multiple(
            keys::blocked(&card),
            &[
                (blocked::REASON, IMG.to_owned()),
                (blocked::BY, SCRIPT.to_owned()),
                (blocked::AT, now.to_string()),
            ],
        )
        .await
        .expect("blocked");
    let _: () = conn
        .hset(keys::BLOCKED_INDEX, CARD_ID, SVG)
        .await
        .expect("blocked index");
    let input = c
        .find(Locator::Css("#card-input"))
        .await
        .expect("card input");
    input.clear().await.expect("clear");
    input.send_keys(CARD_ID).await.expect("type card");
    click(&c, "#card-lookup").await;
    let details = wait_text(&c, "#card-result", |t| t.contains(CARD_ID)).await;
    assert!(
        details.contains(IMG) && details.contains(SCRIPT),
        "the forged block shown as text: {details}"
    );
    nothing_ran(&c, "card lookup").await;

    // The day's revenue with forged product and terminal fields.
    let today = catalogue.service_day(now).label();
    let key = keys::revenue(&today);
    let fields: Vec<(String, i64)> = vec![
        (revenue::SALES.into(), 2),
        (revenue::AMOUNT.into(), 950),
        (revenue::product_sales("DAY"), 1),
        (revenue::product_amount("DAY"), 750),
        (revenue::product_sales(IMG), 1),
        (revenue::product_amount(SCRIPT), 200),
        (revenue::terminal_sales("t1"), 1),
        (revenue::terminal_amount("t1"), 750),
        (revenue::terminal_sales(SVG), 1),
        (revenue::terminal_amount(IMG), 200),
    ];
    let () = conn.hset_multiple(&key, &fields).await.expect("revenue");
    // A sale on the feed makes the page read the revenue again.
    let mut sale = support::sale(now);
    sale.card = CardId::new("04AB").ok();
    support::xadd(&mut conn, "*", &sale).await;
    wait_text(&c, "#revenue-total", |t| t == "9.50 EUR").await;
    let products = wait_text(&c, "#revenue-products", |t| t.contains("Day pass")).await;
    let terminals = wait_text(&c, "#revenue-terminals", |t| t.contains("t1")).await;
    for (what, text) in [("products", &products), ("terminals", &terminals)] {
        assert!(
            !text.contains('<'),
            "forged {what} are not listed as ids: {text}"
        );
    }
    nothing_ran(&c, "revenue").await;

    // The same entries read from history after a reload.
    c.refresh().await.expect("reload");
    wait_text(&c, "#live-status", |t| t == "live").await;
    let history = wait_text(&c, "#feed", |t| t.contains("unreadable") && t.contains(IMG)).await;
    assert!(
        history.contains(SVG),
        "history shows the text: {history:.2000}"
    );
    // The deny list, read at start, names the forged card with its forged reason as text.
    let deny = wait_text(&c, "#blocked-body", |t| t.contains(CARD_ID)).await;
    assert!(deny.contains(SCRIPT), "the forged operator as text: {deny}");
    // 50 KB of text is cut to a line; control and bidi characters are shown escaped, never
    // written to the page.
    let long_line = history
        .lines()
        .find(|l| l.contains("AAAA"))
        .expect("the long entry is shown");
    assert!(long_line.len() < 2_000, "cut: {} bytes", long_line.len());
    assert!(
        history.contains(r"ctl\u{0}\u{7}\u{1b}[2J\u{202e}gpj.exe\u{2066}end"),
        "control characters shown escaped: {history:.2000}"
    );
    let raw: Vec<char> = history
        .chars()
        .filter(|ch| {
            (ch.is_control() && *ch != '\n')
                || ('\u{202a}'..='\u{202e}').contains(ch)
                || ('\u{2066}'..='\u{2069}').contains(ch)
        })
        .collect();
    assert!(
        raw.is_empty(),
        "raw control characters on the page: {raw:?}"
    );
    nothing_ran(&c, "deny list").await;
    nothing_ran(&c, "after a reload").await;

    c.close().await.expect("close");
    dash.stop().await;
}
