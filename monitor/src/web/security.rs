//! Checks before any route runs, and headers every response carries.
//!
//! A request must name a host the dashboard answers to (`allowed_hosts`; on loopback, only
//! loopback names), so a page elsewhere cannot reach the dashboard by pointing its own DNS name
//! at it. A `POST` sent by a browser from another site is refused: `Sec-Fetch-Site` must be
//! `same-origin` (or `none`, typed by the user) when present, and `Origin`, when present, must
//! name the same host and port as `Host`. These back up the CSRF tokens, never replace them.
//!
//! The dashboard loads only its own embedded script and style (`default-src 'self'`, no inline
//! script), may not be framed, and tells browsers not to guess content types. API answers are
//! never cached. A body announced larger than the limit is refused before any handler runs;
//! chunked bodies are cut at the same limit by `DefaultBodyLimit`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{is_api, WebError};
use super::{client, AppState};

/// The Content-Security-Policy of every response.
pub(super) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

const HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // Not `no-referrer`: with it, browsers send `Origin: null` on the page's own posts.
    (header::REFERRER_POLICY, "same-origin"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
];

/// Why a `POST` is refused as cross-site, if it is. `Sec-Fetch-Site`, which only the browser
/// can set, decides when present; otherwise `Origin`, when present, must name the same host
/// and port as `Host` (`null`, sent for sandboxed or privacy-stripped requests, never does).
pub(super) fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return (!matches!(site, "same-origin" | "none"))
            .then_some("the request came from another site (Sec-Fetch-Site)");
    }
    if let Some(origin) = get("origin") {
        let authority = origin
            .split_once("://")
            .map(|(_, a)| a.trim_end_matches('/'));
        let host = get("host");
        let same = matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
        if !same {
            return Some("the request came from another origin (Origin does not match Host)");
        }
    }
    None
}

/// Refuses wrong hosts, cross-site posts and oversized bodies, and adds the security headers.
pub(super) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.max_body_bytes;
    let api = is_api(req.uri().path());
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let loopback = state.config.listen.ip().is_loopback();
    let refusal = if !client::host_allowed(req.headers(), &state.config.allowed_hosts, loopback) {
        Some(WebError::WrongHost)
    } else if req.method() == Method::POST {
        cross_site(req.headers()).map(|why| WebError::Forbidden(why.into()))
    } else {
        None
    };
    let refusal = refusal.or(match announced {
        Some(n) if n > limit as u64 => Some(WebError::TooLarge(limit)),
        _ => None,
    });
    let mut resp = match refusal {
        Some(e) if api => e.into_response(),
        Some(e) => e.into_page(),
        None => next.run(req).await,
    };
    let headers = resp.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_posts() {
        assert_eq!(
            cross_site(&headers(&[("host", "a:1")])),
            None,
            "no browser headers"
        );
        assert_eq!(
            cross_site(&headers(&[
                ("host", "a:1"),
                ("origin", "http://a:1"),
                ("sec-fetch-site", "same-origin")
            ])),
            None
        );
        assert!(cross_site(&headers(&[
            ("host", "a:1"),
            ("sec-fetch-site", "cross-site")
        ]))
        .is_some());
        assert!(cross_site(&headers(&[
            ("host", "a:1"),
            ("sec-fetch-site", "same-site")
        ]))
        .is_some());
        assert!(cross_site(&headers(&[("host", "a:1"), ("origin", "http://evil:1")])).is_some());
        assert!(cross_site(&headers(&[
            ("host", "a:1"),
            ("origin", "http://evil:1"),
            ("sec-fetch-site", "cross-site")
        ]))
        .is_some());
        assert!(cross_site(&headers(&[("host", "a:1"), ("origin", "null")])).is_some());
        assert!(
            cross_site(&headers(&[("origin", "http://a:1")])).is_some(),
            "no Host"
        );
    }
}
