//! Logging in and out, and the guards on every other route.
//!
//! [`Viewer`] admits a logged-in operator, or anyone when the dashboard is public read-only.
//! [`Operator`] admits only a logged-in operator whose request carries the session's CSRF token;
//! every state-changing route takes it. The login form carries a token only this server can
//! make ([`super::form_token`]), also set as a cookie. A login is refused before any password is
//! checked when its name, its address (for a name that is not an operator's) or its name from
//! that address must wait ([`super::throttle`]), or when every password-check slot it may take
//! is busy; every login, failure and logout goes to the audit trail.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use tapgate_runtime::redis::RedisLink;
use tracing::{info, warn};

use super::error::WebError;
use super::pages::login_form;
use super::session::{self, Credential, Session, CSRF_HEADER};
use super::{client, throttle, AppState};
use crate::audit::{self, Action, Record};
use crate::config::valid_name;
use crate::password;

/// Whoever may read: `Some(session)` for an operator, `None` for the public (only when the
/// config allows public read-only access).
pub(super) struct Viewer(pub Option<Session>);

/// A logged-in operator whose request carries the session's CSRF token.
pub(crate) struct Operator(pub Session);

/// The session a request's cookie names, if it is still valid.
pub(super) async fn session_of(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<Session>, WebError> {
    let name = session::session_cookie(state.config.cookies_secure());
    match session::cookie(headers, name) {
        Some(token) => {
            let mut redis = state.redis.clone();
            session::load(&mut redis, &state.session_key, token, &state.operators).await
        }
        None => Ok(None),
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        match session_of(&parts.headers, state).await? {
            Some(s) => Ok(Viewer(Some(s))),
            None if state.config.public_read_only => Ok(Viewer(None)),
            None => Err(WebError::LoginRequired),
        }
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let s = session_of(&parts.headers, state)
            .await?
            .ok_or(WebError::LoginRequired)?;
        let given = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !s.csrf_ok(given) {
            return Err(WebError::Forbidden(
                "missing or wrong CSRF token (reload the page)".into(),
            ));
        }
        Ok(Operator(s))
    }
}

/// The client address of a request (see [`client::client_ip`]).
pub(super) fn client_of(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    client::client_ip(peer, headers, &state.proxies)
}

/// Appends to the audit trail; a failure is logged, never shown to the operator as theirs.
pub(super) async fn audit(state: &AppState, record: Record<'_>) {
    if let Err(e) = audit::append(&mut state.redis.clone(), &record).await {
        warn!(error = %e, action = record.action.as_str(), "Cannot write the audit trail");
    }
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginForm {
    /// Operator name.
    pub name: String,
    /// Password.
    pub password: String,
    /// The anti-forgery token from the form.
    pub csrf: String,
}

/// A hash to verify against for unknown names, so their answer takes as long as a known one.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| password::hash("tapgate decoy password").unwrap_or_default())
}

/// `POST /login`: checks the form and the password, starts a session, redirects to `/`.
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let secure = state.config.cookies_secure();
    match try_login(&state, peer, &headers, form).await {
        Ok(token) => {
            let ttl = state.config.session_ttl;
            let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                session::set_cookie(session::session_cookie(secure), &token, ttl, secure),
            );
            h.append(
                header::SET_COOKIE,
                session::set_cookie(session::login_cookie(secure), "", Duration::ZERO, secure),
            );
            resp
        }
        Err(e) => {
            let mut resp = login_form(&state, e.status(), Some(&e.to_string()));
            e.retry_after(&mut resp);
            resp
        }
    }
}

/// Checks a login; the new session's token for the cookie.
async fn try_login(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<String, WebError> {
    let Form(form) = form?;
    let now = state.clock.now_ms();
    form_from_this_site(state, headers, &form.csrf, now)?;
    let ip = client_of(state, peer, headers);
    let bucket = client::bucket(ip);
    let mut redis = state.redis.clone();
    let limits = state.limits();
    let refused = Refused {
        name: &form.name,
        ip,
        bucket: &bucket,
        from: Some(ip.to_string()),
    };
    if !valid_name(&form.name) || form.password.len() > 1024 {
        // A name that cannot exist is counted against the address only.
        return Err(refused.count(state, &mut redis, "", false).await);
    }
    let known = state.operators.get(&form.name).cloned();
    // An operator's name, or a login made by an operator already logged in here, may take the
    // password-check slot kept for operators; made-up names may not.
    let claim = if known.is_some() || session_of(headers, state).await?.is_some() {
        throttle::Claim::Operator
    } else {
        throttle::Claim::Other
    };
    let must_wait = |e: &WebError| {
        if matches!(e, WebError::TooManyAttempts(_)) {
            info!(name = ?form.name, %ip, "Login refused: too many attempts");
        }
    };
    let clock = state.clock.as_ref();
    let attempt = throttle::Attempt {
        name: &form.name,
        bucket: &bucket,
        known: known.is_some(),
    };
    throttle::check(&mut redis, clock, limits, attempt)
        .await
        .inspect_err(must_wait)?;
    let slot = state.checks.slot(claim).await.inspect_err(|_| {
        info!(name = ?form.name, %ip, "Login refused: every password check is busy");
    })?;
    // Again, now that the slot is held: attempts of one name that arrived together all passed
    // the first check, but once the name must wait only one of them gets its password checked.
    throttle::take_turn(&mut redis, clock, limits, attempt)
        .await
        .inspect_err(must_wait)?;
    let hash = known
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |c| c.hash.clone());
    // The slot is held until the check is done, even if the client goes away meanwhile.
    let ok = state
        .checks
        .verify(slot, form.password.clone(), hash)
        .await?;
    let is_known = known.is_some();
    let Some(cred) = known.filter(|_| ok) else {
        return Err(refused.count(state, &mut redis, &form.name, is_known).await);
    };
    throttle::succeeded(&mut redis, &form.name, &bucket).await?;
    open_session(state, &mut redis, &form.name, &cred, now, ip).await
}

/// Whether the login form was sent from this site: the browser sent the login cookie (which
/// needs HTTPS when cookies are Secure), and the form's `csrf` token is unexpired and matches it.
fn form_from_this_site(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
    now: u64,
) -> Result<(), WebError> {
    let secure = state.config.cookies_secure();
    let cookie = session::cookie(headers, session::login_cookie(secure)).unwrap_or_default();
    if cookie.is_empty() && secure {
        return Err(WebError::Forbidden(
            "the browser sent no login cookie; cookies are marked Secure, so serve the dashboard \
             over HTTPS (or set secure_cookies = false on a trusted plain-HTTP network)"
                .into(),
        ));
    }
    if !state.form_key.verify(csrf, now) || !session::tokens_match(cookie, csrf) {
        return Err(WebError::Forbidden(
            "the login form expired or was not sent from this site; try again".into(),
        ));
    }
    Ok(())
}

/// Operator `name` (holding `cred`) logged in from `ip`: a new session, logged and audited; its
/// token for the cookie.
async fn open_session(
    state: &AppState,
    redis: &mut RedisLink,
    name: &str,
    cred: &Credential,
    now: u64,
    ip: IpAddr,
) -> Result<String, WebError> {
    let (token, s) = session::create(
        redis,
        &state.session_key,
        name,
        cred,
        state.config.session_ttl,
        now,
    )
    .await?;
    info!(operator = %s.operator, %ip, "Operator logged in");
    audit(
        state,
        Record {
            action: Action::Login,
            operator: &s.operator,
            from: Some(ip.to_string()),
            card: None,
            reason: None,
            product: None,
            price: None,
        },
    )
    .await;
    Ok(token)
}

/// A login attempt that failed: by whom and from where.
struct Refused<'a> {
    name: &'a str,
    ip: IpAddr,
    bucket: &'a str,
    from: Option<String>,
}

impl Refused<'_> {
    /// Counts the failure against `throttled` (the name tried, or `""` for the address only),
    /// the client's address and, for an operator's name (`known`), the pair of both; logs and
    /// audits it, and gives the answer: bad credentials (or the Redis failure that kept it from
    /// being counted).
    async fn count(
        self,
        state: &AppState,
        redis: &mut RedisLink,
        throttled: &str,
        known: bool,
    ) -> WebError {
        let limits = state.limits();
        let clock = state.clock.as_ref();
        if let Err(e) = throttle::failed(redis, clock, limits, throttled, self.bucket, known).await
        {
            return e;
        }
        info!(name = ?self.name, ip = %self.ip, "Login failed");
        audit(
            state,
            Record {
                action: Action::FailedLogin,
                operator: self.name,
                from: self.from,
                card: None,
                reason: None,
                product: None,
                price: None,
            },
        )
        .await;
        WebError::BadCredentials
    }
}

/// Audits a logout (`action`) and answers with the session cookie cleared.
async fn logged_out(state: &AppState, action: Action, operator: &str, ip: IpAddr) -> Response {
    audit(
        state,
        Record {
            action,
            operator,
            from: Some(ip.to_string()),
            card: None,
            reason: None,
            product: None,
            price: None,
        },
    )
    .await;
    cleared_cookie(state)
}

fn cleared_cookie(state: &AppState) -> Response {
    let secure = state.config.cookies_secure();
    let mut resp = Json(serde_json::json!({"ok": true})).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(session::session_cookie(secure), "", Duration::ZERO, secure),
    );
    resp
}

/// `POST /logout`: ends the session (CSRF-checked) and clears the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Operator(s): Operator,
) -> Response {
    match session::destroy(&mut state.redis.clone(), &s).await {
        Ok(()) => {
            let ip = client_of(&state, peer, &headers);
            info!(operator = %s.operator, %ip, "Operator logged out");
            logged_out(&state, Action::Logout, &s.operator, ip).await
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /logout-everywhere`: ends every session of the operator (CSRF-checked), this one too.
pub(super) async fn logout_everywhere(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Operator(s): Operator,
) -> Response {
    match session::end_all(&mut state.redis.clone(), &s.operator).await {
        Ok(n) => {
            let ip = client_of(&state, peer, &headers);
            info!(operator = %s.operator, %ip, sessions = n, "Operator logged out everywhere");
            logged_out(&state, Action::LogoutEverywhere, &s.operator, ip).await
        }
        Err(e) => e.into_response(),
    }
}
