//! The high-availability override, `docker-compose.ha.yml`, checked statically (no Docker engine
//! runs these tests): merged over `docker-compose.yml` as `docker compose -f … -f …` would, it
//! must pass the same reference checks as the base file against `.env.example` plus
//! `.env.ha.example`, and it must really remove the single points of failure: three sentinels
//! watching a replicated primary, two clustered EMQX nodes, three bridges in one shared group,
//! each with its own login, finding Redis through the sentinels.

use std::collections::BTreeSet;

use serde_yaml_ng::{Mapping, Value};
use tapgate_checks::compose;
use tapgate_checks::repo::{self, report};

/// Compose's merge of an override into a base: mappings merge key by key, anything else is
/// replaced (volumes and ports of a service replaced whole, which is stricter than compose).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn load(rel: &str) -> Value {
    let text = repo::read(rel).expect("read");
    let mut v: Value = serde_yaml_ng::from_str(&text).expect("yaml");
    v.apply_merge().expect("merge keys");
    v
}

fn merged() -> Value {
    let mut base = load("docker-compose.yml");
    merge(&mut base, load("docker-compose.ha.yml"));
    base
}

fn services(doc: &Value) -> &Mapping {
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("services")
}

fn env_of<'a>(doc: &'a Value, service: &str, var: &str) -> Option<&'a str> {
    services(doc)
        .get(service)?
        .get("environment")?
        .get(var)?
        .as_str()
}

#[test]
fn merged_ha_stack_refers_only_to_what_exists() {
    let dir = repo::Scratch::new().expect("scratch folder");
    let env = format!(
        "{}\n{}",
        repo::read(".env.example").expect(".env.example"),
        repo::read(".env.ha.example").expect(".env.ha.example")
    );
    dir.write("env", &env).expect("write env");
    let text = serde_yaml_ng::to_string(&merged()).expect("yaml");
    dir.write("compose.yml", &text).expect("write merged");
    let findings = compose::check(&dir.rel("compose.yml"), &dir.rel("env")).expect("parses");
    assert!(
        findings.is_empty(),
        "merged HA stack:\n{}",
        report(&findings)
    );
}

#[test]
fn no_single_point_of_failure_is_left() {
    let doc = merged();
    let svcs = services(&doc);

    // Redis: two replicas of the primary (a promoted one still has a replica to confirm with)
    // and three sentinels watching it.
    for replica in ["redis-replica", "redis-replica-2"] {
        let svc = svcs.get(replica).expect(replica);
        let entrypoint: Vec<&str> = svc
            .get("entrypoint")
            .and_then(Value::as_sequence)
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            entrypoint,
            ["/bin/sh", "/tapgate/redis-node.sh", "redis"],
            "{replica} follows the primary `redis`"
        );
        let hostname = svc.get("hostname").and_then(Value::as_str);
        assert_eq!(hostname, Some(replica), "{replica} announces its own name");
    }
    let sentinels: Vec<&str> = svcs
        .keys()
        .filter_map(Value::as_str)
        .filter(|n| n.starts_with("sentinel-"))
        .collect();
    assert_eq!(sentinels.len(), 3, "{sentinels:?}");
    let script = repo::read("docker/sentinel.sh").expect("sentinel.sh");
    assert!(
        script.contains("sentinel monitor tapgate redis 6379 2"),
        "quorum 2 of 3"
    );

    // EMQX: two nodes, one static cluster naming both.
    let seeds = |s: &str| env_of(&doc, s, "EMQX_CLUSTER__STATIC__SEEDS").unwrap_or_default();
    for node in ["emqx", "emqx2"] {
        assert_eq!(
            env_of(&doc, node, "EMQX_CLUSTER__DISCOVERY_STRATEGY"),
            Some("static")
        );
        for name in ["emqx@emqx.tapgate.local", "emqx@emqx2.tapgate.local"] {
            assert!(seeds(node).contains(name), "{node}: {}", seeds(node));
        }
    }
    assert_ne!(
        env_of(&doc, "emqx", "EMQX_NODE__NAME"),
        env_of(&doc, "emqx2", "EMQX_NODE__NAME")
    );

    // Bridges: three, one group, own logins and client ids, Redis through the sentinels, spread
    // over both brokers.
    let bridges = ["bridge", "bridge-2", "bridge-3"];
    let mut logins = BTreeSet::new();
    let mut brokers = BTreeSet::new();
    for b in bridges {
        let redis = env_of(&doc, b, "TAPGATE_REDIS").unwrap_or_default();
        assert!(redis.starts_with("redis+sentinel://"), "{b}: {redis}");
        for s in &sentinels {
            assert!(redis.contains(&format!("{s}:26379")), "{b} misses {s}");
        }
        assert_eq!(
            env_of(&doc, b, "TAPGATE_SHARED_GROUP"),
            Some("${TAPGATE_SHARED_GROUP:-tapgate-bridge}")
        );
        let user = env_of(&doc, b, "TAPGATE_MQTT_USERNAME").expect("login");
        assert_eq!(env_of(&doc, b, "TAPGATE_CLIENT_ID"), Some(user));
        logins.insert(user.to_owned());
        brokers.insert(
            env_of(&doc, b, "TAPGATE_MQTT")
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(logins.len(), 3, "each bridge has its own login: {logins:?}");
    // The monitor finds the primary through the sentinels too.
    let monitor = env_of(&doc, "monitor", "TAPGATE_REDIS").unwrap_or_default();
    assert!(
        monitor.starts_with("redis+sentinel://tapgate-monitor:"),
        "{monitor}"
    );
    assert_eq!(brokers.len(), 2, "bridges on both brokers: {brokers:?}");
    // EMQX creates those logins, and allows bridge logins by the name pattern.
    let entry = repo::read("emqx/entrypoint.sh").expect("entrypoint");
    assert!(entry.contains("tapgate-bridge-2") && entry.contains("tapgate-bridge-3"));
    let acl = repo::read("emqx/etc/acl.conf").expect("acl");
    assert!(acl.contains("^tapgate-bridge(-.+)?$"));
}
