//! `tapgate-monitor report`: sales made by the bridge's own decide function on a real Redis are
//! reported per terminal and product, as a table and as CSV; a counter that disagrees with the
//! stream is printed with both values and the command fails.

use std::process::Command;

use tapgate_bridge::store::{Answer, Request, Store, StoreSettings};
use tapgate_protocol::rules::Input;
use tapgate_protocol::{
    fields, keys, CardId, Catalogue, DeviceId, DeviceKind, MessageId, Outcome, ProductId,
};
use tapgate_testkit::RedisServer;

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
id = "SINGLE"
name = "Single, one way"
price = 250
validity = "single"
"#;

/// 2026-12-06 10:00 UTC: service day 2026-12-06 in Dublin.
const NOW: u64 = 1_796_551_200_000;

struct Seller<'a> {
    store: &'a Store,
    catalogue: &'a Catalogue,
    n: u32,
}

impl Seller<'_> {
    async fn send(&mut self, terminal: &DeviceId, input: Input) -> Outcome {
        self.n += 1;
        let id = MessageId::new(format!("m{}", self.n)).expect("id");
        let answer = self
            .store
            .decide(&Request {
                kind: DeviceKind::Terminal,
                device: terminal,
                id: &id,
                input: &input,
                now_ms: NOW + u64::from(self.n),
                stamp: None,
                replaces: None,
                day: Some(self.catalogue.service_day(NOW)),
                catalogue: &self.catalogue.version,
                payg: None,
                top_ups: false,
            })
            .await
            .expect("decide");
        let Answer::Decided(d) = answer else {
            panic!("decided: {answer:?}");
        };
        d.decision.outcome
    }

    /// Sells `product` to `card` at `terminal`: tap, button, same card again.
    async fn sell(&mut self, terminal: &str, card: &str, product: &str) {
        let terminal = DeviceId::new(terminal).expect("terminal");
        let card = CardId::new(card).expect("card");
        let terms = self
            .catalogue
            .product(ProductId::parse(product).expect("id"))
            .expect("on sale")
            .terms;
        self.send(&terminal, Input::TerminalTap(card.clone())).await;
        self.send(&terminal, Input::Button(terms)).await;
        let sold = self.send(&terminal, Input::TerminalTap(card)).await;
        assert!(matches!(sold, Outcome::PassIssued { .. }), "{sold:?}");
    }
}

fn report(redis: &RedisServer, fares: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tapgate-monitor"))
        .arg("report")
        .arg("--redis")
        .arg(redis.url())
        .arg("--fares")
        .arg(fares)
        .args(extra)
        .env_remove("TAPGATE_REDIS")
        .env_remove("TAPGATE_FARES")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_days_sales_are_reported_per_terminal_and_checked_against_the_counters() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let fares = dir.path().join("fares.toml");
    std::fs::write(&fares, FARES).expect("fares");
    let catalogue = Catalogue::parse("fares.toml", FARES).expect("catalogue");
    let store = Store::connect(
        &redis.url(),
        None,
        StoreSettings {
            legacy_period_ms: 7_200_000,
            sale_timeout_ms: 30_000,
            seen_ttl_s: 3600,
            stream_maxlen: 10_000,
            recent_ttl_s: 3600,
            device_ttl_s: 3600,
            time: Default::default(),
        },
    )
    .await
    .expect("store");
    let mut seller = Seller {
        store: &store,
        catalogue: &catalogue,
        n: 0,
    };
    seller.sell("t1", "0401", "DAY").await;
    seller.sell("t1", "0402", "DAY").await;
    seller.sell("t1", "0403", "SINGLE").await;
    seller.sell("t2", "0404", "SINGLE").await;

    let (ok, table, err) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert!(ok, "{table}{err}");
    for line in [
        "Service day 2026-12-06",
        "t1               DAY Day pass                           2      15.00 EUR",
        "t1               SINGLE Single, one way                 1       2.50 EUR",
        "t1               all products                           3      17.50 EUR",
        "t2               all products                           1       2.50 EUR",
        "all terminals    all products                           4      20.00 EUR",
        "Voided: 0 sale(s), 0.00 EUR",
        "Counters (tapgate:revenue:2026-12-06) agree with the event stream.",
    ] {
        assert!(table.lines().any(|l| l == line), "{line:?} in\n{table}");
    }

    let (ok, csv, notes) = report(&redis, &fares, &["--day", "2026-12-06", "--csv"]);
    assert!(ok, "{csv}{notes}");
    assert_eq!(
        csv,
        "day,terminal,product,name,sales,amount_minor,amount,currency\n\
         2026-12-06,t1,DAY,Day pass,2,1500,15.00 EUR,EUR\n\
         2026-12-06,t1,SINGLE,\"Single, one way\",1,250,2.50 EUR,EUR\n\
         2026-12-06,t2,SINGLE,\"Single, one way\",1,250,2.50 EUR,EUR\n"
    );
    assert!(notes.contains("agree"), "{notes}");

    // Another day has nothing, and says its counters (none) agree.
    let (ok, table, _) = report(&redis, &fares, &["--day", "2026-12-05"]);
    assert!(ok, "{table}");
    assert!(
        table.contains("all terminals    all products                           0       0.00 EUR")
    );

    // A stream that began today is complete: nothing is said about trimming.
    assert!(!table.contains("trimmed"), "{table}");

    // A counter that disagrees is printed with both values, and the report fails.
    let mut con = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: i64 = redis::cmd("HINCRBY")
        .arg(keys::revenue("2026-12-06"))
        .arg(fields::revenue::terminal_amount("t2"))
        .arg(100)
        .query_async(&mut con)
        .await
        .expect("HINCRBY");
    let (ok, table, err) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert!(!ok, "{table}");
    assert!(
        table.contains("  terminal:t2:amount: counters 350, stream 250 (+100)"),
        "{table}"
    );
    assert!(err.contains("differ from the event stream"), "{err}");

    // A stream trimmed past the day's first events says so.
    let _: i64 = redis::cmd("XTRIM")
        .arg(keys::EVENTS_STREAM)
        .arg("MAXLEN")
        .arg(1)
        .query_async(&mut con)
        .await
        .expect("XTRIM");
    let (ok, table, _) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert!(!ok, "{table}");
    assert!(
        table.contains("the day's earliest events may be gone"),
        "{table}"
    );

    // A day that is not a date is refused before anything is read.
    let (ok, _, err) = report(&redis, &fares, &["--day", "2026-13-01"]);
    assert!(!ok && err.contains("--day"), "{err}");
}
