//! Real Redis Sentinel on free ports: a primary, its replicas and `redis-server --sentinel`
//! processes watching them, for failover tests.

use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::redis::RedisServer;
use crate::server::{find_binary, free_port, Process};

/// The name the sentinels know the primary by.
pub const MASTER_NAME: &str = "tapgate";

/// One `redis-server --sentinel`, killed on drop.
pub struct Sentinel {
    port: u16,
    // Before `_dir`: fields drop in order, and the process prints its log (in `_dir`) on drop.
    process: Option<Process>,
    _dir: TempDir,
}

impl Sentinel {
    /// Starts a sentinel watching the primary on `primary_port` as [`MASTER_NAME`], with a
    /// `quorum` and fast failure detection (1 s down, 3 s failover timeout).
    pub fn start(primary_port: u16, quorum: u32) -> Self {
        let binary = find_binary("redis-server", "redis-server");
        let dir = tempfile::Builder::new()
            .prefix("tapgate-sentinel-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = dir.path().join("sentinel.log");
        let conf = dir.path().join("sentinel.conf");
        // Sentinel rewrites its config file as it learns: it must be writable.
        let body = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             protected-mode no\n\
             dir {dir}\n\
             logfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 3000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.path().display(),
            log = log.display(),
        );
        std::fs::write(&conf, body).expect("write sentinel.conf");
        let mut cmd = Command::new(binary);
        cmd.arg(&conf).arg("--sentinel");
        let process = Some(Process::spawn("redis-sentinel", cmd, &log, port));
        Self {
            port,
            _dir: dir,
            process,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` for a sentinel list.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The primary's port as this sentinel sees it now.
    pub fn primary_port(&self) -> Option<u16> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(["SENTINEL", "get-master-addr-by-name", MASTER_NAME])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1)?.trim().parse().ok()
    }

    /// Freezes the sentinel (SIGSTOP): it answers nobody until [`Sentinel::resume`].
    pub fn pause(&self) {
        crate::server::signal(self.process.as_ref(), "STOP");
    }

    /// Lets a paused sentinel go on (SIGCONT).
    pub fn resume(&self) {
        crate::server::signal(self.process.as_ref(), "CONT");
    }

    /// Everything the sentinel logged so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(Process::log_text)
            .unwrap_or_else(|| "(sentinel not running)".into())
    }
}

/// A primary, its replicas and three sentinels (quorum 2).
pub struct SentinelGroup {
    /// The primary at start.
    pub primary: RedisServer,
    /// Its replicas.
    pub replicas: Vec<RedisServer>,
    /// The sentinels.
    pub sentinels: Vec<Sentinel>,
}

impl SentinelGroup {
    /// A primary, one replica and three sentinels.
    pub fn start() -> Self {
        Self::with_replicas(1)
    }

    /// Starts the primary, `replicas` replicas of it, and three sentinels; waits until every
    /// replica is in sync and every sentinel knows every replica.
    pub fn with_replicas(replicas: usize) -> Self {
        let primary = RedisServer::start();
        let port = primary.port().to_string();
        let replicas = (0..replicas)
            .map(|_| RedisServer::with_args(&["--replicaof", "127.0.0.1", &port]))
            .collect();
        let group = Self {
            sentinels: (0..3).map(|_| Sentinel::start(primary.port(), 2)).collect(),
            primary,
            replicas,
        };
        group.wait_for("the replicas to sync", Duration::from_secs(20), |g| {
            g.replicas.iter().all(|r| {
                redis_cli(r.port(), &["INFO", "replication"]).contains("master_link_status:up")
            })
        });
        group.wait_for(
            "sentinels to see the replicas",
            Duration::from_secs(20),
            |g| {
                g.sentinels.iter().all(|s| {
                    let known = redis_cli(s.port(), &["SENTINEL", "replicas", MASTER_NAME]);
                    g.replicas
                        .iter()
                        .all(|r| known.contains(&r.port().to_string()))
                })
            },
        );
        group
    }

    /// `redis+sentinel://host:port,host:port,host:port/tapgate`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(Sentinel::addr).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// Waits until the sentinels agree on a primary other than the first one; returns its port.
    pub fn wait_for_promotion(&self, within: Duration) -> u16 {
        let old = self.primary.port();
        let agreed = |g: &Self| {
            let ports: Vec<Option<u16>> = g.sentinels.iter().map(Sentinel::primary_port).collect();
            match ports.first() {
                Some(Some(p)) if *p != old && ports.iter().all(|q| *q == Some(*p)) => Some(*p),
                _ => None,
            }
        };
        self.wait_for("a replica's promotion", within, |g| agreed(g).is_some());
        agreed(self).unwrap_or(old)
    }

    fn wait_for(&self, what: &str, within: Duration, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !ok(self) {
            if Instant::now() > deadline {
                let logs: Vec<String> = self.sentinels.iter().map(Sentinel::log).collect();
                let replicas: Vec<String> = self.replicas.iter().map(RedisServer::log).collect();
                panic!(
                    "timed out waiting for {what}\n{}\n{}\n{}",
                    self.primary.log(),
                    replicas.join("\n"),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `redis-cli -p PORT ARGS…` and returns what it printed ("" if it could not run).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
