//! Settings of `tapgate-monitor serve`.
//!
//! Read from a TOML file (`--config monitor.toml`), then overridden by environment variables
//! (`TAPGATE_*`) and flags; `main` does the layering, this module holds the shape, the defaults
//! and the validation. Operators and their argon2 password hashes live only in the file.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::password;

/// An operator who may log in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Login name: 1–64 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Argon2 PHC hash of the password (`tapgate-monitor hash-password` prints one).
    pub password_hash: String,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Redis URL.
    pub redis: String,
    /// Address the dashboard listens on.
    pub listen: SocketAddr,
    /// Let anyone see the dashboard and card lookups without logging in (blocking still needs a
    /// login).
    pub public_read_only: bool,
    /// How long a login lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Mark cookies `Secure` (turn on when the dashboard is served over HTTPS by a proxy).
    pub secure_cookies: bool,
    /// Failed logins allowed per name and address within `login_window`.
    pub login_attempts: u32,
    /// Window for counting failed logins.
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// Events shown in the feed when a page loads.
    pub history: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Operators who may log in.
    pub operators: Vec<Operator>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            redis: "redis://127.0.0.1:6379".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_read_only: false,
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookies: false,
            login_attempts: 5,
            login_window: Duration::from_secs(300),
            history: 100,
            max_body_bytes: 16 * 1024,
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
}

/// Whether `name` is a valid operator name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ServeConfig {
    /// Checks the settings; the config is usable when this returns `Ok`.
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
        Ok(())
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
