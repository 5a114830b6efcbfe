//! Simulator settings: flags, `TAPGATE_SIM_*` environment, or a TOML file, each declared once
//! as a field of [`SimConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tapgate_protocol::Catalogue;

use tapgate_runtime::mqtt::{BrokerConfig, BrokerSettings};
use tapgate_runtime::settings::{Flags, Overrides};

use crate::config::{broker_settings, check_broker, ConfigError};

/// Everything the rider simulator can be told.
///
/// A setting is one field: its doc (the first paragraph is also its flag's help), its `#[arg]`
/// (flag, variable, and the parser that checks a value as it is typed) and its default in
/// [`Default`]. `simulate` takes the flags with [`Flags`]; they reach the settings through
/// [`tapgate_runtime::settings::given`], over the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// The broker: keys `mqtt`, `mqtt_username` and `mqtt_password` (shared by every simulated
    /// device without `devices`) and the TLS files.
    #[serde(flatten)]
    #[command(flatten)]
    pub broker: BrokerConfig,
    /// Provisioned devices to run, each logging in as itself: a TOML file of `[[devices]]` with
    /// id, kind and password (see `tapgate-admin device add`); --gates and --terminals are then
    /// ignored.
    #[arg(long, env = "TAPGATE_SIM_DEVICES")]
    pub devices: Option<PathBuf>,
    /// Topic prefix shared with the bridge.
    // Checked as it is read: a `Topics`, never its text again.
    #[serde(
        deserialize_with = "tapgate_runtime::settings::topics",
        serialize_with = "tapgate_runtime::settings::topics_prefix"
    )]
    #[arg(long, env = "TAPGATE_PREFIX", value_parser = tapgate_runtime::settings::prefix)]
    pub prefix: tapgate_protocol::Topics,
    /// Simulated gates, one MQTT client each.
    #[arg(long, env = "TAPGATE_SIM_GATES")]
    pub gates: usize,
    /// Simulated sales terminals, one MQTT client each.
    #[arg(long, env = "TAPGATE_SIM_TERMINALS")]
    pub terminals: usize,
    /// Riders, one card each.
    #[arg(long, env = "TAPGATE_SIM_RIDERS")]
    pub riders: usize,
    /// Messages per second on a fixed schedule (open loop), shared by all devices.
    ///
    /// The bridge limits each device (--device-rate, 20 a second by default, after a burst of
    /// 1000): above that per device, raise the bridge's limit or switch it off (--device-rate 0).
    #[arg(long, env = "TAPGATE_SIM_RATE")]
    pub rate: f64,
    /// How long to send, e.g. 60s.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SIM_DURATION", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Wait this long for outstanding decisions at the end.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SIM_GRACE", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Random seed; 0 takes one from the clock.
    ///
    /// Card and device names include it.
    #[arg(long, env = "TAPGATE_SIM_SEED")]
    pub seed: u64,
    /// Write the summary as JSON to this file.
    #[arg(long, env = "TAPGATE_SIM_JSON")]
    pub json: Option<PathBuf>,
    /// The bridge's fares file (the same TOML): the products riders buy, each as likely; unset:
    /// the built-in catalogue, with --two-hour-duration.
    ///
    /// Also the terms and service days the model decides by.
    #[arg(long, env = "TAPGATE_FARES")]
    pub fares: Option<PathBuf>,
    /// The bridge's two-hour pass length, for the built-in catalogue (must match the bridge).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_TWO_HOUR_DURATION", value_parser = humantime::parse_duration)]
    pub two_hour_duration: Duration,
    /// The bridge's sale timeout (must match the bridge).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SALE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub sale_timeout: Duration,
    /// Drop one gate's connection this often; 0s never.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SIM_DROP_EVERY", value_parser = humantime::parse_duration)]
    pub drop_every: Duration,
    /// How long a dropped connection stays down.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SIM_DROP_FOR", value_parser = humantime::parse_duration)]
    pub drop_for: Duration,
    /// Share of slots that send a garbage payload.
    #[arg(long, env = "TAPGATE_SIM_GARBAGE")]
    pub garbage: f64,
    /// Chance a rider without a pass tries a gate anyway.
    #[arg(long, env = "TAPGATE_SIM_NO_PASS")]
    pub no_pass: f64,
    /// Chance a sale is confirmed by a different card.
    #[arg(long, env = "TAPGATE_SIM_MISMATCH")]
    pub mismatch: f64,
    /// Chance a buyer presses a button before tapping.
    #[arg(long, env = "TAPGATE_SIM_BUTTON_FIRST")]
    pub button_first: f64,
    /// Chance a rider with a pass tries to buy another.
    #[arg(long, env = "TAPGATE_SIM_REBUY")]
    pub rebuy: f64,
    /// How long a rider stays away after a journey, drawn between half and one and a half times
    /// this; 0s: at once.
    ///
    /// A believable pace: a ten-trip pass lasts about ten rests. 0s makes riders ready again at
    /// once, as busy as the rate needs (load tests).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SIM_REST", value_parser = humantime::parse_duration)]
    pub rest: Duration,
    /// Outage mode: share of gate rides tapped during a bridge outage, arriving late under both
    /// offline policies.
    ///
    /// Such a tap arrives --outage-age late, half at fail-closed gates (the waiting tap only:
    /// stale, no charge) and half at fail-open gates (the waiting tap and its offline entry,
    /// settled at the tap's time).
    #[arg(long, env = "TAPGATE_SIM_OUTAGE")]
    pub outage: f64,
    /// How late an outage tap arrives; longer than the bridge's decision window.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SIM_OUTAGE_AGE", value_parser = humantime::parse_duration)]
    pub outage_age: Duration,
    /// The bridge's decision window (must match the bridge).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_SIM_DECISION_WINDOW", value_parser = humantime::parse_duration)]
    pub decision_window: Duration,
    /// Exit with an error when any decision mismatched or was lost.
    #[arg(long, env = "TAPGATE_SIM_STRICT")]
    pub strict: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            broker: BrokerConfig::default(),
            devices: None,
            prefix: tapgate_protocol::Topics::default(),
            gates: 50,
            terminals: 5,
            riders: 2000,
            rate: 500.0,
            duration: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            seed: 0,
            json: None,
            fares: None,
            two_hour_duration: Duration::from_secs(2 * 60 * 60),
            sale_timeout: Duration::from_secs(30),
            drop_every: Duration::from_secs(5),
            drop_for: Duration::from_secs(1),
            garbage: 0.01,
            no_pass: 0.05,
            mismatch: 0.05,
            button_first: 0.03,
            rebuy: 0.03,
            rest: Duration::ZERO,
            outage: 0.0,
            outage_age: Duration::from_secs(10),
            decision_window: Duration::from_millis(1500),
            strict: false,
        }
    }
}

impl SimConfig {
    /// The broker connection shared by the simulated devices, checked.
    pub fn broker(&self) -> Result<BrokerSettings, ConfigError> {
        broker_settings(&self.broker)
    }

    /// Checks the settings and reads the fare catalogue riders buy from (the fares file, read
    /// here and only here, or the built-in catalogue): what [`run`](crate::sim::run) takes.
    pub fn check(self) -> Result<Simulation, ConfigError> {
        let catalogue = self.validate()?;
        Ok(Simulation {
            config: self,
            catalogue,
        })
    }

    /// The fare catalogue: the fares file, or the built-in catalogue.
    fn catalogue(&self) -> Result<Catalogue, ConfigError> {
        match &self.fares {
            Some(path) => {
                Catalogue::load(path).map_err(|e| ConfigError::invalid("fares", e.to_string()))
            }
            None => Ok(Catalogue::builtin(
                u64::try_from(self.two_hour_duration.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }

    /// Checks values that parse but cannot work, and reads the catalogue.
    fn validate(&self) -> Result<Catalogue, ConfigError> {
        check_broker(&self.broker)?;
        let catalogue = self.catalogue()?;
        if self.gates == 0 || self.terminals == 0 || self.riders == 0 {
            return Err(ConfigError::invalid(
                "gates",
                "gates, terminals and riders must be at least 1",
            ));
        }
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            return Err(ConfigError::invalid(
                "rate",
                "must be above 0 and at most 100000",
            ));
        }
        for (name, p) in [
            ("garbage", self.garbage),
            ("no_pass", self.no_pass),
            ("mismatch", self.mismatch),
            ("button_first", self.button_first),
            ("rebuy", self.rebuy),
            ("outage", self.outage),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::invalid(name, "must be between 0 and 1"));
            }
        }
        if self.outage > 0.0 && self.outage_age <= self.decision_window * 2 {
            return Err(ConfigError::invalid(
                "outage_age",
                "must be more than twice the decision window, so outage taps are clearly late",
            ));
        }
        if self.two_hour_duration.is_zero() || self.sale_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "two_hour_duration",
                "durations must be longer than zero",
            ));
        }
        Ok(catalogue)
    }
}

/// Simulator settings that passed their checks, with the fare catalogue they name, read once.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The settings.
    pub config: SimConfig,
    /// The catalogue riders buy from and the model decides by.
    pub catalogue: Catalogue,
}

/// Flags of `tapgate-device simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// TOML file with settings (keys as the long flags, with `_` for `-`).
    #[arg(long, env = "TAPGATE_SIM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective settings as TOML (passwords redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Every setting of [`SimConfig`], each a flag named as its field.
    #[command(flatten)]
    pub settings: Flags<SimConfig>,
}

impl SimArgs {
    /// Loads and checks the layered settings, `given` (from
    /// [`Cli::parse_from`](crate::cli::Cli::parse_from)) last, and reads the fares file.
    pub fn load(&self, given: Overrides) -> Result<Simulation, ConfigError> {
        let cfg: SimConfig = tapgate_runtime::settings::load(self.config.as_deref(), given)?;
        cfg.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, CliCommand};
    use tapgate_protocol::ProductId;

    fn load(args: &[&str]) -> Result<Simulation, ConfigError> {
        let argv = ["tapgate-device", "simulate"]
            .into_iter()
            .chain(args.iter().copied());
        let (cli, given) = Cli::parse_from(argv).expect("parse");
        let CliCommand::Simulate(sim) = cli.command else {
            panic!("not simulate");
        };
        sim.load(given)
    }

    #[test]
    fn an_impossible_share_is_blamed_on_its_own_setting() {
        for name in [
            "garbage",
            "no_pass",
            "mismatch",
            "button_first",
            "rebuy",
            "outage",
        ] {
            let flag = format!("--{}", name.replace('_', "-"));
            let e = load(&[&flag, "1.5"]).expect_err("refused");
            assert!(
                matches!(&e, ConfigError::Invalid { field, .. } if *field == name),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn riders_rest_only_when_told() {
        assert_eq!(load(&[]).expect("defaults").config.rest, Duration::ZERO);
        let rested = load(&["--rest", "90s"]).expect("rest");
        assert_eq!(rested.config.rest, Duration::from_secs(90));
    }

    #[test]
    fn riders_buy_from_the_fares_file_or_the_builtin_catalogue() {
        let builtin = load(&["--two-hour-duration", "90s"])
            .expect("defaults")
            .catalogue;
        let two = builtin.product(ProductId::TWO_HOUR).expect("two hour");
        assert_eq!(two.terms.duration_ms, 90_000);

        let dir = tempfile::tempdir().expect("tmp");
        let fares = dir.path().join("fares.toml");
        std::fs::write(
            &fares,
            "currency = \"EUR\"\ntime_zone = \"UTC\"\n[[product]]\nid = \"DAY\"\n\
             name = \"Day pass\"\nprice = 750\nvalidity = \"period\"\nduration = \"24h\"\n",
        )
        .expect("write");
        let path = fares.display().to_string();
        let sim = load(&["--fares", &path]).expect("fares");
        assert_eq!(sim.config.fares.as_deref(), Some(fares.as_path()));
        assert_eq!(sim.catalogue.ids(), "DAY");

        // A bad fares file is refused at start, naming the file and what is wrong.
        std::fs::write(&fares, "currency = \"EUR\"\n").expect("write");
        let e = load(&["--fares", &path]).expect_err("refused").to_string();
        assert!(e.contains(&path) && e.contains("time_zone"), "{e}");
    }
}
