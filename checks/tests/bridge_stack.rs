//! The real bridge behind the real mosquitto policy, and what it exposes to the dashboards.
//!
//! One rider buys a ten-trip pass at a terminal and enters at a gate, every message going
//! through mosquitto with the repository's policy and the bridge logged in with its own login. Then:
//! the bridge's `/metrics` is scraped for real and checked by `promtool check metrics`, every metric the Grafana
//! dashboards query must be in it, and every Redis key the bridge wrote must be a documented
//! key (so the documented list the dashboard check relies on is complete).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tapgate_bridge::BridgeConfig;
use tapgate_broker_model::policy::{self as access, BRIDGE_USER, MONITOR_CLIENT, MONITOR_USER};
use tapgate_checks::grafana;
use tapgate_checks::keys;
use tapgate_checks::promtool;
use tapgate_checks::repo::report;
use tapgate_protocol::{Button, CardId, DeviceId, DeviceKind, MessageId, ProductId, Tap, Topics};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::{MqttProbe, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn tap(id: &str, card: &str) -> String {
    serde_json::to_string(&Tap::new(
        MessageId::new(id).expect("id"),
        CardId::new(card).expect("card"),
    ))
    .expect("json")
}

fn outcome(m: &tapgate_testkit::probe::Received) -> String {
    m.json()["outcome"].as_str().unwrap_or_default().to_owned()
}

async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bridge\r\n\r\n")
        .await
        .expect("send request");
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .await
        .expect("read response");
    let (head, body) = body
        .split_once("\r\n\r\n")
        .expect("HTTP response with a body");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "status: {head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "Prometheus text needs text/plain: {head}"
    );
    body.to_owned()
}

#[tokio::test]
async fn bridge_behind_the_policy_serves_metrics_the_dashboards_use() {
    let redis = RedisServer::start();
    let broker = support::broker().await;
    let topics = Topics::default();
    let config = BridgeConfig {
        redis: redis.url().parse().expect("redis url"),
        broker: BrokerConfig::url(broker.url()).login(BRIDGE_USER, support::password(BRIDGE_USER)),
        client_id: access::BRIDGE_CLIENT.into(),
        shared_group: Some(access::SHARED_GROUP.into()),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..BridgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let bridge = tapgate_bridge::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("bridge did not start: {e}\n{}", broker.log()));
    let metrics_addr = bridge.metrics_addr().expect("metrics address");

    let mut monitor = support::client(broker.port(), MONITOR_USER, MONITOR_CLIENT).await;
    monitor.subscribe(&topics.events_filter()).await;
    let t1 = DeviceId::new("t1").expect("id");
    let g1 = DeviceId::new("g1").expect("id");
    let mut terminal: MqttProbe = support::client(broker.port(), "t1", "t1").await;
    terminal
        .subscribe(&topics.decision(DeviceKind::Terminal, &t1))
        .await;
    let mut gate = support::client(broker.port(), "g1", "g1").await;
    gate.subscribe(&topics.decision(DeviceKind::Gate, &g1))
        .await;

    // Buy a ten-trip pass: tap, choose, tap again.
    let t_decision = topics.decision(DeviceKind::Terminal, &t1);
    terminal
        .publish(
            &topics.tap(DeviceKind::Terminal, &t1),
            tap("t1-1", "0412AB"),
        )
        .await;
    let d = terminal.expect_on(&t_decision, WAIT).await;
    assert_eq!(outcome(&d), "select_pass", "{}", d.text());
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
    let d = terminal.expect_on(&t_decision, WAIT).await;
    assert_eq!(outcome(&d), "tap_to_confirm", "{}", d.text());
    terminal
        .publish(
            &topics.tap(DeviceKind::Terminal, &t1),
            tap("t1-3", "0412AB"),
        )
        .await;
    let d = terminal.expect_on(&t_decision, WAIT).await;
    assert_eq!(outcome(&d), "pass_issued", "{}", d.text());
    // Enter at the gate; the monitor sees the events.
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), tap("g1-1", "0412AB"))
        .await;
    let d = gate
        .expect_on(&topics.decision(DeviceKind::Gate, &g1), WAIT)
        .await;
    assert_eq!(outcome(&d), "granted", "{}", d.text());
    let events: Vec<String> = monitor
        .drain_for(Duration::from_millis(500))
        .await
        .iter()
        .map(|m| m.topic.clone())
        .collect();
    for kind in [
        tapgate_protocol::EventKind::PassIssued,
        tapgate_protocol::EventKind::PassUsed,
    ] {
        let topic = topics.event(kind, Some(ProductId::TEN_TRIP));
        assert!(
            events.contains(&topic),
            "monitor saw {events:?}, not {topic}"
        );
    }

    // Presence and a denial, so every dashboard panel has data.
    for (kind, id, probe) in [
        (DeviceKind::Gate, &g1, &gate),
        (DeviceKind::Terminal, &t1, &terminal),
    ] {
        probe
            .publish(&topics.status(kind, id), tapgate_protocol::status::ONLINE)
            .await;
        let hb = tapgate_protocol::status::Heartbeat { uptime_s: 42 };
        probe
            .publish(
                &topics.heartbeat(kind, id),
                serde_json::to_string(&hb).expect("json"),
            )
            .await;
    }
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), tap("g1-2", "99"))
        .await;
    let d = gate
        .expect_on(&topics.decision(DeviceKind::Gate, &g1), WAIT)
        .await;
    assert_eq!(outcome(&d), "denied", "{}", d.text());
    gate.publish(&topics.tap(DeviceKind::Gate, &g1), "not json")
        .await;
    let d = gate
        .expect_on(&topics.decision(DeviceKind::Gate, &g1), WAIT)
        .await;
    assert_eq!(outcome(&d), "rejected", "{}", d.text());
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    // Heartbeats are not answered: wait until both presence hashes have their uptime.
    let deadline = tokio::time::Instant::now() + WAIT;
    for (kind, id) in [(DeviceKind::Gate, &g1), (DeviceKind::Terminal, &t1)] {
        let key = tapgate_protocol::keys::device(kind, id);
        loop {
            let up: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg("uptime_s")
                .query_async(&mut con)
                .await
                .expect("HGET");
            if up.is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no heartbeat in {key}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // /metrics, for real.
    let text = scrape(metrics_addr).await;
    promtool::check_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let samples = promtool::samples(&text);
    let taps: f64 = samples
        .iter()
        .filter(|s| s.name == "tapgate_messages_total" && s.label("message") == Some("tap"))
        .map(|s| s.value)
        .sum();
    assert!(taps >= 4.0, "at least the four valid taps counted\n{text}");
    let types = promtool::types(&text);
    assert_eq!(
        types
            .get("tapgate_decision_latency_seconds")
            .map(String::as_str),
        Some("histogram"),
        "{text}"
    );
    let count = samples
        .iter()
        .find(|s| s.name == "tapgate_decision_latency_seconds_count")
        .map(|s| s.value);
    assert!(
        count >= Some(5.0),
        "at least the five decisions on valid messages timed\n{text}"
    );
    for (family, kind) in [
        ("tapgate_messages_total", "counter"),
        ("tapgate_decisions_total", "counter"),
        ("tapgate_rejected_total", "counter"),
        ("tapgate_replays_total", "counter"),
        ("tapgate_redis_reconnects_total", "counter"),
        ("tapgate_mqtt_reconnects_total", "counter"),
        ("tapgate_inflight_messages", "gauge"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}\n{text}"
        );
    }
    for s in &samples {
        assert!(
            s.labels.iter().all(|(k, _)| k != "card" && k != "device"),
            "no card or device labels: {s:?}"
        );
    }
    // Every metric the dashboards query is exposed.
    let exposed: Vec<String> = samples.iter().map(|s| s.name.clone()).collect();
    let sources = grafana::load_datasources("grafana/provisioning/datasources/tapgate.yml")
        .expect("data sources");
    for (rel, queries) in grafana::dashboards(&sources).expect("dashboards") {
        let findings = grafana::check_metrics(&rel, &queries, &exposed);
        assert!(findings.is_empty(), "{}", report(&findings));
    }

    // Every Redis query of the dashboards runs against what the bridge wrote.
    run_dashboard_queries(&mut con, &sources).await;

    // Every key the bridge wrote is documented.
    let written: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .expect("KEYS");
    assert!(written.len() >= 5, "the bridge wrote keys: {written:?}");
    let documented = keys::documented();
    let unknown: Vec<&String> = written
        .iter()
        .filter(|k| keys::match_key(k, &documented).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "keys written but not documented: {unknown:?}"
    );

    shutdown.cancel();
    tokio::time::timeout(WAIT, bridge.join())
        .await
        .expect("bridge stops within 10 s")
        .expect("bridge stops cleanly");
}

/// Runs every Redis query of the dashboards against the bridge's data, with each template
/// variable filled from its own query: no type errors, data for every key the bridge writes,
/// and `HMGET` fields that exist. The `tapgate:emqx:*` keys need EMQX, which does not run here.
async fn run_dashboard_queries(
    con: &mut redis::aio::MultiplexedConnection,
    sources: &[grafana::DataSource],
) {
    let mut problems = Vec::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let today = tapgate_protocol::Catalogue::builtin(7_200_000)
        .service_day(now_ms)
        .label();
    for (rel, queries) in grafana::dashboards(sources).expect("dashboards") {
        // Variable values, from the variables' own queries and regexes (`/^kind\/(.+)$/`).
        let mut values: Vec<(String, String)> = Vec::new();
        for var in &queries.redis_variables {
            let mut words = var.query.split_whitespace();
            let (Some(cmd), Some(key)) = (words.next(), words.next()) else {
                problems.push(format!("{rel}: variable {} has no command", var.name));
                continue;
            };
            let members: Vec<String> = redis::cmd(cmd)
                .arg(key)
                .query_async(con)
                .await
                .expect("variable query");
            let Some(kind) = var
                .regex
                .strip_prefix("/^")
                .and_then(|r| r.strip_suffix("\\/(.+)$/"))
            else {
                problems.push(format!(
                    "{rel}: variable {} regex {:?} has an unexpected shape",
                    var.name, var.regex
                ));
                continue;
            };
            match members
                .iter()
                .find_map(|m| m.strip_prefix(&format!("{kind}/")))
            {
                Some(v) => values.push((var.name.clone(), v.to_owned())),
                None => problems.push(format!(
                    "{rel}: variable {} finds nothing in {members:?}",
                    var.name
                )),
            }
        }
        for q in &queries.redis_queries {
            if q.key.starts_with("tapgate:emqx:") {
                continue;
            }
            let mut key = q.key.clone();
            for (name, value) in &values {
                key = key.replace(&format!("${name}"), value);
            }
            // The revenue panel's day is the date the time range ends on: today's service day
            // (the bridge runs the built-in catalogue, whose days start at 04:00 UTC).
            key = key.replace("${__to:date:YYYY-MM-DD}", &today);
            let mut cmd = redis::cmd(&q.command);
            cmd.arg(&key);
            match q.command.as_str() {
                "xrevrange" => {
                    cmd.arg("+").arg("-").arg("COUNT").arg(20);
                }
                "xrange" => {
                    cmd.arg("-").arg("+").arg("COUNT").arg(20);
                }
                _ => {
                    for f in &q.fields {
                        cmd.arg(f);
                    }
                }
            }
            let answer: Result<redis::Value, _> = cmd.query_async(con).await;
            let place = format!("{rel} {} ({} {key} {:?})", q.place, q.command, q.fields);
            let empty = |v: &redis::Value| match v {
                redis::Value::Array(items) | redis::Value::Set(items) => items.is_empty(),
                redis::Value::Map(items) => items.is_empty(),
                redis::Value::Nil => true,
                _ => false,
            };
            match answer {
                Err(e) => problems.push(format!("{place}: {e}")),
                Ok(v) if empty(&v) => problems.push(format!("{place}: no data")),
                Ok(redis::Value::Array(items)) if q.command == "hmget" => {
                    if items.iter().all(|v| *v == redis::Value::Nil) {
                        problems.push(format!("{place}: none of the fields exist"));
                    }
                }
                Ok(_) => {}
            }
            if key.starts_with(tapgate_protocol::keys::COUNTERS_DEVICE_PREFIX) {
                for f in &q.fields {
                    if !tapgate_protocol::keys::DEVICE_COUNTER_FIELDS.contains(&f.as_str()) {
                        problems.push(format!("{place}: {f} is not a device counter field"));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard Redis queries on real data:\n{}",
        problems.join("\n")
    );
}
