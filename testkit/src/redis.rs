//! A real `redis-server` on a free port, installed here or in a container
//! (`servers`).

use std::process::Command;

use tempfile::TempDir;

use crate::server::{on_free_port, NotReady, Process};
use crate::servers::{Runner, REDIS};

/// A `redis-server` on 127.0.0.1 with no persistence, killed on drop. Its log is printed when the
/// test that owns it fails.
pub struct RedisServer {
    port: u16,
    // Before `dir`: fields drop in order, and the process prints its log (in `dir`) on drop.
    process: Option<Process>,
    dir: TempDir,
    runner: Runner,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port. Panics, naming the package and the image, if
    /// `redis-server` can be run neither here nor in a container.
    pub fn start() -> Self {
        Self::with_args(&[])
    }

    /// Starts a server with extra command-line settings, e.g. `["--requirepass", "secret"]`.
    pub fn with_args(extra: &[&str]) -> Self {
        let runner = REDIS.runner();
        let dir = tempfile::Builder::new()
            .prefix("tapgate-redis-")
            .tempdir()
            .expect("temp dir");
        let mut server = Self {
            port: 0,
            dir,
            process: None,
            runner,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        on_free_port(|port| {
            server.port = port;
            server.try_spawn()
        });
        server
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{}", e.text);
        }
    }

    fn try_spawn(&mut self) -> Result<(), NotReady> {
        let log = self.dir.path().join("redis.log");
        let mut cmd = match &self.runner {
            Runner::Local(binary) => Command::new(binary),
            Runner::Container(_) => Command::new(REDIS.binary),
        };
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra);
        self.process = Some(Process::try_start(
            "redis-server",
            &self.runner,
            cmd,
            &log,
            self.port,
            &[self.dir.path()],
        )?);
        Ok(())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Freezes the server (SIGSTOP): commands sent to it wait, unanswered, until
    /// [`RedisServer::resume`].
    pub fn pause(&self) {
        crate::server::signal(self.process.as_ref(), "STOP");
    }

    /// Lets a paused server go on (SIGCONT); it then runs what waited.
    pub fn resume(&self) {
        crate::server::signal(self.process.as_ref(), "CONT");
    }

    /// Starts it again on the same port after [`RedisServer::stop`].
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(Process::log_text)
            .unwrap_or_else(|| "(redis-server not running)".into())
    }
}
