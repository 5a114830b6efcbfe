//! No single point of failure: the rider simulator runs against three bridges in one shared
//! subscription group, a Redis primary with two replicas under three real sentinels, and a
//! mosquitto with persistence, while the Redis primary is killed (-9), bridges are killed (-9)
//! and restarted twice, the broker is restarted once, and the broker and bridges are frozen
//! (SIGSTOP) for 9 s, one bridge being killed in the stall. Every decision must arrive and match
//! the rules model, and the counters — revenue included: riders buy from a priced catalogue —
//! must agree with the event stream afterwards. The gaps in service are printed, not asserted.
//! Also: a broker that cannot share refuses `--shared-group`.

mod accounts;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tapgate_device::sim::{self, SimConfig};
use tapgate_protocol::{keys, MessageKind, Topics};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::{Mosquitto, NatsMqtt, SentinelGroup};
use tokio_util::sync::CancellationToken;

/// A bridge process, killed on drop.
struct BridgeProcess {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl BridgeProcess {
    fn start(args: Vec<String>, log: PathBuf) -> Self {
        let mut b = Self {
            args,
            log,
            child: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("bridge log");
        let child = Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"))
            .args(&self.args)
            .env_clear()
            .env("RUST_LOG", "warn,tapgate_bridge=info,tapgate_runtime=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tapgate-bridge");
        self.child = Some(child);
    }

    /// SIGKILL: no clean disconnect, whatever it holds in flight stays with the broker.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a `kill` signal (`STOP`, `CONT`).
    fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &c.id().to_string()])
                .status();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- {} -----\n{}", self.log.display(), self.log_text());
        }
    }
}

fn wait_for_log(b: &BridgeProcess, text: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !b.log_text().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the bridge log within {within:?}:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The longest silence between two decisions in `[from - 1 s, from + window]`, counting one that
/// lasts to the window's end (cut at the run's last decision) when no decision ends it there.
fn longest_gap(times: &[Instant], from: Instant, window: Duration) -> Duration {
    let Some(last) = times.iter().max().copied() else {
        return window;
    };
    let end = (from + window).min(last);
    let mut points: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|t| *t + Duration::from_secs(1) >= from && *t <= end)
        .collect();
    points.push(end);
    points.sort();
    points
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(window)
}

fn bridge_args(group: &SentinelGroup, broker: &Mosquitto, n: usize, fares: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--redis",
        &group.url(),
        "--mqtt",
        &broker.url(),
        "--client-id",
        &format!("bridge-{n}"),
        "--shared-group",
        "tapgate-bridges",
        "--max-backoff",
        "500ms",
        "--two-hour-duration",
        "8s",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(["--fares".to_owned(), fares.display().to_string()]);
    args
}

fn log_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("bridge-{n}.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_bridges_and_the_broker_loses_and_doubles_nothing() {
    // The simulator names any message left without a decision in a warning.
    let _ = tapgate_runtime::logging::init(tapgate_runtime::logging::LogFormat::Text, "warn");
    let group = SentinelGroup::with_replicas(2);
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("tmp");
    let fares = dir.path().join("fares.toml");
    std::fs::write(&fares, accounts::FARES).expect("fares");
    let mut bridges: Vec<BridgeProcess> = (0..3)
        .map(|n| {
            BridgeProcess::start(
                bridge_args(&group, &broker, n, &fares),
                log_path(dir.path(), n),
            )
        })
        .collect();
    for b in &bridges {
        wait_for_log(b, "Subscribed; deciding", Duration::from_secs(20));
    }

    // Every decision's arrival time, to measure the gaps in service: a watcher with a persistent
    // session that reconnects through the broker restart.
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop_watch = CancellationToken::new();
    let watcher = {
        let (times, stop) = (times.clone(), stop_watch.clone());
        let mut opts = rumqttc::MqttOptions::new("watch-decisions", "127.0.0.1", broker.port());
        opts.set_clean_session(false);
        let (client, mut eventloop) = tapgate_runtime::mqtt::client(opts, 64);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = eventloop.poll() => e,
                };
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(
                            Topics::default().every_kind(MessageKind::Decision),
                            rumqttc::QoS::AtMostOnce,
                        );
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                        times.lock().expect("times").push(Instant::now());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    };

    let cfg = SimConfig {
        broker: BrokerConfig::url(broker.url()),
        gates: 20,
        terminals: 4,
        riders: 800,
        rate: 400.0,
        duration: Duration::from_secs(55),
        grace: Duration::from_secs(40),
        seed: 11,
        two_hour_duration: Duration::from_secs(8),
        drop_every: Duration::ZERO,
        garbage: 0.0,
        fares: Some(fares.clone()),
        ..SimConfig::default()
    };
    let run = tokio::spawn(sim::run(
        cfg.check().expect("simulation settings"),
        CancellationToken::new(),
    ));

    // The faults, on a fixed schedule from the start of sending.
    let t0 = Instant::now();
    let at = |s: u64| tokio::time::sleep_until((t0 + Duration::from_secs(s)).into());
    at(8).await;
    let primary_died = Instant::now();
    let mut group = tokio::task::spawn_blocking(move || {
        let mut group = group;
        group.primary.stop(); // SIGKILL
        group
    })
    .await
    .expect("kill primary");
    let promoted = {
        let g = tokio::task::spawn_blocking(move || {
            let p = group.wait_for_promotion(Duration::from_secs(30));
            (group, p)
        })
        .await
        .expect("promotion");
        group = g.0;
        g.1
    };
    let promoted_after = primary_died.elapsed();

    let mut bridge_kills = Vec::new();
    for (s, n) in [(18, 0usize), (26, 1usize)] {
        at(s).await;
        bridge_kills.push(Instant::now());
        bridges[n].kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        bridges[n].spawn();
    }

    at(34).await;
    let broker_restart = Instant::now();
    let mut broker = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    })
    .await
    .expect("broker restart");

    // The host stops scheduling the broker and the bridges for longer than a waiting tap's
    // idempotency record lives (6.5 s), and one bridge dies in the stall: what it had decided
    // (and charged) but not yet answered is redelivered only after the record has gone. To be
    // sure there is such a thing, Redis is held first (for less than the sentinels' 1 s), so
    // that decide calls wait in it, and runs them once the bridges are stopped.
    at(42).await;
    let frozen = Instant::now();
    let primary = group
        .replicas
        .iter()
        .find(|r| r.port() == promoted)
        .expect("the promoted replica");
    primary.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.pause();
    for b in &bridges {
        b.signal("STOP");
    }
    primary.resume();
    tokio::time::sleep(Duration::from_secs(9)).await;
    bridges[2].kill();
    broker.resume();
    for b in &bridges {
        b.signal("CONT");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    bridges[2].spawn();

    let summary = run.await.expect("simulator task").expect("simulator ran");
    stop_watch.cancel();
    let _ = watcher.await;

    let times = times.lock().expect("times").clone();
    let gap_redis = longest_gap(&times, primary_died, Duration::from_secs(15));
    let gap_bridges: Vec<Duration> = bridge_kills
        .iter()
        .map(|t| longest_gap(&times, *t, Duration::from_secs(7)))
        .collect();
    let gap_broker = longest_gap(&times, broker_restart, Duration::from_secs(7));
    let gap_frozen = longest_gap(&times, frozen, Duration::from_secs(15));
    println!(
        "failover: sentinels promoted port {promoted} {:.1}s after the primary died; \
         longest gap in decisions: {:.2}s after the Redis primary died, {} after a bridge died, \
         {:.2}s around the broker restart, {:.2}s around the 9 s stall",
        promoted_after.as_secs_f64(),
        gap_redis.as_secs_f64(),
        gap_bridges
            .iter()
            .map(|g| format!("{:.2}s", g.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" and "),
        gap_broker.as_secs_f64(),
        gap_frozen.as_secs_f64(),
    );
    println!("{}", summary.render());

    assert_eq!(summary.lost, 0, "decisions lost");
    assert_eq!(summary.mismatches, 0, "{:?}", summary.mismatch_examples);
    assert_eq!(summary.unexpected, 0);
    assert!(
        // 400 messages a second for 55 s, less buttons, idle slots and the 9 s stall.
        summary.taps_sent >= 11_000,
        "only {} taps sent",
        summary.taps_sent
    );

    // The counters agree with the event stream on the new primary.
    let url: tapgate_runtime::RedisUrl = group.url().parse().expect("url");
    let mut link = tapgate_runtime::redis::RedisLink::connect(&url, None)
        .await
        .expect("new primary");
    use tapgate_protocol::fields::revenue as revenue_field;
    let accounts::Tally {
        counts: events,
        revenue,
        added,
        taken,
    } = accounts::tally(&mut link).await;
    let n = |k: &str| events.get(k).copied().unwrap_or(0);
    assert_eq!(
        accounts::counter_sum(&mut link, keys::COUNTERS_ENTRIES).await,
        n("pass-used") + n("fare-charged"),
        "entries vs pass-used and fare-charged events: {events:?}"
    );
    assert_eq!(
        accounts::counter_sum(&mut link, keys::COUNTERS_ISSUED).await,
        n("pass-issued") + n("topped-up"),
        "issued vs pass-issued and topped-up events: {events:?}"
    );
    assert_eq!(
        accounts::counter_sum(&mut link, keys::COUNTERS_DENIED).await,
        n("pass-denied"),
        "denied vs pass-denied events: {events:?}"
    );
    // Every decided tap and button is one entry, issue, denial or other answer: the stream holds
    // at least as many entry and issue events as the simulator saw granted and issued.
    let decided = |o: &str| summary.decisions.get(o).copied().unwrap_or(0) as i64;
    assert_eq!(
        n("pass-used") + n("fare-charged"),
        decided("granted"),
        "{events:?}"
    );
    assert_eq!(n("pass-issued"), decided("pass_issued"), "{events:?}");
    assert_eq!(n("topped-up"), decided("topped_up"), "{events:?}");
    assert!(
        n("topped-up") > 0 && n("fare-charged") > 0,
        "riders paid as you go: {events:?}"
    );
    // Money is conserved on every card across the kills: what was topped up is held or was
    // charged, and the wallets add up to the stream's top-ups and charges.
    let wallets = accounts::wallets(&mut link).await;
    assert_eq!(wallets.unbalanced, [], "top-ups against balance + charges");
    assert_eq!(
        wallets.held,
        added - taken,
        "held against the stream's top-ups less charges"
    );
    let (topped_up, charged) = (wallets.topped_up, wallets.charged);
    let field_total = |f: &str| {
        revenue
            .values()
            .map(|r| r.get(f).copied().unwrap_or(0))
            .sum::<i64>()
    };
    assert_eq!(topped_up, field_total(revenue_field::TOPPED_UP), "top-ups");
    assert_eq!(charged, field_total(revenue_field::FARE_AMOUNT), "charges");
    assert_eq!(n("pass-denied"), decided("denied"), "{events:?}");
    // Revenue: every service day's counters are what its sales in the stream add up to, and
    // each sale was counted once.
    assert!(!revenue.is_empty(), "no sales: {events:?}");
    let mut days: Vec<String> = redis::cmd("KEYS")
        .arg(keys::revenue("*"))
        .query_async(&mut link)
        .await
        .expect("KEYS");
    days.sort();
    let mut expected_days: Vec<String> = revenue.keys().map(|d| keys::revenue(d)).collect();
    expected_days.sort();
    assert_eq!(days, expected_days, "revenue hashes");
    for (day, fields) in &revenue {
        let counters: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(keys::revenue(day))
            .query_async(&mut link)
            .await
            .expect("HGETALL");
        assert_eq!(&counters, fields, "revenue of {day}: counters vs stream");
    }
    let sold: i64 = field_total(revenue_field::SALES);
    assert_eq!(sold, decided("pass_issued") + decided("topped_up"));
    println!(
        "failover: revenue {:?} equals the stream's sales",
        revenue
            .iter()
            .map(|(d, f)| (d.clone(), f[tapgate_protocol::fields::revenue::AMOUNT]))
            .collect::<Vec<_>>()
    );
    drop(bridges);
    broker.stop();
}

#[test]
fn a_broker_that_cannot_share_is_refused_at_start() {
    let redis = tapgate_testkit::RedisServer::start();
    let nats = NatsMqtt::start();
    let out = Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"))
        .args(["--redis", &redis.url(), "--mqtt", &nats.url()])
        .args(["--shared-group", "tapgate-bridges", "--client-id", "b1"])
        .env_clear()
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tapgate-bridge");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started on a broker that cannot share: {text}"
    );
    assert!(
        text.contains("does not support shared subscriptions"),
        "{text}\n{}",
        nats.log()
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{text}"
    );

    // Without the group, the same broker is fine.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"))
        .args([
            "--redis",
            &redis.url(),
            "--mqtt",
            &nats.url(),
            "--client-id",
            "b2",
        ])
        .env_clear()
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("Subscribed; deciding") {
                let _ = tx.send(());
            }
        }
    });
    let subscribed = rx.recv_timeout(Duration::from_secs(15));
    let _ = child.kill();
    let _ = child.wait();
    assert!(subscribed.is_ok(), "{}", nats.log());
}
