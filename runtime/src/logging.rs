//! Logging set-up, the same for every program.
//!
//! Logs go to stderr, so a program's own output on stdout (the tail's events, the simulator's
//! summary) stays clean. The filter comes from `RUST_LOG` when it is set, otherwise from the
//! program's default. Text logs are coloured only when stderr is a terminal and `NO_COLOR` is
//! unset: escape sequences never reach a log file.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The logging flags every program takes, defined once: what is logged (`--log`, a filter that
/// `RUST_LOG` overrides) and how (`--log-format`). `--log-json` stays, hidden, for the scripts
/// that use it: the same as `--log-format json`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// What is logged: a tracing filter such as info or debug,rumqttc=warn; RUST_LOG wins when
    /// set [default: info].
    #[arg(long, env = "TAPGATE_LOG", global = true)]
    pub log: Option<String>,
    /// How log lines are written on stderr: text, or json (one object per line).
    #[arg(
        long,
        env = "TAPGATE_LOG_FORMAT",
        value_enum,
        hide_possible_values = true,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub log_format: LogFormat,
    /// The same as --log-format json.
    #[arg(long, env = "TAPGATE_LOG_JSON", hide = true, global = true)]
    pub log_json: bool,
}

impl LogArgs {
    /// The flags' ids: they are not settings.
    pub const IDS: [&'static str; 3] = ["log", "log_format", "log_json"];

    /// The format asked for.
    pub fn format(&self) -> LogFormat {
        if self.log_json {
            LogFormat::Json
        } else {
            self.log_format
        }
    }

    /// Installs the global subscriber as asked ([`init`]), `info` unless told otherwise.
    pub fn init(&self) -> Result<(), LoggingError> {
        init(self.format(), self.log.as_deref().unwrap_or("info"))
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter does not parse.
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// Why it does not parse.
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Whether text logs should be coloured: stderr is a terminal and `NO_COLOR` is not set.
pub fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. `default_filter` (e.g. `info`) applies when `RUST_LOG` is
/// unset; a second call in the same process is ignored.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.trim().is_empty() => f,
        _ => default_filter.to_owned(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|source| LoggingError::Filter {
        filter: filter.clone(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_named() {
        // Only checked when RUST_LOG does not override the default.
        if std::env::var_os("RUST_LOG").is_none() {
            let e = init(LogFormat::Text, "info,[=").expect_err("bad filter");
            assert!(e.to_string().contains("info,[="), "{e}");
        }
    }
}
