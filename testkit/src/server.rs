//! A server process, spawned here or in a container: free port, log file, readiness wait,
//! kill on drop.

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::container::Container;
use crate::servers::Runner;

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

/// Starts a server for the first time: `attempt(port)` on a [`free_port`], and on another one if
/// the server exited before listening (another process may bind a free port before the server
/// does), up to three ports. Panics with its log if none works.
pub(crate) fn on_free_port(mut attempt: impl FnMut(u16) -> Result<(), NotReady>) {
    let mut tries = 0;
    loop {
        tries += 1;
        let port = free_port();
        match attempt(port) {
            Ok(()) => return,
            Err(e) if e.exited && tries < 3 => {
                eprintln!("{}\n(trying another port)", e.text);
            }
            Err(e) => panic!("{}", e.text),
        }
    }
}

/// Finds `name` on `PATH` (and the sbin folders Debian puts servers in).
pub(crate) fn find_binary_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// [`find_binary_on_path`], panicking with the package to install when it is missing.
pub(crate) fn find_binary(name: &str, package: &str) -> PathBuf {
    if let Some(path) = find_binary_on_path(name) {
        return path;
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
    /// Where the server runs in a container instead of as `child`.
    container: Option<Container>,
    log: PathBuf,
}

/// Whether process `pid`, or a child of it (a server started through a wrapper script, as
/// `bridge/examples/script_instructions.sh` starts redis-server under valgrind), holds a
/// listening TCP socket on `port`; `None` where `/proc` cannot tell (not Linux). A connection
/// alone does not say whose listener answered: another test's server may have bound the port in
/// the moment between [`free_port`] and this server's bind.
fn listens(pid: u32, port: u16) -> Option<bool> {
    let mut sockets = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        // Columns: sl local_address rem_address st … inode (the tenth).
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                sockets.push(format!("socket:[{inode}]"));
            }
        }
    }
    if !readable {
        return None;
    }
    let holds = |pid: &str| {
        fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|fds| {
            fds.flatten().any(|fd| {
                fs::read_link(fd.path())
                    .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
            })
        })
    };
    let own = holds(&pid.to_string())?;
    let children =
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    Some(own || children.split_whitespace().any(|c| holds(c) == Some(true)))
}

/// The folder of `path` when it names a file or folder a test made in the temporary folder, which
/// a server in a container must see at the same path.
pub(crate) fn test_file_dir(path: &Path) -> Option<PathBuf> {
    let tmp = std::env::temp_dir();
    if !path.is_absolute() || !path.starts_with(&tmp) || path == tmp || !path.exists() {
        return None;
    }
    let dir = if path.is_dir() { path } else { path.parent()? };
    (dir != tmp).then(|| dir.to_path_buf())
}

/// Why a server did not come up.
#[derive(Debug)]
pub(crate) struct NotReady {
    /// It exited first (a port another process took meanwhile, a bad setting): what it said.
    pub exited: bool,
    pub text: String,
}

impl Process {
    /// Starts `cmd` and waits until it listens on `port`; panics with its log if it does not.
    pub(crate) fn spawn(name: &'static str, cmd: Command, log: &Path, port: u16) -> Self {
        Self::try_spawn(name, cmd, log, port).unwrap_or_else(|e| panic!("{}", e.text))
    }

    /// [`Process::spawn`], saying why it did not come up instead of panicking.
    pub(crate) fn try_spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        port: u16,
    ) -> Result<Self, NotReady> {
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
            container: None,
            log: log.to_owned(),
        };
        process.wait_ready(port)?;
        Ok(process)
    }

    /// Starts `cmd` as `runner` says: here ([`Process::try_spawn`]), or in a container of the
    /// runner's image running the same program and arguments, with `dirs` (the server's files)
    /// mounted at their own paths, on the host's network; then waits until it listens on `port`.
    pub(crate) fn try_start(
        name: &'static str,
        runner: &Runner,
        cmd: Command,
        log: &Path,
        port: u16,
        dirs: &[&Path],
    ) -> Result<Self, NotReady> {
        let image = match runner {
            Runner::Local(_) => return Self::try_spawn(name, cmd, log, port),
            Runner::Container(image) => image,
        };
        let program = Path::new(cmd.get_program())
            .file_name()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_owned());
        let args = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        // Besides the server's own folder, the folders of other files the test made (an ACL
        // file, certificates) that its arguments name.
        let mut dirs: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
        for arg in cmd.get_args() {
            if let Some(dir) = test_file_dir(Path::new(arg)) {
                dirs.push(dir);
            }
        }
        dirs.sort();
        dirs.dedup();
        let container = Container::start(image, &program, args, dirs).map_err(|e| NotReady {
            exited: false,
            text: format!(
                "{name} could not start in a container ({e}). Build or pull the image, or run \
                 the tests with local servers (TAPGATE_TEST_SERVERS=local); see \
                 testkit/README.md"
            ),
        })?;
        let mut process = Self {
            name,
            child: None,
            container: Some(container),
            log: log.to_owned(),
        };
        process.wait_ready(port)?;
        Ok(process)
    }

    /// Whether the server has stopped (`Some` with how, where that is known).
    fn exited(&mut self) -> Option<String> {
        if let Some(container) = &self.container {
            return (!container.running()).then(|| format!("its container ({})", container.image));
        }
        let status = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())?;
        self.child = None;
        Some(status.to_string())
    }

    fn wait_ready(&mut self, port: u16) -> Result<(), NotReady> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A connection to itself (its ephemeral port chosen equal to `port`, which loopback
            // allows) is not the server; nor is another process's listener; nor is anything
            // while the server has exited.
            let connected = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok());
            // A container's process is not a child of this one: its connection must do.
            let pid = self.child.as_ref().map(Child::id);
            let its_own = pid.and_then(|pid| listens(pid, port)).unwrap_or(true);
            let exited = self.exited();
            if connected && its_own && exited.is_none() {
                return Ok(());
            }
            if let Some(status) = exited {
                self.container = None;
                return Err(NotReady {
                    exited: true,
                    text: format!(
                        "{} exited with {status} before accepting connections on port {port}\n{}",
                        self.name,
                        self.log_text()
                    ),
                });
            }
            if Instant::now() > deadline {
                return Err(NotReady {
                    exited: false,
                    text: format!(
                        "{} did not accept connections on port {port} within 10 s\n{}",
                        self.name,
                        self.log_text()
                    ),
                });
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
        if let Some(container) = self.container.take() {
            container.stop(5);
            return;
        }
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
        if let Some(container) = self.container.take() {
            container.stop(0);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` (a `kill` signal name: `STOP`, `CONT`, …) to a running server's process; a
/// container is paused for `STOP` and unpaused for `CONT` (what a frozen host does to it).
pub(crate) fn signal(process: Option<&Process>, signal: &str) {
    if let Some((name, container)) = process.and_then(|p| Some((p.name, p.container.as_ref()?))) {
        let frozen = match signal {
            "STOP" => true,
            "CONT" => false,
            other => panic!("{name} runs in a container: cannot send it {other}"),
        };
        if let Err(e) = container.freeze(frozen) {
            panic!("cannot send {signal} to {name}'s container: {e}");
        }
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_counts_only_for_the_process_holding_it() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = std::process::id();
        if listens(me, port).is_none() {
            return; // no /proc here: readiness falls back to connecting
        }
        assert_eq!(listens(me, port), Some(true));
        let mut other = Command::new("sleep").arg("5").spawn().expect("sleep");
        assert_eq!(listens(other.id(), port), Some(false));
        let _ = other.kill();
        let _ = other.wait();
        drop(listener);
        assert_eq!(listens(me, port), Some(false));
    }

    /// Another process listening on the port is not the server coming up.
    #[test]
    fn a_server_is_not_ready_on_someone_elses_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if listens(std::process::id(), port).is_none() {
            return;
        }
        let dir = tempfile::tempdir().expect("dir");
        let mut cmd = Command::new("sleep");
        cmd.arg("0.3");
        let outcome = Process::try_spawn("sleep", cmd, &dir.path().join("log"), port);
        let e = outcome.err().expect("not ready");
        assert!(e.exited, "{}", e.text);
    }
}
