//! A real `nats-server` with its MQTT gateway on free ports: a second broker, with different
//! limits from mosquitto's (it takes `$share/…` as a plain topic), for interoperability tests.

use std::process::Command;

use tempfile::TempDir;

use crate::server::{find_binary, free_port, Process};

/// `nats-server` with JetStream and MQTT on 127.0.0.1, killed on drop.
pub struct NatsMqtt {
    mqtt_port: u16,
    _dir: TempDir,
    process: Process,
}

impl NatsMqtt {
    /// Starts the server. Panics, naming the package, if `nats-server` is missing.
    pub fn start() -> Self {
        let binary = find_binary("nats-server", "nats-server");
        let dir = tempfile::Builder::new()
            .prefix("tapgate-nats-")
            .tempdir()
            .expect("temp dir");
        let mqtt_port = free_port();
        let log = dir.path().join("nats.log");
        let conf = dir.path().join("nats.conf");
        let body = format!(
            "server_name: tapgate-test\n\
             listen: 127.0.0.1:{client}\n\
             jetstream {{ store_dir: \"{store}\" }}\n\
             mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n",
            client = free_port(),
            store = dir.path().join("js").display(),
        );
        std::fs::write(&conf, body).expect("write nats.conf");
        let mut cmd = Command::new(binary);
        cmd.arg("-c").arg(&conf).arg("-l").arg(&log);
        let process = Process::spawn("nats-server", cmd, &log, mqtt_port);
        Self {
            mqtt_port,
            _dir: dir,
            process,
        }
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}
