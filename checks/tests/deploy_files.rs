//! The deployment files, checked statically: compose, EMQX, Grafana, Prometheus.
//!
//! No Docker engine runs these tests; every file is parsed and every reference between files
//! followed. Each check is also shown to refuse a broken input, so it cannot pass vacuously.

use serde_json::Value;
use tapgate_broker_model::policy as access;
use tapgate_checks::emqx::{self, Action};
use tapgate_checks::grafana;
use tapgate_checks::keys;
use tapgate_checks::repo::{self, report};
use tapgate_checks::{compose, envfile};
use tapgate_protocol::Topics;

#[test]
fn compose_file_refers_only_to_what_exists() {
    let findings = compose::check("docker-compose.yml", ".env.example").expect("compose parses");
    assert!(
        findings.is_empty(),
        "docker-compose.yml:\n{}",
        report(&findings)
    );
}

#[test]
fn compose_check_refuses_broken_references() {
    let dir = repo::Scratch::new().expect("scratch folder");
    dir.write("env", "A=1\nUNUSED=2\n").expect("write env");
    dir.write(
        "compose.yml",
        "services:\n  a:\n    build:\n      context: .\n      dockerfile: docker/missing.Dockerfile\n    \
         volumes:\n      - ./no/such/file:/x:ro\n      - undeclared:/data\n    \
         environment:\n      SOME_PASSWORD: hunter2\n      B: ${B}\n    \
         depends_on:\n      b:\n        condition: service_healthy\n  b:\n    image: x\n\
         name: x\nconfigs:\n  c:\n    content: x\n",
    )
    .expect("write compose");
    let findings = compose::check(&dir.rel("compose.yml"), &dir.rel("env")).expect("parses");
    let text = report(&findings);
    for expected in [
        "docker/missing.Dockerfile does not exist",
        "no/such/file does not exist",
        "volume undeclared is not declared",
        "SOME_PASSWORD is written in the file",
        "variable B is not listed",
        "lists UNUSED, which the compose file never uses",
        "b has no healthcheck",
        "top-level name: docker-compose 1.29 refuses it",
        "config c: content needs Compose 2.23",
    ] {
        assert!(
            text.contains(expected),
            "expected {expected:?} among:\n{text}"
        );
    }
}

#[test]
fn env_example_has_no_real_secrets() {
    let vars = envfile::load(".env.example").expect(".env.example");
    for (name, value) in &vars {
        if ["PASSWORD", "COOKIE", "SECRET", "API_KEY", "TOKEN"]
            .iter()
            .any(|s| name.contains(s))
        {
            assert!(
                value.starts_with("change-me"),
                "{name} in .env.example must be a placeholder starting with change-me (which the \
                 services refuse), not {value:?}"
            );
        }
    }
}

#[test]
fn emqx_config_parses_as_hocon_and_sets_the_policy() {
    let conf = emqx::load_hocon("emqx/etc/emqx.conf").expect("emqx.conf is HOCON");
    let findings = emqx::check_broker("emqx/etc/emqx.conf", &conf.root);
    assert!(findings.is_empty(), "{}", report(&findings));
    // The rules file is included by its container path, which compose mounts.
    assert_eq!(conf.includes, ["/opt/emqx/etc/tapgate-rules.hocon"]);
    let compose_text = repo::read("docker-compose.yml").expect("compose");
    assert!(compose_text.contains(":/opt/emqx/etc/tapgate-rules.hocon:ro"));
    // Both rules files parse; the full one writes every documented counter.
    let rules = emqx::load_hocon("emqx/etc/tapgate-rules.hocon").expect("rules are HOCON");
    let findings = emqx::check_rules("emqx/etc/tapgate-rules.hocon", &rules.root);
    assert!(findings.is_empty(), "{}", report(&findings));
    emqx::load_hocon("emqx/etc/tapgate-rules-none.hocon").expect("empty rules are HOCON");
}

#[test]
fn emqx_files_that_do_not_parse_are_named_with_their_line() {
    // The model's own tests show what it refuses; here, that the file's path reaches the error.
    let dir = repo::Scratch::new().expect("scratch folder");
    dir.write("b.conf", "x = 1\na = ${missing}\n")
        .expect("write");
    let rel = dir.rel("b.conf");
    let err = emqx::load_hocon(&rel).expect_err("substitution refused");
    assert!(err.to_string().starts_with(&format!("{rel}:2: ")), "{err}");
    dir.write("acl.conf", "{allow, all").expect("write");
    let rel = dir.rel("acl.conf");
    let err = emqx::load_acl(&rel).expect_err("unterminated term refused");
    assert!(err.to_string().starts_with(&rel), "{err}");
}

/// The built-in database rules `tapgate-admin device add` writes for each device of the cases.
fn db_rules(topics: &Topics, username: &str) -> Vec<emqx::DbRule> {
    access::DEVICES
        .iter()
        .filter(|(_, id)| *id == username)
        .flat_map(|(kind, id)| {
            let dev = tapgate_protocol::DeviceId::new(*id).expect("id");
            tapgate_admin::emqx::device_rule_objects(topics, *kind, &dev)
        })
        .map(|v| serde_json::from_value(v).expect("rule object"))
        .collect()
}

#[test]
fn emqx_acl_enforces_the_same_policy_as_mosquitto() {
    let text = repo::read("emqx/etc/acl.conf").expect("acl.conf");
    let acl = emqx::load_acl("emqx/etc/acl.conf").expect("acl.conf parses");
    assert!(
        !acl.has_allow_all(),
        "acl.conf must not end in {{allow, all}}"
    );
    let rules_only = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('%'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !rules_only.contains("${clientid}"),
        "acl.conf must key on ${{username}}, never on the client id"
    );
    let conf = emqx::load_hocon("emqx/etc/emqx.conf").expect("emqx.conf");
    let findings = emqx::check_broker("emqx/etc/emqx.conf", &conf.root);
    assert!(findings.is_empty(), "{}", report(&findings));
    let topics = Topics::default();
    let mut cases = access::cases(&topics);
    // The bridges subscribe through a shared group in compose.
    for f in access::shared_bridge_filters(&topics) {
        cases.push(access::Case {
            username: access::BRIDGE_USER,
            clientid: access::BRIDGE_CLIENT.to_owned(),
            action: Action::Subscribe,
            probe_topic: f.clone(),
            topic: f,
            allowed: true,
            why: "shared subscription",
        });
    }
    // Client ids an attacker picks: wildcards, another device's id, control characters.
    let g1_decisions = format!("{}/gate/+/decision", topics.prefix());
    for clientid in ["+", "#", "g2", "g1\u{1b}", "+/#"] {
        for (action, topic, why) in [
            (
                Action::Subscribe,
                g1_decisions.clone(),
                "every gate's decisions",
            ),
            (Action::Subscribe, "#".to_owned(), "everything"),
            (
                Action::Subscribe,
                format!("{}/gate/g2/decision", topics.prefix()),
                "g2's decisions",
            ),
            (
                Action::Publish,
                format!("{}/gate/g2/tap", topics.prefix()),
                "g2's taps",
            ),
        ] {
            cases.push(access::Case {
                username: "g1",
                clientid: clientid.to_owned(),
                action,
                probe_topic: topic.clone(),
                topic,
                allowed: false,
                why,
            });
        }
    }
    // Evaluate with use_username_as_clientid (as configured) and without it: the rules must not
    // depend on the client id either way.
    for use_username in [true, false] {
        let wrong: Vec<String> = cases
            .iter()
            .filter(|c| {
                emqx::authorize(
                    &db_rules(&topics, c.username),
                    &acl,
                    use_username,
                    c.username,
                    &c.clientid,
                    c.action,
                    &c.topic,
                ) != c.allowed
            })
            .map(|c| {
                format!(
                    "  - {:?} as {} {:?} {}: expected allowed={} ({})",
                    c.clientid, c.username, c.action, c.topic, c.allowed, c.why
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "EMQX's rules (use_username_as_clientid={use_username}) disagree with the policy:\n{}",
            wrong.join("\n")
        );
    }
    // An unknown user, or a device's id used as a username with no database rules, gets nothing.
    for user in ["intruder", "g9", "device"] {
        assert!(!emqx::authorize(
            &[],
            &acl,
            true,
            user,
            user,
            Action::Publish,
            &topics.tap(
                tapgate_protocol::DeviceKind::Gate,
                &tapgate_protocol::DeviceId::new("g9").expect("id")
            ),
        ));
    }
    // The guards: a wildcard client id gets nothing from the file rules, even a service's.
    assert_eq!(
        acl.check(
            access::MONITOR_USER,
            "+",
            Action::Subscribe,
            &topics.events_filter()
        ),
        Some(false)
    );
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo::root().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let rel = format!(
                "grafana/dashboards/{}",
                path.file_name().expect("name").to_string_lossy()
            );
            let text = repo::read(&rel).expect("read dashboard");
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"));
            out.push((rel, json));
        }
    }
    assert!(!out.is_empty(), "no dashboards in grafana/dashboards");
    out
}

#[test]
fn grafana_dashboards_read_only_documented_keys() {
    let sources = grafana::load_datasources("grafana/provisioning/datasources/tapgate.yml")
        .expect("data sources");
    assert!(sources.iter().any(|s| s.kind == grafana::REDIS_TYPE));
    assert!(sources.iter().any(|s| s.kind == grafana::PROMETHEUS_TYPE));
    let documented = keys::documented();
    let mut seen_keys = Vec::new();
    for (file, dash) in dashboards() {
        let (queries, mut findings) = grafana::scan(&file, &dash, &sources);
        findings.extend(grafana::check_keys(&file, &queries, &documented));
        findings.extend(grafana::check_metrics(
            &file,
            &queries,
            &documented_metrics(),
        ));
        assert!(findings.is_empty(), "{}", report(&findings));
        seen_keys.extend(queries.redis_keys.into_iter().map(|(_, k)| k));
        assert!(
            !queries.prom_exprs.is_empty(),
            "{file}: no Prometheus panels"
        );
    }
    // Everything the brief of the dashboard promises is on it.
    for key in [
        tapgate_protocol::keys::COUNTERS_ISSUED,
        tapgate_protocol::keys::COUNTERS_ENTRIES,
        tapgate_protocol::keys::COUNTERS_DENIED,
        tapgate_protocol::keys::DEVICES,
        tapgate_protocol::keys::EMQX_DISCONNECTS,
        tapgate_protocol::keys::EMQX_AUTHZ,
        tapgate_protocol::keys::EMQX_DROPPED,
        tapgate_protocol::keys::EMQX_DROPPED_TOPICS,
    ] {
        assert!(seen_keys.iter().any(|k| k == key), "no panel reads {key}");
    }
}

/// The bridge's metric samples as documented (the real scrape test checks them against a
/// running bridge).
fn documented_metrics() -> Vec<String> {
    [
        "tapgate_messages_total",
        "tapgate_decisions_total",
        "tapgate_rejected_total",
        "tapgate_replays_total",
        "tapgate_decision_latency_seconds_bucket",
        "tapgate_decision_latency_seconds_sum",
        "tapgate_decision_latency_seconds_count",
        "tapgate_redis_reconnects_total",
        "tapgate_mqtt_reconnects_total",
        "tapgate_inflight_messages",
        "tapgate_redis_used_memory_bytes",
        "tapgate_redis_maxmemory_bytes",
        "tapgate_redis_full_refusals_total",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn grafana_check_refuses_an_unknown_key() {
    let sources = grafana::load_datasources("grafana/provisioning/datasources/tapgate.yml")
        .expect("data sources");
    let dash = serde_json::json!({
        "panels": [{"title": "typo", "datasource": {"uid": "tapgate-redis"},
            "targets": [{"type": "command", "command": "hgetall", "keyName": "tapgate:counters:issue"},
                        {"type": "cli", "query": "HGETALL tapgate:emqx:disconnect"},
                        {"type": "cli", "query": "DEL tapgate:counters:issued"},
                        {"datasource": {"uid": "nope"}, "expr": "x"},
                        {"datasource": {"uid": "tapgate-prometheus"}, "expr": "rate(tapgate_taps_total[1m])"}]}],
        "templating": {"list": [{"type": "query", "name": "v", "datasource": {"uid": "tapgate-redis"},
            "query": "SMEMBERS tapgate:device"}]}
    });
    let (queries, mut findings) = grafana::scan("x.json", &dash, &sources);
    findings.extend(grafana::check_keys("x.json", &queries, &keys::documented()));
    findings.extend(grafana::check_metrics(
        "x.json",
        &queries,
        &documented_metrics(),
    ));
    let text = report(&findings);
    for expected in [
        "\"tapgate:counters:issue\" is not written",
        "\"tapgate:emqx:disconnect\" is not written",
        "\"tapgate:device\" is not written",
        "\"del\" is not one of the read commands",
        "data source Some(\"nope\")",
        "tapgate_taps_total is not exposed",
    ] {
        assert!(
            text.contains(expected),
            "expected {expected:?} among:\n{text}"
        );
    }
}

#[test]
fn grafana_provisioning_is_valid() {
    let text = repo::read("grafana/provisioning/dashboards/tapgate.yml").expect("provider");
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("provider YAML");
    assert_eq!(
        v["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards"),
        "dashboards provider path must be where compose mounts grafana/dashboards"
    );
    let compose_text = repo::read("docker-compose.yml").expect("compose");
    assert!(compose_text.contains("./grafana/dashboards:/var/lib/grafana/dashboards:ro"));
    assert!(compose_text.contains("GF_INSTALL_PLUGINS: redis-datasource"));
}

#[test]
fn dockerfiles_build_locked_and_run_only_the_binary_as_a_user() {
    for (file, krate) in [
        ("docker/bridge.Dockerfile", "tapgate-bridge"),
        ("docker/monitor.Dockerfile", "tapgate-monitor"),
        ("docker/device.Dockerfile", "tapgate-device"),
    ] {
        let text = repo::read(file).expect("Dockerfile");
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(
            froms,
            [
                &"FROM rust:1-bookworm AS build",
                &"FROM debian:bookworm-slim"
            ],
            "{file}: build on rust:1-bookworm, run on debian:bookworm-slim"
        );
        assert!(
            text.contains(&format!("cargo build --release --locked -p {krate}")),
            "{file}: cargo build --release --locked -p {krate}"
        );
        let runtime = &text[text
            .find("FROM debian:bookworm-slim")
            .expect("runtime stage")..];
        let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
        assert_eq!(
            copies,
            [format!("COPY --from=build /usr/local/bin/{krate} /usr/local/bin/{krate}").as_str()],
            "{file}: the runtime stage copies only the binary"
        );
        let user = runtime
            .lines()
            .rev()
            .filter_map(|l| l.strip_prefix("USER "))
            .next()
            .expect("USER in the runtime stage");
        assert!(user != "root" && user != "0", "{file}: runs as {user}");
        assert!(
            repo::is_file(format!("{file}.dockerignore")),
            "{file}: needs {file}.dockerignore"
        );
    }
}

#[test]
fn grafana_dashboards_are_well_formed() {
    for (file, dash) in dashboards() {
        assert!(
            dash["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: uid"
        );
        let vars: Vec<&str> = dash
            .pointer("/templating/list")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|v| v["name"].as_str()).collect())
            .unwrap_or_default();
        let mut ids = std::collections::BTreeSet::new();
        for panel in dash["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or("?");
            let id = panel["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            let (x, w) = (
                panel["gridPos"]["x"].as_u64().expect("x"),
                panel["gridPos"]["w"].as_u64().expect("w"),
            );
            assert!(
                x + w <= 24,
                "{file}: panel {title:?} is wider than the grid"
            );
            if let Some(var) = panel["repeat"].as_str() {
                assert!(
                    vars.contains(&var),
                    "{file}: panel {title:?} repeats unknown ${var}"
                );
            }
            // Every variable a panel uses is defined.
            let text = panel.to_string();
            for v in text.split('$').skip(1) {
                let name: String = v
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && !name.starts_with("__") {
                    assert!(
                        vars.contains(&name.as_str()),
                        "{file}: panel {title:?} uses unknown ${name}"
                    );
                }
            }
        }
    }
}
