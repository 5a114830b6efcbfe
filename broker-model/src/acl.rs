//! EMQX's file authorization rules (`acl.conf`), evaluated as EMQX does: first matching rule
//! wins, `${clientid}` and `${username}` substituted, topic filters matched with the asked
//! topic's words taken literally. A rule shape this evaluator does not understand is refused, so
//! it never silently misjudges a rule.

use crate::erl::{self, Term};
use crate::error::ModelError;

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
    pub fn parse(file: &str, text: &str) -> Result<Self, ModelError> {
        let terms = erl::consult(file, text)?;
        let bad =
            |i: usize, why: &str| ModelError::syntax(file, 0, format!("rule {}: {why}", i + 1));
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
