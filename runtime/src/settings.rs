//! How every program reads its settings, written once.
//!
//! A program describes everything it can be told in one `serde` struct: `///` docs on each field,
//! its defaults in one `Default` impl (`#[serde(default)]`) and `#[serde(deny_unknown_fields)]`
//! so a typo in the file is an error rather than a silently ignored setting. [`load`] reads that
//! struct in layers, each winning over the one before:
//!
//! 1. the struct's defaults,
//! 2. the TOML file given with `--config`,
//! 3. `TAPGATE_*` environment variables and 4. command-line flags, both read by clap (a flag
//!    wins over its variable) and handed over as `(key, value)` overrides.
//!
//! Keys are the settings' field names (`two_hour_duration`), nested ones with a dot
//! (`pins.red`). Values are typed by the struct, so `"2h"`, `"true"` or `"5"` given as text
//! become a duration, a flag or a number there, once.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tapgate_protocol::broker::BrokerUrl;
use tapgate_protocol::Topics;

/// Layers `file` (TOML, when given) and then `overrides` over the defaults of `T` and
/// deserializes the result. Validation beyond the types is `T`'s own.
pub fn load<T, K, V>(
    file: Option<&Path>,
    overrides: impl IntoIterator<Item = (K, V)>,
) -> Result<T, config::ConfigError>
where
    T: DeserializeOwned,
    K: AsRef<str>,
    V: Into<config::Value>,
{
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    for (key, value) in overrides {
        builder = builder.set_override(key.as_ref(), value)?;
    }
    builder.build()?.try_deserialize()
}

/// Collects the flags that were given as overrides for [`load`]: `put(key, value)` adds one
/// when `value` is `Some`.
#[derive(Debug, Default)]
pub struct Overrides(Vec<(String, config::Value)>);

impl Overrides {
    /// No overrides yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key = value` when a value was given.
    pub fn put(&mut self, key: &str, value: Option<impl Into<config::Value>>) -> &mut Self {
        if let Some(v) = value {
            self.0.push((key.to_owned(), v.into()));
        }
        self
    }

    /// Adds a duration, written as humantime text (`1s 500ms`), when one was given.
    pub fn put_duration(&mut self, key: &str, value: Option<std::time::Duration>) -> &mut Self {
        self.put(
            key,
            value.map(|d| humantime::format_duration(d).to_string()),
        )
    }

    /// Adds all of `other`.
    pub fn extend<K: Into<String>, V: Into<config::Value>>(
        &mut self,
        other: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self {
        self.0
            .extend(other.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }
}

impl IntoIterator for Overrides {
    type Item = (String, config::Value);
    type IntoIter = std::vec::IntoIter<(String, config::Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Reads a broker URL setting as a [`BrokerUrl`], so it is parsed once, where it is read:
/// `#[serde(deserialize_with = "tapgate_runtime::settings::broker_url")]`.
pub fn broker_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BrokerUrl, D::Error> {
    let text = String::deserialize(d)?;
    BrokerUrl::parse(&text).map_err(serde::de::Error::custom)
}

/// A program's settings that cannot work: the programs' settings errors, defined once.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or a layer could not be read or parsed.
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range or malformed.
    #[error("invalid setting `{field}`: {why}")]
    Invalid {
        /// The setting's name.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

impl SettingsError {
    /// `field` cannot work, because `why`.
    pub fn invalid(field: &'static str, why: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            why: why.into(),
        }
    }
}

/// Reads a topic prefix setting as its [`Topics`]:
/// `#[serde(deserialize_with = "tapgate_runtime::settings::topics")]`.
pub fn topics<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Topics, D::Error> {
    let text = String::deserialize(d)?;
    Topics::new(text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::mqtt::TlsFiles;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        name: String,
        count: u32,
        on: Option<bool>,
        #[serde(with = "humantime_serde")]
        wait: Duration,
        list: Vec<String>,
        #[serde(flatten)]
        tls: TlsFiles,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                name: "x".into(),
                count: 1,
                on: None,
                wait: Duration::from_secs(1),
                list: Vec::new(),
                tls: TlsFiles::default(),
            }
        }
    }

    #[test]
    fn defaults_then_file_then_overrides() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "name = \"file\"\ncount = 3\nwait = \"2s\"\nmqtt_ca = \"/ca.pem\"\n",
        )
        .expect("write");
        let none: [(&str, &str); 0] = [];
        let s: Sample = load(None, none).expect("defaults");
        assert_eq!(s, Sample::default());

        let mut o = Overrides::new();
        o.put("count", Some("7"))
            .put("on", Some(true))
            .put_duration("wait", Some(Duration::from_millis(1500)))
            .put("list", Some(vec!["a", "b"]))
            .put("mqtt_key", Some("/key.pem"))
            .put("name", None::<String>);
        let s: Sample = load(Some(&file), o).expect("layers");
        assert_eq!(s.name, "file", "the file wins over the default");
        assert_eq!(s.count, 7, "text overrides are typed by the struct");
        assert_eq!(s.on, Some(true));
        assert_eq!(s.wait, Duration::from_millis(1500));
        assert_eq!(s.list, ["a", "b"]);
        assert_eq!(s.tls.ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.tls.key, Some(PathBuf::from("/key.pem")));
        assert_eq!(s.tls.cert, None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        #[serde(deserialize_with = "broker_url")]
        mqtt: BrokerUrl,
        #[serde(deserialize_with = "topics")]
        prefix: Topics,
    }

    #[test]
    fn typed_fields_are_parsed_where_they_are_read() {
        let t: Typed = load(
            None,
            [("mqtt", "mqtts://u:p@b:8884"), ("prefix", "site/tg")],
        )
        .expect("typed");
        assert_eq!(
            (t.mqtt.host.as_str(), t.mqtt.port, t.mqtt.tls),
            ("b", 8884, true)
        );
        assert_eq!(t.prefix.prefix(), "site/tg");
        for (mqtt, prefix) in [("http://b", "tg"), ("mqtt://b", "a/#")] {
            let r: Result<Typed, _> = load(None, [("mqtt", mqtt), ("prefix", prefix)]);
            let e = r.expect_err("refused").to_string();
            assert!(
                e.contains(if mqtt.starts_with("http") {
                    "MQTT URL"
                } else {
                    "prefix"
                }),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_and_malformed_keys_are_refused() {
        for (k, v) in [("colour", "red"), ("count", "many"), ("mqtt_cafile", "/x")] {
            let r: Result<Sample, _> = load(None, [(k, v)]);
            assert!(r.is_err(), "{k} = {v} accepted");
        }
    }
}
