//! Replacing a lost card in real headless Chromium (via chromedriver), against a real Redis:
//! the card lookup shows the balance and this service day's and week's charges against the caps,
//! the Replace control asks for the new card and a confirming second click (which names the new
//! card again if it was changed in between), and afterwards the
//! lookup shows the new card holding the balance, the old one blocked `replaced` with no Unblock
//! offered, and the audit trail names both cards.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`);
//! without them the test fails saying so.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use redis::AsyncCommands;
use serde_json::{json, Value};
use support::{config, Dashboard, ALICE};
use tapgate_protocol::fields::wallet;
use tapgate_protocol::{keys, CardId};
use tapgate_testkit::{free_port, RedisServer};

const WAIT: Duration = Duration::from_secs(10);

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

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([
        PathBuf::from("/usr/bin"),
        PathBuf::from("/usr/lib/chromium"),
    ]) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        let bin = find(&["chromedriver"]).unwrap_or_else(|| {
            panic!("`chromedriver` is not installed: this test drives real Chromium. Install it with `apt-get install -y chromium chromium-driver`.")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// A new browser with its own fresh profile.
    async fn browser(&self, profile: &std::path::Path) -> Client {
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
            panic!("`chromium` is not installed: install it with `apt-get install -y chromium chromium-driver`.")
        });
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1440,1300", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Chromium through chromedriver: {e}\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the text of `css` satisfies `ok`; returns it.
async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
        }
        if Instant::now() >= deadline {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let source = c.source().await.unwrap_or_default();
            panic!("`{css}` never matched; last text: {last:?}\nat {url}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the element `css` names.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn log_in(c: &Client, dash: &Dashboard, who: (&str, &str)) {
    c.goto(&dash.url("/")).await.expect("open dashboard");
    let url = c.current_url().await.expect("url");
    assert_eq!(
        url.path(),
        "/login",
        "not logged in: sent to the login page"
    );
    c.find(Locator::Css("#name"))
        .await
        .expect("name field")
        .send_keys(who.0)
        .await
        .expect("type name");
    c.find(Locator::Css("#password"))
        .await
        .expect("password field")
        .send_keys(who.1)
        .await
        .expect("type password");
    click(c, "#login-submit").await;
    wait_text(c, "#live-status", |t| t == "live").await;
    wait_text(c, "#operator", |t| t.contains(who.0)).await;
}

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
