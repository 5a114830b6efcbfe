//! Shared test helpers: a real dashboard on 127.0.0.1:0 against a real Redis, a tiny HTTP/1.1
//! client (so tests can send exactly the bytes they mean, oversized or forged), event writers,
//! and a writer that collects `tail` output.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tapgate_monitor::web::SessionKey;
use tapgate_monitor::web::{self, ServerHandle};
use tapgate_monitor::{Operator, ServeConfig};
use tapgate_protocol::keys::EVENTS_STREAM;
use tapgate_protocol::{
    CardId, Currency, DeviceId, DeviceKind, Event, EventKind, PassInfo, ProductId,
};
use tapgate_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Operator names and passwords every test server knows.
pub const ALICE: (&str, &str) = ("alice", "correct horse battery");
pub const BOB: (&str, &str) = ("bob", "staple");

/// A real argon2id PHC hash with small parameters, so logins in unoptimised test builds are
/// quick; the server verifies with whatever parameters the hash names.
pub fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    let params = argon2::Params::new(1024, 1, 1, None).expect("params");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes())
        .expect("hash")
        .to_string()
}

fn hashes() -> (String, String) {
    (cheap_hash(ALICE.1), cheap_hash(BOB.1))
}

/// A dashboard config for `redis` with alice and bob.
pub fn config(redis: &str) -> ServeConfig {
    let (a, b) = hashes();
    ServeConfig {
        redis: redis.parse().expect("redis url"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        operators: vec![
            Operator {
                name: ALICE.0.into(),
                password_hash: a,
            },
            Operator {
                name: BOB.0.into(),
                password_hash: b,
            },
        ],
        ..ServeConfig::default()
    }
}

/// Gives `config` a session key file the test knows the key of; the folder holding it must
/// live as long as the dashboard.
pub fn known_session_key(config: &mut ServeConfig) -> (SessionKey, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("session.key");
    std::fs::write(&path, "5e".repeat(32)).expect("write the session key");
    config.session_key_file = Some(path);
    (SessionKey::from_bytes(&[0x5e; 32]).expect("key"), dir)
}

/// The Redis key of the session whose cookie holds `token`, under `key`.
pub fn session_redis_key(key: &SessionKey, token: &str) -> String {
    format!("tapgate:monitor:session:{}", key.session_id(token))
}

/// A running dashboard; stops when dropped.
pub struct Dashboard {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<ServerHandle>,
}

impl Dashboard {
    pub async fn start(config: ServeConfig) -> Self {
        Self::start_with_clock(
            config,
            std::sync::Arc::new(tapgate_runtime::clock::SystemClock),
        )
        .await
    }

    pub async fn start_with_clock(
        config: ServeConfig,
        clock: std::sync::Arc<dyn tapgate_runtime::clock::Clock>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let handle = web::start_with_clock(config, clock, shutdown.clone())
            .await
            .expect("dashboard starts");
        Self {
            addr: handle.addr(),
            shutdown,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops it and waits (fails the test if it does not stop within 10 s).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), h.join())
                .await
                .expect("dashboard stops within 10 s")
                .expect("dashboard stops cleanly");
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A Redis connection for the test itself.
pub async fn redis(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// Appends `event` to the stream as the bridge does, a field per event field (with an explicit
/// id, or `*`); returns the id.
pub async fn xadd(conn: &mut MultiplexedConnection, id: &str, event: &Event) -> String {
    redis::cmd("XADD")
        .arg(EVENTS_STREAM)
        .arg(id)
        .arg(event.stream_fields())
        .query_async(conn)
        .await
        .expect("XADD")
}

/// Every id in the stream, in order.
pub async fn all_ids(conn: &mut MultiplexedConnection) -> Vec<String> {
    let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(EVENTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    v.into_iter().map(|(id, _)| id).collect()
}

/// A writer that keeps everything written, for reading `tail` output.
#[derive(Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<u8>>>);

impl Collected {
    pub fn lines(&self) -> Vec<String> {
        let buf = self.0.lock().expect("lock").clone();
        String::from_utf8(buf)
            .expect("utf-8 output")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `n` lines were written, or fails after `within`.
    pub async fn wait_lines(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let lines = self.lines();
            if lines.len() >= n {
                return lines;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "expected {n} lines within {within:?}, got {}:\n{}",
                    lines.len(),
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Write for Collected {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The value of cookie `name` set by this response.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers_named("set-cookie").into_iter().find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|r| r.split(';').next().unwrap_or("").to_owned())
        })
    }
}

fn decode_chunked(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..pos]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = pos + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    request_from([127, 0, 0, 1], addr, method, path, headers, body).await
}

/// [`request`] from another loopback address (127.0.0.0/8), as a different client.
pub async fn request_from(
    from: [u8; 4],
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let host = addr.to_string();
    request_as(from, &host, addr, method, path, headers, body).await
}

/// [`request_from`] naming `host` in the `Host` header.
pub async fn request_as(
    from: [u8; 4],
    host: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind client address");
    let mut s = socket.connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    // A server may answer (e.g. 413) before reading the body; ignore a failed body write.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response within 10 s");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = decode_chunked(&body);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A logged-in operator: the session cookie and the CSRF token.
#[derive(Debug, Clone)]
pub struct Login {
    pub cookie: String,
    pub csrf: String,
}

impl Login {
    pub fn cookie_header(&self) -> String {
        format!("tapgate_session={}", self.cookie)
    }
}

/// Fetches the login form: (login cookie, form token).
pub async fn login_form(addr: SocketAddr) -> (String, String) {
    let page = request(addr, "GET", "/login", &[], b"").await;
    assert_eq!(page.status, 200);
    let cookie = page.cookie("tapgate_login").expect("login cookie");
    let marker = "name=\"csrf\" value=\"";
    let at = page.body.find(marker).expect("csrf field") + marker.len();
    let len = page.body[at..].find('"').expect("end of csrf field");
    let token = page.body[at..at + len].to_owned();
    (cookie, token)
}

/// Posts the login form with `name` and `password`.
pub async fn post_login(addr: SocketAddr, name: &str, password: &str) -> Resp {
    post_login_from([127, 0, 0, 1], addr, name, password, &[]).await
}

/// Posts the login form from client address `from`, with extra `headers`.
pub async fn post_login_from(
    from: [u8; 4],
    addr: SocketAddr,
    name: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let (cookie, token) = login_form(addr).await;
    let body = format!(
        "name={}&password={}&csrf={token}",
        urlencode(name),
        urlencode(password)
    );
    let cookie = format!("tapgate_login={cookie}");
    let mut all = vec![
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie.as_str()),
    ];
    all.extend_from_slice(headers);
    request_from(from, addr, "POST", "/login", &all, body.as_bytes()).await
}

/// Logs in and returns the session.
pub async fn login(addr: SocketAddr, who: (&str, &str)) -> Login {
    let resp = post_login(addr, who.0, who.1).await;
    assert_eq!(resp.status, 303, "login failed: {}", resp.body);
    let cookie = resp.cookie("tapgate_session").expect("session cookie");
    let s = request(
        addr,
        "GET",
        "/api/session",
        &[("Cookie", &format!("tapgate_session={cookie}"))],
        b"",
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let csrf = s.json()["csrf"].as_str().expect("csrf").to_owned();
    Login { cookie, csrf }
}

/// Percent-encodes a form value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `path` as `login`.
pub async fn get(addr: SocketAddr, login: &Login, path: &str) -> Resp {
    request(
        addr,
        "GET",
        path,
        &[("Cookie", &login.cookie_header())],
        b"",
    )
    .await
}

/// POST JSON `body` to `path` as `login`, with its CSRF token.
pub async fn post_json(addr: SocketAddr, login: &Login, path: &str, body: &str) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[
            ("Cookie", &login.cookie_header()),
            ("X-CSRF-Token", &login.csrf),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await
}

/// Reads server-sent events from one connection.
pub struct SseClient {
    stream: tokio::net::TcpStream,
    buf: String,
}

impl SseClient {
    pub async fn open(addr: std::net::SocketAddr, login: &Login) -> Self {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "GET /api/live HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nAccept: text/event-stream\r\n\r\n",
            login.cookie_header()
        );
        stream.write_all(req.as_bytes()).await.expect("write");
        Self {
            stream,
            buf: String::new(),
        }
    }

    /// Waits until the server ends the stream (the chunked body's last chunk, or EOF).
    pub async fn closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.buf.ends_with("0\r\n\r\n") {
                return;
            }
            let mut chunk = [0u8; 8192];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("stream still open after 10 s; got:\n{}", self.buf))
                .expect("read");
            if n == 0 {
                return;
            }
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The data of the next SSE event called `name` (others are skipped).
    pub async fn next(&mut self, name: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let marker = format!("event: {name}\ndata: ");
            if let Some(at) = self.buf.find(&marker) {
                let start = at + marker.len();
                if let Some(end) = self.buf[start..].find('\n') {
                    let data = self.buf[start..start + end].to_owned();
                    self.buf.drain(..start + end);
                    return serde_json::from_str(&data).expect("SSE data is JSON");
                }
            }
            let mut chunk = [0u8; 8192];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("no `{name}` event within 10 s; got:\n{}", self.buf))
                .expect("read");
            assert!(n > 0, "stream closed; got:\n{}", self.buf);
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
}

/// A child process (the `tapgate-monitor` binary), killed on drop.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether something accepts connections on 127.0.0.1:`port` within `within`.
pub fn listening(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A day pass sold at terminal t1 for 7.50 EUR, at `time`.
pub fn sale(time: u64) -> Event {
    let mut e = Event::new(EventKind::PassIssued, time);
    e.device = DeviceId::new("t1").ok();
    e.device_kind = Some(DeviceKind::Terminal);
    e.card = CardId::new("04AB").ok();
    e.pass = Some(PassInfo {
        pass_type: ProductId::from_static("DAY"),
        trips_remaining: None,
        expires_at: None,
        remaining_ms: None,
    });
    e.price = Some(750);
    e.currency = Some(Currency::EUR);
    e
}

/// Settings of the bridge's store in tests: what the bridge uses by default, in short.
pub fn store_settings() -> tapgate_bridge::store::StoreSettings {
    tapgate_bridge::store::StoreSettings {
        legacy_period_ms: 7_200_000,
        sale_timeout_ms: 30_000,
        seen_ttl_s: 3600,
        stream_maxlen: 100_000,
        recent_ttl_s: 3600,
        device_ttl_s: 3600,
        time: Default::default(),
    }
}

/// Sells and uses passes with the bridge's own decide function on a real Redis, as terminals and
/// gates would, at times the test chooses (a sale's `issued_at` and service day are that time's).
pub struct Seller {
    pub store: tapgate_bridge::Store,
    pub catalogue: tapgate_protocol::Catalogue,
    n: u64,
}

impl Seller {
    pub async fn connect(redis: &RedisServer, catalogue: tapgate_protocol::Catalogue) -> Self {
        let store = tapgate_bridge::Store::connect(&redis.url(), None, store_settings())
            .await
            .unwrap_or_else(|e| panic!("bridge store: {e}\n{}", redis.log()));
        Self::new(store, catalogue)
    }

    /// A seller deciding on `store` under `catalogue`.
    pub fn new(store: tapgate_bridge::Store, catalogue: tapgate_protocol::Catalogue) -> Self {
        Self {
            store,
            catalogue,
            n: 0,
        }
    }

    /// Decides `input` from `device` at `now_ms` as the bridge does, through the store's decide
    /// function, as the next message (waiting, no stamp); panics unless decided.
    pub async fn decide(
        &mut self,
        kind: DeviceKind,
        device: &str,
        input: tapgate_protocol::rules::Input,
        now_ms: u64,
    ) -> tapgate_protocol::Decision {
        self.n += 1;
        let device = DeviceId::new(device).expect("device id");
        let id = tapgate_protocol::MessageId::new(format!("m{}", self.n)).expect("message id");
        let message = tapgate_bridge::store::Message {
            kind,
            device: &device,
            id: &id,
            input: &input,
            stamp: None,
            replaces: None,
        };
        let request = tapgate_bridge::store::Request::new(message, now_ms, &self.catalogue);
        match self.store.decide_under(request, &self.catalogue).await {
            Ok(tapgate_bridge::store::Answer::Decided(d)) => d.decision,
            other => panic!("not decided: {other:?}"),
        }
    }

    /// Sells `product` to `card` at `terminal` at `now_ms` (tap, button, the same card again);
    /// false when nothing was sold because the card already holds a pass.
    pub async fn sell(&mut self, terminal: &str, card: &str, product: &str, now_ms: u64) -> bool {
        use tapgate_protocol::rules::Input;
        use tapgate_protocol::Outcome;
        let card = CardId::new(card).expect("card");
        let terms = self
            .catalogue
            .product(ProductId::parse(product).expect("product id"))
            .expect("on sale")
            .terms;
        let kind = DeviceKind::Terminal;
        match self
            .decide(kind, terminal, Input::TerminalTap(card.clone()), now_ms)
            .await
            .outcome
        {
            Outcome::SelectPass { .. } => {}
            Outcome::AlreadyHasPass { .. } => return false,
            other => panic!("first tap: {other:?}"),
        }
        let chosen = self
            .decide(kind, terminal, Input::Button(terms), now_ms)
            .await
            .outcome;
        assert!(
            matches!(chosen, Outcome::TapToConfirm { .. }),
            "button: {chosen:?}"
        );
        let sold = self
            .decide(kind, terminal, Input::TerminalTap(card), now_ms)
            .await
            .outcome;
        assert!(matches!(sold, Outcome::PassIssued { .. }), "{sold:?}");
        true
    }

    /// Taps `card` at `gate` at `now_ms`.
    pub async fn enter(
        &mut self,
        gate: &str,
        card: &str,
        now_ms: u64,
    ) -> tapgate_protocol::Outcome {
        let card = CardId::new(card).expect("card");
        self.decide(
            DeviceKind::Gate,
            gate,
            tapgate_protocol::rules::Input::GateTap(card),
            now_ms,
        )
        .await
        .outcome
    }
}

/// A fares file's text: the built-in products priced, and a day pass only this file knows.
pub const FARES: &str = r#"
currency = "EUR"
time_zone = "UTC"

[[product]]
id = "TEN_TRIP"
name = "Ten trip"
price = 1800
validity = "trips"
trips = 10

[[product]]
id = "TWO_HOUR"
name = "Two hour"
price = 350
validity = "period"
duration = "2h"

[[product]]
id = "SINGLE_USE"
name = "Single trip"
price = 200
validity = "single"

[[product]]
id = "DAY"
name = "Day pass"
price = 750
validity = "service_day"
"#;

/// [`FARES`] written to a file in a temp folder (which must outlive its use), and parsed.
pub fn fares_file() -> (
    std::path::PathBuf,
    tapgate_protocol::Catalogue,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("fares dir");
    let path = dir.path().join("fares.toml");
    std::fs::write(&path, FARES).expect("write fares");
    let catalogue = tapgate_protocol::Catalogue::load(&path).expect("fares parse");
    (path, catalogue, dir)
}
