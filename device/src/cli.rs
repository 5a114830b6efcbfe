//! The command line: `tapgate-device gate|terminal|simulate`, and what each runs.
//!
//! Every setting is a flag with a `TAPGATE_*` environment variable, and can also come from a TOML
//! file given with `--config`; flags and environment win over the file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tapgate_protocol::{DeviceKind, ProductId};
use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use tapgate_runtime::mqtt::MqttArgs;
use tapgate_runtime::settings::Overrides;

use crate::config::{DeviceConfig, HardwareKind, SoundKind};
use crate::hw::console::{run_console, sim_hardware, ConsoleDisplay, ConsoleLights, HELP};
use crate::hw::speaker::TextSpeaker;
use crate::hw::Speaker;
use crate::logic::OfflinePolicy;
use crate::prompt::Sound;
use crate::runtime::{run_gate, run_terminal, DeviceError};
use crate::sim::{SimArgs, SimError};

/// tapgate devices: entry gates, sales terminals and a rider simulator.
#[derive(Debug, Parser)]
#[command(name = "tapgate-device", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: CliCommand,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `tapgate_device=debug`; `RUST_LOG`
    /// wins when set.
    #[arg(long, env = "TAPGATE_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "TAPGATE_LOG_JSON", global = true)]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run an entry gate: card reader, traffic light, speaker.
    Gate(GateArgs),
    /// Run a sales terminal: card reader, product buttons, speaker.
    Terminal(TerminalArgs),
    /// Act out many riders on many simulated devices against a running bridge and check every
    /// decision against the pass rules.
    Simulate(SimArgs),
}

/// Settings of a gate: the shared device settings, its offline policy and its lights.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// Settings every device has.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// When no decision arrives in time, `fail-closed` (deny, "service unavailable") or
    /// `fail-open` (let in; the tap is charged when the bridge returns) [default: fail-closed].
    #[arg(long, env = "TAPGATE_OFFLINE_POLICY")]
    pub offline_policy: Option<OfflinePolicy>,
    /// How long green stays on after a grant [default: 5s].
    #[arg(long, env = "TAPGATE_GREEN_FOR", value_parser = humantime::parse_duration)]
    pub green_for: Option<Duration>,
    /// BCM pin of the red LED [default: 19].
    #[arg(long, env = "TAPGATE_PIN_RED")]
    pub pin_red: Option<u8>,
    /// BCM pin of the amber LED [default: 13].
    #[arg(long, env = "TAPGATE_PIN_AMBER")]
    pub pin_amber: Option<u8>,
    /// BCM pin of the green LED [default: 26].
    #[arg(long, env = "TAPGATE_PIN_GREEN")]
    pub pin_green: Option<u8>,
}

impl GateArgs {
    /// Loads and validates the layered settings.
    pub fn load(&self) -> Result<DeviceConfig, DeviceError> {
        let mut o = Overrides::new();
        o.put("offline_policy", self.offline_policy.map(|p| p.to_string()));
        o.put("green_for", dur(self.green_for));
        o.put("pins.red", self.pin_red.map(|v| v.to_string()));
        o.put("pins.amber", self.pin_amber.map(|v| v.to_string()));
        o.put("pins.green", self.pin_green.map(|v| v.to_string()));
        self.device.load_with(o)
    }
}

/// Settings of a sales terminal: the shared device settings and its buttons.
#[derive(Debug, Clone, Args)]
pub struct TerminalArgs {
    /// Settings every device has.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// How long a button contact must hold still to count [default: 30ms].
    #[arg(long, env = "TAPGATE_BUTTON_SETTLE", value_parser = humantime::parse_duration)]
    pub button_settle: Option<Duration>,
    /// The product each button sells, comma-separated, button 1 first: product ids of the
    /// bridge's fare catalogue; as many as the hardware has buttons (the console: 1 to 9)
    /// [default: SINGLE_USE,TEN_TRIP,TWO_HOUR].
    #[arg(long, env = "TAPGATE_BUTTONS", value_delimiter = ',')]
    pub buttons: Option<Vec<ProductId>>,
    /// BCM pins of the buttons, comma-separated, one per product of --buttons, in the same order
    /// [default: 19,13,26].
    #[arg(long, env = "TAPGATE_PIN_BUTTONS", value_delimiter = ',')]
    pub pin_buttons: Option<Vec<u8>>,
}

impl TerminalArgs {
    /// Loads and validates the layered settings.
    pub fn load(&self) -> Result<DeviceConfig, DeviceError> {
        let mut o = Overrides::new();
        o.put("button_settle", dur(self.button_settle));
        o.put("buttons", list(self.buttons.as_deref()));
        o.put("pins.buttons", list(self.pin_buttons.as_deref()));
        let cfg = self.device.load_with(o)?;
        cfg.validate_terminal()?;
        Ok(cfg)
    }
}

fn dur(d: Option<Duration>) -> Option<String> {
    d.map(|d| humantime::format_duration(d).to_string())
}

/// A comma-separated flag's values, as a settings list.
fn list<T: ToString>(values: Option<&[T]>) -> Option<Vec<String>> {
    values.map(|v| v.iter().map(ToString::to_string).collect())
}

/// Settings every device has.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// TOML file with settings (keys as the long flags, with `_` for `-`; pins in `[pins]`).
    #[arg(long, env = "TAPGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Device name (A-Z a-z 0-9 _ -, at most 64); also the MQTT client id.
    #[arg(long, env = "TAPGATE_ID")]
    pub id: Option<String>,
    /// Broker URL, login and TLS files.
    #[command(flatten)]
    pub broker: MqttArgs,
    /// Topic prefix [default: tapgate].
    #[arg(long, env = "TAPGATE_PREFIX")]
    pub prefix: Option<String>,
    /// How long to wait for a decision; longer than the bridge's decision window
    /// [default: 2s].
    #[arg(long, env = "TAPGATE_DECISION_TIMEOUT", value_parser = humantime::parse_duration)]
    pub decision_timeout: Option<Duration>,
    /// The same card seen again within this window is one tap [default: 2s].
    #[arg(long, env = "TAPGATE_CARD_HOLD", value_parser = humantime::parse_duration)]
    pub card_hold: Option<Duration>,
    /// Most messages queued while the broker is unreachable [default: 1000].
    #[arg(long, env = "TAPGATE_QUEUE_LIMIT")]
    pub queue_limit: Option<usize>,
    /// MQTT keep-alive [default: 5s].
    #[arg(long, env = "TAPGATE_KEEP_ALIVE", value_parser = humantime::parse_duration)]
    pub keep_alive: Option<Duration>,
    /// Hardware: `console` (simulated, type card numbers and 1 to 9 for buttons) or `rpi`
    /// [default: console].
    #[arg(long, env = "TAPGATE_HARDWARE")]
    pub hardware: Option<String>,
    /// Sound: `text` (printed) or `audio` (ALSA, needs the `audio` feature) [default: text].
    #[arg(long, env = "TAPGATE_SOUND")]
    pub sound: Option<String>,
    /// How often the card reader is polled [default: 50ms].
    #[arg(long, env = "TAPGATE_READER_POLL", value_parser = humantime::parse_duration)]
    pub reader_poll: Option<Duration>,
    /// BCM pin of the MFRC522 reset line [default: 25].
    #[arg(long, env = "TAPGATE_PIN_RESET")]
    pub pin_reset: Option<u8>,
    /// SPI clock of the MFRC522, Hz [default: 1000000].
    #[arg(long, env = "TAPGATE_SPI_HZ")]
    pub spi_hz: Option<u32>,
    /// BCM pin of the TM1637 display's CLK; with --pin-display-dio [default: no display].
    #[arg(long, env = "TAPGATE_PIN_DISPLAY_CLK")]
    pub pin_display_clk: Option<u8>,
    /// BCM pin of the TM1637 display's DIO; with --pin-display-clk [default: no display].
    #[arg(long, env = "TAPGATE_PIN_DISPLAY_DIO")]
    pub pin_display_dio: Option<u8>,
}

impl DeviceArgs {
    /// The flags (and environment) that were given, as config keys and values.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        o.put("id", self.id.clone());
        o.extend(self.broker.overrides());
        o.put("prefix", self.prefix.clone());
        o.put("decision_timeout", dur(self.decision_timeout));
        o.put("card_hold", dur(self.card_hold));
        o.put("queue_limit", self.queue_limit.map(|v| v.to_string()));
        o.put("keep_alive", dur(self.keep_alive));
        o.put("hardware", self.hardware.clone());
        o.put("sound", self.sound.clone());
        o.put("reader_poll", dur(self.reader_poll));
        o.put("pins.reset", self.pin_reset.map(|v| v.to_string()));
        o.put("pins.spi_hz", self.spi_hz.map(|v| v.to_string()));
        o.put(
            "pins.display_clk",
            self.pin_display_clk.map(|v| v.to_string()),
        );
        o.put(
            "pins.display_dio",
            self.pin_display_dio.map(|v| v.to_string()),
        );
        o
    }

    /// Loads and validates these settings plus a kind's own (`extra`).
    fn load_with(&self, extra: Overrides) -> Result<DeviceConfig, DeviceError> {
        let mut o = self.overrides();
        o.extend(extra);
        Ok(DeviceConfig::load(self.config.as_deref(), o)?)
    }
}

/// Why `tapgate-device` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A gate or terminal failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The simulator failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// A speaker chosen at run time.
enum AnySpeaker {
    Text(TextSpeaker),
    #[cfg(feature = "audio")]
    Audio(crate::hw::speaker::audio::AudioSpeaker),
}

/// Why the chosen speaker failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpeakerError(String);

impl Speaker for AnySpeaker {
    type Error = SpeakerError;
    fn play(&mut self, sound: Sound) -> Result<(), SpeakerError> {
        match self {
            AnySpeaker::Text(s) => s.play(sound).map_err(|e| SpeakerError(e.to_string())),
            #[cfg(feature = "audio")]
            AnySpeaker::Audio(s) => s.play(sound).map_err(|e| SpeakerError(e.to_string())),
        }
    }
}

fn speaker(kind: SoundKind) -> Result<AnySpeaker, DeviceError> {
    match kind {
        SoundKind::Text => Ok(AnySpeaker::Text(TextSpeaker::stdout())),
        #[cfg(feature = "audio")]
        SoundKind::Audio => crate::hw::speaker::audio::AudioSpeaker::open()
            .map(AnySpeaker::Audio)
            .map_err(|e| DeviceError::Hardware(e.to_string())),
        #[cfg(not(feature = "audio"))]
        SoundKind::Audio => Err(DeviceError::Hardware(
            "sound = audio needs a build with `--features audio`".into(),
        )),
    }
}

/// Runs a gate or terminal with the hardware its settings name, until `shutdown`.
pub async fn run_device(
    kind: DeviceKind,
    cfg: DeviceConfig,
    shutdown: CancellationToken,
) -> Result<(), DeviceError> {
    let speaker = speaker(cfg.sound)?;
    match cfg.hardware {
        HardwareKind::Console => {
            let (inputs, reader, buttons) = sim_hardware();
            println!("{HELP}");
            let console = tokio::spawn(run_console(
                BufReader::new(tokio::io::stdin()),
                inputs,
                shutdown.clone(),
            ));
            let result = match kind {
                DeviceKind::Gate => {
                    run_gate(
                        &cfg,
                        reader,
                        ConsoleLights::stdout(),
                        ConsoleDisplay::stdout(),
                        speaker,
                        shutdown.clone(),
                    )
                    .await
                }
                DeviceKind::Terminal => {
                    let display = ConsoleDisplay::stdout();
                    run_terminal(&cfg, reader, buttons, display, speaker, shutdown.clone()).await
                }
            };
            console.abort();
            result
        }
        #[cfg(feature = "rpi")]
        HardwareKind::Rpi => {
            use crate::hw::rpi;
            let hw = |e: rpi::RpiError| DeviceError::Hardware(e.to_string());
            let (reader, _reset) = rpi::card_reader(&cfg.pins).map_err(hw)?;
            let display = rpi::display(&cfg.pins).map_err(hw)?;
            match kind {
                DeviceKind::Gate => {
                    let lights = rpi::lights(&cfg.pins).map_err(hw)?;
                    run_gate(&cfg, reader, lights, display, speaker, shutdown).await
                }
                DeviceKind::Terminal => {
                    let buttons = rpi::buttons(&cfg.pins, cfg.button_settle).map_err(hw)?;
                    run_terminal(&cfg, reader, buttons, display, speaker, shutdown).await
                }
            }
        }
        #[cfg(not(feature = "rpi"))]
        HardwareKind::Rpi => Err(DeviceError::Hardware(
            "hardware = rpi needs a build with `--features rpi`".into(),
        )),
    }
}

/// Runs what the command line asks for, until it finishes or `shutdown`.
pub async fn run(command: CliCommand, shutdown: CancellationToken) -> Result<(), CliError> {
    match command {
        CliCommand::Gate(args) => Ok(run_device(DeviceKind::Gate, args.load()?, shutdown).await?),
        CliCommand::Terminal(args) => {
            Ok(run_device(DeviceKind::Terminal, args.load()?, shutdown).await?)
        }
        CliCommand::Simulate(args) => {
            let cfg = args.load().map_err(SimError::from)?;
            let summary = crate::sim::run(cfg.clone(), shutdown).await?;
            crate::sim::finish(&cfg, &summary)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_helpful() {
        Cli::command().debug_assert();
        let help = Cli::command()
            .find_subcommand_mut("gate")
            .expect("gate")
            .render_long_help()
            .to_string();
        for flag in [
            "--offline-policy",
            "--decision-timeout",
            "--pin-red",
            "--mqtt-ca",
            "TAPGATE_MQTT",
        ] {
            assert!(help.contains(flag), "{flag} missing from gate --help");
        }
        // Each kind lists only its own hardware.
        for flag in ["--buttons", "--pin-buttons", "--button-settle"] {
            assert!(!help.contains(flag), "{flag} in gate --help");
        }
        let terminal = Cli::command()
            .find_subcommand_mut("terminal")
            .expect("terminal")
            .render_long_help()
            .to_string();
        for flag in [
            "--buttons",
            "TAPGATE_BUTTONS",
            "--pin-buttons",
            "TAPGATE_PIN_BUTTONS",
            "SINGLE_USE,TEN_TRIP,TWO_HOUR",
            "--button-settle",
            "--decision-timeout",
        ] {
            assert!(
                terminal.contains(flag),
                "{flag} missing from terminal --help"
            );
        }
        for flag in ["--offline-policy", "--pin-red", "--green-for"] {
            assert!(!terminal.contains(flag), "{flag} in terminal --help");
        }
    }

    #[test]
    fn flags_become_settings() {
        let cli = Cli::try_parse_from([
            "tapgate-device",
            "gate",
            "--id",
            "g1",
            "--offline-policy",
            "fail-open",
            "--decision-timeout",
            "800ms",
            "--pin-green",
            "21",
        ])
        .expect("parse");
        let CliCommand::Gate(args) = cli.command else {
            panic!("not a gate");
        };
        let cfg = args.load().expect("load");
        assert_eq!(cfg.offline_policy, OfflinePolicy::FailOpen);
        assert_eq!(cfg.decision_timeout, Duration::from_millis(800));
        assert_eq!(cfg.pins.green, 21);
        assert_eq!(
            cfg.pins.display().ok(),
            Some(None),
            "no display unless its pins are set"
        );
        assert!(Cli::try_parse_from(["tapgate-device", "gate", "--offline-policy", "x"]).is_err());
        for kind in ["gate", "terminal"] {
            let cli = Cli::try_parse_from([
                "tapgate-device",
                kind,
                "--id",
                "d1",
                "--pin-display-clk",
                "23",
                "--pin-display-dio",
                "24",
            ])
            .expect("parse");
            let cfg = match cli.command {
                CliCommand::Gate(args) => args.load(),
                CliCommand::Terminal(args) => args.load(),
                CliCommand::Simulate(_) => panic!("not a device"),
            }
            .expect("load");
            assert_eq!(cfg.pins.display().ok(), Some(Some((23, 24))), "{kind}");
        }
    }

    #[test]
    fn terminal_buttons_arrive_in_order() {
        let terminal = |extra: &[&str]| -> Result<DeviceConfig, String> {
            let args = ["tapgate-device", "terminal", "--id", "t1"];
            let cli = Cli::try_parse_from(args.iter().chain(extra)).map_err(|e| e.to_string())?;
            let CliCommand::Terminal(args) = cli.command else {
                panic!("not a terminal");
            };
            args.load().map_err(|e| e.to_string())
        };
        let cfg = terminal(&[
            "--buttons",
            "DAY,TEN_TRIP,WEEK,SINGLE_USE",
            "--pin-buttons",
            "5,6,12,16",
            "--hardware",
            "rpi",
        ])
        .expect("four buttons");
        let ids: Vec<&str> = cfg.buttons.iter().map(ProductId::as_str).collect();
        assert_eq!(ids, ["DAY", "TEN_TRIP", "WEEK", "SINGLE_USE"]);
        assert_eq!(cfg.pins.buttons, [5, 6, 12, 16]);
        assert_eq!(
            terminal(&[]).expect("defaults").buttons,
            DeviceConfig::default().buttons
        );
        let e = terminal(&["--buttons", "day-pass"]).expect_err("not a product id");
        assert!(e.contains("--buttons"), "{e}");
        let e = terminal(&["--buttons", "DAY,WEEK", "--hardware", "rpi"]).expect_err("3 pins");
        assert!(e.contains("pins.buttons"), "{e}");
    }
}
