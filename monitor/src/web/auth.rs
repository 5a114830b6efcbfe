//! Logging in and out, and the guards on every other route.
//!
//! [`Viewer`] admits a logged-in operator, or anyone when the dashboard is public read-only.
//! [`Operator`] admits only a logged-in operator whose request carries the session's CSRF token;
//! every state-changing route takes it. The login form is protected by a double-submit token
//! (cookie + hidden field) since no session exists yet, and failed logins are rate-limited per
//! name and client address.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use tracing::info;

use super::error::WebError;
use super::pages::login_form;
use super::session::{self, Session, CSRF_HEADER, LOGIN_COOKIE, SESSION_COOKIE};
use super::AppState;
use crate::config::valid_name;
use crate::password;
use crate::tail::now_ms;

/// Whoever may read: `Some(session)` for an operator, `None` for the public (only when the
/// config allows public read-only access).
pub struct Viewer(pub Option<Session>);

/// A logged-in operator whose request carries the session's CSRF token.
pub struct Operator(pub Session);

async fn session_of(parts: &Parts, state: &AppState) -> Result<Option<Session>, WebError> {
    match session::cookie(&parts.headers, SESSION_COOKIE) {
        Some(token) => session::load(&mut state.redis.clone(), token).await,
        None => Ok(None),
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        match session_of(parts, state).await? {
            Some(s) => Ok(Viewer(Some(s))),
            None if state.config.public_read_only => Ok(Viewer(None)),
            None => Err(WebError::LoginRequired),
        }
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let s = session_of(parts, state)
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

/// The login form's fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
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
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    match try_login(&state, peer, &headers, form).await {
        Ok(session) => {
            let ttl = state.config.session_ttl;
            let secure = state.config.secure_cookies;
            let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                session::set_cookie(SESSION_COOKIE, &session.token, ttl, secure),
            );
            h.append(
                header::SET_COOKIE,
                session::set_cookie(LOGIN_COOKIE, "", Duration::ZERO, secure),
            );
            resp
        }
        Err(e) => {
            let mut resp = login_form(&state, e.status(), Some(&e.to_string()));
            if let WebError::TooManyAttempts(secs) = e {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
    }
}

async fn try_login(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Session, WebError> {
    let Form(form) = form?;
    let cookie = session::cookie(headers, LOGIN_COOKIE).unwrap_or_default();
    if !session::valid_token(cookie) || !session::tokens_match(cookie, &form.csrf) {
        return Err(WebError::Forbidden(
            "the login form expired or was not sent from this site; try again".into(),
        ));
    }
    if !valid_name(&form.name) || form.password.len() > 1024 {
        return Err(WebError::BadCredentials);
    }
    let mut redis = state.redis.clone();
    let ip = peer.ip();
    session::count_attempt(
        &mut redis,
        &form.name,
        ip,
        state.config.login_attempts,
        state.config.login_window,
    )
    .await
    .inspect_err(|e| {
        if matches!(e, WebError::TooManyAttempts(_)) {
            info!(name = %form.name, %ip, "Login refused: too many attempts");
        }
    })?;
    let hash = state
        .operators
        .get(&form.name)
        .cloned()
        .unwrap_or_else(|| decoy_hash().to_owned());
    let known = state.operators.contains_key(&form.name);
    let pw = form.password.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    if !(ok && known) {
        info!(name = %form.name, %ip, "Login failed");
        return Err(WebError::BadCredentials);
    }
    session::clear_attempts(&mut redis, &form.name, ip).await?;
    let s = session::create(&mut redis, &form.name, state.config.session_ttl, now_ms()).await?;
    info!(operator = %s.operator, %ip, "Operator logged in");
    Ok(s)
}

/// `POST /logout`: ends the session (CSRF-checked) and clears the cookie.
pub async fn logout(State(state): State<AppState>, Operator(s): Operator) -> Response {
    match session::destroy(&mut state.redis.clone(), &s.token).await {
        Ok(()) => {
            info!(operator = %s.operator, "Operator logged out");
            let mut resp = Json(serde_json::json!({"ok": true})).into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(
                    SESSION_COOKIE,
                    "",
                    Duration::ZERO,
                    state.config.secure_cookies,
                ),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}
