//! Open-loop bridge benchmark that explains itself: real redis-server and mosquitto on free
//! ports, then on the same schedule a null bridge (a minimal MQTT client answering every tap with
//! a fixed decision, no Redis), the same client doing the bridge's per-tap I/O as well
//! (`null+redis`: one Redis round trip and one event per tap, one write per message) and the real
//! bridge (`target/release/tapgate-bridge`, built first if missing), all as child processes. Taps
//! go out at a fixed rate whatever the answers do; latency is measured from each tap's scheduled
//! send time (HdrHistogram). The three run side by side, each on its own topic prefix, and each
//! rate is measured for one after the other, so that all three meet the machine as it is within
//! seconds (its speed drifts over minutes on a shared host). Each first gets one unmeasured run
//! at the first rate; then rates rise, a process dropping out once p99 passes 10 ms or a tap goes
//! unanswered twice in a row at the same rate.
//!
//! No run overlaps the aftermath of the one before it: after each, the bench waits until the
//! Redis that run used has expired what the run left to expire (its waiting taps' seen records
//! live 6.5 s), up to 10 s. Redis expiring a run's records takes CPU from whatever runs next; on
//! two cores, that alone put the second of two identical builds a rate step behind the first. A
//! baseline build and the bridge also take turns at going first, rate by rate.
//!
//! `cargo run --release -p tapgate-bridge --example bench -- [seconds-per-rate] [first-rate] [step]`
//!
//! `TAPGATE_BENCH_BRIDGE=/path/to/tapgate-bridge` benchmarks that binary instead;
//! `TAPGATE_BENCH_BASELINE=/path/to/other/tapgate-bridge` runs a second build beside it (`baseline`,
//! e.g. the previous release) on a Redis of its own, measured at each rate within seconds of the
//! first, and compares the two at the end: highest rate and CPU per tap.
//!
//! `TAPGATE_BENCH_CALLGRIND=1` counts instead of timing: the bridge (and the baseline) run under
//! valgrind's callgrind, one run at the first rate each (e.g. `20 50 0`: 1,000 taps at 50/s),
//! instrumented only while those taps are answered, and the bench prints the instructions each
//! build executed per tap and their ratio, the same figures every run. `TAPGATE_BENCH_COUNTS=DIR`
//! keeps callgrind's files there, for `callgrind_annotate`.
//!
//! `TAPGATE_BENCH_PAYG=1` measures pay as you go: the bridge sells a catalogue with `[payg]` (fare
//! 250, capped at 700 a day) and half its cards have no pass but a balance, so half the taps are
//! charged from a wallet (three in a card's day, then capped at 0); the baseline, the same build
//! unless `TAPGATE_BENCH_BASELINE` names another, sells the same catalogue without `[payg]` to
//! cards that all hold passes. The end compares the two: what a pay-as-you-go mix costs per tap.
//!
//! Per rate: achieved rate, p50/p99/p99.9, CPU µs per tap of the answering process and its write
//! system calls per tap (`/proc/PID/io`), CPU µs per tap of mosquitto and redis-server
//! (`/proc/PID/stat`), Redis µs per script call (`INFO commandstats`) and Redis bytes per tap
//! retained (`used_memory` before and after the rate's taps); at the end, the bridge's CPU per tap
//! over each other process's, and `null+redis`'s over the null bridge's (what the I/O every
//! bridge must do costs by itself), at every rate both passed.

mod callgrind;
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tapgate_protocol::{
    keys, CardId, DeviceId, DeviceKind, EventKind, MessageKind, ProductId, Topics,
};
use tapgate_testkit::{Mosquitto, RedisServer};

const GATES: usize = 50;
const CARDS: usize = 500;
const P99_LIMIT: Duration = Duration::from_millis(10);

/// The answering processes, in the order they are measured.
const NULL: &str = "null bridge";
const FLOOR: &str = "null+redis";
const BRIDGE: &str = "bridge";
const BASELINE: &str = "baseline";

/// Each answering process has its own topic prefix, so all three run side by side and each rate
/// is measured for all three within seconds (the machine's speed drifts over minutes).
fn prefix(name: &str) -> &'static str {
    match name {
        NULL => "bench-null",
        FLOOR => "bench-floor",
        BASELINE => "bench-baseline",
        _ => "bench-bridge",
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("echo") {
        let port: u16 = args[1].parse().expect("port");
        echo(port, &args[2], args.get(3).cloned());
        return;
    }
    let opts = Options::from_args(&args);
    let lab = Lab::start(&opts);
    print_header(&opts);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut names = vec![NULL, FLOOR];
    if opts.baseline_bin.is_some() {
        names.push(BASELINE);
    }
    names.push(BRIDGE);
    let mut procs: Vec<Answerer> = names
        .into_iter()
        .map(|name| lab.answerer(name, &opts, &rt))
        .collect();
    for p in &procs {
        // Until the answering side is subscribed, taps would be lost: wait for a first answer.
        rt.block_on(p.load.warm_up());
        // One unmeasured run at the first rate, so that no process is measured cold.
        rt.block_on(p.load.run(opts.first, Duration::from_secs(opts.secs)));
    }
    if opts.counting {
        count_instructions(&rt, &procs, opts.first, opts.secs, &lab.counts_dir);
        return;
    }
    climb(&rt, &mut procs, &opts, lab.broker_pid);
    drop(rt);
    summarise(procs);
}

/// What the command line and the environment ask for.
struct Options {
    /// Seconds each rate is sent for.
    secs: u64,
    /// The first rate, and the step between rates, taps a second.
    first: u64,
    step: u64,
    /// The bridge measured, and the build beside it, if any.
    bridge_bin: PathBuf,
    baseline_bin: Option<PathBuf>,
    /// Pay as you go for the bridge (`TAPGATE_BENCH_PAYG=1`).
    payg: bool,
    /// Counting instructions under callgrind rather than timing.
    counting: bool,
}

impl Options {
    /// `[seconds-per-rate] [first-rate] [step]` and the `TAPGATE_BENCH_*` variables.
    fn from_args(args: &[String]) -> Self {
        let arg =
            |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
        let bridge_bin = bridge_binary();
        let payg = std::env::var_os("TAPGATE_BENCH_PAYG").is_some_and(|v| v == "1");
        let baseline_bin = std::env::var_os("TAPGATE_BENCH_BASELINE")
            .map(PathBuf::from)
            .or_else(|| payg.then(|| bridge_bin.clone()));
        Self {
            secs: arg(0, 4),
            first: arg(1, 1000),
            step: arg(2, 1000),
            bridge_bin,
            baseline_bin,
            payg,
            counting: callgrind::wanted(),
        }
    }
}

/// The servers and files every answering process shares.
struct Lab {
    redis: RedisServer,
    broker: Mosquitto,
    broker_pid: u32,
    /// The baseline build decides on a Redis of its own: two builds' function libraries under
    /// one name would replace each other on every call.
    baseline_redis: Option<RedisServer>,
    /// The fare catalogues, with and without pay as you go.
    bridge_fares: PathBuf,
    baseline_fares: PathBuf,
    _fares_dir: tempfile::TempDir,
    /// Where callgrind's files go.
    counts_dir: PathBuf,
    _counts: tempfile::TempDir,
    /// This program, run as the null bridge.
    exe: PathBuf,
}

impl Lab {
    /// Starts Redis (two with a baseline) and the broker, seeds the passes and writes the fares.
    fn start(opts: &Options) -> Self {
        let redis = RedisServer::start();
        let broker = Mosquitto::start();
        let baseline_redis = opts.baseline_bin.as_ref().map(|_| RedisServer::start());
        if let Some(r) = &baseline_redis {
            seed_passes(r.port(), false);
        }
        seed_passes(redis.port(), opts.payg);
        let fares_dir = tempfile::tempdir().expect("a temporary folder");
        let counts = tempfile::tempdir().expect("a temporary folder");
        Self {
            broker_pid: broker_pid(broker.dir()),
            bridge_fares: fares_file(fares_dir.path(), true),
            baseline_fares: fares_file(fares_dir.path(), false),
            _fares_dir: fares_dir,
            counts_dir: std::env::var_os("TAPGATE_BENCH_COUNTS")
                .map(PathBuf::from)
                .unwrap_or_else(|| counts.path().to_owned()),
            _counts: counts,
            exe: std::env::current_exe().expect("own path"),
            redis,
            broker,
            baseline_redis,
        }
    }

    /// Starts the process answering as `name`, and the load that drives it.
    fn answerer(
        &self,
        name: &'static str,
        opts: &Options,
        rt: &tokio::runtime::Runtime,
    ) -> Answerer {
        let redis = match (name, &self.baseline_redis) {
            (BASELINE, Some(r)) => r,
            _ => &self.redis,
        };
        let binary = match (name, &opts.baseline_bin) {
            (BRIDGE, _) => Some(&opts.bridge_bin),
            (BASELINE, Some(b)) => Some(b),
            _ => None,
        };
        let child = Reaped(match binary {
            Some(binary) => self.bridge(name, binary, redis, opts),
            None => {
                let mut echo = Command::new(&self.exe);
                echo.arg("echo")
                    .arg(self.broker.port().to_string())
                    .arg(prefix(name));
                if name == FLOOR {
                    echo.arg(redis.url());
                }
                echo.spawn().expect("echo starts")
            }
        });
        let load = rt.block_on(Load::connect(self.broker.port(), name));
        Answerer {
            name,
            redis_port: redis.port(),
            redis_pid: redis_pid(redis.port()),
            child,
            load,
            highest: 0,
            retried: false,
            done: false,
            cpu: Vec::new(),
        }
    }

    /// Starts a bridge build, `binary`, as `name` on `redis` (under callgrind when counting).
    fn bridge(
        &self,
        name: &'static str,
        binary: &Path,
        redis: &RedisServer,
        opts: &Options,
    ) -> std::process::Child {
        let mut cmd = if opts.counting {
            callgrind::command(binary, &self.counts_dir, name)
        } else {
            Command::new(binary)
        };
        if opts.payg {
            let file = if name == BRIDGE {
                &self.bridge_fares
            } else {
                &self.baseline_fares
            };
            cmd.arg("--fares").arg(file);
        }
        // The bench drives thousands of taps a second from 50 gates: far beyond the per-device
        // rate limit, which is switched off (through the environment, which an older baseline
        // build ignores, where it would refuse an unknown flag).
        cmd.env("TAPGATE_DEVICE_RATE", "0")
            .arg("--redis")
            .arg(redis.url())
            .arg("--mqtt")
            .arg(self.broker.url())
            .arg("--prefix")
            .arg(prefix(name))
            // Two builds side by side need two MQTT sessions.
            .arg("--client-id")
            .arg(prefix(name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bridge starts")
    }
}

/// A fare catalogue of one two-hour pass at 400, with pay as you go or without, written in `dir`.
fn fares_file(dir: &Path, with_payg: bool) -> PathBuf {
    let path = dir.join(if with_payg {
        "payg.toml"
    } else {
        "passes.toml"
    });
    let mut text = String::from(
        "currency = \"EUR\"\ntime_zone = \"Europe/Dublin\"\n\n[[product]]\nid = \"TWO_HOUR\"\n\
         name = \"Two hours\"\nprice = 400\nvalidity = \"period\"\nduration = \"2h\"\n",
    );
    if with_payg {
        text += "\n[payg]\nfare = 250\ndaily_cap = 700\nweekly_cap = 3000\n";
    }
    std::fs::write(&path, text).expect("fares written");
    path
}

/// What is measured, and the table's heading.
fn print_header(opts: &Options) {
    println!(
        "open loop, {GATES} gates, {CARDS} cards with two-hour passes, {} s per rate, loopback; p99 limit {P99_LIMIT:?}",
        opts.secs
    );
    if opts.payg {
        println!(
            "pay as you go: the bridge's odd cards have no pass but a balance (fare 250, daily cap 700); {BASELINE} is all passes"
        );
    }
    println!(
        "{:<12} {:>7} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "answered by",
        "rate",
        "achieved",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "lost",
        "µs/tap",
        "writes",
        "broker",
        "redis",
        "redis/call",
        "redis B/tap"
    );
}

/// Raises the rate step by step, measuring each process still in at each rate, until every one
/// has dropped out. The machine is shared: a rate fails only when it fails twice in a row.
fn climb(rt: &tokio::runtime::Runtime, procs: &mut [Answerer], opts: &Options, broker_pid: u32) {
    let tick = clock_ticks();
    let mut rate = opts.first;
    let mut order: Vec<usize> = (0..procs.len()).collect();
    while procs.iter().any(|p| !p.done) {
        for &i in &order {
            let p = &mut procs[i];
            while !p.done {
                if let Some(cpu) = measure(rt, p, rate, opts.secs, broker_pid, tick) {
                    p.retried = false;
                    p.highest = rate;
                    p.cpu.push((rate, cpu));
                    break;
                }
                // What it still owes is answered before anything else is measured.
                std::thread::sleep(Duration::from_secs(3));
                p.done = p.retried;
                p.retried = true;
            }
        }
        rate += opts.step;
        // The baseline and the bridge (the last two) swap places for the next rate.
        let n = order.len();
        if opts.baseline_bin.is_some() {
            order.swap(n - 2, n - 1);
        }
    }
}

/// One run of `p` at `rate`: prints its row, waits for its Redis to settle, and returns its CPU
/// µs per tap if it passed (every tap answered, p99 within the limit).
fn measure(
    rt: &tokio::runtime::Runtime,
    p: &Answerer,
    rate: u64,
    secs: u64,
    broker_pid: u32,
    tick: f64,
) -> Option<f64> {
    let pids = [p.child.0.id(), broker_pid, p.redis_pid];
    let cpu0 = pids.map(cpu_ticks);
    let writes0 = writes(p.child.0.id());
    let (calls0, usec0) = decide_calls(p.redis_port);
    let mem0 = used_memory(p.redis_port);
    let expiring0 = expiring(p.redis_port);
    let r = rt.block_on(p.load.run(rate, Duration::from_secs(secs)));
    let cpu1 = pids.map(cpu_ticks);
    let writes_per_tap = (writes(p.child.0.id()) - writes0) as f64 / r.sent.max(1) as f64;
    let (calls1, usec1) = decide_calls(p.redis_port);
    let mem1 = used_memory(p.redis_port);
    let per_tap = |i: usize| (cpu1[i] - cpu0[i]) as f64 * 1e6 / tick / r.sent.max(1) as f64;
    let calls = calls1 - calls0;
    let script = if calls > 0 {
        format!("{:.1}", (usec1 - usec0) as f64 / calls as f64)
    } else {
        "-".into()
    };
    let retained = if calls > 0 {
        format!("{:.0}", (mem1 - mem0) as f64 / r.sent.max(1) as f64)
    } else {
        "-".into()
    };
    println!(
        "{:<12} {:>7} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>9.1} {:>8.2} {:>9.1} {:>9.1} {:>10} {:>10}",
        p.name,
        rate,
        r.achieved,
        ms(r.hist.value_at_quantile(0.5)),
        ms(r.hist.value_at_quantile(0.99)),
        ms(r.hist.value_at_quantile(0.999)),
        r.sent - r.answered,
        per_tap(0),
        writes_per_tap,
        per_tap(1),
        per_tap(2),
        script,
        retained
    );
    std::thread::sleep(Duration::from_millis(500));
    settle(p.redis_port, expiring0);
    let ok =
        r.sent == r.answered && Duration::from_micros(r.hist.value_at_quantile(0.99)) <= P99_LIMIT;
    ok.then(|| per_tap(0))
}

/// The comparisons: each process's CPU per tap over another's at every rate both passed, and
/// the highest rate each reached.
fn summarise(procs: Vec<Answerer>) {
    let mut best = HashMap::new();
    let mut cpu: HashMap<&str, Vec<(u64, f64)>> = HashMap::new();
    for mut p in procs {
        best.insert(p.name, p.highest);
        cpu.insert(p.name, std::mem::take(&mut p.cpu));
    }
    let none = Vec::new();
    let cpu_of = |name: &str| cpu.get(name).unwrap_or(&none);
    // The bridge against each other process, and the floor (its I/O alone) against the null
    // bridge: what any bridge making the Redis round trip and publishing the event must cost.
    for (one, other) in [
        (BRIDGE, NULL),
        (BRIDGE, FLOOR),
        (FLOOR, NULL),
        (BRIDGE, BASELINE),
    ] {
        for (rate, cost) in cpu_of(one) {
            if let Some((_, base)) = cpu_of(other).iter().find(|(r, _)| r == rate) {
                println!(
                    "at {rate}/s: {one} {cost:.1} µs CPU per tap, {other} {base:.1} ({:.2} x)",
                    cost / base.max(f64::MIN_POSITIVE)
                );
            }
        }
    }
    let null = best[NULL];
    let ratio = |n: u64| {
        if null == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", n as f64 / null as f64)
        }
    };
    println!(
        "highest rate with p99 <= {P99_LIMIT:?} and nothing lost: {NULL} {null}/s, {FLOOR} {}/s (x {}), {BRIDGE} {}/s (x {})",
        best[FLOOR],
        ratio(best[FLOOR]),
        best[BRIDGE],
        ratio(best[BRIDGE])
    );
    if let Some(&base) = best.get(BASELINE) {
        let over = if base == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", best[BRIDGE] as f64 / base as f64)
        };
        println!(
            "{BASELINE} {base}/s (x {}); {BRIDGE} over {BASELINE}: {over}",
            ratio(base)
        );
    }
}

/// Under callgrind: one run at `rate` per bridge build, counted, and the two compared.
fn count_instructions(
    rt: &tokio::runtime::Runtime,
    procs: &[Answerer],
    rate: u64,
    secs: u64,
    dir: &Path,
) {
    let mut per_tap = HashMap::new();
    for p in procs
        .iter()
        .filter(|p| [BRIDGE, BASELINE].contains(&p.name))
    {
        let pid = p.child.0.id();
        callgrind::start(pid);
        let r = rt.block_on(p.load.run(rate, Duration::from_secs(secs)));
        // Answers still on their way under callgrind's slowdown are part of the count.
        let answered = rt.block_on(p.load.answered_within(r.sent, Duration::from_secs(60)));
        let instructions = callgrind::stop(pid, dir, p.name);
        let each = instructions as f64 / r.sent.max(1) as f64;
        println!(
            "{:<12} {} taps at {rate}/s, {answered} answered: {instructions} instructions, {each:.0} per tap",
            p.name, r.sent
        );
        per_tap.insert(p.name, each);
    }
    if let (Some(now), Some(base)) = (per_tap.get(BRIDGE), per_tap.get(BASELINE)) {
        println!(
            "instructions per tap, {BRIDGE} over {BASELINE}: {:.3} x",
            now / base.max(f64::MIN_POSITIVE)
        );
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `$TAPGATE_BENCH_BRIDGE`, else `target/release/tapgate-bridge`, built when missing.
fn bridge_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TAPGATE_BENCH_BRIDGE") {
        return bin.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = root.join("target/release/tapgate-bridge");
    if !bin.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "-p",
                "tapgate-bridge",
                "--bin",
                "tapgate-bridge",
            ])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the bridge builds");
    }
    bin
}

/// The null bridge: answers every gate tap with a fixed `granted`, touching nothing else. It does
/// the MQTT work the bridge must do and no more: a persistent QoS 1 subscription, the answer at
/// QoS 1, and the tap acknowledged only after its answer is handed to the client (manual acks),
/// on the same single-threaded runtime as the bridge.
///
/// Given a Redis URL it is the floor under the bridge instead (`null+redis`): per tap, also one
/// Redis round trip (`PING` on one multiplexed connection, concurrent taps pipelined) before the
/// answer, and one event published at QoS 0 after it, as the bridge publishes `pass-used`. What
/// the bridge costs beyond this is its own work: checking the tap, the decide call's arguments
/// and result, building the answer and the event.
fn echo(port: u16, prefix: &str, redis_url: Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let redis = match redis_url {
            Some(url) => Some(
                redis::Client::open(url)
                    .expect("redis url")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("redis connects"),
            ),
            None => None,
        };
        let topics = Topics::new(prefix).expect("prefix");
        let event_topic = topics.event(EventKind::PassUsed, Some(ProductId::TWO_HOUR));
        let mut opts = MqttOptions::new(prefix, "127.0.0.1", port);
        opts.set_inflight(200)
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = tapgate_runtime::mqtt::client(opts, 65_536);
        client
            .subscribe(
                topics.every_device(DeviceKind::Gate, MessageKind::Tap),
                QoS::AtLeastOnce,
            )
            .await
            .expect("subscribe");
        loop {
            let Ok(event) = events.poll().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Event::Incoming(Packet::Publish(p)) = event else {
                continue;
            };
            let answer = topics.parse(&p.topic).ok().and_then(|inbound| {
                let tap = serde_json::from_slice::<serde_json::Value>(&p.payload).ok()?;
                let id = tap.get("id")?.as_str()?;
                let answer = serde_json::json!({"id": id, "outcome": "granted"}).to_string();
                Some((topics.decision(inbound.kind, &inbound.device), answer))
            });
            let Some(mut conn) = redis.clone() else {
                if let Some((topic, answer)) = answer {
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, false, answer);
                }
                let _ = client.try_ack(&p);
                continue;
            };
            let (client, event_topic) = (client.clone(), event_topic.clone());
            tokio::spawn(async move {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if let (Ok(_), Some((topic, answer))) = (pong, answer) {
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, false, answer.clone());
                    let _ = client.try_publish(event_topic, QoS::AtMostOnce, false, answer);
                }
                let _ = client.try_ack(&p);
            });
        }
    });
}

/// A child process killed when dropped, so that a benchmark that stops early (a panic) leaves no
/// bridge or null bridge running after it.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One answering process and how far it got.
struct Answerer {
    name: &'static str,
    /// The Redis it decides on, and that server's process.
    redis_port: u16,
    redis_pid: u32,
    child: Reaped,
    load: Load,
    /// Highest rate passed so far.
    highest: u64,
    /// The last run failed once already.
    retried: bool,
    /// Failed twice in a row: no higher rates.
    done: bool,
    /// CPU µs per tap at each rate it passed.
    cpu: Vec<(u64, f64)>,
}

/// What one rate gave.
struct RunResult {
    sent: u64,
    answered: u64,
    achieved: f64,
    hist: Histogram<u64>,
}

/// The shared view of a run: when it started, its period, and what came back.
struct RunState {
    run: u64,
    start: Instant,
    period: Duration,
    hist: Histogram<u64>,
    answered: u64,
    last: Instant,
}

/// The gates: one MQTT client publishing every gate's taps and receiving every gate's answers.
struct Load {
    client: AsyncClient,
    state: Arc<Mutex<RunState>>,
    topics: Vec<String>,
    runs: std::sync::atomic::AtomicU64,
}

impl Load {
    async fn connect(port: u16, name: &str) -> Self {
        let scheme = Topics::new(prefix(name)).expect("prefix");
        let mut opts = MqttOptions::new(format!("{}-gates", prefix(name)), "127.0.0.1", port);
        opts.set_inflight(u16::MAX)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = tapgate_runtime::mqtt::client(opts, 1 << 20);
        client
            .subscribe(
                scheme.every_device(DeviceKind::Gate, MessageKind::Decision),
                QoS::AtLeastOnce,
            )
            .await
            .expect("subscribe");
        let state = Arc::new(Mutex::new(RunState {
            run: 0,
            start: Instant::now(),
            period: Duration::from_millis(1),
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
            answered: 0,
            last: Instant::now(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok(event) = events.poll().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Event::Incoming(Packet::Publish(p)) = event else {
                    continue;
                };
                let now = Instant::now();
                let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                    continue;
                };
                let Some((run, k)) = answer
                    .get("id")
                    .and_then(|v| v.as_str())
                    .and_then(|id| id.split_once('-'))
                    .and_then(|(r, k)| {
                        Some((
                            r.strip_prefix('r')?.parse::<u64>().ok()?,
                            k.parse::<u32>().ok()?,
                        ))
                    })
                else {
                    continue;
                };
                let mut s = shared.lock().expect("state");
                if run != s.run {
                    continue;
                }
                let scheduled = s.start + s.period * k;
                let us = u64::try_from(now.saturating_duration_since(scheduled).as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                s.hist.saturating_record(us);
                s.answered += 1;
                s.last = now;
            }
        });
        let topics = (0..GATES)
            .map(|g| {
                let device = DeviceId::new(format!("g{g}")).expect("device");
                scheme.tap(DeviceKind::Gate, &device)
            })
            .collect();
        Self {
            client,
            state,
            topics,
            runs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Sends one tap a second until one is answered (the answering side has subscribed).
    async fn warm_up(&self) {
        for _ in 0..30 {
            let r = self.run(20, Duration::from_millis(500)).await;
            if r.answered > 0 {
                return;
            }
        }
        panic!("nothing answers taps");
    }

    /// How many of the last run's taps are answered, waiting up to `limit` for all `sent`.
    async fn answered_within(&self, sent: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let answered = self.state.lock().expect("state").answered;
            if answered >= sent || Instant::now() > deadline {
                return answered;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run(&self, rate: u64, length: Duration) -> RunResult {
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
        let total = u32::try_from(rate * length.as_millis() as u64 / 1000).expect("taps");
        let start = Instant::now() + Duration::from_millis(20);
        {
            let mut s = self.state.lock().expect("state");
            s.run = run;
            s.start = start;
            s.period = period;
            s.hist.reset();
            s.answered = 0;
        }
        let mut k: u32 = 0;
        while k < total {
            let due = start + period * k;
            tokio::time::sleep_until(due.into()).await;
            let now = Instant::now();
            // Everything due by now goes out now: the schedule, not the answers, sets the pace.
            while k < total && start + period * k <= now {
                let card = CardId::new(format!("C{:07}", k as usize % CARDS)).expect("card");
                let time = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("clock")
                    .as_millis();
                let payload = format!(
                    r#"{{"id":"r{run}-{k}","card":"{card}","time":{time},"mode":"online"}}"#
                );
                self.client
                    .publish(
                        &self.topics[k as usize % GATES],
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await
                    .expect("publish");
                k += 1;
            }
        }
        // Wait for the answers still on their way (2 s at most after the last is due).
        let end = start + period * total;
        let deadline = end + Duration::from_secs(2);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let s = self.state.lock().expect("state");
            if u64::from(total) == s.answered || Instant::now() > deadline {
                break;
            }
        }
        let s = self.state.lock().expect("state");
        let span = s.last.saturating_duration_since(start).max(end - start);
        RunResult {
            sent: u64::from(total),
            answered: s.answered,
            achieved: s.answered as f64 / span.as_secs_f64(),
            hist: s.hist.clone(),
        }
    }
}

/// Two-hour passes for every card, so every tap is a grant; with `payg`, only for even cards,
/// and odd ones a balance no entry can exhaust, so they are charged as you go.
fn seed_passes(port: u16, payg: bool) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let mut con = client.get_connection().expect("redis");
    let mut pipe = redis::pipe();
    for n in 0..CARDS {
        let card = CardId::new(format!("C{n:07}")).expect("card");
        if payg && n % 2 == 1 {
            pipe.hset_multiple(
                keys::wallet(&card),
                &[
                    ("balance", "100000000"),
                    ("topped_up", "100000000"),
                    ("charged", "0"),
                ],
            )
            .ignore();
            continue;
        }
        pipe.hset_multiple(
            keys::pass(&card),
            &[("type", "TWO_HOUR"), ("trips", "0"), ("issued_at", "0")],
        )
        .ignore();
    }
    pipe.query::<()>(&mut con).expect("passes");
}

fn redis_info(port: u16, section: &str) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let mut con = client.get_connection().expect("redis");
    redis::cmd("INFO")
        .arg(section)
        .query(&mut con)
        .expect("INFO")
}

fn info_field(info: &str, name: &str) -> Option<i64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

fn redis_pid(port: u16) -> u32 {
    let pid = info_field(&redis_info(port, "server"), "process_id:").expect("process_id");
    u32::try_from(pid).expect("pid")
}

/// Keys with a lifetime in the Redis on `port` (`INFO keyspace`, db0).
fn expiring(port: u16) -> i64 {
    let info = redis_info(port, "keyspace");
    info.lines()
        .find_map(|l| l.strip_prefix("db0:"))
        .and_then(|db| db.split(',').find_map(|kv| kv.strip_prefix("expires=")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (up to 10 s) until the Redis on `port` holds no more keys with a lifetime than `before`
/// (within 1 %): what a run left to expire is gone before the next run is measured.
fn settle(port: u16, before: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while expiring(port) > before + before / 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn used_memory(port: u16) -> i64 {
    info_field(&redis_info(port, "memory"), "used_memory:").expect("used_memory")
}

/// Decide calls (`FCALL` of the bridge's function library) and µs so far.
fn decide_calls(port: u16) -> (u64, u64) {
    stats::command_calls(&redis_info(port, "commandstats"), "fcall")
}

/// The mosquitto process whose command line names its directory.
fn broker_pid(dir: &Path) -> u32 {
    let dir = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("mosquitto") && cmdline.contains(&dir) {
            return pid;
        }
    }
    panic!("no mosquitto process for {dir}");
}

/// User plus system CPU of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    num(11) + num(12)
}

/// Write system calls made by `pid` so far (`syscw` in `/proc/PID/io`): one per flush to a
/// socket, so per tap it shows how well the process batches its writes.
fn writes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
