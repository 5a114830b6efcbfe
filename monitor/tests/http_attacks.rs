//! Attacks at the HTTP edge, against the real server and a real Redis: headers that never end,
//! a client opening connection after connection, cookies sent over plain HTTP, DNS rebinding
//! (a foreign `Host`), and state-changing posts from another site.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use support::*;
use tapgate_protocol::keys;
use tapgate_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until the server closes the connection (or 10 s pass); returns what it sent and when.
async fn until_closed(s: &mut tokio::net::TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "connection still open after 10 s");
    (got, started.elapsed())
}

async fn connect_from(from: [u8; 4], addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind client address");
    socket.connect(addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_never_end_are_cut_off() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.header_timeout = Duration::from_millis(500);
    let dash = Dashboard::start(cfg).await;
    let mut s = connect_from([127, 0, 0, 2], dash.addr).await;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", dash.addr).as_bytes())
        .await
        .expect("write");
    let (_, took) = until_closed(&mut s).await;
    println!("unfinished headers cut off after {} ms", took.as_millis());
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A connection that never sends a byte fares the same.
    let mut silent = connect_from([127, 0, 0, 2], dash.addr).await;
    let (_, took) = until_closed(&mut silent).await;
    println!("silent connection cut off after {} ms", took.as_millis());
    assert!(took < Duration::from_secs(5), "{took:?}");
    // And so does a kept-alive connection that goes quiet after its first request.
    let mut kept = connect_from([127, 0, 0, 2], dash.addr).await;
    kept.write_all(format!("GET /login HTTP/1.1\r\nHost: {}\r\n\r\n", dash.addr).as_bytes())
        .await
        .expect("write");
    let (got, took) = until_closed(&mut kept).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    println!(
        "idle kept-alive connection cut off after {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The server still answers everyone else.
    assert_eq!(
        request(dash.addr, "GET", "/login", &[], b"").await.status,
        200
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.max_connections_per_address = 4;
    cfg.header_timeout = Duration::from_secs(30);
    let dash = Dashboard::start(cfg).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from([127, 0, 0, 2], dash.addr).await;
        s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        held.push(s);
    }
    // Give the server time to accept the four before the fifth arrives: wait until a request
    // from elsewhere has been answered after them.
    assert_eq!(
        request_from([127, 0, 0, 3], dash.addr, "GET", "/login", &[], b"")
            .await
            .status,
        200
    );
    let mut fifth = connect_from([127, 0, 0, 2], dash.addr).await;
    let _ = fifth
        .write_all(format!("GET /login HTTP/1.1\r\nHost: {}\r\n\r\n", dash.addr).as_bytes())
        .await;
    let (got, took) = until_closed(&mut fifth).await;
    assert!(
        got.is_empty(),
        "the fifth connection got an answer: {got:?}"
    );
    println!(
        "fifth connection from one address closed after {} ms",
        took.as_millis()
    );
    // Another address is served; and once one of the four closes, the address may connect again.
    assert_eq!(
        request_from([127, 0, 0, 3], dash.addr, "GET", "/login", &[], b"")
            .await
            .status,
        200
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect_from([127, 0, 0, 2], dash.addr).await;
        let _ = s
            .write_all(
                format!(
                    "GET /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    dash.addr
                )
                .as_bytes(),
            )
            .await;
        let (got, _) = until_closed(&mut s).await;
        if got.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_cookies_are_secure_and_host_prefixed() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let dash = Dashboard::start(cfg).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], dash.addr.port()));
    let page = request(addr, "GET", "/login", &[], b"").await;
    let set = page.headers_named("set-cookie");
    assert!(
        set.iter().any(|c| c.starts_with("__Host-tapgate_login=")
            && c.contains("; Secure")
            && c.contains("Path=/")
            && !c.contains("Domain")),
        "{set:?}"
    );
    let token = page.cookie("__Host-tapgate_login").expect("cookie");
    // A browser on plain HTTP drops Secure cookies: the refusal says why.
    let body = format!("name=alice&password={}&csrf={token}", urlencode(ALICE.1));
    let dropped = request(
        addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(dropped.status, 403);
    assert!(dropped.body.contains("HTTPS"), "{}", dropped.body);
    let body = format!("name=alice&password={}&csrf={token}", urlencode(ALICE.1));
    let ok = request(
        addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("__Host-tapgate_login={token}")),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let session = ok
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("__Host-tapgate_session="))
        .expect("session cookie")
        .to_owned();
    assert!(
        session.contains("; Secure") && session.contains("HttpOnly"),
        "{session}"
    );
    let token = ok.cookie("__Host-tapgate_session").expect("token");
    // The unprefixed name is not honoured.
    let plain = request(
        addr,
        "GET",
        "/api/session",
        &[("Cookie", &format!("tapgate_session={token}"))],
        b"",
    )
    .await;
    assert_eq!(plain.status, 401);
    let prefixed = request(
        addr,
        "GET",
        "/api/session",
        &[("Cookie", &format!("__Host-tapgate_session={token}"))],
        b"",
    )
    .await;
    assert_eq!(prefixed.status, 200);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_names_are_refused() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.public_read_only = true;
    let dash = Dashboard::start(cfg.clone()).await;
    // A page on rebind.evil.example whose name now points at 127.0.0.1.
    let port = dash.addr.port();
    let rebound = format!("rebind.evil.example:{port}");
    for path in ["/", "/api/counters", "/login"] {
        let r = request_as([127, 0, 0, 1], &rebound, dash.addr, "GET", path, &[], b"").await;
        assert_eq!(r.status, 421, "{path}: {}", r.body);
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = request_as(
            [127, 0, 0, 1],
            &host,
            dash.addr,
            "GET",
            "/api/counters",
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{host}");
    }
    dash.stop().await;

    cfg.allowed_hosts = vec!["dash.example.org".into()];
    let dash = Dashboard::start(cfg).await;
    let named = request_as(
        [127, 0, 0, 1],
        "dash.example.org",
        dash.addr,
        "GET",
        "/api/counters",
        &[],
        b"",
    )
    .await;
    assert_eq!(named.status, 200);
    let by_ip = request(dash.addr, "GET", "/api/counters", &[], b"").await;
    assert_eq!(by_ip.status, 421);
    assert_eq!(by_ip.json()["error"], "wrong_host");
    // A health check speaking HTTP/1.0 without a Host header is still answered.
    let mut s = tokio::net::TcpStream::connect(dash.addr)
        .await
        .expect("connect");
    s.write_all(b"GET /login HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let (got, _) = until_closed(&mut s).await;
    assert!(
        got.starts_with(b"HTTP/1.0 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_from_another_site_change_nothing() {
    let server = RedisServer::start();
    let dash = Dashboard::start(config(&server.url())).await;
    let me = login(dash.addr, ALICE).await;
    let mut conn = redis(&server).await;
    // Even with the session and its CSRF token (say, leaked), a browser post from elsewhere is
    // refused.
    for extra in [
        ("Origin", "http://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    ] {
        let r = request(
            dash.addr,
            "POST",
            "/api/cards/77/block",
            &[
                ("Cookie", &me.cookie_header()),
                ("X-CSRF-Token", &me.csrf),
                ("Content-Type", "application/json"),
                extra,
            ],
            br#"{"reason":"lost"}"#,
        )
        .await;
        assert_eq!(r.status, 403, "{extra:?}: {}", r.body);
        assert_eq!(r.json()["error"], "forbidden");
    }
    let n: usize = conn.hlen(keys::BLOCKED_INDEX).await.expect("HLEN");
    assert_eq!(n, 0);
    let cross_login = post_login_from(
        [127, 0, 0, 1],
        dash.addr,
        ALICE.0,
        ALICE.1,
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert_eq!(cross_login.status, 403);
    assert!(cross_login.cookie("tapgate_session").is_none());
    // The dashboard's own page posts with its own origin.
    let origin = format!("http://{}", dash.addr);
    let r = request(
        dash.addr,
        "POST",
        "/api/cards/77/block",
        &[
            ("Cookie", &me.cookie_header()),
            ("X-CSRF-Token", &me.csrf),
            ("Content-Type", "application/json"),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        br#"{"reason":"lost"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    dash.stop().await;
}
