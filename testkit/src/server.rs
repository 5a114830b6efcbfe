//! A spawned server process: free port, log file, readiness wait, kill on drop.

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago, and not handed out before in this process:
/// tests run in parallel threads, and the system may offer a port again once the probe that
/// found it has closed, before the server it was meant for has bound it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port on 127.0.0.1");
        if given.insert(port) {
            return port;
        }
    }
}

/// Finds `name` on `PATH` (and the sbin folders Debian puts servers in).
pub(crate) fn find_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: these tests run a real {name}. \
         Install it (Debian/Ubuntu: `apt-get install -y {package}`, macOS: `brew install {package}`)."
    );
}

/// A running server process with its log. Killed on drop; its log is printed if the thread is
/// panicking (a failing test), so every failure shows what the server said.
pub(crate) struct Process {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, log: &Path, port: u16) -> Self {
        cmd.stdin(Stdio::null());
        // Servers write their own log file; whatever else they print goes there too.
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("create server log");
        let err = out.try_clone().expect("clone log handle");
        cmd.stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut process = Self {
            name,
            child: Some(child),
            log: log.to_owned(),
        };
        process.wait_ready(port);
        process
    }

    fn wait_ready(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A connection to itself (its ephemeral port chosen equal to `port`, which loopback
            // allows) is not the server; nor is anything while the server has exited.
            let connected = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok());
            let running = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if connected && running {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited with {status} before accepting connections on port {port}\n{}",
                        self.name,
                        self.log_text()
                    );
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not accept connections on port {port} within 10 s\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the server logged so far.
    pub(crate) fn log_text(&self) -> String {
        let body = fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"));
        format!(
            "----- {} log ({}) -----\n{body}-----",
            self.name,
            self.log.display()
        )
    }

    /// Asks the server to stop (SIGTERM, so it saves its state), then kills it after 5 s.
    pub(crate) fn terminate(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` (a `kill` signal name: `STOP`, `CONT`, …) to a running server's process.
pub(crate) fn signal(process: Option<&Process>, signal: &str) {
    let Some((name, child)) = process.and_then(|p| Some((p.name, p.child.as_ref()?))) else {
        return;
    };
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "cannot send {signal} to {name}"
    );
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_text());
        }
    }
}
