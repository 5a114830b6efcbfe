//! A real Redis started with the deployment's ACL users, written by `docker/redis-users.sh` (the
//! file compose and `scripts/demo` start Redis with), for tests that try what each component's
//! credential can and cannot do.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::redis::RedisServer;

/// (environment variable, Redis user, password) of every user `docker/redis-users.sh` writes.
pub const USERS: [(&str, &str, &str); 6] = [
    ("REDIS_PASSWORD", "tapgate-admin", "admin-pw-0123456789"),
    (
        "REDIS_BRIDGE_PASSWORD",
        "tapgate-bridge",
        "bridge-pw-0123456789",
    ),
    (
        "REDIS_MONITOR_PASSWORD",
        "tapgate-monitor",
        "monitor-pw-0123456789",
    ),
    (
        "REDIS_EMQX_PASSWORD",
        "tapgate-emqx",
        "emqx-pw-0123456789ab",
    ),
    (
        "REDIS_GRAFANA_PASSWORD",
        "tapgate-grafana",
        "grafana-pw-0123456789",
    ),
    (
        "REDIS_TAIL_PASSWORD",
        "tapgate-tail",
        "tail-pw-0123456789ab",
    ),
];

/// The script, from the repository root.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/redis-users.sh")
}

/// Runs `docker/redis-users.sh` with only `env` (and `PATH`) into `out`; its exit status and
/// stderr.
pub fn write_users(out: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new("sh");
    cmd.arg(script())
        .arg(out)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run sh docker/redis-users.sh");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The password of `user` in [`USERS`].
pub fn password(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|u| u.1 == user)
        .map(|u| u.2)
        .unwrap_or_else(|| panic!("no Redis user {user}"))
}

/// A Redis URL logging in as `user` to `server`.
pub fn url_as(server: &RedisServer, user: &str) -> String {
    format!(
        "redis://{user}:{}@127.0.0.1:{}",
        password(user),
        server.port()
    )
}

/// A Redis with every user of [`USERS`], and the folder holding its ACL file (keep it alive).
pub fn redis_with_users() -> (RedisServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("users.acl");
    let env: Vec<(&str, &str)> = USERS.iter().map(|(k, _, v)| (*k, *v)).collect();
    let (ok, err) = write_users(&acl, &env);
    assert!(ok, "redis-users.sh failed: {err}");
    let path = acl.to_string_lossy().into_owned();
    (RedisServer::with_args(&["--aclfile", &path]), dir)
}
