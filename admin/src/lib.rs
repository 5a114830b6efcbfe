//! Provisioning of tapgate's broker logins.
//!
//! Every device logs in with its own username, equal to its device id and to its MQTT client id,
//! and may only publish its own kind's messages under its own id and read its own decisions. The
//! bridges and the monitor have logins that do their job only. This crate creates, lists and
//! revokes those logins in the broker in use, issues and revokes devices' client certificates,
//! and replaces a rider's lost card:
//!
//! - [`policy`]: who may publish and subscribe to what, from the protocol's [`Topics`]; the one
//!   description both backends turn into broker rules.
//! - [`secret`]: generated passwords, and the checks on passwords an operator chooses.
//! - [`settings`]: the admin's own settings (which broker, where, the admin credential).
//! - [`dynsec`]: mosquitto's dynamic-security plugin, driven over MQTT (`$CONTROL`).
//! - [`emqx`]: EMQX's HTTP API v5 (built-in authentication database and authorization rules).
//! - [`output`]: the settings printed for a new device, as TOML.
//! - [`ca`]: devices' client certificates, signed by the site's CA, and the CRL the broker
//!   checks them against (`tapgate-admin cert issue | revoke | crl | list`).
//! - [`card`]: replacing a lost card by a new one on Redis (`tapgate-admin card replace`), with
//!   the dashboard's own script.
//!
//! [`Topics`]: tapgate_protocol::Topics

pub mod ca;
pub mod card;
pub mod dynsec;
pub mod emqx;
mod error;
mod http;
pub mod output;
pub mod policy;
pub mod secret;
pub mod settings;

pub use error::AdminError;
pub use policy::{LoginKind, Rule, ServiceRole};
pub use settings::{Backend, Settings};

use tapgate_protocol::{DeviceId, DeviceKind};

/// One login the broker knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Username (for a device: its id).
    pub username: String,
    /// What it is, from its roles or rules.
    pub kind: LoginKind,
}

/// The broker in use.
#[derive(Debug)]
pub enum Broker {
    /// mosquitto with the dynamic-security plugin (boxed: it holds the MQTT event loop).
    Mosquitto(Box<dynsec::Dynsec>),
    /// EMQX 5.
    Emqx(emqx::Emqx),
}

impl Broker {
    /// Connects to the broker named by `settings`.
    pub async fn connect(settings: &Settings) -> Result<Self, AdminError> {
        let topics = settings.prefix.clone();
        match settings.backend {
            Backend::Mosquitto => Ok(Self::Mosquitto(Box::new(
                dynsec::Dynsec::connect(settings, topics).await?,
            ))),
            Backend::Emqx => Ok(Self::Emqx(emqx::Emqx::new(settings, topics)?)),
        }
    }

    /// Creates a device's login, bound to its id and kind; an id in the services' namespace is
    /// refused ([`policy::check_device_id`]).
    pub async fn add_device(
        &mut self,
        id: &DeviceId,
        kind: DeviceKind,
        password: &str,
    ) -> Result<(), AdminError> {
        policy::check_device_id(id)?;
        match self {
            Self::Mosquitto(b) => b.add_device(id, kind, password).await,
            Self::Emqx(b) => b.add_device(id, kind, password).await,
        }
    }

    /// Creates the login of a bridge or the monitor; its client id must equal `name`.
    pub async fn add_service(
        &mut self,
        name: &str,
        role: ServiceRole,
        password: &str,
    ) -> Result<(), AdminError> {
        policy::check_service_name(name)?;
        match self {
            Self::Mosquitto(b) => b.add_service(name, role, password).await,
            Self::Emqx(b) => b.add_service(name, role, password).await,
        }
    }

    /// Deletes a login and disconnects it if it is connected. `expect` says which kind of
    /// login the caller means, so `device remove bridge-1` is refused.
    pub async fn remove(&mut self, username: &str, expect: Expect) -> Result<(), AdminError> {
        let logins = self.list().await?;
        let found = logins.iter().find(|l| l.username == username);
        match (found, expect) {
            (None, _) => {
                return Err(AdminError::NotFound {
                    username: username.to_owned(),
                })
            }
            (Some(l), Expect::Device) if !l.kind.is_device() => {
                return Err(AdminError::WrongKind {
                    username: username.to_owned(),
                    is: l.kind,
                    expected: "device",
                })
            }
            (Some(l), Expect::Service) if !l.kind.is_service() => {
                return Err(AdminError::WrongKind {
                    username: username.to_owned(),
                    is: l.kind,
                    expected: "service",
                })
            }
            _ => {}
        }
        match self {
            Self::Mosquitto(b) => b.remove(username).await,
            Self::Emqx(b) => b.remove(username).await,
        }
    }

    /// Every login, sorted by username.
    pub async fn list(&mut self) -> Result<Vec<Login>, AdminError> {
        let mut out = match self {
            Self::Mosquitto(b) => b.list().await?,
            Self::Emqx(b) => b.list().await?,
        };
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    /// Closes the connection to the broker, if there is one.
    pub async fn close(self) {
        if let Self::Mosquitto(b) = self {
            (*b).close().await;
        }
    }
}

/// Which kind of login a removal is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A gate or a terminal.
    Device,
    /// A bridge or the monitor.
    Service,
}
