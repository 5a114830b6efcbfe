//! No acknowledged decision is lost when the network splits: the rider simulator runs against
//! three bridges (one shared subscription group) while a Redis primary, two replicas and three
//! sentinels, each in a network namespace of its own ([`tapgate_testkit::netns::Lab`]), are cut
//! apart and healed, or the primary is killed and restarted within 1.5 s as a supervisor would.
//! The bridges and the broker run in the test's namespace and reach every node throughout: the
//! worst case, where a bridge could go on confirming on a primary the sentinels are replacing.
//!
//! Each scenario checks, against what the simulated devices received: no message left without a
//! decision, no decision unlike the rules model, the event stream holding exactly the entries,
//! sales and denials the devices were told of (a lost or doubled one shows here), and the counters
//! equal to the stream. The longest silence after the fault is printed in a table
//! (`docs/scaling.md` keeps the measured one).
//!
//! Needs root for the namespaces: without it the test fails saying so.

mod accounts;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tapgate_device::sim::{self, SimConfig};
use tapgate_protocol::{keys, MessageKind, Topics};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_runtime::redis::{RedisLink, RedisTarget};
use tapgate_testkit::netns::{redis_server, Lab};
use tapgate_testkit::Mosquitto;
use tokio_util::sync::CancellationToken;

/// The data nodes and the sentinels, each its own namespace.
const DATA: [&str; 3] = ["p", "r1", "r2"];
const SENTINELS: [&str; 3] = ["s1", "s2", "s3"];

/// When the fault starts, after the simulator starts sending; how long a cut lasts; how long the
/// simulator sends.
const FAULT_AT: Duration = Duration::from_secs(4);
const CUT_FOR: Duration = Duration::from_secs(8);
const SENDING: Duration = Duration::from_secs(22);

/// The replicated Redis: three data nodes and three sentinels in a lab.
struct Cluster {
    lab: Lab,
    /// The lab's process index of each data node, in [`DATA`] order.
    data: Vec<usize>,
}

impl Cluster {
    /// `p` the primary, `r1` and `r2` its replicas, every write in the append-only file before
    /// it is acknowledged (a primary restarted at once comes back with all it acknowledged), and
    /// three sentinels (quorum 2, 1 s to call a node down).
    fn start() -> Self {
        let names: Vec<&str> = DATA.iter().chain(SENTINELS.iter()).copied().collect();
        let mut lab = Lab::new(&names);
        let redis = redis_server();
        let p = lab.node("p").ip.to_string();
        let mut data = Vec::new();
        for name in DATA {
            let dir = lab.dir().join(name);
            std::fs::create_dir_all(&dir).expect("node dir");
            let mut args: Vec<String> = [
                "--port",
                "6379",
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ]
            .map(str::to_owned)
            .to_vec();
            args.push(dir.display().to_string());
            if name != "p" {
                args.extend(["--replicaof".to_owned(), p.clone(), "6379".to_owned()]);
            }
            data.push(lab.spawn(name, &format!("redis-{name}"), &redis, &args, 6379));
        }
        for name in SENTINELS {
            let conf = lab.dir().join(format!("{name}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port 26379\nbind 0.0.0.0\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor tapgate {p} 6379 2\n\
                     sentinel down-after-milliseconds tapgate 1000\n\
                     sentinel failover-timeout tapgate 3000\n\
                     sentinel parallel-syncs tapgate 2\n",
                    dir = lab.dir().display()
                ),
            )
            .expect("sentinel.conf");
            lab.spawn(
                name,
                &format!("sentinel-{name}"),
                &redis,
                &[conf.display().to_string(), "--sentinel".to_owned()],
                26379,
            );
        }
        let cluster = Self { lab, data };
        cluster.wait_for("replicas in sync and sentinels that know all", |c| {
            DATA[1..].iter().all(|r| {
                c.cli(r, 6379, &["INFO", "replication"])
                    .contains("master_link_status:up")
            }) && SENTINELS.iter().all(|s| {
                let replicas = c.cli(s, 26379, &["SENTINEL", "replicas", "tapgate"]);
                let sentinels = c.cli(s, 26379, &["SENTINEL", "sentinels", "tapgate"]);
                DATA[1..]
                    .iter()
                    .all(|r| replicas.contains(&c.lab.node(r).ip.to_string()))
                    && SENTINELS
                        .iter()
                        .filter(|o| *o != s)
                        .all(|o| sentinels.contains(&c.lab.node(o).ip.to_string()))
            })
        });
        cluster
    }

    /// `redis+sentinel://s1,s2,s3/tapgate`.
    fn url(&self) -> String {
        let hosts: Vec<String> = SENTINELS
            .iter()
            .map(|s| format!("{}:26379", self.lab.node(s).ip))
            .collect();
        format!("redis+sentinel://{}/tapgate", hosts.join(","))
    }

    /// `redis-cli -h <node> -p port args…` from the test's namespace ("" when it fails).
    fn cli(&self, node: &str, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", &self.lab.node(node).ip.to_string()])
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The data node each sentinel names primary now.
    fn named(&self) -> Vec<String> {
        SENTINELS
            .iter()
            .map(|s| {
                let out = self.cli(
                    s,
                    26379,
                    &["SENTINEL", "get-master-addr-by-name", "tapgate"],
                );
                let ip = out.lines().next().unwrap_or_default().trim().to_owned();
                DATA.iter()
                    .find(|d| self.lab.node(d).ip.to_string() == ip)
                    .map_or(ip, |d| (*d).to_owned())
            })
            .collect()
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.lab.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A bridge process in the test's namespace, killed on drop.
struct BridgeProcess {
    log: PathBuf,
    child: Child,
}

impl BridgeProcess {
    fn start(redis: &str, broker: &Mosquitto, n: usize, dir: &Path, fares: &Path) -> Self {
        let log = dir.join(format!("bridge-{n}.log"));
        let out = std::fs::File::create(&log).expect("bridge log");
        let child = Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"))
            .args(["--redis", redis, "--mqtt", &broker.url()])
            .args(["--client-id", &format!("bridge-{n}")])
            .arg("--fares")
            .arg(fares)
            .args([
                "--shared-group",
                "tapgate-bridges",
                "--max-backoff",
                "500ms",
            ])
            .env_clear()
            .env("RUST_LOG", "warn,tapgate_bridge=info,tapgate_runtime=info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn tapgate-bridge");
        Self { log, child }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} -----\n{}", self.log.display(), self.log_text());
        }
    }
}

/// What a scenario does to the cluster.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The primary cut off from both replicas and all sentinels.
    PrimaryAlone,
    /// The primary, one replica and one sentinel cut off from the other replica and two sentinels.
    PrimaryAndReplica,
    /// The primary killed (-9) and started again 1.5 s later.
    FastRestart,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::PrimaryAlone => "primary alone cut off, 8 s",
            Fault::PrimaryAndReplica => "primary + replica + 1 sentinel vs the rest, 8 s",
            Fault::FastRestart => "primary killed, restarted after 1.5 s",
        }
    }
}

/// One scenario's outcome, a row of the table.
struct Row {
    fault: Fault,
    sent: u64,
    decided: u64,
    unanswered: u64,
    mismatches: u64,
    unexpected: u64,
    /// Stream events that differ from what the devices were told: (kind, in stream, told).
    stream_vs_devices: Vec<(String, i64, i64)>,
    /// Counters that differ from the stream: (counter, counted, in stream).
    counters_vs_stream: Vec<(String, i64, i64)>,
    silence: Duration,
    /// From the heal (or the restart) to the next decision.
    after_heal: Duration,
    primary_after: String,
}

impl Row {
    fn ok(&self) -> bool {
        self.unanswered == 0
            && self.mismatches == 0
            && self.unexpected == 0
            && self.stream_vs_devices.is_empty()
            && self.counters_vs_stream.is_empty()
            && self.decided > 0
    }
}

/// The longest time without a decision from `from` to `from + window` (or the last decision).
/// The simulator's grace (40 s) outlasts the window, so a silence is never cut short by the run's
/// end before its last decision.
fn longest_silence(times: &[Instant], from: Instant, window: Duration) -> Duration {
    let end = times
        .iter()
        .max()
        .copied()
        .map_or(from + window, |last| last.min(from + window));
    let mut points: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= end)
        .collect();
    points.push(from);
    points.push(end);
    points.sort();
    points
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(window)
}

/// `instant` as UTC wall-clock time (to read beside the logs).
fn wall(instant: Instant) -> String {
    let ago = Instant::now().saturating_duration_since(instant);
    let at = std::time::SystemTime::now() - ago;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000 % 24,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Records when every decision arrives (a watcher subscribed to all decision topics).
fn watch_decisions(broker: &Mosquitto, stop: CancellationToken) -> Arc<Mutex<Vec<Instant>>> {
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut opts = rumqttc::MqttOptions::new("watch-decisions", "127.0.0.1", broker.port());
    opts.set_clean_session(true);
    let (client, mut eventloop) = tapgate_runtime::mqtt::client(opts, 64);
    let out = times.clone();
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
                    out.lock().expect("times").push(Instant::now());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    times
}

async fn run_scenario(fault: Fault) -> Row {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let broker = Mosquitto::start();
    let url = cluster.url();
    let fares = cluster.lab.dir().join("fares.toml");
    std::fs::write(&fares, accounts::FARES).expect("fares");
    let bridges: Vec<BridgeProcess> = (0..3)
        .map(|n| BridgeProcess::start(&url, &broker, n, cluster.lab.dir(), &fares))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bridges
        .iter()
        .all(|b| b.log_text().contains("Subscribed; deciding"))
    {
        assert!(Instant::now() < deadline, "bridges did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop_watch = CancellationToken::new();
    let times = watch_decisions(&broker, stop_watch.clone());
    let cfg = SimConfig {
        broker: BrokerConfig::url(broker.url()),
        gates: 16,
        terminals: 4,
        riders: 600,
        rate: 150.0,
        duration: SENDING,
        grace: Duration::from_secs(40),
        seed: 26,
        drop_every: Duration::ZERO,
        garbage: 0.0,
        fares: Some(fares.clone()),
        ..SimConfig::default()
    };
    let sending = tokio::spawn(sim::run(cfg, CancellationToken::new()));
    let t0 = Instant::now();
    tokio::time::sleep_until((t0 + FAULT_AT).into()).await;
    let fault_at = Instant::now();
    let (cluster, healed) = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        match fault {
            Fault::PrimaryAlone => {
                cluster.lab.cut(&["p"], &["r1", "r2", "s1", "s2", "s3"]);
                std::thread::sleep(CUT_FOR);
                cluster.lab.heal();
            }
            Fault::PrimaryAndReplica => {
                cluster.lab.cut(&["p", "r1", "s1"], &["r2", "s2", "s3"]);
                std::thread::sleep(CUT_FOR);
                cluster.lab.heal();
            }
            Fault::FastRestart => {
                let p = cluster.data[0];
                cluster.lab.process(p).kill();
                std::thread::sleep(Duration::from_millis(1500));
                cluster.lab.process(p).start();
            }
        }
        (cluster, Instant::now())
    })
    .await
    .expect("fault");
    let summary = sending
        .await
        .expect("simulator task")
        .expect("simulator ran");
    stop_watch.cancel();
    let times = times.lock().expect("times").clone();
    let silence = longest_silence(&times, fault_at, Duration::from_secs(45));
    // From the heal (or the restarted primary listening) to the next decision.
    let after_heal = times
        .iter()
        .filter(|t| **t >= healed)
        .min()
        .map_or(Duration::MAX, |t| *t - healed);

    // What the devices were told against what the stream holds, on the primary the majority
    // names now.
    let mut link = RedisLink::connect(&url, RedisTarget::parse(&url, None).expect("url"))
        .await
        .expect("a primary after the heal");
    let accounts::Tally {
        counts: events,
        added,
        taken,
        ..
    } = accounts::tally(&mut link).await;
    let n = |k: &str| events.get(k).copied().unwrap_or(0);
    let told = |o: &str| i64::try_from(summary.decisions.get(o).copied().unwrap_or(0)).expect("n");
    // An entry is a pass used or a fare charged; a sale, a pass issued or a top-up.
    let stream_vs_devices = [
        (
            "pass-used + fare-charged",
            n("pass-used") + n("fare-charged"),
            "granted",
        ),
        ("pass-issued", n("pass-issued"), "pass_issued"),
        ("topped-up", n("topped-up"), "topped_up"),
        ("pass-denied", n("pass-denied"), "denied"),
    ]
    .into_iter()
    .map(|(event, count, outcome)| (event.to_owned(), count, told(outcome)))
    .filter(|(_, a, b)| a != b)
    .collect();
    let mut counters_vs_stream = Vec::new();
    for (key, count) in [
        (keys::COUNTERS_ENTRIES, n("pass-used") + n("fare-charged")),
        (keys::COUNTERS_ISSUED, n("pass-issued") + n("topped-up")),
        (keys::COUNTERS_DENIED, n("pass-denied")),
    ] {
        let counted = accounts::counter_sum(&mut link, key).await;
        if counted != count {
            counters_vs_stream.push((key.to_owned(), counted, count));
        }
    }
    // Money is conserved on every card, and the cards hold what the stream says went onto them
    // less what it says was taken.
    let accounts::Wallets {
        unbalanced, held, ..
    } = accounts::wallets(&mut link).await;
    counters_vs_stream.extend(unbalanced);
    if held != added - taken {
        counters_vs_stream.push(("balances held".to_owned(), held, added - taken));
    }
    println!(
        "{}: {} top-ups ({added}), {} fares charged ({taken}), {held} held on cards",
        fault.name(),
        n("topped-up"),
        n("fare-charged")
    );
    let primary_after = {
        let address = link.address().unwrap_or_default();
        DATA.iter()
            .find(|d| address.starts_with(&format!("{}:", cluster.lab.node(d).ip)))
            .map_or(address, |d| (*d).to_owned())
    };
    let named = tokio::task::block_in_place(|| cluster.named());
    // What the sentinels did, and how the first bridge followed (a few lines each).
    println!(
        "{}: fault at {}, healed at {}",
        fault.name(),
        wall(fault_at),
        wall(healed)
    );
    for line in cluster.lab.logs().lines().filter(|l| {
        l.contains("+switch-master")
            || l.contains("+convert-to-slave")
            || l.contains("+slave-reconf-done")
            || l.contains("+failover-end")
    }) {
        println!("sentinels: {line}");
    }
    for line in bridges[0]
        .log_text()
        .lines()
        .filter(|l| l.contains("tapgate_runtime::redis"))
    {
        println!("bridge-0: {line}");
    }
    println!("{}: sentinels name {named:?}", fault.name());
    println!("{}", summary.render());
    let row = Row {
        fault,
        sent: summary.taps_sent + summary.buttons_sent,
        decided: summary.decisions.values().sum(),
        unanswered: summary.lost,
        mismatches: summary.mismatches,
        unexpected: summary.unexpected,
        stream_vs_devices,
        counters_vs_stream,
        silence,
        after_heal,
        primary_after,
    };
    if !row.ok() {
        for b in &bridges {
            eprintln!("----- {} -----\n{}", b.log.display(), b.log_text());
        }
        eprintln!("{}", cluster.lab.logs());
        eprintln!("mismatches: {:?}", summary.mismatch_examples);
    }
    drop(bridges);
    drop(link);
    // Dropping the lab is blocking work (killing, deleting namespaces).
    let _ = tokio::task::spawn_blocking(|| drop(cluster)).await;
    row
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | sent | decided | unanswered | mismatches | stream = devices | counters = stream | longest silence | next decision after the heal | primary after |\n\
         |---|---:|---:|---:|---:|---|---|---:|---:|---|\n",
    );
    for r in rows {
        let same = |d: &[(String, i64, i64)]| {
            if d.is_empty() {
                "yes".to_owned()
            } else {
                format!("NO {d:?}")
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} s | {:.1} s | {} |\n",
            r.fault.name(),
            r.sent,
            r.decided,
            r.unanswered,
            r.mismatches + r.unexpected,
            same(&r.stream_vs_devices),
            same(&r.counters_vs_stream),
            r.silence.as_secs_f64(),
            r.after_heal.as_secs_f64(),
            r.primary_after,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_a_fast_restart_lose_no_acknowledged_decision() {
    let _ = tapgate_runtime::logging::init(tapgate_runtime::logging::LogFormat::Text, "warn");
    let mut rows = Vec::new();
    for fault in [
        Fault::PrimaryAlone,
        Fault::PrimaryAndReplica,
        Fault::FastRestart,
    ] {
        rows.push(run_scenario(fault).await);
    }
    println!("{}", table(&rows));
    for r in &rows {
        assert!(r.ok(), "{}: failed\n{}", r.fault.name(), table(&rows));
    }
    // A cut must have moved the primary, or the scenario did not test a failover.
    for r in &rows[..2] {
        assert_ne!(
            r.primary_after,
            "p",
            "{}: no failover happened",
            r.fault.name()
        );
    }
}
