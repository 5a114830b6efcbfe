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
//!
//! A setting is declared once, as a field of that struct: its `///` doc is both the file's
//! documentation and the flag's help, and the struct's `#[derive(clap::Args)]` makes the field a
//! flag (`#[arg(long, env = "TAPGATE_…")]`, with a `value_parser` that checks a typed value as it
//! is typed). A program's command line takes the flags with `#[command(flatten)]` of
//! [`Flags<T>`](Flags): none is required and none has a clap default, and clap never builds the
//! struct from them (that would skip the file).
//!
//! A flag is a setting when its clap id is a settings key (a field's name is its id; a nested
//! key is given as `#[arg(id = "pins.red", long = "pin-red")]`). Then nothing else is written
//! for it: [`given`] takes every such flag the user gave (or its variable) as an override,
//! [`show_defaults`] shows its default in `--help` from the struct's `Default`, and
//! [`to_toml`] prints the effective settings (`--print-config`) with secrets redacted.
//! [`check`] holds what each program's tests use to prove that every flag arrives.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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

/// The flags of settings struct `T` on a program's command line:
/// `#[command(flatten)] settings: Flags<BridgeConfig>`. `T`'s `#[derive(clap::Args)]` declares
/// them; here each is made optional (a setting left out keeps its value from the file or the
/// default), and nothing is read from the matches: [`given`] takes the flags given as overrides
/// for [`load`].
pub struct Flags<T>(PhantomData<fn() -> T>);

impl<T> Flags<T> {
    /// Each argument `add` puts on `cmd` made optional.
    fn optional(cmd: Command, add: impl FnOnce(Command) -> Command) -> Command {
        let before: Vec<clap::Id> = cmd.get_arguments().map(|a| a.get_id().clone()).collect();
        let cmd = add(cmd);
        let added: Vec<clap::Id> = cmd
            .get_arguments()
            .map(|a| a.get_id().clone())
            .filter(|id| !before.contains(id))
            .collect();
        added
            .into_iter()
            .fold(cmd, |cmd, id| cmd.mut_arg(id, |a| a.required(false)))
    }
}

impl<T> std::fmt::Debug for Flags<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flags")
    }
}

impl<T> Clone for Flags<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Flags<T> {}

impl<T> Default for Flags<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: Args> Args for Flags<T> {
    fn augment_args(cmd: Command) -> Command {
        Self::optional(cmd, T::augment_args)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::optional(cmd, T::augment_args_for_update)
    }
}

impl<T> FromArgMatches for Flags<T> {
    fn from_arg_matches(_: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self::default())
    }
    fn update_from_arg_matches(&mut self, _: &ArgMatches) -> Result<(), clap::Error> {
        Ok(())
    }
}

/// A topic prefix flag's value parser (`#[arg(value_parser = settings::prefix)]`): the prefix
/// checked as it is typed.
pub fn prefix(text: &str) -> Result<Topics, tapgate_protocol::topic::BadPrefix> {
    Topics::new(text)
}

/// The flags of every program that are not settings, by id: `--config`, `--print-config` and the
/// logging flags ([`crate::logging::LogArgs`]).
pub const NOT_SETTINGS: [&str; 5] = ["config", "print_config", "log", "log_format", "log_json"];

/// Why a command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// clap refused it, or was asked for help or the version ([`ArgsError::exit_on_parse`]
    /// prints either and exits).
    #[error(transparent)]
    Parse(#[from] clap::Error),
    /// A flag's value cannot be a setting.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

impl ArgsError {
    /// For a program's `main`: a clap error is printed (help, version or usage) and the program
    /// exits as clap does; a settings error is handed back.
    pub fn exit_on_parse(self) -> SettingsError {
        match self {
            Self::Parse(e) => e.exit(),
            Self::Settings(e) => e,
        }
    }
}

/// Parses `args` (the program's name first) with `cmd` into `C`, and the settings the flags give,
/// taken from the matches by `given` (usually [`given`] for the settings type, of the subcommand
/// that has settings).
pub fn parse<C, I, T>(
    cmd: Command,
    args: I,
    given: impl FnOnce(&ArgMatches) -> Result<Overrides, SettingsError>,
) -> Result<(C, Overrides), ArgsError>
where
    C: FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = cmd.try_get_matches_from(args)?;
    let parsed = C::from_arg_matches(&matches)?;
    let given = given(&matches)?;
    Ok((parsed, given))
}

/// A settings struct's defaults as flat `key → value` pairs: nested keys joined with a dot
/// (`pins.red`), unset options as `null`, durations as their humantime text.
pub fn defaults<T: Serialize + Default>(
) -> Result<BTreeMap<String, serde_json::Value>, SettingsError> {
    let value = serde_json::to_value(T::default())
        .map_err(|e| SettingsError::invalid("defaults", e.to_string()))?;
    let mut flat = BTreeMap::new();
    flatten("", value, &mut flat);
    Ok(flat)
}

fn flatten(prefix: &str, value: serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other);
        }
    }
}

/// The settings flags of `matches` that were given, on the command line or as their
/// environment variable, as overrides for [`load`] (a flag's own default is not given: the file
/// wins over it). A flag is a setting of `T` when its id is one of `T`'s keys; a list setting
/// takes every value given, trimmed, blank ones dropped (so `--hosts ''` empties the list).
pub fn given<T: Serialize + Default>(matches: &ArgMatches) -> Result<Overrides, SettingsError> {
    let keys = defaults::<T>()?;
    let mut out = Overrides::new();
    for id in matches.ids() {
        let key = id.as_str();
        let Some(default) = keys.get(key) else {
            continue;
        };
        if !matches!(
            matches.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let Some(raw) = matches.get_raw(key) else {
            continue;
        };
        let mut values = Vec::new();
        for v in raw {
            let text = v.to_str().ok_or_else(|| SettingsError::NotText {
                key: key.to_owned(),
            })?;
            values.push(text.to_owned());
        }
        if default.is_array() {
            let list: Vec<String> = values
                .iter()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            out.put(key, Some(list));
        } else {
            out.put(key, values.pop());
        }
    }
    Ok(out)
}

/// `cmd` with each settings flag's default (from `T::default()`) at the end of its help, as
/// `[default: …]`. Only the help text changes: the flag has no clap default, so the file and the
/// environment still win over a flag that was not given. Unset options and empty values show
/// nothing; their help says what unset means.
pub fn show_defaults<T: Serialize + Default>(cmd: Command) -> Command {
    let Ok(keys) = defaults::<T>() else {
        return cmd;
    };
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .collect();
    ids.into_iter()
        .fold(cmd, |cmd, id| match keys.get(&id).map(shown) {
            Some(values) if !values.is_empty() => cmd.mut_arg(id, |a| {
                // A list flag split at commas shows its default the way it is typed.
                let sep = a.get_value_delimiter().map_or(" ".into(), String::from);
                let note = format!("[default: {}]", values.join(&sep));
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                let long = a.get_long_help().map(ToString::to_string);
                let a = a.help(format!("{help} {note}").trim_start().to_owned());
                // In the long help, after the summary: details follow in their own paragraphs.
                match long.as_deref().and_then(|l| l.split_once("\n\n")) {
                    Some((first, rest)) => {
                        let first = first.strip_suffix('.').unwrap_or(first);
                        a.long_help(format!("{first} {note}\n\n{rest}"))
                    }
                    None => match long {
                        Some(long) => a.long_help(format!("{long} {note}")),
                        None => a,
                    },
                }
            }),
            _ => cmd,
        })
}

/// A default as the text a user would type: strings bare, lists one value each.
fn shown(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(s) if s.is_empty() => Vec::new(),
        serde_json::Value::String(s) => {
            vec![humantime::parse_duration(s).map_or_else(|_| s.clone(), readable)]
        }
        serde_json::Value::Array(items) => items.iter().flat_map(shown).collect(),
        // `500`, not `500.0`.
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                vec![format!("{f:.0}")]
            }
            _ => vec![n.to_string()],
        },
        other => vec![other.to_string()],
    }
}

/// A duration in its largest whole unit, as people write it: `24h`, `30days`, `1500ms`.
fn readable(d: std::time::Duration) -> String {
    const DAY: u128 = 86_400_000;
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms >= 2 * DAY && ms % DAY == 0 {
        return format!("{}days", ms / DAY);
    }
    // Minutes from 100 s up: `60s` reads better than `1m`.
    for (size, unit, from) in [(3_600_000, "h", 0), (60_000, "m", 100_000), (1000, "s", 0)] {
        if ms % size == 0 && ms >= from {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The settings as TOML, for `--print-config`: what the program would run with, secrets
/// redacted (any key naming a password, and the password of a URL).
pub fn to_toml<T: Serialize>(settings: &T) -> Result<String, SettingsError> {
    let mut value = toml::Value::try_from(settings)
        .map_err(|e| SettingsError::invalid("settings", e.to_string()))?;
    redact_secrets(None, &mut value);
    toml::to_string(&value).map_err(|e| SettingsError::invalid("settings", e.to_string()))
}

fn redact_secrets(key: Option<&str>, value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                redact_secrets(Some(k), v);
            }
        }
        toml::Value::Array(items) => {
            for v in items {
                redact_secrets(key, v);
            }
        }
        toml::Value::String(s) => {
            if key.is_some_and(|k| k.contains("password") || k.contains("secret")) {
                *s = "***".into();
            } else if s.contains("://") {
                *s = tapgate_protocol::broker::redact(s);
            }
        }
        _ => {}
    }
}

/// Serializes [`Topics`] as its prefix, the text it was read from:
/// `#[serde(serialize_with = "tapgate_runtime::settings::topics_prefix")]`.
pub fn topics_prefix<S: serde::Serializer>(topics: &Topics, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(topics.prefix())
}

/// What each program's tests use to prove that every settings flag reaches the settings: the
/// flags are read from the clap `Command` itself, so a flag added later is covered without
/// touching the test.
pub mod check {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use clap::Command;

    /// One settings flag with a value unlike its default.
    #[derive(Debug, Clone)]
    pub struct FlagValue {
        /// The settings key (the flag's id).
        pub key: String,
        /// `--the-flag`.
        pub flag: String,
        /// The value given, as typed on the command line (or in its variable).
        pub value: String,
        /// Whether the flag takes a value (`--strict` does not: given, it is `true`).
        pub takes_value: bool,
    }

    /// Every long flag of `cmd`, each either a settings key of `keys` (from
    /// [`defaults`](super::defaults)) with a value unlike its default, or named in
    /// `not_settings` (`config`, `log`, `help`, …). A value comes from `samples` (by key) when
    /// given, else from the default: a flag flipped, a number changed, a duration 1s longer, a
    /// list reversed. Fails naming the flag when neither works, or when a flag is neither a
    /// setting nor listed: such a flag would be silently ignored.
    pub fn every_flag(
        cmd: &Command,
        keys: &BTreeMap<String, serde_json::Value>,
        samples: &[(&str, &str)],
        not_settings: &[&str],
    ) -> Result<Vec<FlagValue>, String> {
        let mut out = Vec::new();
        for arg in cmd.get_arguments() {
            let key = arg.get_id().as_str();
            let Some(long) = arg.get_long() else {
                continue;
            };
            if not_settings.contains(&key) || long == "help" || long == "version" {
                continue;
            }
            let Some(default) = keys.get(key) else {
                return Err(format!(
                    "--{long} (id {key}) is not a settings key: it would be ignored"
                ));
            };
            let value = match samples.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => (*v).to_owned(),
                None => unlike(default)
                    .ok_or_else(|| format!("--{long}: give the test a sample value"))?,
            };
            out.push(FlagValue {
                key: key.to_owned(),
                flag: format!("--{long}"),
                value,
                takes_value: arg.get_action().takes_values(),
            });
        }
        Ok(out)
    }

    fn unlike(default: &serde_json::Value) -> Option<String> {
        use serde_json::Value;
        match default {
            Value::Bool(b) => Some((!b).to_string()),
            Value::Number(n) if n.is_u64() || n.is_i64() => n.as_u64().map(|n| (n + 1).to_string()),
            Value::Number(n) => n.as_f64().map(|f| {
                if f == 0.0 {
                    "0.5".to_owned()
                } else {
                    (f / 2.0).to_string()
                }
            }),
            Value::String(s) => humantime::parse_duration(s)
                .ok()
                .map(|d| humantime::format_duration(d + Duration::from_secs(1)).to_string()),
            Value::Array(items) if items.len() > 1 => Some(
                items
                    .iter()
                    .rev()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    }

    /// The command line giving each of `flags` its value.
    pub fn argv(flags: &[FlagValue]) -> Vec<String> {
        let mut out = Vec::new();
        for f in flags {
            out.push(f.flag.clone());
            if f.takes_value {
                out.push(f.value.clone());
            }
        }
        out
    }

    /// The keys of `flags` whose setting in `effective` (flat, as from
    /// [`defaults`](super::defaults)) still equals its default: flags that did not arrive.
    pub fn not_arrived(
        flags: &[FlagValue],
        keys: &BTreeMap<String, serde_json::Value>,
        effective: &BTreeMap<String, serde_json::Value>,
    ) -> Vec<String> {
        flags
            .iter()
            .filter(|f| effective.get(&f.key) == keys.get(&f.key))
            .map(|f| format!("{} {}", f.flag, f.value))
            .collect()
    }

    /// `settings` flattened like [`defaults`](super::defaults).
    pub fn flat<T: serde::Serialize>(
        settings: &T,
    ) -> Result<BTreeMap<String, serde_json::Value>, String> {
        let value = serde_json::to_value(settings).map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        super::flatten("", value, &mut out);
        Ok(out)
    }
}

/// Writes a broker URL setting back as its text (password included: [`to_toml`] redacts it):
/// `#[serde(serialize_with = "tapgate_runtime::settings::broker_url_text")]`.
pub fn broker_url_text<S: serde::Serializer>(url: &BrokerUrl, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(url)
}

/// A program's settings that cannot work: the programs' settings errors, defined once.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or a layer could not be read or parsed.
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A flag or variable's value is not UTF-8 text.
    #[error("the value of `{key}` is not UTF-8 text")]
    NotText {
        /// The setting's key.
        key: String,
    },
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

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Pinned {
        count: u32,
        list: Vec<String>,
        pins: Pins,
        url: String,
        mqtt_password: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Pins {
        red: u8,
    }

    impl Default for Pins {
        fn default() -> Self {
            Self { red: 19 }
        }
    }

    fn command() -> Command {
        use clap::Arg;
        Command::new("p")
            .arg(Arg::new("config").long("config"))
            .arg(Arg::new("count").long("count").help("How many"))
            .arg(Arg::new("list").long("list").value_delimiter(','))
            .arg(Arg::new("pins.red").long("pin-red").help("Red LED"))
            .arg(Arg::new("url").long("url"))
            .arg(Arg::new("mqtt_password").long("mqtt-password"))
    }

    #[test]
    fn given_flags_reach_their_keys_and_defaults_are_only_shown() {
        let cmd = show_defaults::<Pinned>(command());
        let help = cmd.clone().render_help().to_string();
        assert!(help.contains("How many [default: 0]"), "{help}");
        assert!(help.contains("Red LED [default: 19]"), "{help}");
        let none = cmd.clone().try_get_matches_from(["p"]).expect("parse");
        assert!(
            given::<Pinned>(&none).expect("given").0.is_empty(),
            "a default shown is not a value given: the file still wins over it"
        );
        let m = cmd
            .try_get_matches_from([
                "p",
                "--count",
                "7",
                "--list",
                "a, ,b",
                "--pin-red",
                "4",
                "--config",
                "x",
            ])
            .expect("parse");
        let p: Pinned = load(None, given::<Pinned>(&m).expect("given")).expect("load");
        assert_eq!(
            (p.count, p.list, p.pins.red),
            (7, vec!["a".into(), "b".into()], 4)
        );
    }

    /// A settings struct declaring its own flags, as the programs' do.
    #[derive(Debug, PartialEq, Serialize, Deserialize, clap::Args)]
    #[serde(deny_unknown_fields, default)]
    struct Declared {
        /// How many.
        ///
        /// Details for the long help.
        #[arg(long)]
        count: u32,
        /// How long.
        #[serde(with = "humantime_serde")]
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Duration,
    }

    impl Default for Declared {
        fn default() -> Self {
            Self {
                count: 3,
                wait: Duration::from_secs(2),
            }
        }
    }

    #[derive(Debug, clap::Parser)]
    struct DeclaredCli {
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Flags<Declared>,
    }

    #[test]
    fn flags_declared_by_the_settings_are_optional_and_read_only_when_given() {
        use clap::CommandFactory;
        let cmd = show_defaults::<Declared>(DeclaredCli::command());
        let parse = |args: &[&str]| {
            let argv = std::iter::once("p").chain(args.iter().copied());
            parse::<DeclaredCli, _, _>(cmd.clone(), argv, given::<Declared>)
        };
        let (_, none) = parse(&[]).expect("no flag is required");
        assert!(none.0.is_empty(), "{none:?}");
        let (cli, some) = parse(&["--config", "f.toml", "--wait", "90s"]).expect("parse");
        assert_eq!(cli.config, Some(PathBuf::from("f.toml")));
        let d: Declared = load(None, some).expect("load");
        assert_eq!(
            d,
            Declared {
                wait: Duration::from_secs(90),
                ..Declared::default()
            }
        );
        assert!(
            parse(&["--wait", "soon"]).is_err(),
            "a value is checked as it is typed"
        );

        let mut cmd = cmd;
        let long = cmd.render_long_help().to_string();
        assert!(long.contains("How many [default: 3]\n"), "{long}");
        assert!(long.contains("Details for the long help."), "{long}");
    }

    #[test]
    fn print_config_redacts_passwords() {
        let p = Pinned {
            url: "mqtt://u:s3cret@h:1".into(),
            mqtt_password: Some("s3cret".into()),
            ..Pinned::default()
        };
        let text = to_toml(&p).expect("toml");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("mqtt_password = \"***\""), "{text}");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("p.toml");
        std::fs::write(&file, &text).expect("write");
        let back: Pinned = load(Some(&file), Vec::<(String, String)>::new()).expect("reads back");
        assert_eq!(back.pins, Pins::default());
    }

    #[test]
    fn durations_are_shown_as_people_write_them() {
        for (ms, text) in [
            (0, "0s"),
            (1500, "1500ms"),
            (60_000, "60s"),
            (600_000, "10m"),
            (86_400_000, "24h"),
            (30 * 86_400_000, "30days"),
        ] {
            assert_eq!(readable(Duration::from_millis(ms)), text);
        }
    }
}
