//! What one decision costs Redis, with nothing else running: gate taps pipelined straight into an
//! idle redis-server, the decide function as it is now (`FCALL` of the bridge's function library)
//! against the baseline, the script as it was before the idempotency records were made lean
//! (`decide_main.lua`, `EVALSHA`, kept here to be measured in the same run); then, for both, a
//! day of taps with shortened lifetimes to show that Redis memory comes back to where it started.
//!
//! `cargo run --release -p tapgate-bridge --example script_cost -- [taps] [cards] [day-taps] [rounds]`
//!
//! Per version: Redis CPU per call (`INFO commandstats`, `fcall` or `evalsha`), Redis memory
//! retained per tap right after the taps (`used_memory` delta) and once the idempotency records
//! have expired.

mod stats;

use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::Script;
use tapgate_bridge::store::library::Library;
use tapgate_bridge::store::{decide_command, Request, StoreSettings};
use tapgate_protocol::rules::{Input, TimeSettings};
use tapgate_protocol::{fields, keys, CardId, DeviceId, DeviceKind, MessageId, Stamp};
use tapgate_testkit::RedisServer;

const OLD: &str = include_str!("decide_main.lua");

/// The decide code measured: the library as now, or the script as it was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Old,
    New,
}

impl Version {
    /// The `INFO commandstats` entry its calls are counted under.
    fn command(self) -> &'static str {
        match self {
            Version::Old => "evalsha",
            Version::New => "fcall",
        }
    }
}
const GATES: usize = 50;

/// Settings handed to the script, as the bridge hands them (defaults unless shortened).
#[derive(Clone, Copy)]
struct Settings {
    seen_ttl_s: u64,
    stream_maxlen: u64,
    recent_ttl_s: u64,
    device_ttl_s: u64,
    window_ms: u64,
    max_future_ms: u64,
}

impl Settings {
    /// The bridge's settings with these lifetimes.
    fn store(self) -> StoreSettings {
        StoreSettings {
            legacy_period_ms: 2 * 3600 * 1000,
            sale_timeout_ms: 30_000,
            seen_ttl_s: self.seen_ttl_s,
            stream_maxlen: self.stream_maxlen,
            recent_ttl_s: self.recent_ttl_s,
            device_ttl_s: self.device_ttl_s,
            time: TimeSettings {
                decision_window_ms: self.window_ms,
                max_future_ms: self.max_future_ms,
                max_skew_ms: 1000,
                ..TimeSettings::default()
            },
        }
    }
}

fn library() -> &'static Library {
    static LIBRARY: LazyLock<Library> = LazyLock::new(Library::new);
    &LIBRARY
}

fn old_script() -> &'static Script {
    static OLD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OLD));
    &OLD_SCRIPT
}

const DEFAULTS: Settings = Settings {
    seen_ttl_s: 24 * 3600,
    stream_maxlen: 1_000_000,
    recent_ttl_s: 30 * 24 * 3600,
    device_ttl_s: 30 * 24 * 3600,
    window_ms: 1500,
    max_future_ms: 5000,
};

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

fn card(n: usize) -> CardId {
    CardId::new(format!("C{n:07}")).expect("card")
}

/// Adds one stamped, waiting gate tap to `pipe`, with the keys and arguments `Store::decide`
/// passes.
fn tap(
    pipe: &mut redis::Pipeline,
    version: Version,
    s: Settings,
    n: usize,
    cards: usize,
    run: &str,
) {
    let device = DeviceId::new(format!("g{}", n % GATES)).expect("device");
    let id = MessageId::new(format!("{run}{n}")).expect("id");
    let c = card(n % cards);
    let now = now_ms();
    if version == Version::New {
        let input = Input::GateTap(c.clone());
        let req = Request {
            kind: DeviceKind::Gate,
            device: &device,
            id: &id,
            input: &input,
            now_ms: now,
            stamp: Some(Stamp::online(now)),
            replaces: None,
            day: None,
            catalogue: "bench",
            payg: None,
            top_ups: false,
        };
        pipe.add_command(decide_command(library(), &s.store().decide_arg(), &req))
            .ignore();
        return;
    }
    // The baseline script's keys, in its order.
    let k = [
        keys::seen(DeviceKind::Gate, &device, &id),
        keys::sale(&device),
        keys::EVENTS_STREAM.to_owned(),
        keys::COUNTERS_ISSUED.to_owned(),
        keys::COUNTERS_ENTRIES.to_owned(),
        keys::COUNTERS_DENIED.to_owned(),
        keys::device_counters(&device),
        keys::device(DeviceKind::Gate, &device),
        keys::COUNTERS_UNPAID.to_owned(),
        keys::COUNTERS_STALE.to_owned(),
        keys::pass(&c),
        keys::blocked(&c),
        keys::card_recent(&c),
    ];
    let mut inv = old_script().prepare_invoke();
    for key in &k {
        inv.key(key);
    }
    inv.arg("gate")
        .arg(now)
        .arg(device.as_str())
        .arg("gate")
        .arg(id.as_str())
        .arg(c.as_str())
        .arg("")
        .arg(2 * 3600 * 1000u64)
        .arg(30_000u64)
        .arg(s.seen_ttl_s)
        .arg(s.stream_maxlen)
        .arg(keys::CARD_RECENT_LEN)
        .arg(s.recent_ttl_s)
        .arg(s.device_ttl_s)
        .arg(now.to_string())
        .arg("online")
        .arg(s.window_ms)
        .arg(s.max_future_ms)
        .arg(1000u64);
    pipe.invoke_script(&inv).ignore();
}

async fn info(con: &mut MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .expect("INFO")
}

async fn used_memory(con: &mut MultiplexedConnection) -> i64 {
    let info = info(con, "memory").await;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// Calls of `version` and µs so far.
async fn calls(con: &mut MultiplexedConnection, version: Version) -> (u64, u64) {
    stats::command_calls(&info(con, "commandstats").await, version.command())
}

/// Runs `taps` taps through `version` in pipelines of 1,000.
async fn push(
    con: &mut MultiplexedConnection,
    version: Version,
    s: Settings,
    taps: usize,
    cards: usize,
    run: &str,
) {
    let mut n = 0;
    while n < taps {
        let mut pipe = redis::pipe();
        for _ in 0..1000.min(taps - n) {
            tap(&mut pipe, version, s, n, cards, run);
            n += 1;
        }
        pipe.query_async::<()>(con).await.expect("pipeline");
    }
}

/// A fresh Redis with `cards` two-hour passes, each already activated by one tap.
async fn prepared(
    version: Version,
    s: Settings,
    cards: usize,
) -> (RedisServer, MultiplexedConnection) {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).expect("url");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect");
    match version {
        Version::Old => {
            old_script()
                .prepare_invoke()
                .load_async(&mut con)
                .await
                .expect("load");
        }
        Version::New => library().load(&mut con).await.expect("load"),
    }
    // Each version's passes as its own sales write them: the baseline's type and counts; now,
    // the terms in one field and where and when the pass was sold.
    let two_hour_terms = format!("period 0 {} 0 EUR builtin", s.store().legacy_period_ms);
    let record: Vec<(&str, &str)> = match version {
        Version::Old => vec![
            (fields::pass::TYPE, "TWO_HOUR"),
            (fields::pass::TRIPS, "0"),
            (fields::pass::ISSUED_AT, "0"),
        ],
        Version::New => vec![
            (fields::pass::TYPE, "TWO_HOUR"),
            (fields::pass::TERMS, &two_hour_terms),
            (fields::pass::TRIPS, "0"),
            (fields::pass::ISSUED_AT, "0"),
            (fields::pass::SOLD_BY, "t1"),
            (fields::pass::DAY, "2026-12-07"),
        ],
    };
    let mut pipe = redis::pipe();
    for n in 0..cards {
        pipe.hset_multiple(keys::pass(&card(n)), &record).ignore();
    }
    pipe.query_async::<()>(&mut con).await.expect("passes");
    push(&mut con, version, s, cards, cards, "warm").await;
    (redis, con)
}

/// Entries granted on the two-hour passes so far.
async fn granted(con: &mut MultiplexedConnection) -> i64 {
    redis::cmd("HGET")
        .arg(keys::COUNTERS_ENTRIES)
        .arg("TWO_HOUR")
        .query_async::<Option<i64>>(con)
        .await
        .expect("HGET")
        .unwrap_or(0)
}

struct Cost {
    us_per_call: f64,
    bytes_now: f64,
    bytes_later: f64,
}

async fn cost(name: &str, version: Version, taps: usize, cards: usize) -> Cost {
    let (_redis, mut con) = prepared(version, DEFAULTS, cards).await;
    // Let the warm-up's idempotency records expire so the baseline holds only passes.
    tokio::time::sleep(Duration::from_millis(
        DEFAULTS.window_ms + DEFAULTS.max_future_ms + 500,
    ))
    .await;
    let base = used_memory(&mut con).await;
    let (calls0, usec0) = calls(&mut con, version).await;
    let granted0 = granted(&mut con).await;
    let started = Instant::now();
    push(&mut con, version, DEFAULTS, taps, cards, "t").await;
    let elapsed = started.elapsed();
    let (calls1, usec1) = calls(&mut con, version).await;
    // Every tap is an entry on an active pass: a figure for anything else measures the wrong path.
    let entries = granted(&mut con).await - granted0;
    assert_eq!(
        entries, taps as i64,
        "{name}: {entries} of {taps} taps granted"
    );
    let now = used_memory(&mut con).await;
    tokio::time::sleep(Duration::from_millis(
        DEFAULTS.window_ms + DEFAULTS.max_future_ms + 1500,
    ))
    .await;
    let later = used_memory(&mut con).await;
    let per = |b: i64| b as f64 / taps as f64;
    let c = Cost {
        us_per_call: (usec1 - usec0) as f64 / (calls1 - calls0).max(1) as f64,
        bytes_now: per(now - base),
        bytes_later: per(later - base),
    };
    println!(
        "  {name:<10} {:>6.1} µs/call   {:>6.0} B/tap right after   {:>6.0} B/tap 8 s later   ({:.0} calls/s end to end)",
        c.us_per_call,
        c.bytes_now,
        c.bytes_later,
        taps as f64 / elapsed.as_secs_f64()
    );
    c
}

/// A day of taps with every lifetime shortened: memory must come back to the baseline (plus
/// the capped stream).
async fn day(name: &str, version: Version, taps: usize, cards: usize) {
    let s = Settings {
        seen_ttl_s: 1,
        stream_maxlen: 1000,
        recent_ttl_s: 2,
        device_ttl_s: 2,
        window_ms: 200,
        max_future_ms: 200,
    };
    let (_redis, mut con) = prepared(version, s, cards).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base = used_memory(&mut con).await;
    let keys_before: u64 = redis::cmd("DBSIZE")
        .query_async(&mut con)
        .await
        .expect("dbsize");
    let started = Instant::now();
    push(&mut con, version, s, taps, cards, "d").await;
    let peak = used_memory(&mut con).await;
    println!(
        "  {name:<10} {taps} taps on {cards} cards in {:.1?}: baseline {base} B ({keys_before} keys), right after {peak} B (+{})",
        started.elapsed(),
        peak - base
    );
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let m = used_memory(&mut con).await;
        let keys: u64 = redis::cmd("DBSIZE")
            .query_async(&mut con)
            .await
            .expect("dbsize");
        let stream: u64 = redis::cmd("XLEN")
            .arg(keys::EVENTS_STREAM)
            .query_async(&mut con)
            .await
            .expect("xlen");
        if keys <= keys_before {
            println!(
                "  {name:<10} after {:.0?}: {m} B ({:+} B against the baseline), {keys} keys, stream {stream} entries (capped at ~{})",
                started.elapsed(),
                m - base,
                s.stream_maxlen
            );
            return;
        }
    }
    println!("  {name:<10} memory did not come back within 30 s");
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let taps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let cards: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let day_taps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);

    println!(
        "decide script alone: {taps} stamped gate taps on {cards} activated two-hour passes, {GATES} gates, pipelined into an idle Redis"
    );
    // Alternated rounds on fresh servers; the machine is shared, so the least CPU of each counts.
    let mut old = Vec::new();
    let mut new = Vec::new();
    for _ in 0..rounds {
        old.push(cost("baseline", Version::Old, taps, cards).await);
        new.push(cost("now", Version::New, taps, cards).await);
    }
    let least = |v: &[Cost]| {
        v.iter()
            .map(|c| c.us_per_call)
            .fold(f64::INFINITY, f64::min)
    };
    let (o, n) = (least(&old), least(&new));
    println!(
        "  least of {rounds} rounds: baseline {o:.1} µs/call, now {n:.1} µs/call; ratio now / baseline: CPU per call {:.2}, memory per tap right after {:.2}, 8 s later {:.2}",
        n / o,
        new[0].bytes_now / old[0].bytes_now,
        new[0].bytes_later / old[0].bytes_later
    );
    println!(
        "memory over a day, lifetimes shortened (seen 1 s, recent 2 s, device 2 s, stream ~1000):"
    );
    if day_taps > 0 {
        day("baseline", Version::Old, day_taps, cards).await;
        day("now", Version::New, day_taps, cards).await;
    }
}
