//! What a tap of a card Redis has never seen leaves behind, and for how long: the flood a stolen
//! gate secret can send. Each shape a gate sends (an unstamped tap, a stamped waiting tap, an
//! offline entry) is measured on a real redis-server through the bridge with its default
//! settings: the keys it creates, their size (`MEMORY USAGE`) and lifetime (`TTL`), and
//! `used_memory` over a batch of such taps. Nothing a tap of a card with no pass, no wallet and no
//! block leaves may outlive the time a redelivery of it could still come (`idempotency_ttl`);
//! a card that has something keeps its history for `card_recent_ttl`.

mod support;

use std::collections::BTreeSet;

use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use support::{buy, Device, MessageTopic, Stack};
use tapgate_protocol::{keys, CardId, DeviceKind};
use tapgate_runtime::clock::now_ms;

/// Taps of each shape whose memory is measured together.
const TAPS: usize = 2_000;
/// Taps sent before their answers are read.
const BATCH: usize = 50;

#[derive(Clone, Copy, Debug)]
enum Shape {
    Unstamped,
    Online,
    Offline,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::Unstamped, Shape::Online, Shape::Offline];

    fn payload(self, id: &str, card: &str) -> Value {
        match self {
            Shape::Unstamped => json!({"id": id, "card": card}),
            Shape::Online => json!({"id": id, "card": card, "time": now_ms(), "mode": "online"}),
            Shape::Offline => {
                json!({"id": id, "card": card, "time": now_ms() - 60_000, "mode": "offline"})
            }
        }
    }

    /// What a tap of a card with nothing is answered.
    fn outcome(self) -> &'static str {
        match self {
            Shape::Offline => "unpaid_entry",
            _ => "denied",
        }
    }
}

async fn all_keys(con: &mut MultiplexedConnection) -> BTreeSet<String> {
    redis::cmd("KEYS")
        .arg("*")
        .query_async(con)
        .await
        .expect("KEYS")
}

async fn used_memory(con: &mut MultiplexedConnection) -> i64 {
    let text: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .expect("INFO memory");
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// A key's lifetime left in seconds (-1: none).
async fn ttl(con: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query_async(con)
        .await
        .expect("TTL")
}

/// Sends taps of `cards` in `shape`, answers read after each batch; each must be `outcome`.
async fn taps(gate: &mut Device, shape: Shape, cards: &[String]) {
    for chunk in cards.chunks(BATCH) {
        let mut ids = Vec::with_capacity(chunk.len());
        for card in chunk {
            let id = gate.next_id();
            let payload = shape.payload(&id, card).to_string();
            gate.send(MessageTopic::Tap, payload).await;
            ids.push(id);
        }
        for id in &ids {
            let d = gate.decision_for(Some(id)).await;
            assert_eq!(d["outcome"], shape.outcome(), "{shape:?}: {d}");
        }
    }
}

fn recent_key(card: &str) -> String {
    keys::card_recent(&CardId::new(card).expect("card"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_of_an_unknown_card_leaves_nothing_past_its_redelivery() {
    // Defaults, but no rate limit: the batches below are one gate's flood.
    let stack = Stack::start(|c| c.device_rate = 0).await;
    let bound = i64::try_from(stack.config.idempotency_ttl.as_secs()).expect("ttl");
    let full = i64::try_from(stack.config.card_recent_ttl.as_secs()).expect("ttl");
    let mut con = stack.redis().await;
    let mut gate = support::device(&stack, DeviceKind::Gate, "g1").await;
    // The gate's counters, presence and the stream exist before anything is measured.
    for (n, shape) in Shape::ALL.into_iter().enumerate() {
        taps(&mut gate, shape, &[format!("F{n}000000")]).await;
    }

    let mut over = Vec::new();
    for (n, shape) in Shape::ALL.into_iter().enumerate() {
        // One tap: the keys it creates, their size and lifetime.
        let before = all_keys(&mut con).await;
        let card = format!("E{n}000000");
        taps(&mut gate, shape, std::slice::from_ref(&card)).await;
        let after = all_keys(&mut con).await;
        let mut bytes = 0i64;
        let mut byte_hours = 0f64;
        for key in after.difference(&before) {
            let usage: i64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query_async(&mut con)
                .await
                .expect("MEMORY USAGE");
            let left = ttl(&mut con, key).await;
            println!("{shape:?}: {key}: {usage} bytes, TTL {left} s");
            bytes += usage;
            byte_hours += usage as f64 * left.max(0) as f64 / 3600.0;
            if left < 0 || left > bound {
                over.push(format!("{shape:?} {key}: TTL {left} s"));
            }
        }
        assert!(
            after.contains(&recent_key(&card)),
            "{shape:?}: the card's history was not written"
        );

        // Many: what they add to Redis's memory while their records live.
        let cards: Vec<String> = (0..TAPS).map(|i| format!("D{n}{i:06X}")).collect();
        let used = used_memory(&mut con).await;
        taps(&mut gate, shape, &cards).await;
        let added = used_memory(&mut con).await - used;
        println!(
            "{shape:?}: one tap's keys {bytes} bytes, {byte_hours:.0} byte-hours; {TAPS} taps \
             added {added} bytes of used_memory ({:.0} per tap)",
            added as f64 / TAPS as f64
        );
    }
    assert!(
        over.is_empty(),
        "a tap of an unknown card left keys living past idempotency_ttl ({bound} s): {over:?}"
    );

    // A card that gets a pass keeps its history for card_recent_ttl, from its sale on.
    let mut terminal = support::device(&stack, DeviceKind::Terminal, "t1").await;
    buy(&mut terminal, "E0000000", "TEN_TRIP").await;
    let left = ttl(&mut con, &recent_key("E0000000")).await;
    assert!(left > bound && left <= full, "after a sale: TTL {left} s");
    let d = gate.tap("E0000000").await;
    assert_eq!(d["outcome"], "granted", "{d}");
    let left = ttl(&mut con, &recent_key("E0000000")).await;
    assert!(left > bound && left <= full, "after an entry: TTL {left} s");

    // A blocked card keeps it too, once it is tapped.
    let blocked = CardId::new("E1000000").expect("card");
    let _: () = redis::cmd("HSET")
        .arg(keys::blocked(&blocked))
        .arg("reason")
        .arg("stolen")
        .query_async(&mut con)
        .await
        .expect("HSET");
    let d = gate.tap("E1000000").await;
    assert_eq!(d["reason"], "blocked", "{d}");
    let left = ttl(&mut con, &recent_key("E1000000")).await;
    assert!(left > bound && left <= full, "blocked: TTL {left} s");
}
