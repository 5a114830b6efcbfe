//! promtool on tapgate's Prometheus files and on the bridge's exposition, and promtool refusing
//! broken ones (so a check that passes has been able to fail).

use tapgate_bridge::Metrics;
use tapgate_checks::promtool;
use tapgate_checks::repo;
use tapgate_checks::tool::ToolError;
use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::{DeviceKind, Outcome, RejectReason};

#[test]
fn prometheus_config_passes_promtool_and_scrapes_the_bridge() {
    promtool::check_config("prometheus/prometheus.yml").unwrap_or_else(|e| panic!("{e}"));
    // What only tapgate knows: a job scrapes the bridge where compose serves its metrics.
    let text = repo::read("prometheus/prometheus.yml").expect("prometheus.yml");
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let bridge = jobs
        .iter()
        .find(|job| {
            job["static_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|s| s["targets"].as_sequence().into_iter().flatten())
                .any(|t| t.as_str() == Some("bridge:9464"))
        })
        .expect("a job scrapes bridge:9464");
    assert_eq!(
        bridge["metrics_path"].as_str().unwrap_or("/metrics"),
        "/metrics"
    );
    let compose_text = repo::read("docker-compose.yml").expect("compose");
    assert!(compose_text.contains("TAPGATE_METRICS_ADDR: 0.0.0.0:9464"));
}

#[test]
fn promtool_refuses_broken_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bad) in [
        (
            "unknown_key.yml",
            "scrape_configs:\n  - job_name: a\n    static_config: []\n",
        ),
        (
            "bad_duration.yml",
            "global:\n  scrape_interval: 10sec\nscrape_configs: []\n",
        ),
        (
            "same_job_twice.yml",
            "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
        ),
        (
            "timeout_over_interval.yml",
            "global:\n  scrape_interval: 5s\n  scrape_timeout: 10s\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bad).expect("write");
        let result = promtool::check_config(path.to_str().expect("utf-8 path"));
        assert!(
            matches!(result, Err(ToolError::Refused { .. })),
            "{name} should be refused: {result:?}"
        );
    }
}

#[test]
fn the_bridge_exposition_passes_promtool() {
    let m = Metrics::default();
    m.message(MessageKind::Tap);
    m.decision(
        DeviceKind::Gate,
        &Outcome::CardMismatch,
        std::time::Duration::from_millis(3),
    );
    m.rejected(RejectReason::UnknownField);
    m.clock_flag(true);
    m.dropped();
    m.inflight_add(1);
    m.set_redis_memory(1_049_112, 67_108_864);
    m.redis_full();
    let text = m.render();
    promtool::check_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let types = promtool::types(&text);
    assert_eq!(types["tapgate_decision_latency_seconds"], "histogram");
    assert_eq!(types["tapgate_inflight_messages"], "gauge");
    assert_eq!(types["tapgate_redis_used_memory_bytes"], "gauge");
    assert_eq!(types["tapgate_redis_maxmemory_bytes"], "gauge");
    assert_eq!(types["tapgate_redis_full_refusals_total"], "counter");
}

/// The alerting rules Prometheus loads, and the metric names they query.
fn alert_rules() -> Vec<(String, String)> {
    let text = repo::read("prometheus/alerts.yml").expect("alerts.yml");
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

#[test]
fn alerts_are_loaded_query_bridge_metrics_and_pass_their_tests() {
    let text = repo::read("prometheus/prometheus.yml").expect("prometheus.yml");
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let files: Vec<&str> = config["rule_files"]
        .as_sequence()
        .expect("prometheus.yml loads rule_files")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(files, ["alerts.yml"]);
    let compose = repo::read("docker-compose.yml").expect("compose");
    assert!(
        compose.contains("./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"),
        "compose mounts the rules beside prometheus.yml"
    );
    let exposition = Metrics::default().render();
    let known = promtool::types(&exposition);
    let rules = alert_rules();
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "TapgateRedisMemoryHigh",
            "TapgateRedisFull",
            "TapgateRedisUnbounded"
        ]
    );
    for (name, expr) in &rules {
        let metrics = tapgate_checks::grafana::metric_names(expr);
        assert!(!metrics.is_empty(), "{name}: {expr}");
        for metric in metrics {
            assert!(
                known.contains_key(&metric),
                "{name} queries {metric}, which the bridge does not expose"
            );
        }
    }
    promtool::test_rules("prometheus/alerts.test.yml").unwrap_or_else(|e| panic!("{e}"));
}

/// The rule tests fail on rules that would warn too late, too early or never: a check that
/// passes has been able to fail.
#[test]
fn the_alert_tests_catch_broken_rules() {
    let rules = repo::read("prometheus/alerts.yml").expect("alerts.yml");
    let tests = repo::read("prometheus/alerts.test.yml").expect("alerts.test.yml");
    for (what, from, to) in [
        ("warns at 90 %", "> 0.8", "> 0.9"),
        ("warns at 70 %", "> 0.8", "> 0.7"),
        ("warns at once", "for: 1m\n", ""),
        (
            "divides by a limit of 0",
            "(tapgate_redis_maxmemory_bytes > 0)",
            "(tapgate_redis_maxmemory_bytes)",
        ),
        ("never sees refusals", "[5m])) > 0", "[5m])) > 100"),
        (
            "no unbounded warning",
            "max(tapgate_redis_maxmemory_bytes) == 0",
            "max(tapgate_redis_maxmemory_bytes) == 1",
        ),
    ] {
        assert!(rules.contains(from), "{what}: {from:?} not in alerts.yml");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("alerts.yml"), rules.replacen(from, to, 1)).expect("write");
        let test = dir.path().join("alerts.test.yml");
        std::fs::write(&test, &tests).expect("write");
        let result = promtool::test_rules(test.to_str().expect("utf-8 path"));
        assert!(
            matches!(result, Err(ToolError::Refused { .. })),
            "rules that {what} should fail their tests: {result:?}"
        );
    }
}

#[test]
fn promtool_refuses_broken_expositions() {
    for bad in [
        // Not the text format.
        "a{x=\"1\" 1\n",
        "a{x=1} 1\n",
        "a one\n",
        // A family typed twice.
        "# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n",
        // Lint: a counter without _total, a family without help.
        "# HELP a A.\n# TYPE a counter\na 1\n",
        "# TYPE a_total counter\na_total 1\n",
        // A bucket bound that is not a number; help given twice.
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"x\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP a_total A.\n",
    ] {
        let result = promtool::check_metrics(bad);
        assert!(
            matches!(result, Err(ToolError::Refused { .. })),
            "{bad:?} should be refused: {result:?}"
        );
    }
}
