//! `docker-compose.yml`: the Dockerfiles, variables, mounted files and start order it names.
//!
//! No Docker engine is needed: the file is read as YAML and every reference is followed in the
//! repository. Variables (`${NAME}`, `${NAME:-default}`, `${NAME:?message}`, `$NAME`) must be
//! listed in `.env.example`; a secret-looking setting (password, cookie, secret, token) must come
//! from a variable, never be written in the file. The file must also be one docker-compose 1.29
//! (Debian 12's package) reads, as well as Compose v2: no top-level `name`, no `configs` written
//! inline (`content`, `environment`).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::{Mapping, Value};

use crate::repo::{self, CheckError, Finding};

/// A variable reference in the compose text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    pub name: String,
    /// The `:-` / `-` default, if any.
    pub default: Option<String>,
}

/// Every variable the text refers to (`$$` is an escaped dollar, not a reference).
pub fn variables(text: &str) -> Vec<VarRef> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let Some(end) = text[i..].find('}') else {
                    break;
                };
                let inner = &text[i + 2..i + end];
                let name_len = inner.bytes().take_while(|c| ident(*c)).count();
                let (name, rest) = inner.split_at(name_len);
                let default = rest
                    .strip_prefix(":-")
                    .or_else(|| rest.strip_prefix('-'))
                    .map(str::to_owned);
                out.push(VarRef {
                    name: name.to_owned(),
                    default,
                });
                i += end + 1;
            }
            Some(c) if ident(*c) => {
                let len = b[i + 1..].iter().take_while(|c| ident(**c)).count();
                out.push(VarRef {
                    name: text[i + 1..i + 1 + len].to_owned(),
                    default: None,
                });
                i += 1 + len;
            }
            _ => i += 1,
        }
    }
    out
}

/// Replaces `${NAME...}` references with `vars[NAME]`, or the reference's default.
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let refs = variables(&rest[start..start + end + 1]);
        if let Some(r) = refs.first() {
            match vars.get(&r.name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(v),
                None => out.push_str(r.default.as_deref().unwrap_or_default()),
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn map<'a>(v: &'a Value, key: &str) -> Option<&'a Mapping> {
    v.get(key).and_then(Value::as_mapping)
}

/// Variables and their values, as an env file gives them.
type Env = BTreeMap<String, String>;

/// Checks the compose file `rel` against the env file `env_rel`. Mounted paths are checked with
/// both the compose defaults and the env file's values.
pub fn check(rel: &str, env_rel: &str) -> Result<Vec<Finding>, CheckError> {
    let text = repo::read(rel)?;
    let env = crate::envfile::load(env_rel)?;
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|source| CheckError::Yaml {
        path: rel.into(),
        source,
    })?;
    let Some(top) = doc.as_mapping() else {
        return Ok(vec![Finding::new(rel, "the file is not a mapping")]);
    };
    let mut found = Vec::new();
    top_level(&mut found, top);
    unlisted_variables(&mut found, &text, &env, env_rel);
    let declared_volumes: BTreeSet<&str> = map(&doc, "volumes")
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match map(&doc, "services") {
        None => found.push("no services".into()),
        Some(services) => {
            for (name, svc) in services {
                let name = name.as_str().unwrap_or("?");
                build(&mut found, name, svc);
                mounts(&mut found, name, svc, &declared_volumes, &env);
                start_order(&mut found, name, svc, services);
                secrets(&mut found, name, svc);
            }
        }
    }
    Ok(found.into_iter().map(|w| Finding::new(rel, w)).collect())
}

/// The top-level keys docker-compose 1.29 reads (no `name`), and no `configs` written inline.
fn top_level(found: &mut Vec<String>, top: &Mapping) {
    for key in top.keys() {
        let k = key.as_str().unwrap_or_default();
        if k == "name" {
            found.push(
                "top-level name: docker-compose 1.29 refuses it (give the project name with -p or \
                 COMPOSE_PROJECT_NAME)"
                    .into(),
            );
        } else if !["services", "volumes", "networks", "secrets", "configs"].contains(&k)
            && !k.starts_with("x-")
        {
            found.push(format!("unknown top-level key {k:?}"));
        }
    }
    let configs = top.get("configs").and_then(Value::as_mapping);
    for (name, config) in configs.into_iter().flatten() {
        let name = name.as_str().unwrap_or("?");
        for inline in ["content", "environment"] {
            if config.get(inline).is_some() {
                found.push(format!(
                    "config {name}: {inline} needs Compose 2.23; docker-compose 1.29 reads only file configs"
                ));
            }
        }
    }
}

/// Variables the compose `text` uses and `env` (file `env_rel`) does not list, and the reverse.
fn unlisted_variables(found: &mut Vec<String>, text: &str, env: &Env, env_rel: &str) {
    let used: BTreeSet<String> = variables(text).into_iter().map(|v| v.name).collect();
    let unlisted = used.iter().filter(|name| !env.contains_key(*name));
    found.extend(unlisted.map(|name| format!("variable {name} is not listed in {env_rel}")));
    let unused = env.keys().filter(|name| !used.contains(*name));
    found.extend(
        unused.map(|name| format!("{env_rel} lists {name}, which the compose file never uses")),
    );
}

/// A service's image, or its build: an explicit Dockerfile that exists, with its own
/// `.dockerignore`.
fn build(found: &mut Vec<String>, name: &str, svc: &Value) {
    let Some(build) = svc.get("build") else {
        if svc.get("image").is_none() {
            found.push(format!("service {name}: neither image nor build"));
        }
        return;
    };
    let context = build.get("context").and_then(Value::as_str).unwrap_or(".");
    let Some(dockerfile) = build.get("dockerfile").and_then(Value::as_str) else {
        return found.push(format!(
            "service {name}: build without an explicit dockerfile"
        ));
    };
    let path = std::path::Path::new(context).join(dockerfile);
    let shown = path.display();
    if !repo::is_file(&path) {
        found.push(format!("service {name}: Dockerfile {shown} does not exist"));
    }
    let ignore = format!("{shown}.dockerignore");
    if !repo::is_file(&ignore) {
        found.push(format!(
            "service {name}: no {ignore}, so the whole checkout (target/ too) is sent to the builder"
        ));
    }
}

/// A service's mounts, in the short syntax: a path in the repository that exists (with the
/// compose defaults and with `env`'s values), a folder a variable names, or a declared volume.
fn mounts(found: &mut Vec<String>, name: &str, svc: &Value, volumes: &BTreeSet<&str>, env: &Env) {
    let mounts = svc.get("volumes").and_then(Value::as_sequence);
    for v in mounts.into_iter().flatten() {
        let Some(spec) = v.as_str() else {
            found.push(format!(
                "service {name}: use the short volume syntax (source:target[:ro])"
            ));
            continue;
        };
        let source = spec.split(':').next().unwrap_or_default();
        if source.starts_with('.') || source.starts_with('/') {
            for vars in [&Env::new(), env] {
                let spec = interpolate(spec, vars);
                let path = spec.split(':').next().unwrap_or_default();
                let path = path.trim_start_matches("./");
                if !repo::root().join(path).exists() {
                    found.push(format!("service {name}: mounted {path} does not exist"));
                }
            }
        } else if source.starts_with('$') {
            // A folder the operator chooses (e.g. TLS certificates): it lives outside the
            // repository, so only the variable is checked (listed in .env.example, above).
        } else if !volumes.contains(source) {
            found.push(format!(
                "service {name}: volume {source} is not declared under volumes:"
            ));
        }
    }
}

/// A service's start order: `depends_on` a mapping, each on a known service with a condition,
/// `service_healthy` only on a service with a healthcheck.
fn start_order(found: &mut Vec<String>, name: &str, svc: &Value, services: &Mapping) {
    let deps = match svc.get("depends_on") {
        None => return,
        Some(Value::Mapping(deps)) => deps,
        Some(_) => {
            return found.push(format!(
                "service {name}: depends_on must be a mapping with conditions, not a list"
            ))
        }
    };
    for (dep, cond) in deps {
        let dep = dep.as_str().unwrap_or("?");
        let Some(dep_svc) = services.get(dep) else {
            found.push(format!("service {name} depends on unknown service {dep}"));
            continue;
        };
        let condition = cond.get("condition").and_then(Value::as_str);
        if condition == Some("service_healthy") && dep_svc.get("healthcheck").is_none() {
            found.push(format!(
                "service {name} waits for {dep} to be healthy, but {dep} has no healthcheck"
            ));
        }
        if condition.is_none() {
            found.push(format!(
                "service {name}: depends_on {dep} without a condition"
            ));
        }
    }
}

/// A service's environment: a mapping, with every secret-looking setting (password, secret,
/// cookie, token) taken from a variable.
fn secrets(found: &mut Vec<String>, name: &str, svc: &Value) {
    let Some(envs) = map(svc, "environment") else {
        if svc.get("environment").is_some() {
            found.push(format!("service {name}: environment must be a mapping"));
        }
        return;
    };
    for (k, v) in envs {
        let k = k.as_str().unwrap_or_default();
        let secretish = ["PASSWORD", "SECRET", "COOKIE", "TOKEN"]
            .iter()
            .any(|s| k.to_ascii_uppercase().contains(s));
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => format!("{other:?}"),
        };
        if secretish && !value.is_empty() && !value.contains('$') {
            found.push(format!(
                "service {name}: {k} is written in the file; take it from a variable"
            ));
        }
    }
}

/// What a service tells its program: `TAPGATE_*` environment variables and `--flags` of its
/// command, to hold against the program's `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    pub service: String,
    /// `TAPGATE_*` variables in its environment.
    pub env: Vec<String>,
    /// The words of its command (subcommand and flags).
    pub command: Vec<String>,
}

/// The settings of every service in compose file `rel`.
pub fn service_settings(rel: &str) -> Result<Vec<ServiceSettings>, CheckError> {
    let text = repo::read(rel)?;
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|source| CheckError::Yaml {
        path: rel.into(),
        source,
    })?;
    let mut out = Vec::new();
    for (name, svc) in map(&doc, "services").into_iter().flatten() {
        let env = map(svc, "environment")
            .map(|m| {
                m.keys()
                    .filter_map(Value::as_str)
                    .filter(|k| k.starts_with("TAPGATE_"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let command = svc
            .get("command")
            .and_then(Value::as_sequence)
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        out.push(ServiceSettings {
            service: name.as_str().unwrap_or_default().to_owned(),
            env,
            command,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_variables() {
        let v = variables("a: ${A}\nb: ${B:-x}\nc: $$NOT\nd: $D e ${E:?need E}\nf: ${F-y}");
        let names: Vec<_> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "D", "E", "F"]);
        assert_eq!(v[1].default.as_deref(), Some("x"));
        assert_eq!(v[4].default.as_deref(), Some("y"));
    }

    #[test]
    fn interpolates() {
        let mut vars = BTreeMap::new();
        vars.insert("A".to_owned(), "one".to_owned());
        assert_eq!(interpolate("./x/${A:-d}/${B:-two}", &vars), "./x/one/two");
    }
}
