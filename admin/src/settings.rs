//! The admin tool's own settings: which broker, where, and its administrator credential.
//!
//! Built-in defaults, then the TOML file given with `--config`, then `TAPGATE_*` environment
//! variables, then flags: [`tapgate_runtime::settings::load`], as every tapgate program reads its
//! settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapgate_protocol::broker::BrokerUrl;
use tapgate_protocol::Topics;
use tapgate_runtime::secret::refuse_placeholder;

use crate::AdminError;

/// Which broker holds the logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// mosquitto with the dynamic-security plugin, administered over MQTT.
    Mosquitto,
    /// EMQX 5, administered over its HTTP API.
    Emqx,
}

/// Settings of `tapgate-admin`.
///
/// A setting is one field: its doc (the first paragraph is also its flag's help), its `#[arg]`
/// (flag, variable, and the parser that checks a value as it is typed) and its default in
/// [`Default`]. The command line takes the flags with [`tapgate_runtime::settings::Flags`] and
/// they reach the settings through [`tapgate_runtime::settings::given`], over the file. The two
/// secrets are no flags (`#[arg(skip)]`): only their variable gives them.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Which broker holds the logins.
    #[arg(long, env = "TAPGATE_ADMIN_BROKER", value_enum)]
    pub backend: Backend,
    /// mosquitto: broker URL, mqtt://host:port, or mqtts://host:8883 for TLS. Its value is never
    /// shown here: a URL may hold a password.
    #[serde(
        deserialize_with = "tapgate_runtime::settings::broker_url",
        serialize_with = "tapgate_runtime::settings::broker_url_text"
    )]
    #[arg(long, env = "TAPGATE_MQTT", hide_env_values = true, value_parser = BrokerUrl::parse)]
    pub mqtt: BrokerUrl,
    /// mosquitto with mqtts://: the CA certificate the broker's must chain to; unset: the
    /// system's roots.
    #[arg(long, env = "TAPGATE_MQTT_CA")]
    pub mqtt_ca: Option<PathBuf>,
    /// mosquitto: the dynamic-security administrator's username.
    #[arg(long, env = "TAPGATE_ADMIN_USERNAME")]
    pub admin_username: String,
    /// mosquitto: the administrator's password (environment only: `TAPGATE_ADMIN_PASSWORD`).
    #[arg(skip)]
    pub admin_password: Option<String>,
    /// EMQX: base URL of the HTTP API, http://host:18083.
    #[arg(long, env = "TAPGATE_EMQX_API", hide_env_values = true)]
    pub emqx_api: String,
    /// EMQX: API key (made in the dashboard, System → API Keys).
    #[arg(long, env = "TAPGATE_EMQX_API_KEY", hide_env_values = true)]
    pub emqx_api_key: Option<String>,
    /// EMQX: the API key's secret (environment only: `TAPGATE_EMQX_API_SECRET`).
    #[arg(skip)]
    pub emqx_api_secret: Option<String>,
    /// Topic prefix shared with the devices and the bridge.
    #[serde(
        deserialize_with = "tapgate_runtime::settings::topics",
        serialize_with = "tapgate_runtime::settings::topics_prefix"
    )]
    #[arg(long, env = "TAPGATE_PREFIX", value_parser = tapgate_runtime::settings::prefix)]
    pub prefix: Topics,
    /// How long to wait for each answer of the broker, e.g. 10s.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_ADMIN_TIMEOUT", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backend: Backend::Mosquitto,
            mqtt: BrokerUrl {
                host: "127.0.0.1".into(),
                port: tapgate_protocol::broker::DEFAULT_PORT,
                credentials: None,
                tls: false,
            },
            mqtt_ca: None,
            admin_username: "admin".into(),
            admin_password: None,
            emqx_api: "http://127.0.0.1:18083".into(),
            emqx_api_key: None,
            emqx_api_secret: None,
            prefix: Topics::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Settings {
    /// Layers the TOML file and `overrides` over the defaults (see
    /// [`tapgate_runtime::settings::load`]) and validates the result.
    pub fn load<K: AsRef<str>, V: Into<config::Value>>(
        file: Option<&Path>,
        overrides: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, AdminError> {
        let settings: Settings = tapgate_runtime::settings::load(file, overrides)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses settings that cannot work for the chosen backend.
    pub fn validate(&self) -> Result<(), AdminError> {
        let missing = |field, why: &str| AdminError::Settings {
            field,
            why: why.to_owned(),
        };
        let placeholder = |field, v: &Option<String>| {
            refuse_placeholder(field, v.as_deref()).map_err(|e| missing(field, &e.to_string()))
        };
        if self.timeout < Duration::from_millis(100) {
            return Err(missing("timeout", "must be at least 100ms"));
        }
        match self.backend {
            Backend::Mosquitto => {
                if self
                    .admin_password
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
                {
                    return Err(missing(
                        "admin_password",
                        "the mosquitto dynamic-security admin password is needed (TAPGATE_ADMIN_PASSWORD)",
                    ));
                }
                placeholder("admin_password", &self.admin_password)?;
            }
            Backend::Emqx => {
                for (field, v) in [
                    ("emqx_api_key", &self.emqx_api_key),
                    ("emqx_api_secret", &self.emqx_api_secret),
                ] {
                    if v.as_deref().unwrap_or_default().is_empty() {
                        return Err(missing(field, "needed for the EMQX HTTP API"));
                    }
                    placeholder(field, v)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_missing_secrets_are_refused() {
        let s = Settings::default();
        assert!(s.validate().is_err(), "no admin password");
        let s = Settings {
            admin_password: Some("change-me-admin".into()),
            ..Settings::default()
        };
        let e = s.validate().expect_err("placeholder").to_string();
        assert!(e.contains("change-me"), "{e}");
        let s = Settings {
            backend: Backend::Emqx,
            emqx_api_key: Some("key".into()),
            ..Settings::default()
        };
        assert!(s.validate().is_err(), "no secret");
    }

    #[test]
    fn overrides_layer_over_defaults() {
        let s = Settings::load(
            None,
            [
                ("admin_password", "pw"),
                ("mqtt", "mqtt://127.0.0.1:11883"),
                ("timeout", "2s"),
            ],
        )
        .expect("settings");
        assert_eq!((s.mqtt.host.as_str(), s.mqtt.port), ("127.0.0.1", 11883));
        assert_eq!(s.prefix.prefix(), "tapgate");
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.backend, Backend::Mosquitto);
        for (key, bad) in [("mqtt", "http://b"), ("prefix", "a/#"), ("backned", "emqx")] {
            let r = Settings::load(None, [("admin_password", "pw"), (key, bad)]);
            assert!(matches!(r, Err(AdminError::Config(_))), "{key} = {bad}");
        }
    }
}
