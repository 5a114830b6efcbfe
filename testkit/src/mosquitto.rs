//! A real `mosquitto` broker on a free port, installed here or in a container
//! (`servers`).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::server::{find_binary, on_free_port, NotReady, Process};
use crate::servers::{Runner, IMAGE_DYNSEC_PLUGIN, MOSQUITTO};

/// A `mosquitto` broker on 127.0.0.1 with `TCP_NODELAY` on, killed on drop. Its log is printed
/// when the test that owns it fails. Sessions persist across [`Mosquitto::restart`] so queued QoS 1
/// messages survive a broker restart, as they would in production.
pub struct Mosquitto {
    port: u16,
    // Before `dir`: fields drop in order, and the process prints its log (in `dir`) on drop.
    process: Option<Process>,
    dir: TempDir,
    extra: String,
    runner: Runner,
}

impl Mosquitto {
    /// Starts an anonymous broker on a free port. Panics, naming the package and the image, if
    /// `mosquitto` can be run neither here nor in a container.
    pub fn start() -> Self {
        Self::with_config("allow_anonymous true\n")
    }

    /// Starts a broker with extra configuration lines for its listener (e.g. `password_file`,
    /// `acl_file`, `allow_anonymous false`). Paths may point into [`Mosquitto::dir`] as written
    /// before the call by [`Mosquitto::prepare_dir`].
    pub fn with_config(extra: &str) -> Self {
        Self::with_dir_and_config(Self::prepare_dir(), extra)
    }

    /// A fresh temporary folder for a broker's files, to write a password or ACL file into before
    /// [`Mosquitto::with_dir_and_config`].
    pub fn prepare_dir() -> TempDir {
        tempfile::Builder::new()
            .prefix("tapgate-mosquitto-")
            .tempdir()
            .expect("temp dir")
    }

    /// Starts a broker whose files live in `dir`, with extra configuration lines.
    pub fn with_dir_and_config(dir: TempDir, extra: &str) -> Self {
        Self::with_runner(MOSQUITTO.runner(), dir, extra)
    }

    fn with_runner(runner: Runner, dir: TempDir, extra: &str) -> Self {
        let mut broker = Self {
            port: 0,
            dir,
            extra: extra.to_owned(),
            process: None,
            runner,
        };
        on_free_port(|port| {
            broker.port = port;
            broker.try_spawn()
        });
        broker
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{}", e.text);
        }
    }

    fn try_spawn(&mut self) -> Result<(), NotReady> {
        let dir = self.dir.path();
        let log = dir.join("mosquitto.log");
        let conf = dir.join("mosquitto.conf");
        let body = format!(
            "# written by tapgate-testkit\n\
             user root\n\
             per_listener_settings false\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 100000\n\
             max_inflight_messages 100\n\
             set_tcp_nodelay true\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             connection_messages true\n\
             listener {port} 127.0.0.1\n\
             {extra}\n",
            dir = dir.display(),
            log = log.display(),
            port = self.port,
            extra = self.extra,
        );
        std::fs::write(&conf, body).expect("write mosquitto.conf");
        let mut cmd = match &self.runner {
            Runner::Local(binary) => Command::new(binary),
            Runner::Container(_) => Command::new(MOSQUITTO.binary),
        };
        cmd.arg("-c").arg(&conf);
        // Files the extra lines name outside the broker's folder (certificates, say).
        let named: Vec<PathBuf> = self
            .extra
            .split_whitespace()
            .filter_map(|word| crate::server::test_file_dir(Path::new(word)))
            .collect();
        let mut dirs = vec![dir];
        dirs.extend(named.iter().map(PathBuf::as_path));
        self.process = Some(Process::try_start(
            "mosquitto",
            &self.runner,
            cmd,
            &log,
            self.port,
            &dirs,
        )?);
        Ok(())
    }

    /// Starts a broker with mosquitto's dynamic-security plugin, initialised with one
    /// administrator `admin_user` / `admin_password` (`mosquitto_ctrl dynsec init`), and extra
    /// configuration lines (e.g. the repository's policy). The plugin's file is
    /// `dir()/dynamic-security.json`.
    pub fn with_dynsec(admin_user: &str, admin_password: &str, extra: &str) -> Self {
        let dir = Self::prepare_dir();
        let file = dir.path().join("dynamic-security.json");
        let ctrl = find_binary("mosquitto_ctrl", "mosquitto-clients");
        // The password goes in on stdin, as an operator would type it.
        let mut child = Command::new(&ctrl)
            .args(["dynsec", "init"])
            .arg(&file)
            .arg(admin_user)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run mosquitto_ctrl");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            write!(stdin, "{admin_password}\n{admin_password}\n")
                .expect("password to mosquitto_ctrl");
        }
        let out = child.wait_with_output().expect("mosquitto_ctrl finishes");
        assert!(
            out.status.success() && file.is_file(),
            "mosquitto_ctrl dynsec init failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The plugin of the mosquitto that runs: installed here, or in its image.
        let runner = MOSQUITTO.runner();
        let plugin = match &runner {
            Runner::Local(_) => dynsec_plugin(),
            Runner::Container(_) => PathBuf::from(IMAGE_DYNSEC_PLUGIN),
        };
        let extra = format!(
            "{extra}\nplugin {}\nplugin_opt_config_file {}\n",
            plugin.display(),
            file.display()
        );
        Self::with_runner(runner, dir, &extra)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The folder holding its config, log and persistence file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the broker cleanly (SIGTERM): persistent sessions and their queued messages are saved.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.terminate();
        }
    }

    /// Freezes the broker (SIGSTOP), as a host that stops scheduling it would: connections stay
    /// open, nothing is read or sent, keep-alives lapse. [`Mosquitto::resume`] lets it go on.
    pub fn pause(&self) {
        crate::server::signal(self.process.as_ref(), "STOP");
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        crate::server::signal(self.process.as_ref(), "CONT");
    }

    /// Starts it again on the same port, with the same persistence file.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(Process::log_text)
            .unwrap_or_else(|| "(mosquitto not running)".into())
    }
}

/// Where the dynamic-security plugin is installed (Debian/Ubuntu's `mosquitto` package, or the
/// path in `TAPGATE_DYNSEC_PLUGIN`). Panics, naming the package, when it is missing.
pub fn dynsec_plugin() -> PathBuf {
    if let Some(p) = std::env::var_os("TAPGATE_DYNSEC_PLUGIN") {
        return PathBuf::from(p);
    }
    [
        "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .unwrap_or_else(|| {
        panic!(
            "mosquitto's dynamic-security plugin is not installed; it ships with mosquitto \
             (apt-get install -y mosquitto), or set TAPGATE_DYNSEC_PLUGIN"
        )
    })
}
