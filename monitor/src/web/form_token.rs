//! The login form's anti-forgery token, bound to this server.
//!
//! Before a login there is no session to hang a CSRF token on, so the form carries a token that
//! only this server can make: `{issued}.{nonce}.{mac}`, where `mac` is a keyed BLAKE2b of the
//! issue time and a random nonce under a key drawn at start-up. A client cannot choose its own
//! token, and a token is honoured for [`FORM_TOKEN_TTL`] only. The same value is also set as a
//! cookie and must match the form field (double submit), so another site cannot post the form.

use std::time::Duration;

use blake2::{Blake2b512, Digest};

use super::error::WebError;
use super::session::{hex, tokens_match};

/// How long a login form may be submitted after it was served.
pub(super) const FORM_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The key form tokens are made with: 32 random bytes per server process.
#[derive(Clone)]
pub(crate) struct FormKey([u8; 32]);

impl FormKey {
    /// A fresh random key.
    pub(crate) fn random() -> Result<Self, WebError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| WebError::Internal(format!("no randomness: {e}")))?;
        Ok(Self(k))
    }

    fn mac(&self, issued: &str, nonce: &str) -> String {
        let mut h = Blake2b512::new();
        h.update(self.0);
        h.update(b"tapgate login form\0");
        h.update(issued.as_bytes());
        h.update(b".");
        h.update(nonce.as_bytes());
        hex(&h.finalize()[..16])
    }

    /// A token issued at `now_ms`.
    pub(crate) fn issue(&self, now_ms: u64) -> Result<String, WebError> {
        let mut n = [0u8; 8];
        getrandom::fill(&mut n).map_err(|e| WebError::Internal(format!("no randomness: {e}")))?;
        let issued = format!("{now_ms:016x}");
        let nonce = hex(&n);
        let mac = self.mac(&issued, &nonce);
        Ok(format!("{issued}.{nonce}.{mac}"))
    }

    /// Whether `token` was issued by this key no longer than [`FORM_TOKEN_TTL`] before `now_ms`
    /// (and not in the future).
    pub(crate) fn verify(&self, token: &str, now_ms: u64) -> bool {
        let mut parts = token.split('.');
        let (Some(issued), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let hexed = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hexed(issued, 16) || !hexed(nonce, 16) || !hexed(mac, 32) {
            return false;
        }
        if !tokens_match(mac, &self.mac(issued, nonce)) {
            return false;
        }
        let Ok(at) = u64::from_str_radix(issued, 16) else {
            return false;
        };
        let ttl = u64::try_from(FORM_TOKEN_TTL.as_millis()).unwrap_or(u64::MAX);
        at <= now_ms.saturating_add(60_000) && now_ms.saturating_sub(at) <= ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_servers_fresh_tokens_pass() {
        let key = FormKey::random().expect("key");
        let now = 1_700_000_000_000;
        let t = key.issue(now).expect("token");
        assert_eq!(t.len(), 66);
        assert!(key.verify(&t, now));
        assert!(key.verify(&t, now + 3_599_000));
        assert!(!key.verify(&t, now + 3_601_000), "expired");
        assert!(!key.verify(&t, now - 120_000), "from the future");
        let other = FormKey::random().expect("key");
        assert!(!other.verify(&t, now), "another server's token");
        assert!(
            !key.verify(&"a".repeat(64), now),
            "a token the client chose"
        );
        let mut forged = t.clone();
        forged.replace_range(0..1, "1");
        assert!(!key.verify(&forged, now), "altered issue time");
        assert!(!key.verify(&format!("{t}.x"), now));
        assert!(!key.verify("", now));
    }
}
