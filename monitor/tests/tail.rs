//! `tail` against a real Redis: replay-then-follow hand-over while events keep arriving, `--last`
//! and `--since`, a sale's price in text and JSON, unreadable entries, and resuming after a Redis
//! restart.

mod support;

use std::time::Duration;

use support::{all_ids, redis, sale, xadd, Collected};
use tapgate_monitor::tail::{self, Replay, TailConfig};
use tapgate_protocol::{CardId, DeviceId, DeviceKind, Event, EventKind, PassInfo, ProductId};
use tapgate_testkit::RedisServer;
use tokio_util::sync::CancellationToken;

fn denied(n: u64) -> Event {
    let mut e = Event::new(EventKind::PassDenied, 1_700_000_000_000 + n);
    e.device = DeviceId::new("g1").ok();
    e.device_kind = Some(DeviceKind::Gate);
    e.card = CardId::new(format!("C{n}")).ok();
    e.reason = Some("no_pass".into());
    e
}

fn seqs(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["seq"].as_str().expect("seq").to_owned()
        })
        .collect()
}

fn start_tail(
    url: String,
    replay: Replay,
    json: bool,
) -> (Collected, CancellationToken, tokio::task::JoinHandle<()>) {
    let out = Collected::default();
    let shutdown = CancellationToken::new();
    let config = TailConfig {
        redis: url.parse().expect("url"),
        replay,
        json,
        color: false,
    };
    let (o, s) = (out.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        tail::run(config, o, std::io::sink(), s)
            .await
            .expect("tail runs");
    });
    (out, shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_hands_over_to_follow_without_gap_or_repeat() {
    let server = RedisServer::start();
    let mut conn = redis(&server).await;
    for n in 0..1200 {
        xadd(&mut conn, "*", &denied(n)).await;
    }
    // An entry that breaks the contract is shown, not dropped.
    let _: String = redis::cmd("XADD")
        .arg(tapgate_protocol::keys::EVENTS_STREAM)
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut conn)
        .await
        .expect("XADD junk");
    // Keep appending while the tail replays (three pages of history) and hands over.
    let mut writer = redis(&server).await;
    let adder = tokio::spawn(async move {
        for n in 2000..2400 {
            xadd(&mut writer, "*", &denied(n)).await;
            if n % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (out, shutdown, task) = start_tail(
        server.url(),
        Replay {
            since: None,
            last: None,
        },
        true,
    );
    let len_at_start: usize = redis::cmd("XLEN")
        .arg(tapgate_protocol::keys::EVENTS_STREAM)
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert!(
        len_at_start < 1601,
        "events must still be arriving when the tail starts"
    );
    adder.await.expect("adder");
    let expected = all_ids(&mut conn).await;
    assert_eq!(expected.len(), 1601);
    let lines = out
        .wait_lines(expected.len(), Duration::from_secs(20))
        .await;
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines_after = out.lines();
    assert_eq!(
        lines_after.len(),
        lines.len(),
        "extra lines after the last event"
    );
    assert_eq!(
        seqs(&lines_after),
        expected,
        "every entry exactly once, in order"
    );
    let junk: Vec<_> = lines_after
        .iter()
        .filter(|l| l.contains("\"unreadable\""))
        .collect();
    assert_eq!(junk.len(), 1, "the unreadable entry is shown once");
    shutdown.cancel();
    task.await.expect("tail stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_n_then_live_in_text() {
    let server = RedisServer::start();
    let mut conn = redis(&server).await;
    for n in 0..20 {
        xadd(&mut conn, "*", &denied(n)).await;
    }
    let (out, shutdown, task) = start_tail(
        server.url(),
        Replay {
            since: None,
            last: Some(5),
        },
        false,
    );
    let lines = out.wait_lines(5, Duration::from_secs(5)).await;
    assert!(
        lines[0].ends_with("DENIED     card C15 at gate g1: no_pass"),
        "{lines:?}"
    );
    assert!(lines[4].contains("card C19 "), "{lines:?}");
    let mut ev = Event::new(EventKind::PassUsed, 1_700_000_000_000);
    ev.card = CardId::new("ABC").ok();
    ev.pass = Some(PassInfo {
        pass_type: ProductId::TEN_TRIP,
        trips_remaining: Some(4),
        expires_at: None,
        remaining_ms: None,
    });
    xadd(&mut conn, "*", &ev).await;
    let _: String = redis::cmd("XADD")
        .arg(tapgate_protocol::keys::EVENTS_STREAM)
        .arg("*")
        .arg("event")
        .arg("{\"event\":\"teleported\"}")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let lines = out.wait_lines(7, Duration::from_secs(5)).await;
    assert!(
        lines[5].ends_with("journey started: card ABC, TEN_TRIP pass, 4 trips remaining"),
        "{lines:?}"
    );
    assert!(lines[6].contains("unreadable event "), "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains('\x1b')),
        "no colour when asked for none"
    );
    shutdown.cancel();
    task.await.expect("tail stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_shows_its_product_and_price_in_text_and_json() {
    let server = RedisServer::start();
    let mut conn = redis(&server).await;
    let seq = xadd(&mut conn, "*", &sale(1_700_000_000_000)).await;
    let last = Replay {
        since: None,
        last: Some(1),
    };
    let (out, shutdown, task) = start_tail(server.url(), last, false);
    let lines = out.wait_lines(1, Duration::from_secs(5)).await;
    assert_eq!(
        lines[0],
        "2023-11-14T22:13:20Z  ISSUED     DAY pass for card 04AB at terminal t1, 7.50 EUR"
    );
    shutdown.cancel();
    task.await.expect("tail stops");

    let (out, shutdown, task) = start_tail(server.url(), last, true);
    let lines = out.wait_lines(1, Duration::from_secs(5)).await;
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
    let mut expected = serde_json::to_value(sale(1_700_000_000_000)).expect("event");
    expected["seq"] = seq.into();
    assert_eq!(
        v, expected,
        "the event as stored, price and currency included"
    );
    assert_eq!((&v["price"], &v["currency"]), (&750.into(), &"EUR".into()));
    shutdown.cancel();
    task.await.expect("tail stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_an_id_includes_it() {
    let server = RedisServer::start();
    let mut conn = redis(&server).await;
    for n in 1..=6 {
        xadd(&mut conn, &format!("5000-{n}"), &denied(n)).await;
    }
    let since = tail::parse_since("5000-4", 0).expect("since");
    let (out, shutdown, task) = start_tail(
        server.url(),
        Replay {
            since: Some(since),
            last: None,
        },
        true,
    );
    let lines = out.wait_lines(3, Duration::from_secs(5)).await;
    assert_eq!(seqs(&lines), ["5000-4", "5000-5", "5000-6"]);
    xadd(&mut conn, "5000-7", &denied(7)).await;
    let lines = out.wait_lines(4, Duration::from_secs(5)).await;
    assert_eq!(seqs(&lines)[3], "5000-7");
    shutdown.cancel();
    task.await.expect("tail stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_redis_restart_from_last_id_printed() {
    let mut server = RedisServer::start();
    let mut conn = redis(&server).await;
    for n in 0..5 {
        xadd(&mut conn, &format!("1000-{n}"), &denied(n)).await;
    }
    let (out, shutdown, task) = start_tail(
        server.url(),
        Replay {
            since: None,
            last: None,
        },
        true,
    );
    out.wait_lines(5, Duration::from_secs(5)).await;
    drop(conn);
    server.restart();
    // The restarted server has no data. An entry at or below the last id printed was already
    // seen (by id) and must not be printed; later ones must, in order.
    let mut conn = redis(&server).await;
    xadd(&mut conn, "1000-3", &denied(99)).await;
    xadd(&mut conn, "2000-0", &denied(5)).await;
    xadd(&mut conn, "2000-1", &denied(6)).await;
    let lines = out.wait_lines(7, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seqs(&out.lines()),
        ["1000-0", "1000-1", "1000-2", "1000-3", "1000-4", "2000-0", "2000-1"],
        "{lines:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("tail stops on shutdown")
        .expect("tail task");
}

#[tokio::test]
async fn fails_fast_when_redis_is_unreachable_at_start() {
    let port = tapgate_testkit::free_port();
    let config = TailConfig {
        redis: format!("redis://127.0.0.1:{port}").parse().expect("url"),
        replay: Replay {
            since: None,
            last: Some(10),
        },
        json: false,
        color: false,
    };
    let r = tail::run(
        config,
        Collected::default(),
        std::io::sink(),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(r, Err(tail::TailError::Stream(_))),
        "start-up failure is an error, not a retry loop: {r:?}"
    );
}
