//! The server secret sessions are bound to.
//!
//! A session token travels only in the browser's cookie. Redis holds the session under its id, a
//! MAC of the token under this key, and the CSRF token is another MAC of the token, made when a
//! request needs it and never stored. Whoever reads Redis, or only lists its key names with
//! `SCAN` (key patterns in a Redis ACL do not confine `SCAN`), finds ids that cannot be turned
//! back into a token and cannot make a CSRF token: both need this key.
//!
//! The MAC is BLAKE2b in its keyed mode (`Blake2bMac`, RFC 7693 section 2.5) with a 256-bit
//! output: a PRF by design, the key in BLAKE2b's parameter block rather than glued to the
//! message, and the same crate the login form's tokens and the credential fingerprints already
//! use, so no second hash family (HMAC-SHA256 would need `hmac` and `sha2`) is built in. The
//! personalisation `tapgate session` keeps these MACs apart from any other use of a BLAKE2b
//! key, and each use is labelled (`session`, `csrf`, NUL-terminated) before the fixed-length
//! token.
//!
//! The key comes from `session_key_file`, which holds 64 hex digits (32 bytes). A named file that
//! does not exist is created with a random key, readable by its owner only, so sessions outlive
//! a restart; a file that cannot be read or holds anything else stops start-up, naming the file.
//! Without the setting a random key is drawn for each process, and every session ends when the
//! monitor restarts.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use blake2::digest::consts::U32;
use blake2::digest::Mac;
use blake2::Blake2bMac;

use super::session::hex;

/// Bytes in a session key.
pub(super) const KEY_LEN: usize = 32;

/// BLAKE2b's personalisation for session MACs (at most 16 bytes).
const PERSONA: &[u8] = b"tapgate session";

type Blake2bMac256 = Blake2bMac<U32>;

/// The key session ids and CSRF tokens are made with.
#[derive(Clone)]
pub struct SessionKey {
    /// BLAKE2b, keyed and personalised, before any input: cloned for each MAC.
    mac: Blake2bMac256,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// Where the key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Read from this file.
    Read(PathBuf),
    /// This file did not exist; it was created with a new random key.
    Created(PathBuf),
    /// No file was named: a random key for this process only.
    Random,
}

/// Why the session key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    /// The file exists but cannot be read.
    #[error("session_key_file {}: cannot read it: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not exist and cannot be created.
    #[error(
        "session_key_file {}: it does not exist and cannot be created: {source}",
        path.display()
    )]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds something other than a key.
    #[error(
        "session_key_file {}: {why}; it must hold 64 hex digits (32 bytes), as the monitor \
         writes when the file does not exist (removing it makes a new key and ends every session)",
        path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        why: String,
    },
    /// The system gave no random bytes.
    #[error("no randomness for a session key: {0}")]
    Random(String),
    /// BLAKE2b refused the key.
    #[error("session key: {0}")]
    Mac(String),
}

impl SessionKey {
    /// The key of these bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, SessionKeyError> {
        // Within BLAKE2b's limits (key 64, salt and personalisation 16 bytes), so never refused.
        Blake2bMac256::new_with_salt_and_personal(Some(bytes), &[], PERSONA)
            .map(|mac| Self { mac })
            .map_err(|e| SessionKeyError::Mac(e.to_string()))
    }

    /// A fresh random key.
    pub fn random() -> Result<Self, SessionKeyError> {
        Self::from_bytes(&random_bytes()?)
    }

    /// The key as the setting says: read from `file`, or created there when it does not exist;
    /// with no file, a random key for this process.
    pub fn from_setting(file: Option<&Path>) -> Result<(Self, KeySource), SessionKeyError> {
        let Some(path) = file else {
            return Ok((Self::random()?, KeySource::Random));
        };
        loop {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let bytes = parse(&text).map_err(|why| SessionKeyError::Malformed {
                        path: path.to_owned(),
                        why,
                    })?;
                    return Ok((Self::from_bytes(&bytes)?, KeySource::Read(path.to_owned())));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(key) = create(path)? {
                        return Ok((key, KeySource::Created(path.to_owned())));
                    }
                    // Another process created it meanwhile: read theirs.
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(SessionKeyError::Malformed {
                        path: path.to_owned(),
                        why: "it is not text".into(),
                    })
                }
                Err(source) => {
                    return Err(SessionKeyError::Read {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    fn mac(&self, label: &[u8], token: &str) -> String {
        let mut m = self.mac.clone();
        m.update(label);
        m.update(b"\0");
        m.update(token.as_bytes());
        hex(&m.finalize().into_bytes())
    }

    /// The id a session with cookie `token` is stored under: 64 hex digits.
    pub fn session_id(&self, token: &str) -> String {
        self.mac(b"session", token)
    }

    /// The CSRF token of the session with cookie `token`: 64 hex digits.
    pub fn csrf(&self, token: &str) -> String {
        self.mac(b"csrf", token)
    }
}

fn random_bytes() -> Result<[u8; KEY_LEN], SessionKeyError> {
    let mut k = [0u8; KEY_LEN];
    getrandom::fill(&mut k).map_err(|e| SessionKeyError::Random(e.to_string()))?;
    Ok(k)
}

/// The key in a key file's text: 64 hex digits, surrounding whitespace ignored. The error says
/// what is wrong without repeating the content.
fn parse(text: &str) -> Result<[u8; KEY_LEN], String> {
    let digits = text.trim();
    if digits.is_empty() {
        return Err("it is empty".into());
    }
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("it holds characters that are not hex digits".into());
    }
    if digits.len() != 2 * KEY_LEN {
        return Err(format!("it holds {} hex digits", digits.len()));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        let pair = digits.get(2 * i..2 * i + 2).unwrap_or_default();
        *byte = u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

/// Creates `path` holding a new random key, readable by its owner only. `None` when the file
/// appeared in the meantime.
fn create(path: &Path) -> Result<Option<SessionKey>, SessionKeyError> {
    let bytes = random_bytes()?;
    let key = SessionKey::from_bytes(&bytes)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let failed = |source| SessionKeyError::Create {
        path: path.to_owned(),
        source,
    };
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    file.write_all(format!("{}\n", hex(&bytes)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::session::{new_token, valid_token};

    #[test]
    fn ids_and_csrf_tokens_depend_on_the_key_and_hide_the_token() {
        let token = new_token().expect("token");
        let a = SessionKey::from_bytes(&[1; KEY_LEN]).expect("key");
        let b = SessionKey::from_bytes(&[2; KEY_LEN]).expect("key");
        let id = a.session_id(&token);
        assert!(valid_token(&id), "64 lowercase hex digits: {id}");
        assert_eq!(id, a.session_id(&token), "the same token, the same id");
        assert_ne!(id, b.session_id(&token), "another key, another id");
        assert_ne!(id, a.session_id(&new_token().expect("token")));
        let csrf = a.csrf(&token);
        assert!(valid_token(&csrf));
        assert_ne!(csrf, id, "the CSRF token is not the id");
        assert_ne!(csrf, b.csrf(&token));
        for made in [&id, &csrf] {
            assert!(!made.contains(&token) && !token.contains(made.as_str()));
        }
        // Neither can be made from what Redis holds: the id is not a token that maps to itself.
        assert_ne!(a.session_id(&id), id);
        assert_ne!(a.csrf(&id), csrf);
    }

    #[test]
    fn a_missing_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("session.key");
        let (first, how) = SessionKey::from_setting(Some(&path)).expect("created");
        assert_eq!(how, KeySource::Created(path.clone()));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim().len(), 64, "{text:?}");
        #[cfg(unix)]
        {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).expect("meta").permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let (again, how) = SessionKey::from_setting(Some(&path)).expect("read");
        assert_eq!(how, KeySource::Read(path.clone()));
        assert_eq!(first.session_id("t"), again.session_id("t"), "same key");
        let (random, how) = SessionKey::from_setting(None).expect("random");
        assert_eq!(how, KeySource::Random);
        assert_ne!(random.session_id("t"), first.session_id("t"));
    }

    #[test]
    fn a_malformed_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("session.key");
        let secret = "ab".repeat(31);
        for bad in [
            String::new(),
            secret.clone(),
            format!("{secret}zz"),
            "é".repeat(32),
        ] {
            std::fs::write(&path, &bad).expect("write");
            let e = SessionKey::from_setting(Some(&path)).expect_err("refused");
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(matches!(e, SessionKeyError::Malformed { .. }), "{text}");
            assert!(!text.contains(&secret), "the content is not echoed: {text}");
        }
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        let e = SessionKey::from_setting(Some(&path)).expect_err("binary refused");
        assert!(matches!(e, SessionKeyError::Malformed { .. }), "{e}");
        std::fs::write(&path, format!("  {}\n\n", "0A".repeat(32))).expect("write");
        SessionKey::from_setting(Some(&path)).expect("whitespace and upper case are fine");
        let nowhere = dir.path().join("no/such/dir/session.key");
        let e = SessionKey::from_setting(Some(&nowhere)).expect_err("cannot create");
        assert!(matches!(e, SessionKeyError::Create { .. }), "{e}");
        assert!(e.to_string().contains("no/such/dir"), "{e}");
    }
}
