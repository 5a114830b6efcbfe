//! `tapgate-monitor`: parses flags and config, sets up logging, and runs a subcommand from the
//! library.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tapgate_monitor::config::DEFAULT_REDIS;
use tapgate_monitor::tail::{self, Replay, TailConfig};
use tapgate_monitor::{password, report, web, ServeConfig};
use tapgate_runtime::logging::LogArgs;
use tapgate_runtime::redis_url::{RedisUrl, RedisUrlParser};
use tapgate_runtime::settings::{self, ArgsError, Flags, Overrides};

/// Watch a tapgate system: a terminal tail of the event stream, or a live web dashboard.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Logging.
    #[command(flatten)]
    log: LogArgs,
}

impl Cli {
    /// The command line, each `serve` setting's default shown from [`ServeConfig::default`].
    fn command() -> clap::Command {
        <Self as CommandFactory>::command()
            .mut_subcommand("serve", settings::show_defaults::<ServeConfig>)
    }

    /// Parses `args` (the program's name first): the flags, and the `serve` settings they give
    /// as overrides.
    fn parse_from<I, T>(args: I) -> Result<(Self, Overrides), ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        settings::parse(Self::command(), args, |matches| {
            match matches.subcommand() {
                Some(("serve", m)) => settings::given::<ServeConfig>(m),
                _ => Ok(Overrides::new()),
            }
        })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print events as they happen: replays recent history, then follows live.
    Tail(TailArgs),
    /// Serve the operators' web dashboard.
    Serve(ServeArgs),
    /// A service day's takings per terminal and product, from the event stream, checked against
    /// the day's revenue counters; exits with status 1 when they differ.
    Report(ReportArgs),
    /// Read a password from stdin and print its argon2 hash for the config file.
    HashPassword,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The Redis to read, for the commands that only read it.
#[derive(clap::Args, Debug)]
struct RedisArg {
    /// Redis URL (may hold a password: its value is never shown here).
    #[arg(
        long,
        env = "TAPGATE_REDIS",
        hide_env_values = true,
        default_value = DEFAULT_REDIS,
        value_parser = RedisUrlParser
    )]
    redis: RedisUrl,
}

impl RedisArg {
    /// The URL, an example placeholder password in it refused.
    fn checked(self) -> anyhow::Result<RedisUrl> {
        tapgate_runtime::secret::refuse_placeholder("redis", self.redis.password())?;
        Ok(self.redis)
    }
}

#[derive(Parser, Debug)]
struct TailArgs {
    #[command(flatten)]
    redis: RedisArg,
    /// Replay from here: a stream id (1700000000000-0), an RFC 3339 time
    /// (2026-11-22T08:00:00Z) or a duration ago (10m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Replay at most the newest N events (default 10 when --since is not given).
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// One JSON object per line (the event, with `seq` = its stream id).
    #[arg(long)]
    json: bool,
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Print the dashboard's audit trail (logins, failed logins, logouts, blocks, unblocks)
    /// instead of the event stream: the newest --last records (default 10), then new ones.
    #[arg(long, conflicts_with = "since")]
    audit: bool,
}

#[derive(Parser, Debug)]
struct ReportArgs {
    #[command(flatten)]
    redis: RedisArg,
    /// The service day, YYYY-MM-DD [default: the service day it is now].
    #[arg(long)]
    day: Option<jiff::civil::Date>,
    /// One CSV row per terminal and product, and per gate for fares paid as you go, instead of
    /// the table (the check's notes go to stderr).
    #[arg(long)]
    csv: bool,
    /// The bridge's fares file: product names, currency, when service days start
    /// [default: the built-in catalogue].
    #[arg(long, env = "TAPGATE_FARES")]
    fares: Option<PathBuf>,
}

/// Flags of `serve`: each setting is a field of [`ServeConfig`] and reaches it through
/// [`settings::given`].
#[derive(Parser, Debug)]
struct ServeArgs {
    /// TOML config file (operators, settings); env variables and flags override it.
    #[arg(long, env = "TAPGATE_MONITOR_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective settings as TOML (passwords and password hashes redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Every setting of [`ServeConfig`], each a flag named as its field.
    #[command(flatten)]
    settings: Flags<ServeConfig>,
}

impl ServeArgs {
    /// Defaults, then the file, then `given` (environment and flags, from [`Cli::parse_from`]);
    /// validated.
    fn load(&self, given: Overrides) -> anyhow::Result<ServeConfig> {
        let file = self.config.as_deref();
        let c: ServeConfig =
            tapgate_runtime::settings::load(file, given).with_context(|| match file {
                Some(path) => format!("reading {}", path.display()),
                None => "reading the settings".to_owned(),
            })?;
        c.validate()?;
        Ok(c)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tapgate_runtime::exit::report(start().await)
}

async fn start() -> anyhow::Result<()> {
    let (cli, given) = Cli::parse_from(std::env::args_os()).map_err(|e| e.exit_on_parse())?;
    // hash-password logs nothing: it prints the hash and exits.
    if !matches!(cli.command, Command::HashPassword) {
        cli.log.init()?;
    }
    match cli.command {
        Command::HashPassword => hash_password(),
        Command::Tail(args) => tail(args).await,
        Command::Report(args) => report(args).await,
        Command::Serve(args) => {
            let config = args.load(given)?;
            if args.print_config {
                print!("{}", settings::to_toml(&config)?);
                return Ok(());
            }
            let shutdown = tapgate_runtime::shutdown::on_signals();
            web::run(config, shutdown).await?;
            Ok(())
        }
    }
}

/// `hash-password`: the hash of the password on stdin, for an operator's entry.
fn hash_password() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from stdin")?;
    let pw = input.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!pw.is_empty(), "empty password on stdin");
    println!("{}", password::hash(pw)?);
    Ok(())
}

/// `tail`: the event stream (or with `--audit` the audit trail) on stdout, from `--since` or
/// the `--last` entries (10 unless either is given), until a signal.
async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| tail::parse_since(s, tapgate_runtime::clock::now_ms()))
        .transpose()?;
    let last = match (since, args.last) {
        (None, None) => Some(10),
        (_, last) => last,
    };
    let forced = match args.color {
        ColorChoice::Always => Some(true),
        ColorChoice::Never => Some(false),
        ColorChoice::Auto => None,
    };
    let no_color = std::env::var_os("NO_COLOR");
    let color = tail::use_color(
        forced,
        std::io::stdout().is_terminal(),
        no_color.as_ref().map(|v| v.to_str().unwrap_or("1")),
    );
    let redis = args.redis.checked()?;
    let shutdown = tapgate_runtime::shutdown::on_signals();
    let out = std::io::stdout().lock();
    let done = if args.audit {
        let last = last.unwrap_or(10);
        tail::run_audit(&redis, last, args.json, color, out, shutdown).await
    } else {
        let config = TailConfig {
            redis,
            replay: Replay { since, last },
            json: args.json,
            color,
        };
        tail::run(config, out, std::io::stderr(), shutdown).await
    };
    match done {
        // Piped into `head`, say: the reader has what it wanted.
        Err(tail::TailError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `report`: a service day's sales and revenue, as text or CSV; fails when the revenue counters
/// and the event stream disagree.
async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let redis = args.redis.checked()?;
    let catalogue = match &args.fares {
        Some(path) => tapgate_protocol::Catalogue::load(path)?,
        None => tapgate_protocol::Catalogue::builtin(7_200_000),
    };
    let day = args
        .day
        .unwrap_or_else(|| catalogue.service_day(tapgate_runtime::clock::now_ms()).date);
    let report = report::make(&redis, day, catalogue.day_starts_at_ms(day)).await?;
    if args.csv {
        print!("{}", report.to_csv(&catalogue));
        eprint!("{}", report.notes());
    } else {
        print!("{}", report.to_text(&catalogue));
    }
    anyhow::ensure!(
        report.agrees(),
        "the revenue counters differ from the event stream (see above)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    /// `serve args`: its settings, loaded and validated.
    fn serve(args: &[&str]) -> anyhow::Result<ServeConfig> {
        let mut argv = vec!["tapgate-monitor", "serve"];
        argv.extend_from_slice(args);
        let (cli, given) = Cli::parse_from(argv)?;
        match cli.command {
            Command::Serve(a) => a.load(given),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn flags_win_over_the_file_and_keep_their_types() {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("tmp");
        let text = "public_read_only = true\nhistory = 7\nsession_ttl = '1h'\n\
                    trusted_proxies = ['10.0.0.0/8']\nallowed_hosts = ['a.example']\n";
        file.write_all(text.as_bytes()).expect("write");
        let path = file.path().to_str().expect("utf-8 path");
        let c = serve(&["--config", path]).expect("file only");
        assert_eq!((c.history, c.session_ttl), (7, Duration::from_secs(3600)));
        assert_eq!(c.trusted_proxies, ["10.0.0.0/8"]);

        let c = serve(&[
            "--config",
            path,
            "--history",
            "9",
            "--session-ttl",
            "90m",
            "--secure-cookies",
            "true",
            "--trusted-proxies",
            "::1, ,192.168.0.0/16",
            "--allowed-hosts",
            "",
            "--listen",
            "0.0.0.0:9000",
            "--max-body-bytes",
            "4096",
            "--session-key-file",
            "/var/lib/tapgate-monitor/session.key",
        ])
        .expect("flags");
        assert_eq!(c.history, 9);
        assert_eq!(c.session_ttl, Duration::from_secs(90 * 60));
        assert_eq!(c.secure_cookies, Some(true));
        assert_eq!(
            c.trusted_proxies,
            ["::1", "192.168.0.0/16"],
            "blanks dropped"
        );
        assert!(c.allowed_hosts.is_empty(), "an empty flag empties the list");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_body_bytes, 4096);
        assert_eq!(
            c.session_key_file,
            Some(PathBuf::from("/var/lib/tapgate-monitor/session.key"))
        );
        assert!(c.public_read_only, "what no flag names stays from the file");

        let e = serve(&["--public-read-only", "true", "--history", "0"]).expect_err("validated");
        assert!(e.to_string().contains("history"), "{e}");
    }

    /// Every `serve` flag (a flag added later too), given a value unlike its default, reaches the
    /// settings.
    #[test]
    fn every_serve_flag_reaches_the_settings() {
        use tapgate_runtime::settings::{check, NOT_SETTINGS};
        let samples = [
            ("redis", "redis://127.0.0.1:6390"),
            ("listen", "0.0.0.0:9000"),
            ("session_key_file", "/var/lib/tapgate-monitor/session.key"),
            ("secure_cookies", "true"),
            ("trusted_proxies", "10.0.0.0/8,::1"),
            ("allowed_hosts", "a.example,b.example"),
            ("fares", "/etc/tapgate/fares.toml"),
        ];
        let keys = settings::defaults::<ServeConfig>().expect("defaults");
        let cmd = Cli::command();
        let serve_cmd = cmd.find_subcommand("serve").expect("serve");
        let flags = check::every_flag(serve_cmd, &keys, &samples, &NOT_SETTINGS)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut argv = vec!["tapgate-monitor".to_owned(), "serve".to_owned()];
        argv.extend(check::argv(&flags));
        let (_, given) = Cli::parse_from(argv).expect("parse");
        let cfg: ServeConfig = settings::load(None, given).expect("load");
        let lost = check::not_arrived(&flags, &keys, &check::flat(&cfg).expect("flat"));
        assert!(lost.is_empty(), "flags that did not arrive: {lost:?}");
    }

    #[test]
    fn serve_help_shows_defaults_from_the_settings() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        for shown in [
            "[default: 8h]",
            "[default: 127.0.0.1:8080]",
            "[default: 16384]",
        ] {
            assert!(help.contains(shown), "{shown} missing:\n{help}");
        }
    }
}
