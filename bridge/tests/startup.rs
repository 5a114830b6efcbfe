//! Start-up and operations: fail-fast errors naming the unreachable address, every setting in
//! `--help` with its default, every flag and variable reaching the settings, `--print-config`,
//! config layering, and a real scrape of `/metrics`.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use support::Stack;
use tapgate_bridge::BridgeConfig;
use tapgate_bridge::Cli;
use tapgate_protocol::DeviceKind;
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_runtime::settings::{self, check, NOT_SETTINGS};
use tapgate_testkit::{free_port, RedisServer};

fn bridge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tapgate-bridge"));
    c.env_clear().env("RUST_LOG", "warn");
    c
}

fn run_to_exit(mut cmd: Command) -> (bool, String) {
    let out = cmd.output().expect("run tapgate-bridge");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unreachable_redis_fails_naming_the_url() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut cmd = bridge();
    cmd.args(["--redis", &url, "--mqtt", "mqtt://127.0.0.1:1"]);
    let (ok, text) = run_to_exit(cmd);
    assert!(!ok, "must exit non-zero: {text}");
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("cannot connect to Redis"), "{text}");
}

#[test]
fn unreachable_broker_fails_naming_the_address() {
    let redis = RedisServer::start();
    let port = free_port();
    let mut cmd = bridge();
    cmd.args([
        "--redis",
        &redis.url(),
        "--mqtt",
        &format!("mqtt://127.0.0.1:{port}"),
    ]);
    let (ok, text) = run_to_exit(cmd);
    assert!(!ok, "must exit non-zero: {text}");
    assert!(
        text.contains(&format!(
            "cannot connect to MQTT broker at 127.0.0.1:{port}"
        )),
        "{text}"
    );
}

#[test]
fn every_setting_is_in_help_with_its_default() {
    let mut cmd = bridge();
    cmd.arg("--help");
    let (ok, help) = run_to_exit(cmd);
    assert!(ok, "{help}");
    let keys = settings::defaults::<BridgeConfig>().expect("defaults");
    for key in keys.keys() {
        let flag = format!("--{}", key.replace('_', "-"));
        let env = format!("TAPGATE_{}", key.to_uppercase());
        assert!(help.contains(&flag), "{flag} missing from --help:\n{help}");
        assert!(help.contains(&env), "{env} missing from --help:\n{help}");
    }
    for shown in [
        "[default: 1500ms]",
        "[default: 30days]",
        "[default: 24h]",
        "[default: tapgate-bridge]",
        "[default: mqtt://127.0.0.1:1883]",
    ] {
        assert!(help.contains(shown), "{shown} missing from --help:\n{help}");
    }
}

/// Values for the settings whose default cannot simply be changed (text, or unset).
const SAMPLES: [(&str, &str); 14] = [
    ("redis", "redis://127.0.0.1:6390"),
    ("redis_password", "s3cret-redis"),
    ("wait_replicas", "2"),
    ("client_id", "bridge-b"),
    ("prefix", "site-b"),
    ("shared_group", "deciders"),
    ("fares", "/etc/tapgate/fares.toml"),
    ("metrics_addr", "127.0.0.1:9999"),
    ("mqtt", "mqtt://127.0.0.1:1884"),
    ("mqtt_username", "bridge"),
    ("mqtt_password", "s3cret-mqtt"),
    ("mqtt_ca", "/ca.pem"),
    ("mqtt_cert", "/cert.pem"),
    ("mqtt_key", "/key.pem"),
];

/// Every flag of the command line (a flag added later too) given a value unlike its default.
fn every_flag() -> Vec<check::FlagValue> {
    let keys = settings::defaults::<BridgeConfig>().expect("defaults");
    check::every_flag(&Cli::command(), &keys, &SAMPLES, &NOT_SETTINGS)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn not_arrived(flags: &[check::FlagValue], cfg: &BridgeConfig) -> Vec<String> {
    let keys = settings::defaults::<BridgeConfig>().expect("defaults");
    check::not_arrived(flags, &keys, &check::flat(cfg).expect("flat"))
}

#[test]
fn every_flag_reaches_the_settings() {
    let flags = every_flag();
    let argv = std::iter::once("tapgate-bridge".to_owned()).chain(check::argv(&flags));
    let (_, given) = Cli::parse_from(argv).expect("parse");
    // Not validated: TLS files with an mqtt:// URL would be refused, which is not the point here.
    let cfg: BridgeConfig = settings::load(None, given).expect("load");
    let lost = not_arrived(&flags, &cfg);
    assert!(lost.is_empty(), "flags that did not arrive: {lost:?}");
}

/// Every variable a flag names, set, arrives too; `--print-config` shows the result as a settings
/// file the bridge reads back, passwords redacted.
#[test]
fn every_variable_reaches_the_settings_and_print_config_shows_them() {
    // --print-config checks the settings, and TLS files with an mqtt:// URL are refused: the TLS
    // variables are left to every_flag_reaches_the_settings, which does not check.
    let tls = ["mqtt_ca", "mqtt_cert", "mqtt_key"];
    let flags: Vec<_> = every_flag()
        .into_iter()
        .filter(|f| !tls.contains(&f.key.as_str()))
        .collect();
    let command = Cli::command();
    let mut cmd = bridge();
    cmd.arg("--print-config");
    for f in &flags {
        let arg = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == f.key)
            .expect("arg");
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("{} has no variable", f.flag));
        cmd.env(env, &f.value);
    }
    let (ok, text) = run_to_exit(cmd);
    assert!(ok, "{text}");
    assert!(!text.contains("s3cret"), "a password is shown:\n{text}");
    assert!(text.contains("redis_password = \"***\""), "{text}");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &text).expect("write");
    let printed = BridgeConfig::load(Some(&file), Vec::<(&str, &str)>::new()).expect("reads back");
    let lost = not_arrived(&flags, &printed);
    assert!(
        lost.is_empty(),
        "variables that did not arrive: {lost:?}\n{text}"
    );
}

#[test]
fn a_flag_wins_over_its_variable_and_the_file_over_a_flags_default() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, "shard_queue = 7\ndevice_rate = 3\n").expect("write");
    let mut cmd = bridge();
    cmd.args(["--print-config", "--device-rate", "5"])
        .arg("--config")
        .arg(&file)
        .env("TAPGATE_DEVICE_RATE", "4")
        .env("TAPGATE_DEVICE_BURST", "9");
    let (ok, text) = run_to_exit(cmd);
    assert!(ok, "{text}");
    for line in ["shard_queue = 7", "device_rate = 5", "device_burst = 9"] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

#[test]
fn device_rate_limit_settings_arrive_and_are_checked() {
    let cfg = BridgeConfig::default();
    assert_eq!((cfg.device_rate, cfg.device_burst), (20, 1000));
    let cfg =
        BridgeConfig::load(None, [("device_rate", "0"), ("device_burst", "5")]).expect("load");
    assert_eq!((cfg.device_rate, cfg.device_burst), (0, 5));
    assert!(!cfg.device_rate().is_on());
    let err = BridgeConfig::load(None, [("device_burst", "0")]).expect_err("no burst");
    assert!(err.to_string().contains("device_burst"), "{err}");
    let err = BridgeConfig::load(None, [("device_rate", "2000000")]).expect_err("too fast");
    assert!(err.to_string().contains("device_rate"), "{err}");
}

#[test]
fn config_layers_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, "two_hour_duration = \"90m\"\nprefix = \"site-a\"\n").expect("write");
    let cfg = BridgeConfig::load(Some(&file), [("prefix", "site-b")]).expect("load");
    assert_eq!(cfg.two_hour_duration, Duration::from_secs(90 * 60));
    assert_eq!(
        cfg.prefix.prefix(),
        "site-b",
        "flags and env override the file"
    );

    std::fs::write(&file, "two_hour_durration = \"90m\"\n").expect("write");
    let err =
        BridgeConfig::load(Some(&file), Vec::<(&str, &str)>::new()).expect_err("typo refused");
    assert!(err.to_string().contains("two_hour_durration"), "{err}");

    let err = BridgeConfig::load(None, [("prefix", "a/+")]).expect_err("bad prefix");
    assert!(err.to_string().contains("prefix"), "{err}");
    let err = BridgeConfig::load(None, [("mqtt", "http://x")]).expect_err("bad url");
    assert!(err.to_string().contains("mqtt"), "{err}");
    // The Redis URL is parsed as it is read, from the file or a variable, or as it is typed.
    for (redis, why) in [
        ("redis+sentinel://u:s3cret@h1", "invalid Redis URL"),
        ("redis://u:change-me-s3cret@h", "placeholder"),
    ] {
        let err = BridgeConfig::load(None, [("redis", redis)])
            .expect_err(redis)
            .to_string();
        assert!(err.contains(why) && !err.contains("s3cret"), "{err}");
    }
    let mut cmd = bridge();
    cmd.args(["--redis", "redis+sentinel://u:s3cret@h1"]);
    let (ok, text) = run_to_exit(cmd);
    assert!(!ok && text.contains("--redis"), "{text}");
    assert!(
        text.contains("invalid Redis URL") && !text.contains("s3cret"),
        "{text}"
    );

    let mut cmd = bridge();
    cmd.args(["--config", file.to_str().expect("path")]);
    let (ok, text) = run_to_exit(cmd);
    assert!(!ok && text.contains("two_hour_durration"), "{text}");
}

#[tokio::test]
async fn metrics_endpoint_serves_prometheus_text() {
    let stack = Stack::start(|c| c.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    assert_eq!(g.tap("1").await["reason"], "no_pass");
    g.send(support::MessageTopic::Tap, b"nope".to_vec()).await;
    g.decision_for(None).await;

    let addr = stack.metrics_addr.expect("metrics address");
    let body = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    })
    .await
    .expect("scrape");
    let (head, text) = body.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP tapgate_") || line.starts_with("# TYPE tapgate_"),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        assert!(name.starts_with("tapgate_"), "{line}");
        samples.insert(name.to_owned(), value);
    }
    assert_eq!(
        samples[r#"tapgate_decisions_total{device_kind="gate",outcome="denied"}"#],
        1.0
    );
    assert_eq!(
        samples[r#"tapgate_rejected_total{reason="malformed_json"}"#],
        1.0
    );
    assert_eq!(samples[r#"tapgate_messages_total{message="tap"}"#], 1.0);
    assert_eq!(samples["tapgate_decision_latency_seconds_count"], 2.0);
    assert_eq!(
        samples[r#"tapgate_decision_latency_seconds_bucket{le="+Inf"}"#],
        2.0
    );
    assert!(samples.contains_key("tapgate_inflight_messages"));
    assert!(!text.contains("card="), "no card labels");
}

#[tokio::test]
async fn reconnects_after_broker_restart() {
    let mut stack = Stack::start(|c| c.max_backoff = Duration::from_millis(500)).await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    assert_eq!(g.tap("1").await["reason"], "no_pass");
    stack.broker.restart();
    drop(g);
    // Give the bridge's backoff a moment, then a new device session.
    let mut g = support::Device::connect(stack.broker.port(), DeviceKind::Gate, "g1").await;
    assert_eq!(g.tap("1").await["reason"], "no_pass");
    let metrics = stack.metrics.as_ref().expect("metrics").render();
    assert!(
        !metrics.contains("tapgate_mqtt_reconnects_total 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn keeps_deciding_after_redis_restart() {
    let mut stack = Stack::start(|c| c.max_backoff = Duration::from_millis(500)).await;
    let mut g = support::device(&stack, DeviceKind::Gate, "g1").await;
    assert_eq!(g.tap("1").await["reason"], "no_pass");
    stack.redis.restart();
    // The first call after the restart may fail and be retried; the tap is still decided.
    assert_eq!(g.tap("1").await["reason"], "no_pass");
    assert_eq!(
        stack
            .counter(tapgate_protocol::keys::COUNTERS_DENIED, "no_pass")
            .await,
        1,
        "counted in the new (empty) Redis"
    );
}

#[tokio::test]
async fn redis_password_is_used() {
    let redis = RedisServer::with_args(&["--requirepass", "s3cret"]);
    let broker = tapgate_testkit::Mosquitto::start();
    let mut config = BridgeConfig {
        redis: redis.url().parse().expect("redis url"),
        broker: BrokerConfig::url(broker.url()),
        ..BridgeConfig::default()
    };
    let refused = tapgate_bridge::start(config.clone(), tokio_util::sync::CancellationToken::new())
        .await
        .err()
        .expect("no password: refused");
    assert!(refused.to_string().contains(&redis.url()), "{refused}");
    config.redis_password = Some("s3cret".into());
    let token = tokio_util::sync::CancellationToken::new();
    let handle = tapgate_bridge::start(config, token.clone())
        .await
        .expect("with the password it starts");
    token.cancel();
    handle.join().await.expect("stops");
}

/// Keys and index fields written before card ids were canonical, on a Redis with the
/// deployment's users (`docker/redis-users.sh`), where the bridge's user may only read the block
/// index: the bridge starts under that user, fixes what it may (the card's own key), leaves the
/// index field it may not write, and decides.
#[tokio::test]
async fn starts_under_its_own_redis_user_with_legacy_fields_it_may_not_fix() {
    use tapgate_protocol::{fields, keys};
    use tapgate_testkit::redis_users;
    let (redis, _dir) = redis_users::redis_with_users();
    let mut admin = redis::Client::open(redis_users::url_as(&redis, "tapgate-admin"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("admin logs in");
    // As an older monitor wrote a block (and the monitor's user still may): the card as typed.
    for (key, field) in [
        ("tapgate:card:{04ab}:blocked", fields::blocked::REASON),
        (keys::BLOCKED_INDEX, "04ab"),
    ] {
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg("lost")
            .query_async(&mut admin)
            .await
            .expect("HSET legacy");
    }
    let broker = tapgate_testkit::Mosquitto::start();
    let config = BridgeConfig {
        redis: format!("redis://tapgate-bridge@127.0.0.1:{}", redis.port())
            .parse()
            .expect("redis url"),
        redis_password: Some(redis_users::password("tapgate-bridge").into()),
        broker: BrokerConfig::url(broker.url()),
        ..BridgeConfig::default()
    };
    let token = tokio_util::sync::CancellationToken::new();
    let handle = tapgate_bridge::start(config, token.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the bridge did not start under tapgate-bridge: {e}\n{}",
                redis.log()
            )
        });
    let mut gate = support::Device::connect(broker.port(), DeviceKind::Gate, "g1").await;
    for card in ["04AB", "04ab"] {
        let d = gate.tap(card).await;
        assert_eq!(d["reason"], "blocked", "{card}: {d}");
    }
    assert_eq!(gate.tap("0CDE").await["reason"], "no_pass");
    let index: Vec<String> = redis::cmd("HKEYS")
        .arg(keys::BLOCKED_INDEX)
        .query_async(&mut admin)
        .await
        .expect("HKEYS");
    assert_eq!(
        index,
        ["04ab"],
        "the index is left to a user that may write it"
    );
    token.cancel();
    handle.join().await.expect("stops");
}

#[test]
fn sigterm_stops_cleanly() {
    let redis = RedisServer::start();
    let broker = tapgate_testkit::Mosquitto::start();
    let mut child = bridge()
        .args(["--redis", &redis.url(), "--mqtt", &broker.url()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until it is subscribed (its log, on stderr, says so), then ask it to stop.
    let stderr = child.stderr.take().expect("stderr");
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("Subscribed; deciding") {
                let _ = subscribed_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    subscribed
        .recv_timeout(Duration::from_secs(10))
        .expect("the bridge did not subscribe within 10 s");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = reader.join().expect("log");
    assert!(exit.success(), "exit {exit}: {log}");
    assert!(log.contains("Subscribed; deciding"), "{log}");
    assert!(log.contains("Bridge stopped"), "{log}");
}
