//! Attacks on the dashboard's logins, tried against the real server and a real Redis: tokens the
//! client makes up, locking an operator out with their name, stepping around the per-address
//! limit with forged `X-Forwarded-For` or fresh IPv6 addresses, and floods of password checks.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tapgate_monitor::web::throttle::SLOT_WAIT;
use tapgate_runtime::clock::ManualClock;
use tapgate_testkit::RedisServer;

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {} {}", r.status, r.body))
        .parse()
        .expect("seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_token_the_client_made_up_is_refused() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    // Double submit with a value of the attacker's choosing: cookie and field agree.
    let mine = "0000000000000001.0123456789abcdef.0123456789abcdef0123456789abcdef";
    for token in ["a".repeat(64).as_str(), mine] {
        let body = format!("name=alice&password={}&csrf={token}", urlencode(ALICE.1));
        let r = request(
            dash.addr,
            "POST",
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &format!("tapgate_login={token}")),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 403, "{token}: {}", r.body);
        assert!(r.cookie("tapgate_session").is_none());
    }
    // A real token in the field but another in the cookie.
    let (_, token) = login_form(dash.addr).await;
    let (other, _) = login_form(dash.addr).await;
    let body = format!("name=alice&password={}&csrf={token}", urlencode(ALICE.1));
    let r = request(
        dash.addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("tapgate_login={other}")),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_with_an_operators_name_delays_but_never_locks_them_out() {
    let server = RedisServer::start();
    let clock = ManualClock::at(tapgate_monitor::tail::now_ms());
    let mut cfg = config(&server.url());
    cfg.login_attempts_per_address = 1000;
    let dash = Dashboard::start_with_clock(cfg, Arc::new(clock.clone())).await;
    let attacker = [127, 0, 0, 2];
    let alice_at = [127, 0, 0, 3];
    for _ in 0..5 {
        let r = post_login_from(attacker, dash.addr, ALICE.0, "guess", &[]).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // From now on each attempt of the name waits 1 s, 2 s, 4 s … after the last failure, capped
    // at login_max_delay (30 s), whoever makes it.
    let mut waits = Vec::new();
    for _ in 0..7 {
        let held = post_login_from(attacker, dash.addr, ALICE.0, "guess", &[]).await;
        assert_eq!(held.status, 429, "{}", held.body);
        let wait = retry_after(&held);
        waits.push(wait);
        clock.advance(wait * 1000);
        let r = post_login_from(attacker, dash.addr, ALICE.0, "guess", &[]).await;
        assert_eq!(
            r.status, 401,
            "after waiting, a guess is checked: {}",
            r.body
        );
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30], "progressive, capped");
    // Alice is only delayed: once the wait is over she logs in from her own address.
    let held = post_login_from(alice_at, dash.addr, ALICE.0, ALICE.1, &[]).await;
    assert_eq!(held.status, 429);
    assert!(held.cookie("tapgate_session").is_none());
    clock.advance(retry_after(&held) * 1000);
    let ok = post_login_from(alice_at, dash.addr, ALICE.0, ALICE.1, &[]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    // And her success clears the name's count: a typo now costs no wait.
    assert_eq!(
        post_login_from(alice_at, dash.addr, ALICE.0, "typo", &[])
            .await
            .status,
        401
    );
    assert_eq!(
        post_login_from(alice_at, dash.addr, ALICE.0, ALICE.1, &[])
            .await
            .status,
        303
    );
    // Bob was never affected.
    assert_eq!(post_login(dash.addr, BOB.0, BOB.1).await.status, 303);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_names_from_one_address_hit_the_address_limit() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.login_attempts_per_address = 3;
    let dash = Dashboard::start(cfg).await;
    let attacker = [127, 0, 0, 2];
    for i in 0..3 {
        // A forged X-Forwarded-For from a client that is not a trusted proxy changes nothing.
        let xff = format!("198.51.100.{i}");
        let r = post_login_from(
            attacker,
            dash.addr,
            &format!("user{i}"),
            "guess",
            &[("X-Forwarded-For", &xff)],
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let refused = post_login_from(attacker, dash.addr, ALICE.0, ALICE.1, &[]).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!((1..=300).contains(&retry_after(&refused)));
    assert!(refused.cookie("tapgate_session").is_none());
    // Only the attacker's address is refused.
    let ok = post_login_from([127, 0, 0, 3], dash.addr, ALICE.0, ALICE.1, &[]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let mut conn = redis(&server).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg("tapgate:monitor:login-failures:addr:127.0.0.2")
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert!((1..=300).contains(&ttl), "the count expires: {ttl}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_clients_are_told_apart_and_ipv6_counts_per_64() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.login_attempts_per_address = 3;
    cfg.trusted_proxies = vec!["127.0.0.1".into()];
    let dash = Dashboard::start(cfg).await;
    // One subscriber rotating through addresses of the same /64.
    for xff in [
        "2001:db8:0:7::1",
        "2001:db8:0:7::2",
        "2001:db8:0:7:ffff:ffff:ffff:ffff",
    ] {
        let r = post_login_from(
            [127, 0, 0, 1],
            dash.addr,
            "nobody",
            "guess",
            &[("X-Forwarded-For", xff)],
        )
        .await;
        assert_eq!(r.status, 401, "{xff}: {}", r.body);
    }
    let same_64 = post_login_from(
        [127, 0, 0, 1],
        dash.addr,
        ALICE.0,
        ALICE.1,
        &[("X-Forwarded-For", "2001:db8:0:7:abcd::9")],
    )
    .await;
    assert_eq!(same_64.status, 429, "the whole /64 is one client");
    // A client prepending its own entries is still counted by the address the proxy saw.
    let prepended = post_login_from(
        [127, 0, 0, 1],
        dash.addr,
        ALICE.0,
        ALICE.1,
        &[("X-Forwarded-For", "203.0.113.50, 2001:db8:0:7::77")],
    )
    .await;
    assert_eq!(prepended.status, 429);
    // Everyone else behind the same proxy logs in.
    for xff in ["2001:db8:0:8::1", "192.0.2.10"] {
        let r = post_login_from(
            [127, 0, 0, 1],
            dash.addr,
            ALICE.0,
            ALICE.1,
            &[("X-Forwarded-For", xff)],
        )
        .await;
        assert_eq!(r.status, 303, "{xff}: {}", r.body);
    }
    let mut conn = redis(&server).await;
    let n: Option<u64> = redis::cmd("GET")
        .arg("tapgate:monitor:login-failures:addr:2001:db8:0:7::/64")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(n, Some(3));
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_waits_its_turn_then_is_refused_when_every_check_stays_busy() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.password_checks = 1;
    cfg.login_attempts_per_address = 1000;
    let dash = Dashboard::start(cfg).await;
    let (cookie, token) = login_form(dash.addr).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let addr = dash.addr;
        let (cookie, token) = (cookie.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let body = format!("name=random{i}x&password=guess&csrf={token}");
            let started = Instant::now();
            let r = request(
                addr,
                "POST",
                "/login",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Cookie", &format!("tapgate_login={cookie}")),
                ],
                body.as_bytes(),
            )
            .await;
            (r, started.elapsed())
        }));
    }
    let mut busy = 0;
    let mut checked = 0;
    let mut slowest_busy = Duration::ZERO;
    let mut quickest_busy = Duration::MAX;
    for t in tasks {
        let (r, took) = t.await.expect("task");
        match r.status {
            503 => {
                busy += 1;
                slowest_busy = slowest_busy.max(took);
                quickest_busy = quickest_busy.min(took);
                assert_eq!(retry_after(&r), 1);
                assert!(r.body.contains("busy"), "{}", r.body);
            }
            401 => checked += 1,
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    println!(
        "16 concurrent logins with one check slot: {checked} checked, {busy} refused busy (refusals after {}-{} ms)",
        quickest_busy.as_millis(),
        slowest_busy.as_millis()
    );
    // Each decoy check (argon2 at full cost, in a debug build) takes far longer than 1/16 s.
    assert!(busy > 0, "some logins found every slot busy");
    assert!(checked >= 1);
    assert!(
        quickest_busy >= SLOT_WAIT,
        "refused only after waiting for a slot: {quickest_busy:?}"
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_logging_in_at_once_are_all_served_by_one_check_slot() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.password_checks = 1;
    let dash = Dashboard::start(cfg).await;
    let logins: Vec<_> = (0..8)
        .map(|i| {
            let addr = dash.addr;
            let who = if i % 2 == 0 { ALICE } else { BOB };
            tokio::spawn(async move { post_login(addr, who.0, who.1).await })
        })
        .collect();
    for t in logins {
        let r = t.await.expect("task");
        assert_eq!(r.status, 303, "an operator was turned away: {}", r.body);
    }
    dash.stop().await;
}
