//! The bridge's command line.
//!
//! Every flag but `--config`, `--print-config` and the logging flags
//! ([`settings::NOT_SETTINGS`]) is a setting, declared once as a field of [`BridgeConfig`]: its
//! value reaches the settings through [`tapgate_runtime::settings::given`] (no flag is copied by
//! hand), and `--help` shows its default from [`BridgeConfig::default`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use tapgate_runtime::logging::LogArgs;
use tapgate_runtime::settings::{self, ArgsError, Flags, Overrides};

use crate::config::BridgeConfig;

/// Decides tapgate device taps and button presses against Redis, atomically, over MQTT.
///
/// Settings come from built-in defaults, then the TOML file given with --config, then TAPGATE_*
/// environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(name = "tapgate-bridge", version)]
pub struct Cli {
    /// TOML settings file (keys as the long flags, with underscores: two_hour_duration = "2h").
    #[arg(long, env = "TAPGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective settings as TOML (passwords redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Every setting of [`BridgeConfig`], each a flag named as its field.
    #[command(flatten)]
    pub settings: Flags<BridgeConfig>,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    /// The command line, each setting's default shown from [`BridgeConfig::default`].
    pub fn command() -> clap::Command {
        settings::show_defaults::<BridgeConfig>(<Self as CommandFactory>::command())
    }

    /// Parses `args` (the program's name first): the flags, and the settings they give as
    /// overrides for [`BridgeConfig::load`].
    pub fn parse_from<I, T>(args: I) -> Result<(Self, Overrides), ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        settings::parse(Self::command(), args, settings::given::<BridgeConfig>)
    }
}
