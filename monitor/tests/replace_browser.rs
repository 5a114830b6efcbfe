//! Replacing a lost card in real headless Chromium (via chromedriver), against a real Redis:
//! the card lookup shows the balance and this service day's and week's charges against the caps,
//! the Replace control asks for the new card and a confirming second click (which names the new
//! card again if it was changed in between), and afterwards the
//! lookup shows the new card holding the balance, the old one blocked `replaced` with no Unblock
//! offered, and the audit trail names both cards.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`);
//! without them the test fails saying so.

mod browser_support;
mod support;

use browser_support::{click, log_in, wait_text, Driver};
use fantoccini::{Client, Locator};
use redis::AsyncCommands;
use serde_json::json;
use support::{config, Dashboard, ALICE};
use tapgate_protocol::fields::wallet;
use tapgate_protocol::{keys, CardId};
use tapgate_testkit::RedisServer;

/// A catalogue with pay as you go: fare 2.50, capped at 7.00 a day and 30.00 a week.
const PAYG_FARES: &str = r#"
currency = "EUR"
time_zone = "UTC"

[payg]
fare = 250
daily_cap = 700
weekly_cap = 3000

[[product]]
id = "TOPUP_10"
name = "Top up 10.00"
price = 1000
validity = "top_up"
"#;

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.expect("clear");
    e.send_keys(text).await.expect("type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_balance_and_replaces_a_lost_card() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("fares dir");
    let fares = dir.path().join("fares.toml");
    std::fs::write(&fares, PAYG_FARES).expect("write fares");
    let catalogue = tapgate_protocol::Catalogue::load(&fares).expect("fares");
    let now = tapgate_runtime::clock::Clock::now_ms(&tapgate_runtime::clock::SystemClock);
    let fare_day = catalogue.fare_day(now);
    let (day, week) = (fare_day.day.to_string(), fare_day.week.to_string());
    // The lost card as the bridge leaves it: 20.00 topped up, capped today (7.00), 12.00 this
    // week.
    let mut conn = support::redis(&redis).await;
    let lost = CardId::new("0AA1").expect("card");
    let () = conn
        .hset_multiple(
            keys::wallet(&lost),
            &[
                (wallet::BALANCE.to_owned(), "800".to_owned()),
                (wallet::TOPPED_UP.to_owned(), "2000".to_owned()),
                (wallet::CHARGED.to_owned(), "1200".to_owned()),
                (wallet::CURRENCY.to_owned(), "EUR".to_owned()),
                (wallet::day(&day), "700".to_owned()),
                (wallet::week(&week), "1200".to_owned()),
            ],
        )
        .await
        .expect("seed wallet");
    let mut cfg = config(&redis.url());
    cfg.fares = Some(fares);
    let dash = Dashboard::start(cfg).await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile");
    let a = driver.browser(profile.path()).await;
    log_in(&a, &dash, ALICE).await;

    type_into(&a, "#card-input", "0aa1").await;
    click(&a, "#card-lookup").await;
    let details = wait_text(&a, "#card-details", |t| t.contains("Balance")).await;
    for words in [
        "8.00 EUR",
        "7.00 EUR of 7.00 EUR cap",
        "12.00 EUR of 30.00 EUR cap",
        "free (capped)",
    ] {
        assert!(details.contains(words), "{words:?} in {details}");
    }

    // The first click names both cards; only the second replaces.
    type_into(&a, "#replace-input", "0bb1").await;
    click(&a, "#replace-btn").await;
    wait_text(&a, "#replace-btn", |t| {
        t == "Confirm: move to 0BB1 and block 0AA1"
    })
    .await;
    // Another card typed after the first click is named again, not replaced into.
    type_into(&a, "#replace-input", "0cc1").await;
    click(&a, "#replace-btn").await;
    wait_text(&a, "#replace-btn", |t| {
        t == "Confirm: move to 0CC1 and block 0AA1"
    })
    .await;
    type_into(&a, "#replace-input", "0bb1").await;
    click(&a, "#replace-btn").await;
    wait_text(&a, "#replace-btn", |t| {
        t == "Confirm: move to 0BB1 and block 0AA1"
    })
    .await;
    let untouched: bool = conn.exists(keys::wallet(&lost)).await.expect("EXISTS");
    assert!(untouched, "no click replaced anything yet");
    click(&a, "#replace-btn").await;
    wait_text(&a, "#card-message", |t| {
        t == "Card 0AA1 replaced by 0BB1; 0AA1 is blocked."
    })
    .await;
    let details = wait_text(&a, "#card-details", |t| t.contains("0BB1")).await;
    assert!(details.contains("8.00 EUR"), "{details}");
    wait_text(&a, "#audit-body", |t| {
        t.contains("replaced a card") && t.contains("card 0AA1 by 0BB1")
    })
    .await;

    // The old card: blocked `replaced`, no balance, and neither Unblock nor Replace offered.
    type_into(&a, "#card-input", "0AA1").await;
    click(&a, "#card-lookup").await;
    let details = wait_text(&a, "#card-details", |t| t.contains("replaced by alice")).await;
    assert!(!details.contains("Balance"), "{details}");
    let hidden = a
        .execute(
            "return [document.getElementById('unblock-btn').hidden, \
             document.getElementById('replace-controls').hidden];",
            vec![],
        )
        .await
        .expect("hidden");
    assert_eq!(hidden, json!([true, true]));
    a.close().await.expect("close browser");
    dash.stop().await;
}
