//! Attacks on the dashboard's logins, tried against the real server and a real Redis: tokens the
//! client makes up, locking an operator out with their name or with failures from the address
//! they share (NAT, Docker's port mapping), stepping around the per-address limit with forged
//! `X-Forwarded-For` or fresh IPv6 addresses, and floods of password checks.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tapgate_monitor::web::SLOT_WAIT;
use tapgate_runtime::clock::ManualClock;
use tapgate_testkit::RedisServer;

/// Held by the tests that flood the password checks: each keeps the decoy checks (argon2 at full
/// cost, unoptimised) busy, and two at once on a small machine slow single checks past the
/// client's timeout.
static FLOODING: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

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
    let clock = ManualClock::at(tapgate_runtime::clock::now_ms());
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
    let refused = post_login_from(attacker, dash.addr, "user3", "guess", &[]).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!((1..=300).contains(&retry_after(&refused)));
    assert!(refused.cookie("tapgate_session").is_none());
    // Only the attacker's address is refused.
    let ok = post_login_from([127, 0, 0, 3], dash.addr, "user3", "guess", &[]).await;
    assert_eq!(ok.status, 401, "{}", ok.body);
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
        "somebody",
        "guess",
        &[("X-Forwarded-For", "2001:db8:0:7:abcd::9")],
    )
    .await;
    assert_eq!(same_64.status, 429, "the whole /64 is one client");
    // A client prepending its own entries is still counted by the address the proxy saw.
    let prepended = post_login_from(
        [127, 0, 0, 1],
        dash.addr,
        "somebody",
        "guess",
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
    let _flooding = FLOODING.lock().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_a_shared_address_never_lock_out_an_operator_who_gets_it_right() {
    // One address for everyone, as behind NAT or Docker's port mapping (every client is the
    // gateway); the default limit of 20 failures per address.
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let shared = [127, 0, 0, 2];
    for _ in 0..2 {
        let wrong = post_login_from(shared, dash.addr, ALICE.0, "guess", &[]).await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
    }
    for i in 0..9 {
        let made_up = post_login_from(shared, dash.addr, &format!("user{i}"), "guess", &[]).await;
        assert_eq!(made_up.status, 401, "{}", made_up.body);
        let unusable = post_login_from(shared, dash.addr, &format!("user {i}"), "guess", &[]).await;
        assert_eq!(unusable.status, 401, "{}", unusable.body);
    }
    // The flood from the address is stopped: made-up names get no more password checks.
    let refused = post_login_from(shared, dash.addr, "user99", "guess", &[]).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!((1..=300).contains(&retry_after(&refused)));
    // But the operators at that address log in, a typo is checked like any other, and a
    // success clears the name's failures from there.
    let ok = post_login_from(shared, dash.addr, ALICE.0, ALICE.1, &[]).await;
    assert_eq!(
        ok.status, 303,
        "locked out by others' failures: {}",
        ok.body
    );
    assert!(ok.cookie("tapgate_session").is_some());
    let typo = post_login_from(shared, dash.addr, ALICE.0, "typo", &[]).await;
    assert_eq!(typo.status, 401, "{}", typo.body);
    assert_eq!(
        post_login_from(shared, dash.addr, ALICE.0, ALICE.1, &[])
            .await
            .status,
        303
    );
    let bob = post_login_from(shared, dash.addr, BOB.0, BOB.1, &[]).await;
    assert_eq!(bob.status, 303, "{}", bob.body);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_an_operators_name_from_one_address_locks_only_that_name_there() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.login_attempts_per_address = 3;
    // The per-name delay out of the way, to reach the (name, address) limit.
    cfg.login_attempts = 1000;
    let dash = Dashboard::start(cfg).await;
    let attacker = [127, 0, 0, 2];
    for _ in 0..3 {
        let r = post_login_from(attacker, dash.addr, ALICE.0, "guess", &[]).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let held = post_login_from(attacker, dash.addr, ALICE.0, ALICE.1, &[]).await;
    assert_eq!(
        held.status, 429,
        "the name is refused from there: {}",
        held.body
    );
    assert!((1..=300).contains(&retry_after(&held)));
    assert!(held.cookie("tapgate_session").is_none());
    // The address is past its limit for made-up names, but not for other operators' names.
    let made_up = post_login_from(attacker, dash.addr, "user1", "guess", &[]).await;
    assert_eq!(made_up.status, 429, "{}", made_up.body);
    let bob = post_login_from(attacker, dash.addr, BOB.0, BOB.1, &[]).await;
    assert_eq!(bob.status, 303, "{}", bob.body);
    // And alice logs in from anywhere else.
    let alice = post_login_from([127, 0, 0, 3], dash.addr, ALICE.0, ALICE.1, &[]).await;
    assert_eq!(alice.status, 303, "{}", alice.body);
    let mut conn = redis(&server).await;
    let (n, ttl): (Option<u64>, i64) = redis::pipe()
        .get("tapgate:monitor:login-failures:pair:alice:127.0.0.2")
        .ttl("tapgate:monitor:login-failures:pair:alice:127.0.0.2")
        .query_async(&mut conn)
        .await
        .expect("pair");
    assert_eq!(n, Some(3), "her success elsewhere leaves the pair's count");
    assert!((1..=300).contains(&ttl), "the count expires: {ttl}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_names_from_64_addresses_never_turns_an_operator_away() {
    let _flooding = FLOODING.lock().await;
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.password_checks = 2;
    // Every flood login reaches the password checks: only the slots stand in its way.
    cfg.login_attempts_per_address = 100_000;
    let dash = Dashboard::start(cfg).await;
    let (cookie, token) = login_form(dash.addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut flood = Vec::new();
    for i in 0..64u8 {
        let (cookie, token, stop) = (cookie.clone(), token.clone(), Arc::clone(&stop));
        let addr = dash.addr;
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let body = format!("name=random{i}x{k}&password=guess&csrf={token}");
                let r = request_from(
                    [127, 0, 1, i + 1],
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
                statuses.push(r.status);
            }
            statuses
        }));
    }
    // Let the flood fill every slot and the queue.
    tokio::time::sleep(SLOT_WAIT / 2).await;
    let mut took = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let r = post_login_from([127, 0, 2, 1], dash.addr, ALICE.0, ALICE.1, &[]).await;
        took.push(started.elapsed().as_millis());
        assert_eq!(r.status, 303, "the operator was turned away: {}", r.body);
        tokio::time::sleep(SLOT_WAIT / 2).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::new();
    for t in flood {
        for s in t.await.expect("task") {
            *statuses.entry(s).or_insert(0) += 1;
        }
    }
    println!(
        "64 addresses flooding made-up names, two check slots: {statuses:?}; \
         the operator's logins took {took:?} ms"
    );
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 503),
        "only refusals: {statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the flood saturated the checks: {statuses:?}"
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_guesses_when_a_names_wait_ends_gets_one_password_check() {
    let server = RedisServer::start();
    let clock = ManualClock::at(tapgate_runtime::clock::now_ms());
    let mut cfg = config(&server.url());
    cfg.password_checks = 4;
    cfg.login_attempts_per_address = 1000;
    let dash = Dashboard::start_with_clock(cfg, Arc::new(clock.clone())).await;
    for _ in 0..5 {
        let r = post_login_from([127, 0, 0, 2], dash.addr, ALICE.0, "guess", &[]).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // The name must now wait 1 s between attempts; the attacker fires 16 at once when it ends.
    clock.advance(1000);
    let (cookie, token) = login_form(dash.addr).await;
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let burst: Vec<_> = (0..16u8)
        .map(|i| {
            let (cookie, token, start) = (cookie.clone(), token.clone(), Arc::clone(&start));
            let addr = dash.addr;
            tokio::spawn(async move {
                let body = format!("name=alice&password=guess{i}&csrf={token}");
                start.wait().await;
                request_from(
                    [127, 0, 3, i + 1],
                    addr,
                    "POST",
                    "/login",
                    &[
                        ("Content-Type", "application/x-www-form-urlencoded"),
                        ("Cookie", &format!("tapgate_login={cookie}")),
                    ],
                    body.as_bytes(),
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for t in burst {
        *statuses.entry(t.await.expect("task")).or_insert(0) += 1;
    }
    println!("16 guesses of one name at once when its wait ended: {statuses:?}");
    assert_eq!(
        statuses.get(&401),
        Some(&1),
        "one guess checked: {statuses:?}"
    );
    assert_eq!(statuses.get(&429), Some(&15), "{statuses:?}");
    let mut conn = redis(&server).await;
    let failures: u32 = redis::cmd("HGET")
        .arg("tapgate:monitor:login-failures:name:alice")
        .arg("failures")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert_eq!(failures, 6);
    dash.stop().await;
}
