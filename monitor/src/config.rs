//! Settings of `tapgate-monitor serve`.
//!
//! Read from a TOML file (`--config monitor.toml`), then overridden by environment variables
//! (`TAPGATE_*`) and flags; `main` does the layering (each `serve` flag is a field here), this
//! module holds the shape, the flags, the defaults and the validation. Operators and their argon2 password hashes live only in the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapgate_runtime::redis_url::{RedisUrl, RedisUrlParser};

use crate::password;

/// Where Redis is unless told otherwise, for `serve` and `tail`.
pub const DEFAULT_REDIS: &str = tapgate_runtime::redis_url::DEFAULT_REDIS;

/// An operator who may log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Login name: 1–64 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Argon2 PHC hash of the password (`tapgate-monitor hash-password` prints one).
    pub password_hash: String,
}

/// Everything `serve` needs.
///
/// A setting is one field: its doc (the first paragraph is also its flag's help), its `#[arg]`
/// (flag, variable, and the parser that checks a value as it is typed) and its default in
/// [`Default`]. The `serve` command line takes the flags with
/// [`tapgate_runtime::settings::Flags`], and its flags reach the settings through
/// [`tapgate_runtime::settings::given`], over the file; clap's `FromArgMatches` alone would miss
/// the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Redis URL (may hold a password: its value is never shown here).
    // Parsed once, as it is read.
    #[arg(long, env = "TAPGATE_REDIS", hide_env_values = true, value_parser = RedisUrlParser)]
    pub redis: RedisUrl,
    /// Address the dashboard listens on.
    #[arg(long, env = "TAPGATE_MONITOR_LISTEN")]
    pub listen: SocketAddr,
    /// Let anyone view the dashboard and card lookups without logging in.
    ///
    /// Blocking still needs a login.
    #[arg(long, env = "TAPGATE_MONITOR_PUBLIC_READ_ONLY", action = clap::ArgAction::Set)]
    pub public_read_only: bool,
    /// How long a login lasts, e.g. 8h.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MONITOR_SESSION_TTL", value_parser = humantime::parse_duration)]
    pub session_ttl: Duration,
    /// File with the key session ids and CSRF tokens are made with (64 hex digits; created with
    /// a random key if missing); unset: a new key each start, so sessions end on restart.
    ///
    /// Redis holds a session only under its id, a MAC of the browser's token under this key.
    /// The file is created readable by its owner only; protect it like a password.
    #[arg(long, env = "TAPGATE_MONITOR_SESSION_KEY_FILE")]
    pub session_key_file: Option<PathBuf>,
    /// Mark cookies Secure and name them __Host-…; unset: on, unless listening on loopback.
    ///
    /// A local browser talks plain HTTP to a dashboard on a loopback address.
    #[arg(long, env = "TAPGATE_MONITOR_SECURE_COOKIES")]
    pub secure_cookies: Option<bool>,
    /// Failed logins of one name before each further attempt waits 1 s, 2 s, 4 s … up to
    /// login_max_delay.
    ///
    /// Counted from anywhere. A delay, never a lockout, so nobody can lock an operator out by
    /// failing with their name.
    #[arg(long, env = "TAPGATE_MONITOR_LOGIN_ATTEMPTS")]
    pub login_attempts: u32,
    /// Longest wait between attempts of one name, e.g. 30s.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MONITOR_LOGIN_MAX_DELAY", value_parser = humantime::parse_duration)]
    pub login_max_delay: Duration,
    /// Failed logins allowed from one client address (IPv6: one /64) within the login window,
    /// for names that are not an operator's, and per operator's name from one address.
    ///
    /// Past that, attempts from there with names that are not an operator's are refused until the
    /// window ends. An operator's name is counted per (name, address) instead: refused from an
    /// address only after failing this often from it itself, so others' failures from a shared
    /// address (NAT, Docker's port mapping) never lock out an operator who gets their name and
    /// password right.
    #[arg(long, env = "TAPGATE_MONITOR_LOGIN_ATTEMPTS_PER_ADDRESS")]
    pub login_attempts_per_address: u32,
    /// Window for counting failed logins, e.g. 5m.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MONITOR_LOGIN_WINDOW", value_parser = humantime::parse_duration)]
    pub login_window: Duration,
    /// Password checks running at once (of two or more, one is kept for operators' names); a
    /// login finding none free waits up to 1 s, then gets 503 + Retry-After; 0 = one fewer than
    /// the CPU cores (at least 1).
    ///
    /// The one kept means a flood of made-up names cannot turn an operator away (a login made
    /// with a valid session counts as an operator's); with one check, an operator's login goes
    /// ahead of all but one queued made-up name. 0 leaves the core that serves the dashboard to
    /// it during a flood of logins.
    #[arg(long, env = "TAPGATE_MONITOR_PASSWORD_CHECKS")]
    pub password_checks: usize,
    /// Proxies whose X-Forwarded-For is believed, comma-separated addresses or CIDR blocks (e.g.
    /// 10.0.0.0/8, ::1); unset: none.
    ///
    /// The client address is the right-most address in it that is not one of them. Set it only
    /// for a proxy in front that appends the address it saw: trusting anything else lets a
    /// client name its own address. (Behind Docker's port mapping every client is the network's
    /// gateway; see docs/deploy.md.)
    #[arg(long, env = "TAPGATE_MONITOR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Host names (the Host header, without port) the dashboard answers to, comma-separated;
    /// unset: any, but on loopback only localhost and loopback addresses.
    #[arg(long, env = "TAPGATE_MONITOR_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Longest time a client may take to send its request headers.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MONITOR_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Open connections allowed per client address (IPv6: one /64).
    ///
    /// Trusted proxies are not limited.
    #[arg(long, env = "TAPGATE_MONITOR_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: usize,
    /// Events shown in the feed on page load.
    #[arg(long, env = "TAPGATE_MONITOR_HISTORY")]
    pub history: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TAPGATE_MONITOR_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// How long after a sale an operator may void it while its pass is unused, e.g. 10m; 0s
    /// turns voids off.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_MONITOR_VOID_WINDOW", value_parser = humantime::parse_duration)]
    pub void_window: Duration,
    /// The bridge's fares file (the same file), for product names, currency and service days in
    /// the revenue shown; unset: the built-in catalogue's.
    #[arg(long, env = "TAPGATE_FARES")]
    pub fares: Option<PathBuf>,
    /// Operators who may log in (only in the file).
    #[arg(skip)]
    pub operators: Vec<Operator>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            redis: RedisUrl::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_read_only: false,
            session_ttl: Duration::from_secs(8 * 3600),
            session_key_file: None,
            secure_cookies: None,
            login_attempts: 5,
            login_max_delay: Duration::from_secs(30),
            login_attempts_per_address: 20,
            login_window: Duration::from_secs(300),
            password_checks: 0,
            trusted_proxies: Vec::new(),
            allowed_hosts: Vec::new(),
            header_timeout: Duration::from_secs(10),
            max_connections_per_address: 32,
            history: 100,
            max_body_bytes: 16 * 1024,
            void_window: Duration::from_secs(600),
            fares: None,
            operators: Vec::new(),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An operator name breaks the name rule.
    #[error("operator name {0:?} must be 1-64 of A-Z a-z 0-9 . _ -")]
    BadName(String),
    /// Two operators share a name.
    #[error("operator {0:?} is listed twice")]
    Duplicate(String),
    /// A password hash is not an argon2 PHC string.
    #[error("operator {name:?}: password_hash is not an argon2 PHC string ({why}); make one with `tapgate-monitor hash-password`")]
    BadHash {
        /// The operator.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// Nobody could log in and nothing is public.
    #[error(
        "no [[operators]] configured and public_read_only is false: nobody could use the dashboard"
    )]
    NoOperators,
    /// A numeric setting is out of range.
    #[error("{0}")]
    Range(&'static str),
    /// A trusted proxy is not an address or CIDR block.
    #[error("trusted_proxies: {0:?} is not an IP address or CIDR block (e.g. 10.0.0.0/8)")]
    BadProxy(String),
    /// An allowed host is not a host name.
    #[error("allowed_hosts: {0:?} is not a host name or address (no port, no scheme)")]
    BadHost(String),
    /// The Redis URL still holds the example placeholder password.
    #[error(transparent)]
    Placeholder(#[from] tapgate_runtime::secret::PlaceholderSecret),
}

/// Whether `name` is a valid operator name.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ServeConfig {
    /// Checks the settings; the config is usable when this returns `Ok`. The one check: `main`
    /// makes it when it loads them, and [`crate::web::start`] takes them as they are.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for op in &self.operators {
            if !valid_name(&op.name) {
                return Err(ConfigError::BadName(op.name.clone()));
            }
            if !seen.insert(op.name.as_str()) {
                return Err(ConfigError::Duplicate(op.name.clone()));
            }
            password::check_hash(&op.password_hash).map_err(|why| ConfigError::BadHash {
                name: op.name.clone(),
                why,
            })?;
        }
        if self.operators.is_empty() && !self.public_read_only {
            return Err(ConfigError::NoOperators);
        }
        if self.login_attempts == 0 {
            return Err(ConfigError::Range("login_attempts must be at least 1"));
        }
        if self.session_ttl < Duration::from_secs(1) || self.login_window < Duration::from_secs(1) {
            return Err(ConfigError::Range(
                "session_ttl and login_window must be at least 1s",
            ));
        }
        if self.max_body_bytes < 256 {
            return Err(ConfigError::Range("max_body_bytes must be at least 256"));
        }
        if self.history == 0 || self.history > 10_000 {
            return Err(ConfigError::Range("history must be 1..=10000"));
        }
        if self.login_attempts_per_address == 0 || self.max_connections_per_address == 0 {
            return Err(ConfigError::Range(
                "login_attempts_per_address and max_connections_per_address must be at least 1",
            ));
        }
        if self.password_checks > 256 {
            return Err(ConfigError::Range(
                "password_checks must be at most 256 (0: one fewer than the CPU cores)",
            ));
        }
        if self.header_timeout < Duration::from_millis(100) {
            return Err(ConfigError::Range("header_timeout must be at least 100ms"));
        }
        if self.login_max_delay < Duration::from_secs(1) {
            return Err(ConfigError::Range("login_max_delay must be at least 1s"));
        }
        for p in &self.trusted_proxies {
            crate::web::client::Cidr::parse(p).ok_or_else(|| ConfigError::BadProxy(p.clone()))?;
        }
        for h in &self.allowed_hosts {
            if !crate::web::client::valid_host(h) {
                return Err(ConfigError::BadHost(h.clone()));
            }
        }
        tapgate_runtime::secret::refuse_placeholder("redis", self.redis.password())?;
        Ok(())
    }

    /// Whether cookies are marked `Secure` (and named with `__Host-`): as set, or on unless
    /// listening on loopback.
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies
            .unwrap_or(!self.listen.ip().is_loopback())
    }

    /// How many password checks may run at once.
    pub fn password_check_limit(&self) -> usize {
        if self.password_checks > 0 {
            self.password_checks
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, hash: &str) -> Operator {
        Operator {
            name: name.into(),
            password_hash: hash.into(),
        }
    }

    #[test]
    fn validation() {
        let hash = password::hash("pw").expect("hash");
        let mut c = ServeConfig {
            operators: vec![op("alice", &hash)],
            ..ServeConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        c.operators.push(op("alice", &hash));
        assert_eq!(c.validate(), Err(ConfigError::Duplicate("alice".into())));
        c.operators = vec![op("al ice", &hash)];
        assert!(matches!(c.validate(), Err(ConfigError::BadName(_))));
        c.operators = vec![op("bob", "plaintext")];
        assert!(matches!(c.validate(), Err(ConfigError::BadHash { .. })));
        c.operators.clear();
        assert_eq!(c.validate(), Err(ConfigError::NoOperators));
        c.public_read_only = true;
        assert_eq!(c.validate(), Ok(()));
        c.login_attempts = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Range(_))));
        c.login_attempts = 5;
        c.trusted_proxies = vec!["10.0.0.0/33".into()];
        assert!(matches!(c.validate(), Err(ConfigError::BadProxy(_))));
        c.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into()];
        assert_eq!(c.validate(), Ok(()));
        c.allowed_hosts = vec!["https://x".into()];
        assert!(matches!(c.validate(), Err(ConfigError::BadHost(_))));
        c.allowed_hosts = vec!["dash.example.org".into()];
        c.redis = "redis://:change-me-redis@redis:6379".parse().expect("url");
        let e = c.validate().expect_err("placeholder refused");
        assert!(e.to_string().contains("redis"), "{e}");
    }

    #[test]
    fn cookies_are_secure_unless_on_loopback() {
        let mut c = ServeConfig::default();
        assert!(!c.cookies_secure(), "127.0.0.1");
        c.listen = "0.0.0.0:8080".parse().expect("addr");
        assert!(c.cookies_secure());
        c.secure_cookies = Some(false);
        assert!(!c.cookies_secure());
        c.listen = "[::1]:8080".parse().expect("addr");
        c.secure_cookies = Some(true);
        assert!(c.cookies_secure());
    }

    #[test]
    fn names() {
        assert!(valid_name("ops.north-1_a"));
        for bad in ["", "a b", "<b>", "é", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn toml_shape() {
        let c: ServeConfig = toml_like(
            r#"
            listen = "127.0.0.1:9000"
            session_ttl = "30m"
            [[operators]]
            name = "alice"
            password_hash = "x"
            "#,
        );
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.session_ttl, Duration::from_secs(1800));
        assert_eq!(c.operators[0].name, "alice");
        assert_eq!(c.login_attempts, 5);
    }

    fn toml_like(s: &str) -> ServeConfig {
        config::Config::builder()
            .add_source(config::File::from_str(s, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("config")
    }

    #[test]
    fn example_file_matches_the_defaults() {
        let c = toml_like(include_str!("../monitor.example.toml"));
        assert_eq!(
            ServeConfig {
                operators: Vec::new(),
                ..c.clone()
            },
            ServeConfig::default()
        );
        assert_eq!(c.operators.len(), 1);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r = config::Config::builder()
            .add_source(config::File::from_str(
                "listen_addr = \"x\"",
                config::FileFormat::Toml,
            ))
            .build()
            .and_then(|c| c.try_deserialize::<ServeConfig>());
        assert!(r.is_err());
    }
}
