//! A strict reader of the Prometheus text exposition format (version 0.0.4), with the
//! OpenMetrics `# EOF` line accepted at the end.
//!
//! It checks what a scraper relies on: names and label syntax, values, one `# TYPE` per family
//! before its samples, each family's lines together, and for histograms `le` buckets that never
//! decrease and end with `+Inf` equal to `_count`, plus `_sum`.

use std::collections::BTreeMap;

/// Why an exposition is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ExpositionError {
    /// 1-based line number (0: about the whole text).
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

/// The declared type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
    /// `untyped` or no `# TYPE` line.
    Untyped,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (for a histogram: with `_bucket`, `_sum` or `_count`).
    pub name: String,
    /// Its labels, in order.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One metric family: its type, help and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Declared type.
    pub kind: Kind,
    /// `# HELP` text, if any.
    pub help: Option<String>,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// A parsed exposition: family name → family.
pub type Exposition = BTreeMap<String, Family>;

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => s.parse().ok(),
        _ => None,
    }
}

/// Splits `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // label name
            let start = match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next().ok_or("unterminated labels")?;
                    rest = &after[i + 1..];
                    break;
                }
                Some((i, _)) => *i,
                None => return Err("unterminated labels".into()),
            };
            let eq = after[start..].find('=').ok_or("label without '='")? + start;
            let label = after[start..eq].trim();
            if !valid_label(label) {
                return Err(format!("invalid label name {label:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} value must be quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        other => return Err(format!("invalid escape {other:?} in label {label}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) | None => return Err("unterminated label value".into()),
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.iter().any(|(k, _)| k == label) {
                return Err(format!("label {label} given twice"));
            }
            labels.push((label.to_owned(), value));
            match chars.peek() {
                Some((_, ',')) => {
                    chars.next();
                }
                Some((_, '}')) => {}
                other => {
                    return Err(format!(
                        "expected ',' or '}}' after a label, found {other:?}"
                    ))
                }
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample needs a value")?;
    let value = parse_value(value).ok_or_else(|| format!("invalid value {value:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("invalid timestamp {ts:?}"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the value"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The family a sample belongs to, given the families declared so far.
fn family_of(name: &str, declared: &Exposition) -> String {
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if declared
                .get(base)
                .is_some_and(|f| f.kind != Kind::Untyped || suffix == "_total")
            {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

/// Parses and checks an exposition.
pub fn parse(text: &str) -> Result<Exposition, ExpositionError> {
    let mut out = Exposition::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut eof = false;
    for (i, raw) in text.lines().enumerate() {
        let err = |why: String| ExpositionError { line: i + 1, why };
        if eof {
            return Err(err("text after # EOF".into()));
        }
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let (word, name, rest) = (words.next(), words.next(), words.next());
            match (word, name) {
                (Some("HELP"), Some(name)) | (Some("TYPE"), Some(name)) => {
                    if !valid_name(name) {
                        return Err(err(format!("invalid metric name {name:?}")));
                    }
                    if current.as_deref() != Some(name) {
                        if let Some(prev) = current.take() {
                            finished.push(prev);
                        }
                        if finished.iter().any(|f| f == name) {
                            return Err(err(format!("{name} appears in two separate groups")));
                        }
                        current = Some(name.to_owned());
                    }
                    let family = out.entry(name.to_owned()).or_insert(Family {
                        kind: Kind::Untyped,
                        help: None,
                        samples: Vec::new(),
                    });
                    if word == Some("HELP") {
                        if family.help.is_some() {
                            return Err(err(format!("second HELP for {name}")));
                        }
                        family.help = Some(rest.unwrap_or_default().to_owned());
                    } else {
                        if !family.samples.is_empty() {
                            return Err(err(format!("TYPE for {name} after its samples")));
                        }
                        if family.kind != Kind::Untyped {
                            return Err(err(format!("second TYPE for {name}")));
                        }
                        family.kind = match rest.map(str::trim) {
                            Some("counter") => Kind::Counter,
                            Some("gauge") => Kind::Gauge,
                            Some("histogram") => Kind::Histogram,
                            Some("summary") => Kind::Summary,
                            Some("untyped") | Some("unknown") => Kind::Untyped,
                            other => return Err(err(format!("unknown type {other:?}"))),
                        };
                    }
                }
                _ => {} // other comments are allowed
            }
            continue;
        }
        let sample = parse_sample(line).map_err(err)?;
        let name = family_of(&sample.name, &out);
        if current.as_deref() != Some(name.as_str()) {
            if let Some(prev) = current.take() {
                finished.push(prev);
            }
            if finished.contains(&name) {
                return Err(err(format!("{name} appears in two separate groups")));
            }
            current = Some(name.clone());
        }
        let family = out.entry(name.clone()).or_insert(Family {
            kind: Kind::Untyped,
            help: None,
            samples: Vec::new(),
        });
        if family.kind == Kind::Histogram
            && ![
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
                format!("{name}_created"),
            ]
            .contains(&sample.name)
        {
            return Err(err(format!(
                "{} is not a sample of histogram {name}",
                sample.name
            )));
        }
        family.samples.push(sample);
    }
    for (name, family) in &out {
        if family.kind == Kind::Histogram {
            check_histogram(name, family)?;
        }
    }
    Ok(out)
}

fn check_histogram(name: &str, family: &Family) -> Result<(), ExpositionError> {
    let err = |why: String| ExpositionError { line: 0, why };
    // Group by the labels other than `le`.
    let mut series: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
    for s in &family.samples {
        let key: Vec<_> = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        series.entry(key).or_default().push(s);
    }
    for (labels, samples) in series {
        let mut last = f64::NEG_INFINITY;
        let mut last_le = f64::NEG_INFINITY;
        let mut inf = None;
        for s in samples.iter().filter(|s| s.name.ends_with("_bucket")) {
            let le = s
                .label("le")
                .and_then(parse_value)
                .ok_or_else(|| err(format!("{name}{labels:?}: bucket without a numeric le")))?;
            if le <= last_le {
                return Err(err(format!("{name}{labels:?}: le {le} not increasing")));
            }
            if s.value < last {
                return Err(err(format!(
                    "{name}{labels:?}: bucket le={le} below the one before"
                )));
            }
            last_le = le;
            last = s.value;
            if le == f64::INFINITY {
                inf = Some(s.value);
            }
        }
        let count = samples
            .iter()
            .find(|s| s.name == format!("{name}_count"))
            .map(|s| s.value);
        let sum = samples.iter().any(|s| s.name == format!("{name}_sum"));
        match (inf, count, sum) {
            (Some(i), Some(c), true) if i == c => {}
            _ => {
                return Err(err(format!(
                    "{name}{labels:?}: needs a +Inf bucket equal to _count, and _sum \
                     (+Inf {inf:?}, count {count:?}, sum present {sum})"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP tapgate_messages_total Device messages.\n\
        # TYPE tapgate_messages_total counter\n\
        tapgate_messages_total{message=\"tap\"} 3\n\
        tapgate_messages_total{message=\"button\"} 0\n\
        # TYPE tapgate_decision_latency_seconds histogram\n\
        tapgate_decision_latency_seconds_bucket{le=\"0.001\"} 1\n\
        tapgate_decision_latency_seconds_bucket{le=\"0.01\"} 3\n\
        tapgate_decision_latency_seconds_bucket{le=\"+Inf\"} 3\n\
        tapgate_decision_latency_seconds_sum 0.012\n\
        tapgate_decision_latency_seconds_count 3\n\
        # TYPE tapgate_inflight_messages gauge\n\
        tapgate_inflight_messages 0 1700000000000\n";

    #[test]
    fn reads_a_valid_exposition() {
        let exp = parse(GOOD).expect("valid");
        assert_eq!(exp["tapgate_messages_total"].kind, Kind::Counter);
        assert_eq!(
            exp["tapgate_messages_total"].samples[0].label("message"),
            Some("tap")
        );
        assert_eq!(exp["tapgate_decision_latency_seconds"].samples.len(), 5);
        // OpenMetrics style: family without _total, samples with it, # EOF.
        let om = "# TYPE a counter\na_total 1\na_created 1.7e9\n# EOF\n";
        assert_eq!(parse(om).expect("openmetrics")["a"].samples.len(), 2);
    }

    #[test]
    fn refuses_broken_expositions() {
        for bad in [
            "a{x=\"1\" 1\n",
            "a{x=1} 1\n",
            "a{1x=\"1\"} 1\n",
            "a{x=\"1\",x=\"2\"} 1\n",
            "1a 1\n",
            "a one\n",
            "a 1 2 3\n",
            "a\n",
            "# TYPE a sometimes\n",
            "a 1\n# TYPE a counter\n",
            "# TYPE a counter\n# TYPE a counter\n",
            "a 1\nb 1\na 2\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh 1\n",
            "a 1\n# EOF\nb 1\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
