//! EMQX configuration: the HOCON files and the file authorization rules.
//!
//! [`load_hocon`] reads a HOCON file with the strict subset reader in [`crate::hocon`]. [`check_broker`] and [`check_rules`] hold the parsed
//! configuration against what tapgate needs, and [`Acl`] evaluates `acl.conf` the way EMQX does
//! (first matching rule wins, `${clientid}` and `${username}` substituted), so the same
//! permission table can be run against EMQX's rules here and against mosquitto for real.

use std::path::PathBuf;

use crate::erl::{self, Term};
use crate::hocon::{self, Document, Value as Hocon};
use crate::keys::EMQX_KEYS;
use crate::repo::{self, CheckError, Finding};

/// Reads the HOCON file `rel` (relative to the repository root). Includes are recorded in the
/// document, not followed: check the included files separately.
pub fn load_hocon(rel: &str) -> Result<Document, CheckError> {
    let text = repo::read(rel)?;
    hocon::parse(&text).map_err(|e| CheckError::Syntax {
        path: PathBuf::from(rel),
        line: e.line,
        why: e.why,
    })
}

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
/// subscriptions on.
pub fn check_broker(file: &str, conf: &Hocon) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            out.push(Finding::new(file, what));
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
pub fn check_rules(file: &str, conf: &Hocon) -> Vec<Finding> {
    let mut out = Vec::new();
    let connectors: Vec<&String> = entries(conf, "connectors.redis")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    if connectors.is_empty() {
        out.push(Finding::new(
            file,
            "no Redis connector (connectors.redis.*)",
        ));
    }
    let actions = entries(conf, "actions.redis");
    let mut written = Vec::new();
    for (name, action) in &actions {
        let connector = string(action, "connector").unwrap_or_default();
        if !connectors.iter().any(|c| c.as_str() == connector) {
            out.push(Finding::new(
                file,
                format!("action redis:{name} uses undefined connector {connector:?}"),
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
            other => out.push(Finding::new(
                file,
                format!(
                    "action redis:{name} must be [HINCRBY, <a documented tapgate:emqx:* key>, \
                     ${{field}}, 1], not {other:?}"
                ),
            )),
        }
    }
    for key in EMQX_KEYS {
        if !written.iter().any(|w| w == key) {
            out.push(Finding::new(file, format!("no action writes {key}")));
        }
    }
    let rules = entries(conf, "rule_engine.rules");
    if rules.is_empty() {
        out.push(Finding::new(file, "no rules (rule_engine.rules.*)"));
    }
    for (name, rule) in rules {
        let sql = string(rule, "sql").unwrap_or_default();
        let Some((event, field)) = EVENTS
            .iter()
            .find(|(event, _)| sql.contains(&format!("FROM \"{event}\"")))
        else {
            out.push(Finding::new(
                file,
                format!("rule {name} reads none of {EVENTS:?}: {sql:?}"),
            ));
            continue;
        };
        if !sql.contains(field) {
            out.push(Finding::new(
                file,
                format!("rule {name} on {event} does not select {field}"),
            ));
        }
        let used = array(rule, "actions");
        if used.is_empty() {
            out.push(Finding::new(file, format!("rule {name} has no actions")));
        }
        for a in used {
            let Hocon::String(a) = a else {
                out.push(Finding::new(
                    file,
                    format!("rule {name}: action is not a string"),
                ));
                continue;
            };
            let defined = a
                .strip_prefix("redis:")
                .is_some_and(|n| actions.iter().any(|(name, _)| name.as_str() == n));
            if !defined {
                out.push(Finding::new(
                    file,
                    format!("rule {name} runs undefined action {a:?}"),
                ));
            }
        }
    }
    out
}

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// PUBLISH to a topic.
    Publish,
    /// SUBSCRIBE to a topic filter.
    Subscribe,
}

/// Who an ACL rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    All,
    Username(String),
    UsernameRe(String),
    ClientId(String),
    ClientIdRe(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    who: Who,
    publish: bool,
    subscribe: bool,
    /// Empty: every topic (the two-element `{allow|deny, who}` form).
    topics: Vec<String>,
}

/// EMQX file authorization rules, evaluated as EMQX does.
#[derive(Debug, Clone)]
pub struct Acl {
    rules: Vec<Rule>,
}

fn who(term: &Term) -> Option<Who> {
    match term {
        Term::Atom(a) if a == "all" => Some(Who::All),
        Term::Tuple(t) => match t.as_slice() {
            [Term::Atom(k), Term::Str(v)] if k == "username" || k == "user" => {
                Some(Who::Username(v.clone()))
            }
            [Term::Atom(k), Term::Tuple(re)] if k == "username" || k == "user" => {
                match re.as_slice() {
                    [Term::Atom(r), Term::Str(v)] if r == "re" => Some(Who::UsernameRe(v.clone())),
                    _ => None,
                }
            }
            [Term::Atom(k), Term::Str(v)] if k == "clientid" || k == "client" => {
                Some(Who::ClientId(v.clone()))
            }
            [Term::Atom(k), Term::Tuple(re)] if k == "clientid" || k == "client" => {
                match re.as_slice() {
                    [Term::Atom(r), Term::Str(v)] if r == "re" => Some(Who::ClientIdRe(v.clone())),
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    }
}

impl Acl {
    /// Reads `acl.conf` text. Refuses rule shapes this evaluator does not understand, so it
    /// never silently misjudges a rule.
    pub fn parse(file: &str, text: &str) -> Result<Self, CheckError> {
        let terms = erl::consult(file, text)?;
        let bad = |i: usize, why: &str| CheckError::Syntax {
            path: PathBuf::from(file),
            line: 0,
            why: format!("rule {}: {why}", i + 1),
        };
        let mut rules = Vec::new();
        for (i, term) in terms.iter().enumerate() {
            let Term::Tuple(items) = term else {
                return Err(bad(i, "not a tuple"));
            };
            let allow = match items.first().and_then(Term::atom) {
                Some("allow") => true,
                Some("deny") => false,
                _ => return Err(bad(i, "must start with allow or deny")),
            };
            let who = items
                .get(1)
                .and_then(who)
                .ok_or_else(|| bad(i, "unknown who"))?;
            let rule = match items.as_slice() {
                [_, _] => Rule {
                    allow,
                    who,
                    publish: true,
                    subscribe: true,
                    topics: Vec::new(),
                },
                [_, _, Term::Atom(action), Term::List(topics)] => {
                    let (publish, subscribe) = match action.as_str() {
                        "publish" => (true, false),
                        "subscribe" => (false, true),
                        "all" | "pubsub" => (true, true),
                        _ => return Err(bad(i, "unknown action")),
                    };
                    let topics = topics
                        .iter()
                        .map(|t| t.str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad(i, "topics must be plain strings"))?;
                    if topics.is_empty() {
                        return Err(bad(i, "empty topic list"));
                    }
                    Rule {
                        allow,
                        who,
                        publish,
                        subscribe,
                        topics,
                    }
                }
                _ => {
                    return Err(bad(
                        i,
                        "must be {Permission, Who} or {Permission, Who, Action, Topics}",
                    ))
                }
            };
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Whether any rule allows everything to everyone (`{allow, all}.`).
    pub fn has_allow_all(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.allow && r.who == Who::All && r.topics.is_empty())
    }

    /// The decision of the first matching rule: `Some(true)` allow, `Some(false)` deny, `None`
    /// no rule matched (then `no_match` decides).
    pub fn check(
        &self,
        username: &str,
        clientid: &str,
        action: Action,
        topic: &str,
    ) -> Option<bool> {
        for rule in &self.rules {
            let who = match &rule.who {
                Who::All => true,
                Who::Username(u) => u == username,
                Who::UsernameRe(re) => simple_re(re, username),
                Who::ClientId(c) => c == clientid,
                Who::ClientIdRe(re) => simple_re(re, clientid),
            };
            let act = match action {
                Action::Publish => rule.publish,
                Action::Subscribe => rule.subscribe,
            };
            if !who || !act {
                continue;
            }
            let topic_ok = rule.topics.is_empty()
                || rule.topics.iter().any(|f| {
                    let filter = f
                        .replace("${clientid}", clientid)
                        .replace("${username}", username);
                    filter_matches(&filter, topic)
                });
            if topic_ok {
                return Some(rule.allow);
            }
        }
        None
    }
}

/// The regular expression shapes acl.conf uses: `^prefix(-.+)?$`, `^name$`, and a character
/// class `[...]` of literal characters (matches when the text holds any of them). Any other
/// shape matches nothing, so a rule this evaluator cannot read never allows anything here.
fn simple_re(re: &str, s: &str) -> bool {
    if let Some(class) = re.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return !class.is_empty()
            && !class.contains(['^', '-', '\\', '['])
            && s.chars().any(|c| class.contains(c));
    }
    if let Some(name) = re.strip_prefix('^').and_then(|r| r.strip_suffix('$')) {
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return s == name;
        }
    }
    match re.strip_prefix('^').and_then(|r| r.strip_suffix("(-.+)?$")) {
        Some(prefix) => {
            s == prefix
                || s.strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|r| !r.is_empty())
        }
        None => false,
    }
}

/// MQTT filter matching, with the name's words taken literally (so a subscription to
/// `a/+` is covered by the rule filter `a/+` or `a/#`, but not by `a/b`), as EMQX does for
/// authorization.
pub fn filter_matches(filter: &str, name: &str) -> bool {
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => continue,
            (Some(a), Some(b)) if a == b => continue,
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("a/+", "a/+"));
        assert!(!filter_matches("a/b", "a/+"));
        assert!(!filter_matches("a/+/c", "a/#"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }

    #[test]
    fn regex_classes_and_names() {
        assert!(simple_re("[+#]", "+"));
        assert!(simple_re("[+#]", "a#b"));
        assert!(!simple_re("[+#]", "g1"));
        assert!(simple_re("^tapgate-monitor$", "tapgate-monitor"));
        assert!(!simple_re("^tapgate-monitor$", "tapgate-monitor-2"));
        assert!(
            !simple_re("[a-z]", "b"),
            "ranges are not read, so they match nothing"
        );
    }

    #[test]
    fn regex_shape() {
        assert!(simple_re("^device(-.+)?$", "device"));
        assert!(simple_re("^device(-.+)?$", "device-g1"));
        assert!(!simple_re("^device(-.+)?$", "device-"));
        assert!(!simple_re("^device(-.+)?$", "devices"));
        assert!(!simple_re("device", "device"));
    }

    #[test]
    fn first_match_wins() {
        let acl = Acl::parse(
            "acl.conf",
            "{deny, {username, \"x\"}, publish, [\"a/#\"]}.\n\
             {allow, all, publish, [\"a/${clientid}\"]}.\n{deny, all}.",
        )
        .expect("acl");
        assert_eq!(acl.check("x", "c1", Action::Publish, "a/c1"), Some(false));
        assert_eq!(acl.check("y", "c1", Action::Publish, "a/c1"), Some(true));
        assert_eq!(acl.check("y", "c1", Action::Publish, "a/c2"), Some(false));
        assert!(!acl.has_allow_all());
        assert!(Acl::parse("acl.conf", "{allow, all}.")
            .expect("acl")
            .has_allow_all());
        assert!(Acl::parse("acl.conf", "{allow, all, publish, []}.").is_err());
        assert!(Acl::parse("acl.conf", "{maybe, all}.").is_err());
    }
}

/// One rule of EMQX's built-in authorization database, as `tapgate-admin` writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DbRule {
    /// Topic or filter (no placeholders are substituted in this source).
    pub topic: String,
    /// `allow` or `deny`.
    pub permission: String,
    /// `publish`, `subscribe` or `all`.
    pub action: String,
}

/// EMQX's authorization chain as emqx/etc/emqx.conf sets it up: the built-in database's rules of
/// the username, then the file rules, then `no_match = deny`; with `use_username_as_clientid`,
/// the client id the rules see is the username whatever the client sent.
pub fn authorize(
    db: &[DbRule],
    acl: &Acl,
    use_username_as_clientid: bool,
    username: &str,
    clientid: &str,
    action: Action,
    topic: &str,
) -> bool {
    let clientid = if use_username_as_clientid {
        username
    } else {
        clientid
    };
    for r in db {
        let act = match action {
            Action::Publish => r.action == "publish" || r.action == "all",
            Action::Subscribe => r.action == "subscribe" || r.action == "all",
        };
        if act && filter_matches(&r.topic, topic) {
            return r.permission == "allow";
        }
    }
    acl.check(username, clientid, action, topic)
        .unwrap_or(false)
}
