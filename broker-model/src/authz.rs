//! EMQX's authorization chain as `emqx/etc/emqx.conf` sets it up: the built-in database's rules
//! of the username (written by `tapgate-admin`), then the file rules, then `no_match = deny`.

use crate::acl::{filter_matches, Acl, Action};

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
