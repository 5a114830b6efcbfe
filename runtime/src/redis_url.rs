//! The Redis URL setting, read once.
//!
//! A [`RedisUrl`] is parsed where the setting is read (file, variable or flag, by serde or by a
//! flag's `value_parser`), so a bad URL is refused at load and no program parses it again. It
//! keeps the text it was read from: shown with any password removed, and written back as given
//! (`--print-config` removes the password, see [`crate::settings::to_toml`]). A password given as
//! a separate setting is applied with [`RedisUrl::with_password`], to the parsed value.

use std::fmt;
use std::str::FromStr;

use tapgate_protocol::broker::redact;

use crate::redis::{RedisTarget, RedisUrlError};

/// Where Redis is unless a program is told otherwise.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// A `redis://` or `redis+sentinel://` URL (see [`RedisTarget::parse`]), parsed when read.
///
/// Two are equal when their text is. `Debug` and `Display` show the text with any password
/// removed; `Serialize` writes the text itself, password included, so that what is written reads
/// back the same (settings printed for people go through [`crate::settings::to_toml`], which
/// removes it).
#[derive(Clone)]
pub struct RedisUrl {
    text: String,
    target: RedisTarget,
}

impl RedisUrl {
    /// Parses `redis://[user:password@]host:port[/db]` or
    /// `redis+sentinel://[user:password@]host:port,host:port,…/primary-name[/db]`.
    pub fn parse(text: &str) -> Result<Self, RedisUrlError> {
        Ok(Self {
            target: RedisTarget::parse(text)?,
            text: text.to_owned(),
        })
    }

    /// Where Redis is, with the URL's own credentials.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// Where Redis is, with `password` (a setting of its own, kept off the URL and command
    /// lines), when given, in place of the URL's.
    pub fn with_password(&self, password: Option<&str>) -> RedisTarget {
        match password {
            Some(pw) => self.target.clone().with_password(pw),
            None => self.target.clone(),
        }
    }

    /// Whether the primary comes from Sentinel (and may move).
    pub fn is_sentinel(&self) -> bool {
        self.target.is_sentinel()
    }

    /// The URL's own password, if it holds one (to refuse an example placeholder).
    pub fn password(&self) -> Option<&str> {
        self.target.password()
    }

    /// The URL as given, password included: for handing it on (a child process's `--redis`),
    /// never for showing (`Display` removes the password).
    pub fn unredacted(&self) -> &str {
        &self.text
    }
}

impl Default for RedisUrl {
    /// [`DEFAULT_REDIS`].
    fn default() -> Self {
        // A constant, covered by the tests below.
        Self::parse(DEFAULT_REDIS).expect("the default Redis URL parses")
    }
}

impl FromStr for RedisUrl {
    type Err = RedisUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A Redis URL flag's value parser (`#[arg(value_parser = RedisUrlParser)]`): the URL checked as
/// it is typed, and refused without echoing it (clap's own message would show its password).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisUrlParser;

impl clap::builder::TypedValueParser for RedisUrlParser {
    type Value = RedisUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<RedisUrl, clap::Error> {
        let name = arg.map_or_else(|| "the Redis URL".to_owned(), |a| format!("'{a}'"));
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {name}: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("not UTF-8 text".to_owned()))?;
        RedisUrl::parse(text).map_err(|e| refuse(e.to_string()))
    }
}

impl PartialEq for RedisUrl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for RedisUrl {}

impl fmt::Display for RedisUrl {
    /// The URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.text))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl")
            .field(&redact(&self.text))
            .finish()
    }
}

impl serde::Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for RedisUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_parse_and_bad_ones_say_why() {
        let direct: RedisUrl = "redis://u:pw@h:6380/2".parse().expect("direct");
        assert!(!direct.is_sentinel());
        assert_eq!(direct.password(), Some("pw"));
        let sentinel =
            RedisUrl::parse("redis+sentinel://h1,h2:26380,h3/tapgate").expect("sentinel");
        assert!(sentinel.is_sentinel());
        assert_eq!(sentinel.password(), None);
        assert!(!RedisUrl::default().is_sentinel());
        assert_eq!(RedisUrl::default().unredacted(), DEFAULT_REDIS);
        for bad in ["mqtt://h:1883", "redis+sentinel://u:s3cret@h1", "h:6379"] {
            let e = RedisUrl::parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with("invalid Redis URL"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn shown_without_its_password() {
        let url = RedisUrl::parse("redis+sentinel://tapgate-bridge:s3cret@h1,h2,h3/tapgate")
            .expect("url");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("***@h1,h2,h3/tapgate"), "{shown}");
        }
        assert!(url.unredacted().contains("s3cret"));
    }

    #[test]
    fn a_password_setting_replaces_the_urls() {
        for text in ["redis://u:from-url@h", "redis+sentinel://u:from-url@h1/p"] {
            let url = RedisUrl::parse(text).expect("url");
            assert_eq!(url.with_password(None).password(), Some("from-url"));
            let target = url.with_password(Some("from-setting"));
            assert_eq!(target.password(), Some("from-setting"), "{text}");
            assert_eq!(target.is_sentinel(), url.is_sentinel());
            assert_eq!(
                url.password(),
                Some("from-url"),
                "the URL itself is unchanged"
            );
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Settings {
        redis: RedisUrl,
    }

    #[test]
    fn read_and_written_as_its_text() {
        let text = "redis://u:s3cret@h:6380/1";
        let s: Settings = crate::settings::load(None, [("redis", text)]).expect("reads");
        assert_eq!(s.redis.unredacted(), text);
        let toml = toml::to_string(&s).expect("writes");
        let back: Settings = toml::from_str(&toml).expect("reads back");
        assert_eq!(back, s);
        let printed = crate::settings::to_toml(&s).expect("print-config");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert_eq!(printed.trim(), "redis = \"redis://***@h:6380/1\"");
        let e = crate::settings::load::<Settings, _, _>(None, [("redis", "redis+sentinel://h1")])
            .expect_err("refused at load")
            .to_string();
        assert!(e.contains("invalid Redis URL redis+sentinel://h1"), "{e}");
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[arg(long, value_parser = RedisUrlParser)]
        redis: RedisUrl,
    }

    #[test]
    fn a_flag_is_checked_as_typed_without_echoing_it() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["p", "--redis", "redis://h:1"]).expect("parses");
        assert_eq!(cli.redis.unredacted(), "redis://h:1");
        let e = Cli::try_parse_from(["p", "--redis", "redis+sentinel://u:s3cret@h1"])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("--redis"), "{e}");
        assert!(
            e.contains("invalid Redis URL redis+sentinel://***@h1"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn equal_by_text() {
        let a = RedisUrl::parse("redis://h:6379").expect("url");
        assert_eq!(a, RedisUrl::parse("redis://h:6379").expect("url"));
        assert_ne!(a, RedisUrl::parse("redis://h:6379/0").expect("url"));
    }
}
