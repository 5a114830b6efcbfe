//! Shared helpers of the checks' integration tests: a real mosquitto configured exactly like the
//! native demo (mosquitto/tapgate.conf and the dynamic-security plugin), with its logins made by
//! `tapgate-admin`: devices g1, g2 (gates), t1, t2 (terminals), the bridge and the monitor.

#![allow(dead_code)]

use std::time::Duration;

use rumqttc::MqttOptions;
use tapgate_admin::{Broker, ServiceRole, Settings};
use tapgate_broker_model::policy::{BRIDGE_USER, DEVICES, MONITOR_USER};
use tapgate_checks::repo;
use tapgate_protocol::{DeviceId, DeviceKind};
use tapgate_testkit::{Mosquitto, MqttProbe};

/// The dynamic-security administrator of the test broker.
pub const ADMIN_USER: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-pw-for-tests-7c1e";

/// The password of `user` in the test broker.
pub fn password(user: &str) -> String {
    format!("pw-{user}-3f9a-for-tests")
}

/// Settings of `tapgate-admin` for `broker`.
pub fn admin_settings(broker: &Mosquitto) -> Settings {
    Settings {
        mqtt: tapgate_protocol::broker::BrokerUrl::parse(&broker.url()).expect("broker url"),
        admin_username: ADMIN_USER.into(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// `tapgate-admin`'s connection to `broker`.
pub async fn admin(broker: &Mosquitto) -> Broker {
    Broker::connect(&admin_settings(broker))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "tapgate-admin cannot reach the broker: {e}\n{}",
                broker.log()
            )
        })
}

/// Starts mosquitto with the repository's policy and the plugin, and provisions the devices of
/// [`DEVICES`], the bridge and the monitor through `tapgate-admin`.
pub async fn broker() -> Mosquitto {
    broker_with("").await
}

/// [`broker`] with extra configuration lines after the policy (e.g. a TLS listener).
pub async fn broker_with(extra: &str) -> Mosquitto {
    let policy = repo::read("mosquitto/tapgate.conf").expect("mosquitto/tapgate.conf");
    let broker = Mosquitto::with_dynsec(ADMIN_USER, ADMIN_PASSWORD, &format!("{policy}\n{extra}"));
    let mut admin = admin(&broker).await;
    for (kind, id) in DEVICES {
        provision(&mut admin, kind, id).await;
    }
    for (name, role) in [
        (BRIDGE_USER, ServiceRole::Bridge),
        (MONITOR_USER, ServiceRole::Monitor),
    ] {
        admin
            .add_service(name, role, &password(name))
            .await
            .unwrap_or_else(|e| panic!("service add {name}: {e}"));
    }
    admin.close().await;
    broker
}

/// Adds one device with its test password.
pub async fn provision(admin: &mut Broker, kind: DeviceKind, id: &str) {
    let dev = DeviceId::new(id).expect("device id");
    admin
        .add_device(&dev, kind, &password(id))
        .await
        .unwrap_or_else(|e| panic!("device add {id}: {e}"));
}

/// Options for `client_id` logged in as `user` with its password.
pub fn options(port: u16, user: &str, client_id: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_credentials(user, password(user));
    opts
}

/// A connected probe for `client_id` as `user`.
pub async fn client(port: u16, user: &str, client_id: &str) -> MqttProbe {
    MqttProbe::connect_with(options(port, user, client_id)).await
}
