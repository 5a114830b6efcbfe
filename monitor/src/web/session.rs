//! Sessions, cookies and CSRF tokens, and how sessions end.
//!
//! A login creates a random 256-bit session token, which only the browser keeps, in an
//! `HttpOnly; SameSite=Strict` cookie (`Secure` and `__Host-` prefixed unless served on
//! loopback). Redis never sees it: the session lives as a hash `tapgate:monitor:session:{id}`
//! (`operator`, `cred`, `created`) that expires after the session TTL, where `id` is a MAC of
//! the token under the server's session key ([`super::session_key`]). The CSRF token that
//! state-changing requests must carry (header `X-CSRF-Token`, compared in constant time) is
//! another MAC of the token, made on demand and never stored. So what Redis holds, and the key
//! names anyone with `SCAN` can list, are worth nothing without the key.
//!
//! `cred` fingerprints the operator's password hash at login, so a session is honoured only while
//! its operator is still configured with the same password: removing an operator or changing a
//! password ends every session they had. Each operator's session ids are also kept in
//! `tapgate:monitor:operator:{name}:sessions`, so "log out everywhere" and the start-up [`sweep`]
//! end them all at once.
//!
//! Sessions an earlier version stored under their token (with a `csrf` field) are never found by
//! a token's id, so they stopped working with the upgrade and expire with their TTL; until then
//! their tokens may still be listed in an operator's set, where "log out everywhere" deletes
//! them too.
//!
//! These keys belong to the monitor alone, so their names live here rather than in the protocol.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use blake2::{Blake2b512, Digest};
use redis::AsyncCommands;
use tapgate_runtime::redis::RedisLink;

use super::error::WebError;
use super::session_key::SessionKey;
use tapgate_protocol::keys;

/// The session cookie on plain HTTP (loopback).
pub(super) const SESSION_COOKIE: &str = "tapgate_session";
/// The login form's anti-forgery cookie on plain HTTP (loopback).
pub(super) const LOGIN_COOKIE: &str = "tapgate_login";
/// The header carrying the CSRF token on API requests.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie's name: `__Host-` prefixed when `secure`, so the browser only accepts it
/// from this exact host over HTTPS.
pub(super) const fn session_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-tapgate_session"
    } else {
        SESSION_COOKIE
    }
}

/// The login form cookie's name (see [`session_cookie`]).
pub(super) const fn login_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-tapgate_login"
    } else {
        LOGIN_COOKIE
    }
}

/// A configured operator as the server checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    /// The argon2 PHC hash of their password.
    pub hash: String,
    /// A fingerprint of `hash`: sessions carry it and end when it changes.
    pub fingerprint: String,
}

impl Credential {
    /// The credential for a password hash.
    pub(crate) fn new(hash: &str) -> Self {
        let digest = Blake2b512::digest(hash.as_bytes());
        Self {
            hash: hash.to_owned(),
            fingerprint: hex(&digest[..16]),
        }
    }
}

/// Operator name → credential.
pub(super) type Credentials = HashMap<String, Credential>;

/// Lower-case hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random 256-bit token, as 64 lowercase hex digits.
pub(super) fn new_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| WebError::Internal(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `s` looks like a token or id this server made (so nothing else reaches a Redis key).
pub(super) fn valid_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares two tokens in time independent of where they differ.
pub(super) fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request, if any.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, whole site, `max_age` (zero deletes),
/// `Secure` when `secure`.
pub(super) fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
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
pub(crate) struct Session {
    /// Its id in Redis ([`SessionKey::session_id`] of the cookie's token).
    pub id: String,
    /// Who logged in.
    pub operator: String,
    /// The CSRF token bound to this session ([`SessionKey::csrf`] of the cookie's token).
    pub csrf: String,
}

impl Session {
    /// Whether `given` is this session's CSRF token.
    pub(crate) fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| tokens_match(g, &self.csrf))
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Drops the ids of sessions that have expired from an operator's set.
const PRUNE: &str = r"
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. t) == 0 then redis.call('SREM', KEYS[1], t) end
end
return 0
";

/// Starts a session for `operator` (whose credential is `cred`), expiring after `ttl`. Returns
/// the token for the cookie, which is stored nowhere, and the session.
pub(super) async fn create(
    redis: &mut RedisLink,
    key: &SessionKey,
    operator: &str,
    cred: &Credential,
    ttl: Duration,
    now_ms: u64,
) -> Result<(String, Session), WebError> {
    let token = new_token()?;
    let session = Session {
        id: key.session_id(&token),
        operator: operator.to_owned(),
        csrf: key.csrf(&token),
    };
    let hash = keys::monitor_session(&session.id);
    let set = keys::monitor_operator_sessions(operator);
    redis::Script::new(PRUNE)
        .key(&set)
        .arg(keys::monitor_session(""))
        .invoke_async::<()>(redis)
        .await?;
    redis::pipe()
        .atomic()
        .hset_multiple(
            &hash,
            &[
                ("operator", session.operator.as_str()),
                ("cred", cred.fingerprint.as_str()),
                ("created", &now_ms.to_string()),
            ],
        )
        .ignore()
        .pexpire(&hash, ms(ttl))
        .ignore()
        .sadd(&set, &session.id)
        .ignore()
        // The set lives as long as the newest session in it.
        .pexpire(&set, ms(ttl))
        .ignore()
        .query_async::<()>(redis)
        .await?;
    Ok((token, session))
}

/// The session whose cookie holds `token`, if it exists, has not expired, and its operator is
/// still configured with the credential they logged in with. A session failing that check is
/// ended.
pub(super) async fn load(
    redis: &mut RedisLink,
    key: &SessionKey,
    token: &str,
    operators: &Credentials,
) -> Result<Option<Session>, WebError> {
    if !valid_token(token) {
        return Ok(None);
    }
    let id = key.session_id(token);
    Ok(operator_of(redis, &id, operators)
        .await?
        .map(|operator| Session {
            id,
            operator,
            csrf: key.csrf(token),
        }))
}

/// The operator of the session with id `id`, under the same conditions as [`load`] (a session
/// failing them is ended): how an open live stream re-checks its session.
pub(super) async fn operator_of(
    redis: &mut RedisLink,
    id: &str,
    operators: &Credentials,
) -> Result<Option<String>, WebError> {
    let fields: HashMap<String, String> = redis.hgetall(keys::monitor_session(id)).await?;
    let Some(operator) = fields.get("operator") else {
        return Ok(None);
    };
    let current = operators.get(operator);
    if current.is_none_or(|c| fields.get("cred") != Some(&c.fingerprint)) {
        end(redis, operator, id).await?;
        return Ok(None);
    }
    Ok(Some(operator.clone()))
}

async fn end(redis: &mut RedisLink, operator: &str, id: &str) -> Result<(), WebError> {
    redis::pipe()
        .del(keys::monitor_session(id))
        .ignore()
        .srem(keys::monitor_operator_sessions(operator), id)
        .ignore()
        .query_async::<()>(redis)
        .await?;
    Ok(())
}

/// Ends the session `s`.
pub(super) async fn destroy(redis: &mut RedisLink, s: &Session) -> Result<(), WebError> {
    end(redis, &s.operator, &s.id).await
}

/// Ends every session of `operator`; returns how many there were.
pub(super) async fn end_all(redis: &mut RedisLink, operator: &str) -> Result<usize, WebError> {
    let set = keys::monitor_operator_sessions(operator);
    let ids: Vec<String> = redis.smembers(&set).await?;
    let mut pipe = redis::pipe();
    for id in ids.iter().filter(|id| valid_token(id)) {
        pipe.del(keys::monitor_session(id)).ignore();
    }
    pipe.del(&set).ignore();
    pipe.query_async::<()>(redis).await?;
    Ok(ids.len())
}

/// At start-up: ends every session of operators who were removed from the config or whose
/// password changed since the last start, then records the current operators. Returns the
/// operators whose sessions were ended.
pub(super) async fn sweep(
    redis: &mut RedisLink,
    operators: &Credentials,
) -> Result<Vec<String>, WebError> {
    let known: HashMap<String, String> = redis.hgetall(keys::MONITOR_OPERATORS).await?;
    let mut ended = Vec::new();
    for (name, fingerprint) in &known {
        if operators
            .get(name)
            .is_none_or(|c| &c.fingerprint != fingerprint)
        {
            end_all(redis, name).await?;
            ended.push(name.clone());
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic().del(keys::MONITOR_OPERATORS).ignore();
    for (name, c) in operators {
        pipe.hset(keys::MONITOR_OPERATORS, name, &c.fingerprint)
            .ignore();
    }
    pipe.query_async::<()>(redis).await?;
    ended.sort();
    Ok(ended)
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
            id: "i".into(),
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
        assert_eq!(keys::monitor_session("ab"), "tapgate:monitor:session:ab");
        assert_eq!(
            keys::monitor_operator_sessions("alice"),
            "tapgate:monitor:operator:alice:sessions"
        );
        assert_eq!(session_cookie(true), "__Host-tapgate_session");
        assert_eq!(login_cookie(false), "tapgate_login");
        let a = Credential::new("$argon2id$a");
        assert_eq!(a.fingerprint.len(), 32);
        assert_ne!(a.fingerprint, Credential::new("$argon2id$b").fingerprint);
    }
}
