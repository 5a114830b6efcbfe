//! Shared helpers of the checks' integration tests: a real mosquitto configured exactly like the
//! native demo (mosquitto/tapgate.conf and mosquitto/acl), with a password file made by
//! `mosquitto_passwd`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rumqttc::MqttOptions;
use tapgate_checks::access::{BRIDGE_USER, DEVICE_USER, MONITOR_USER};
use tapgate_checks::repo;
use tapgate_testkit::{Mosquitto, MqttProbe};

/// The password of `user` in the test broker.
pub fn password(user: &str) -> String {
    format!("pw-{user}-3f9a")
}

fn find(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed; it ships with mosquitto: apt-get install -y mosquitto"
            )
        })
}

/// Starts mosquitto with the repository's policy and ACL, and users device, bridge and monitor.
pub fn broker() -> Mosquitto {
    let dir = Mosquitto::prepare_dir();
    let passwd = dir.path().join("passwd");
    let tool = find("mosquitto_passwd");
    for (i, user) in [DEVICE_USER, BRIDGE_USER, MONITOR_USER].iter().enumerate() {
        let mut cmd = Command::new(&tool);
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg(&passwd)
            .arg(user)
            .arg(password(user))
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd failed for {user}");
    }
    let policy = repo::read("mosquitto/tapgate.conf").expect("mosquitto/tapgate.conf");
    // The testkit already writes persistence, logging and the listener; keep the policy lines
    // that do not repeat its path settings.
    let extra = format!(
        "{policy}\npassword_file {}\nacl_file {}\n",
        passwd.display(),
        repo::root().join("mosquitto/acl").display()
    );
    Mosquitto::with_dir_and_config(dir, &extra)
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
