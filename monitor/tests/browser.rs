//! The dashboard in real headless Chromium (via chromedriver), against a real Redis, a real
//! mosquitto and the real bridge selling from a fares file: two operators watch the same counters
//! change live as devices tap over MQTT, a sale shows its product and price in the feed, one
//! blocks a card and the next tap at the gate is denied, a device's hostile text shows as text, a
//! pass that counts no trips shows no trip count, a gate whose heartbeats are late but whose taps
//! are being decided shows online, and logging out ends the session. Saves a screenshot of the
//! dashboard (to `docs/dashboard.png` with `TAPGATE_UPDATE_SCREENSHOT=1`).
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`);
//! without them the test fails saying so.

mod browser_support;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser_support::{click, log_in, wait_text, Driver, WAIT};
use fantoccini::Locator;
use serde_json::{json, Value};
use support::{config, Dashboard, ALICE, BOB, FARES};
use tapgate_bridge::BridgeConfig;
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::{Mosquitto, MqttProbe, RedisServer};
use tokio_util::sync::CancellationToken;

/// A simulated device on the broker.
struct Device {
    probe: MqttProbe,
    kind: DeviceKind,
    id: DeviceId,
    topics: Topics,
    n: u32,
}

impl Device {
    async fn connect(port: u16, kind: DeviceKind, id: &str) -> Self {
        let probe = MqttProbe::connect(port, id).await;
        let id = DeviceId::new(id).expect("device id");
        let topics = Topics::default();
        probe.subscribe(&topics.decision(kind, &id)).await;
        probe
            .publish_retained(&topics.status(kind, &id), "online")
            .await;
        Self {
            probe,
            kind,
            id,
            topics,
            n: 0,
        }
    }

    async fn send(&mut self, topic: String, payload: String) -> Value {
        self.probe.publish(&topic, payload).await;
        let decision = self.topics.decision(self.kind, &self.id);
        self.probe.expect_on(&decision, WAIT).await.json()
    }

    async fn tap(&mut self, card: &str) -> Value {
        self.n += 1;
        let payload = json!({"id": format!("{}-{}", self.id, self.n), "card": card}).to_string();
        let topic = self.topics.tap(self.kind, &self.id);
        self.send(topic, payload).await
    }

    async fn button(&mut self, pass: &str) -> Value {
        self.n += 1;
        let payload = json!({"id": format!("{}-{}", self.id, self.n), "pass": pass}).to_string();
        let topic = self.topics.button(&self.id);
        self.send(topic, payload).await
    }
}

async fn buy(t: &mut Device, card: &str, pass: &str) {
    assert_eq!(t.tap(card).await["outcome"], "select_pass");
    assert_eq!(t.button(pass).await["outcome"], "tap_to_confirm");
    assert_eq!(t.tap(card).await["outcome"], "pass_issued");
}

/// Where the dashboard screenshot goes: `docs/dashboard.png` when `TAPGATE_UPDATE_SCREENSHOT=1`
/// (so ordinary test runs leave the working tree alone), else the temp folder.
fn screenshot_path() -> PathBuf {
    if std::env::var_os("TAPGATE_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png")
    } else {
        std::env::temp_dir().join("tapgate-dashboard.png")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_watch_live_block_a_card_and_log_out() {
    let redis = RedisServer::start();
    let broker = Mosquitto::start();
    let fares_dir = tempfile::tempdir().expect("fares dir");
    let fares = fares_dir.path().join("fares.toml");
    std::fs::write(&fares, FARES).expect("write fares");
    let bridge_stop = CancellationToken::new();
    let bridge = tapgate_bridge::start(
        BridgeConfig {
            redis: redis.url().parse().expect("redis url"),
            broker: BrokerConfig::url(broker.url()),
            client_id: format!("bridge-{}", broker.port()),
            fares: Some(fares.clone()),
            ..BridgeConfig::default()
        },
        bridge_stop.clone(),
    )
    .await
    .expect("bridge starts");
    let mut dash_config = config(&redis.url());
    dash_config.fares = Some(fares);
    let dash = Dashboard::start(dash_config).await;
    let driver = Driver::start();
    let profiles = tempfile::tempdir().expect("profiles");
    let a = driver.browser(&profiles.path().join("a")).await;
    let b = driver.browser(&profiles.path().join("b")).await;

    log_in(&a, &dash, ALICE).await;
    log_in(&b, &dash, BOB).await;
    for c in [&a, &b] {
        wait_text(c, "#entries-total", |t| t == "0").await;
    }

    let mut t1 = Device::connect(broker.port(), DeviceKind::Terminal, "t1").await;
    let mut g1 = Device::connect(broker.port(), DeviceKind::Gate, "g1").await;
    let mut g2 = Device::connect(broker.port(), DeviceKind::Gate, "g2").await;

    // A sale at the terminal shows up in both browsers, with its product and price.
    buy(&mut t1, "0412AB", "TEN_TRIP").await;
    for c in [&a, &b] {
        wait_text(c, "#issued-total", |t| t == "1").await;
        wait_text(c, "[data-counter='issued.TEN_TRIP']", |t| {
            t.contains("TEN_TRIP") && t.ends_with('1')
        })
        .await;
        wait_text(c, "#feed li:first-child", |t| {
            t.contains("ISSUED") && t.contains("TEN_TRIP pass for card 0412AB")
        })
        .await;
        wait_text(c, "#feed li:first-child .price", |t| t == "18.00 EUR").await;
        // The day's revenue follows the sale, named by the fares file.
        wait_text(c, "#revenue-total", |t| t == "18.00 EUR").await;
        wait_text(c, "#revenue-products tr[data-row='TEN_TRIP']", |t| {
            t.contains("Ten trip") && t.contains("18.00 EUR")
        })
        .await;
        wait_text(c, "#revenue-terminals", |t| {
            t.contains("t1") && t.contains("18.00 EUR")
        })
        .await;
    }

    // An entry: both browsers show the same new count, pushed (the page never polls).
    let sent = Instant::now();
    let d = g1.tap("0412AB").await;
    assert_eq!(d["outcome"], "granted");
    wait_text(&a, "#entries-total", |t| t == "1").await;
    println!(
        "entry visible in the browser {} ms after the tap was published",
        sent.elapsed().as_millis()
    );
    wait_text(&b, "#entries-total", |t| t == "1").await;
    for c in [&a, &b] {
        wait_text(c, "#feed li:first-child", |t| {
            t.contains("ENTRY") && t.contains("TEN_TRIP pass, 9 trips remaining")
        })
        .await;
    }

    // More traffic for the charts and the screenshot.
    buy(&mut t1, "77F0", "TWO_HOUR").await;
    buy(&mut t1, "5150", "SINGLE_USE").await;
    // A product only the fares file knows is sold and shown like any other.
    buy(&mut t1, "D4", "DAY").await;
    for c in [&a, &b] {
        wait_text(c, "#feed li:first-child", |t| {
            t.contains("ISSUED") && t.contains("DAY pass for card D4") && t.contains("7.50 EUR")
        })
        .await;
    }
    assert_eq!(g2.tap("77F0").await["outcome"], "granted");
    assert_eq!(g2.tap("5150").await["outcome"], "granted");
    assert_eq!(g2.tap("5150").await["outcome"], "denied");
    assert_eq!(g1.tap("9999").await["outcome"], "denied");
    for c in [&a, &b] {
        wait_text(c, "#entries-total", |t| t == "3").await;
        wait_text(c, "#denied-total", |t| t == "2").await;
        wait_text(c, "#revenue-total", |t| t == "31.00 EUR").await;
    }

    // Alice looks the card up and blocks it; Bob's deny list updates live.
    let controls = a
        .find(Locator::Css("#block-controls"))
        .await
        .expect("controls");
    assert!(
        !controls.is_displayed().await.expect("displayed"),
        "no block buttons before a card is looked up"
    );
    a.find(Locator::Css("#card-input"))
        .await
        .expect("card input")
        .send_keys("0412AB")
        .await
        .expect("type card");
    click(&a, "#card-lookup").await;
    let details = wait_text(&a, "#card-details", |t| {
        t.contains("TEN_TRIP") && t.contains("Trips left")
    })
    .await;
    assert!(details.contains("Trips left\n9"), "{details:?}");
    assert!(controls.is_displayed().await.expect("displayed"));
    a.find(Locator::Css("#block-reason"))
        .await
        .expect("reason")
        .select_by_value("stolen")
        .await
        .expect("select");
    click(&a, "#block-btn").await;
    wait_text(&a, "#card-message", |t| t.contains("blocked")).await;
    wait_text(&b, "#blocked-body", |t| {
        t.contains("0412AB") && t.contains("stolen")
    })
    .await;
    // Both operators see who did it in the audit trail.
    wait_text(&b, "#audit-body", |t| {
        t.contains("blocked") && t.contains("alice") && t.contains("card 0412AB (stolen)")
    })
    .await;

    // The next tap of that card is denied by the bridge, and both browsers see it.
    let d = g1.tap("0412AB").await;
    assert_eq!(d["outcome"], "denied");
    assert_eq!(d["reason"], "blocked");
    for c in [&a, &b] {
        wait_text(c, "[data-counter='denied.blocked'] b", |t| t == "1").await;
        wait_text(c, "#feed li:first-child", |t| {
            t.contains("DENIED") && t.contains("0412AB") && t.contains("blocked")
        })
        .await;
    }

    // The day pass was sold in error: Alice sees its sale in the lookup and voids it (two
    // clicks); the pass is gone, both feeds show the void, revenue drops by its price, and Bob
    // sees who did it.
    let input = a
        .find(Locator::Css("#card-input"))
        .await
        .expect("card input");
    input.clear().await.expect("clear");
    input.send_keys("D4").await.expect("type card");
    click(&a, "#card-lookup").await;
    let details = wait_text(&a, "#card-details", |t| t.contains("DAY")).await;
    assert!(details.contains("Price\n7.50 EUR"), "{details:?}");
    assert!(details.contains(" at t1"), "{details:?}");
    wait_text(&a, "#void-note", |t| t.starts_with("possible until")).await;
    click(&a, "#void-btn").await;
    wait_text(&a, "#void-btn", |t| t == "Confirm: void 7.50 EUR sale").await;
    click(&a, "#void-btn").await;
    wait_text(&a, "#card-message", |t| {
        t == "Sale voided: DAY for 7.50 EUR on card D4."
    })
    .await;
    wait_text(&a, "#card-details", |t| t.contains("Pass\nnone")).await;
    for c in [&a, &b] {
        wait_text(c, "#feed li:first-child", |t| {
            t.contains("VOIDED") && t.contains("D4") && t.contains("alice")
        })
        .await;
        wait_text(c, "#revenue-total", |t| t == "23.50 EUR").await;
        wait_text(c, "#revenue-summary", |t| {
            t == "3 sales · 1 voided (7.50 EUR)"
        })
        .await;
    }
    wait_text(&b, "#audit-body", |t| {
        t.contains("voided a sale") && t.contains("card D4 · DAY 7.50 EUR")
    })
    .await;

    // A device sends markup; it is shown as text, never run or parsed.
    let xss = "<img src=x onerror=alert(1)>";
    g1.n += 1;
    let payload = format!(r#"{{"id":"g1-x","card":"1","{xss}":1}}"#);
    let topic = g1.topics.tap(DeviceKind::Gate, &g1.id);
    let d = g1.send(topic, payload).await;
    assert_eq!(d["outcome"], "rejected");
    for c in [&a, &b] {
        let text = wait_text(c, "#feed li:first-child", |t| t.contains("REJECTED")).await;
        assert!(text.contains(xss), "markup shown as text: {text:?}");
        let imgs = c.find_all(Locator::Css("#feed img")).await.expect("find");
        assert!(imgs.is_empty(), "device markup became an element");
    }

    // Device table and gate chart.
    wait_text(&a, "#devices-body", |t| {
        t.contains("gate g1") && t.contains("online")
    })
    .await;
    wait_text(&a, "#devices-summary", |t| t == "3 of 3 online").await;

    let png = a.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_path();
    std::fs::write(&path, &png).expect("write the screenshot");
    println!("dashboard screenshot: {}", path.display());

    // A period pass counts no trips: the lookup shows its time, never "Trips left".
    let input = a
        .find(Locator::Css("#card-input"))
        .await
        .expect("card input");
    input.clear().await.expect("clear");
    input.send_keys("77F0").await.expect("type card");
    click(&a, "#card-lookup").await;
    let details = wait_text(&a, "#card-details", |t| {
        t.contains("77F0") && t.contains("TWO_HOUR")
    })
    .await;
    assert!(
        details.contains("Time left"),
        "an activated period pass shows its time: {details:?}"
    );
    assert!(
        !details.contains("Trips left"),
        "a period pass shows no trip count: {details:?}"
    );

    // A gate whose last heartbeat is long past turns "silent"; as soon as its taps are being
    // decided it shows online again, with a fresh "last seen".
    let mut g3 = Device::connect(broker.port(), DeviceKind::Gate, "g3").await;
    let row = "tr[data-device='gate/g3']";
    wait_text(&a, row, |t| t.contains("online")).await;
    let long_ago = tapgate_runtime::clock::now_ms() - 10 * 60 * 1000;
    let mut conn = support::redis(&redis).await;
    let () = redis::cmd("HSET")
        .arg(tapgate_protocol::keys::device(DeviceKind::Gate, &g3.id))
        .arg("last_seen")
        .arg(long_ago)
        .query_async(&mut conn)
        .await
        .expect("HSET last_seen");
    let t = wait_text(&a, row, |t| t.contains("silent")).await;
    assert!(t.contains("10m ago"), "last seen 10 minutes ago: {t:?}");
    assert_eq!(g3.tap("9999").await["outcome"], "denied");
    let t = wait_text(&a, row, |t| t.contains("online")).await;
    assert!(
        t.contains("s ago") && !t.contains("m ago"),
        "last seen at its tap: {t:?}"
    );

    // A long device name: one line in the device table (cut, full name on hover), and an
    // ellipsis in the gate chart with the full name in its tooltip.
    let long = "north-concourse-entrance-gate-12";
    let mut north = Device::connect(broker.port(), DeviceKind::Gate, long).await;
    assert_eq!(north.tap("9999").await["outcome"], "denied");
    let row = format!("tr[data-device='gate/{long}']");
    wait_text(&a, &row, |t| t.contains("online")).await;
    let shape = a
        .execute(
            "const r = document.querySelector(arguments[0]);
             const name = r.querySelector('td.device-name');
             const line = parseFloat(getComputedStyle(r.querySelector('td')).lineHeight);
             return [r.getBoundingClientRect().height, line, name.title];",
            vec![json!(row)],
        )
        .await
        .expect("row shape");
    let (height, line) = (
        shape[0].as_f64().unwrap_or(f64::MAX),
        shape[1].as_f64().unwrap_or(0.0),
    );
    assert!(
        height < 2.0 * line + 12.0,
        "the row stays on one line: {height}px with {line}px lines"
    );
    assert_eq!(shape[2], format!("gate {long}"), "full name on hover");
    let names = a
        .execute(
            "return Array.from(document.querySelectorAll('#gates-chart text.gate-name'))
               .map((t) => [t.firstChild.nodeValue, t.querySelector('title').textContent]);",
            vec![],
        )
        .await
        .expect("gate names");
    let cut = names
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n[1].as_str().is_some_and(|t| t.contains(long)))
        .unwrap_or_else(|| panic!("no gate chart label for {long}: {names}"));
    let shown = cut[0].as_str().unwrap_or_default();
    assert!(
        shown.ends_with('\u{2026}') && long.starts_with(shown.trim_end_matches('\u{2026}')),
        "the chart cuts the name with an ellipsis: {shown:?}"
    );

    // On a phone-sized window the charts are redrawn at their width, so axis text keeps its
    // size instead of shrinking with the picture.
    a.set_window_size(420, 1300).await.expect("narrow window");
    // Nothing is wider than the window: the revenue tables wrap rather than overflow.
    let deadline = Instant::now() + WAIT;
    loop {
        let widths = a
            .execute(
                "const r = document.querySelector('#revenue-card');
                 const wide = Array.from(document.querySelectorAll('body *'))
                   .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
                   .filter((e) => !Array.from(e.children).some((c) =>
                     c.getBoundingClientRect().right > window.innerWidth + 0.5))
                   .map((e) => (e.closest('table') ? e.closest('table').className + ' ' : '') + e.tagName + '#' + e.id + '.' + e.className + ' ' +
                     Math.round(e.getBoundingClientRect().right));
                 return [document.documentElement.scrollWidth, window.innerWidth,
                         r.scrollWidth, r.clientWidth, wide.slice(0, 8)];",
                vec![],
            )
            .await
            .expect("widths");
        let w: Vec<f64> = widths
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        if w.len() == 4 && w[0] <= w[1] && w[2] <= w[3] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "at 420 px the page or the revenue card overflows: {widths}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let ratio = a
            .execute(
                "const s = document.querySelector('#minutes-chart svg');
                 return s.getBoundingClientRect().width / s.viewBox.baseVal.width;",
                vec![],
            )
            .await
            .expect("chart scale");
        let ratio = ratio.as_f64().unwrap_or(0.0);
        if (ratio - 1.0).abs() < 0.02 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the chart is drawn at {ratio} of its size on a narrow screen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.set_window_size(1440, 1300).await.expect("wide window");

    // Bob ends every session of his: his page goes back to the login page.
    let bob_two = driver.browser(&profiles.path().join("b2")).await;
    log_in(&bob_two, &dash, BOB).await;
    click(&bob_two, "#logout-everywhere").await;
    let deadline = Instant::now() + WAIT;
    while b.current_url().await.expect("url").path() != "/login" {
        assert!(
            Instant::now() < deadline,
            "bob's other browser still shows the dashboard"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob_two.close().await.expect("close b2");
    log_in(&b, &dash, BOB).await;

    // Logging out ends Alice's session; Bob stays.
    click(&a, "#logout").await;
    let deadline = Instant::now() + WAIT;
    while a.current_url().await.expect("url").path() != "/login" {
        assert!(Instant::now() < deadline, "not sent to the login page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.goto(&dash.url("/")).await.expect("open");
    assert_eq!(a.current_url().await.expect("url").path(), "/login");
    assert_eq!(
        b.find(Locator::Css("#live-status"))
            .await
            .expect("status")
            .text()
            .await
            .expect("text"),
        "live"
    );

    a.close().await.expect("close a");
    b.close().await.expect("close b");
    dash.stop().await;
    bridge_stop.cancel();
    bridge.join().await.expect("bridge stops");
}

/// The revenue card under pay as you go: hidden while the day has no top-ups or fares (and the
/// catalogue no pay as you go); a top-up or a fare on the feed re-reads it, splitting the takings
/// into top-ups held for riders and pass sales, with fares and the revenue recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revenue_card_splits_top_ups_from_pass_sales_and_adds_fares() {
    use redis::AsyncCommands;
    use tapgate_protocol::fields::revenue;
    use tapgate_protocol::{keys, EventKind, ProductId};

    let redis = RedisServer::start();
    let (fares, catalogue, _fares_dir) = support::fares_file();
    let mut conn = support::redis(&redis).await;
    let mut dash_config = config(&redis.url());
    dash_config.fares = Some(fares);
    let dash = Dashboard::start(dash_config).await;
    let driver = Driver::start();
    let profiles = tempfile::tempdir().expect("profiles");
    let a = driver.browser(&profiles.path().join("a")).await;
    log_in(&a, &dash, ALICE).await;
    let now = tapgate_runtime::clock::Clock::now_ms(&tapgate_runtime::clock::SystemClock);
    let today = catalogue.service_day(now).label();
    wait_text(&a, "#revenue-day", |t| t == format!("service day {today}")).await;
    let hidden = a
        .execute(
            "return document.getElementById('revenue-split').hidden;",
            vec![],
        )
        .await
        .expect("hidden");
    assert_eq!(hidden, json!(true), "no top-ups or fares: no split");

    // A pass and two top-ups sold; the top-up's event arrives on the feed.
    let key = keys::revenue(&today);
    let fields: Vec<(String, i64)> = vec![
        (revenue::SALES.into(), 3),
        (revenue::AMOUNT.into(), 2750),
        (revenue::TOP_UPS.into(), 2),
        (revenue::TOPPED_UP.into(), 2000),
    ];
    let () = conn.hset_multiple(&key, &fields).await.expect("seed");
    let mut topped_up = support::sale(now);
    topped_up.event = EventKind::ToppedUp;
    if let Some(p) = topped_up.pass.as_mut() {
        p.pass_type = ProductId::from_static("TOPUP_10");
    }
    topped_up.price = Some(1000);
    topped_up.balance = Some(1000);
    support::xadd(&mut conn, "*", &topped_up).await;
    let row = |name: &str| format!("#revenue-split-body tr[data-row='{name}']");
    wait_text(&a, &row("top_ups"), |t| {
        t.contains("held for riders") && t.contains('2') && t.ends_with("20.00 EUR")
    })
    .await;
    wait_text(&a, &row("pass_sales"), |t| t.ends_with("7.50 EUR")).await;
    wait_text(&a, &row("recognised"), |t| t.ends_with("7.50 EUR")).await;
    wait_text(&a, "#revenue-total", |t| t == "27.50 EUR").await;

    // An entry charged 2.50 from a balance: fare revenue, re-read when its event arrives.
    let _: i64 = conn.hincr(&key, revenue::FARES, 1).await.expect("fares");
    let _: i64 = conn
        .hincr(&key, revenue::FARE_AMOUNT, 250)
        .await
        .expect("fare_amount");
    let mut fare = support::sale(now);
    fare.event = EventKind::FareCharged;
    fare.device = DeviceId::new("g1").ok();
    fare.device_kind = Some(DeviceKind::Gate);
    if let Some(p) = fare.pass.as_mut() {
        p.pass_type = ProductId::from_static("PAYG");
    }
    fare.price = Some(250);
    fare.balance = Some(750);
    support::xadd(&mut conn, "*", &fare).await;
    wait_text(&a, &row("fares"), |t| {
        t.contains("paid as you go") && t.ends_with("2.50 EUR")
    })
    .await;
    wait_text(&a, &row("recognised"), |t| t.ends_with("10.00 EUR")).await;
    // The takings are what terminals took: a fare adds nothing to them.
    wait_text(&a, "#revenue-total", |t| t == "27.50 EUR").await;

    a.close().await.expect("close a");
    dash.stop().await;
}
