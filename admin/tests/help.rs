//! `tapgate-admin --help` shows which environment variables it reads, never their values: a
//! broker URL or an API address may hold a password (`mqtt://admin:secret@host`).

use std::process::Command;

const SECRET: &str = "pw-in-env-4f9c2d";

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    let with_secret = [
        (
            "TAPGATE_MQTT",
            format!("mqtt://admin:{SECRET}@broker.internal:1883"),
        ),
        (
            "TAPGATE_EMQX_API",
            format!("http://key:{SECRET}@emqx.internal:18083"),
        ),
        ("TAPGATE_EMQX_API_KEY", SECRET.to_owned()),
        ("TAPGATE_ADMIN_PASSWORD", SECRET.to_owned()),
        ("TAPGATE_EMQX_API_SECRET", SECRET.to_owned()),
        ("TAPGATE_DEVICE_PASSWORD", SECRET.to_owned()),
        ("TAPGATE_SERVICE_PASSWORD", SECRET.to_owned()),
        (
            "TAPGATE_REDIS",
            format!("redis://tapgate-admin:{SECRET}@redis.internal:6379"),
        ),
    ];
    for args in [
        vec!["--help"],
        vec!["device", "add", "--help"],
        vec!["service", "add", "--help"],
        vec!["card", "replace", "--help"],
        vec!["cert", "issue", "--help"],
        vec!["cert", "revoke", "--help"],
        vec!["cert", "crl", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
            .args(&args)
            .env_clear()
            .envs(with_secret.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run tapgate-admin");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            text.contains("TAPGATE_"),
            "{args:?} names its variables: {text}"
        );
        assert!(!text.contains(SECRET), "{args:?} prints a secret:\n{text}");
    }
}

/// `--print-config` prints the settings the command would run with, secrets redacted: the
/// environment's two secrets and a broker URL's password.
#[test]
fn print_config_shows_the_settings_and_hides_the_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_tapgate-admin"))
        .args(["--print-config", "--timeout", "3s", "--prefix", "transit"])
        .env_clear()
        .env(
            "TAPGATE_MQTT",
            format!("mqtt://admin:{SECRET}@broker.internal:1884"),
        )
        .env("TAPGATE_ADMIN_PASSWORD", SECRET)
        .env("TAPGATE_EMQX_API_SECRET", SECRET)
        .output()
        .expect("run tapgate-admin");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(SECRET), "a secret is shown:\n{text}");
    for line in [
        "timeout = \"3s\"",
        "prefix = \"transit\"",
        "admin_password = \"***\"",
        "broker.internal:1884",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}
