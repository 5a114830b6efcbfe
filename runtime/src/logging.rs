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
