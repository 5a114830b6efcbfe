//! How every tapgate program starts and keeps running, written once.
//!
//! - [`shutdown`]: a cancellation token cancelled on SIGINT or SIGTERM.
//! - [`logging`]: `tracing` set-up: text or JSON on stderr, colour only on a terminal.
//! - [`clock`]: Unix time in milliseconds, and a clock tests can set.
//! - [`backoff`]: exponential reconnect delays.
//! - [`secret`]: refusing secrets that were never changed from the examples.
//! - [`exit`]: one clear `error: …` line and an exit status, never a backtrace for a user error.
//! - [`redis`]: the Redis connection, one server or the primary Sentinel names, followed
//!   through a failover.
//! - [`redis_url`]: the Redis URL setting, parsed once when read and shown without its password.
//! - [`sentinel`]: Redis Sentinel asked as a quorum: the primary a majority of sentinels names.
//! - [`settings`]: one way to read a program's settings: defaults, TOML file, environment,
//!   flags (each flag named as its setting, its default in `--help` from `Default`), and
//!   `--print-config`.
//! - [`mqtt`]: the broker connection from one typed URL: credentials, client id, TLS (with
//!   optional client certificate), TCP_NODELAY and packet limits.
//!
//! A binary's `main` parses its settings, sets up logging from its [`logging::LogArgs`], takes a
//! token from [`shutdown::on_signals`], hands both to its library's `run(config, shutdown)` and
//! ends with [`exit::report`].

pub mod backoff;
pub mod clock;
pub mod exit;
pub mod logging;
pub mod mqtt;
pub mod redis;
pub mod redis_url;
pub mod secret;
pub mod sentinel;
pub mod settings;
pub mod shutdown;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, SystemClock};
pub use mqtt::{BrokerSettings, MqttSetupError, TlsFiles};
pub use redis_url::RedisUrl;
