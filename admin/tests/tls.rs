//! With `mqtts://` the admin tool speaks TLS from its first byte, so the broker's administrator
//! password never crosses the network in clear; with `mqtt://` the same password is visible on
//! the wire (the control that shows the listener would see it).

use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "admin-secret-0123456789";

/// The first bytes a client sends to a listener that never answers.
fn first_bytes(url_scheme: &str, ca: Option<&std::path::Path>) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let reader = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut socket = loop {
            match listener.accept() {
                Ok((socket, _)) => break socket,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("the admin tool never connected: {e}"),
            }
        };
        socket.set_nonblocking(false).expect("blocking");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Whatever arrives before the client gives up (or 5 s pass).
        while let Ok(n) = socket.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"));
    cmd.args(["--timeout", "2s", "device", "list"])
        .env_clear()
        .env("TAPGATE_MQTT", format!("{url_scheme}://127.0.0.1:{port}"))
        .env("TAPGATE_ADMIN_PASSWORD", PASSWORD);
    if let Some(ca) = ca {
        cmd.env("TAPGATE_MQTT_CA", ca);
    }
    let out = cmd.output().expect("tapgate-admin runs");
    assert!(
        !out.status.success(),
        "nothing answers, so the command fails"
    );
    reader.join().expect("reader")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn mqtts_sends_a_tls_handshake_and_never_the_password_in_clear() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=tapgate test CA", "-keyout"])
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl runs");
    assert!(status.status.success(), "{status:?}");

    let tls = first_bytes("mqtts", Some(&ca));
    assert_eq!(
        tls.first(),
        Some(&0x16),
        "a TLS handshake record first: {tls:02x?}"
    );
    assert!(!contains(&tls, PASSWORD.as_bytes()), "password in clear");

    // Without TLS the MQTT CONNECT, password and all, is what the listener sees: the check
    // above would catch it.
    let plain = first_bytes("mqtt", None);
    assert_eq!(plain.first(), Some(&0x10), "{plain:02x?}");
    assert!(contains(&plain, PASSWORD.as_bytes()));
}
