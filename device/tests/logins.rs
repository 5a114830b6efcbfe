//! The rider simulator logs in the way a broker that checks passwords expects: with the
//! credentials in the broker URL, or as each provisioned device with its own password
//! (`--devices`). A wrong device password keeps the simulation from starting.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tapgate_bridge::BridgeConfig;
use tapgate_device::sim::{self, SimConfig, SimError};
use tapgate_runtime::mqtt::BrokerConfig;
use tapgate_testkit::{Mosquitto, RedisServer};
use tokio_util::sync::CancellationToken;

/// A broker that lets in only the users given, with their passwords.
fn broker_with_users(users: &[(&str, &str)]) -> Mosquitto {
    let dir = Mosquitto::prepare_dir();
    let passwd = dir.path().join("passwd");
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg(&passwd)
            .arg(user)
            .arg(password)
            .status()
            .expect("mosquitto_passwd (apt-get install mosquitto)");
        assert!(status.success(), "mosquitto_passwd failed for {user}");
    }
    let extra = format!(
        "allow_anonymous false\npassword_file {}\n",
        passwd.display()
    );
    Mosquitto::with_dir_and_config(dir, &extra)
}

async fn start_bridge(redis: &RedisServer, broker: &Mosquitto) -> CancellationToken {
    let token = CancellationToken::new();
    let cfg = BridgeConfig {
        redis: redis.url().parse().expect("redis url"),
        broker: BrokerConfig::url(broker.url()).login("bridge", "bridge-pw"),
        client_id: format!("bridge-{}", broker.port()),
        ..BridgeConfig::default()
    };
    let handle = tapgate_bridge::start(cfg, token.clone())
        .await
        .unwrap_or_else(|e| panic!("bridge: {e}\n{}", broker.log()));
    tokio::spawn(handle.join());
    token
}

/// A short run; each `seed` names its own cards, so runs on one Redis do not meet.
fn short_run(mqtt: String, seed: u64) -> SimConfig {
    SimConfig {
        broker: BrokerConfig::url(mqtt),
        gates: 2,
        terminals: 1,
        riders: 20,
        rate: 50.0,
        duration: Duration::from_secs(2),
        grace: Duration::from_secs(5),
        seed,
        drop_every: Duration::ZERO,
        ..SimConfig::default()
    }
}

/// The settings checked, as `tapgate-device simulate` checks them before it runs.
fn checked(cfg: SimConfig) -> sim::Simulation {
    cfg.check().expect("valid settings")
}

fn write_devices(path: &Path, devices: &[(&str, &str, &str)]) {
    let body: String = devices
        .iter()
        .map(|(id, kind, pw)| {
            format!("[[devices]]\nid = \"{id}\"\nkind = \"{kind}\"\npassword = \"{pw}\"\n")
        })
        .collect();
    std::fs::write(path, body).expect("devices file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_logs_in_with_url_credentials_or_as_each_device() {
    let redis = RedisServer::start();
    let broker = broker_with_users(&[
        ("bridge", "bridge-pw"),
        ("shared", "shared-pw"),
        ("g1", "g1-pw"),
        ("g2", "g2-pw"),
        ("t1", "t1-pw"),
    ]);
    let bridge = start_bridge(&redis, &broker).await;

    // Credentials only in the URL.
    let url = format!("mqtt://shared:shared-pw@127.0.0.1:{}", broker.port());
    let summary = sim::run(checked(short_run(url, 7)), CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("URL credentials: {e}\n{}", broker.log()));
    assert_eq!(summary.mismatches, 0, "{:?}", summary.mismatch_examples);
    assert_eq!(summary.lost, 0);
    assert!(summary.taps_sent > 0);

    // Provisioned devices, each with its own login.
    let dir = tempfile::tempdir().expect("tmp");
    let devices = dir.path().join("devices.toml");
    write_devices(
        &devices,
        &[
            ("g1", "gate", "g1-pw"),
            ("g2", "gate", "g2-pw"),
            ("t1", "terminal", "t1-pw"),
        ],
    );
    let cfg = SimConfig {
        devices: Some(devices.clone()),
        ..short_run(broker.url(), 8)
    };
    let summary = sim::run(checked(cfg), CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("per-device logins: {e}\n{}", broker.log()));
    assert_eq!(summary.mismatches, 0, "{:?}", summary.mismatch_examples);
    assert_eq!(summary.lost, 0);
    assert!(summary.taps_sent > 0);
    let log = broker.log();
    for id in ["g1", "g2", "t1"] {
        assert!(
            log.contains(&format!("as {id} ")),
            "{id} did not log in:\n{log}"
        );
    }

    // One wrong password: the run does not start, and says how many devices got in.
    write_devices(
        &devices,
        &[("g1", "gate", "g1-pw"), ("t1", "terminal", "wrong")],
    );
    let cfg = SimConfig {
        devices: Some(devices),
        ..short_run(broker.url(), 9)
    };
    match sim::run(checked(cfg), CancellationToken::new()).await {
        Err(SimError::Connect { up, total, .. }) => assert_eq!((up, total), (1, 2)),
        other => panic!("expected a connect failure, got {other:?}"),
    }
    bridge.cancel();
}
