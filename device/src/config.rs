//! Device settings.
//!
//! [`DeviceConfig`] is read in layers: built-in defaults, then a TOML file (`--config`), then
//! `TAPGATE_*` environment variables, then command-line flags (clap merges the last two). Unknown
//! keys in the file are refused, so a typo is an error rather than a silently ignored setting.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapgate_protocol::{DeviceId, ProductId, Topics};
use tapgate_runtime::mqtt::{BrokerConfig, BrokerSettings};

use crate::hw::console::CONSOLE_BUTTONS;
use crate::logic::gate::GateSettings;
use crate::logic::terminal::{TerminalSettings, DEFAULT_BUTTONS};
use crate::logic::OfflinePolicy;

/// Which hardware a device drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HardwareKind {
    /// Simulated: type card numbers, and 1 to 9 for the terminal's buttons; lights as coloured
    /// blocks.
    #[default]
    Console,
    /// Raspberry Pi: MFRC522 on SPI0, buttons and LEDs on GPIO (build with `--features rpi`).
    Rpi,
}

/// How a device makes sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SoundKind {
    /// Print each sound and prompt as a line of text.
    #[default]
    Text,
    /// Play through ALSA (build with `--features audio`).
    Audio,
}

/// BCM pin numbers of a Raspberry Pi device.
///
/// Each is also a flag, `--pin-…` (`--spi-hz`), whose id is its key in the `[pins]` table
/// (`pins.red`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct Pins {
    /// BCM pin of the MFRC522 reset line (RST), held high while running.
    #[arg(
        id = "pins.reset",
        long = "pin-reset",
        value_name = "PIN_RESET",
        env = "TAPGATE_PIN_RESET"
    )]
    pub reset: u8,
    /// BCM pin of the red LED.
    #[arg(
        id = "pins.red",
        long = "pin-red",
        value_name = "PIN_RED",
        env = "TAPGATE_PIN_RED",
        help_heading = GATE_ONLY
    )]
    pub red: u8,
    /// BCM pin of the amber LED.
    #[arg(
        id = "pins.amber",
        long = "pin-amber",
        value_name = "PIN_AMBER",
        env = "TAPGATE_PIN_AMBER",
        help_heading = GATE_ONLY
    )]
    pub amber: u8,
    /// BCM pin of the green LED.
    #[arg(
        id = "pins.green",
        long = "pin-green",
        value_name = "PIN_GREEN",
        env = "TAPGATE_PIN_GREEN",
        help_heading = GATE_ONLY
    )]
    pub green: u8,
    /// BCM pins of the buttons, comma-separated, one per product of --buttons, in the same
    /// order.
    ///
    /// Each button connects its pin to ground; the pull-up is on.
    #[arg(
        id = "pins.buttons",
        long = "pin-buttons",
        value_name = "PIN_BUTTONS",
        env = "TAPGATE_PIN_BUTTONS",
        value_delimiter = ',',
        help_heading = TERMINAL_ONLY
    )]
    pub buttons: Vec<u8>,
    /// SPI clock of the MFRC522, Hz.
    #[arg(
        id = "pins.spi_hz",
        long = "spi-hz",
        value_name = "SPI_HZ",
        env = "TAPGATE_SPI_HZ"
    )]
    pub spi_hz: u32,
    /// BCM pin of the TM1637 display's CLK; with --pin-display-dio [default: no display].
    #[arg(
        id = "pins.display_clk",
        long = "pin-display-clk",
        value_name = "PIN_DISPLAY_CLK",
        env = "TAPGATE_PIN_DISPLAY_CLK"
    )]
    pub display_clk: Option<u8>,
    /// BCM pin of the TM1637 display's DIO; with --pin-display-clk [default: no display].
    #[arg(
        id = "pins.display_dio",
        long = "pin-display-dio",
        value_name = "PIN_DISPLAY_DIO",
        env = "TAPGATE_PIN_DISPLAY_DIO"
    )]
    pub display_dio: Option<u8>,
}

impl Pins {
    /// The display's CLK and DIO pins, if one is fitted; both or neither must be set.
    pub fn display(&self) -> Result<Option<(u8, u8)>, ConfigError> {
        match (self.display_clk, self.display_dio) {
            (None, None) => Ok(None),
            (Some(clk), Some(dio)) if clk != dio => Ok(Some((clk, dio))),
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                "pins.display_dio",
                "the display's CLK and DIO need two different pins",
            )),
            (Some(_), None) => Err(ConfigError::invalid(
                "pins.display_dio",
                "set with pins.display_clk: a display needs both",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "pins.display_clk",
                "set with pins.display_dio: a display needs both",
            )),
        }
    }
}

impl Default for Pins {
    fn default() -> Self {
        Self {
            reset: 25,
            red: 19,
            amber: 13,
            green: 26,
            buttons: vec![19, 13, 26],
            spi_hz: 1_000_000,
            display_clk: None,
            display_dio: None,
        }
    }
}

/// Everything a gate or terminal can be told.
///
/// Its `clap::Args` derive declares the flags, each field's first doc paragraph its help; the
/// settings only one kind of device has are under the heading [`GATE_ONLY`] or
/// [`TERMINAL_ONLY`], and the other kind has no such flag ([`crate::cli::KindFlags`]). The
/// values are read by [`DeviceConfig::load`], in layers, never by clap alone (it would miss the
/// file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Device name (A-Z a-z 0-9 _ -, at most 64); also the MQTT client id.
    ///
    /// Also the MQTT username of a provisioned device. Required: there is no default name.
    #[arg(long, env = "TAPGATE_ID")]
    pub id: Option<DeviceId>,
    /// The broker: keys `mqtt`, `mqtt_username` (the device id, for a provisioned device),
    /// `mqtt_password` and the TLS files.
    #[serde(flatten)]
    #[command(flatten)]
    pub broker: BrokerConfig,
    /// Topic prefix, shared with the bridge.
    // Checked as it is read: a `Topics`, never its text again.
    #[serde(
        deserialize_with = "tapgate_runtime::settings::topics",
        serialize_with = "tapgate_runtime::settings::topics_prefix"
    )]
    #[arg(long, env = "TAPGATE_PREFIX", value_parser = tapgate_runtime::settings::prefix)]
    pub prefix: Topics,
    /// How long to wait for a decision; longer than the bridge's decision window.
    ///
    /// Then the offline policy applies. Longer than the bridge's decision window (1.5 s by
    /// default) by the time an answer takes to come back, so that a tap the bridge decides at the
    /// end of its window is not also given up on.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_DECISION_TIMEOUT", value_parser = humantime::parse_duration)]
    pub decision_timeout: Duration,
    /// When no decision arrives in time, `fail-closed` (deny, "service unavailable") or
    /// `fail-open` (let in; the tap is charged when the bridge returns).
    #[arg(long, env = "TAPGATE_OFFLINE_POLICY", help_heading = GATE_ONLY)]
    pub offline_policy: OfflinePolicy,
    /// The same card seen again within this window is one tap.
    ///
    /// Every sighting restarts the window, so a card resting on the reader stays one tap.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_CARD_HOLD", value_parser = humantime::parse_duration)]
    pub card_hold: Duration,
    /// How long green stays on after a grant.
    #[serde(with = "humantime_serde")]
    #[arg(
        long,
        env = "TAPGATE_GREEN_FOR",
        value_parser = humantime::parse_duration,
        help_heading = GATE_ONLY
    )]
    pub green_for: Duration,
    /// Most messages queued while the broker is unreachable; more are dropped and counted.
    #[arg(long, env = "TAPGATE_QUEUE_LIMIT")]
    pub queue_limit: usize,
    /// MQTT keep-alive: how soon a dead broker connection is noticed.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_KEEP_ALIVE", value_parser = humantime::parse_duration)]
    pub keep_alive: Duration,
    /// Which hardware to drive.
    #[arg(long, env = "TAPGATE_HARDWARE")]
    pub hardware: HardwareKind,
    /// How to make sound.
    #[arg(long, env = "TAPGATE_SOUND")]
    pub sound: SoundKind,
    /// How often the card reader is polled.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "TAPGATE_READER_POLL", value_parser = humantime::parse_duration)]
    pub reader_poll: Duration,
    /// How long a button contact must hold still to count.
    #[serde(with = "humantime_serde")]
    #[arg(
        long,
        env = "TAPGATE_BUTTON_SETTLE",
        value_parser = humantime::parse_duration,
        help_heading = TERMINAL_ONLY
    )]
    pub button_settle: Duration,
    /// The product each button sells, comma-separated, button 1 first: product ids of the
    /// bridge's fare catalogue; as many as the hardware has buttons (the console: 1 to 9).
    ///
    /// A Raspberry Pi has one pin per product (--pin-buttons). Names and prices come from the
    /// bridge.
    #[arg(
        long,
        env = "TAPGATE_BUTTONS",
        value_delimiter = ',',
        help_heading = TERMINAL_ONLY
    )]
    pub buttons: Vec<ProductId>,
    /// Raspberry Pi pin numbers (BCM).
    #[command(flatten)]
    pub pins: Pins,
}

/// The `--help` heading of the settings only a gate has: a terminal has no such flags (in its
/// settings file they are allowed, and unused).
pub const GATE_ONLY: &str = "Gate";

/// The `--help` heading of the settings only a terminal has: a gate has no such flags.
pub const TERMINAL_ONLY: &str = "Terminal";

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            id: None,
            broker: BrokerConfig::default(),
            prefix: Topics::default(),
            decision_timeout: Duration::from_millis(2000),
            offline_policy: OfflinePolicy::FailClosed,
            card_hold: Duration::from_secs(2),
            green_for: Duration::from_secs(5),
            queue_limit: 1000,
            keep_alive: Duration::from_secs(5),
            hardware: HardwareKind::Console,
            sound: SoundKind::Text,
            reader_poll: Duration::from_millis(50),
            button_settle: crate::hw::buttons::DEFAULT_SETTLE,
            buttons: DEFAULT_BUTTONS.to_vec(),
            pins: Pins::default(),
        }
    }
}

/// A setting that cannot work (the runtime's, shared by every program).
pub use tapgate_runtime::settings::SettingsError as ConfigError;

/// Broker settings from the `mqtt*` settings shared by devices and the simulator; the TLS files
/// are read when the connection is built.
pub(crate) fn broker_settings(broker: &BrokerConfig) -> Result<BrokerSettings, ConfigError> {
    broker
        .settings()
        .map_err(|e| ConfigError::invalid("mqtt", e.to_string()))
}

/// [`broker_settings`] with the TLS files read and checked now, when the settings load.
pub(crate) fn check_broker(broker: &BrokerConfig) -> Result<(), ConfigError> {
    broker
        .checked()
        .map(|_| ())
        .map_err(|e| ConfigError::invalid("mqtt", e.to_string()))
}

impl DeviceConfig {
    /// Loads and validates the layers (see [`tapgate_runtime::settings::load`]): the one check of the settings, which
    /// [`crate::runtime::run_gate`] and [`crate::runtime::run_terminal`] take as they are.
    pub fn load<K: AsRef<str>, V: Into<config::Value>>(
        file: Option<&Path>,
        overrides: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let cfg: DeviceConfig = tapgate_runtime::settings::load(file, overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.device_id()?;
        check_broker(&self.broker)?;
        if self.decision_timeout < Duration::from_millis(50) {
            return Err(ConfigError::invalid(
                "decision_timeout",
                "must be at least 50ms",
            ));
        }
        if self.queue_limit == 0 {
            return Err(ConfigError::invalid("queue_limit", "must be at least 1"));
        }
        if self.keep_alive < Duration::from_secs(1) {
            return Err(ConfigError::invalid("keep_alive", "must be at least 1s"));
        }
        if self.reader_poll.is_zero() {
            return Err(ConfigError::invalid(
                "reader_poll",
                "must be longer than zero",
            ));
        }
        self.pins.display()?;
        Ok(())
    }

    /// Checks what only a terminal uses: a product for every button the hardware has, and no
    /// more.
    pub fn validate_terminal(&self) -> Result<(), ConfigError> {
        let n = self.buttons.len();
        if n == 0 {
            return Err(ConfigError::invalid(
                "buttons",
                "a terminal needs at least one button",
            ));
        }
        match self.hardware {
            HardwareKind::Console if n > CONSOLE_BUTTONS => Err(ConfigError::invalid(
                "buttons",
                format!("the console has keys for {CONSOLE_BUTTONS} buttons, not {n}"),
            )),
            HardwareKind::Rpi if self.pins.buttons.len() != n => Err(ConfigError::invalid(
                "pins.buttons",
                format!(
                    "one pin per button: {n} products in `buttons`, {} pins",
                    self.pins.buttons.len()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The device id, which is required.
    pub fn device_id(&self) -> Result<&DeviceId, ConfigError> {
        self.id
            .as_ref()
            .ok_or_else(|| ConfigError::invalid("id", "a device id is required (--id)"))
    }

    /// The broker connection: URL, credentials, TLS files and keep-alive, checked.
    pub fn broker(&self) -> Result<BrokerSettings, ConfigError> {
        broker_settings(&self.broker).map(|b| b.with_keep_alive(self.keep_alive))
    }

    /// The gate logic's settings.
    pub fn gate_settings(&self) -> GateSettings {
        GateSettings {
            decision_timeout: self.decision_timeout,
            offline_policy: self.offline_policy,
            green_for: self.green_for,
            card_hold: self.card_hold,
            ..GateSettings::default()
        }
    }

    /// The terminal logic's settings.
    pub fn terminal_settings(&self) -> TerminalSettings {
        TerminalSettings {
            decision_timeout: self.decision_timeout,
            card_hold: self.card_hold,
            buttons: self.buttons.clone(),
            ..TerminalSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn layers_and_validation() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("gate.toml");
        std::fs::write(
            &file,
            "id = \"g1\"\noffline_policy = \"fail-open\"\ndecision_timeout = \"2s\"\n[pins]\nred = 5\n",
        )
        .expect("write");
        let cfg = DeviceConfig::load(Some(&file), [o("decision_timeout", "750ms")]).expect("load");
        assert_eq!(cfg.id.as_ref().map(DeviceId::as_str), Some("g1"));
        assert_eq!(cfg.offline_policy, OfflinePolicy::FailOpen);
        assert_eq!(
            cfg.decision_timeout,
            Duration::from_millis(750),
            "flags win"
        );
        assert_eq!(cfg.pins.red, 5);
        assert_eq!(cfg.pins.green, 26);

        std::fs::write(&file, "id = \"g1\"\ncolour = \"red\"\n").expect("write");
        assert!(matches!(
            DeviceConfig::load(Some(&file), Vec::<(String, String)>::new()),
            Err(ConfigError::Load(_))
        ));
        let bad = [
            vec![],
            vec![o("id", "g/1")],
            vec![o("id", "g1"), o("prefix", "a/#")],
            vec![o("id", "g1"), o("mqtt", "http://x")],
            vec![o("id", "g1"), o("mqtt_password", "change-me-device")],
            vec![o("id", "g1"), o("mqtt_ca", "/nonexistent/ca.pem")],
            vec![
                o("id", "g1"),
                o("mqtt", "mqtts://broker"),
                o("mqtt_ca", "/nonexistent/ca.pem"),
            ],
            vec![o("id", "g1"), o("queue_limit", "0")],
            vec![o("id", "g1"), o("offline_policy", "maybe")],
        ];
        for overrides in bad {
            assert!(
                DeviceConfig::load(None, overrides.clone()).is_err(),
                "{overrides:?}"
            );
        }
        let cfg = DeviceConfig::load(None, [o("id", "t1"), o("pins.green", "6")]).expect("ok");
        assert_eq!(cfg.pins.green, 6);
    }

    #[test]
    fn display_pins_come_in_pairs() {
        let load = |pins: &[(&str, &str)]| {
            let mut overrides = vec![o("id", "g1")];
            overrides.extend(pins.iter().map(|(k, v)| o(k, v)));
            DeviceConfig::load(None, overrides)
        };
        assert_eq!(load(&[]).expect("none").pins.display().ok(), Some(None));
        let cfg = load(&[("pins.display_clk", "5"), ("pins.display_dio", "6")]).expect("both");
        assert_eq!(cfg.pins.display().ok(), Some(Some((5, 6))));
        for half in [
            vec![("pins.display_clk", "5")],
            vec![("pins.display_dio", "6")],
            vec![("pins.display_clk", "5"), ("pins.display_dio", "5")],
        ] {
            let e = load(&half).expect_err("refused").to_string();
            assert!(e.contains("pins.display_"), "{e}");
        }
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("gate.toml");
        std::fs::write(
            &file,
            "id = \"g1\"\n[pins]\ndisplay_clk = 23\ndisplay_dio = 24\n",
        )
        .expect("write");
        let cfg = DeviceConfig::load(Some(&file), Vec::<(String, String)>::new()).expect("file");
        assert_eq!(cfg.pins.display().ok(), Some(Some((23, 24))));
    }

    #[test]
    fn buttons_are_products_and_pins_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("terminal.toml");
        std::fs::write(
            &file,
            "id = \"t1\"\nhardware = \"rpi\"\nbuttons = [\"DAY\", \"TEN_TRIP\"]\n[pins]\nbuttons = [5, 6]\n",
        )
        .expect("write");
        let none = Vec::<(String, String)>::new();
        let cfg = DeviceConfig::load(Some(&file), none.clone()).expect("load");
        assert_eq!(
            cfg.buttons,
            [ProductId::from_static("DAY"), ProductId::TEN_TRIP]
        );
        assert_eq!(cfg.pins.buttons, [5, 6]);
        cfg.validate_terminal().expect("two buttons, two pins");
        assert_eq!(cfg.terminal_settings().buttons, cfg.buttons);

        // The default: the built-in catalogue's three, on the three pins of old.
        let cfg = DeviceConfig::default();
        assert_eq!(
            cfg.buttons,
            [
                ProductId::SINGLE_USE,
                ProductId::TEN_TRIP,
                ProductId::TWO_HOUR
            ]
        );
        assert_eq!(cfg.pins.buttons, [19, 13, 26]);

        std::fs::write(&file, "id = \"t1\"\nbuttons = [\"day\"]\n").expect("write");
        assert!(
            DeviceConfig::load(Some(&file), none.clone()).is_err(),
            "not a product id"
        );
        let refused = |cfg: DeviceConfig| cfg.validate_terminal().expect_err("refused").to_string();
        let mut cfg = DeviceConfig {
            hardware: HardwareKind::Rpi,
            ..DeviceConfig::default()
        };
        cfg.pins.buttons.pop();
        assert!(refused(cfg).contains("pins.buttons"));
        let cfg = DeviceConfig {
            buttons: vec![ProductId::TEN_TRIP; 10],
            ..DeviceConfig::default()
        };
        assert!(refused(cfg).contains("9 buttons"));
        let cfg = DeviceConfig {
            buttons: Vec::new(),
            ..DeviceConfig::default()
        };
        assert!(refused(cfg).contains("at least one"));
    }
}
