//! The rider simulator against a real stack (redis-server, mosquitto, the bridge): every decision
//! matches the pass rules and none is lost, with the built-in catalogue and with a fares file.
//! Latency figures are printed, not asserted.

mod support;

use std::time::Duration;

use support::Stack;
use tapgate_device::sim::report::Summary;
use tapgate_device::sim::{self, SimConfig};
use tapgate_runtime::mqtt::BrokerConfig;
use tokio_util::sync::CancellationToken;

/// Runs the simulation and prints (and writes, where asked) its summary: every decision matched
/// the model, none was lost and none was unexpected.
async fn run_clean(cfg: &SimConfig) -> Summary {
    let checked = cfg.clone().check().expect("valid settings");
    // The fares file is read once, when the settings are checked: spoiling it now changes
    // nothing for this run (the bridge read it when it started, too).
    let fares = cfg.fares.as_ref().map(|path| {
        let text = std::fs::read_to_string(path).expect("fares");
        std::fs::write(path, "not a fares file").expect("spoil the fares");
        (path, text)
    });
    let summary = sim::run(checked, CancellationToken::new())
        .await
        .expect("simulation ran");
    if let Some((path, text)) = fares {
        std::fs::write(path, text).expect("restore the fares");
    }
    sim::finish(cfg, &summary).expect("summary printed and written");
    assert_eq!(summary.mismatches, 0, "{:?}", summary.mismatch_examples);
    assert_eq!(summary.lost, 0, "decisions lost");
    assert_eq!(summary.unexpected, 0);
    summary
}

/// Runs `riders` riders for 8 s at 100 messages a second on six gates and three terminals, the
/// bridge and the simulator both selling the fares file `text`; returns the summary and the stack
/// (for its counters) and the folder holding the file.
async fn sell_fares(text: &str, riders: usize, seed: u64) -> (Summary, Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let fares = dir.path().join("fares.toml");
    std::fs::write(&fares, text).expect("write the fares");
    let stack = Stack::start(|c| c.fares = Some(fares.clone())).await;
    let cfg = SimConfig {
        broker: BrokerConfig::url(stack.broker.url()),
        gates: 6,
        terminals: 3,
        riders,
        rate: 100.0,
        duration: Duration::from_secs(8),
        grace: Duration::from_secs(10),
        seed,
        fares: Some(fares.clone()),
        drop_every: Duration::ZERO,
        ..SimConfig::default()
    };
    let summary = run_clean(&cfg).await;
    (summary, stack, dir)
}

/// Each of `outcomes` was decided at least once.
fn saw_each(summary: &Summary, outcomes: &[&str]) {
    for outcome in outcomes {
        assert!(
            summary.decisions.get(*outcome).copied().unwrap_or(0) > 0,
            "no {outcome} in {:?}",
            summary.decisions
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_taps_a_second_for_twenty_seconds() {
    // A short two-hour window so passes expire during the run and riders buy again.
    let two_hour = Duration::from_secs(4);
    let stack = Stack::start(|c| c.two_hour_duration = two_hour).await;
    let dir = tempfile::tempdir().expect("tmp");
    let json = dir.path().join("summary.json");
    let cfg = SimConfig {
        broker: BrokerConfig::url(stack.broker.url()),
        gates: 20,
        terminals: 4,
        riders: 400,
        rate: 200.0,
        duration: Duration::from_secs(20),
        grace: Duration::from_secs(10),
        seed: 42,
        json: Some(json.clone()),
        two_hour_duration: two_hour,
        drop_every: Duration::from_secs(4),
        drop_for: Duration::from_millis(500),
        ..SimConfig::default()
    };
    let summary = run_clean(&cfg).await;
    let sent = summary.taps_sent + summary.buttons_sent + summary.garbage_sent;
    assert!(sent >= 3_500, "sent only {sent}");
    let decided: u64 = summary.decisions.values().sum();
    assert_eq!(decided, sent, "one decision per message");
    saw_each(
        &summary,
        &[
            "granted",
            "denied",
            "select_pass",
            "tap_to_confirm",
            "pass_issued",
            "card_mismatch",
            "rejected",
        ],
    );
    assert!(summary.connection_drops >= 3);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json file")).expect("json");
    assert_eq!(written["lost"], 0);
    assert!(written["latency"]["p99_ms"].as_f64().is_some());
}

/// Outage mode: taps made during a bridge outage arrive late at fail-closed and fail-open gates;
/// every outcome matches the rules model with time (no charge for a late waiting tap, one charge
/// for each offline entry, two-hour windows from the entry's time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mode_matches_the_timed_model() {
    let two_hour = Duration::from_secs(30);
    let stack = Stack::start(|c| c.two_hour_duration = two_hour).await;
    let cfg = SimConfig {
        broker: BrokerConfig::url(stack.broker.url()),
        gates: 6,
        terminals: 3,
        riders: 60,
        rate: 100.0,
        duration: Duration::from_secs(8),
        grace: Duration::from_secs(10),
        seed: 7,
        two_hour_duration: two_hour,
        drop_every: Duration::ZERO,
        outage: 0.3,
        // Late enough to be stale (over twice the decision window), not so late that a tap
        // made during the outage comes before the pass its rider bought seconds into the run:
        // such a pass did not pay for it (unpaid), and no entry would be settled.
        outage_age: Duration::from_secs(4),
        no_pass: 0.2,
        ..SimConfig::default()
    };
    let summary = run_clean(&cfg).await;
    let sent = summary.taps_sent + summary.buttons_sent + summary.garbage_sent;
    let decided: u64 = summary.decisions.values().sum();
    assert_eq!(decided, sent, "one decision per message");
    saw_each(
        &summary,
        &["stale", "entry_settled", "unpaid_entry", "granted"],
    );
}

/// The bridge and the simulator read the same fares file: riders buy its products (each kind of
/// validity, at its price) and every listing, price and pass matches the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fares_file_is_sold_as_the_model_predicts() {
    let (summary, _stack, _dir) = sell_fares(
        r#"
currency = "EUR"
time_zone = "Europe/Dublin"
service_day_starts = "04:00"

[[product]]
id = "SINGLE"
name = "Single trip"
price = 250
validity = "single"

[[product]]
id = "FIVE"
name = "Five trips"
price = 1100
validity = "trips"
trips = 5

[[product]]
id = "HOUR"
name = "Hour pass"
price = 300
validity = "period"
duration = "1m"

[[product]]
id = "TODAY"
name = "Today"
price = 600
validity = "service_day"
"#,
        80,
        11,
    )
    .await;
    saw_each(
        &summary,
        &["select_pass", "tap_to_confirm", "pass_issued", "granted"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_as_you_go_riders_top_up_and_ride_as_the_model_predicts() {
    // Top-ups of 5.00 and a fare of 2.50 capped at 7.00 a day: riders top up every second
    // journey or so and reach the cap within the run.
    let (summary, stack, dir) = sell_fares(
        r#"
currency = "EUR"
time_zone = "Europe/Dublin"
service_day_starts = "04:00"

[payg]
fare = 250
daily_cap = 700
weekly_cap = 3000

[[product]]
id = "TOPUP_5"
name = "Top up 5.00"
price = 500
validity = "top_up"

[[product]]
id = "SINGLE"
name = "Single trip"
price = 250
validity = "single"
"#,
        40,
        27,
    )
    .await;
    saw_each(&summary, &["topped_up", "pass_issued", "granted"]);
    // The bridge counted top-ups and fares: some entries were charged, some capped at 0.
    let day = tapgate_protocol::Catalogue::load(&dir.path().join("fares.toml"))
        .expect("fares")
        .service_day(stack.now_ms())
        .label();
    let revenue = tapgate_protocol::keys::revenue(&day);
    let (top_ups, fares_n, fare_amount) = (
        stack.counter(&revenue, "top_ups").await,
        stack.counter(&revenue, "fares").await,
        stack.counter(&revenue, "fare_amount").await,
    );
    println!("top-ups {top_ups}, entries paid as you go {fares_n}, charged {fare_amount}");
    assert!(
        top_ups > 0 && fares_n > 0,
        "{top_ups} top-ups, {fares_n} fares"
    );
    assert!(
        fare_amount < fares_n * 250,
        "some entries were capped: {fare_amount} for {fares_n} entries"
    );
}
