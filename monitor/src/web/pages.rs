//! HTML pages and the embedded assets.
//!
//! The dashboard page is static: its script (`/assets/app.js`) asks the API for data and builds
//! the DOM with `textContent`, so nothing from a device or a card is ever parsed as HTML. The one
//! server-rendered page, the login form, escapes every value it inserts. All assets are compiled
//! into the binary; the page loads nothing from elsewhere.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::auth::session_of;
use super::error::WebError;
use super::form_token::FORM_TOKEN_TTL;
use super::session;
use super::AppState;

const DASHBOARD: &str = include_str!("../../assets/dashboard.html");
const LOGIN: &str = include_str!("../../assets/login.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");
const ICON_SVG: &str = include_str!("../../assets/icon.svg");

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /`: the dashboard, or a redirect to the login page.
pub(super) async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.config.public_read_only {
        match session_of(&headers, &state).await {
            Ok(Some(_)) => {}
            Ok(None) => return Redirect::to("/login").into_response(),
            Err(e) => return e.into_page(),
        }
    }
    Html(DASHBOARD).into_response()
}

/// `GET /login`: the login form.
pub(super) async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, StatusCode::OK, None)
}

/// The login form with a fresh anti-forgery token (also set as a cookie) and an optional message.
pub(super) fn login_form(state: &AppState, status: StatusCode, message: Option<&str>) -> Response {
    let token = match state.form_key.issue(state.clock.now_ms()) {
        Ok(t) => t,
        Err(e) => return e.into_page(),
    };
    let message = message.map_or_else(String::new, |m| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(m)
        )
    });
    let body = LOGIN
        .replace("{{csrf}}", &token)
        .replace("{{message}}", &message);
    let mut resp = (status, Html(body)).into_response();
    let secure = state.config.cookies_secure();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            session::login_cookie(secure),
            &token,
            FORM_TOKEN_TTL,
            secure,
        ),
    );
    resp
}

/// `GET /assets/{name}`: an embedded file.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    let (body, mime) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "icon.svg" => (ICON_SVG, "image/svg+xml"),
        _ => return WebError::NotFound(format!("no asset {name}")).into_page(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert(\"x\")</script> & 'y'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn pages_have_no_inline_script() {
        for page in [DASHBOARD, LOGIN] {
            let lower = page.to_lowercase();
            for (i, _) in lower.match_indices("<script") {
                let tag_end = lower[i..].find('>').map(|e| i + e).unwrap_or(lower.len());
                assert!(
                    lower[i..tag_end].contains("src="),
                    "inline script in a page"
                );
            }
            assert!(!lower.contains(" onclick=") && !lower.contains(" onload="));
            assert!(!lower.contains("style=\""), "inline style in a page");
            assert!(
                !lower.contains("http://") && !lower.contains("https://"),
                "external asset"
            );
        }
    }
}
