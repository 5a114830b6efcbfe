//! A stolen device's certificate, revoked with the admin tool, on a real mosquitto.
//!
//! The CA and the broker's certificate come from docker/make-certs.sh; the devices'
//! certificates, the revocation and the CRL from the `tapgate-admin cert` commands (the binary).
//! mosquitto runs the repository's policy and mosquitto/tls.conf with client certificates
//! required and `crlfile` on, the devices' logins made by `tapgate-admin`; clients connect with
//! the settings a device reads (`mqtt_ca`, `mqtt_cert`, `mqtt_key`). The stolen certificate of
//! g1 is refused at the handshake; g1's new certificate and g2's log in with their own rights;
//! g2's, revoked while the broker runs, is refused on new connections once mosquitto has had a
//! SIGHUP (`systemctl reload mosquitto`), while g1 still logs in. With a CRL URL (EMQX's way to
//! find the CRL), the same holds on mosquitto. And without a broker: `cert`
//! commands run at once on one CA folder take turns on its lock and lose no revocation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tapgate_admin::{Broker, Settings};
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_runtime::{BrokerSettings, TlsFiles};
use tapgate_testkit::session::MqttSession;
use tapgate_testkit::{free_port, Mosquitto};

const ADMIN_PW: &str = "admin-pw-for-cert-tests";
/// mosquitto's pid file, in the CA folder, for the SIGHUP.
const PID_FILE: &str = "mosquitto.pid";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs the tapgate-admin binary; (success, stdout, stderr).
fn admin(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
        .args(args)
        .env_remove("TAPGATE_CA_DIR")
        .output()
        .expect("run tapgate-admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs tapgate-admin and insists that it succeeds; its stdout.
fn admin_ok(args: &[&str]) -> String {
    let (ok, out, err) = admin(args);
    assert!(ok, "tapgate-admin {args:?} failed:\n{out}{err}");
    assert!(
        !out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"),
        "a key was printed"
    );
    out
}

/// A CA folder made by docker/make-certs.sh for `localhost`.
fn make_certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("sh")
        .arg(repo("docker/make-certs.sh"))
        .arg(dir.path())
        .arg("localhost")
        .env("TAPGATE_BROKER_UID", "")
        .output()
        .expect("run docker/make-certs.sh");
    assert!(
        out.status.success(),
        "make-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// mosquitto/tls.conf with client certificates and `crlfile` on, the files in `dir`.
fn tls_listener(dir: &Path, port: u16) -> String {
    let template = std::fs::read_to_string(repo("mosquitto/tls.conf")).expect("tls.conf");
    let file = |name: &str| dir.join(name).display().to_string();
    let mut out = String::new();
    for line in template.lines() {
        let line = match line {
            "listener 8883" => format!("listener {port} 127.0.0.1"),
            l if l.starts_with("certfile ") => format!("certfile {}", file("server.crt")),
            l if l.starts_with("keyfile ") => format!("keyfile {}", file("server.key")),
            l if l.starts_with("cafile ") => format!("cafile {}", file("ca.crt")),
            l if l.starts_with("#crlfile ") => format!("crlfile {}", file("crl.pem")),
            "#require_certificate true"
            | "#use_identity_as_username true"
            | "#use_username_as_clientid true" => line[1..].to_owned(),
            l => l.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    for needed in [
        "\ncrlfile ",
        "\nrequire_certificate true",
        "\nuse_identity_as_username true",
    ] {
        assert!(out.contains(needed), "mosquitto/tls.conf has no {needed:?}");
    }
    out
}

/// mosquitto with the policy, the TLS listener and gates g1 and g2 provisioned; its TLS port.
async fn broker(dir: &Path) -> (Mosquitto, u16) {
    let port = free_port();
    let policy = std::fs::read_to_string(repo("mosquitto/tapgate.conf")).expect("tapgate.conf");
    let broker = Mosquitto::with_dynsec(
        "admin",
        ADMIN_PW,
        &format!(
            "{policy}\n{}\npid_file {}\n",
            tls_listener(dir, port),
            dir.join(PID_FILE).display()
        ),
    );
    let settings = Settings {
        mqtt: tapgate_protocol::broker::BrokerUrl::parse(&broker.url()).expect("url"),
        admin_password: Some(ADMIN_PW.into()),
        timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    let mut logins = Broker::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("admin connects: {e}\n{}", broker.log()));
    for id in ["g1", "g2"] {
        let device = DeviceId::new(id).expect("id");
        logins
            .add_device(&device, DeviceKind::Gate, "pw-for-cert-tests-0123456789")
            .await
            .unwrap_or_else(|e| panic!("device add {id}: {e}"));
    }
    logins.close().await;
    (broker, port)
}

/// Sends mosquitto a SIGHUP, as `systemctl reload mosquitto` does, and waits until it has
/// reloaded its configuration.
async fn reload(broker: &Mosquitto, dir: &Path) {
    const DONE: &str = "Reloading config";
    let pid = std::fs::read_to_string(dir.join(PID_FILE)).expect("mosquitto's pid file");
    let before = broker.log().matches(DONE).count();
    let out = Command::new("kill")
        .args(["-HUP", pid.trim()])
        .output()
        .expect("run kill");
    assert!(
        out.status.success(),
        "kill -HUP {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.log().matches(DONE).count() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "mosquitto did not reload within 10 s\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects over TLS as a device does, with `cert` and `key`, and no password.
async fn connect(
    port: u16,
    dir: &Path,
    id: &str,
    cert: &Path,
    key: &Path,
) -> Result<MqttSession, String> {
    let opts = BrokerSettings::new(&format!("mqtts://localhost:{port}"))
        .expect("url")
        .with_tls(TlsFiles {
            ca: Some(dir.join("ca.crt")),
            cert: Some(cert.to_owned()),
            key: Some(key.to_owned()),
        })
        .with_keep_alive(Duration::from_secs(5))
        .options(id)
        .expect("device options");
    MqttSession::connect(opts).await
}

#[tokio::test]
async fn a_certificate_revoked_with_the_admin_tool_is_refused_and_the_new_one_logs_in() {
    let ca = make_certs();
    let dir = ca.path();
    let ca_dir = dir.to_str().expect("utf-8 path");
    // The first CRL, empty, so that crlfile can be on from the start.
    admin_ok(&["cert", "crl", "--ca-dir", ca_dir]);
    for id in ["g1", "g2"] {
        admin_ok(&["cert", "issue", id, "--ca-dir", ca_dir]);
    }
    // g1 is stolen, with its key.
    let stolen = (dir.join("stolen-g1.crt"), dir.join("stolen-g1.key"));
    std::fs::copy(dir.join("g1.crt"), &stolen.0).expect("copy");
    std::fs::copy(dir.join("g1.key"), &stolen.1).expect("copy");
    let out = admin_ok(&["cert", "revoke", "g1", "--ca-dir", ca_dir]);
    assert_eq!(out.lines().count(), 1, "one certificate revoked: {out}");
    admin_ok(&["cert", "issue", "g1", "--ca-dir", ca_dir]);
    let (broker, port) = broker(dir).await;
    let topics = Topics::default();
    let decisions = |id: &str| topics.decision(DeviceKind::Gate, &DeviceId::new(id).expect("id"));
    revoked_refused_current_accepted(&broker, port, dir, &stolen, true).await;

    // A revocation while the broker runs: the old CRL stays in force until mosquitto is told
    // to read it again, and a SIGHUP (`systemctl reload mosquitto`) is enough, as docs/deploy.md
    // says.
    admin_ok(&[
        "cert",
        "revoke",
        "g2",
        "--ca-dir",
        ca_dir,
        "--reason",
        "superseded",
    ]);
    let (g2_cert, g2_key) = (dir.join("g2.crt"), dir.join("g2.key"));
    let mut g2_open = connect(port, dir, "g2", &g2_cert, &g2_key)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "g2 before the broker reads the new CRL: {e}\n{}",
                broker.log()
            )
        });
    reload(&broker, dir).await;
    // The reload checks new handshakes only: a session already open stays open, which is why
    // the steps for a stolen device begin with `device remove`.
    assert_eq!(
        g2_open.subscribe(&decisions("g2")).await,
        Ok(true),
        "g2's session opened before the SIGHUP\n{}",
        broker.log()
    );
    if let Ok(mut s) = connect(port, dir, "g2", &g2_cert, &g2_key).await {
        panic!(
            "g2's certificate, revoked, logged in after the SIGHUP (its decisions: {:?})\n{}",
            s.subscribe(&decisions("g2")).await,
            broker.log()
        );
    }
    let (g1_cert, g1_key) = (dir.join("g1.crt"), dir.join("g1.key"));
    let mut g1 = connect(port, dir, "g1", &g1_cert, &g1_key)
        .await
        .unwrap_or_else(|e| panic!("g1 after the SIGHUP: {e}\n{}", broker.log()));
    assert_eq!(
        g1.subscribe(&decisions("g1")).await,
        Ok(true),
        "g1's rights after the SIGHUP"
    );
}

/// With a CRL URL (for EMQX, which fetches the CRL from it), certificates name it and the CRL
/// names it as its issuing distribution point; mosquitto, reading the same CRL from its file,
/// still refuses the revoked certificate and lets the others in (OpenSSL matches the CRL's scope
/// to the certificate's distribution point).
#[tokio::test]
async fn with_a_crl_url_mosquitto_still_refuses_the_revoked_certificate() {
    const URL: &str = "http://ca.tapgate.test:8080/crl.pem";
    let ca = make_certs();
    let dir = ca.path();
    let ca_dir = dir.to_str().expect("utf-8 path");
    admin_ok(&["cert", "issue", "g1", "--ca-dir", ca_dir, "--crl-url", URL]);
    // Kept: g2's certificate names it without the flag.
    admin_ok(&["cert", "issue", "g2", "--ca-dir", ca_dir]);
    let stolen = (dir.join("stolen-g1.crt"), dir.join("stolen-g1.key"));
    std::fs::copy(dir.join("g1.crt"), &stolen.0).expect("copy");
    std::fs::copy(dir.join("g1.key"), &stolen.1).expect("copy");
    let (ok, _, err) = admin(&["cert", "revoke", "g1", "--ca-dir", ca_dir]);
    assert!(ok, "{err}");
    assert!(err.contains(URL), "the CRL's URL is named: {err}");
    admin_ok(&["cert", "issue", "g1", "--ca-dir", ca_dir]);
    for file in ["g1.crt", "g2.crt", "crl.pem"] {
        let text = openssl_text(&dir.join(file));
        assert!(text.contains(URL), "{file} names no {URL}:\n{text}");
    }
    let (broker, port) = broker(dir).await;
    revoked_refused_current_accepted(&broker, port, dir, &stolen, false).await;
}

/// The revoked certificate `stolen` (g1's) cannot log in; g1's and g2's current certificates
/// (`<id>.crt` in `dir`) do, each with its own device's rights, and with `only_own` no other's.
async fn revoked_refused_current_accepted(
    broker: &Mosquitto,
    port: u16,
    dir: &Path,
    stolen: &(PathBuf, PathBuf),
    only_own: bool,
) {
    let topics = Topics::default();
    let decisions = |id: &str| topics.decision(DeviceKind::Gate, &DeviceId::new(id).expect("id"));
    if let Ok(mut s) = connect(port, dir, "g1", &stolen.0, &stolen.1).await {
        panic!(
            "the revoked certificate logged in (its decisions: {:?})\n{}",
            s.subscribe(&decisions("g1")).await,
            broker.log()
        );
    }
    for id in ["g1", "g2"] {
        let (cert, key) = (dir.join(format!("{id}.crt")), dir.join(format!("{id}.key")));
        let mut s = connect(port, dir, id, &cert, &key)
            .await
            .unwrap_or_else(|e| panic!("{id}'s current certificate: {e}\n{}", broker.log()));
        assert_eq!(s.subscribe(&decisions(id)).await, Ok(true), "{id}'s rights");
        if only_own {
            let other = if id == "g1" { "g2" } else { "g1" };
            assert_eq!(
                s.subscribe(&decisions(other)).await,
                Ok(false),
                "not {other}'s"
            );
        }
    }
}

/// `openssl x509 -text` or `openssl crl -text` of a PEM file.
fn openssl_text(path: &Path) -> String {
    let kind = if path.extension().is_some_and(|e| e == "crt") {
        "x509"
    } else {
        "crl"
    };
    let out = Command::new("openssl")
        .args([kind, "-noout", "-text", "-in"])
        .arg(path)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {kind} {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn revoking_an_unknown_device_fails_and_leaves_the_folder_as_it_was() {
    let ca = make_certs();
    let ca_dir = ca.path().to_str().expect("utf-8 path");
    admin_ok(&["cert", "issue", "g1", "--ca-dir", ca_dir]);
    admin_ok(&["cert", "crl", "--ca-dir", ca_dir]);
    let snapshot = || {
        let mut files: Vec<_> = std::fs::read_dir(ca.path())
            .expect("dir")
            .map(|e| {
                let path = e.expect("entry").path();
                let text = std::fs::read(&path).expect("read");
                (path, text)
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let (ok, _, err) = admin(&["cert", "revoke", "g9", "--ca-dir", ca_dir]);
    assert!(!ok, "g9 has no certificate");
    assert!(err.contains("\"g9\"") && err.contains("--cert"), "{err}");
    assert_eq!(snapshot(), before);
    let (ok, _, err) = admin(&["cert", "revoke", "tapgate-bridge", "--ca-dir", ca_dir]);
    assert!(!ok && err.contains("reserved"), "{err}");
    let (ok, _, err) = admin(&["cert", "issue", "g3", "--ca-dir", "/nonexistent/ca"]);
    assert!(!ok && err.contains("/nonexistent/ca"), "{err}");
    assert_eq!(snapshot(), before);
}

/// The serials crl.pem lists, as `openssl crl` prints them (upper-case hex).
fn crl_serials(dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(dir.join("crl.pem"))
        .output()
        .expect("run openssl crl");
    assert!(
        out.status.success(),
        "openssl crl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cert_commands_run_at_once_on_one_folder_lose_no_revocation() {
    const REVOKED: usize = 8;
    const ISSUED: usize = 4;
    let ca = make_certs();
    let dir = ca.path();
    let ca_dir = dir.to_str().expect("utf-8 path");
    for i in 0..REVOKED {
        admin_ok(&["cert", "issue", &format!("r{i}"), "--ca-dir", ca_dir]);
    }
    // Every command at once, each in its own process, as two operators (or an operator and
    // cron) would run them. Without the folder's lock each of three runs lost one: a revocation
    // missing from issued.toml, or on record but not on crl.pem.
    let mut running = Vec::new();
    for i in 0..REVOKED.max(ISSUED) {
        let mut commands = Vec::new();
        if i < REVOKED {
            commands.push(vec![
                "cert".to_owned(),
                "revoke".to_owned(),
                format!("r{i}"),
            ]);
        }
        if i < ISSUED {
            commands.push(vec!["cert".to_owned(), "issue".to_owned(), format!("n{i}")]);
        }
        for args in commands {
            let child = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
                .args(&args)
                .args(["--ca-dir", ca_dir])
                .env_remove("TAPGATE_CA_DIR")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run tapgate-admin");
            running.push((args, child));
        }
    }
    for (args, child) in running {
        let out = child.wait_with_output().expect("tapgate-admin ends");
        assert!(
            out.status.success(),
            "tapgate-admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let text = std::fs::read_to_string(dir.join("issued.toml")).expect("issued.toml");
    let db: tapgate_admin::ca::Database = toml::from_str(&text).expect("issued.toml parses");
    let crl = crl_serials(dir);
    for i in 0..REVOKED {
        let device = format!("r{i}");
        let record = db
            .certs
            .iter()
            .find(|c| c.device == device)
            .unwrap_or_else(|| panic!("{device} is not on record:\n{text}"));
        assert!(
            record.revoked.is_some(),
            "{device}'s revocation was lost:\n{text}"
        );
        assert!(
            crl.contains(&format!("Serial Number: {}", record.serial.to_uppercase())),
            "{device}'s serial {} is not on crl.pem:\n{crl}",
            record.serial
        );
    }
    for i in 0..ISSUED {
        let device = format!("n{i}");
        assert!(
            db.certs
                .iter()
                .any(|c| c.device == device && c.revoked.is_none()),
            "{device}'s certificate is not on record:\n{text}"
        );
    }
    // One CRL per revocation, each numbered one past the last.
    assert_eq!(db.crl_number, REVOKED as u64, "{text}");
}

#[test]
fn a_command_that_finds_the_folder_locked_waits_then_names_the_lock() {
    let ca = make_certs();
    let dir = ca.path();
    let ca_dir = dir.to_str().expect("utf-8 path");
    admin_ok(&["cert", "issue", "g1", "--ca-dir", ca_dir]);
    // Another command writing: it holds the lock as long as this file stays locked.
    let lock = std::fs::File::open(dir.join(tapgate_admin::ca::LOCK)).expect("the lock file");
    lock.lock().expect("lock");
    let started = std::time::Instant::now();
    let (ok, _, err) = admin(&[
        "cert",
        "revoke",
        "g1",
        "--ca-dir",
        ca_dir,
        "--lock-wait",
        "300ms",
    ]);
    assert!(!ok, "revoked while the folder was locked");
    assert!(started.elapsed() >= Duration::from_millis(300), "no wait");
    assert!(
        err.contains(&dir.join("issued.toml.lock").display().to_string())
            && err.contains("--lock-wait"),
        "{err}"
    );
    assert!(
        !dir.join("crl.pem").exists(),
        "a CRL written without the lock"
    );
    drop(lock);
    admin_ok(&["cert", "revoke", "g1", "--ca-dir", ca_dir]);
}
