//! A login flood against the real `tapgate-monitor serve` binary as a child process: 64
//! concurrent logins with random names (each would cost an argon2 check of the decoy hash at
//! the real parameters, 19 MiB) must keep the process's peak RSS under 150 MB, and a logged-in
//! operator must get answers within 1 s meanwhile. Prints what it measured.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{cheap_hash, login, request, urlencode, Running, ALICE};
use tapgate_testkit::{free_port, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_tapgate-monitor");

/// `VmRSS` and `VmHWM` (peak) of `pid`, in kB.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_memory_bounded_and_operators_served() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let toml = dir.path().join("monitor.toml");
    // Many attackers: the per-address limit is set out of the way so that every login reaches
    // the password check, and only the global bound stands between them and memory.
    std::fs::write(
        &toml,
        format!(
            "listen = \"127.0.0.1:{port}\"\nredis = \"{}\"\nlogin_attempts_per_address = 100000\n\
             [[operators]]\nname = \"alice\"\npassword_hash = \"{}\"\n",
            server.url(),
            cheap_hash(ALICE.1)
        ),
    )
    .expect("write config");
    let child = Running(
        Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&toml)
            .env_remove("TAPGATE_REDIS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run serve"),
    );
    let pid = child.0.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the monitor did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let me = login(addr, ALICE).await;
    let (idle_rss, _) = rss_kb(pid);

    let (cookie, token) = support::login_form(addr).await;
    let flood_started = Instant::now();
    let mut flood = Vec::new();
    for i in 0..64u8 {
        let (cookie, token) = (cookie.clone(), token.clone());
        flood.push(tokio::spawn(async move {
            let mut name = [0u8; 8];
            getrandom::fill(&mut name).expect("random");
            let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
            let body = format!("name=u{name}&password={}&csrf={token}", urlencode("guess"));
            // Each from its own address, as a botnet would.
            support::request_from(
                [127, 0, 1, i + 1],
                addr,
                "POST",
                "/login",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Cookie", &format!("tapgate_login={cookie}")),
                ],
                body.as_bytes(),
            )
            .await
            .status
        }));
    }
    // Meanwhile the operator keeps using the dashboard.
    let mut slowest = Duration::ZERO;
    let mut peak_seen = 0;
    let mut asked = 0;
    while !flood.iter().all(|t| t.is_finished()) || asked < 5 {
        let t = Instant::now();
        let r = request(
            addr,
            "GET",
            "/api/counters",
            &[("Cookie", &me.cookie_header())],
            b"",
        )
        .await;
        let took = t.elapsed();
        assert_eq!(r.status, 200, "{}", r.body);
        slowest = slowest.max(took);
        asked += 1;
        peak_seen = peak_seen.max(rss_kb(pid).0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in flood {
        *statuses.entry(t.await.expect("task")).or_insert(0) += 1;
    }
    let flood_took = flood_started.elapsed();
    let (rss, hwm) = rss_kb(pid);
    println!(
        "64 concurrent logins with random names: statuses {statuses:?} in {} ms; \
         RSS idle {} MB, sampled peak {} MB, after {} MB, VmHWM {} MB; \
         {asked} dashboard reads meanwhile, slowest {} ms",
        flood_took.as_millis(),
        idle_rss / 1024,
        peak_seen / 1024,
        rss / 1024,
        hwm / 1024,
        slowest.as_millis()
    );
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 503),
        "only refusals: {statuses:?}"
    );
    assert!(hwm < 150 * 1024, "peak RSS {} kB", hwm);
    assert!(slowest < Duration::from_secs(1), "slowest read {slowest:?}");
}
