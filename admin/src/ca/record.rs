//! `issued.toml`, the CA folder's record of client certificates, and their serial numbers.
//!
//! ```toml
//! crl_number = 2                  # the number of the last CRL written
//! crl_url = "http://ca.example/crl.pem"   # where brokers fetch crl.pem (absent: nowhere named)
//!
//! [[cert]]
//! serial = "52ed2e21a74088d59a245efc5134e410"   # lower-case hex, no leading zero byte
//! device = "g1"                   # the CN
//! issued = "2026-12-07T03:07:59Z" # absent for a certificate made elsewhere
//! not_after = "2029-03-11T03:07:59Z"
//! revoked = "2026-12-08T10:00:00Z"
//! reason = "key-compromise"
//! ```

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::AdminError;

use super::DATABASE;

/// Why a certificate is revoked, as the CRL says it (RFC 5280 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The device or its key was stolen or copied.
    KeyCompromise,
    /// A new certificate replaces it; the old key is not known to be compromised.
    Superseded,
    /// The device is taken out of service.
    CessationOfOperation,
    /// The device moved to another operator or site.
    AffiliationChanged,
    /// No reason given.
    Unspecified,
}

impl Reason {
    pub(super) fn code(self) -> rcgen::RevocationReason {
        match self {
            Self::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            Self::Superseded => rcgen::RevocationReason::Superseded,
            Self::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            Self::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            Self::Unspecified => rcgen::RevocationReason::Unspecified,
        }
    }
}

/// One certificate in `issued.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// The device id, its CN.
    pub device: String,
    /// When it was issued (absent for a certificate made elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<Timestamp>,
    /// Its end of validity; once past, it leaves the CRL (absent: it stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Timestamp>,
    /// Why it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// The contents of `issued.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The number of the last CRL written (0: none yet); each new CRL has the next.
    pub crl_number: u64,
    /// The CRL distribution point: the HTTP URL where `crl.pem` is served. Certificates issued
    /// while it is set name it, and the CRL names it as its issuing distribution point, as EMQX
    /// needs to check revocation (it fetches the CRL from there). Set by the first
    /// `cert issue --crl-url`, then kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_url: Option<String>,
    /// Every certificate on record, in the order they were added.
    #[serde(default, rename = "cert")]
    pub certs: Vec<Record>,
}

/// Lower-case hex of a serial's bytes without leading zero bytes ("00" for zero).
pub(super) fn canonical_serial(bytes: &[u8]) -> String {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if trimmed.is_empty() {
        return "00".to_owned();
    }
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

/// A serial as an operator types it (`1A:2B…`, `serial=1A2B…`, any case) in canonical form.
pub fn parse_serial(given: &str) -> Result<String, AdminError> {
    let bad = |why: &str| AdminError::Serial {
        serial: given.to_owned(),
        why: why.to_owned(),
    };
    let text = given.trim();
    let text = text.strip_prefix("serial=").unwrap_or(text);
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(
            "expected 1-20 bytes in hex, as `openssl x509 -serial` prints",
        ));
    }
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    let bytes = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad("not hex"))?;
    Ok(canonical_serial(&bytes))
}

pub(super) fn serial_bytes(serial: &str) -> Result<Vec<u8>, AdminError> {
    (0..serial.len())
        .step_by(2)
        .map(|i| {
            serial
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| AdminError::Serial {
            serial: serial.to_owned(),
            why: format!("not canonical hex in {DATABASE}"),
        })
}

/// A fresh random serial: 16 bytes from the system's generator, positive and without a
/// leading zero byte (126 random bits).
pub(super) fn random_serial() -> Result<String, AdminError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| AdminError::Random(e.to_string()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(canonical_serial(&bytes))
}
