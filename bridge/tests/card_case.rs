//! Card ids are case-insensitive everywhere: a card blocked as `04ab` is denied when read as
//! `04AB` and the other way round, whether the block was written by today's monitor path (which
//! goes through `CardId::new`) or is a lower-case key written before card ids were canonical.

mod support;

use support::{buy, Stack};
use tapgate_protocol::{fields, keys, CardId, DeviceKind};

/// Blocks a card the way the monitor does (`monitor/src/web/blocklist.rs`): the card id from the
/// operator's request through `CardId::new`, then the card's blocked hash and the index field.
async fn block_like_the_monitor(stack: &Stack, typed: &str) {
    let card = CardId::new(typed).expect("card");
    let mut con = stack.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(keys::blocked(&card))
        .arg(fields::blocked::REASON)
        .arg("stolen")
        .arg(fields::blocked::BY)
        .arg("alice")
        .arg(fields::blocked::AT)
        .arg(0)
        .query_async(&mut con)
        .await
        .expect("HSET blocked");
    let _: () = redis::cmd("HSET")
        .arg(keys::BLOCKED_INDEX)
        .arg(card.as_str())
        .arg("stolen")
        .query_async(&mut con)
        .await
        .expect("HSET index");
}

/// Writes raw keys as an older bridge or monitor did, with the card as typed.
async fn legacy_block(stack: &Stack, raw: &str) {
    let mut con = stack.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(format!("tapgate:card:{{{raw}}}:blocked"))
        .arg(fields::blocked::REASON)
        .arg("lost")
        .query_async(&mut con)
        .await
        .expect("HSET legacy blocked");
    let _: () = redis::cmd("HSET")
        .arg(keys::BLOCKED_INDEX)
        .arg(raw)
        .arg("lost")
        .query_async(&mut con)
        .await
        .expect("HSET legacy index");
}

#[tokio::test]
async fn blocks_apply_whatever_the_case() {
    let mut stack = Stack::start(|_| {}).await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    let mut t = support::device(&stack, DeviceKind::Terminal, "t1").await;

    block_like_the_monitor(&stack, "04ab").await;
    block_like_the_monitor(&stack, "0CDE").await;
    for card in ["04AB", "04ab", "04Ab", "0cde", "0CDE"] {
        let d = g.tap(card).await;
        assert_eq!(d["reason"], "blocked", "{card}: {d}");
    }
    assert_eq!(t.tap("04aB").await["reason"], "blocked");

    // A pass bought under one spelling is the same card's pass under another.
    buy(&mut t, "abc1", "SINGLE_USE").await;
    let d = g.tap("ABC1").await;
    assert_eq!(d["outcome"], "granted", "{d}");

    // Keys written before canonical ids are moved at start-up, index included.
    stack.stop_bridge().await;
    legacy_block(&stack, "0ef1").await;
    legacy_block(&stack, "Ab12").await;
    stack.start_bridge().await;
    for card in ["0EF1", "0ef1", "AB12", "ab12"] {
        let d = g.tap(card).await;
        assert_eq!(d["reason"], "blocked", "{card}: {d}");
    }
    let mut con = stack.redis().await;
    let index: Vec<String> = redis::cmd("HKEYS")
        .arg(keys::BLOCKED_INDEX)
        .query_async(&mut con)
        .await
        .expect("HKEYS");
    let mut index = index;
    index.sort();
    assert_eq!(index, ["04AB", "0CDE", "0EF1", "AB12"]);
    let legacy: Vec<String> = redis::cmd("KEYS")
        .arg("tapgate:card:{*[a-z]*}:*")
        .query_async(&mut con)
        .await
        .expect("KEYS");
    assert!(legacy.is_empty(), "{legacy:?}");
    // An unblocked card is not caught by the case folding.
    assert_eq!(g.tap("04ac").await["reason"], "no_pass");
}
