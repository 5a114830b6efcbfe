//! The deny list: operators block and unblock cards.
//!
//! Blocking writes the card's `tapgate:card:{CARD}:blocked` hash (`reason`, `by`, `at`, the
//! names of `tapgate_protocol::fields::blocked`), its
//! entry in the `tapgate:blocked` index and a `card-blocked` event on the stream, in one Lua
//! script, so a reader never sees one without the others. Unblocking removes both keys and
//! appends `card-unblocked` the same way; a card blocked because it was replaced
//! ([`crate::replace`]) stays blocked. The bridge reads the same keys in its own script and
//! denies a blocked card with reason `blocked`.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tapgate_protocol::{fields, keys, CardId, Event, EventKind};
use tracing::info;

use super::auth::{audit, client_of, Operator};
use super::data::card_id;
use super::error::WebError;
use super::AppState;
use crate::audit::{Action, Record};
use tapgate_runtime::clock::now_ms;

/// Approximate cap on the stream length when appending.
pub(super) const STREAM_MAXLEN: u64 = 1_000_000;

/// Why an operator blocks a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum BlockReason {
    /// The rider lost the card.
    Lost,
    /// The card was stolen.
    Stolen,
    /// The card is being misused.
    Fraud,
}

impl BlockReason {
    /// The stored name.
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            BlockReason::Lost => "lost",
            BlockReason::Stolen => "stolen",
            BlockReason::Fraud => "fraud",
        }
    }
}

/// Body of `POST /api/cards/{card}/block`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BlockRequest {
    /// Why: `lost`, `stolen` or `fraud`.
    pub reason: BlockReason,
}

/// KEYS: blocked hash, index, stream. ARGV: card, reason, operator, at, stream_maxlen, then the
/// event's stream fields and values.
const BLOCK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('HSET', KEYS[1], 'reason', ARGV[2], 'by', ARGV[3], 'at', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 6))
";

/// KEYS: blocked hash, index, stream. ARGV: card, the reason it was blocked for, stream_maxlen,
/// then the event's stream fields and values.
const UNBLOCK: &str = r"
local reason = redis.call('HGET', KEYS[1], 'reason')
if not reason then return false end
if reason ~= ARGV[2] then return {'changed'} end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
";

fn event(kind: EventKind, card: &CardId, reason: &str, by: &str, at: u64) -> Event {
    let mut e = Event::new(kind, at);
    e.card = Some(card.clone());
    e.reason = Some(reason.to_owned());
    e.detail = Some(by.to_owned());
    e
}

/// `POST /api/cards/{card}/block` with `{"reason": "lost"|"stolen"|"fraud"}`.
pub(super) async fn block(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Operator(s): Operator,
    Path(card): Path<String>,
    body: Result<Json<BlockRequest>, JsonRejection>,
) -> Result<Json<Value>, WebError> {
    let card = card_id(&card)?;
    let Json(req) = body?;
    let reason = req.reason.as_str();
    let at = now_ms();
    let ev = event(EventKind::CardBlocked, &card, reason, &s.operator, at);
    let script = redis::Script::new(BLOCK);
    let mut inv = script.prepare_invoke();
    inv.key(keys::blocked(&card))
        .key(keys::BLOCKED_INDEX)
        .key(keys::EVENTS_STREAM)
        .arg(card.as_str())
        .arg(reason)
        .arg(&s.operator)
        .arg(at)
        .arg(STREAM_MAXLEN)
        .arg(ev.stream_fields());
    let seq: Option<String> = inv.invoke_async(&mut state.redis.clone()).await?;
    let seq = seq.ok_or_else(|| WebError::Conflict(format!("card {card} is already blocked")))?;
    let ip = client_of(&state, peer, &headers);
    info!(operator = %s.operator, %card, reason, %ip, "Card blocked");
    audit(
        &state,
        Record {
            action: Action::Block,
            operator: &s.operator,
            from: Some(ip.to_string()),
            card: Some(card.as_str()),
            reason: Some(reason),
            product: None,
            price: None,
        },
    )
    .await;
    Ok(Json(
        json!({"card": card, "blocked": true, "reason": reason, "by": s.operator, "at": at, "seq": seq}),
    ))
}

/// `POST /api/cards/{card}/unblock`.
pub(super) async fn unblock(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Operator(s): Operator,
    Path(card): Path<String>,
) -> Result<Json<Value>, WebError> {
    let card = card_id(&card)?;
    let mut redis = state.redis.clone();
    // The event repeats the reason the card was blocked for; the script checks it is unchanged.
    for _ in 0..3 {
        let reason: Option<String> = redis::cmd("HGET")
            .arg(keys::blocked(&card))
            .arg(fields::blocked::REASON)
            .query_async(&mut redis)
            .await?;
        let reason =
            reason.ok_or_else(|| WebError::NotFound(format!("card {card} is not blocked")))?;
        if reason == crate::replace::REPLACED {
            // Its pass and balance are another card's now; unblocking it would only invite a
            // second card to the same rider's history.
            return Err(WebError::Conflict(format!(
                "card {card} was replaced by another card and stays blocked"
            )));
        }
        let at = now_ms();
        let ev = event(EventKind::CardUnblocked, &card, &reason, &s.operator, at);
        let script = redis::Script::new(UNBLOCK);
        let mut inv = script.prepare_invoke();
        inv.key(keys::blocked(&card))
            .key(keys::BLOCKED_INDEX)
            .key(keys::EVENTS_STREAM)
            .arg(card.as_str())
            .arg(&reason)
            .arg(STREAM_MAXLEN)
            .arg(ev.stream_fields());
        let reply: redis::Value = inv.invoke_async(&mut redis).await?;
        match reply {
            redis::Value::Nil => {
                return Err(WebError::NotFound(format!("card {card} is not blocked")))
            }
            redis::Value::Array(_) => continue,
            other => {
                let seq: String = redis::from_redis_value(other)
                    .map_err(|e| WebError::Internal(e.to_string()))?;
                let ip = client_of(&state, peer, &headers);
                info!(operator = %s.operator, %card, %ip, "Card unblocked");
                audit(
                    &state,
                    Record {
                        action: Action::Unblock,
                        operator: &s.operator,
                        from: Some(ip.to_string()),
                        card: Some(card.as_str()),
                        reason: Some(&reason),
                        product: None,
                        price: None,
                    },
                )
                .await;
                return Ok(Json(
                    json!({"card": card, "blocked": false, "by": s.operator, "at": at, "seq": seq}),
                ));
            }
        }
    }
    Err(WebError::Conflict(format!(
        "card {card} changed while unblocking; try again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoted names after `KEYS[1],` in `script`: the fields it writes and reads in the
    /// card's deny-list hash.
    fn hash_fields(script: &str) -> Vec<String> {
        script
            .lines()
            .filter_map(|l| l.split_once("KEYS[1], ").map(|(_, args)| args))
            .flat_map(|args| args.split(", "))
            .filter_map(|a| {
                let a = a.trim_end_matches(')');
                a.strip_prefix('\'')?.strip_suffix('\'').map(str::to_owned)
            })
            .collect()
    }

    #[test]
    fn scripts_use_the_protocols_field_names() {
        assert_eq!(hash_fields(BLOCK), fields::blocked::ALL);
        assert_eq!(hash_fields(UNBLOCK), [fields::blocked::REASON]);
    }
}
