//! The network lab: nodes reach each other and the test, a cut stops exactly the traffic between
//! its two sides, a heal restores it, and dropping the lab leaves no namespace, link or route.

use std::process::Command;

use tapgate_testkit::netns::Lab;

/// `redis-cli -h host -p port PING` run in `namespace`, with a short timeout: whether it answered.
fn pings(namespace: &str, host: &str, port: u16) -> bool {
    Command::new("timeout")
        .args([
            "2",
            "ip",
            "netns",
            "exec",
            namespace,
            "redis-cli",
            "-h",
            host,
        ])
        .args(["-p", &port.to_string(), "PING"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
        .unwrap_or(false)
}

#[test]
fn cuts_and_heals_between_namespaces_and_cleans_up() {
    if tapgate_testkit::netns::skipped("cuts_and_heals_between_namespaces_and_cleans_up") {
        return;
    }
    let which = |cmd: &[&str]| {
        String::from_utf8_lossy(&Command::new("ip").args(cmd).output().expect("ip").stdout)
            .into_owned()
    };
    let (namespaces, routes) = {
        let mut lab = Lab::new(&["a", "b", "c"]);
        let redis = tapgate_testkit::netns::redis_server();
        let dir = lab.dir().display().to_string();
        lab.spawn(
            "a",
            "redis-a",
            &redis,
            &[
                "--port".into(),
                "6379".into(),
                "--bind".into(),
                "0.0.0.0".into(),
                "--protected-mode".into(),
                "no".into(),
                "--save".into(),
                String::new(),
                "--dir".into(),
                dir,
            ],
            6379,
        );
        let a = lab.node("a").ip.to_string();
        let (b, c) = (
            lab.node("b").namespace.clone(),
            lab.node("c").namespace.clone(),
        );
        assert!(pings(&b, &a, 6379), "b reaches a");
        lab.cut(&["a"], &["b"]);
        assert!(!pings(&b, &a, 6379), "the cut stops b → a");
        assert!(pings(&c, &a, 6379), "c, on neither side, still reaches a");
        let here = Command::new("redis-cli")
            .args(["-h", &a, "-p", "6379", "PING"])
            .output()
            .expect("redis-cli");
        assert!(
            String::from_utf8_lossy(&here.stdout).contains("PONG"),
            "the test reaches a across the cut"
        );
        lab.heal();
        assert!(pings(&b, &a, 6379), "healed");
        (
            lab.node("a").namespace.clone(),
            format!("10.77.{}.", a.split('.').nth(2).expect("octet")),
        )
    };
    assert!(
        !which(&["netns", "list"]).contains(&namespaces),
        "namespace left behind"
    );
    assert!(
        !which(&["route", "show", "table", "all"]).contains(&routes),
        "route left behind"
    );
}
