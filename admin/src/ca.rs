//! Devices' client certificates and the CRL that revokes them, kept with the CA of
//! `docker/make-certs.sh` (`tapgate-admin cert issue | revoke | crl | list`).
//!
//! The CA folder holds `ca.crt` and `ca.key` as make-certs.sh writes them (the key as
//! unencrypted PKCS#8, `BEGIN PRIVATE KEY`, RSA or ECDSA), and this module adds two files:
//!
//! - `issued.toml`, the record of every certificate issued here, and of those made elsewhere that
//!   were revoked here: serial (hex), device, when it was issued and until when it is valid, and
//!   when and why it was revoked; plus the number of the last CRL. It is the source of the CRL:
//!   `crl.pem` can always be made again from it.
//! - `crl.pem`, the CRL signed by the CA, listing every revoked certificate that has not yet
//!   expired, valid for [`CRL_DAYS`] days. The broker reads it (`crlfile` in
//!   mosquitto/tls.conf); it must be signed again before it expires (`cert crl`, from cron).
//!
//! With a CRL URL (`cert issue --crl-url`, then kept in `issued.toml`), every certificate issued
//! names it as its CRL distribution point and every CRL names it as its issuing distribution
//! point: EMQX checks revocation only so, fetching `crl.pem` from that URL (its
//! `enable_crl_check`); mosquitto reads the same file from disk.
//!
//! Every file is written to a temporary name and renamed, so a reader sees the old file or the
//! new one, never half of one; `issued.toml` is written before the CRL made from it. A command
//! that writes holds the folder's lock ([`LOCK`]) from before it reads `issued.toml` until its
//! last file is written, so two at once, run by two operators or by an operator and cron, never
//! lose each other's changes.
//!
//! Here: the CA and what it signs ([`Ca`]) and the `cert` commands ([`issue_files`],
//! [`publish_crl`]); `record`: `issued.toml` and serial numbers; `files`: reading certificates
//! and writing files whole; `lock`: the folder's lock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    CertificateParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope, DnType,
    ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use tapgate_protocol::DeviceId;

use crate::{policy, AdminError};

mod files;
mod lock;
mod record;

pub use files::write_atomic;
use files::{file_error, read, read_cert};
pub use lock::FolderLock;
pub use record::{parse_serial, Database, Reason, Record};
use record::{random_serial, serial_bytes};

/// The CA's certificate in the CA folder.
pub const CA_CERT: &str = "ca.crt";
/// The CA's private key in the CA folder.
pub const CA_KEY: &str = "ca.key";
/// The record of issued and revoked certificates in the CA folder.
pub const DATABASE: &str = "issued.toml";
/// The CRL in the CA folder.
pub const CRL: &str = "crl.pem";
/// The lock file in the CA folder, held (`flock`) by each command that writes.
pub const LOCK: &str = "issued.toml.lock";
/// How long a command that writes waits for another to release the folder's lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long a device certificate is valid, as docker/make-certs.sh makes them.
pub const CERT_DAYS: u32 = 825;
/// How long a CRL is valid: `cert crl` must run before then (weekly from cron leaves three weeks
/// of slack). A broker given an expired CRL refuses every client certificate.
pub const CRL_DAYS: u32 = 30;

/// The longest CRL URL accepted: a certificate carries it, and devices have little memory.
pub const CRL_URL_MAX: usize = 512;

/// Checks a CRL distribution point URL: `http://` or `https://`, a host, printable ASCII without
/// spaces (an X.509 URI is an IA5String), at most [`CRL_URL_MAX`] bytes.
pub fn check_crl_url(url: &str) -> Result<&str, AdminError> {
    let bad = |why: &str| AdminError::CrlUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            bad(
                "must start with http:// (brokers fetch the CRL over HTTP; it is signed, so \
                 plain HTTP is enough)",
            )
        })?;
    if url.len() > CRL_URL_MAX {
        return Err(bad(&format!("longer than {CRL_URL_MAX} bytes")));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "only printable ASCII without spaces (percent-encode anything else)",
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err(bad("names no host (or names a user)"));
    }
    Ok(url)
}

/// Which certificates of a device `revoke` puts on the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every certificate on record for the device that is not revoked yet.
    All,
    /// One serial number (hex, `:` allowed), on record or made elsewhere.
    Serial(String),
    /// The certificate in this PEM file (e.g. one docker/make-certs.sh made).
    File(PathBuf),
}

/// A new certificate and its key, in PEM. The key is a secret: it goes to a file, never to a
/// terminal.
pub struct Issued {
    /// Serial number, as in `issued.toml`.
    pub serial: String,
    /// Its end of validity.
    pub not_after: Timestamp,
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct Crl {
    /// The CRL in PEM.
    pub pem: String,
    /// Its number.
    pub number: u64,
    /// How many certificates it lists.
    pub listed: usize,
    /// Until when it is valid.
    pub next_update: Timestamp,
}

/// The CA of one folder, with its record.
pub struct Ca {
    dir: PathBuf,
    /// The CA as an issuer: the subject, key identifier and key usages of `ca.crt`.
    issuer: rcgen::Certificate,
    key: KeyPair,
    /// The DER of `ca.crt`'s subject, to recognise certificates it issued.
    subject: Vec<u8>,
    /// The record, as read or as changed since.
    pub db: Database,
    /// The folder's lock, when opened to write ([`Ca::open_locked`]).
    lock: Option<FolderLock>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("db", &self.db)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

fn sign_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> AdminError {
    move |e| AdminError::Sign {
        what,
        why: e.to_string(),
    }
}

fn to_time(t: Timestamp) -> Result<time::OffsetDateTime, AdminError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|e| AdminError::Sign {
        what: "a date",
        why: e.to_string(),
    })
}

/// `t` without its fraction of a second, as the record and certificates keep times.
fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// `issued.toml` in `dir`, or an empty record if there is none yet.
fn read_database(dir: &Path) -> Result<Database, AdminError> {
    let path = dir.join(DATABASE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| file_error(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Database::default()),
        Err(e) => Err(file_error(&path, e)),
    }
}

fn days(n: u32) -> SignedDuration {
    SignedDuration::from_hours(24 * i64::from(n))
}

/// Checks a device id as `device add` does: the protocol's rule, and not in the services'
/// namespace.
pub fn check_device(id: &str) -> Result<DeviceId, AdminError> {
    let id = DeviceId::new(id)?;
    policy::check_device_id(&id)?;
    Ok(id)
}

impl Ca {
    /// Reads the CA folder as [`Ca::open`] does, then takes its lock (waiting up to `wait` for
    /// another command to release it) and reads `issued.toml` again, as that one left it. The
    /// lock is held until the `Ca` is dropped; only a `Ca` opened so can [`Ca::save`]. A folder
    /// that is not a CA's gets no lock file.
    pub fn open_locked(dir: &Path, wait: Duration) -> Result<Self, AdminError> {
        let mut ca = Self::open(dir)?;
        let lock = FolderLock::acquire(dir, wait)?;
        ca.db = read_database(dir)?;
        ca.lock = Some(lock);
        Ok(ca)
    }

    /// Reads the CA folder: `ca.crt`, `ca.key` (which must belong together) and `issued.toml`
    /// if it exists. For reading only: [`Ca::open_locked`] to write.
    pub fn open(dir: &Path) -> Result<Self, AdminError> {
        if !dir.is_dir() {
            return Err(file_error(
                dir,
                "not a folder; give the one docker/make-certs.sh wrote ca.crt and ca.key to",
            ));
        }
        let cert_path = dir.join(CA_CERT);
        let (info, cert_pem) = read_cert(&cert_path)?;
        let key_path = dir.join(CA_KEY);
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| {
            file_error(
                &key_path,
                format!(
                    "{e}: expected an unencrypted PKCS#8 key (BEGIN PRIVATE KEY); convert one \
                     with `openssl pkcs8 -topk8 -nocrypt -in ca.key -out ca.pk8`"
                ),
            )
        })?;
        if key.public_key_der() != info.spki {
            return Err(file_error(
                &key_path,
                format!("is not the key of {CA_CERT}"),
            ));
        }
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(|e| file_error(&cert_path, e))?;
        let issuer = params
            .self_signed(&key)
            .map_err(sign_error("the CA as issuer"))?;
        let db = read_database(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            issuer,
            key,
            subject: info.subject,
            db,
            lock: None,
        })
    }

    /// The CA folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the CRL URL that certificates issued from now on and every CRL name. The first URL
    /// is kept: certificates already issued name it, so another is refused (the CRL could name
    /// only one of them). Call [`Ca::save`] to keep it.
    pub fn set_crl_url(&mut self, url: &str) -> Result<(), AdminError> {
        let url = check_crl_url(url)?;
        match &self.db.crl_url {
            None => {
                self.db.crl_url = Some(url.to_owned());
                Ok(())
            }
            Some(kept) if kept == url => Ok(()),
            Some(kept) => Err(AdminError::CrlUrl {
                url: url.to_owned(),
                why: format!(
                    "this CA's certificates already name {kept:?} (crl_url in {DATABASE}); \
                     serve crl.pem there too, or leave --crl-url out"
                ),
            }),
        }
    }

    /// The CRL URL certificates and CRLs name, if any.
    pub fn crl_url(&self) -> Option<&str> {
        self.db.crl_url.as_deref()
    }

    /// A new key and certificate for `device` (CN = its id, for client authentication), valid
    /// `valid_days` from `now`, recorded with a fresh serial. Call [`Ca::save`] to keep the
    /// record.
    pub fn issue(
        &mut self,
        device: &DeviceId,
        now: Timestamp,
        valid_days: u32,
    ) -> Result<Issued, AdminError> {
        policy::check_device_id(device)?;
        let now = whole_second(now);
        let serial = loop {
            let s = random_serial()?;
            if !self.db.certs.iter().any(|c| c.serial == s) {
                break s;
            }
        };
        let not_after = now
            .checked_add(days(valid_days))
            .map_err(|e| AdminError::Sign {
                what: "a date",
                why: e.to_string(),
            })?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(sign_error("a certificate"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, device.as_str());
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial_bytes(&serial)?));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.db.crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        // A few minutes back, for devices whose clock runs a little behind.
        params.not_before = to_time(now - SignedDuration::from_mins(5))?;
        params.not_after = to_time(not_after)?;
        let key = KeyPair::generate().map_err(sign_error("a device key"))?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(sign_error("a certificate"))?;
        self.db.certs.push(Record {
            serial: serial.clone(),
            device: device.as_str().to_owned(),
            issued: Some(now),
            not_after: Some(not_after),
            revoked: None,
            reason: None,
        });
        Ok(Issued {
            serial,
            not_after,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Marks `device`'s certificates named by `target` revoked at `now`; returns their serials.
    /// Nothing changes when it fails. Call [`Ca::crl`] and [`Ca::save`] to publish it.
    pub fn revoke(
        &mut self,
        device: &DeviceId,
        target: &Target,
        reason: Reason,
        now: Timestamp,
    ) -> Result<Vec<String>, AdminError> {
        policy::check_device_id(device)?;
        let now = whole_second(now);
        let (serial, not_after) = match target {
            Target::All => return self.revoke_all(device, reason, now),
            Target::Serial(given) => (parse_serial(given)?, None),
            Target::File(path) => self.issued_to(device, path)?,
        };
        match self.db.certs.iter_mut().find(|c| c.serial == serial) {
            Some(c) if c.device != device.as_str() => Err(AdminError::Serial {
                serial,
                why: format!(
                    "is {:?}'s certificate, not {:?}'s",
                    c.device,
                    device.as_str()
                ),
            }),
            Some(c) if c.revoked.is_some() => Err(nothing_to_revoke(
                device,
                format!("certificate {serial} is already revoked"),
            )),
            Some(c) => {
                c.revoked = Some(now);
                c.reason = Some(reason);
                Ok(vec![serial])
            }
            None => {
                self.db.certs.push(Record {
                    serial: serial.clone(),
                    device: device.as_str().to_owned(),
                    issued: None,
                    not_after,
                    revoked: Some(now),
                    reason: Some(reason),
                });
                Ok(vec![serial])
            }
        }
    }

    /// Revokes every certificate on record for `device` not revoked yet; refused when there is
    /// none, saying whether the device is unknown here or already fully revoked.
    fn revoke_all(
        &mut self,
        device: &DeviceId,
        reason: Reason,
        now: Timestamp,
    ) -> Result<Vec<String>, AdminError> {
        let mut done = Vec::new();
        for c in self.db.certs.iter_mut() {
            if c.device == device.as_str() && c.revoked.is_none() {
                c.revoked = Some(now);
                c.reason = Some(reason);
                done.push(c.serial.clone());
            }
        }
        if !done.is_empty() {
            return Ok(done);
        }
        let known = self.db.certs.iter().any(|c| c.device == device.as_str());
        Err(nothing_to_revoke(
            device,
            if known {
                "every certificate on record for it is already revoked".to_owned()
            } else {
                format!(
                    "no certificate issued to it is on record in {}; for one made \
                     elsewhere give --cert FILE or --serial HEX",
                    self.dir.join(DATABASE).display()
                )
            },
        ))
    }

    /// The serial and expiry of the certificate in `path`, checked to be this CA's and
    /// `device`'s.
    fn issued_to(
        &self,
        device: &DeviceId,
        path: &Path,
    ) -> Result<(String, Option<Timestamp>), AdminError> {
        let (info, _) = read_cert(path)?;
        if info.issuer != self.subject {
            return Err(file_error(path, format!("was not issued by {CA_CERT}")));
        }
        if info.cn.as_deref() != Some(device.as_str()) {
            return Err(file_error(
                path,
                format!("its CN is {:?}, not the device's id", info.cn),
            ));
        }
        Ok((info.serial, info.not_after))
    }

    /// The certificates on record that are neither revoked nor expired at `now`.
    pub fn listed_valid(&self, now: Timestamp) -> impl Iterator<Item = &Record> {
        self.db
            .certs
            .iter()
            .filter(move |c| c.revoked.is_none() && c.not_after.is_none_or(|n| n >= now))
    }

    /// The revoked certificates on record that have not expired at `now`: what the CRL lists.
    pub fn listed(&self, now: Timestamp) -> impl Iterator<Item = &Record> {
        self.db
            .certs
            .iter()
            .filter(move |c| c.revoked.is_some() && c.not_after.is_none_or(|n| n >= now))
    }

    /// A new CRL, numbered one past the last, valid `valid_days` from `now`, listing
    /// [`Ca::listed`]. Call [`Ca::publish`] to write it with the record.
    pub fn crl(&mut self, now: Timestamp, valid_days: u32) -> Result<Crl, AdminError> {
        let mut revoked = Vec::new();
        for c in self.listed(now) {
            revoked.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&serial_bytes(&c.serial)?),
                revocation_time: to_time(c.revoked.unwrap_or(now))?,
                reason_code: c.reason.map(Reason::code),
                invalidity_date: None,
            });
        }
        let listed = revoked.len();
        let number = self.db.crl_number.checked_add(1).ok_or(AdminError::Sign {
            what: "the CRL",
            why: "its number overflows".to_owned(),
        })?;
        let next_update =
            now.checked_add(days(valid_days.max(1)))
                .map_err(|e| AdminError::Sign {
                    what: "the CRL",
                    why: e.to_string(),
                })?;
        let params = rcgen::CertificateRevocationListParams {
            this_update: to_time(now)?,
            next_update: to_time(next_update)?,
            crl_number: rcgen::SerialNumber::from(number),
            // EMQX enforces only a CRL that names where it is served, the URL its certificates
            // name; it lists device certificates only.
            issuing_distribution_point: self.db.crl_url.as_ref().map(|url| {
                CrlIssuingDistributionPoint {
                    distribution_point: CrlDistributionPoint {
                        uris: vec![url.clone()],
                    },
                    scope: Some(CrlScope::UserCertsOnly),
                }
            }),
            revoked_certs: revoked,
            // The CRL names the CA by ca.crt's own key identifier, as its certificates do.
            key_identifier_method: self.issuer.params().key_identifier_method.clone(),
        };
        let pem = params
            .signed_by(&self.issuer, &self.key)
            .map_err(sign_error("the CRL"))?
            .pem()
            .map_err(sign_error("the CRL"))?;
        self.db.crl_number = number;
        Ok(Crl {
            pem,
            number,
            listed,
            next_update,
        })
    }

    /// Writes `issued.toml`; only with the folder's lock held ([`Ca::open_locked`]), since
    /// what it writes replaces whatever another command wrote after this one read it.
    pub fn save(&self) -> Result<(), AdminError> {
        let path = self.dir.join(DATABASE);
        if self.lock.is_none() {
            return Err(file_error(
                &path,
                format!("not written: the CA was opened without the lock {LOCK}"),
            ));
        }
        let body = toml::to_string(&self.db).map_err(|e| file_error(&path, e))?;
        let text = format!(
            "# tapgate-admin's record of the client certificates of this CA: those it issued, and\n\
             # those revoked with it. `tapgate-admin cert crl` makes crl.pem from it again.\n{body}"
        );
        write_atomic(&path, &text, false)
    }

    /// Saves the record, then writes the CRL made from it as `crl.pem`.
    pub fn publish(&self, crl: &Crl) -> Result<PathBuf, AdminError> {
        self.save()?;
        let path = self.dir.join(CRL);
        write_atomic(&path, &crl.pem, false)?;
        Ok(path)
    }

    /// Whether a certificate file holds a serial on record (so replacing it loses nothing).
    pub fn on_record(&self, cert: &Path) -> Result<bool, AdminError> {
        let (info, _) = read_cert(cert)?;
        Ok(self.db.certs.iter().any(|c| c.serial == info.serial))
    }
}

/// What `cert issue` wrote.
#[derive(Debug)]
pub struct IssuedFiles {
    /// The new certificate's serial.
    pub serial: String,
    /// Its end of validity.
    pub not_after: Timestamp,
    /// `<id>.crt`.
    pub cert: PathBuf,
    /// `<id>.key`, readable by its owner only.
    pub key: PathBuf,
    /// The CRL distribution point the certificate names, if any.
    pub crl_url: Option<String>,
    /// When this command set the CRL URL: the certificates on record, valid and not revoked,
    /// issued before it ("device (serial ...)"). They name no distribution point, so once the
    /// CRL names one (the next `cert crl` or `cert revoke`) both brokers refuse them (OpenSSL:
    /// "different CRL scope"): issue them again.
    pub older: Vec<String>,
}

/// `cert issue`: a new key and certificate for `device` from the CA in `ca_dir`, written as
/// `<id>.crt` and `<id>.key` in `out` (the CA folder when `None`). The record is saved first,
/// so no certificate exists that the record does not know. An `<id>.crt` already there that is
/// not on record (one docker/make-certs.sh made) is not replaced: revoke it first (`--cert`)
/// or move it away. `crl_url`, if given, is checked and kept ([`Ca::set_crl_url`]) before the
/// certificate is made. Waits up to `lock_wait` for the folder's lock.
pub fn issue_files(
    ca_dir: &Path,
    device: &str,
    out: Option<&Path>,
    crl_url: Option<&str>,
    now: Timestamp,
    valid_days: u32,
    lock_wait: Duration,
) -> Result<IssuedFiles, AdminError> {
    let id = check_device(device)?;
    if let Some(url) = crl_url {
        check_crl_url(url)?;
    }
    let mut ca = Ca::open_locked(ca_dir, lock_wait)?;
    let mut older = Vec::new();
    if let Some(url) = crl_url {
        if ca.db.crl_url.is_none() {
            older = ca
                .listed_valid(now)
                .map(|c| format!("{} (serial {})", c.device, c.serial))
                .collect();
        }
        ca.set_crl_url(url)?;
    }
    let out = out.unwrap_or(ca_dir);
    let cert = out.join(format!("{id}.crt"));
    let key = out.join(format!("{id}.key"));
    if cert.exists() && !ca.on_record(&cert)? {
        return Err(file_error(
            &cert,
            format!(
                "exists and is not on record in {DATABASE}; revoke it first \
                 (`cert revoke {id} --cert {}`) or move it away",
                cert.display()
            ),
        ));
    }
    let issued = ca.issue(&id, now, valid_days)?;
    ca.save()?;
    write_atomic(&key, &issued.key_pem, true)?;
    write_atomic(&cert, &issued.cert_pem, false)?;
    Ok(IssuedFiles {
        serial: issued.serial,
        not_after: issued.not_after,
        cert,
        key,
        crl_url: ca.db.crl_url.clone(),
        older,
    })
}

/// What `cert revoke` and `cert crl` published.
#[derive(Debug)]
pub struct Published {
    /// The serials revoked by this command (none for `cert crl`).
    pub revoked: Vec<String>,
    /// The CRL written.
    pub crl: Crl,
    /// `crl.pem`.
    pub path: PathBuf,
    /// Where brokers fetch it (its issuing distribution point), if the CA folder has a CRL URL.
    pub crl_url: Option<String>,
}

/// `cert revoke` (with a target) or `cert crl` (without): records the revocation, then signs
/// and writes a new `crl.pem` valid `crl_days` days. Nothing is written when it fails. Waits
/// up to `lock_wait` for the folder's lock.
pub fn publish_crl(
    ca_dir: &Path,
    revoke: Option<(&str, &Target, Reason)>,
    now: Timestamp,
    crl_days: u32,
    lock_wait: Duration,
) -> Result<Published, AdminError> {
    let checked = match revoke {
        Some((device, target, reason)) => Some((check_device(device)?, target, reason)),
        None => None,
    };
    let mut ca = Ca::open_locked(ca_dir, lock_wait)?;
    let revoked = match checked {
        Some((id, target, reason)) => ca.revoke(&id, target, reason, now)?,
        None => Vec::new(),
    };
    let crl = ca.crl(now, crl_days)?;
    let path = ca.publish(&crl)?;
    Ok(Published {
        revoked,
        crl,
        path,
        crl_url: ca.db.crl_url.clone(),
    })
}

/// Nothing of `device`'s to revoke, and why.
fn nothing_to_revoke(device: &DeviceId, why: String) -> AdminError {
    AdminError::NothingToRevoke {
        device: device.as_str().to_owned(),
        why,
    }
}

#[cfg(test)]
mod tests;
