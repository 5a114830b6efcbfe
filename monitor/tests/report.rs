//! `tapgate-monitor report`: sales made by the bridge's own decide function on a real Redis are
//! reported per terminal and product, as a table and as CSV; a counter that disagrees with the
//! stream is printed with both values and the command fails.

use std::process::Command;

use tapgate_bridge::store::{Answer, Message, Request, Store, StoreSettings};
use tapgate_protocol::rules::Input;
use tapgate_protocol::{
    fields, keys, CardId, Catalogue, Decision, DeviceId, DeviceKind, MessageId, Outcome, ProductId,
    Stamp, TapMode,
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

/// A catalogue with pay as you go: a pass, a top-up, and fares capped at 7.00 a service day.
const PAYG_FARES: &str = r#"
currency = "EUR"
time_zone = "Europe/Dublin"
service_day_starts = "04:00"

[payg]
fare = 250
daily_cap = 700
weekly_cap = 3000

[[product]]
id = "DAY"
name = "Day pass"
price = 750
validity = "period"
duration = "24h"

[[product]]
id = "TOPUP_10"
name = "Top up 10.00"
price = 1000
validity = "top_up"
"#;

/// 2026-12-06 10:00 UTC: service day 2026-12-06 in Dublin.
const NOW: u64 = 1_796_551_200_000;

struct Seller<'a> {
    store: &'a Store,
    catalogue: &'a Catalogue,
    n: u32,
}

impl Seller<'_> {
    /// Decides `input` from `device` at `at` as the bridge does: a terminal's tap on its service
    /// day, a gate's tap with the pay-as-you-go terms and the fare day of its time (an offline
    /// entry's: when it happened).
    async fn send(
        &mut self,
        kind: DeviceKind,
        device: &DeviceId,
        input: Input,
        at: u64,
        stamp: Option<Stamp>,
    ) -> Decision {
        self.n += 1;
        let id = MessageId::new(format!("m{}", self.n)).expect("id");
        let answer = self
            .store
            .decide_under(
                Request::new(
                    Message {
                        kind,
                        device,
                        id: &id,
                        input: &input,
                        stamp,
                        replaces: None,
                    },
                    at,
                    self.catalogue,
                ),
                self.catalogue,
            )
            .await
            .expect("decide");
        let Answer::Decided(d) = answer else {
            panic!("decided: {answer:?}");
        };
        d.decision
    }

    /// Sells `product` (a pass or a top-up) to `card` at `terminal`: tap, button, same card
    /// again.
    async fn sell(&mut self, terminal: &str, card: &str, product: &str) {
        let terminal = DeviceId::new(terminal).expect("terminal");
        let card = CardId::new(card).expect("card");
        let terms = self
            .catalogue
            .product(ProductId::parse(product).expect("id"))
            .expect("on sale")
            .terms;
        let at = NOW + u64::from(self.n);
        let kind = DeviceKind::Terminal;
        self.send(kind, &terminal, Input::TerminalTap(card.clone()), at, None)
            .await;
        self.send(kind, &terminal, Input::Button(terms), at, None)
            .await;
        let sold = self
            .send(kind, &terminal, Input::TerminalTap(card), at, None)
            .await
            .outcome;
        assert!(
            matches!(sold, Outcome::PassIssued { .. } | Outcome::ToppedUp { .. }),
            "{sold:?}"
        );
    }

    /// `card` enters at `gate` at `at`; what the entry was charged from its balance, if it was
    /// paid as you go.
    async fn enter(&mut self, gate: &str, card: &str, at: u64) -> Option<u64> {
        let gate = DeviceId::new(gate).expect("gate");
        let card = CardId::new(card).expect("card");
        let d = self
            .send(DeviceKind::Gate, &gate, Input::GateTap(card), at, None)
            .await;
        assert!(matches!(d.outcome, Outcome::Granted { .. }), "{d:?}");
        d.charged
    }

    /// `card` went through `gate` offline at `happened`, settled by the bridge at `at`; what the
    /// entry was charged.
    async fn settle(&mut self, gate: &str, card: &str, happened: u64, at: u64) -> Option<u64> {
        let gate = DeviceId::new(gate).expect("gate");
        let card = CardId::new(card).expect("card");
        let stamp = Stamp {
            time: happened,
            mode: TapMode::Offline,
        };
        let d = self
            .send(
                DeviceKind::Gate,
                &gate,
                Input::GateTap(card),
                at,
                Some(stamp),
            )
            .await;
        assert!(matches!(d.outcome, Outcome::EntrySettled { .. }), "{d:?}");
        d.charged
    }
}

/// The bridge's store on `redis`, as the bridge sets it up.
async fn store(redis: &RedisServer) -> Store {
    Store::connect(
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
    .expect("store")
}

/// Runs `tapgate-monitor report`: its exit status (0: the counters agree; 1: they differ or the
/// report could not be made), stdout and stderr.
fn report(redis: &RedisServer, fares: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
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
        out.status.code().unwrap_or(-1),
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
    let store = store(&redis).await;
    let mut seller = Seller {
        store: &store,
        catalogue: &catalogue,
        n: 0,
    };
    seller.sell("t1", "0401", "DAY").await;
    seller.sell("t1", "0402", "DAY").await;
    seller.sell("t1", "0403", "SINGLE").await;
    seller.sell("t2", "0404", "SINGLE").await;

    let (code, table, err) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert_eq!(code, 0, "{table}{err}");
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

    let (code, csv, notes) = report(&redis, &fares, &["--day", "2026-12-06", "--csv"]);
    assert_eq!(code, 0, "{csv}{notes}");
    assert_eq!(
        csv,
        "day,terminal,product,name,sales,amount_minor,amount,currency,kind,revenue_minor\n\
         2026-12-06,t1,DAY,Day pass,2,1500,15.00 EUR,EUR,pass,1500\n\
         2026-12-06,t1,SINGLE,\"Single, one way\",1,250,2.50 EUR,EUR,pass,250\n\
         2026-12-06,t2,SINGLE,\"Single, one way\",1,250,2.50 EUR,EUR,pass,250\n"
    );
    assert!(notes.contains("agree"), "{notes}");

    // Another day has nothing, and says its counters (none) agree.
    let (code, table, _) = report(&redis, &fares, &["--day", "2026-12-05"]);
    assert_eq!(code, 0, "{table}");
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
    let (code, table, err) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert_eq!(code, 1, "{table}");
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
    let (code, table, _) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert_eq!(code, 1, "{table}");
    assert!(
        table.contains("the day's earliest events may be gone"),
        "{table}"
    );

    // A day that is not a date is refused before anything is read.
    let (code, _, err) = report(&redis, &fares, &["--day", "2026-13-01"]);
    // (refused by the argument parser: status 2, as for any bad flag)
    assert!(code == 2 && err.contains("--day"), "{code} {err}");
}

#[tokio::test]
async fn top_ups_are_takings_and_fares_charged_to_balances_are_revenue() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let fares = dir.path().join("fares.toml");
    std::fs::write(&fares, PAYG_FARES).expect("fares");
    let catalogue = Catalogue::parse("fares.toml", PAYG_FARES).expect("catalogue");
    let store = store(&redis).await;
    let mut seller = Seller {
        store: &store,
        catalogue: &catalogue,
        n: 0,
    };
    seller.sell("t1", "0401", "DAY").await;
    seller.sell("t1", "0501", "TOPUP_10").await;
    seller.sell("t2", "0502", "TOPUP_10").await;
    seller.sell("t2", "0501", "TOPUP_10").await;
    const MINUTE: u64 = 60_000;
    // A pass is used first: no fare.
    assert_eq!(seller.enter("g1", "0401", NOW + MINUTE).await, None);
    // Four entries in a service day with fare 2.50 and a 7.00 cap.
    let mut charged = Vec::new();
    for i in 1..=4 {
        charged.push(seller.enter("g1", "0501", NOW + 10 * i * MINUTE).await);
    }
    assert_eq!(charged, [Some(250), Some(250), Some(200), Some(0)]);
    assert_eq!(
        seller.enter("g2", "0502", NOW + 50 * MINUTE).await,
        Some(250)
    );
    // An entry let through offline at 03:30, before the service day began at 04:00, and settled
    // at 10:55: charged on, and counted on, its own service day, the 5th.
    let before_dawn = NOW - 6 * 60 * MINUTE - 30 * MINUTE;
    assert_eq!(
        seller
            .settle("g2", "0502", before_dawn, NOW + 55 * MINUTE)
            .await,
        Some(250)
    );
    // The next service day's entry counts there.
    let tomorrow = NOW + 24 * 60 * MINUTE;
    assert_eq!(seller.enter("g2", "0502", tomorrow).await, Some(250));

    let (code, table, err) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert_eq!(code, 0, "{table}{err}");
    for line in [
        "t1               DAY Day pass                           1       7.50 EUR",
        "t1               TOPUP_10 Top up 10.00                  1      10.00 EUR",
        "t2               TOPUP_10 Top up 10.00                  2      20.00 EUR",
        "all terminals    all products                           4      37.50 EUR",
        "g1               fares                                  4       7.00 EUR",
        "g2               fares                                  1       2.50 EUR",
        "all gates        fares                                  5       9.50 EUR",
        "Terminal takings (cash in)                              4      37.50 EUR",
        "  of which stored value sold (top-ups)                  3      30.00 EUR",
        "  of which pass sales, net of voids                     1       7.50 EUR",
        "Fare revenue from balances (pay as you go)              5       9.50 EUR",
        "  of which entries capped (charged 0)                   1",
        "Revenue recognised (pass sales + fare revenue)                 17.00 EUR",
        "Counters (tapgate:revenue:2026-12-06) agree with the event stream.",
    ] {
        assert!(table.lines().any(|l| l == line), "{line:?} in\n{table}");
    }

    let (code, csv, notes) = report(&redis, &fares, &["--day", "2026-12-06", "--csv"]);
    assert_eq!(code, 0, "{csv}{notes}");
    assert_eq!(
        csv,
        "day,terminal,product,name,sales,amount_minor,amount,currency,kind,revenue_minor\n\
         2026-12-06,t1,DAY,Day pass,1,750,7.50 EUR,EUR,pass,750\n\
         2026-12-06,t1,TOPUP_10,Top up 10.00,1,1000,10.00 EUR,EUR,top_up,0\n\
         2026-12-06,t2,TOPUP_10,Top up 10.00,2,2000,20.00 EUR,EUR,top_up,0\n\
         2026-12-06,g1,PAYG,Pay as you go,4,700,7.00 EUR,EUR,fare,700\n\
         2026-12-06,g2,PAYG,Pay as you go,1,250,2.50 EUR,EUR,fare,250\n"
    );
    assert!(notes.contains("agree"), "{notes}");

    // The next day and the day before each hold only their own fare.
    for day in ["2026-12-07", "2026-12-05"] {
        let (code, table, err) = report(&redis, &fares, &["--day", day]);
        assert_eq!(code, 0, "{table}{err}");
        for line in [
            "all terminals    all products                           0       0.00 EUR",
            "g2               fares                                  1       2.50 EUR",
            "all gates        fares                                  1       2.50 EUR",
            "Revenue recognised (pass sales + fare revenue)                  2.50 EUR",
            &format!("Counters (tapgate:revenue:{day}) agree with the event stream."),
        ] {
            assert!(table.lines().any(|l| l == line), "{line:?} in\n{table}");
        }
    }

    // A fare amount the stream does not hold is printed with both values, and the report fails;
    // so is a top-up the stream does not hold, on its own day.
    let mut con = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    for (day, field, by) in [
        ("2026-12-06", fields::revenue::FARE_AMOUNT, 1),
        ("2026-12-07", fields::revenue::TOPPED_UP, 1000),
    ] {
        let _: i64 = redis::cmd("HINCRBY")
            .arg(keys::revenue(day))
            .arg(field)
            .arg(by)
            .query_async(&mut con)
            .await
            .expect("HINCRBY");
    }
    let (code, table, err) = report(&redis, &fares, &["--day", "2026-12-06"]);
    assert_eq!(code, 1, "{table}");
    assert!(
        table.contains("  fare_amount: counters 951, stream 950 (+1)\n"),
        "{table}"
    );
    assert!(!table.contains("agree"), "{table}");
    assert!(err.contains("differ from the event stream"), "{err}");
    let (code, csv, notes) = report(&redis, &fares, &["--day", "2026-12-07", "--csv"]);
    assert_eq!(code, 1, "{csv}");
    assert!(
        notes.contains("  topped_up: counters 1000, stream 0 (+1000)\n"),
        "{notes}"
    );
}
