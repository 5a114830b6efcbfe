//! The admin tool's own settings: which broker, where, and its administrator credential.
//!
//! Built-in defaults, then the TOML file given with `--config`, then `TAPGATE_*` environment
//! variables, then flags (the caller merges the last two into overrides, as the bridge does).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::AdminError;

/// Which broker holds the logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// mosquitto with the dynamic-security plugin, administered over MQTT.
    Mosquitto,
    /// EMQX 5, administered over its HTTP API.
    Emqx,
}

/// Settings of `tapgate-admin`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Which broker holds the logins.
    #[serde(default = "default_backend")]
    pub backend: Backend,
    /// mosquitto: broker URL, `mqtt://host:port`.
    #[serde(default = "default_mqtt")]
    pub mqtt: String,
    /// mosquitto: the dynamic-security administrator's username.
    #[serde(default = "default_admin_username")]
    pub admin_username: String,
    /// mosquitto: the administrator's password.
    #[serde(default)]
    pub admin_password: Option<String>,
    /// EMQX: base URL of the HTTP API, `http://host:18083`.
    #[serde(default = "default_emqx_api")]
    pub emqx_api: String,
    /// EMQX: API key (made in the dashboard, System → API Keys).
    #[serde(default)]
    pub emqx_api_key: Option<String>,
    /// EMQX: the API key's secret.
    #[serde(default)]
    pub emqx_api_secret: Option<String>,
    /// Topic prefix shared with the devices and the bridge.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long to wait for each answer of the broker.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_backend() -> Backend {
    Backend::Mosquitto
}
fn default_mqtt() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_admin_username() -> String {
    "admin".into()
}
fn default_emqx_api() -> String {
    "http://127.0.0.1:18083".into()
}
fn default_prefix() -> String {
    "tapgate".into()
}
const fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            mqtt: default_mqtt(),
            admin_username: default_admin_username(),
            admin_password: None,
            emqx_api: default_emqx_api(),
            emqx_api_key: None,
            emqx_api_secret: None,
            prefix: default_prefix(),
            timeout: default_timeout(),
        }
    }
}

impl Settings {
    /// Layers the TOML file and `overrides` over the defaults and validates the result.
    pub fn load(
        file: Option<&Path>,
        overrides: &[(&'static str, String)],
    ) -> Result<Self, AdminError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.as_str())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses settings that cannot work for the chosen backend.
    pub fn validate(&self) -> Result<(), AdminError> {
        let missing = |field, why: &str| AdminError::Settings {
            field,
            why: why.to_owned(),
        };
        let placeholder = |field, v: &Option<String>| match v {
            Some(s) if s.starts_with("change-me") => Err(missing(
                field,
                "still the change-me placeholder of .env.example; set a real secret",
            )),
            _ => Ok(()),
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
            &[
                ("admin_password", "pw".into()),
                ("mqtt", "mqtt://127.0.0.1:11883".into()),
                ("timeout", "2s".into()),
            ],
        )
        .expect("settings");
        assert_eq!(s.mqtt, "mqtt://127.0.0.1:11883");
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.backend, Backend::Mosquitto);
    }
}
