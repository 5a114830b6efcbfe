//! What the Grafana dashboards read: Redis keys and Prometheus metrics.
//!
//! [`scan`] walks a dashboard (panels, rows, template variables) and collects every query,
//! resolving each to the provisioned data source it uses. Redis queries come in three forms in
//! the `redis-datasource` plugin: a command with `keyName` (`"type": "command"`), a command line
//! in `query` (`"type": "cli"`), and a template variable's `query` string; all three name keys
//! that [`check_keys`] compares with the documented list.

use serde::Deserialize;
use serde_json::Value;

use crate::keys::{match_key, KeyPattern};
use crate::repo::{self, CheckError, Finding};

/// The plugin id of the Redis data source.
pub const REDIS_TYPE: &str = "redis-datasource";
/// The plugin id of the Prometheus data source.
pub const PROMETHEUS_TYPE: &str = "prometheus";

/// Read-only Redis commands a dashboard may run, each with a key as first argument.
pub const REDIS_READS: [&str; 14] = [
    "hgetall",
    "hget",
    "hmget",
    "hkeys",
    "hvals",
    "hlen",
    "smembers",
    "scard",
    "xrange",
    "xrevrange",
    "xlen",
    "lrange",
    "llen",
    "get",
];

/// A provisioned data source.
#[derive(Debug, Clone, Deserialize)]
pub struct DataSource {
    /// Display name.
    pub name: String,
    /// Plugin id.
    #[serde(rename = "type")]
    pub kind: String,
    /// Stable id dashboards refer to.
    pub uid: String,
    /// Where it connects.
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DataSourceFile {
    #[serde(rename = "apiVersion")]
    _api_version: u32,
    datasources: Vec<DataSource>,
}

/// Reads a data source provisioning file.
pub fn load_datasources(rel: &str) -> Result<Vec<DataSource>, CheckError> {
    let text = repo::read(rel)?;
    let file: DataSourceFile =
        serde_yaml_ng::from_str(&text).map_err(|source| CheckError::Yaml {
            path: rel.into(),
            source,
        })?;
    Ok(file.datasources)
}

/// Every dashboard in `grafana/dashboards/` (by its path from the repository root) with its
/// queries, read against `sources`.
pub fn dashboards(sources: &[DataSource]) -> Result<Vec<(String, Queries)>, CheckError> {
    let dir = repo::root().join("grafana/dashboards");
    let io = |source| CheckError::Io {
        path: dir.clone(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let rel = format!("grafana/dashboards/{}", name.to_string_lossy());
        let dash: Value =
            serde_json::from_str(&repo::read(&rel)?).map_err(|source| CheckError::Json {
                path: rel.clone().into(),
                source,
            })?;
        let (queries, _) = scan(&rel, &dash, sources);
        out.push((rel, queries));
    }
    Ok(out)
}

/// One Redis query of a dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisQuery {
    /// Where it is (panel and target, or variable).
    pub place: String,
    /// The command, lower case (`hgetall`, `hmget`, ...).
    pub command: String,
    /// The key, possibly with Grafana variables.
    pub key: String,
    /// `hmget` / `hget` fields, in order.
    pub fields: Vec<String>,
}

/// A template variable that lists values with a Redis query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisVariable {
    /// Its name (`gate` for `$gate`).
    pub name: String,
    /// The command line it runs.
    pub query: String,
    /// Its regex (Grafana keeps the first capture group).
    pub regex: String,
}

/// Everything a dashboard queries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Queries {
    /// (where, Redis key).
    pub redis_keys: Vec<(String, String)>,
    /// Every Redis query of a panel, with its command and fields.
    pub redis_queries: Vec<RedisQuery>,
    /// Template variables filled from Redis.
    pub redis_variables: Vec<RedisVariable>,
    /// (where, PromQL expression).
    pub prom_exprs: Vec<(String, String)>,
}

fn datasource_uid(v: &Value) -> Option<&str> {
    match v.get("datasource")? {
        Value::Object(o) => o.get("uid")?.as_str(),
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// The string at `key` of `v`, or "".
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Collects the queries of dashboard `dash` (file `file`), given the provisioned data sources.
/// Findings: queries whose data source is unknown, Redis commands that are not plain reads.
pub fn scan(file: &str, dash: &Value, sources: &[DataSource]) -> (Queries, Vec<Finding>) {
    let mut scan = Scan {
        file,
        sources,
        queries: Queries::default(),
        findings: Vec::new(),
    };
    for panel in panels(dash) {
        let title = panel.get("title").and_then(Value::as_str);
        let title = title.unwrap_or("(untitled)");
        let targets = panel.get("targets").and_then(Value::as_array);
        for (i, target) in targets.into_iter().flatten().enumerate() {
            let uid = datasource_uid(target).or(datasource_uid(panel));
            scan.target(format!("panel {title:?} target {i}"), target, uid);
        }
    }
    let vars = dash.pointer("/templating/list").and_then(Value::as_array);
    for var in vars.into_iter().flatten() {
        scan.variable(var);
    }
    (scan.queries, scan.findings)
}

/// Every panel of a dashboard or row, those in rows too, in the order a stack of them gives.
fn panels(v: &Value) -> Vec<&Value> {
    let inner = v
        .get("panels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    inner
        .rev()
        .flat_map(|p| std::iter::once(p).chain(panels(p)))
        .collect()
}

/// A dashboard's queries as [`scan`] collects them, and what it found wrong on the way.
struct Scan<'a> {
    file: &'a str,
    sources: &'a [DataSource],
    queries: Queries,
    findings: Vec<Finding>,
}

impl<'a> Scan<'a> {
    /// Records what is wrong.
    fn finding(&mut self, what: String) {
        self.findings.push(Finding::new(self.file, what));
    }

    /// The plugin id of the provisioned data source with id `uid`.
    fn kind_of(&self, uid: Option<&str>) -> Option<&'a str> {
        let uid = uid?;
        let source = self.sources.iter().find(|s| s.uid == uid)?;
        Some(&source.kind)
    }

    /// One query of a panel, on the data source `uid` names.
    fn target(&mut self, place: String, target: &Value, uid: Option<&str>) {
        match self.kind_of(uid) {
            Some(REDIS_TYPE) => self.redis_target(place, target),
            Some(PROMETHEUS_TYPE) => match target.get("expr").and_then(Value::as_str) {
                Some(expr) if !expr.trim().is_empty() => {
                    self.queries.prom_exprs.push((place, expr.to_owned()))
                }
                _ => self.finding(format!("{place}: empty PromQL expression")),
            },
            _ => self.finding(format!(
                "{place}: data source {uid:?} is not a provisioned Redis or Prometheus source"
            )),
        }
    }

    /// A panel's Redis query, a command with `keyName` (`"type": "command"`) or a command line
    /// (`"type": "cli"`), with its `hmget` / `hget` fields.
    fn redis_target(&mut self, place: String, target: &Value) {
        let line = match text(target, "type") {
            "command" | "" => format!("{} {}", text(target, "command"), text(target, "keyName")),
            "cli" => text(target, "query").to_owned(),
            other => {
                return self.finding(format!("{place}: unsupported Redis query type {other:?}"))
            }
        };
        let Some((command, key)) = self.redis_query(&place, &line) else {
            return;
        };
        let fields = text(target, "field").split_whitespace();
        self.queries.redis_queries.push(RedisQuery {
            place: place.clone(),
            command,
            key: key.clone(),
            fields: fields.map(str::to_owned).collect(),
        });
        self.queries.redis_keys.push((place, key));
    }

    /// A template variable filled by a query (other variables are not read): a Redis command
    /// line or a PromQL expression.
    fn variable(&mut self, var: &Value) {
        if var.get("type").and_then(Value::as_str) != Some("query") {
            return;
        }
        let name = var.get("name").and_then(Value::as_str).unwrap_or("?");
        let place = format!("variable {name:?}");
        let query = match var.get("query") {
            Some(Value::String(s)) => s.clone(),
            Some(query @ Value::Object(_)) => text(query, "query").to_owned(),
            _ => String::new(),
        };
        match self.kind_of(datasource_uid(var)) {
            Some(REDIS_TYPE) => {
                if let Some((_, key)) = self.redis_query(&place, &query) {
                    self.queries.redis_keys.push((place, key));
                }
                self.queries.redis_variables.push(RedisVariable {
                    name: name.to_owned(),
                    query: query.clone(),
                    regex: text(var, "regex").to_owned(),
                });
            }
            Some(PROMETHEUS_TYPE) => self.queries.prom_exprs.push((place, query)),
            _ => self.finding(format!("{place}: unknown data source")),
        }
    }

    /// The command (lower case) and key of a Redis command line, if it is a read naming a key.
    fn redis_query(&mut self, place: &str, command_line: &str) -> Option<(String, String)> {
        let mut words = command_line.split_whitespace();
        let command = words.next()?.to_ascii_lowercase();
        if !REDIS_READS.contains(&command.as_str()) {
            self.finding(format!(
                "{place}: Redis command {command:?} is not one of the read commands {REDIS_READS:?}"
            ));
            return None;
        }
        let key = words.next();
        if key.is_none() {
            self.finding(format!("{place}: {command_line:?} names no key"));
        }
        Some((command, key?.to_owned()))
    }
}

/// Every Redis key in `queries` that names no documented key.
pub fn check_keys(file: &str, queries: &Queries, documented: &[KeyPattern]) -> Vec<Finding> {
    queries
        .redis_keys
        .iter()
        .filter(|(_, key)| match_key(key, documented).is_none())
        .map(|(place, key)| {
            Finding::new(
                file,
                format!("{place}: Redis key {key:?} is not written by the bridge, the monitor or the EMQX rules"),
            )
        })
        .collect()
}

/// The `tapgate_*` metric names an expression uses.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tapgate_") {
        let before_ok = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if before_ok {
            out.push(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    out
}

/// Every `tapgate_*` sample name the expressions use that is not in `known` (sample names as
/// exposed, e.g. `tapgate_decision_latency_seconds_bucket`).
pub fn check_metrics(file: &str, queries: &Queries, known: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (place, expr) in &queries.prom_exprs {
        for name in metric_names(expr) {
            if !known.contains(&name) {
                out.push(Finding::new(
                    file,
                    format!("{place}: metric {name} is not exposed by the bridge"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_in_expressions() {
        assert_eq!(
            metric_names(
                "histogram_quantile(0.99, sum by (le) (rate(tapgate_decision_latency_seconds_bucket[5m])))"
            ),
            vec!["tapgate_decision_latency_seconds_bucket"]
        );
        assert_eq!(
            metric_names("sum(rate(tapgate_messages_total{message=\"tap\"}[1m])) + x_tapgate_y"),
            vec!["tapgate_messages_total"]
        );
    }
}
