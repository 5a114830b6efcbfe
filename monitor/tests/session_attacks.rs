//! Attacks on sessions, against the real server and a real Redis: a live stream kept open after
//! logout, sessions left behind on other machines, sessions of an operator who was removed or
//! whose password changed, a tampered session record, and every Redis user of the deployment
//! (`docker/redis-users.sh`) trying what it can read as a session cookie and CSRF token.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use support::*;
use tapgate_monitor::Operator;
use tapgate_protocol::{keys, CardId};
use tapgate_testkit::redis_users::{self, redis_with_users};
use tapgate_testkit::RedisServer;

async fn block(dash: &Dashboard, who: &Login, card: &str) -> Resp {
    post_json(
        dash.addr,
        who,
        &format!("/api/cards/{card}/block"),
        r#"{"reason":"stolen"}"#,
    )
    .await
}

async fn is_blocked(server: &RedisServer, card: &str) -> bool {
    let mut conn = redis(server).await;
    conn.exists(keys::blocked(&CardId::new(card).expect("card")))
        .await
        .expect("EXISTS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_live_stream_within_seconds() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut live = SseClient::open(dash.addr, &me).await;
    live.next("snapshot").await;
    let out = request(
        dash.addr,
        "POST",
        "/logout",
        &[("Cookie", &me.cookie_header()), ("X-CSRF-Token", &me.csrf)],
        b"",
    )
    .await;
    assert_eq!(out.status, 200);
    let since = Instant::now();
    live.closed().await;
    let took = since.elapsed();
    println!("live stream closed {} ms after logout", took.as_millis());
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_ends_every_session_and_stream() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let laptop = login(dash.addr, ALICE).await;
    let phone = login(dash.addr, ALICE).await;
    let bob = login(dash.addr, BOB).await;
    let mut live = SseClient::open(dash.addr, &phone).await;
    live.next("snapshot").await;
    let forged = request(
        dash.addr,
        "POST",
        "/logout-everywhere",
        &[("Cookie", &laptop.cookie_header())],
        b"",
    )
    .await;
    assert_eq!(forged.status, 403, "needs the CSRF token");
    assert_eq!(get(dash.addr, &phone, "/api/session").await.status, 200);
    let r = request(
        dash.addr,
        "POST",
        "/logout-everywhere",
        &[
            ("Cookie", &laptop.cookie_header()),
            ("X-CSRF-Token", &laptop.csrf),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    live.closed().await;
    for s in [&laptop, &phone] {
        assert_eq!(get(dash.addr, s, "/api/session").await.status, 401);
        assert_eq!(block(&dash, s, "77").await.status, 401);
    }
    assert!(!is_blocked(&server, "77").await);
    assert_eq!(
        get(dash.addr, &bob, "/api/session").await.status,
        200,
        "other operators keep theirs"
    );
    let mut conn = redis(&server).await;
    let left: bool = conn
        .exists("tapgate:monitor:operator:alice:sessions")
        .await
        .expect("EXISTS");
    assert!(!left, "the session set is gone");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_operator_or_changing_a_password_ends_their_sessions() {
    let server = RedisServer::start();
    let cfg = config(&server.url());
    let dash = Dashboard::start(cfg.clone()).await;
    let alice = login(dash.addr, ALICE).await;
    let bob = login(dash.addr, BOB).await;
    dash.stop().await;

    // Restart with bob removed and alice's password changed.
    let mut changed = cfg.clone();
    changed.operators = vec![Operator {
        name: ALICE.0.into(),
        password_hash: cheap_hash("a new password"),
    }];
    let dash = Dashboard::start(changed).await;
    for s in [&alice, &bob] {
        assert_eq!(get(dash.addr, s, "/api/session").await.status, 401);
        assert_eq!(block(&dash, s, "77").await.status, 401);
        let page = request(
            dash.addr,
            "GET",
            "/",
            &[("Cookie", &s.cookie_header())],
            b"",
        )
        .await;
        assert_eq!(page.status, 303);
    }
    assert!(!is_blocked(&server, "77").await, "nothing changed");
    assert_eq!(post_login(dash.addr, ALICE.0, ALICE.1).await.status, 401);
    assert_eq!(post_login(dash.addr, BOB.0, BOB.1).await.status, 401);
    let fresh = login(dash.addr, (ALICE.0, "a new password")).await;
    let audit = get(dash.addr, &fresh, "/api/audit").await.json();
    let revoked: Vec<&str> = audit
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "sessions-revoked")
        .filter_map(|r| r["operator"].as_str())
        .collect();
    assert!(
        revoked.contains(&"alice") && revoked.contains(&"bob"),
        "{revoked:?}"
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_credential_no_longer_matches_is_refused_and_ended() {
    // Without a restart: a session record written for another password (as one left from
    // before a password change would be) is refused on its next use and deleted.
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    let (session_key, _key_dir) = known_session_key(&mut cfg);
    let dash = Dashboard::start(cfg).await;
    let me = login(dash.addr, ALICE).await;
    let mut live = SseClient::open(dash.addr, &me).await;
    live.next("snapshot").await;
    let mut conn = redis(&server).await;
    let key = session_redis_key(&session_key, &me.cookie);
    let _: () = conn.hset(&key, "cred", "0".repeat(32)).await.expect("HSET");
    live.closed().await;
    assert_eq!(block(&dash, &me, "77").await.status, 401);
    let gone: bool = conn.exists(&key).await.expect("EXISTS");
    assert!(!gone, "the stale session is deleted");
    // A session naming an operator the server does not know fares the same.
    let other = login(dash.addr, BOB).await;
    let key = session_redis_key(&session_key, &other.cookie);
    let _: () = conn.hset(&key, "operator", "mallory").await.expect("HSET");
    assert_eq!(get(dash.addr, &other, "/api/session").await.status, 401);
    dash.stop().await;
}

fn url_of(server: &RedisServer, user: &str) -> String {
    redis_users::url_as(server, user)
}

async fn connect_as(server: &RedisServer, user: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url_of(server, user))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{user} cannot log in: {e}\n{}", server.log()))
}

/// Every string in a Redis answer.
fn strings(v: &redis::Value, out: &mut Vec<String>) {
    match v {
        redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => out.push(s.clone()),
        redis::Value::Int(n) => out.push(n.to_string()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for i in items {
                strings(i, out);
            }
        }
        redis::Value::Map(pairs) => {
            for (k, v) in pairs {
                strings(k, out);
                strings(v, out);
            }
        }
        _ => {}
    }
}

/// Every key name in Redis, as the admin lists them.
async fn key_names(admin: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(admin)
            .await
            .expect("SCAN as the admin");
        keys.extend(found);
        cursor = next;
        if cursor == 0 {
            return keys;
        }
    }
}

/// What a user can find: every key name `SCAN` lists to it, every field, member and value of
/// those keys and of `known` ones it may read (an attacker who somehow learnt every key name:
/// no user but the admin may list them), each whole and cut at every character that is not a
/// letter or digit (key name parts, JSON values). Refused commands are skipped, as an attacker
/// would.
async fn loot(con: &mut redis::aio::MultiplexedConnection, known: &[String]) -> BTreeSet<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let page: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await;
        let Ok((next, found)) = page else { break };
        keys.extend(found);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys.extend(known.iter().cloned());
    let mut found: Vec<String> = keys.clone();
    for key in &keys {
        for read in [
            &["HGETALL"][..],
            &["SMEMBERS"],
            &["GET"],
            &["LRANGE", "0", "-1"],
            &["XRANGE", "-", "+"],
            &["ZRANGE", "0", "-1", "WITHSCORES"],
        ] {
            let mut cmd = redis::cmd(read[0]);
            cmd.arg(key);
            for a in &read[1..] {
                cmd.arg(*a);
            }
            if let Ok(v) = cmd.query_async::<redis::Value>(con).await {
                strings(&v, &mut found);
            }
        }
    }
    let mut out = BTreeSet::new();
    for s in found {
        out.extend(
            s.split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
        out.insert(s);
    }
    out
}

/// A value a client could send as a cookie or header value.
fn sendable(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_redis_reader_finds_is_a_session_or_csrf_token() {
    let (server, _acl) = redis_with_users();
    let dash = Dashboard::start(config(&url_of(&server, "tapgate-monitor"))).await;
    let alice = login(dash.addr, ALICE).await;
    let bob = login(dash.addr, BOB).await;
    // The victim works normally: a block, so the stream and the audit trail name her too.
    assert_eq!(
        block(&dash, &alice, "88").await.status,
        200,
        "the harness blocks"
    );

    let mut admin = connect_as(&server, "tapgate-admin").await;
    let mut breaches = Vec::new();
    let (mut tried_cookies, mut tried_pairs) = (BTreeSet::new(), BTreeSet::new());
    for user in [
        "tapgate-grafana",
        "tapgate-bridge",
        "tapgate-monitor",
        "tapgate-emqx",
    ] {
        let mut con = connect_as(&server, user).await;
        let known = key_names(&mut admin).await;
        let found = loot(&mut con, &known).await;
        for secret in [&alice.cookie, &alice.csrf, &bob.cookie, &bob.csrf] {
            if found.contains(secret.as_str()) {
                breaches.push(format!("{user} reads a live session's secret {secret}"));
            }
        }
        let found: Vec<String> = found.into_iter().filter(|s| sendable(s)).collect();
        // Every value as a session cookie.
        for c in found.iter().filter(|c| tried_cookies.insert((*c).clone())) {
            let r = request(
                dash.addr,
                "GET",
                "/api/session",
                &[("Cookie", &format!("tapgate_session={c}"))],
                b"",
            )
            .await;
            if r.status != 401 {
                breaches.push(format!(
                    "{user}: {c:?} as a session cookie: {} {}",
                    r.status, r.body
                ));
            }
        }
        // Every token-shaped value as a cookie with every value as its CSRF token, and every
        // value as the CSRF token of the victim's own cookie (a forged cross-site request).
        let cookies = found
            .iter()
            .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            .chain([&alice.cookie]);
        for c in cookies {
            for t in &found {
                if !tried_pairs.insert((c.clone(), t.clone())) {
                    continue;
                }
                let forged = Login {
                    cookie: c.clone(),
                    csrf: t.clone(),
                };
                let r = block(&dash, &forged, "77").await;
                if r.status != 401 && r.status != 403 {
                    breaches.push(format!(
                        "{user}: cookie {c:?} with CSRF token {t:?} passes: {} {}",
                        r.status, r.body
                    ));
                }
            }
        }
    }
    // Grafana may not read the monitor's keys at all.
    let mut grafana = connect_as(&server, "tapgate-grafana").await;
    let monitor_keys: Vec<String> = admin.keys("tapgate:monitor:*").await.expect("KEYS");
    assert!(
        monitor_keys
            .iter()
            .any(|k| k.starts_with("tapgate:monitor:session:")),
        "{monitor_keys:?}"
    );
    for key in &monitor_keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut admin)
            .await
            .expect("TYPE");
        let read = match kind.as_str() {
            "hash" => "HGETALL",
            "set" => "SMEMBERS",
            "stream" => "XLEN",
            "list" => "LLEN",
            _ => "GET",
        };
        let r: redis::RedisResult<redis::Value> =
            redis::cmd(read).arg(key).query_async(&mut grafana).await;
        match r {
            Err(e) if e.code() == Some("NOPERM") => {}
            other => breaches.push(format!("tapgate-grafana: {read} {key}: {other:?}")),
        }
    }
    assert!(
        breaches.is_empty(),
        "what Redis users read gives away sessions ({} values, {} pairs tried; {} breaches, the \
         first 20):\n{}",
        tried_cookies.len(),
        tried_pairs.len(),
        breaches.len(),
        breaches[..breaches.len().min(20)].join("\n")
    );
    assert!(
        !is_blocked_as(&mut admin, "77").await,
        "the card stays unblocked"
    );
    assert_eq!(
        get(dash.addr, &alice, "/api/session").await.status,
        200,
        "alice is still in"
    );
    dash.stop().await;
}

async fn is_blocked_as(admin: &mut redis::aio::MultiplexedConnection, card: &str) -> bool {
    admin
        .exists(keys::blocked(&CardId::new(card).expect("card")))
        .await
        .expect("EXISTS")
}
