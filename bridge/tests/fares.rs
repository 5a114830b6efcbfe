//! The operator's fare catalogue, over real MQTT against real Redis: a product no code knows is
//! added by writing it in the fares file only, and is sold, priced, counted as revenue on its
//! service day and honoured at a gate; a product not in the file is refused; a bad file stops
//! the bridge at start with its line and field; SIGHUP to a running bridge process puts a changed
//! file in force and keeps the catalogue in force when the new file is refused.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use support::{buy, Stack};
use tapgate_bridge::BridgeError;
use tapgate_protocol::{fields, keys, pass_record, stream, CardId, Catalogue, DeviceKind};

const FARES: &str = r#"
currency = "EUR"
time_zone = "Europe/Dublin"
service_day_starts = "04:00"

[[product]]
id = "DAY"
name = "Day pass"
price = 750
validity = "period"
duration = "24h"

[[product]]
id = "TODAY"
name = "Until the last train"
price = 600
validity = "service_day"

[[product]]
id = "THREE"
name = "Three journeys"
price = 2000
validity = "trips"
trips = 3
"#;

async fn stack_with_fares(text: &str) -> (Stack, tempfile::TempDir, Catalogue) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("fares.toml");
    std::fs::write(&path, text).expect("write fares");
    let catalogue = Catalogue::parse("fares.toml", text).expect("fares");
    let stack = Stack::start_manual(|c| c.fares = Some(path)).await;
    (stack, dir, catalogue)
}

async fn revenue(stack: &Stack, day: &str) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(keys::revenue(day))
        .query_async(&mut stack.redis().await)
        .await
        .expect("HGETALL")
}

#[tokio::test]
async fn a_product_only_the_fares_file_knows_is_sold_priced_counted_and_honoured() {
    let (stack, _dir, catalogue) = stack_with_fares(FARES).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;

    // The terminal's first answer lists what it may sell, with prices.
    let d = t.tap("7001").await;
    assert_eq!(d["outcome"], "select_pass", "{d}");
    assert_eq!(
        d["products"],
        json!([
            {"id": "DAY", "name": "Day pass", "price": 750, "currency": "EUR"},
            {"id": "TODAY", "name": "Until the last train", "price": 600, "currency": "EUR"},
            {"id": "THREE", "name": "Three journeys", "price": 2000, "currency": "EUR"},
        ])
    );
    let d = t.button("DAY").await;
    assert_eq!(
        (&d["outcome"], &d["selected"], &d["price"], &d["currency"]),
        (
            &json!("tap_to_confirm"),
            &json!("DAY"),
            &json!(750),
            &json!("EUR")
        ),
        "{d}"
    );
    let d = t.tap("7001").await;
    assert_eq!(d["outcome"], "pass_issued", "{d}");
    assert_eq!((&d["price"], &d["currency"]), (&json!(750), &json!("EUR")));
    assert_eq!(d["pass"], json!({"type": "DAY"}));

    // The record keeps what a void needs: who sold it, the day it was counted on, the catalogue
    // it was sold from, and no first use yet.
    let pass_record = || async {
        let f: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(keys::pass(&CardId::new("7001").expect("card")))
            .query_async(&mut stack.redis().await)
            .await
            .expect("HGETALL");
        f
    };
    let sold_day = catalogue.service_day(stack.now_ms()).label();
    let f = pass_record().await;
    assert_eq!(f.get(fields::pass::SOLD_BY).map(String::as_str), Some("t1"));
    assert_eq!(f.get(fields::pass::DAY), Some(&sold_day));
    let stored = pass_record::read(&f, 0).expect("readable").expect("a pass");
    assert_eq!(stored.catalogue, Some(catalogue.version.clone()), "{f:?}");
    assert_eq!(stored.pass.terms.price, 750, "{f:?}");
    assert_eq!(f.get(fields::pass::USED_AT), None, "{f:?}");

    // Honoured at a gate: the first entry opens a day of travel.
    let first = stack.now_ms();
    let d = g.tap("7001").await;
    assert_eq!(d["outcome"], "granted", "{d}");
    assert_eq!(d["pass"]["type"], "DAY");
    assert_eq!(d["pass"]["expires_at"], first + 24 * 3_600_000);
    assert_eq!(
        pass_record().await.get(fields::pass::USED_AT),
        Some(&first.to_string())
    );
    stack.advance(Duration::from_secs(23 * 3600));
    assert_eq!(g.tap("7001").await["outcome"], "granted");
    stack.advance(Duration::from_secs(3600));
    let d = g.tap("7001").await;
    assert_eq!(
        (&d["outcome"], &d["reason"]),
        (&json!("denied"), &json!("expired"))
    );

    // Counted on the service day of the sale, by product and by terminal.
    let day = catalogue.service_day(first).label();
    let r = revenue(&stack, &day).await;
    assert_eq!(r.get(fields::revenue::SALES), Some(&1), "{r:?}");
    assert_eq!(r.get(fields::revenue::AMOUNT), Some(&750));
    assert_eq!(r.get(&fields::revenue::product_amount("DAY")), Some(&750));
    assert_eq!(r.get(&fields::revenue::product_sales("DAY")), Some(&1));
    assert_eq!(r.get(&fields::revenue::terminal_amount("t1")), Some(&750));
    assert_eq!(stack.counter(keys::COUNTERS_ISSUED, "DAY").await, 1);

    // The sale's event in the stream carries what it took, so counters reconcile with it.
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(keys::EVENTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut stack.redis().await)
        .await
        .expect("XRANGE");
    let sold: Vec<_> = entries
        .iter()
        .filter(|(_, f)| f.get("event").map(String::as_str) == Some("pass-issued"))
        .collect();
    assert_eq!(sold.len(), 1);
    assert_eq!(sold[0].1.get("price").map(String::as_str), Some("750"));
    assert_eq!(sold[0].1.get("currency").map(String::as_str), Some("EUR"));
    assert_eq!(sold[0].1.get(stream::DAY), Some(&day));
}

#[tokio::test]
async fn a_service_day_pass_ends_with_the_day_it_was_sold_in_and_trips_count_down() {
    let (stack, _dir, catalogue) = stack_with_fares(FARES).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    let sold_at = stack.now_ms();
    let issued = buy(&mut t, "8001", "TODAY").await;
    let ends = catalogue.service_day(sold_at).ends_at_ms;
    assert_eq!(issued["pass"]["expires_at"], ends, "{issued}");
    assert_eq!(g.tap("8001").await["outcome"], "granted");
    let left = Duration::from_millis(ends - stack.now_ms());
    stack.advance(left);
    let d = g.tap("8001").await;
    assert_eq!(d["reason"], "expired", "{d}");

    let issued = buy(&mut t, "8002", "THREE").await;
    assert_eq!(issued["pass"]["trips_remaining"], 3);
    for left in [2, 1, 0] {
        let d = g.tap("8002").await;
        assert_eq!(d["pass"]["trips_remaining"], left, "{d}");
    }
    assert_eq!(g.tap("8002").await["reason"], "no_pass");
    let day = catalogue.service_day(stack.now_ms()).label();
    assert_eq!(
        revenue(&stack, &day)
            .await
            .get(&fields::revenue::product_amount("THREE")),
        Some(&2000)
    );
}

#[tokio::test]
async fn a_product_not_in_the_catalogue_is_refused_and_changes_nothing() {
    let (stack, _dir, catalogue) = stack_with_fares(FARES).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    assert_eq!(t.tap("9001").await["outcome"], "select_pass");
    // A built-in product this operator does not sell, and an id no catalogue could hold.
    for (pass, says) in [
        ("SINGLE_USE", "on sale: DAY, TODAY, THREE"),
        ("day", "not a product id"),
    ] {
        let d = t.button(pass).await;
        assert_eq!(
            (&d["outcome"], &d["reason"]),
            (&json!("rejected"), &json!("unknown_pass_type")),
            "{d}"
        );
        let detail = d["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{detail}");
    }
    // The sale is still waiting for a real choice.
    let d = t.button("DAY").await;
    assert_eq!(d["outcome"], "tap_to_confirm", "{d}");
    let r = revenue(&stack, &catalogue.service_day(stack.now_ms()).label()).await;
    assert!(r.is_empty(), "nothing sold: {r:?}");
}

#[tokio::test]
async fn a_bad_fares_file_stops_the_bridge_with_its_line_and_field() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("fares.toml");
    std::fs::write(&path, FARES.replace("price = 600", "price = -600")).expect("write");
    let config = tapgate_bridge::BridgeConfig {
        fares: Some(path.clone()),
        // Nothing listens there: the catalogue is checked before anything is connected.
        redis: "redis://127.0.0.1:1".parse().expect("redis url"),
        ..tapgate_bridge::BridgeConfig::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let Err(e) = tapgate_bridge::start(config, shutdown).await else {
        panic!("started with a bad fares file");
    };
    assert!(matches!(e, BridgeError::Fares(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("{}:16: product[2].price", path.display())),
        "{text}"
    );
}

/// Lines a bridge process writes on stderr, collected as they come.
struct BridgeLog {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl BridgeLog {
    fn spawn(stack: &Stack, fares: &std::path::Path) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"))
            .args(["--redis", stack.config.redis.unredacted()])
            .args(["--mqtt", &stack.config.broker.mqtt.to_string()])
            .args(["--client-id", "bridge-hup"])
            .arg("--fares")
            .arg(fares)
            .env_clear()
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tapgate-bridge");
        let stderr = child.stderr.take().expect("stderr");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().expect("log").push(line);
            }
        });
        Self { child, lines }
    }

    /// Waits for a line holding every one of `words` after the first `skip` lines; returns it
    /// and how many lines there were then.
    async fn wait_for(&self, skip: usize, words: &[&str]) -> (String, usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            {
                let lines = self.lines.lock().expect("log");
                if let Some(l) = lines
                    .iter()
                    .skip(skip)
                    .find(|l| words.iter().all(|w| l.contains(w)))
                {
                    return (l.clone(), lines.len());
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no line with {words:?} in:\n{}",
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn hang_up(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for BridgeLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_puts_a_changed_file_in_force_and_keeps_the_old_one_when_it_is_refused() {
    let mut stack = Stack::start(|_| {}).await;
    stack.stop_bridge().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("fares.toml");
    std::fs::write(&path, FARES).expect("write");
    let bridge = BridgeLog::spawn(&stack, &path);
    let (_, seen) = bridge.wait_for(0, &["Subscribed; deciding"]).await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let d = buy(&mut t, "8001", "DAY").await;
    assert_eq!(d["price"], 750, "{d}");

    // A new price and a new product, in force after SIGHUP without a restart.
    let changed = format!(
        "{}\n[[product]]\nid = \"WEEK\"\nname = \"Week\"\nprice = 2500\nvalidity = \"period\"\n\
         duration = \"7days\"\n",
        FARES.replace("price = 750", "price = 800")
    );
    std::fs::write(&path, &changed).expect("write");
    bridge.hang_up();
    let (line, seen) = bridge
        .wait_for(seen, &["Fare catalogue reloaded", "products=4"])
        .await;
    let version = Catalogue::parse("fares.toml", &changed)
        .expect("changed")
        .version;
    assert!(line.contains(&version), "{line}");
    assert_eq!(buy(&mut t, "8002", "DAY").await["price"], 800);
    let d = buy(&mut t, "8003", "WEEK").await;
    assert_eq!(d["price"], 2500, "{d}");

    // A refused file is logged with its line and field; the catalogue in force stays.
    std::fs::write(&path, changed.replace("price = 800", "price = -5")).expect("write");
    bridge.hang_up();
    let (line, _) = bridge
        .wait_for(seen, &["Fare catalogue refused", "product[1].price"])
        .await;
    assert!(line.contains("fares.toml:"), "{line}");
    assert_eq!(buy(&mut t, "8004", "DAY").await["price"], 800);
    assert_eq!(buy(&mut t, "8005", "WEEK").await["price"], 2500);

    // The pass sold before the change keeps the price it was sold at.
    let f: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::pass(&CardId::new("8001").expect("card")))
        .query_async(&mut stack.redis().await)
        .await
        .expect("HGETALL");
    let stored = pass_record::read(&f, 0).expect("readable").expect("a pass");
    assert_eq!(stored.pass.terms.price, 750, "{f:?}");
}
