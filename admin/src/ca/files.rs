//! The CA folder's files: reading certificates, writing through a temporary file.

use std::io::Write;
use std::path::Path;

use jiff::Timestamp;

use crate::AdminError;

use super::record::canonical_serial;

pub(super) fn file_error(path: &Path, why: impl std::fmt::Display) -> AdminError {
    AdminError::CaFile {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

pub(super) fn read(path: &Path) -> Result<String, AdminError> {
    std::fs::read_to_string(path).map_err(|e| file_error(path, e))
}

/// The one certificate of a PEM file.
pub(super) fn parse_cert(path: &Path, pem: &x509_parser::pem::Pem) -> Result<CertInfo, AdminError> {
    let cert = pem
        .parse_x509()
        .map_err(|e| file_error(path, format!("not an X.509 certificate: {e}")))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        serial: canonical_serial(cert.raw_serial()),
        cn,
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        spki: cert.public_key().raw.to_vec(),
        not_after: Timestamp::from_second(cert.validity().not_after.timestamp()).ok(),
    })
}

/// What this module needs of a certificate file.
pub(super) struct CertInfo {
    pub(super) serial: String,
    pub(super) cn: Option<String>,
    pub(super) subject: Vec<u8>,
    pub(super) issuer: Vec<u8>,
    pub(super) spki: Vec<u8>,
    pub(super) not_after: Option<Timestamp>,
}

pub(super) fn read_cert(path: &Path) -> Result<(CertInfo, String), AdminError> {
    let text = read(path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map_err(|e| file_error(path, format!("no PEM certificate: {e}")))?;
    Ok((parse_cert(path, &pem)?, text))
}

/// Writes `path` through a temporary file in the same folder and a rename; `private` makes it
/// readable by its owner only.
pub fn write_atomic(path: &Path, contents: &str, private: bool) -> Result<(), AdminError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| file_error(path, "not a file name"))?;
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_error(path, e));
    }
    Ok(())
}
