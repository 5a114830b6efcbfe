//! tapgate-admin against a real mosquitto with the dynamic-security plugin: the library and the
//! command line, including every refusal an operator can meet.

use std::process::Command;
use std::time::Duration;

use tapgate_admin::{AdminError, Broker, Expect, LoginKind, Settings};
use tapgate_protocol::{DeviceId, DeviceKind};
use tapgate_testkit::session::{self, MqttSession};
use tapgate_testkit::Mosquitto;

const ADMIN_PW: &str = "admin-pw-for-admin-tests";

fn broker() -> Mosquitto {
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mosquitto/tapgate.conf"
    ))
    .expect("mosquitto/tapgate.conf");
    Mosquitto::with_dynsec("admin", ADMIN_PW, &policy)
}

fn settings(broker: &Mosquitto) -> Settings {
    Settings {
        mqtt: tapgate_protocol::broker::BrokerUrl::parse(&broker.url()).expect("url"),
        admin_password: Some(ADMIN_PW.into()),
        timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// Runs the tapgate-admin binary against `broker`; (success, stdout, stderr).
fn cli(broker: &Mosquitto, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
        .args(args)
        .env("TAPGATE_MQTT", broker.url())
        .env("TAPGATE_ADMIN_PASSWORD", ADMIN_PW)
        .env_remove("TAPGATE_DEVICE_PASSWORD")
        .output()
        .expect("run tapgate-admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn add_prints_the_device_settings_and_the_device_logs_in_with_them() {
    let broker = broker();
    let (ok, out, err) = cli(&broker, &["device", "add", "g7", "--kind", "gate"]);
    assert!(ok, "{err}\n{}", broker.log());
    let toml: std::collections::BTreeMap<String, String> = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    assert_eq!(toml.get("id").map(String::as_str), Some("g7"), "{out}");
    assert_eq!(
        toml.get("mqtt_username").map(String::as_str),
        Some("g7"),
        "{out}"
    );
    let pw = toml.get("mqtt_password").cloned().expect("a password");
    assert!(pw.len() >= 32, "a strong generated password: {pw:?}");
    assert!(out.starts_with("# tapgate gate g7"), "{out}");
    // The printed credential works, as client id g7 only.
    let mut s = MqttSession::connect(session::options(broker.port(), "g7", "g7", &pw))
        .await
        .unwrap_or_else(|e| panic!("g7 logs in: {e}\n{}", broker.log()));
    assert_eq!(s.subscribe("tapgate/gate/g7/decision").await, Ok(true));
    assert!(
        MqttSession::connect(session::options(broker.port(), "other", "g7", &pw))
            .await
            .is_err()
    );
    // The simulator's entry, with a chosen password.
    let (ok, out, err) = cli(
        &broker,
        &[
            "device",
            "add",
            "t4",
            "--kind",
            "terminal",
            "--format",
            "simulator",
            "--password",
            "Chosen-long-password-9",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "[[devices]]\nid = \"t4\"\nkind = \"terminal\"\npassword = \"Chosen-long-password-9\"\n"
    );
    let (ok, out, _) = cli(&broker, &["device", "list"]);
    assert!(ok);
    assert_eq!(out, "g7\tgate\nt4\tterminal\n");
}

/// Device ids the services' logins or the broker's administrator use, or could use (the EMQX
/// rules give every `tapgate-bridge-*` login the bridges' rights), in any case.
const SERVICES_NAMESPACE: [&str; 8] = [
    "tapgate-bridge-9",
    "tapgate-bridge",
    "Tapgate-Monitor",
    "TAPGATE-EMQX",
    "tapgate_bridge",
    "tapgate",
    "Admin",
    "ADMIN",
];

#[tokio::test]
async fn device_ids_in_the_services_namespace_are_refused() {
    let broker = broker();
    for id in SERVICES_NAMESPACE {
        let (ok, out, err) = cli(&broker, &["device", "add", id, "--kind", "gate"]);
        assert!(!ok, "{id}: added\n{out}");
        assert!(
            err.contains("reserved for tapgate's services and the broker's administrator"),
            "{id}: {err}"
        );
    }
    let mut admin = Broker::connect(&settings(&broker)).await.expect("admin");
    for id in SERVICES_NAMESPACE {
        let id = DeviceId::new(id).expect("a valid id by the protocol's rule");
        let r = admin
            .add_device(&id, DeviceKind::Gate, "long-enough-password-1")
            .await;
        assert!(
            matches!(r, Err(AdminError::ReservedDeviceId { .. })),
            "{id}: {r:?}"
        );
    }
    assert!(
        admin
            .list()
            .await
            .expect("list")
            .iter()
            .all(|l| l.kind.is_service() || l.username == "admin"),
        "no device was made"
    );
    // Ids that only look alike are devices like any other.
    for id in ["tapgate1", "gate-tapgate-bridge", "administrator"] {
        let (ok, _, err) = cli(&broker, &["device", "add", id, "--kind", "gate"]);
        assert!(ok, "{id}: {err}");
    }
    admin.close().await;
}

#[tokio::test]
async fn refusals_are_clear_and_specific() {
    let broker = broker();
    for (args, expect) in [
        (
            vec!["device", "add", "g 7", "--kind", "gate"],
            "bad device id: device id holds ' '",
        ),
        (
            vec!["device", "add", "+", "--kind", "gate"],
            "bad device id",
        ),
        (
            vec![
                "device",
                "add",
                "g1",
                "--kind",
                "gate",
                "--password",
                "short",
            ],
            "at least 16",
        ),
        (
            vec![
                "device",
                "add",
                "g1",
                "--kind",
                "gate",
                "--password",
                "change-me-device-pw",
            ],
            "change-me",
        ),
        (vec!["device", "remove", "g404"], "no login \"g404\""),
        (
            vec!["service", "add", "a+b", "--role", "bridge"],
            "bad service name",
        ),
    ] {
        let (ok, _, err) = cli(&broker, &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in {err}"
        );
    }
    let (ok, _, err) = cli(&broker, &["device", "add", "g1", "--kind", "gate"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&broker, &["device", "add", "g1", "--kind", "terminal"]);
    assert!(!ok && err.contains("\"g1\" already exists"), "{err}");
    // A wrong admin password: the broker's refusal.
    let out = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
        .args(["device", "list"])
        .env("TAPGATE_MQTT", broker.url())
        .env("TAPGATE_ADMIN_PASSWORD", "wrong-admin-password")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("refused"), "{err}");
    // A placeholder admin password never reaches the broker.
    let out = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
        .args(["device", "list"])
        .env("TAPGATE_MQTT", broker.url())
        .env("TAPGATE_ADMIN_PASSWORD", "change-me-admin")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("change-me"), "{err}");
}

#[tokio::test]
async fn remove_cuts_the_live_device_and_keeps_services_apart() {
    let broker = broker();
    let mut admin = Broker::connect(&settings(&broker)).await.expect("admin");
    let g5 = DeviceId::new("g5").expect("id");
    admin
        .add_device(&g5, DeviceKind::Gate, "G5-long-password-xyz")
        .await
        .expect("add");
    admin
        .add_service(
            "tapgate-monitor",
            tapgate_admin::ServiceRole::Monitor,
            "Monitor-long-password",
        )
        .await
        .expect("service");
    let mut live = MqttSession::connect(session::options(
        broker.port(),
        "g5",
        "g5",
        "G5-long-password-xyz",
    ))
    .await
    .expect("g5 logs in");
    let err = admin
        .remove("tapgate-monitor", Expect::Device)
        .await
        .expect_err("not a device");
    assert!(matches!(err, AdminError::WrongKind { .. }), "{err}");
    let err = admin
        .remove("g5", Expect::Service)
        .await
        .expect_err("not a service");
    assert!(matches!(err, AdminError::WrongKind { .. }), "{err}");
    admin.remove("g5", Expect::Device).await.expect("remove");
    assert!(
        live.closed(Duration::from_secs(5)).await.is_some(),
        "the live session is cut"
    );
    let list = admin.list().await.expect("list");
    assert!(list.iter().all(|l| l.username != "g5"));
    assert!(list.iter().any(|l| l.username == "tapgate-monitor"
        && l.kind == LoginKind::Service(tapgate_admin::ServiceRole::Monitor)));
    // The id can be provisioned again (its role was removed with it).
    admin
        .add_device(&g5, DeviceKind::Terminal, "G5-new-long-password")
        .await
        .expect("again");
    admin.close().await;
}
