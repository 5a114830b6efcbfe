//! The command line: `tapgate-device gate|terminal|simulate`, and what each runs.
//!
//! Every setting is a flag with a `TAPGATE_*` environment variable, and can also come from a TOML
//! file given with `--config`; flags and environment win over the file. A setting is declared
//! once, as a field of [`DeviceConfig`] (or [`SimConfig`]): its doc is the flag's help, and a
//! flag's id is its setting's key (`pins.red` for `--pin-red`). [`Cli::parse_from`] hands every
//! flag given to the settings through [`tapgate_runtime::settings::given`], and `--help` shows
//! each default from the settings' `Default`. A gate and a terminal share [`DeviceConfig`]; each
//! has the flags of its own settings ([`KindFlags`]).

use std::ffi::OsString;
use std::marker::PhantomData;
use std::path::PathBuf;

use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches, Parser, Subcommand};
use tapgate_protocol::DeviceKind;
use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use tapgate_runtime::logging::LogArgs;
use tapgate_runtime::settings::{self, ArgsError, Flags, Overrides};

use crate::config::{ConfigError, DeviceConfig, HardwareKind, SoundKind, GATE_ONLY, TERMINAL_ONLY};
use crate::hw::console::{run_console, sim_hardware, ConsoleDisplay, ConsoleLights, HELP};
use crate::hw::speaker::TextSpeaker;
use crate::hw::Speaker;
use crate::prompt::Sound;
use crate::runtime::{run_gate, run_terminal, DeviceError};
use crate::sim::{SimArgs, SimConfig, SimError};

/// tapgate devices: entry gates, sales terminals and a rider simulator.
#[derive(Debug, Parser)]
#[command(name = "tapgate-device", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: CliCommand,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    /// The command line, each setting's default shown from its settings' `Default`.
    pub fn command() -> clap::Command {
        <Self as CommandFactory>::command()
            .mut_subcommand("gate", settings::show_defaults::<DeviceConfig>)
            .mut_subcommand("terminal", settings::show_defaults::<DeviceConfig>)
            .mut_subcommand("simulate", settings::show_defaults::<SimConfig>)
    }

    /// Parses `args` (the program's name first): the flags, and the settings they give as
    /// overrides for the command's `load`.
    pub fn parse_from<I, T>(args: I) -> Result<(Self, Overrides), ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        settings::parse(Self::command(), args, |matches| {
            match matches.subcommand() {
                Some(("simulate", m)) => settings::given::<SimConfig>(m),
                Some((_, m)) => settings::given::<DeviceConfig>(m),
                None => Ok(Overrides::new()),
            }
        })
    }
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

/// Flags of a gate: the settings file, and every setting of [`DeviceConfig`] but a terminal's.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// The settings file and `--print-config`.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The settings a gate has, each a flag named as its field.
    #[command(flatten)]
    pub settings: KindFlags<Gate>,
}

impl GateArgs {
    /// Loads and validates the layered settings, `given` (from [`Cli::parse_from`]) last.
    pub fn load(&self, given: Overrides) -> Result<DeviceConfig, DeviceError> {
        self.device.load(given)
    }
}

/// Flags of a sales terminal: the settings file, and every setting of [`DeviceConfig`] but a
/// gate's.
#[derive(Debug, Clone, Args)]
pub struct TerminalArgs {
    /// The settings file and `--print-config`.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The settings a terminal has, each a flag named as its field.
    #[command(flatten)]
    pub settings: KindFlags<Terminal>,
}

impl TerminalArgs {
    /// Loads and validates the layered settings, `given` (from [`Cli::parse_from`]) last.
    pub fn load(&self, given: Overrides) -> Result<DeviceConfig, DeviceError> {
        let cfg = self.device.load(given)?;
        cfg.validate_terminal()?;
        Ok(cfg)
    }
}

/// The flags every device has that are not settings.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// TOML file with settings (keys as the long flags, with `_` for `-`; pins in `[pins]`).
    #[arg(long, env = "TAPGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective settings as TOML (passwords redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl DeviceArgs {
    /// Loads and validates the file's settings with `given` over them.
    fn load(&self, given: Overrides) -> Result<DeviceConfig, DeviceError> {
        Ok(DeviceConfig::load(self.config.as_deref(), given)?)
    }
}

/// One kind of device, as its flags see it.
pub trait Kind {
    /// The `--help` heading of the other kind's settings, which this kind has no flags for.
    const OTHER: &'static str;
}

/// A gate ([`Kind`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gate;

impl Kind for Gate {
    const OTHER: &'static str = TERMINAL_ONLY;
}

/// A sales terminal ([`Kind`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl Kind for Terminal {
    const OTHER: &'static str = GATE_ONLY;
}

/// The flags of [`DeviceConfig`] that kind `K` has: [`Flags`] of every field but those under the
/// other kind's heading. As with [`Flags`], none is required and nothing is read from the
/// matches: [`settings::given`] takes the flags given as overrides.
#[derive(Debug, Clone, Copy, Default)]
pub struct KindFlags<K>(PhantomData<fn() -> K>);

impl<K: Kind> Args for KindFlags<K> {
    fn augment_args(cmd: Command) -> Command {
        let every = Flags::<DeviceConfig>::augment_args(Command::new("device"));
        every
            .get_arguments()
            .filter(|a| a.get_help_heading() != Some(K::OTHER))
            // Listed in this command's order, not the scratch one's.
            .fold(cmd, |cmd, a| cmd.arg(a.clone().display_order(None)))
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<K> FromArgMatches for KindFlags<K> {
    fn from_arg_matches(_: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self(PhantomData))
    }
    fn update_from_arg_matches(&mut self, _: &ArgMatches) -> Result<(), clap::Error> {
        Ok(())
    }
}

/// Why `tapgate-device` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The settings cannot be printed.
    #[error(transparent)]
    Settings(#[from] ConfigError),
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

/// Runs what the command line asks for with the settings `given` (both from [`Cli::parse_from`]),
/// until it finishes or `shutdown`; with `--print-config`, prints the settings instead.
pub async fn run(
    command: CliCommand,
    given: Overrides,
    shutdown: CancellationToken,
) -> Result<(), CliError> {
    match command {
        CliCommand::Gate(args) => {
            let cfg = args.load(given)?;
            if args.device.print_config {
                return print_config(&cfg);
            }
            Ok(run_device(DeviceKind::Gate, cfg, shutdown).await?)
        }
        CliCommand::Terminal(args) => {
            let cfg = args.load(given)?;
            if args.device.print_config {
                return print_config(&cfg);
            }
            Ok(run_device(DeviceKind::Terminal, cfg, shutdown).await?)
        }
        CliCommand::Simulate(args) => {
            let sim = args.load(given).map_err(SimError::from)?;
            if args.print_config {
                return print_config(&sim.config);
            }
            let cfg = sim.config.clone();
            let summary = crate::sim::run(sim, shutdown).await?;
            crate::sim::finish(&cfg, &summary)?;
            Ok(())
        }
    }
}

/// `--print-config`: the settings as TOML on stdout, passwords redacted.
fn print_config<T: serde::Serialize>(cfg: &T) -> Result<(), CliError> {
    print!("{}", settings::to_toml(cfg)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::logic::OfflinePolicy;
    use tapgate_protocol::ProductId;
    use tapgate_runtime::settings::{check, NOT_SETTINGS};

    /// Parses a `tapgate-device` command line into its command and the settings it gives.
    fn parse(args: &[&str]) -> Result<(CliCommand, Overrides), ArgsError> {
        let argv = std::iter::once("tapgate-device").chain(args.iter().copied());
        Cli::parse_from(argv).map(|(cli, given)| (cli.command, given))
    }

    fn load(args: &[&str]) -> Result<DeviceConfig, String> {
        match parse(args).map_err(|e| e.to_string())? {
            (CliCommand::Gate(a), given) => a.load(given),
            (CliCommand::Terminal(a), given) => a.load(given),
            (CliCommand::Simulate(_), _) => panic!("not a device"),
        }
        .map_err(|e| e.to_string())
    }

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
        let cfg = load(&[
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
        .expect("load");
        assert_eq!(cfg.offline_policy, OfflinePolicy::FailOpen);
        assert_eq!(cfg.decision_timeout, Duration::from_millis(800));
        assert_eq!(cfg.pins.green, 21);
        assert_eq!(
            cfg.pins.display().ok(),
            Some(None),
            "no display unless its pins are set"
        );
        assert!(parse(&["gate", "--offline-policy", "x"]).is_err());
        for kind in ["gate", "terminal"] {
            let cfg = load(&[
                kind,
                "--id",
                "d1",
                "--pin-display-clk",
                "23",
                "--pin-display-dio",
                "24",
            ])
            .expect("load");
            assert_eq!(cfg.pins.display().ok(), Some(Some((23, 24))), "{kind}");
        }
    }

    #[test]
    fn terminal_buttons_arrive_in_order() {
        let terminal = |extra: &[&str]| -> Result<DeviceConfig, String> {
            let mut args = vec!["terminal", "--id", "t1"];
            args.extend_from_slice(extra);
            load(&args)
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

    /// Values for the settings whose default cannot simply be changed (text, or unset).
    const SAMPLES: [(&str, &str); 15] = [
        ("id", "g7"),
        ("mqtt", "mqtt://127.0.0.1:1884"),
        ("mqtt_username", "g7"),
        ("mqtt_password", "s3cret-mqtt"),
        ("mqtt_ca", "/ca.pem"),
        ("mqtt_cert", "/cert.pem"),
        ("mqtt_key", "/key.pem"),
        ("prefix", "site-b"),
        ("hardware", "rpi"),
        ("sound", "audio"),
        ("offline_policy", "fail-open"),
        ("pins.display_clk", "5"),
        ("pins.display_dio", "6"),
        ("devices", "/etc/tapgate/devices.toml"),
        ("json", "/tmp/summary.json"),
    ];

    /// Each subcommand's every flag (a flag added later too), given a value unlike its default,
    /// reaches the settings that command loads (not validated: TLS files with an mqtt:// URL
    /// would be refused, which is not the point here).
    #[test]
    fn every_flag_reaches_the_settings() {
        let extra = [("fares", "/etc/tapgate/fares.toml")];
        let samples: Vec<(&str, &str)> = SAMPLES.iter().chain(&extra).copied().collect();
        for sub in ["gate", "terminal", "simulate"] {
            let cmd = Cli::command();
            let sub_cmd = cmd.find_subcommand(sub).expect("subcommand");
            let keys = if sub == "simulate" {
                settings::defaults::<SimConfig>()
            } else {
                settings::defaults::<DeviceConfig>()
            }
            .expect("defaults");
            let flags = check::every_flag(sub_cmd, &keys, &samples, &NOT_SETTINGS)
                .unwrap_or_else(|e| panic!("{sub}: {e}"));
            let mut argv = vec!["tapgate-device".to_owned(), sub.to_owned()];
            argv.extend(check::argv(&flags));
            let (_, given) = Cli::parse_from(argv).expect("parse");
            let effective = if sub == "simulate" {
                let cfg: SimConfig = settings::load(None, given).expect("load");
                check::flat(&cfg)
            } else {
                let cfg: DeviceConfig = settings::load(None, given).expect("load");
                check::flat(&cfg)
            }
            .expect("flat");
            let lost = check::not_arrived(&flags, &keys, &effective);
            assert!(
                lost.is_empty(),
                "{sub}: flags that did not arrive: {lost:?}"
            );
        }
    }

    /// Every device setting is a flag of a gate or a terminal or both: one kind goes without
    /// only the other kind's settings.
    #[test]
    fn every_device_setting_is_a_flag_of_its_kinds() {
        let cmd = Cli::command();
        let ids = |sub: &str| -> Vec<String> {
            let sub = cmd.find_subcommand(sub).expect("subcommand");
            sub.get_arguments()
                .map(|a| a.get_id().as_str().to_owned())
                .collect()
        };
        let (gate, terminal) = (ids("gate"), ids("terminal"));
        for key in settings::defaults::<DeviceConfig>()
            .expect("defaults")
            .keys()
        {
            let kinds = (gate.contains(key), terminal.contains(key));
            assert!(kinds != (false, false), "{key} is no flag");
            let only = match kinds {
                (true, false) => Some(GATE_ONLY),
                (false, true) => Some(TERMINAL_ONLY),
                _ => None,
            };
            let heading = cmd
                .find_subcommand(if kinds.0 { "gate" } else { "terminal" })
                .and_then(|sub| sub.get_arguments().find(|a| a.get_id() == key.as_str()))
                .and_then(clap::Arg::get_help_heading);
            assert_eq!(heading, only, "{key}");
        }
    }

    #[test]
    fn help_shows_defaults_from_the_settings() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("simulate")
            .expect("simulate")
            .render_long_help()
            .to_string();
        for shown in [
            "[default: 1500ms]",
            "[default: 60s]",
            "[default: 500]",
            "[default: 0.01]",
        ] {
            assert!(help.contains(shown), "{shown} missing:\n{help}");
        }
    }

    #[test]
    fn print_config_is_the_settings_without_passwords() {
        let cfg = load(&[
            "gate",
            "--id",
            "g1",
            "--mqtt",
            "mqtt://g1:s3cret@b:1884",
            "--pin-red",
            "4",
        ])
        .expect("load");
        let text = settings::to_toml(&cfg).expect("toml");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("mqtt = \"mqtt://***@b:1884\""), "{text}");
        assert!(text.contains("id = \"g1\""), "{text}");
        assert!(
            text.contains("[pins]") && text.contains("red = 4"),
            "{text}"
        );
    }

    /// `--print-config` prints and returns: it neither opens hardware nor connects (the broker
    /// here does not exist, and a gate would keep trying it).
    #[tokio::test]
    async fn print_config_prints_instead_of_running() {
        for args in [
            &[
                "gate",
                "--id",
                "g1",
                "--mqtt",
                "mqtt://127.0.0.1:1",
                "--print-config",
            ][..],
            &[
                "terminal",
                "--id",
                "t1",
                "--mqtt",
                "mqtt://127.0.0.1:1",
                "--print-config",
            ],
            &["simulate", "--mqtt", "mqtt://127.0.0.1:1", "--print-config"],
        ] {
            let (command, given) = parse(args).expect("parse");
            let done = tokio::time::timeout(
                Duration::from_secs(5),
                run(command, given, CancellationToken::new()),
            )
            .await;
            assert!(matches!(done, Ok(Ok(()))), "{args:?}: {done:?}");
        }
    }
}
