//! Redis at its memory limit, under the policy the project ships (`docker/redis.conf`): a flood
//! of taps by unknown cards fills it, and then every tap is refused, clearly and without being
//! stored, while every pass already sold is still there. On a real redis-server and mosquitto.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde_json::Value;
use support::{buy, Device, MessageTopic, Stack};
use tapgate_protocol::{fields, keys, CardId, DeviceKind};

/// Cards sold a two-hour pass and let in once, so their passes carry an expiry (`PEXPIRE`).
const RIDERS: usize = 30;
/// Room left in Redis when the flood starts.
const HEADROOM: u64 = 1 << 20;
/// Taps sent before each batch's answers are read.
const BATCH: usize = 50;
/// Flood taps at most: several times what the headroom holds.
const FLOOD: usize = 12_000;

/// `maxmemory-policy` as `docker/redis.conf` sets it.
fn shipped_policy() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/redis.conf");
    let text = std::fs::read_to_string(path).expect("docker/redis.conf");
    let setting = |name: &str| {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(char::is_whitespace))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    assert!(
        setting("maxmemory").is_some(),
        "docker/redis.conf sets no maxmemory: Redis would grow without bound"
    );
    setting("maxmemory-policy").expect("docker/redis.conf sets no maxmemory-policy")
}

async fn info_memory(con: &mut MultiplexedConnection) -> (u64, u64) {
    let text: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .expect("INFO memory");
    let m = tapgate_bridge::RedisMemory::parse(&text).expect("INFO memory fields");
    (m.used, m.max)
}

async fn config_set(con: &mut MultiplexedConnection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(con)
        .await
        .expect("CONFIG SET");
}

async fn pass(con: &mut MultiplexedConnection, card: &str) -> BTreeMap<String, String> {
    let card = CardId::new(card).expect("card");
    redis::cmd("HGETALL")
        .arg(keys::pass(&card))
        .query_async(con)
        .await
        .expect("HGETALL")
}

/// Sends `cards` as taps of `gate` (queued without waiting for answers) and returns the
/// answers, in order.
async fn flood(gate: &mut Device, cards: &[String]) -> Vec<Value> {
    let mut ids = Vec::with_capacity(cards.len());
    for card in cards {
        let id = gate.next_id();
        let payload = serde_json::json!({"id": id, "card": card}).to_string();
        gate.send(MessageTopic::Tap, payload).await;
        ids.push(id);
    }
    let mut answers = Vec::with_capacity(ids.len());
    for id in &ids {
        answers.push(gate.decision_for(Some(id)).await);
    }
    answers
}

fn is_full_refusal(d: &Value) -> bool {
    d["outcome"] == "rejected" && d["reason"] == "internal_error"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_taps_and_keeps_every_pass_sold() {
    let policy = shipped_policy();
    // One gate floods as fast as it can: the per-device rate limit would refuse it long before
    // Redis is full, so it is off here.
    let mut stack = Stack::start(|c| c.device_rate = 0).await;
    let mut admin = stack.redis().await;
    let mut terminal = support::device(&stack, DeviceKind::Terminal, "t1").await;
    let mut gate = support::device(&stack, DeviceKind::Gate, "g1").await;

    // Passes sold and in use: two-hour passes let in once (they now expire), and a ten-trip
    // pass to count trips on.
    let riders: Vec<String> = (0..RIDERS).map(|i| format!("AA{i:04X}")).collect();
    for card in &riders {
        buy(&mut terminal, card, "TWO_HOUR").await;
        let d = gate.tap(card).await;
        assert_eq!(d["outcome"], "granted", "{d}");
    }
    buy(&mut terminal, "BB0001", "TEN_TRIP").await;
    let mut sold = BTreeMap::new();
    for card in riders.iter().chain([&"BB0001".to_owned()]) {
        let p = pass(&mut admin, card).await;
        assert!(!p.is_empty(), "{card} has no pass after its sale");
        sold.insert(card.clone(), p);
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg(keys::pass(&CardId::new(&riders[0]).expect("card")))
        .query_async(&mut admin)
        .await
        .expect("PTTL");
    assert!(
        ttl > 0,
        "a pass in use expires, so volatile-* policies may evict it"
    );

    // The limit, with the shipped policy, a little above what Redis holds now.
    let (used, _) = info_memory(&mut admin).await;
    let limit = used + HEADROOM;
    config_set(&mut admin, "maxmemory-policy", &policy).await;
    config_set(&mut admin, "maxmemory", &limit.to_string()).await;

    // A flood of unknown cards until Redis refuses (or far past what the headroom holds).
    let mut taps = 0usize;
    let mut stored = 0usize;
    let mut refused = 0usize;
    while taps < FLOOD && refused < BATCH {
        let cards: Vec<String> = (taps..taps + BATCH).map(|i| format!("{i:08X}")).collect();
        for d in flood(&mut gate, &cards).await {
            if is_full_refusal(&d) {
                refused += 1;
            } else {
                assert_eq!(refused, 0, "a tap was decided after Redis was full: {d}");
                assert_eq!(d["outcome"], "denied", "{d}");
                stored += 1;
            }
        }
        taps += BATCH;
    }
    let (used_full, max) = info_memory(&mut admin).await;
    println!(
        "policy {policy}: {stored} taps stored in {HEADROOM} bytes of headroom \
         ({:.0} bytes per tap), then refused; used {used_full} of {max}",
        HEADROOM as f64 / stored.max(1) as f64
    );

    // Nothing sold was evicted: every pass is still there, as it was.
    let mut lost = Vec::new();
    for (card, before) in &sold {
        if pass(&mut admin, card).await != *before {
            lost.push(card.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "passes evicted or changed under maxmemory-policy {policy}: {lost:?}"
    );
    assert!(
        refused > 0,
        "Redis never refused a write in {taps} taps: memory is not bounded ({policy})"
    );

    // Full: a rider with a pass is refused, not let in, and nothing is charged.
    let d = gate.tap("BB0001").await;
    assert!(is_full_refusal(&d), "{d}");
    let d = gate.tap(&riders[0]).await;
    assert!(is_full_refusal(&d), "{d}");
    assert_eq!(pass(&mut admin, "BB0001").await, sold["BB0001"]);
    // The answer says what happened; the bridge counts it.
    let detail = d["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("Redis is full"), "{d}");
    let metrics = stack.metrics.clone().expect("bridge running");
    assert!(
        metrics.redis_full_total() >= refused as u64,
        "{} full refusals counted for {refused} refused taps",
        metrics.redis_full_total()
    );
    // The gauges show the limit and the memory at it (read every 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let max_line = format!("tapgate_redis_maxmemory_bytes {limit}");
    loop {
        let text = metrics.render();
        let used_line = text
            .lines()
            .find_map(|l| l.strip_prefix("tapgate_redis_used_memory_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if text.lines().any(|l| l == max_line) && used_line * 10 >= limit * 9 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauges never showed Redis at its limit {limit}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A bridge (re)started while Redis is full starts, and refuses the same way.
    stack.stop_bridge().await;
    stack.start_bridge().await;
    let d = gate.tap("BB0001").await;
    assert!(is_full_refusal(&d), "{d}");
    assert_eq!(pass(&mut admin, "BB0001").await, sold["BB0001"]);

    // Room again: the same rider is let in, and the trip is taken once.
    config_set(&mut admin, "maxmemory", "0").await;
    let d = gate.tap("BB0001").await;
    assert_eq!(d["outcome"], "granted", "{d}");
    let trips = |p: &BTreeMap<String, String>| {
        p.get(fields::pass::TRIPS)
            .and_then(|t| t.parse::<u32>().ok())
            .expect("trips")
    };
    assert_eq!(
        trips(&pass(&mut admin, "BB0001").await) + 1,
        trips(&sold["BB0001"])
    );
}
