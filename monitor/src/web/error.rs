//! Refusals and failures of the web server.
//!
//! Every handler returns [`WebError`] for what it will not or cannot do. API routes answer
//! `{"error": "<code>", "message": "<text>"}` with a 4xx/5xx status; pages answer a small HTML
//! page saying the same, with the text escaped.

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use tracing::warn;

use super::pages::escape;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No such route or item.
    #[error("{0}")]
    NotFound(String),
    /// A field or parameter breaks its rule.
    #[error("{0}")]
    BadRequest(String),
    /// No valid session (never logged in, logged out, or expired).
    #[error("login required (no session, or it expired)")]
    LoginRequired,
    /// Wrong name or password.
    #[error("wrong name or password")]
    BadCredentials,
    /// A state-changing request without the session's CSRF token.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (e.g. blocking a blocked card).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// Too many failed logins.
    #[error("too many failed logins; try again in {0} s")]
    TooManyAttempts(u64),
    /// Every password-check slot is busy; try again in this many seconds.
    #[error("the server is busy checking other logins; try again in {0} s")]
    Busy(u64),
    /// The request named a host this dashboard does not answer to.
    #[error("this dashboard does not answer to that host name")]
    WrongHost,
    /// The method is not allowed on this route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is not what the route accepts (wrong type, bad JSON, missing field).
    #[error("{message}")]
    Unprocessable {
        /// The status the body parser chose.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// A sale that cannot be voided, and why.
    #[error(transparent)]
    Void(#[from] super::void::VoidRefusal),
    /// A card that cannot be replaced, and why.
    #[error(transparent)]
    Replace(#[from] crate::replace::ReplaceRefusal),
    /// Redis failed.
    #[error("storage unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    /// Something unexpected inside the server.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WebError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::LoginRequired | WebError::BadCredentials => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::WrongHost => StatusCode::MISDIRECTED_REQUEST,
            WebError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebError::Unprocessable { status, .. } => *status,
            WebError::Void(r) => r.status(),
            WebError::Replace(r) => {
                StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::CONFLICT)
            }
            WebError::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::NotFound(_) => "not_found",
            WebError::BadRequest(_) => "bad_request",
            WebError::LoginRequired => "login_required",
            WebError::BadCredentials => "bad_credentials",
            WebError::Forbidden(_) => "forbidden",
            WebError::Conflict(_) => "conflict",
            WebError::TooLarge(_) => "too_large",
            WebError::TooManyAttempts(_) => "too_many_attempts",
            WebError::Busy(_) => "busy",
            WebError::WrongHost => "wrong_host",
            WebError::MethodNotAllowed => "method_not_allowed",
            WebError::Unprocessable { .. } => "bad_body",
            WebError::Void(r) => r.code(),
            WebError::Replace(r) => r.code(),
            WebError::Redis(_) => "unavailable",
            WebError::Internal(_) => "internal",
        }
    }

    fn log(&self) {
        if matches!(self, WebError::Redis(_) | WebError::Internal(_)) {
            warn!(error = %self, "Request failed");
        }
    }

    /// Adds `Retry-After` to the refusals that have one.
    pub fn retry_after(&self, resp: &mut Response) {
        if let WebError::TooManyAttempts(s) | WebError::Busy(s) = self {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
    }

    /// The refusal as an HTML page, for browser routes.
    pub fn into_page(self) -> Response {
        self.log();
        let status = self.status();
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{code} · tapgate</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
             <body class=\"plain\"><main class=\"card narrow\"><h1>{code}</h1><p>{msg}</p>\
             <p><a href=\"/\">Dashboard</a> · <a href=\"/login\">Log in</a></p></main></body></html>",
            code = status.as_u16(),
            msg = escape(&self.to_string()),
        );
        let mut resp = (status, Html(body)).into_response();
        self.retry_after(&mut resp);
        resp
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.log();
        let body = serde_json::json!({"error": self.code(), "message": self.to_string()});
        let mut resp = (self.status(), axum::Json(body)).into_response();
        self.retry_after(&mut resp);
        resp
    }
}

/// Whether a path is an API route (JSON errors) rather than a page (HTML errors).
pub(super) fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Answers unknown routes: JSON under `/api`, a page elsewhere.
pub(super) async fn not_found(uri: Uri) -> Response {
    let e = WebError::NotFound(format!("no such page: {}", uri.path()));
    if is_api(uri.path()) {
        e.into_response()
    } else {
        e.into_page()
    }
}

/// Answers a known route called with the wrong method.
pub(super) async fn method_not_allowed(uri: Uri) -> Response {
    if is_api(uri.path()) {
        WebError::MethodNotAllowed.into_response()
    } else {
        WebError::MethodNotAllowed.into_page()
    }
}

impl From<axum::extract::rejection::JsonRejection> for WebError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        body_rejection(r.status(), r.body_text())
    }
}

impl From<axum::extract::rejection::FormRejection> for WebError {
    fn from(r: axum::extract::rejection::FormRejection) -> Self {
        body_rejection(r.status(), r.body_text())
    }
}

fn body_rejection(status: StatusCode, message: String) -> WebError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        WebError::Unprocessable {
            status,
            message: "request body too large".into(),
        }
    } else {
        WebError::Unprocessable { status, message }
    }
}
