//! `tapgate-admin card replace` on a real Redis: the lost card's pass and wallet move to the new
//! card, money is conserved, the lost card is blocked `replaced`, the audit trail says who did it
//! from `tapgate-admin`, and the JSON printed says what moved. A refusal (a second replacement, a
//! new card with money, bad card ids, no operator) exits non-zero with its code and changes
//! nothing; bad card ids are refused before Redis is reached.

use std::collections::HashMap;
use std::process::{Command, Output};

use redis::AsyncCommands;
use tapgate_protocol::fields::{blocked, wallet};
use tapgate_protocol::{keys, CardId};
use tapgate_testkit::RedisServer;

type Hash = HashMap<String, String>;

fn admin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
        .args(args)
        .env_remove("TAPGATE_REDIS")
        .env_remove("TAPGATE_OPERATOR")
        .output()
        .expect("run tapgate-admin")
}

/// `tapgate-admin card replace FROM TO --operator OPERATOR --redis URL`.
fn replace(from: &str, to: &str, operator: &str, redis: &str) -> Output {
    admin(&[
        "card",
        "replace",
        from,
        to,
        "--operator",
        operator,
        "--redis",
        redis,
    ])
}

fn card(s: &str) -> CardId {
    CardId::new(s).expect("card")
}

/// Every key of `cards`, the deny list, the stream and the audit trail's lengths.
async fn snapshot(
    conn: &mut redis::aio::MultiplexedConnection,
    cards: &[&str],
) -> (Vec<(Hash, Hash, Hash)>, Hash, usize, usize) {
    let mut out = Vec::new();
    for c in cards {
        let c = card(c);
        out.push(
            redis::pipe()
                .hgetall(keys::pass(&c))
                .hgetall(keys::wallet(&c))
                .hgetall(keys::blocked(&c))
                .query_async(conn)
                .await
                .expect("card keys"),
        );
    }
    (
        out,
        conn.hgetall(keys::BLOCKED_INDEX).await.expect("index"),
        conn.xlen(keys::EVENTS_STREAM).await.expect("XLEN"),
        conn.xlen(keys::MONITOR_AUDIT).await.expect("XLEN"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_replace_moves_the_pass_and_the_money_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // A wallet as the bridge keeps it: 20.00 topped up, 7.00 charged today and this week.
    let lost = [
        (wallet::BALANCE, "1300"),
        (wallet::TOPPED_UP, "2000"),
        (wallet::CHARGED, "700"),
        (wallet::CURRENCY, "EUR"),
        (wallet::KEPT_FROM, "2026-02-02"),
        ("day:2026-03-02", "700"),
        ("week:2026-03-02", "700"),
    ];
    let () = conn
        .hset_multiple(keys::wallet(&card("0AA1")), &lost)
        .await
        .expect("wallet");
    let () = conn
        .hset_multiple(
            keys::pass(&card("0AA1")),
            &[("type", "DAY"), ("trips", "0")],
        )
        .await
        .expect("pass");
    let () = conn
        .hset_multiple(
            keys::wallet(&card("0CC1")),
            &[(wallet::BALANCE, "5"), (wallet::TOPPED_UP, "5")],
        )
        .await
        .expect("other wallet");

    let out = replace("0aa1", "0bb1", "ops-script", &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (&printed["card"], &printed["to"]),
        (&"0AA1".into(), &"0BB1".into())
    );
    assert_eq!(
        (&printed["pass"], &printed["balance"]),
        (&true.into(), &1300.into())
    );
    assert_eq!(printed["by"], "ops-script");

    let w: Hash = conn
        .hgetall(keys::wallet(&card("0BB1")))
        .await
        .expect("wallet");
    let expected: Hash = lost
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(w, expected, "the wallet moved whole");
    let n = |k: &str| w[k].parse::<i64>().expect("number");
    assert_eq!(
        n(wallet::TOPPED_UP),
        n(wallet::BALANCE) + n(wallet::CHARGED)
    );
    let old: bool = conn
        .exists(keys::wallet(&card("0AA1")))
        .await
        .expect("EXISTS");
    assert!(!old, "the lost card keeps no wallet");
    let pass: Hash = conn.hgetall(keys::pass(&card("0BB1"))).await.expect("pass");
    assert_eq!(pass.get("type").map(String::as_str), Some("DAY"));
    let b: Hash = conn
        .hgetall(keys::blocked(&card("0AA1")))
        .await
        .expect("blocked");
    assert_eq!(b.get(blocked::REASON).map(String::as_str), Some("replaced"));
    assert_eq!(b.get(blocked::BY).map(String::as_str), Some("ops-script"));
    let audit: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(keys::MONITOR_AUDIT)
        .arg("+")
        .arg("-")
        .query_async(&mut conn)
        .await
        .expect("audit");
    let rec: Hash = audit[0].1.iter().cloned().collect();
    for (k, v) in [
        ("action", "replace"),
        ("operator", "ops-script"),
        ("from", "tapgate-admin"),
        ("card", "0AA1"),
        ("reason", "0BB1"),
        ("price", "13.00 EUR"),
    ] {
        assert_eq!(rec.get(k).map(String::as_str), Some(v), "{k}: {rec:?}");
    }

    // Refusals: each names its code, exits 1 and changes nothing.
    let cards = ["0AA1", "0BB1", "0CC1", "0DD1"];
    let before = snapshot(&mut conn, &cards).await;
    for (args, code) in [
        (vec!["0AA1", "0DD1"], "already_replaced"),
        (vec!["0BB1", "0CC1"], "target_has_wallet"),
        (vec!["0BB1", "0bb1"], "same_card"),
        (vec!["0DD1", "0EE1"], "unknown_card"),
        (vec!["0B-B1", "0EE1"], "invalid_card"),
        (vec!["0BB1", "0EE1\u{202e}"], "invalid_card"),
    ] {
        let mut all = vec!["card", "replace"];
        all.extend(&args);
        all.extend(["--operator", "ops-script", "--redis", &url]);
        let out = admin(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(code), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(snapshot(&mut conn, &cards).await, before, "{args:?}");
    }
    // Without an operator name, and with a bad card id against a Redis that is not there: refused
    // without reaching Redis.
    let out = replace("0BB1", "0EE1", "", &url);
    assert!(!out.status.success());
    let nowhere = "redis://127.0.0.1:1";
    let out = replace("0B-B1", "0EE1", "ops", nowhere);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("invalid_card"),
        "{err}"
    );
    // A URL that cannot work, or one still holding the example password: refused as read,
    // without showing the password.
    for (redis, why) in [
        ("redis+sentinel://u:s3cret@h1", "invalid Redis URL"),
        ("redis://u:change-me-s3cret@127.0.0.1:1", "placeholder"),
    ] {
        let out = replace("0BB1", "0EE1", "ops", redis);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{redis}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
    assert_eq!(snapshot(&mut conn, &cards).await, before);
}
