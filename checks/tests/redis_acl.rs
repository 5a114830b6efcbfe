//! Redis least privilege: one user per component, written by docker/redis-users.sh (the file
//! compose and scripts/demo use), on a real redis-server.
//!
//! The bridge runs for real under its user behind the real mosquitto policy and decides a sale,
//! an entry, a refusal and presence; the monitor's reads and writes (including its block-list
//! script) run under its user; then each user tries what it must not do.

mod support;

use std::time::Duration;

use tapgate_bridge::BridgeConfig;
use tapgate_broker_model::policy::{BRIDGE_CLIENT, BRIDGE_USER};
use tapgate_checks::grafana;
use tapgate_protocol::{Button, CardId, DeviceId, DeviceKind, MessageId, ProductId, Tap, Topics};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::redis_users::{self, password, write_users, USERS};
use tapgate_testkit::RedisServer;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn server() -> (RedisServer, tempfile::TempDir) {
    redis_users::redis_with_users()
}

async fn login(redis: &RedisServer, user: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_users::url_as(redis, user))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{user} cannot log in: {e}\n{}", redis.log()))
}

/// Runs `args` and returns the error text, or `None` if Redis accepted it.
async fn refused(con: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> Option<String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query_async::<redis::Value>(con).await {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

fn tap(id: &str, card: &str) -> String {
    serde_json::to_string(&Tap::new(
        MessageId::new(id).expect("id"),
        CardId::new(card).expect("card"),
    ))
    .expect("json")
}

/// The monitor's block-list script, in the shape the monitor runs it: the card's hash, the index
/// and an event, from Lua, so Redis checks the script's keys against the caller's rights.
const BLOCK: &str = "redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'by', 'op', 'at', '1') \
                     redis.call('HSET', KEYS[2], ARGV[2], ARGV[1]) \
                     return redis.call('XADD', KEYS[3], '*', 'event', '{}')";

#[tokio::test]
async fn the_bridge_and_the_monitor_work_under_their_own_users() {
    let (redis, _dir) = server();
    let broker = support::broker().await;
    let topics = Topics::default();
    let config = BridgeConfig {
        redis: format!("redis://{BRIDGE_USER}@127.0.0.1:{}", redis.port())
            .parse()
            .expect("redis url"),
        redis_password: Some(password("tapgate-bridge").into()),
        broker: BrokerConfig::url(broker.url()).login(BRIDGE_USER, support::password(BRIDGE_USER)),
        client_id: BRIDGE_CLIENT.into(),
        ..BridgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let bridge = tapgate_bridge::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "bridge did not start under its Redis user: {e}\n{}",
                redis.log()
            )
        });
    let (t1, g1) = (
        DeviceId::new("t1").expect("id"),
        DeviceId::new("g1").expect("id"),
    );
    let mut terminal = support::client(broker.port(), "t1", "t1").await;
    let t_dec = topics.decision(DeviceKind::Terminal, &t1);
    terminal.subscribe(&t_dec).await;
    let mut gate = support::client(broker.port(), "g1", "g1").await;
    let g_dec = topics.decision(DeviceKind::Gate, &g1);
    gate.subscribe(&g_dec).await;
    let outcome = |m: &tapgate_testkit::probe::Received| {
        m.json()["outcome"].as_str().unwrap_or_default().to_owned()
    };

    // A sale, an entry, a refusal, presence: every Lua path and the pipeline.
    terminal
        .publish(
            &topics.tap(DeviceKind::Terminal, &t1),
            tap("t1-1", "04AB01"),
        )
        .await;
    assert_eq!(
        outcome(&terminal.expect_on(&t_dec, WAIT).await),
        "select_pass"
    );
    let button = Button {
        id: MessageId::new("t1-2").expect("id"),
        pass: ProductId::TEN_TRIP,
    };
    terminal
        .publish(
            &topics.button(&t1),
            serde_json::to_string(&button).expect("json"),
        )
        .await;
    assert_eq!(
        outcome(&terminal.expect_on(&t_dec, WAIT).await),
        "tap_to_confirm"
    );
    terminal
        .publish(
            &topics.tap(DeviceKind::Terminal, &t1),
            tap("t1-3", "04AB01"),
        )
        .await;
    assert_eq!(
        outcome(&terminal.expect_on(&t_dec, WAIT).await),
        "pass_issued"
    );
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), tap("g1-1", "04AB01"))
        .await;
    assert_eq!(outcome(&gate.expect_on(&g_dec, WAIT).await), "granted");
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), "not json")
        .await;
    assert_eq!(outcome(&gate.expect_on(&g_dec, WAIT).await), "rejected");
    // A waiting tap, then the offline entry that replaces it: settled on its charge, which marks
    // the tap as paid for one replacement (`tapgate:settled:*`).
    let at = tapgate_runtime::clock::now_ms();
    let waiting = format!(r#"{{"id":"g1-w","card":"04AB01","time":{at},"mode":"online"}}"#);
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), waiting)
        .await;
    assert_eq!(outcome(&gate.expect_on(&g_dec, WAIT).await), "granted");
    let entry = format!(
        r#"{{"id":"g1-o","card":"04AB01","time":{at},"mode":"offline","replaces":"g1-w"}}"#
    );
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), entry)
        .await;
    assert_eq!(
        outcome(&gate.expect_on(&g_dec, WAIT).await),
        "entry_settled"
    );
    gate.publish(
        &topics.heartbeat(DeviceKind::Gate, &g1),
        r#"{"uptime_s":7}"#,
    )
    .await;

    // The monitor: its reads, its sessions and login throttle, and its block-list script.
    let mut monitor = login(&redis, "tapgate-monitor").await;
    let device_key = tapgate_protocol::keys::device(DeviceKind::Gate, &g1);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let up: Option<String> = redis::cmd("HGET")
            .arg(&device_key)
            .arg("uptime_s")
            .query_async(&mut monitor)
            .await
            .expect("HGET presence");
        if up.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let card = CardId::new("04AB01").expect("card");
    for args in [
        vec!["HGETALL", tapgate_protocol::keys::COUNTERS_ENTRIES],
        vec!["SMEMBERS", tapgate_protocol::keys::DEVICES],
        vec![
            "XREVRANGE",
            tapgate_protocol::keys::EVENTS_STREAM,
            "+",
            "-",
            "COUNT",
            "5",
        ],
        vec![
            "XREAD",
            "COUNT",
            "5",
            "BLOCK",
            "10",
            "STREAMS",
            tapgate_protocol::keys::EVENTS_STREAM,
            "0",
        ],
        vec!["PTTL", "tapgate:sale:t1"],
        vec![
            "HSET",
            "tapgate:monitor:session:abc",
            "operator",
            "op",
            "csrf",
            "x",
        ],
        vec!["EXPIRE", "tapgate:monitor:session:abc", "60"],
        vec!["INCR", "tapgate:monitor:login-failures:op:127.0.0.1"],
        vec!["DEL", "tapgate:monitor:session:abc"],
    ] {
        assert_eq!(
            refused(&mut monitor, &args).await,
            None,
            "monitor: {args:?}"
        );
    }
    let pass_key = tapgate_protocol::keys::pass(&card);
    let all: Vec<String> = redis::cmd("HGETALL")
        .arg(&pass_key)
        .query_async(&mut monitor)
        .await
        .expect("monitor reads a pass");
    assert!(!all.is_empty(), "the pass the bridge issued");
    let blocked = tapgate_protocol::keys::blocked(&card);
    let r = refused(
        &mut monitor,
        &[
            "EVAL",
            BLOCK,
            "3",
            &blocked,
            tapgate_protocol::keys::BLOCKED_INDEX,
            tapgate_protocol::keys::EVENTS_STREAM,
            "lost",
            "04AB01",
        ],
    )
    .await;
    assert_eq!(r, None, "the monitor blocks a card");
    // The bridge reads the block under its own user: the next entry is denied.
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), tap("g1-2", "04AB01"))
        .await;
    let d = gate.expect_on(&g_dec, WAIT).await;
    assert_eq!(outcome(&d), "denied", "{}", d.text());

    // The bridge reads Redis's memory (INFO memory) under its own user, for its gauges.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = bridge.metrics().render();
        let used = text
            .lines()
            .find_map(|l| l.strip_prefix("tapgate_redis_used_memory_bytes "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if used > 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge never read Redis's memory under its user:\n{text}\n{}",
            redis.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut as_bridge = login(&redis, "tapgate-bridge").await;
    assert_eq!(refused(&mut as_bridge, &["INFO", "memory"]).await, None);
    // Through the sentinels (redis+sentinel://), each program asks the node they name whether
    // it is a primary yet (runtime/src/redis.rs) before using it.
    for user in ["tapgate-bridge", "tapgate-monitor"] {
        let mut con = login(&redis, user).await;
        assert_eq!(refused(&mut con, &["ROLE"]).await, None, "{user} runs ROLE");
    }

    shutdown.cancel();
    tokio::time::timeout(WAIT, bridge.join())
        .await
        .expect("bridge stops")
        .expect("cleanly");
}

#[tokio::test]
async fn each_redis_user_is_refused_what_is_not_its_job() {
    let (redis, _dir) = server();
    let card = CardId::new("04CD02").expect("card");
    let pass = tapgate_protocol::keys::pass(&card);
    let write_pass = "redis.call('HSET', KEYS[1], 'type', 'ten_trip', 'trips', '99') return 1";
    let mut admin = login(&redis, "tapgate-admin").await;
    assert_eq!(
        refused(
            &mut admin,
            &["HSET", &pass, "type", "ten_trip", "trips", "1"]
        )
        .await,
        None
    );

    // Listing key names too: key patterns do not confine SCAN or RANDOMKEY, and key names hold
    // card numbers (only the admin lists keys, and the bridge with SCAN for its start-up move of
    // legacy card keys).
    let everyone_refused: [&[&str]; 8] = [
        &["RANDOMKEY"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["CONFIG", "GET", "requirepass"],
        &["CONFIG", "SET", "appendonly", "no"],
        &["KEYS", "*"],
        &["DEBUG", "SLEEP", "0"],
        &["ACL", "LIST"],
    ];
    let mut wrong = Vec::new();
    for user in [
        "tapgate-bridge",
        "tapgate-monitor",
        "tapgate-emqx",
        "tapgate-grafana",
        "tapgate-tail",
    ] {
        let mut con = login(&redis, user).await;
        for args in everyone_refused {
            if refused(&mut con, args).await.is_none() {
                wrong.push(format!("{user} may {args:?}"));
            }
        }
        if user != "tapgate-bridge" {
            for args in [
                &["SCAN", "0"][..],
                &["SCAN", "0", "MATCH", "tapgate:card:*"],
            ] {
                if refused(&mut con, args).await.is_none() {
                    wrong.push(format!("{user} may {args:?}"));
                }
            }
        }
    }
    let mut monitor = login(&redis, "tapgate-monitor").await;
    let counters = tapgate_protocol::keys::COUNTERS_ENTRIES;
    // A void removes an unused pass and takes its sale off the day's revenue, so the monitor
    // writes passes and revenue (docker/redis-users.sh); nothing else the bridge keeps.
    for args in [
        vec!["HINCRBY", counters, "ten_trip", "1"],
        vec!["SET", "tapgate:seen:{gate:g1}:x", "granted"],
        vec!["HSET", "tapgate:sale:{t1}", "card", "04AB"],
        vec!["EVAL", write_pass, "1", "tapgate:counters:issued"],
        vec!["EVAL", "return redis.call('FLUSHALL')", "0"],
        vec!["SCRIPT", "FLUSH"],
        vec!["FUNCTION", "FLUSH"],
        vec!["HSET", "other:key", "a", "b"],
    ] {
        if refused(&mut monitor, &args).await.is_none() {
            wrong.push(format!("tapgate-monitor may {args:?}"));
        }
    }
    let mut grafana = login(&redis, "tapgate-grafana").await;
    for args in [
        vec!["HGETALL", counters],
        vec!["SMEMBERS", tapgate_protocol::keys::DEVICES],
        vec!["HMGET", "tapgate:device:gate:g1", "online"],
        vec!["XREVRANGE", tapgate_protocol::keys::EVENTS_STREAM, "+", "-"],
        vec!["HGETALL", "tapgate:emqx:authz"],
    ] {
        assert_eq!(
            refused(&mut grafana, &args).await,
            None,
            "grafana reads {args:?}"
        );
    }
    // Only what its dashboards show: not a card, not the monitor's sessions, operators and
    // audit trail, and no listing of key names (which hold card numbers).
    for args in [
        vec!["HGETALL", pass.as_str()],
        vec!["HGETALL", "tapgate:monitor:session:abc"],
        vec!["SMEMBERS", "tapgate:monitor:operator:op:sessions"],
        vec!["HGETALL", "tapgate:monitor:operators"],
        vec!["XRANGE", "tapgate:monitor:audit", "-", "+"],
        vec!["GET", "tapgate:monitor:login-failures:op:127.0.0.1"],
        vec!["SCAN", "0"],
        vec!["RANDOMKEY"],
        vec!["HSET", pass.as_str(), "trips", "99"],
        vec!["HINCRBY", counters, "ten_trip", "1"],
        vec![
            "XADD",
            tapgate_protocol::keys::EVENTS_STREAM,
            "*",
            "event",
            "{}",
        ],
        vec!["DEL", counters],
        vec!["EVAL", "return 1", "0"],
        vec!["HGETALL", "other:key"],
    ] {
        if refused(&mut grafana, &args).await.is_none() {
            wrong.push(format!("tapgate-grafana may {args:?}"));
        }
    }
    let mut emqx = login(&redis, "tapgate-emqx").await;
    assert_eq!(
        refused(&mut emqx, &["HINCRBY", "tapgate:emqx:authz", "allow", "1"]).await,
        None,
        "emqx counts"
    );
    for args in [
        vec!["HGETALL", pass.as_str()],
        vec!["HINCRBY", counters, "ten_trip", "1"],
        vec!["HGET", "tapgate:emqx:authz", "allow"],
        vec!["EVAL", "return 1", "0"],
    ] {
        if refused(&mut emqx, &args).await.is_none() {
            wrong.push(format!("tapgate-emqx may {args:?}"));
        }
    }
    let mut bridge = login(&redis, "tapgate-bridge").await;
    for args in [
        // A card's blocked hash is a declared key of the bridge's script, so the bridge has
        // write access to it (see docker/redis-users.sh); the block index it has not.
        vec!["HDEL", tapgate_protocol::keys::BLOCKED_INDEX, "04CD02"],
        vec!["HSET", "tapgate:monitor:session:x", "operator", "me"],
        vec!["INCR", "tapgate:monitor:login-failures:op:127.0.0.1"],
        vec!["HINCRBY", "tapgate:emqx:authz", "allow", "1"],
        vec!["SCRIPT", "FLUSH"],
        // It loads its function library, and may do nothing else with functions.
        vec!["FUNCTION", "FLUSH"],
        vec!["FUNCTION", "DELETE", "tapgate"],
        vec!["FUNCTION", "RESTORE", "x"],
        vec!["FUNCTION", "KILL"],
    ] {
        if refused(&mut bridge, &args).await.is_none() {
            wrong.push(format!("tapgate-bridge may {args:?}"));
        }
    }
    // The default user is off: no login without a user name.
    let anon = redis::Client::open(redis.url()).expect("url");
    // (Connecting may already fail; if it succeeds, the first command must be refused.)
    if let Ok(mut c) = anon.get_multiplexed_async_connection().await {
        if refused(&mut c, &["GET", "tapgate:events"]).await.is_none() {
            wrong.push("the default user reads".into());
        }
    }
    let pass_after: Vec<String> = redis::cmd("HGETALL")
        .arg(&pass)
        .query_async(&mut admin)
        .await
        .expect("HGETALL");
    assert!(
        pass_after.contains(&"1".to_owned()),
        "the pass is unchanged: {pass_after:?}"
    );
    assert!(
        wrong.is_empty(),
        "Redis users may do more than their job:\n{}",
        wrong.join("\n")
    );
}

/// What `tapgate-monitor tail` (and `tail --audit`, `report`) runs, in the shape it runs it
/// (monitor/src/tail.rs, stream.rs, audit.rs, report.rs).
fn tail_reads() -> Vec<Vec<&'static str>> {
    use tapgate_protocol::keys;
    vec![
        vec!["XREVRANGE", keys::EVENTS_STREAM, "+", "-", "COUNT", "10"],
        vec!["XRANGE", keys::EVENTS_STREAM, "-", "+", "COUNT", "500"],
        vec![
            "XREAD",
            "COUNT",
            "500",
            "BLOCK",
            "10",
            "STREAMS",
            keys::EVENTS_STREAM,
            "0",
        ],
        vec!["XLEN", keys::EVENTS_STREAM],
        vec!["XREVRANGE", AUDIT, "+", "-", "COUNT", "10"],
        vec!["XREAD", "BLOCK", "10", "STREAMS", AUDIT, "0"],
        vec!["HGETALL", keys::COUNTERS_ENTRIES],
        vec!["SMEMBERS", keys::DEVICES],
        vec!["HGETALL", "tapgate:device:gate:g1"],
        vec!["HGETALL", "tapgate:revenue:2026-01-01"],
        vec!["PING"],
        // Through the sentinels: is the node they name a primary yet?
        vec!["ROLE"],
    ]
}

/// The monitor's audit trail (monitor/src/audit.rs).
const AUDIT: &str = "tapgate:monitor:audit";

#[tokio::test]
async fn tail_has_its_own_user_that_reads_and_never_writes() {
    let (redis, _dir) = server();
    let mut tail = login(&redis, "tapgate-tail").await;
    let mut admin = login(&redis, "tapgate-admin").await;
    for stream in [tapgate_protocol::keys::EVENTS_STREAM, AUDIT] {
        assert_eq!(
            refused(&mut admin, &["XADD", stream, "*", "event", "{}"]).await,
            None
        );
    }
    for args in tail_reads() {
        assert_eq!(refused(&mut tail, &args).await, None, "tail runs {args:?}");
    }
    let mut wrong = Vec::new();
    // Not an operator's session, not the operators, not a card; no listing of key names; and no
    // write of any kind, scripts included.
    for args in [
        vec!["HGETALL", "tapgate:monitor:session:abc"],
        vec!["SMEMBERS", "tapgate:monitor:operator:op:sessions"],
        vec!["HGETALL", "tapgate:monitor:operators"],
        vec!["GET", "tapgate:monitor:login-failures:name:op"],
        vec!["HGETALL", "tapgate:card:{04AB}:pass"],
        vec!["HGETALL", "tapgate:blocked"],
        vec!["GET", "tapgate:seen:{gate:g1}:x"],
        vec!["SCAN", "0", "MATCH", "tapgate:monitor:*"],
        vec!["RANDOMKEY"],
        vec!["HSET", "tapgate:monitor:session:abc", "operator", "op"],
        vec![
            "XADD",
            tapgate_protocol::keys::EVENTS_STREAM,
            "*",
            "event",
            "{}",
        ],
        vec!["XADD", AUDIT, "*", "action", "login"],
        vec!["XDEL", AUDIT, "0-1"],
        vec![
            "XTRIM",
            tapgate_protocol::keys::EVENTS_STREAM,
            "MAXLEN",
            "0",
        ],
        vec!["DEL", AUDIT],
        vec![
            "HINCRBY",
            tapgate_protocol::keys::COUNTERS_ENTRIES,
            "x",
            "1",
        ],
        vec!["EVAL", "return 1", "0"],
        vec!["PUBLISH", "x", "y"],
    ] {
        if refused(&mut tail, &args).await.is_none() {
            wrong.push(format!("tapgate-tail may {args:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "tail's credential does more than read:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn the_audit_trail_and_the_event_stream_are_append_only() {
    let (redis, _dir) = server();
    let events = tapgate_protocol::keys::EVENTS_STREAM;
    let mut admin = login(&redis, "tapgate-admin").await;
    let mut wrong = Vec::new();
    for stream in [events, AUDIT] {
        for _ in 0..3 {
            assert_eq!(
                refused(&mut admin, &["XADD", stream, "*", "event", "{}"]).await,
                None
            );
        }
        // Every way but XADD to take entries away, rewrite or replace the stream.
        let attempts: Vec<Vec<&str>> = vec![
            vec!["XDEL", stream, "0-1"],
            vec!["XTRIM", stream, "MAXLEN", "0"],
            vec!["XTRIM", stream, "MINID", "9999999999999"],
            vec!["XSETID", stream, "9999999999999-0"],
            vec!["XGROUP", "CREATE", stream, "g", "$"],
            vec!["XGROUP", "DESTROY", stream, "g"],
            vec!["XREADGROUP", "GROUP", "g", "c", "STREAMS", stream, ">"],
            vec!["DEL", stream],
            vec!["UNLINK", stream],
            vec!["RENAME", stream, "tapgate:card:{04AB}:pass"],
            vec!["EXPIRE", stream, "1"],
            vec!["PEXPIRE", stream, "1"],
            vec!["SET", stream, "gone"],
            vec!["COPY", "tapgate:card:{04AB}:pass", stream, "REPLACE"],
            vec!["RESTORE", stream, "0", "x", "REPLACE"],
            vec!["EVAL", "return redis.call('DEL', KEYS[1])", "1", stream],
            vec![
                "EVAL",
                "return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)",
                "1",
                stream,
            ],
        ];
        for user in [
            "tapgate-bridge",
            "tapgate-monitor",
            "tapgate-emqx",
            "tapgate-grafana",
            "tapgate-tail",
        ] {
            let mut con = login(&redis, user).await;
            for args in &attempts {
                if refused(&mut con, args).await.is_none() {
                    wrong.push(format!("{user} may {args:?}"));
                }
            }
        }
        let len: u64 = redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut admin)
            .await
            .expect("XLEN");
        assert_eq!(len, 3, "{stream} still holds every entry");
    }
    // Appending stays: the monitor adds to both streams, trimming only inside its own XADD.
    let mut monitor = login(&redis, "tapgate-monitor").await;
    for stream in [events, AUDIT] {
        assert_eq!(
            refused(
                &mut monitor,
                &["XADD", stream, "MAXLEN", "~", "100000", "*", "event", "{}"]
            )
            .await,
            None,
            "the monitor appends to {stream}"
        );
    }
    let mut bridge = login(&redis, "tapgate-bridge").await;
    assert!(
        refused(&mut bridge, &["XADD", AUDIT, "*", "action", "login"])
            .await
            .is_some(),
        "the bridge does not write the audit trail"
    );
    assert!(
        wrong.is_empty(),
        "a stream can be shortened or replaced:\n{}",
        wrong.join("\n")
    );
}

/// A dashboard key with its template variables (`$gate`, `${gate}`, `[[gate]]`) filled in.
fn filled(key: &str, variables: &[grafana::RedisVariable]) -> String {
    let mut key = key.to_owned();
    for v in variables {
        for form in [
            format!("${{{}}}", v.name),
            format!("[[{}]]", v.name),
            format!("${}", v.name),
        ] {
            key = key.replace(&form, "x1");
        }
    }
    key
}

#[tokio::test]
async fn grafana_may_run_every_query_of_its_dashboards() {
    let (redis, _dir) = server();
    let mut admin = login(&redis, "tapgate-admin").await;
    let sources = grafana::load_datasources("grafana/provisioning/datasources/tapgate.yml")
        .expect("data sources");
    let mut commands: Vec<Vec<String>> = Vec::new();
    for (_, queries) in grafana::dashboards(&sources).expect("dashboards") {
        for q in &queries.redis_queries {
            let mut words = vec![q.command.clone(), filled(&q.key, &queries.redis_variables)];
            match q.command.as_str() {
                "xrevrange" => words.extend(["+", "-", "COUNT", "20"].map(String::from)),
                "xrange" => words.extend(["-", "+", "COUNT", "20"].map(String::from)),
                _ => words.extend(q.fields.iter().cloned()),
            }
            commands.push(words);
        }
        for v in &queries.redis_variables {
            commands.push(v.query.split_whitespace().map(str::to_owned).collect());
        }
    }
    assert!(
        commands.len() >= 10,
        "the dashboards' queries: {commands:?}"
    );
    let mut wrong = Vec::new();
    for words in &commands {
        // Redis answers whether the user may run the command, without running it.
        let answer: String = redis::cmd("ACL")
            .arg("DRYRUN")
            .arg("tapgate-grafana")
            .arg(words)
            .query_async(&mut admin)
            .await
            .expect("ACL DRYRUN");
        if answer != "OK" {
            wrong.push(format!("{}: {answer}", words.join(" ")));
        }
    }
    let control: String = redis::cmd("ACL")
        .arg("DRYRUN")
        .arg("tapgate-grafana")
        .arg(&["HGETALL", "tapgate:monitor:operators"])
        .query_async(&mut admin)
        .await
        .expect("ACL DRYRUN");
    assert_ne!(
        control, "OK",
        "the dry run refuses what the user may not do"
    );
    assert!(
        wrong.is_empty(),
        "tapgate-grafana may not run what its dashboards query:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_users_script_refuses_placeholders_and_weak_passwords() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("users.acl");
    let good: Vec<(&str, &str)> = USERS.iter().map(|(k, _, v)| (*k, *v)).collect();
    for (name, bad) in [
        ("REDIS_BRIDGE_PASSWORD", "change-me-redis-bridge"),
        ("REDIS_MONITOR_PASSWORD", ""),
        ("REDIS_GRAFANA_PASSWORD", "short"),
        ("REDIS_EMQX_PASSWORD", "has a space in it, long"),
    ] {
        let env: Vec<(&str, &str)> = good
            .iter()
            .map(|(k, v)| if *k == name { (*k, bad) } else { (*k, *v) })
            .collect();
        let (ok, err) = write_users(&out, &env);
        assert!(!ok, "{name}={bad:?} was accepted");
        assert!(err.contains(name), "the refusal names {name}: {err}");
    }
    let (ok, err) = write_users(&out, &good);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&out).expect("acl");
    for (_, _, pw) in USERS {
        assert!(
            !text.contains(pw),
            "the ACL file holds hashes, not passwords"
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&out).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the ACL file is private: {mode:o}");
}
