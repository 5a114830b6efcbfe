//! The `tapgate-monitor` binary: `tail` into a pipe is plain text (a sale with its price), on an
//! empty Redis it says where it waits, `hash-password` makes a hash the server accepts,
//! `serve` layers its settings file → environment → flags, and `serve --print-config` shows the
//! result without secrets.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{listening, redis, xadd, Running};
use tapgate_protocol::{
    CardId, Currency, DeviceId, DeviceKind, Event, EventKind, PassInfo, ProductId,
};
use tapgate_testkit::{free_port, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_tapgate-monitor");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_into_a_pipe_is_plain_text() {
    let server = RedisServer::start();
    let mut conn = redis(&server).await;
    let mut e = Event::new(EventKind::PassUsed, 1_700_000_000_000);
    e.card = CardId::new("0412AB").ok();
    e.pass = Some(PassInfo {
        pass_type: ProductId::TEN_TRIP,
        trips_remaining: Some(2),
        expires_at: None,
        remaining_ms: None,
    });
    xadd(&mut conn, "*", &e).await;
    let mut sale = Event::new(EventKind::PassIssued, 1_700_000_001_000);
    sale.card = CardId::new("04AB").ok();
    sale.device = DeviceId::new("t1").ok();
    sale.device_kind = Some(DeviceKind::Terminal);
    sale.pass = Some(PassInfo {
        pass_type: ProductId::from_static("DAY"),
        trips_remaining: None,
        expires_at: None,
        remaining_ms: None,
    });
    sale.price = Some(750);
    sale.currency = Some(Currency::EUR);
    xadd(&mut conn, "*", &sale).await;
    let mut child = Running(
        Command::new(BIN)
            .args(["tail", "--redis", &server.url()])
            .env_remove("NO_COLOR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run tail"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut out = BufReader::new(stdout);
        let mut lines = [String::new(), String::new()];
        for line in &mut lines {
            out.read_line(line).expect("read");
        }
        lines
    })
    .await
    .expect("reader");
    assert_eq!(
        lines[0].trim_end(),
        "2023-11-14T22:13:20Z  ENTRY      journey started: card 0412AB, TEN_TRIP pass, 2 trips remaining"
    );
    assert_eq!(
        lines[1].trim_end(),
        "2023-11-14T22:13:21Z  ISSUED     DAY pass for card 04AB at terminal t1, 7.50 EUR"
    );
}

/// The first line of the child's stderr that satisfies `ok`, or all of it when none does.
async fn stderr_line(child: &mut Running, ok: fn(&str) -> bool) -> Result<String, String> {
    let stderr = child.0.stderr.take().expect("stderr");
    tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.map_err(|e| e.to_string())?;
            if ok(&line) {
                return Ok(line);
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        Err(seen)
    })
    .await
    .expect("reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_on_an_empty_redis_says_where_it_waits() {
    let server = RedisServer::start();
    let port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut child = Running(
        Command::new(BIN)
            .args(["tail", "--redis", &server.url()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tail"),
    );
    // When the note never comes, the child is killed on drop and the reader ends.
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        stderr_line(&mut child, |l| l.contains("waiting for")),
    )
    .await
    .expect("tail said where it waits within 10 s")
    .unwrap_or_else(|seen| panic!("tail never said it waits; stderr:\n{seen}"));
    assert_eq!(
        line,
        format!("waiting for events on 127.0.0.1:{port} (tapgate:events is empty)")
    );
}

#[test]
fn hash_password_output_is_accepted_by_serve() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret\n")
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).expect("utf-8");
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(tapgate_monitor::password::verify("s3cret", hash));
    let empty = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!empty.status.success(), "an empty password is refused");
}

#[test]
fn serve_settings_layer_file_then_env_then_flags() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let toml = dir.path().join("monitor.toml");
    std::fs::write(
        &toml,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\nredis = \"{}\"\npublic_read_only = true\n",
            redis.url()
        ),
    )
    .expect("write config");
    let serve = |env: Option<u16>, flag: Option<u16>| {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&toml)
            .env_remove("TAPGATE_MONITOR_LISTEN")
            .env_remove("TAPGATE_REDIS")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = env {
            cmd.env("TAPGATE_MONITOR_LISTEN", format!("127.0.0.1:{p}"));
        }
        if let Some(p) = flag {
            cmd.arg("--listen").arg(format!("127.0.0.1:{p}"));
        }
        Running(cmd.spawn().expect("run serve"))
    };
    {
        let _s = serve(None, None);
        assert!(
            listening(file_port, Duration::from_secs(10)),
            "file setting"
        );
    }
    {
        let _s = serve(Some(env_port), None);
        assert!(
            listening(env_port, Duration::from_secs(10)),
            "env beats file"
        );
    }
    {
        let _s = serve(Some(env_port), Some(flag_port));
        assert!(
            listening(flag_port, Duration::from_secs(10)),
            "flag beats env"
        );
    }
    std::fs::write(&toml, "listen_on = \"127.0.0.1:1\"\n").expect("write");
    let bad = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&toml)
        .output()
        .expect("run");
    assert!(!bad.status.success(), "unknown settings are refused");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("listen_on"), "{err}");
}

#[test]
fn help_never_shows_the_redis_password() {
    for sub in ["serve", "tail"] {
        let out = Command::new(BIN)
            .args([sub, "--help"])
            .env("TAPGATE_REDIS", "redis://monitor:hunter2-secret@redis:6379")
            .output()
            .expect("run --help");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("TAPGATE_REDIS"), "{text}");
        assert!(
            !text.contains("hunter2"),
            "{sub} --help shows the secret:\n{text}"
        );
    }
}

#[test]
fn placeholder_redis_passwords_are_refused_at_start() {
    let url = "redis://monitor:change-me-redis-monitor@127.0.0.1:1";
    let dir = tempfile::tempdir().expect("dir");
    let toml = dir.path().join("monitor.toml");
    std::fs::write(&toml, "public_read_only = true\n").expect("write");
    for args in [
        vec!["serve", "--config", toml.to_str().expect("path")],
        vec!["tail"],
        vec!["tail", "--audit"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env("TAPGATE_REDIS", url)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} started with a placeholder");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("placeholder") && err.contains("redis"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("change-me-redis-monitor"),
            "the secret is not echoed: {err}"
        );
    }
}

#[test]
fn serve_makes_its_session_key_file_once_and_refuses_a_bad_one() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let toml = dir.path().join("monitor.toml");
    std::fs::write(&toml, "public_read_only = true\n").expect("write config");
    let key = dir.path().join("session.key");
    // Each run logs into its own file, read while it runs.
    let run = std::cell::Cell::new(0);
    let serve = |key_file: Option<&std::path::Path>| {
        let port = free_port();
        run.set(run.get() + 1);
        let log = dir.path().join(format!("serve-{}.log", run.get()));
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&toml)
            .args(["--redis", &redis.url()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("TAPGATE_MONITOR_SESSION_KEY_FILE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(k) = key_file {
            cmd.env("TAPGATE_MONITOR_SESSION_KEY_FILE", k);
        }
        (Running(cmd.spawn().expect("run serve")), port, log)
    };
    let said = |log: &std::path::Path, what: &str| -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(what)) {
                return line.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve never said {what:?}; it said:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let (first, port, log) = serve(Some(&key));
    let line = said(&log, "Session key file created");
    assert!(line.contains(&key.display().to_string()), "{line}");
    assert!(listening(port, Duration::from_secs(10)));
    drop(first);
    let made = std::fs::read_to_string(&key).expect("the key file exists");
    assert_eq!(made.trim().len(), 64, "64 hex digits");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "only its owner reads it: {mode:o}");

    let (again, _, log) = serve(Some(&key));
    said(&log, "Session key read");
    drop(again);
    assert_eq!(std::fs::read_to_string(&key).expect("read"), made, "kept");

    let (none, _, log) = serve(None);
    let warning = said(&log, "No session_key_file");
    assert!(
        warning.contains("WARN") && warning.contains("restarts"),
        "{warning}"
    );
    drop(none);

    std::fs::write(&key, "0123abcd\n").expect("write");
    let bad = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&toml)
        .args(["--redis", &redis.url()])
        .arg("--session-key-file")
        .arg(&key)
        .output()
        .expect("run");
    assert!(!bad.status.success(), "a short key is refused");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&key.display().to_string()) && err.contains("64 hex digits"),
        "{err}"
    );
    assert!(!err.contains("0123abcd"), "the key is not echoed: {err}");
}

#[test]
fn serve_refuses_a_bad_fares_file_naming_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    let fares = dir.path().join("fares.toml");
    std::fs::write(&fares, "currency = \"EURO\"\ntime_zone = \"UTC\"\n").expect("write");
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--fares")
        .arg(&fares)
        .args(["--redis", "redis://127.0.0.1:1", "--listen", "127.0.0.1:0"])
        .args(["--public-read-only", "true"])
        .env_remove("TAPGATE_FARES")
        .output()
        .expect("run");
    assert!(!out.status.success(), "serve started with a bad fares file");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:1: currency", fares.display())),
        "{err}"
    );
}

#[test]
fn serve_print_config_shows_the_layers_without_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let toml = dir.path().join("monitor.toml");
    let hash =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$QmV0dGVyVGhhbk5vdGhpbmdCZXR0ZXJUaGFu";
    std::fs::write(
        &toml,
        format!("history = 7\n[[operators]]\nname = \"ops\"\npassword_hash = \"{hash}\"\n"),
    )
    .expect("write config");
    let out = Command::new(BIN)
        .args(["serve", "--print-config", "--config"])
        .arg(&toml)
        .args(["--session-ttl", "90m"])
        .env_clear()
        .env("TAPGATE_REDIS", "redis://:s3cret-redis@127.0.0.1:6390")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "history = 7",
        "session_ttl = \"1h 30m\"",
        "redis = \"redis://***@127.0.0.1:6390\"",
        "password_hash = \"***\"",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains("s3cret") && !text.contains("argon2"),
        "{text}"
    );
}
