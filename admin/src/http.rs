//! A minimal HTTP/1.1 client for EMQX's API: one request per connection, basic authentication,
//! JSON bodies. Plain `http://` only; put the API behind a private network or a TLS proxy.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
        let conn = |e: std::io::Error| AdminError::Connect {
            address: address.clone(),
            why: e.to_string(),
        };
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(conn)?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Basic {}\r\n\
             Accept: application/json\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.base,
            self.host,
            self.port,
            self.auth,
            payload.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(conn)?;
        stream.write_all(payload.as_bytes()).await.map_err(conn)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(conn)?;
        parse(&raw).map_err(|why| AdminError::Protocol {
            command: format!("{method} {path}"),
            why,
        })
    }
}

/// Parses an HTTP/1.x answer read to its end (Content-Length, chunked or until close).
fn parse(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("body is not JSON: {e}"))?
    };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("short chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("short chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let a =
            parse(b"HTTP/1.1 201 Created\r\ncontent-length: 11\r\n\r\n{\"a\": true}").expect("ok");
        assert_eq!((a.status, a.body["a"].as_bool()), (201, Some(true)));
        let a = parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n[1,2\r\n1\r\n]\r\n0\r\n\r\n")
            .expect("ok");
        assert_eq!(a.body, serde_json::json!([1, 2]));
        let a = parse(b"HTTP/1.1 204 No Content\r\n\r\n").expect("ok");
        assert_eq!((a.status, a.body), (204, Value::Null));
        assert!(parse(b"garbage").is_err());
    }
}
