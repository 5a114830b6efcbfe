//! The one error type of the library.

use crate::policy::LoginKind;

/// Why a provisioning step failed. Each variant says what to change.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A setting is missing or unusable.
    #[error("setting {field}: {why}")]
    Settings {
        /// The setting's name.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The settings could not be read.
    #[error("reading settings: {0}")]
    Config(#[from] config::ConfigError),
    /// The device id breaks the protocol's rule.
    #[error("bad device id: {0}")]
    DeviceId(#[from] tapgate_protocol::IdError),
    /// The device id is one a service or the broker's administrator uses, or could.
    #[error(
        "device id {id:?} is reserved for tapgate's services and the broker's administrator \
         (admin, tapgate, tapgate-*, tapgate_*, in any case); choose another"
    )]
    ReservedDeviceId {
        /// The id asked for.
        id: String,
    },
    /// A service login name is unusable.
    #[error("bad service name {name:?}: {why}")]
    ServiceName {
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A password given on the command line is unusable.
    #[error("bad password: {0}")]
    Password(&'static str),
    /// The system could not supply random bytes.
    #[error("no randomness for a password: {0}")]
    Random(String),
    /// No such login.
    #[error("no login {username:?} in the broker")]
    NotFound {
        /// The username asked for.
        username: String,
    },
    /// The login exists but is of another kind.
    #[error("{username:?} is a {is} login, not a {expected}")]
    WrongKind {
        username: String,
        /// What it is.
        is: LoginKind,
        /// What the command was for.
        expected: &'static str,
    },
    /// The login already exists.
    #[error("{username:?} already exists in the broker; remove it first to change it")]
    Exists { username: String },
    /// The broker could not be reached or the connection broke.
    #[error("broker at {address}: {why}")]
    Connect { address: String, why: String },
    /// The broker did not answer in time.
    #[error("the broker did not answer {what} within {secs} s")]
    Timeout {
        what: String,
        /// The timeout in seconds.
        secs: u64,
    },
    /// The broker refused a command; its own message is kept.
    #[error("the broker refused {command}: {message}")]
    Refused {
        /// The command or request.
        command: String,
        /// The broker's message.
        message: String,
    },
    /// The broker answered something this tool cannot read.
    #[error("unexpected answer to {command}: {why}")]
    Protocol {
        /// The command or request.
        command: String,
        /// What was wrong with the answer.
        why: String,
    },
    /// A file of the CA folder is missing, unreadable or not what it should be.
    #[error("CA folder: {path}: {why}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, and what to do.
        why: String,
    },
    /// Another command that writes to the CA folder held its lock for longer than the wait.
    #[error(
        "CA folder: {path}: another `tapgate-admin cert` command holds this lock, still after \
         {waited:?}; run this one again when it has finished (or give a longer --lock-wait)"
    )]
    CaLocked {
        /// The lock file.
        path: std::path::PathBuf,
        /// How long this command waited.
        waited: std::time::Duration,
    },
    /// A certificate or CRL could not be made or signed.
    #[error("signing {what}: {why}")]
    Sign {
        /// What was being made.
        what: &'static str,
        /// The signer's message.
        why: String,
    },
    /// Nothing issued to the device is on record, or all of it is already revoked.
    #[error("{device:?}: {why}")]
    NothingToRevoke {
        /// The device id asked for.
        device: String,
        /// Why nothing is revoked, and what to give instead.
        why: String,
    },
    /// A serial number given on the command line is unusable, or names another device's
    /// certificate.
    #[error("serial {serial:?}: {why}")]
    Serial {
        /// The serial as given.
        serial: String,
        /// What is wrong.
        why: String,
    },
    /// A CRL distribution point URL that cannot be used, or that differs from the one the CA
    /// folder's certificates already name.
    #[error("CRL URL {url:?}: {why}")]
    CrlUrl {
        /// The URL as given.
        url: String,
        /// What is wrong, and what to do.
        why: String,
    },
}
