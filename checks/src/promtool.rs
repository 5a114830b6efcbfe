//! Prometheus' own checks (`promtool check metrics`, `promtool check config`, `promtool test
//! rules`), and the names a valid exposition holds, for the checks only tapgate can make (the
//! dashboards query metrics the bridge exposes; no card or device labels).
//!
//! The syntax is promtool's business: these readers assume text it has accepted.

use std::collections::BTreeMap;

use crate::tool::{ToolError, PROMTOOL};

/// `promtool check metrics` on an exposition (the bridge's `/metrics` body).
pub fn check_metrics(text: &str) -> Result<(), ToolError> {
    PROMTOOL
        .run(
            &["check", "metrics"],
            text.as_bytes(),
            "the metrics exposition",
        )
        .map(drop)
}

/// `promtool check config` on a Prometheus configuration file, relative to the repository root.
pub fn check_config(rel: &str) -> Result<(), ToolError> {
    PROMTOOL.run(&["check", "config", rel], b"", rel).map(drop)
}

/// `promtool test rules` on a rules test file (its `rule_files` are relative to it), relative
/// to the repository root or absolute.
pub fn test_rules(rel: &str) -> Result<(), ToolError> {
    PROMTOOL.run(&["test", "rules", rel], b"", rel).map(drop)
}

/// One sample line of an exposition promtool has accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Label names and values, in the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The `# TYPE` of each family: family name → `counter`, `gauge`, `histogram`, …
pub fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// The sample lines. Label values are taken as written (tapgate's are plain words).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = match line.split_once('}') {
                Some((head, rest)) => (format!("{head}}}"), rest),
                None => line.split_once(' ').map(|(n, v)| (n.to_owned(), v))?,
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series.as_str(), ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# HELP tapgate_messages_total Messages.
# TYPE tapgate_messages_total counter
tapgate_messages_total{message=\"tap\"} 3
# HELP tapgate_inflight_messages In flight.
# TYPE tapgate_inflight_messages gauge
tapgate_inflight_messages 0
";

    #[test]
    fn reads_names_types_and_labels() {
        assert_eq!(types(GOOD)["tapgate_messages_total"], "counter");
        let s = samples(GOOD);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("message"), Some("tap"));
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].name, "tapgate_inflight_messages");
    }
}
