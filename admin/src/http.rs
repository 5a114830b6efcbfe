//! The client for EMQX's API (hyper's): basic authentication, JSON bodies. Plain `http://`
//! only; put the API behind a private network or a TLS proxy.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::AdminError;

/// Where the API lives.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    base: String,
    auth: String,
    timeout: Duration,
}

/// An answer: status code and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
}

impl Endpoint {
    /// Parses `http://host[:port][/base]`.
    pub fn new(url: &str, key: &str, secret: &str, timeout: Duration) -> Result<Self, AdminError> {
        let bad = |why: &str| AdminError::Settings {
            field: "emqx_api",
            why: format!("{url:?}: {why}"),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("expected http://host:port"))?;
        let (hostport, base) = match rest.split_once('/') {
            Some((h, b)) => (h, format!("/{}", b.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("port is not 1-65535"))?),
            None => (hostport, 80),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
        Ok(Self {
            host: host.to_owned(),
            port,
            base: base.trim_end_matches('/').to_owned(),
            auth,
            timeout,
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, AdminError> {
        let what = format!("{method} {path}");
        let secs = self.timeout.as_secs().max(1);
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| AdminError::Timeout { what, secs })?
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, AdminError> {
        let address = format!("{}:{}", self.host, self.port);
        let conn = |why: String| AdminError::Connect {
            address: address.clone(),
            why,
        };
        let protocol = |why: String| AdminError::Protocol {
            command: format!("{method} {path}"),
            why,
        };
        let payload = body.map(Value::to_string).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{address}{}{path}", self.base))
            .header(header::AUTHORIZATION, format!("Basic {}", self.auth))
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| protocol(e.to_string()))?;
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let response = client
            .request(request)
            .await
            .map_err(|e| conn(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| conn(e.to_string()))?
            .to_bytes();
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| protocol(format!("body is not JSON: {e}")))?
        };
        Ok(Answer { status, body })
    }
}
