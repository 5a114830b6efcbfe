//! `prometheus.yml`: the subset of Prometheus' configuration tapgate uses, read strictly.
//!
//! Unknown keys are refused (as Prometheus refuses them), durations must be Prometheus
//! durations, targets `host:port`, and job names unique.

use serde::Deserialize;

use crate::repo::{self, CheckError, Finding};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromConfig {
    /// Defaults for every job.
    #[serde(default)]
    pub global: Global,
    /// The jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
}

/// `global:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// How often to scrape.
    pub scrape_interval: Option<String>,
    /// How long a scrape may take.
    pub scrape_timeout: Option<String>,
    /// How often rules are evaluated.
    pub evaluation_interval: Option<String>,
}

/// One scrape job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Its name (the `job` label).
    pub job_name: String,
    /// Overrides the global interval.
    pub scrape_interval: Option<String>,
    /// Overrides the global timeout.
    pub scrape_timeout: Option<String>,
    /// Path to scrape, `/metrics` by default.
    pub metrics_path: Option<String>,
    /// Fixed targets.
    pub static_configs: Vec<StaticConfig>,
}

/// `static_configs:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` targets.
    pub targets: Vec<String>,
    /// Extra labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Whether `s` is a Prometheus duration such as `15s`, `1m30s` or `500ms`.
pub fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "y", "w", "d", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// Reads `rel` and checks it.
pub fn load(rel: &str) -> Result<(PromConfig, Vec<Finding>), CheckError> {
    let text = repo::read(rel)?;
    let config: PromConfig = serde_yaml_ng::from_str(&text).map_err(|source| CheckError::Yaml {
        path: rel.into(),
        source,
    })?;
    let mut out = Vec::new();
    let durations = [
        config.global.scrape_interval.as_deref(),
        config.global.scrape_timeout.as_deref(),
        config.global.evaluation_interval.as_deref(),
    ]
    .into_iter()
    .chain(
        config
            .scrape_configs
            .iter()
            .flat_map(|j| [j.scrape_interval.as_deref(), j.scrape_timeout.as_deref()]),
    )
    .flatten();
    for d in durations {
        if !is_duration(d) {
            out.push(Finding::new(
                rel,
                format!("{d:?} is not a Prometheus duration"),
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for job in &config.scrape_configs {
        if !names.insert(job.job_name.as_str()) {
            out.push(Finding::new(
                rel,
                format!("job {} defined twice", job.job_name),
            ));
        }
        if job
            .metrics_path
            .as_deref()
            .is_some_and(|p| !p.starts_with('/'))
        {
            out.push(Finding::new(
                rel,
                format!("job {}: metrics_path must start with /", job.job_name),
            ));
        }
        for target in job.static_configs.iter().flat_map(|s| &s.targets) {
            let ok = target
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                out.push(Finding::new(
                    rel,
                    format!("target {target:?} is not host:port"),
                ));
            }
        }
    }
    Ok((config, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for ok in ["15s", "1m30s", "500ms", "2h"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "15", "s", "1.5s", "15 s", "10sec"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let bad = "scrape_configs:\n  - job_name: a\n    static_config: []\n";
        assert!(serde_yaml_ng::from_str::<PromConfig>(bad).is_err());
    }
}
