//! The broker connection, built one way for every program.
//!
//! [`BrokerSettings`] holds the typed broker URL, credentials and TLS files; [`BrokerSettings::options`]
//! turns them into rumqttc options for one client id and [`client`] creates the client with
//! TCP_NODELAY on (without it a loopback round trip costs ~40 ms of Nagle delay).
//!
//! Credentials: a username given as a setting wins; otherwise the URL's `user:password@`. TLS:
//! `mqtts://` URLs verify the broker against the CA file given (`ca`), or the system's roots when
//! none is; a client certificate and key (`cert`, `key`) are presented when both are given (the
//! broker may then take the certificate's CN as the username). TLS files with a plain `mqtt://`
//! URL are refused rather than silently unused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, MqttOptions, NetworkOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tapgate_protocol::broker::{BrokerUrl, BrokerUrlError};

/// Largest MQTT packet a tapgate client sends or accepts, in bytes. Brokers are configured with
/// a smaller limit (see docs/deploy.md), so a packet this client would refuse never reaches it.
pub const MAX_PACKET_BYTES: usize = 64 * 1024;

/// TLS files, all optional and PEM-encoded.
///
/// In a program's settings these are the keys `mqtt_ca`, `mqtt_cert` and `mqtt_key`, side by
/// side with the others ([`BrokerConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TlsFiles {
    /// CA certificate(s) the broker's certificate must chain to; unset: the system's roots.
    #[serde(rename = "mqtt_ca")]
    pub ca: Option<PathBuf>,
    /// Client certificate (chain) to present, e.g. one whose CN is the device id.
    #[serde(rename = "mqtt_cert")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(rename = "mqtt_key")]
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Why broker options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    /// The URL does not parse.
    #[error(transparent)]
    Url(#[from] BrokerUrlError),
    /// TLS files were given with a plain `mqtt://` URL.
    #[error("TLS files are set but the broker URL {url} is not mqtts://")]
    TlsWithoutMqtts {
        /// The URL, password removed.
        url: String,
    },
    /// Only one of certificate and key was given.
    #[error("a client certificate needs both mqtt_cert and mqtt_key")]
    HalfClientCert,
    /// A TLS file could not be read or holds no usable PEM item.
    #[error("cannot use TLS file {path}: {why}")]
    TlsFile {
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No CA file and no usable system roots.
    #[error("no CA to verify the broker: set mqtt_ca ({why})")]
    NoRoots {
        /// Why the system roots could not be used.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Where and how to reach the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// The broker URL, parsed.
    pub url: BrokerUrl,
    /// Username; wins over one in the URL.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// TLS files (with `mqtts://`).
    pub tls: TlsFiles,
    /// MQTT keep-alive: how soon a dead connection is noticed.
    pub keep_alive: Duration,
}

impl BrokerSettings {
    /// Parses `url`: [`BrokerSettings::at`] that URL.
    pub fn new(url: &str) -> Result<Self, MqttSetupError> {
        Ok(Self::at(BrokerUrl::parse(url)?))
    }

    /// The broker at `url`; no credentials or TLS files beyond what the URL says, keep-alive 15 s.
    pub fn at(url: BrokerUrl) -> Self {
        Self {
            url,
            username: None,
            password: None,
            tls: TlsFiles::default(),
            keep_alive: Duration::from_secs(15),
        }
    }

    /// Sets the username and password (a `None` username keeps the URL's credentials).
    pub fn with_credentials(mut self, username: Option<String>, password: Option<String>) -> Self {
        self.username = username;
        self.password = password;
        self
    }

    /// Sets the TLS files.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the keep-alive.
    pub fn with_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.url.host.contains(':') {
            format!("[{}]:{}", self.url.host, self.url.port)
        } else {
            format!("{}:{}", self.url.host, self.url.port)
        }
    }

    /// The username and password to log in with: the settings' username wins, then the URL's.
    pub fn credentials(&self) -> Option<(String, String)> {
        match &self.username {
            Some(u) => Some((u.clone(), self.password.clone().unwrap_or_default())),
            None => self.url.credentials.clone(),
        }
    }

    /// Checks the combination without connecting: TLS files only with `mqtts://`, certificate
    /// and key together, and every file readable.
    pub fn validate(&self) -> Result<(), MqttSetupError> {
        self.tls_config().map(|_| ())
    }

    /// rumqttc options for `client_id`: credentials, keep-alive, packet limits and, for
    /// `mqtts://`, the TLS transport.
    pub fn options(&self, client_id: &str) -> Result<MqttOptions, MqttSetupError> {
        let mut opts = MqttOptions::new(client_id, self.url.host.clone(), self.url.port);
        opts.set_keep_alive(self.keep_alive)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let Some((u, p)) = self.credentials() {
            opts.set_credentials(u, p);
        }
        if let Some(tls) = self.tls_config()? {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        Ok(opts)
    }

    fn tls_config(&self) -> Result<Option<ClientConfig>, MqttSetupError> {
        if !self.url.tls {
            if self.tls.any() {
                return Err(MqttSetupError::TlsWithoutMqtts {
                    url: format!("mqtt://{}", self.address()),
                });
            }
            return Ok(None);
        }
        let roots = match &self.tls.ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(read_certs(path)?);
                if added == 0 {
                    return Err(tls_file(path, "no usable CA certificate"));
                }
                roots
            }
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| tls_file(key, &format!("no private key: {e}")))?;
                builder.with_client_auth_cert(chain, key)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(MqttSetupError::HalfClientCert),
        };
        Ok(Some(config))
    }
}

fn tls_file(path: &Path, why: &str) -> MqttSetupError {
    MqttSetupError::TlsFile {
        path: path.to_owned(),
        why: why.to_owned(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_file(path, &e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(path, &e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_file(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn system_roots() -> Result<RootCertStore, MqttSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found.errors.first().map_or_else(
            || "the system has no CA certificates".to_owned(),
            |e| e.to_string(),
        );
        return Err(MqttSetupError::NoRoots { why });
    }
    Ok(roots)
}

/// Why the broker settings of a program cannot work.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    /// A password is still an example placeholder.
    #[error(transparent)]
    Placeholder(#[from] crate::secret::PlaceholderSecret),
    /// The URL or TLS files cannot work.
    #[error(transparent)]
    Setup(#[from] MqttSetupError),
}

/// The broker settings every program holds, declared once: the keys `mqtt`, `mqtt_username`,
/// `mqtt_password`, `mqtt_ca`, `mqtt_cert` and `mqtt_key`, side by side with the program's own
/// (settings structs take this with `#[serde(flatten)]` and `#[command(flatten)]`). Each field's
/// doc is also its flag's help, and its `#[arg]` names the flag and its `TAPGATE_MQTT*`
/// variable ([`crate::settings::Flags`]). Its fields are plain, not flattened again: serde cannot
/// refuse unknown keys through two levels of flattening.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::Args)]
#[serde(default)]
pub struct BrokerConfig {
    /// MQTT broker URL: mqtt://host:port (also tcp://), or mqtts://host:port for TLS; a
    /// user:password@ in it is used when no MQTT username is set.
    // Parsed once, as it is read.
    #[serde(
        deserialize_with = "crate::settings::broker_url",
        serialize_with = "crate::settings::broker_url_text"
    )]
    #[arg(long, env = "TAPGATE_MQTT", hide_env_values = true, value_parser = BrokerUrl::parse)]
    pub mqtt: BrokerUrl,
    /// MQTT username (a provisioned device logs in with its id); wins over one in the URL.
    #[arg(long, env = "TAPGATE_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    /// MQTT password, for the MQTT username.
    #[arg(long, env = "TAPGATE_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// CA certificate (PEM) the broker's certificate must chain to, for mqtts://; unset: the
    /// system's roots.
    #[arg(long, env = "TAPGATE_MQTT_CA")]
    pub mqtt_ca: Option<PathBuf>,
    /// Client certificate (PEM) to present over mqtts://, e.g. one whose CN is the device id.
    #[arg(long, env = "TAPGATE_MQTT_CERT")]
    pub mqtt_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "TAPGATE_MQTT_KEY")]
    pub mqtt_key: Option<PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::new(BrokerUrl {
            host: "127.0.0.1".into(),
            port: tapgate_protocol::broker::DEFAULT_PORT,
            credentials: None,
            tls: false,
        })
    }
}

impl BrokerConfig {
    /// The broker at `url`, with no login beyond the URL's and no TLS files.
    pub fn new(url: BrokerUrl) -> Self {
        Self {
            mqtt: url,
            mqtt_username: None,
            mqtt_password: None,
            mqtt_ca: None,
            mqtt_cert: None,
            mqtt_key: None,
        }
    }

    /// [`BrokerConfig::new`] from a URL written in the code, for tests and examples (settings
    /// read theirs with [`crate::settings::broker_url`], which refuses a bad one).
    ///
    /// # Panics
    ///
    /// When `url` is not a broker URL.
    #[track_caller]
    pub fn url(url: impl AsRef<str>) -> Self {
        match BrokerUrl::parse(url.as_ref()) {
            Ok(url) => Self::new(url),
            Err(e) => panic!("{e}"),
        }
    }

    /// The same broker, logged in as `username` with `password`.
    pub fn login(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.mqtt_username = Some(username.into());
        self.mqtt_password = Some(password.into());
        self
    }

    /// Checked settings: placeholder passwords refused (in the setting or in the URL). The URL
    /// was parsed when it was read; the TLS files are read when [`BrokerSettings::options`]
    /// builds the connection, or sooner by [`BrokerConfig::checked`].
    pub fn settings(&self) -> Result<BrokerSettings, BrokerConfigError> {
        crate::secret::refuse_placeholder("mqtt_password", self.mqtt_password.as_deref())?;
        crate::secret::refuse_placeholder(
            "mqtt",
            self.mqtt.credentials.as_ref().map(|(_, p)| p.as_str()),
        )?;
        let settings = BrokerSettings::at(self.mqtt.clone())
            .with_credentials(self.mqtt_username.clone(), self.mqtt_password.clone())
            .with_tls(TlsFiles {
                ca: self.mqtt_ca.clone(),
                cert: self.mqtt_cert.clone(),
                key: self.mqtt_key.clone(),
            });
        Ok(settings)
    }

    /// [`BrokerConfig::settings`] with the TLS files read and checked now, for a program that
    /// checks its settings when it loads them (and then builds its connection from
    /// [`BrokerConfig::settings`] without reading them a second time before the connection does).
    pub fn checked(&self) -> Result<BrokerSettings, BrokerConfigError> {
        let settings = self.settings()?;
        settings.validate()?;
        Ok(settings)
    }
}

/// Creates the client and its event loop with TCP_NODELAY on and a 5 s connection timeout.
/// `capacity` bounds the requests (publishes, acks) waiting for the event loop.
pub fn client(opts: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(opts, capacity);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    eventloop.set_network_options(net);
    (client, eventloop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Program {
        #[serde(flatten)]
        broker: BrokerConfig,
        name: String,
    }

    #[test]
    fn broker_keys_sit_beside_a_programs_own_and_unknown_ones_are_refused() {
        let p: Program = crate::settings::load(
            None,
            [
                ("mqtt", "mqtts://b:8883"),
                ("mqtt_username", "g1"),
                ("mqtt_ca", "/ca.pem"),
                ("name", "x"),
            ],
        )
        .expect("loads");
        assert_eq!(p.name, "x");
        assert_eq!(p.broker.mqtt.to_string(), "mqtts://b:8883");
        assert_eq!(p.broker.mqtt_username.as_deref(), Some("g1"));
        assert_eq!(p.broker.mqtt_ca, Some(PathBuf::from("/ca.pem")));
        let typo = crate::settings::load::<Program, _, _>(
            None,
            [("mqtt_cafile", "/ca.pem"), ("name", "x")],
        );
        assert!(typo.is_err(), "{typo:?}");
    }

    #[test]
    fn settings_credentials_win_over_the_url() {
        let s = BrokerSettings::new("mqtt://url-user:url-pw@h:1884").expect("url");
        assert_eq!(s.credentials(), Some(("url-user".into(), "url-pw".into())));
        let s = s.with_credentials(Some("g7".into()), Some("pw".into()));
        assert_eq!(s.credentials(), Some(("g7".into(), "pw".into())));
        assert_eq!(
            BrokerSettings::new("mqtt://h").expect("url").credentials(),
            None
        );
    }

    #[test]
    fn options_carry_credentials_from_the_url() {
        let s = BrokerSettings::new("mqtt://g1:secret@127.0.0.1:1999").expect("url");
        let o = s.options("g1").expect("options");
        assert_eq!(o.client_id(), "g1");
        assert_eq!(o.broker_address(), ("127.0.0.1".into(), 1999));
        let login = o.credentials().expect("login");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("g1", "secret")
        );
    }

    #[test]
    fn tls_files_need_mqtts_and_both_halves() {
        let files = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let plain = BrokerSettings::new("mqtt://h")
            .expect("url")
            .with_tls(files);
        assert!(matches!(
            plain.validate(),
            Err(MqttSetupError::TlsWithoutMqtts { .. })
        ));
        let half = BrokerSettings::new("mqtts://h")
            .expect("url")
            .with_tls(TlsFiles {
                ca: None,
                cert: Some("/x.pem".into()),
                key: None,
            });
        // Either the system roots are missing or the half certificate is refused; never Ok.
        assert!(half.validate().is_err());
        let missing = BrokerSettings::new("mqtts://h")
            .expect("url")
            .with_tls(TlsFiles {
                ca: Some("/nonexistent/ca.pem".into()),
                ..TlsFiles::default()
            });
        let e = missing.validate().expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
