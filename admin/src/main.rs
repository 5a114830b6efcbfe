//! `tapgate-admin`: parses flags and settings, runs one provisioning command, prints its result.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use humantime_serde::re::humantime;
use tapgate_admin::output::{self, Format};
use tapgate_admin::{ca, card};
use tapgate_admin::{secret, Broker, Expect, ServiceRole, Settings};
use tapgate_protocol::{DeviceId, DeviceKind};
use tapgate_runtime::redis_url::{RedisUrl, RedisUrlParser};
use tapgate_runtime::settings::{self, ArgsError, Flags, Overrides};

/// Creates, lists and revokes tapgate's broker logins: one per device, bound to its id and kind,
/// and one per bridge or monitor; and devices' client certificates.
///
/// Settings come from built-in defaults, then the TOML file given with --config, then TAPGATE_*
/// environment variables, then these flags. Every flag before the command is a setting of the
/// same name ([`Settings`]): it reaches the settings by its name, and `--help` shows its default
/// from [`Settings::default`].
#[derive(Debug, Parser)]
#[command(
    name = "tapgate-admin",
    version,
    after_help = "Secrets are read from the environment only, never from flags:\n  \
                  TAPGATE_ADMIN_PASSWORD    mosquitto: the dynamic-security administrator's password\n  \
                  TAPGATE_EMQX_API_SECRET   EMQX: the API key's secret"
)]
struct Cli {
    /// TOML settings file (keys as the long flags, with underscores).
    #[arg(long, env = "TAPGATE_ADMIN_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective settings as TOML (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Every setting of [`Settings`] but the secrets, each a flag named as its field.
    #[command(flatten)]
    settings: Flags<Settings>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The settings only the environment gives, never a flag: (key, variable).
const SECRETS: [(&str, &str); 2] = [
    ("admin_password", "TAPGATE_ADMIN_PASSWORD"),
    ("emqx_api_secret", "TAPGATE_EMQX_API_SECRET"),
];

#[derive(Debug, Subcommand)]
enum Command {
    /// Devices: gates and terminals.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Service logins: bridges and the monitor.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Riders' cards (on Redis, not the broker).
    #[command(subcommand)]
    Card(CardCommand),
    /// Devices' client certificates and their CRL (files in the CA folder, not the broker).
    #[command(subcommand)]
    Cert(CertCommand),
}

/// The CA folder of every `cert` command.
#[derive(Debug, clap::Args)]
struct CaDir {
    /// The folder of docker/make-certs.sh: ca.crt and ca.key (unencrypted PKCS#8), and the
    /// issued.toml and crl.pem kept here.
    #[arg(long, env = "TAPGATE_CA_DIR")]
    ca_dir: PathBuf,
}

/// The wait for the CA folder's lock, in the `cert` commands that write.
#[derive(Debug, clap::Args)]
struct LockWait {
    /// How long to wait while another `cert` command writes to the CA folder (it holds the
    /// folder's lock, issued.toml.lock), e.g. 10s or 1m.
    #[arg(long, default_value_t = ca::LOCK_WAIT.into())]
    lock_wait: humantime::Duration,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// A new key and certificate for a device, signed by the CA.
    ///
    /// The certificate's CN is the device id; its fresh random serial is recorded in
    /// issued.toml. Writes ID.crt and ID.key (mode 0600) and prints the serial; the key is never
    /// printed.
    Issue {
        /// Device id: the certificate's CN, its login with client certificates.
        id: String,
        #[command(flatten)]
        ca: CaDir,
        #[command(flatten)]
        lock: LockWait,
        /// Where to write ID.crt and ID.key [default: the CA folder].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days of validity.
        #[arg(long, default_value_t = ca::CERT_DAYS)]
        days: u32,
        /// The URL where crl.pem is served over HTTP (e.g. http://ca.example:8080/crl.pem),
        /// written into the certificate as its CRL distribution point: EMQX checks revocation
        /// by fetching the CRL from there. Kept in issued.toml for every later certificate and
        /// CRL; give it with the first `cert issue`, since certificates issued before have none.
        #[arg(long)]
        crl_url: Option<String>,
    },
    /// Puts a device's certificates on the CRL and writes a new crl.pem.
    ///
    /// Every certificate of the device on record that is not revoked yet, or only the one given
    /// by --serial or --cert. Then reload mosquitto (`systemctl reload mosquitto`, a SIGHUP):
    /// it reads the CRL when it starts and on each SIGHUP.
    Revoke {
        /// Device id.
        id: String,
        #[command(flatten)]
        ca: CaDir,
        #[command(flatten)]
        lock: LockWait,
        /// Only this serial (hex, as `openssl x509 -noout -serial` prints it), e.g. of a
        /// certificate made elsewhere by this CA.
        #[arg(long, conflicts_with = "cert")]
        serial: Option<String>,
        /// Only the certificate in this PEM file (e.g. one docker/make-certs.sh made).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Why, as the CRL says it.
        #[arg(long, value_enum, default_value = "key-compromise")]
        reason: ca::Reason,
        /// Days the new CRL is valid.
        #[arg(long, default_value_t = ca::CRL_DAYS)]
        crl_days: u32,
    },
    /// Signs crl.pem again before it expires (the first time: an empty CRL).
    ///
    /// The new CRL has the next number and is valid --crl-days from now. Run it weekly from
    /// cron, then reload mosquitto (`systemctl reload mosquitto`).
    Crl {
        #[command(flatten)]
        ca: CaDir,
        #[command(flatten)]
        lock: LockWait,
        /// Days the new CRL is valid.
        #[arg(long, default_value_t = ca::CRL_DAYS)]
        crl_days: u32,
    },
    /// Lists the certificates on record.
    ///
    /// One line each: serial, device, valid until, and `valid` or `revoked DATE REASON`.
    List {
        #[command(flatten)]
        ca: CaDir,
    },
}

#[derive(Debug, Subcommand)]
enum CardCommand {
    /// Replaces lost card FROM by card TO: FROM's pass, balance, cap progress and recent events
    /// move to TO in one step and FROM is blocked with reason `replaced`, as the dashboard's
    /// Replace does (the same script and audit record). Prints the result as JSON; a refusal
    /// (exit status 1) names its code and changes nothing.
    Replace {
        /// The lost card.
        from: String,
        /// The card that replaces it (no pass, no money, not blocked).
        to: String,
        /// Who replaces it, for the audit trail and the block.
        #[arg(long, env = "TAPGATE_OPERATOR")]
        operator: String,
        /// Redis URL, with a user that may write what the monitor's may
        /// [default: redis://127.0.0.1:6379]. Its value is never shown here: a URL may hold a
        /// password.
        #[arg(long, env = "TAPGATE_REDIS", hide_env_values = true, value_parser = RedisUrlParser)]
        redis: Option<RedisUrl>,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Creates the device's login and prints its settings as TOML.
    Add {
        /// Device id: its username and MQTT client id.
        id: String,
        /// Gate or terminal; fixed for the life of the login.
        #[arg(long)]
        kind: Kind,
        /// Password; a strong random one is generated when omitted.
        #[arg(long, env = "TAPGATE_DEVICE_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// What to print: the device's settings, or a [[devices]] entry for the simulator.
        #[arg(long, value_enum, default_value = "device")]
        format: Format,
    },
    /// Deletes the device's login; a connected device is disconnected at once.
    Remove {
        /// Device id.
        id: String,
    },
    /// Lists the provisioned devices.
    List,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Creates a bridge's or the monitor's login; its MQTT client id must equal NAME.
    Add {
        /// Username and client id, e.g. bridge-1.
        name: String,
        /// What the login may do.
        #[arg(long, value_enum)]
        role: ServiceRole,
        /// Password; a strong random one is generated (and printed) when omitted.
        #[arg(long, env = "TAPGATE_SERVICE_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Deletes a service login and disconnects it.
    Remove {
        /// Username.
        name: String,
    },
    /// Lists the service logins.
    List,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kind {
    Gate,
    Terminal,
}

impl From<Kind> for DeviceKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Gate => DeviceKind::Gate,
            Kind::Terminal => DeviceKind::Terminal,
        }
    }
}

impl Cli {
    /// The command line, its settings flags' defaults shown from [`Settings::default`].
    fn command() -> clap::Command {
        settings::show_defaults::<Settings>(<Self as CommandFactory>::command())
    }

    /// Parses `args`; the settings the flags and variables give, by name, and the two secrets
    /// from the environment.
    fn parse_from<I, T>(args: I) -> Result<(Self, Overrides), ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let (cli, mut given) = settings::parse(Self::command(), args, settings::given::<Settings>)?;
        for (key, variable) in SECRETS {
            given.put(key, std::env::var(variable).ok());
        }
        Ok((cli, given))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn password(given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(p) => {
            secret::check(&p)?;
            Ok(p)
        }
        None => Ok(secret::generate()?),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tapgate_runtime::exit::report(start().await)
}

async fn start() -> anyhow::Result<()> {
    let (cli, given) = Cli::parse_from(std::env::args_os()).map_err(ArgsError::exit_on_parse)?;
    if cli.print_config {
        let loaded: Settings = settings::load(cli.config.as_deref(), given)?;
        print!("{}", settings::to_toml(&loaded)?);
        return Ok(());
    }
    let Some(command) = cli.command else {
        Cli::command().print_help()?;
        anyhow::bail!("no command given");
    };
    if let Command::Cert(command) = command {
        return cert(command);
    }
    if let Command::Card(CardCommand::Replace {
        from,
        to,
        operator,
        redis,
    }) = &command
    {
        let url = redis.clone().unwrap_or_default();
        tapgate_runtime::secret::refuse_placeholder("redis", url.password())?;
        let done = card::replace_card(&url, from, to, operator, now_ms()).await;
        return match done {
            Ok(r) => {
                let out = serde_json::json!({
                    "card": r.from.as_str(), "to": r.to.as_str(), "replaced": true,
                    "pass": r.pass, "balance": r.balance, "currency": r.currency,
                    "by": operator, "at": r.at, "seq": r.seq,
                });
                println!("{out}");
                Ok(())
            }
            Err(e) => match e.refusal() {
                Some(r) => Err(anyhow::anyhow!("refused ({}): {r}", r.code())),
                None => Err(e.into()),
            },
        };
    }
    let settings = Settings::load(cli.config.as_deref(), given)?;
    // Check what the operator typed before touching the broker.
    let mut prepared = None;
    match &command {
        Command::Device(DeviceCommand::Add {
            id, password: p, ..
        }) => {
            let id = DeviceId::new(id.as_str()).map_err(tapgate_admin::AdminError::from)?;
            tapgate_admin::policy::check_device_id(&id)?;
            prepared = Some((id, password(p.clone())?));
        }
        Command::Service(ServiceCommand::Add {
            name, password: p, ..
        }) => {
            tapgate_admin::policy::check_service_name(name)?;
            prepared = Some((DeviceId::new("x").context("id")?, password(p.clone())?));
        }
        Command::Device(DeviceCommand::Remove { id }) => {
            DeviceId::new(id.as_str()).map_err(tapgate_admin::AdminError::from)?;
        }
        _ => {}
    }
    let mut broker = Broker::connect(&settings).await?;
    let result = run(&mut broker, command, prepared).await;
    broker.close().await;
    result
}

async fn run(
    broker: &mut Broker,
    command: Command,
    prepared: Option<(DeviceId, String)>,
) -> anyhow::Result<()> {
    match command {
        Command::Device(DeviceCommand::Add { kind, format, .. }) => {
            let (id, pw) = prepared.context("device id and password were checked")?;
            broker.add_device(&id, kind.into(), &pw).await?;
            print!("{}", output::render(format, &id, kind.into(), &pw));
        }
        Command::Device(DeviceCommand::Remove { id }) => {
            broker.remove(&id, Expect::Device).await?;
            eprintln!("Removed device {id}; it was disconnected if it was connected.");
        }
        Command::Device(DeviceCommand::List) => {
            for l in broker.list().await?.iter().filter(|l| l.kind.is_device()) {
                println!("{}\t{}", l.username, l.kind);
            }
        }
        Command::Service(ServiceCommand::Add { name, role, .. }) => {
            let (_, pw) = prepared.context("password was checked")?;
            broker.add_service(&name, role, &pw).await?;
            println!(
                "# tapgate {} login: username = client id = {name}\nmqtt_username = \"{name}\"\nmqtt_password = \"{pw}\"",
                role.as_str()
            );
        }
        Command::Service(ServiceCommand::Remove { name }) => {
            broker.remove(&name, Expect::Service).await?;
            eprintln!("Removed service login {name}.");
        }
        Command::Service(ServiceCommand::List) => {
            for l in broker.list().await?.iter().filter(|l| l.kind.is_service()) {
                println!("{}\t{}", l.username, l.kind);
            }
        }
        Command::Card(_) | Command::Cert(_) => {
            anyhow::bail!("card and cert commands run before the broker is reached")
        }
    }
    Ok(())
}

/// The `cert` commands: files in the CA folder only, no broker.
fn cert(command: CertCommand) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    match command {
        CertCommand::Issue {
            id,
            ca,
            lock,
            out,
            days,
            crl_url,
        } => {
            let done = ca::issue_files(
                &ca.ca_dir,
                &id,
                out.as_deref(),
                crl_url.as_deref(),
                now,
                days,
                lock.lock_wait.into(),
            )?;
            report_issued(&id, &done);
        }
        CertCommand::Revoke {
            id,
            ca,
            lock,
            serial,
            cert,
            reason,
            crl_days,
        } => {
            let target = match (serial, cert) {
                (Some(s), _) => ca::Target::Serial(s),
                (None, Some(f)) => ca::Target::File(f),
                (None, None) => ca::Target::All,
            };
            let done = ca::publish_crl(
                &ca.ca_dir,
                Some((&id, &target, reason)),
                now,
                crl_days,
                lock.lock_wait.into(),
            )?;
            for serial in &done.revoked {
                println!("{id}\tserial {serial}\trevoked");
            }
            report_crl(&done);
        }
        CertCommand::Crl { ca, lock, crl_days } => {
            let done = ca::publish_crl(&ca.ca_dir, None, now, crl_days, lock.lock_wait.into())?;
            report_crl(&done);
        }
        CertCommand::List { ca } => list_certs(&ca::Ca::open(&ca.ca_dir)?),
    }
    Ok(())
}

/// What `cert issue` did: the certificate's line on stdout; on stderr the files written, the
/// older certificates the CRL will make unusable, and whether this one names where its CRL is.
fn report_issued(id: &str, done: &ca::IssuedFiles) {
    println!(
        "{id}\tserial {}\tvalid until {}",
        done.serial,
        done.not_after.strftime("%Y-%m-%d")
    );
    eprintln!(
        "Wrote {} and {} (the key: its owner may read it, nobody else).",
        done.cert.display(),
        done.key.display()
    );
    if !done.older.is_empty() {
        eprintln!(
            "Warning: {} certificate(s) issued before name no CRL URL: {}. Once crl.pem \
             names one (the next `cert crl` or `cert revoke`), mosquitto and EMQX refuse \
             them; issue each again (`cert issue ID`), then revoke the old one.",
            done.older.len(),
            done.older.join(", ")
        );
    }
    match &done.crl_url {
        Some(url) => eprintln!("Its CRL distribution point: {url}"),
        None => eprintln!(
            "It names no CRL distribution point: EMQX cannot check its revocation \
             (mosquitto can, from its crlfile). See `cert issue --crl-url`."
        ),
    }
}

/// `cert list`: every certificate the CA issued, a line each: serial, device, end of validity,
/// and whether (when, why) it was revoked.
fn list_certs(ca: &ca::Ca) {
    for c in &ca.db.certs {
        let until = c
            .not_after
            .map_or_else(|| "-".to_owned(), |t| t.strftime("%Y-%m-%d").to_string());
        let revoked = match (c.revoked, c.reason) {
            (Some(at), Some(why)) => format!(
                "revoked {} {}",
                at.strftime("%Y-%m-%d"),
                why.to_possible_value()
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default()
            ),
            (Some(at), None) => format!("revoked {}", at.strftime("%Y-%m-%d")),
            _ => "valid".to_owned(),
        };
        println!("{}\t{}\t{until}\t{revoked}", c.serial, c.device);
    }
}

fn report_crl(done: &ca::Published) {
    eprintln!(
        "Wrote {}: CRL number {}, {} revoked certificate(s), valid until {}. Reload mosquitto \
         to load it (`systemctl reload mosquitto`, a SIGHUP).",
        done.path.display(),
        done.crl.number,
        done.crl.listed,
        done.crl.next_update.strftime("%Y-%m-%d %H:%M UTC")
    );
    if let Some(url) = &done.crl_url {
        eprintln!(
            "Serve it at {url}: EMQX fetches it from there (crl_cache.refresh_interval in \
             emqx.conf)."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_runtime::settings::check;

    /// Values for the settings flags whose default gives no unlike value by itself.
    const SAMPLES: [(&str, &str); 7] = [
        ("backend", "emqx"),
        ("mqtt", "mqtts://broker.example:8884"),
        ("mqtt_ca", "/etc/tapgate/ca.crt"),
        ("admin_username", "root-admin"),
        ("emqx_api", "http://emqx.example:18084"),
        ("emqx_api_key", "key-1"),
        ("prefix", "transit"),
    ];

    /// Every settings flag before the command (a flag added later too) reaches the settings by
    /// its name: none is copied by hand, so none can be forgotten.
    #[test]
    fn every_flag_reaches_the_settings() {
        let keys = settings::defaults::<Settings>().expect("defaults");
        let cmd = Cli::command();
        let flags = check::every_flag(&cmd, &keys, &SAMPLES, &settings::NOT_SETTINGS)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flags.len(), keys.len() - SECRETS.len(), "{flags:?}");
        let argv = std::iter::once("tapgate-admin".to_owned())
            .chain(check::argv(&flags))
            .chain(["device".to_owned(), "list".to_owned()]);
        let (_, given) = Cli::parse_from(argv).expect("parse");
        let loaded: Settings = settings::load(None, given).expect("load");
        let lost = check::not_arrived(&flags, &keys, &check::flat(&loaded).expect("flat"));
        assert!(lost.is_empty(), "flags that did not arrive: {lost:?}");
    }

    /// `--help` shows the defaults from `Settings::default`.
    #[test]
    fn help_shows_the_defaults() {
        let help = Cli::command().render_help().to_string();
        for shown in [
            "[default: mosquitto]",
            "[default: mqtt://127.0.0.1:1883]",
            "[default: 10s]",
        ] {
            assert!(help.contains(shown), "{shown} in\n{help}");
        }
    }
}
