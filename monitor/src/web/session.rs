//! Sessions, cookies, CSRF tokens and the failed-login limit.
//!
//! A login creates a random 256-bit session token and a separate 256-bit CSRF token. The session
//! lives in Redis as a hash `tapgate:monitor:session:{token}` (`operator`, `csrf`, `created`)
//! that expires after the session TTL, so logging out or expiry anywhere ends it everywhere. The
//! browser holds the token in an `HttpOnly; SameSite=Strict` cookie; state-changing requests must
//! also carry the CSRF token (header `X-CSRF-Token` or form field `csrf`), compared in constant
//! time. Failed logins are counted per name and client address in
//! `tapgate:monitor:login-failures:{name}:{ip}`, expiring after the login window.
//!
//! These keys belong to the monitor alone, so their names live here rather than in the protocol.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::error::WebError;

/// The session cookie.
pub const SESSION_COOKIE: &str = "tapgate_session";
/// The login form's anti-forgery cookie (double submit, before any session exists).
pub const LOGIN_COOKIE: &str = "tapgate_login";
/// The header carrying the CSRF token on API requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Redis key of a session.
pub fn session_key(token: &str) -> String {
    format!("tapgate:monitor:session:{token}")
}

/// Redis key counting failed logins of `name` from `ip`.
pub fn failures_key(name: &str, ip: IpAddr) -> String {
    format!("tapgate:monitor:login-failures:{name}:{ip}")
}

/// A fresh random 256-bit token, as 64 lowercase hex digits.
pub fn new_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| WebError::Internal(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `s` looks like a token this server made (so nothing else reaches a Redis key).
pub fn valid_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares two tokens in time independent of where they differ.
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, whole site, `max_age` (zero deletes).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let s = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    );
    // Names are constants and values are hex tokens: always a valid header value.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A logged-in operator's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session token (cookie value).
    pub token: String,
    /// Who logged in.
    pub operator: String,
    /// The CSRF token bound to this session.
    pub csrf: String,
}

impl Session {
    /// Whether `given` is this session's CSRF token.
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| tokens_match(g, &self.csrf))
    }
}

/// Starts a session for `operator`, expiring after `ttl`.
pub async fn create(
    redis: &mut ConnectionManager,
    operator: &str,
    ttl: Duration,
    now_ms: u64,
) -> Result<Session, WebError> {
    let session = Session {
        token: new_token()?,
        operator: operator.to_owned(),
        csrf: new_token()?,
    };
    let key = session_key(&session.token);
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    redis::pipe()
        .atomic()
        .hset_multiple(
            &key,
            &[
                ("operator", session.operator.as_str()),
                ("csrf", session.csrf.as_str()),
                ("created", &now_ms.to_string()),
            ],
        )
        .ignore()
        .pexpire(&key, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
        .ignore()
        .query_async::<()>(redis)
        .await?;
    Ok(session)
}

/// The session for `token`, if it exists and has not expired.
pub async fn load(redis: &mut ConnectionManager, token: &str) -> Result<Option<Session>, WebError> {
    if !valid_token(token) {
        return Ok(None);
    }
    let fields: std::collections::HashMap<String, String> =
        redis.hgetall(session_key(token)).await?;
    match (fields.get("operator"), fields.get("csrf")) {
        (Some(operator), Some(csrf)) => Ok(Some(Session {
            token: token.to_owned(),
            operator: operator.clone(),
            csrf: csrf.clone(),
        })),
        _ => Ok(None),
    }
}

/// Ends the session for `token`.
pub async fn destroy(redis: &mut ConnectionManager, token: &str) -> Result<(), WebError> {
    if valid_token(token) {
        redis.del::<_, ()>(session_key(token)).await?;
    }
    Ok(())
}

/// Counts a login attempt of `name` from `ip`. Refuses with the seconds to wait once more than
/// `limit` attempts were made in the window; a successful login calls [`clear_attempts`].
pub async fn count_attempt(
    redis: &mut ConnectionManager,
    name: &str,
    ip: IpAddr,
    limit: u32,
    window: Duration,
) -> Result<(), WebError> {
    let key = failures_key(name, ip);
    let (count, ttl): (u64, i64) = redis::pipe()
        .atomic()
        .incr(&key, 1u64)
        .cmd("EXPIRE")
        .arg(&key)
        .arg(window.as_secs().max(1))
        .arg("NX")
        .ignore()
        .ttl(&key)
        .query_async(redis)
        .await?;
    if count > u64::from(limit) {
        return Err(WebError::TooManyAttempts(
            u64::try_from(ttl).unwrap_or(1).max(1),
        ));
    }
    Ok(())
}

/// Forgets the attempts of `name` from `ip`, after a successful login.
pub async fn clear_attempts(
    redis: &mut ConnectionManager,
    name: &str,
    ip: IpAddr,
) -> Result<(), WebError> {
    redis.del::<_, ()>(failures_key(name, ip)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert!(valid_token(&a) && valid_token(&b));
        assert_ne!(a, b);
        assert!(!valid_token("../../etc"));
        assert!(!valid_token(&a.to_uppercase()));
        assert!(!valid_token(&a[..63]));
    }

    #[test]
    fn csrf_comparison() {
        let s = Session {
            token: "t".into(),
            operator: "alice".into(),
            csrf: "abc123".into(),
        };
        assert!(s.csrf_ok(Some("abc123")));
        assert!(!s.csrf_ok(Some("abc124")));
        assert!(!s.csrf_ok(Some("abc12")));
        assert!(!s.csrf_ok(Some("")));
        assert!(!s.csrf_ok(None));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tapgate_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "tapgate"), None);
        let set = set_cookie(SESSION_COOKIE, "v", Duration::from_secs(60), true);
        assert_eq!(
            set.to_str().expect("ascii"),
            "tapgate_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
    }

    #[test]
    fn key_names() {
        assert_eq!(session_key("ab"), "tapgate:monitor:session:ab");
        assert_eq!(
            failures_key("alice", IpAddr::from([127, 0, 0, 1])),
            "tapgate:monitor:login-failures:alice:127.0.0.1"
        );
    }
}
