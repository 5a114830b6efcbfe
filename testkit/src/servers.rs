//! Where the tests' Redis and mosquitto run: `TAPGATE_TEST_SERVERS`.
//!
//! - `local`: the installed `redis-server` and `mosquitto`, spawned here (a missing one is a
//!   failure naming its package).
//! - `containers`: the same programs in containers started through testcontainers, from the
//!   images in `TAPGATE_REDIS_IMAGE` and `TAPGATE_MOSQUITTO_IMAGE` (default: the official
//!   `redis:7-bookworm` and `eclipse-mosquitto:2`, which Docker pulls when missing;
//!   `scripts/test-images` builds stand-ins from Debian's packages where nothing can be pulled).
//! - `auto` (the default): local where the binary is installed, else a container where a Docker
//!   engine answers, else a failure naming both ways.
//!
//! Either way the server has the same command line, files, port and log, so every test and the
//! bridge's `Stack` run unchanged.

use std::path::PathBuf;

use crate::server::find_binary_on_path;

/// How a server is run.
#[derive(Debug, Clone)]
pub(crate) enum Runner {
    /// This binary, as a child process.
    Local(PathBuf),
    /// In a container of this image.
    Container(String),
}

/// A server the kit can run either way.
pub(crate) struct Server {
    /// Its binary.
    pub binary: &'static str,
    /// The Debian package that ships it.
    pub package: &'static str,
    /// The variable naming its image.
    pub image_var: &'static str,
    /// The image used without that variable.
    pub default_image: &'static str,
}

/// `redis-server`.
pub(crate) const REDIS: Server = Server {
    binary: "redis-server",
    package: "redis-server",
    image_var: "TAPGATE_REDIS_IMAGE",
    default_image: "redis:7-bookworm",
};

/// `mosquitto`.
pub(crate) const MOSQUITTO: Server = Server {
    binary: "mosquitto",
    package: "mosquitto",
    image_var: "TAPGATE_MOSQUITTO_IMAGE",
    default_image: "eclipse-mosquitto:2",
};

/// Where the dynamic-security plugin is inside a mosquitto image: where the official image keeps
/// it (the stand-in images link it there too).
pub(crate) const IMAGE_DYNSEC_PLUGIN: &str = "/usr/lib/mosquitto_dynamic_security.so";

/// The choice in `TAPGATE_TEST_SERVERS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Local,
    Containers,
    Auto,
}

fn mode() -> Mode {
    match std::env::var("TAPGATE_TEST_SERVERS").as_deref() {
        Err(_) | Ok("" | "auto") => Mode::Auto,
        Ok("local") => Mode::Local,
        Ok("containers") => Mode::Containers,
        Ok(other) => panic!(
            "TAPGATE_TEST_SERVERS={other:?}: use local (installed servers), containers \
             (testcontainers) or auto (local where installed, else containers)"
        ),
    }
}

/// Whether a Docker engine is there to ask: `DOCKER_HOST` set, or a socket that accepts.
fn docker_answers() -> bool {
    if std::env::var_os("DOCKER_HOST").is_some() {
        return true;
    }
    #[cfg(unix)]
    {
        let mut sockets = vec![PathBuf::from("/var/run/docker.sock")];
        if let Some(home) = std::env::var_os("HOME") {
            sockets.push(PathBuf::from(home).join(".docker/run/docker.sock"));
        }
        sockets
            .iter()
            .any(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
    }
    #[cfg(not(unix))]
    false
}

impl Server {
    /// The image to run it from.
    pub(crate) fn image(&self) -> String {
        std::env::var(self.image_var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.default_image.to_owned())
    }

    /// How to run it, by `TAPGATE_TEST_SERVERS`. Panics with both ways to get it when neither
    /// works.
    pub(crate) fn runner(&self) -> Runner {
        let local = || find_binary_on_path(self.binary);
        match mode() {
            Mode::Local => Runner::Local(crate::server::find_binary(self.binary, self.package)),
            Mode::Containers => Runner::Container(self.image()),
            Mode::Auto => match local() {
                Some(path) => Runner::Local(path),
                None if docker_answers() => Runner::Container(self.image()),
                None => panic!(
                    "`{binary}` is not installed and no Docker engine answers: these tests run a \
                     real {binary}. Either install it (Debian/Ubuntu: `apt-get install -y \
                     {package}`, macOS: `brew install {package}`), or start Docker and the tests \
                     run it in a container of {image} ({var}; TAPGATE_TEST_SERVERS=containers \
                     forces containers).",
                    binary = self.binary,
                    package = self.package,
                    image = self.image(),
                    var = self.image_var,
                ),
            },
        }
    }
}
