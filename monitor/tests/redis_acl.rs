//! The monitor under a least-privilege Redis ACL user, on a real Redis: everything the
//! dashboard and `tail` do works with exactly the commands and keys listed in [`MONITOR_ACL`],
//! and nothing else is reachable (device taps' idempotency records, sales, other users' keys).
//! The list is what the deployment's ACL file gives the monitor.

mod support;

use std::time::Duration;

use redis::AsyncCommands;
use support::*;
use tapgate_protocol::{keys, CardId, DeviceId, DeviceKind, Event, EventKind};
use tapgate_testkit::RedisServer;

/// Every command and key pattern the monitor needs: read the event stream and append its
/// block/unblock/void events to it; read counters, devices and recent taps; read and write the
/// deny list; read card passes and revenue, and write them for a void (the pass deleted, its
/// day's revenue reversed, in one script); read and write cards' wallets and recent lists for a
/// replacement (pass and wallet renamed to the new card, both recent lists rewritten, in one
/// script); anything under `tapgate:monitor:`.
const MONITOR_ACL: &[&str] = &[
    "resetkeys",
    "resetchannels",
    "-@all",
    // Streams.
    "+xrange",
    "+xrevrange",
    "+xread",
    "+xadd",
    // Hashes, sets, lists, strings.
    "+hgetall",
    "+hget",
    "+hset",
    "+hmset",
    "+hdel",
    "+hincrby",
    "+smembers",
    "+sadd",
    "+srem",
    "+lrange",
    "+get",
    "+incrby",
    "+ttl",
    "+pexpire",
    "+pttl",
    "+rename",
    "+rpush",
    "+del",
    "+exists",
    // Atomic pipelines (sessions, failed-login counts, the operator list).
    "+multi",
    "+exec",
    // The block, unblock, void and session-pruning scripts.
    "+evalsha",
    "+eval",
    "+script|load",
    // The connection's check at start-up.
    "+ping",
    "%RW~tapgate:events",
    "%R~tapgate:counters:*",
    "%R~tapgate:devices",
    "%R~tapgate:device:*",
    "%RW~tapgate:card:*:pass",
    "%RW~tapgate:revenue:*",
    "%RW~tapgate:card:*:recent",
    "%RW~tapgate:card:*:wallet",
    "%RW~tapgate:card:*:blocked",
    "%RW~tapgate:blocked",
    "~tapgate:monitor:*",
];

async fn monitor_user(server: &RedisServer) -> String {
    let mut admin = redis(server).await;
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg("monitor")
        .arg("on")
        .arg(">monitor-secret");
    for rule in MONITOR_ACL {
        cmd.arg(*rule);
    }
    cmd.query_async::<()>(&mut admin)
        .await
        .expect("ACL SETUSER");
    format!("redis://monitor:monitor-secret@127.0.0.1:{}", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_the_monitor_does_works_under_its_acl_user() {
    let server = RedisServer::start();
    let url = monitor_user(&server).await;
    let mut admin = redis(&server).await;
    let card = CardId::new("0412AB").expect("card");
    let g1 = DeviceId::new("g1").expect("dev");
    let now = tapgate_runtime::clock::now_ms();
    let _: () = redis::pipe()
        .hincr(keys::COUNTERS_ENTRIES, "TEN_TRIP", 1)
        .hset_multiple(keys::pass(&card), &[("type", "TEN_TRIP"), ("trips", "9")])
        .lpush(
            keys::card_recent(&card),
            Event::new(EventKind::PassUsed, now).to_json(),
        )
        .sadd(keys::DEVICES, keys::device_member(DeviceKind::Gate, &g1))
        .hset(keys::device(DeviceKind::Gate, &g1), "online", "1")
        .hset(keys::device_counters(&g1), "granted", "1")
        .set("tapgate:sale:{t1}", "not the monitor's")
        .query_async(&mut admin)
        .await
        .expect("seed");

    // A sale by the bridge's own function (as the admin), for the monitor to void.
    let (fares, catalogue, _fares_dir) = fares_file();
    let mut seller = Seller::connect(&server, catalogue).await;
    assert!(seller.sell("t2", "0777", "DAY", now).await);

    let mut cfg = config(&url);
    cfg.fares = Some(fares);
    // One failure makes the name wait, so the next login takes its turn (a script).
    cfg.login_attempts = 1;
    let clock = tapgate_runtime::clock::ManualClock::at(tapgate_runtime::clock::now_ms());
    let dash = Dashboard::start_with_clock(cfg, std::sync::Arc::new(clock.clone())).await;
    let wrong = post_login(dash.addr, ALICE.0, "wrong").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    clock.advance(1000);
    let me = login(dash.addr, ALICE).await;
    let mut live = SseClient::open(dash.addr, &me).await;
    let snap = live.next("snapshot").await;
    assert_eq!(snap["devices"][0]["device"], "g1");
    for path in [
        "/api/counters",
        "/api/events",
        "/api/charts/minutes",
        "/api/devices",
        "/api/cards/0412ab",
        "/api/blocked",
        "/api/audit",
        "/api/revenue",
    ] {
        let r = get(dash.addr, &me, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let b = post_json(
        dash.addr,
        &me,
        "/api/cards/0412AB/block",
        r#"{"reason":"lost"}"#,
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(live.next("events").await[0]["event"], "card-blocked");
    let u = post_json(dash.addr, &me, "/api/cards/0412AB/unblock", "").await;
    assert_eq!(u.status, 200, "{}", u.body);
    let v = post_json(dash.addr, &me, "/api/cards/0777/void", "").await;
    assert_eq!(v.status, 200, "{}", v.body);
    let rev = get(dash.addr, &me, "/api/revenue").await.json();
    assert_eq!(rev["totals"]["voided"], 750, "{rev}");
    let r = post_json(
        dash.addr,
        &me,
        "/api/cards/0412AB/replace",
        r#"{"to":"0412AC"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = request(
        dash.addr,
        "POST",
        "/logout-everywhere",
        &[("Cookie", &me.cookie_header()), ("X-CSRF-Token", &me.csrf)],
        b"",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.body);
    live.closed().await;
    dash.stop().await;

    // `tail` and `tail --audit` under the same user.
    let lines = Collected::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let config = tapgate_monitor::TailConfig {
        redis: url.parse().expect("url"),
        replay: tapgate_monitor::tail::Replay {
            since: None,
            last: Some(10),
        },
        json: true,
        color: false,
    };
    let (writer, s) = (lines.clone(), stop.clone());
    let tail = tokio::spawn(async move {
        tapgate_monitor::tail::run(config, writer, std::io::sink(), s).await
    });
    lines.wait_lines(2, Duration::from_secs(10)).await;
    let audit = Collected::default();
    let (writer, s, u) = (audit.clone(), stop.clone(), url.parse().expect("url"));
    let audit_tail = tokio::spawn(async move {
        tapgate_monitor::tail::run_audit(&u, 10, false, false, writer, s).await
    });
    audit.wait_lines(5, Duration::from_secs(10)).await;
    stop.cancel();
    tail.await.expect("task").expect("tail");
    audit_tail.await.expect("task").expect("tail --audit");

    // What it may not touch.
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect as monitor");
    let sale: redis::RedisResult<Option<String>> = conn.get("tapgate:sale:{t1}").await;
    assert!(sale.is_err(), "the monitor user read a sale: {sale:?}");
    let presence: redis::RedisResult<()> = conn
        .hset(keys::device(DeviceKind::Gate, &g1), "online", "0")
        .await;
    assert!(
        presence.is_err(),
        "the monitor user wrote a device's presence"
    );
    let counters: redis::RedisResult<()> = conn.hincr(keys::COUNTERS_ENTRIES, "TEN_TRIP", 1).await;
    assert!(counters.is_err(), "the monitor user wrote a counter");
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query_async(&mut conn).await;
    assert!(flush.is_err());
}
