//! EMQX's HOCON files held against what tapgate needs: [`check_broker`] for `emqx.conf`,
//! [`check_rules`] for the rule engine file. Each returns every problem found, not only the
//! first, as plain sentences; the caller names the file.

use tapgate_protocol::keys::EMQX_KEYS;

use crate::hocon::Value as Hocon;

fn get<'a>(h: &'a Hocon, path: &str) -> Option<&'a Hocon> {
    h.get(path)
}

fn string<'a>(h: &'a Hocon, path: &str) -> Option<&'a str> {
    match get(h, path)? {
        Hocon::String(s) => Some(s),
        _ => None,
    }
}

fn boolean(h: &Hocon, path: &str) -> Option<bool> {
    match get(h, path)? {
        Hocon::Bool(b) => Some(*b),
        _ => None,
    }
}

fn entries<'a>(h: &'a Hocon, path: &str) -> Vec<(&'a String, &'a Hocon)> {
    match get(h, path) {
        Some(Hocon::Object(map)) => {
            let mut v: Vec<_> = map.iter().collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v
        }
        _ => Vec::new(),
    }
}

fn array<'a>(h: &'a Hocon, path: &str) -> &'a [Hocon] {
    match get(h, path) {
        Some(Hocon::Array(items)) => items,
        _ => &[],
    }
}

/// Checks the broker file (`emqx.conf`): TCP_NODELAY on the listener, password authentication
/// seeded from a bootstrap file, file authorization with `no_match = deny`, shared
/// subscriptions on, and client certificates on the TLS listener verified and checked against
/// the CRL.
pub fn check_broker(conf: &Hocon) -> Vec<String> {
    let mut out = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            out.push(what.to_owned());
        }
    };
    need(
        boolean(conf, "listeners.tcp.default.tcp_options.nodelay") == Some(true),
        "listeners.tcp.default.tcp_options.nodelay must be true",
    );
    need(
        boolean(conf, "mqtt.shared_subscription") == Some(true),
        "mqtt.shared_subscription must be true (the bridge uses $share/tapgate-bridge/...)",
    );
    need(
        string(conf, "authorization.no_match") == Some("deny"),
        "authorization.no_match must be deny",
    );
    let sources = array(conf, "authorization.sources");
    need(
        sources.iter().any(|s| {
            string(s, "type") == Some("file") && string(s, "path") == Some("/opt/emqx/etc/acl.conf")
        }),
        "authorization.sources must hold the file source /opt/emqx/etc/acl.conf",
    );
    need(
        sources.len() == 2 && string(&sources[0], "type") == Some("built_in_database"),
        "authorization.sources must be the built-in database (per-device rules of tapgate-admin) \
         then the file",
    );
    need(
        string(conf, "mqtt.max_packet_size") == Some("8KB"),
        "mqtt.max_packet_size must be 8KB (below the bridge's 64 KiB)",
    );
    need(
        boolean(conf, "mqtt.retain_available") == Some(false),
        "mqtt.retain_available must be false (no retained taps)",
    );
    need(
        boolean(conf, "mqtt.use_username_as_clientid") == Some(true),
        "mqtt.use_username_as_clientid must be true (a device's client id is its login)",
    );
    need(
        string(conf, "listeners.ssl.default.bind") == Some("0.0.0.0:8883"),
        "listeners.ssl.default.bind must be 0.0.0.0:8883 (devices use TLS)",
    );
    // Revocation of device certificates: EMQX has no CRL file; it fetches the CRL named by each
    // client certificate (tapgate-admin cert issue --crl-url), and only with verify_peer.
    need(
        boolean(conf, "listeners.ssl.default.ssl_options.enable_crl_check") == Some(true),
        "listeners.ssl.default.ssl_options.enable_crl_check must be true (a revoked device \
         certificate must be refused at the handshake)",
    );
    need(
        string(conf, "listeners.ssl.default.ssl_options.verify") == Some("verify_peer"),
        "listeners.ssl.default.ssl_options.verify must be verify_peer (client certificates are \
         checked, against the CA and the CRL; EMQX refuses enable_crl_check without it)",
    );
    need(
        string(conf, "api_key.bootstrap_file").is_some(),
        "api_key.bootstrap_file must be set (tapgate-admin provisions devices over the API)",
    );
    let authn = array(conf, "authentication");
    need(
        authn.iter().any(|a| {
            string(a, "mechanism") == Some("password_based")
                && string(a, "backend") == Some("built_in_database")
                && string(a, "user_id_type") == Some("username")
                && string(a, "bootstrap_file").is_some()
        }),
        "authentication must hold a password_based built_in_database by username with a bootstrap_file",
    );
    out
}

/// Events the rules may read, with the field each counter takes from them.
const EVENTS: [(&str, &str); 3] = [
    ("$events/client_disconnected", "reason"),
    ("$events/client_check_authz_complete", "result"),
    ("$events/message_dropped", "reason"),
];

/// Checks the rule engine file: every rule reads one of the expected events and runs defined
/// Redis actions; every action is `HINCRBY <documented key> ${field} 1` on a defined connector;
/// every documented EMQX key is written by some action.
pub fn check_rules(conf: &Hocon) -> Vec<String> {
    let mut out = Vec::new();
    let connectors: Vec<&String> = entries(conf, "connectors.redis")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    if connectors.is_empty() {
        out.push("no Redis connector (connectors.redis.*)".to_owned());
    }
    let actions = entries(conf, "actions.redis");
    let mut written = Vec::new();
    for (name, action) in &actions {
        let connector = string(action, "connector").unwrap_or_default();
        if !connectors.iter().any(|c| c.as_str() == connector) {
            out.push(format!(
                "action redis:{name} uses undefined connector {connector:?}"
            ));
        }
        let template: Vec<&str> = array(action, "parameters.command_template")
            .iter()
            .filter_map(|v| match v {
                Hocon::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        match template.as_slice() {
            ["HINCRBY", key, field, "1"]
                if EMQX_KEYS.contains(key) && field.starts_with("${") && field.ends_with('}') =>
            {
                written.push(key.to_string());
            }
            other => out.push(format!(
                "action redis:{name} must be [HINCRBY, <a documented tapgate:emqx:* key>, \
                     ${{field}}, 1], not {other:?}"
            )),
        }
    }
    for key in EMQX_KEYS {
        if !written.iter().any(|w| w == key) {
            out.push(format!("no action writes {key}"));
        }
    }
    let rules = entries(conf, "rule_engine.rules");
    if rules.is_empty() {
        out.push("no rules (rule_engine.rules.*)".to_owned());
    }
    for (name, rule) in rules {
        let sql = string(rule, "sql").unwrap_or_default();
        let Some((event, field)) = EVENTS
            .iter()
            .find(|(event, _)| sql.contains(&format!("FROM \"{event}\"")))
        else {
            out.push(format!("rule {name} reads none of {EVENTS:?}: {sql:?}"));
            continue;
        };
        if !sql.contains(field) {
            out.push(format!("rule {name} on {event} does not select {field}"));
        }
        let used = array(rule, "actions");
        if used.is_empty() {
            out.push(format!("rule {name} has no actions"));
        }
        for a in used {
            let Hocon::String(a) = a else {
                out.push(format!("rule {name}: action is not a string"));
                continue;
            };
            let defined = a
                .strip_prefix("redis:")
                .is_some_and(|n| actions.iter().any(|(name, _)| name.as_str() == n));
            if !defined {
                out.push(format!("rule {name} runs undefined action {a:?}"));
            }
        }
    }
    out
}
