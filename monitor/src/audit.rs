//! The audit trail: who did what on the dashboard, when and from where.
//!
//! Every login, failed login, logout, "log out everywhere", block, unblock, voided sale and card
//! replacement (`card` the lost card, `reason` the new one, `price` the balance that moved), and
//! every start-up that ended sessions, is appended to the `tapgate:monitor:audit` stream (capped
//! at about [`AUDIT_MAXLEN`] records) with fields `action`, `operator` (for a failed login: the
//! name tried), `from` (the client address), and `card`, `reason`, `product` and `price` (what a
//! voided sale had taken, as people read it: `7.50 EUR`) where they apply; the entry id is the
//! time. The dashboard shows the newest records; `tapgate-monitor tail --audit` prints them and
//! follows. Every text field is escaped when shown, since a failed login's name is whatever the
//! client typed.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::streams::{self, StreamRangeReply, StreamReadReply};
use redis::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::format::{format_time, Line, Paint};
use crate::stream::{StreamError, StreamId};
use crate::text::{escape_untrusted, MAX_TEXT};
use tapgate_protocol::keys;

/// About how many records are kept.
pub(crate) const AUDIT_MAXLEN: u64 = 100_000;

/// An operator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Logged in.
    Login,
    /// A login was refused (wrong name or password).
    FailedLogin,
    /// Logged out.
    Logout,
    /// Ended all of their sessions.
    LogoutEverywhere,
    /// Blocked a card.
    Block,
    /// Unblocked a card.
    Unblock,
    /// Voided a sale made in error.
    Void,
    /// Replaced a lost card (`card`) by a new one (`reason`).
    Replace,
    /// Sessions ended because the operator was removed or their password changed.
    SessionsRevoked,
}

impl Action {
    /// The stored name.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::FailedLogin => "failed-login",
            Action::Logout => "logout",
            Action::LogoutEverywhere => "logout-everywhere",
            Action::Block => "block",
            Action::Unblock => "unblock",
            Action::Void => "void",
            Action::Replace => "replace",
            Action::SessionsRevoked => "sessions-revoked",
        }
    }
}

/// One record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// What happened.
    pub action: Action,
    /// Who (for a failed login, the name tried).
    pub operator: &'a str,
    /// The client address, if a request caused it.
    pub from: Option<String>,
    /// The card, for blocks, unblocks and voids.
    pub card: Option<&'a str>,
    /// Why, for blocks.
    pub reason: Option<&'a str>,
    /// The product of a voided sale.
    pub product: Option<&'a str>,
    /// What a voided sale had taken, formatted with its currency.
    pub price: Option<String>,
}

/// Appends `r`; returns its stream id.
pub(crate) async fn append(
    conn: &mut impl ConnectionLike,
    r: &Record<'_>,
) -> redis::RedisResult<String> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys::MONITOR_AUDIT)
        .arg("MAXLEN")
        .arg("~")
        .arg(AUDIT_MAXLEN)
        .arg("*")
        .arg("action")
        .arg(r.action.as_str())
        .arg("operator")
        // Stored as sent, only capped; escaped whenever it is shown.
        .arg(r.operator.chars().take(64).collect::<String>());
    if let Some(from) = &r.from {
        cmd.arg("from").arg(from);
    }
    if let Some(card) = r.card {
        cmd.arg("card").arg(card);
    }
    if let Some(reason) = r.reason {
        cmd.arg("reason").arg(reason);
    }
    if let Some(product) = r.product {
        cmd.arg("product").arg(product);
    }
    if let Some(price) = &r.price {
        cmd.arg("price").arg(price);
    }
    cmd.query_async(conn).await
}

/// A record as read back: its id and fields, every text escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Stream id (its time is when it happened).
    pub id: StreamId,
    /// Field → value.
    pub fields: Vec<(String, String)>,
}

impl Stored {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
    }

    /// As JSON: `{seq, at, action, operator, from, card, reason, product, price}`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "seq": self.id.to_string(),
            "at": self.id.ms,
            "action": self.get("action"),
            "operator": self.get("operator"),
            "from": self.get("from"),
            "card": self.get("card"),
            "reason": self.get("reason"),
            "product": self.get("product"),
            "price": self.get("price"),
        })
    }

    /// As a terminal line: `2026-… AUDIT      block card 04AB (stolen) by alice from 10.0.0.7`.
    pub(crate) fn line(&self) -> Line {
        let mut line = Line::default();
        line.push(Paint::Dim, format_time(self.id.ms));
        line.push(Paint::Plain, "  ");
        let action = self.get("action").unwrap_or("?");
        let who = self.get("operator").unwrap_or("?");
        let mut text = match action {
            "failed-login" => format!(
                "AUDIT      failed login as \"{}\"",
                who.replace('"', "\\\"")
            ),
            "block" | "unblock" => format!(
                "AUDIT      {action} card {}{} by {who}",
                self.get("card").unwrap_or("?"),
                self.get("reason")
                    .map_or_else(String::new, |r| format!(" ({r})"))
            ),
            "void" => format!(
                "AUDIT      void card {} {} {} by {who}",
                self.get("card").unwrap_or("?"),
                self.get("product").unwrap_or("?"),
                self.get("price").unwrap_or("?"),
            ),
            "replace" => format!(
                "AUDIT      replace card {} with card {}{} by {who}",
                self.get("card").unwrap_or("?"),
                self.get("reason").unwrap_or("?"),
                self.get("price")
                    .map_or_else(String::new, |b| format!(" (balance {b})"))
            ),
            other => format!("AUDIT      {other} {who}"),
        };
        if let Some(from) = self.get("from") {
            text.push_str(&format!(" from {from}"));
        }
        let paint = if action == "failed-login" {
            Paint::Red
        } else {
            Paint::Yellow
        };
        line.push(paint, text);
        line
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The records of a stream reply, fields sorted by name; an entry whose id does not parse is
/// left out.
fn records(ids: &[streams::StreamId]) -> Vec<Stored> {
    ids.iter()
        .filter_map(|entry| {
            let id: StreamId = entry.id.parse().ok()?;
            let mut fields: Vec<(String, String)> = entry
                .map
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        escape_untrusted(k, 32),
                        escape_untrusted(&text(v)?, MAX_TEXT),
                    ))
                })
                .collect();
            fields.sort();
            Some(Stored { id, fields })
        })
        .collect()
}

/// The newest `n` records, newest first.
pub(crate) async fn latest(
    conn: &mut impl ConnectionLike,
    n: usize,
) -> Result<Vec<Stored>, StreamError> {
    let v: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(keys::MONITOR_AUDIT)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(n)
        .query_async(conn)
        .await?;
    Ok(records(&v.ids))
}

async fn read_after(
    conn: &mut impl ConnectionLike,
    cursor: StreamId,
) -> Result<Vec<Stored>, StreamError> {
    let v: StreamReadReply = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(500)
        .arg("BLOCK")
        .arg(5000)
        .arg("STREAMS")
        .arg(keys::MONITOR_AUDIT)
        .arg(cursor.to_string())
        .query_async(conn)
        .await?;
    Ok(v.keys.first().map(|k| records(&k.ids)).unwrap_or_default())
}

/// Prints the newest `last` records, then follows new ones until `shutdown`, reconnecting with
/// backoff when Redis goes away. `print` gets records oldest first.
pub(crate) async fn follow(
    client: &tapgate_runtime::redis::RedisSource,
    last: usize,
    shutdown: &CancellationToken,
    mut print: impl FnMut(&[Stored]) -> std::io::Result<()>,
) -> Result<(), crate::tail::TailError> {
    let mut conn = crate::stream::connect(client, Duration::from_secs(10))
        .await
        .map_err(StreamError::from)?;
    let mut history = latest(&mut conn, last).await?;
    history.reverse();
    print(&history)?;
    let mut cursor = history.last().map_or(StreamId::ZERO, |r| r.id);
    if history.is_empty() {
        // Follow from now: the newest id, if any.
        cursor = latest(&mut conn, 1)
            .await?
            .first()
            .map_or(StreamId::ZERO, |r| r.id);
    }
    let mut backoff = crate::stream::reconnect_backoff();
    let mut conn = Some(conn);
    loop {
        let result = match conn.as_mut() {
            Some(c) => tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = read_after(c, cursor) => r,
            },
            None => tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                c = crate::stream::connect(client, Duration::from_secs(10)) => match c {
                    Ok(c) => { conn = Some(c); continue; }
                    Err(e) => Err(StreamError::from(e)),
                },
            },
        };
        match result {
            Ok(records) => {
                backoff.reset();
                if let Some(r) = records.last() {
                    cursor = r.id;
                }
                print(&records)?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Lost the audit trail, reconnecting");
                conn = None;
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn records_read_back_escaped() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("1700000000000-0"),
            Value::Array(vec![
                bulk("action"),
                bulk("failed-login"),
                bulk("operator"),
                bulk("mal\u{202e}lory\x1b[2J"),
                bulk("from"),
                bulk("192.0.2.1"),
            ]),
        ])]);
        let reply: StreamRangeReply = redis::from_redis_value(reply).expect("range reply");
        let r = records(&reply.ids);
        assert_eq!(r.len(), 1);
        let line = r[0].line().render(false);
        assert_eq!(
            line,
            "2023-11-14T22:13:20Z  AUDIT      failed login as \"mal\\u{202e}lory\\u{1b}[2J\" from 192.0.2.1"
        );
        assert!(!line.chars().any(crate::text::is_unsafe));
        let quoted = Stored {
            id: StreamId::ZERO,
            fields: vec![
                ("action".into(), "failed-login".into()),
                ("operator".into(), "x\" from 10.0.0.1".into()),
            ],
        };
        assert!(
            quoted
                .line()
                .render(false)
                .ends_with("failed login as \"x\\\" from 10.0.0.1\""),
            "a name cannot close its own quotes"
        );
        let v = r[0].to_json();
        assert_eq!(v["action"], "failed-login");
        assert_eq!(v["at"], 1_700_000_000_000u64);
        assert_eq!(v["card"], serde_json::Value::Null);
    }

    #[test]
    fn a_void_says_what_was_sold_and_for_how_much() {
        let void = Stored {
            id: StreamId::at(1_700_000_000_000),
            fields: vec![
                ("action".into(), "void".into()),
                ("card".into(), "04AB".into()),
                ("from".into(), "10.0.0.7".into()),
                ("operator".into(), "alice".into()),
                ("price".into(), "7.50 EUR".into()),
                ("product".into(), "DAY".into()),
            ],
        };
        assert_eq!(
            void.line().render(false),
            "2023-11-14T22:13:20Z  AUDIT      void card 04AB DAY 7.50 EUR by alice from 10.0.0.7"
        );
        let v = void.to_json();
        assert_eq!(
            (&v["product"], &v["price"]),
            (&json!("DAY"), &json!("7.50 EUR"))
        );
    }

    #[test]
    fn a_replacement_names_both_cards_and_the_balance_moved() {
        let replaced = Stored {
            id: StreamId::at(1_700_000_000_000),
            fields: vec![
                ("action".into(), "replace".into()),
                ("card".into(), "04AA".into()),
                ("from".into(), "tapgate-admin".into()),
                ("operator".into(), "ops".into()),
                ("price".into(), "13.00 EUR".into()),
                ("reason".into(), "04BB".into()),
            ],
        };
        assert_eq!(
            replaced.line().render(false),
            "2023-11-14T22:13:20Z  AUDIT      replace card 04AA with card 04BB (balance 13.00 EUR) \
             by ops from tapgate-admin"
        );
        assert_eq!(Action::Replace.as_str(), "replace");
    }
}
