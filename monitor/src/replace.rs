//! Replacing a lost card: everything card A holds moves to card B, and A is blocked.
//!
//! An operator (on the dashboard, or `tapgate-admin card replace` in a script) names the lost card
//! A and the new card B. One Lua script (`REPLACE`) checks, atomically, that the replacement
//! makes sense and then, in the same step:
//!
//! - renames A's pass to B's (its expiry goes with it) and A's wallet to B's (balance, the totals
//!   `topped_up` and `charged`, the per-day and per-week charges the caps are judged on, and
//!   `kept_from`), so money is conserved: B holds exactly what A held, and `topped_up = balance +
//!   charged` still holds on B;
//! - merges A's recent events into B's list (newest first, trimmed to
//!   [`keys::CARD_RECENT_LEN`]), with the replacement's event on top;
//! - blocks A with reason `replaced` (its blocked hash and the deny-list index, as a block does),
//!   so a later tap of A is denied `blocked` by the bridge;
//! - appends one `card-replaced` event (`card` A, `detail` B, `reason` `replaced`).
//!
//! It refuses, changing nothing, when A and B are the same card, A holds neither a pass nor a
//! wallet, A is already blocked (or replaced), B is blocked, B holds a pass, or B's wallet holds
//! anything but zeros (a wallet a terminal opened and never charged may be overwritten). Card
//! ids are checked before any key is built. The script holds no field name: the Rust side passes
//! every name, from `tapgate_protocol::fields`.

use redis::aio::ConnectionLike;
use tapgate_protocol::fields::{blocked, wallet};
use tapgate_protocol::{keys, CardId, Event, EventKind};

use crate::audit::{self, Action, Record};

/// The block reason a replaced card carries.
pub(crate) const REPLACED: &str = "replaced";

/// Approximate cap on the stream length when appending (as blocks and voids use).
pub(crate) const STREAM_MAXLEN: u64 = 1_000_000;

/// Why a card cannot be replaced. Each has a code for programs and a sentence for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceRefusal {
    /// A card id is not one.
    #[error("{which} is not a card number: {why}")]
    InvalidCard {
        /// `the lost card` or `the new card`.
        which: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A and B are the same card.
    #[error("a card cannot replace itself")]
    SameCard,
    /// A holds neither a pass nor a wallet.
    #[error("card {0} holds no pass and no balance: there is nothing to move")]
    UnknownCard(CardId),
    /// A was already replaced.
    #[error("card {0} was already replaced")]
    AlreadyReplaced(CardId),
    /// B is blocked.
    #[error("the new card {0} is blocked")]
    TargetBlocked(CardId),
    /// B holds a pass.
    #[error("the new card {0} already holds a pass")]
    TargetHasPass(CardId),
    /// B's wallet holds money or charges.
    #[error("the new card {0} already holds a balance or charges")]
    TargetHasWallet(CardId),
}

impl ReplaceRefusal {
    /// The machine-readable code (the `error` of the JSON answer, the admin's message).
    pub const fn code(&self) -> &'static str {
        match self {
            ReplaceRefusal::InvalidCard { .. } => "invalid_card",
            ReplaceRefusal::SameCard => "same_card",
            ReplaceRefusal::UnknownCard(_) => "unknown_card",
            ReplaceRefusal::AlreadyReplaced(_) => "already_replaced",
            ReplaceRefusal::TargetBlocked(_) => "target_blocked",
            ReplaceRefusal::TargetHasPass(_) => "target_has_pass",
            ReplaceRefusal::TargetHasWallet(_) => "target_has_wallet",
        }
    }

    /// The HTTP status: 400 for bad input, 404 for a card with nothing, else 409.
    pub const fn http_status(&self) -> u16 {
        match self {
            ReplaceRefusal::InvalidCard { .. } | ReplaceRefusal::SameCard => 400,
            ReplaceRefusal::UnknownCard(_) => 404,
            _ => 409,
        }
    }
}

/// Why a replacement did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// It was refused; nothing changed.
    #[error(transparent)]
    Refused(#[from] ReplaceRefusal),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something it never answers.
    #[error("unexpected replace script reply {0}")]
    Reply(String),
}

/// Parses a card id as the dashboard and the admin take it (any case), or says which is bad.
pub fn parse_card(which: &'static str, s: &str) -> Result<CardId, ReplaceRefusal> {
    CardId::new(s.to_ascii_uppercase()).map_err(|e| ReplaceRefusal::InvalidCard {
        which,
        why: crate::text::escape_untrusted(&e.to_string(), 200),
    })
}

/// A replacement that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The lost card, now blocked `replaced`.
    pub from: CardId,
    /// The card that holds what it held.
    pub to: CardId,
    /// Whether a pass moved.
    pub pass: bool,
    /// The balance that moved, minor units, if a wallet moved.
    pub balance: Option<i64>,
    /// The wallet's currency, if it names one.
    pub currency: Option<String>,
    /// The stream id of the `card-replaced` event.
    pub seq: String,
    /// When, Unix ms.
    pub at: u64,
}

/// The `card-replaced` event of `from` replaced by `to` at `at_ms`.
pub(crate) fn event(from: &CardId, to: &CardId, at_ms: u64) -> Event {
    let mut e = Event::new(EventKind::CardReplaced, at_ms);
    e.card = Some(from.clone());
    e.reason = Some(REPLACED.to_owned());
    e.detail = Some(to.as_str().to_owned());
    e
}

/// KEYS: A's pass, wallet, recent list and blocked hash; B's pass, wallet, recent list and
/// blocked hash; the block index; the stream. ARGV: A's id, the reason `replaced`, the operator,
/// the time, stream maxlen, recent length, the blocked hash's reason, by and at field names, the
/// wallet's currency, kept-from and balance field names, then the event's stream fields and
/// values. Returns `{'replaced', stream id, pass moved 0/1, balance or ''}` or `{refusal}`.
pub(crate) const REPLACE: &str = r"
local a_blocked = redis.call('HGET', KEYS[4], ARGV[7])
if a_blocked == ARGV[2] then return {'already_replaced'} end
-- A card blocked for another reason (lost, stolen: how an operator usually learns of it) is
-- replaced all the same; its block becomes `replaced`.
local has_pass = redis.call('EXISTS', KEYS[1]) == 1
local has_wallet = redis.call('EXISTS', KEYS[2]) == 1
if not has_pass and not has_wallet then return {'unknown_card'} end
if redis.call('EXISTS', KEYS[8]) == 1 then return {'target_blocked'} end
if redis.call('EXISTS', KEYS[5]) == 1 then return {'target_has_pass'} end
local bw = redis.call('HGETALL', KEYS[6])
for i = 1, #bw, 2 do
  if bw[i] ~= ARGV[10] and bw[i] ~= ARGV[11] and bw[i + 1] ~= '0' then
    return {'target_has_wallet'}
  end
end
if has_pass then redis.call('RENAME', KEYS[1], KEYS[5]) end
local balance = ''
if has_wallet then
  redis.call('RENAME', KEYS[2], KEYS[6])
  balance = redis.call('HGET', KEYS[6], ARGV[12]) or ''
end
redis.call('HSET', KEYS[4], ARGV[7], ARGV[2], ARGV[8], ARGV[3], ARGV[9], ARGV[4])
redis.call('HSET', KEYS[9], ARGV[1], ARGV[2])
local seq = redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 13))
-- Recent events: stream ids newest first; an entry that is no stream id (JSON, as lists from
-- before stream ids held) keeps its place after them.
local ttl = math.max(redis.call('PTTL', KEYS[3]), redis.call('PTTL', KEYS[7]))
local all = {}
for _, k in ipairs({KEYS[7], KEYS[3]}) do
  for _, v in ipairs(redis.call('LRANGE', k, 0, -1)) do
    local ms, n = string.match(v, '^(%d+)-(%d+)$')
    all[#all + 1] = {v = v, ms = tonumber(ms), n = tonumber(n), at = #all}
  end
end
table.sort(all, function(x, y)
  if (x.ms ~= nil) ~= (y.ms ~= nil) then return x.ms ~= nil end
  if x.ms == nil then return x.at < y.at end
  if x.ms ~= y.ms then return x.ms > y.ms end
  if x.n ~= y.n then return x.n > y.n end
  return x.at < y.at
end)
redis.call('DEL', KEYS[3], KEYS[7])
redis.call('RPUSH', KEYS[7], seq)
redis.call('RPUSH', KEYS[3], seq)
for i = 1, math.min(#all, tonumber(ARGV[6]) - 1) do
  redis.call('RPUSH', KEYS[7], all[i].v)
end
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[7], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {'replaced', seq, has_pass and '1' or '0', balance}
";

/// Replaces `from` by `to` at `at_ms` on behalf of `operator` (one atomic script), then writes
/// the audit record (`reason` is the new card; `from` is the client address, when there is one).
/// A refusal changes nothing.
pub async fn replace(
    conn: &mut impl ConnectionLike,
    from: &CardId,
    to: &CardId,
    operator: &str,
    client: Option<String>,
    at_ms: u64,
) -> Result<Replaced, ReplaceError> {
    if from == to {
        return Err(ReplaceRefusal::SameCard.into());
    }
    let reply = run_script(conn, from, to, operator, at_ms).await?;
    let (seq, pass, balance) = read_reply(&reply, from, to)?;
    let balance = (!balance.is_empty())
        .then(|| balance.parse::<i64>().ok())
        .flatten();
    let currency: Option<String> = redis::cmd("HGET")
        .arg(keys::wallet(to))
        .arg(wallet::CURRENCY)
        .query_async(conn)
        .await
        .unwrap_or(None);
    let record = Record {
        action: Action::Replace,
        operator,
        from: client,
        card: Some(from.as_str()),
        reason: Some(to.as_str()),
        product: None,
        price: balance
            .zip(
                currency
                    .as_deref()
                    .and_then(tapgate_protocol::Currency::parse),
            )
            .map(|(b, c)| c.format(b)),
    };
    if let Err(e) = audit::append(conn, &record).await {
        tracing::warn!(error = %e, "Cannot write the audit trail");
    }
    Ok(Replaced {
        from: from.clone(),
        to: to.clone(),
        pass,
        balance,
        currency,
        seq,
        at: at_ms,
    })
}

/// Runs the replacing script: both cards' keys, the blocked index and the stream, with the
/// event it appends; returns its reply as is.
async fn run_script(
    conn: &mut impl ConnectionLike,
    from: &CardId,
    to: &CardId,
    operator: &str,
    at_ms: u64,
) -> Result<Vec<String>, ReplaceError> {
    let ev = event(from, to, at_ms);
    let script = redis::Script::new(REPLACE);
    let mut inv = script.prepare_invoke();
    inv.key(keys::pass(from))
        .key(keys::wallet(from))
        .key(keys::card_recent(from))
        .key(keys::blocked(from))
        .key(keys::pass(to))
        .key(keys::wallet(to))
        .key(keys::card_recent(to))
        .key(keys::blocked(to))
        .key(keys::BLOCKED_INDEX)
        .key(keys::EVENTS_STREAM)
        .arg(from.as_str())
        .arg(REPLACED)
        .arg(operator)
        .arg(at_ms)
        .arg(STREAM_MAXLEN)
        .arg(keys::CARD_RECENT_LEN)
        .arg(blocked::REASON)
        .arg(blocked::BY)
        .arg(blocked::AT)
        .arg(wallet::CURRENCY)
        .arg(wallet::KEPT_FROM)
        .arg(wallet::BALANCE)
        .arg(ev.stream_fields());
    Ok(inv.invoke_async(conn).await?)
}

/// The script's reply: the event's stream id, whether a pass moved and the balance moved (empty
/// without a wallet); or the refusal it names.
fn read_reply<'r>(
    reply: &'r [String],
    from: &CardId,
    to: &CardId,
) -> Result<(String, bool, &'r str), ReplaceError> {
    let refused = |code: &str| match code {
        "already_replaced" => Some(ReplaceRefusal::AlreadyReplaced(from.clone())),
        "unknown_card" => Some(ReplaceRefusal::UnknownCard(from.clone())),
        "target_blocked" => Some(ReplaceRefusal::TargetBlocked(to.clone())),
        "target_has_pass" => Some(ReplaceRefusal::TargetHasPass(to.clone())),
        "target_has_wallet" => Some(ReplaceRefusal::TargetHasWallet(to.clone())),
        _ => None,
    };
    match reply {
        [ok, seq, pass, balance] if ok == "replaced" => Ok((seq.clone(), pass == "1", balance)),
        [code] => Err(refused(code)
            .map(ReplaceError::Refused)
            .unwrap_or_else(|| ReplaceError::Reply(format!("{reply:?}")))),
        _ => Err(ReplaceError::Reply(format!("{reply:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_own_code() {
        let a = CardId::new("04AA").expect("card");
        let codes: Vec<&str> = [
            parse_card("the new card", "z-z").expect_err("bad"),
            ReplaceRefusal::SameCard,
            ReplaceRefusal::UnknownCard(a.clone()),
            ReplaceRefusal::AlreadyReplaced(a.clone()),
            ReplaceRefusal::TargetBlocked(a.clone()),
            ReplaceRefusal::TargetHasPass(a.clone()),
            ReplaceRefusal::TargetHasWallet(a),
        ]
        .iter()
        .map(ReplaceRefusal::code)
        .collect();
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "{codes:?}");
    }

    #[test]
    fn card_ids_are_taken_in_any_case_and_checked() {
        assert_eq!(
            parse_card("the lost card", "04ab").expect("card").as_str(),
            "04AB"
        );
        let long = "0".repeat(10_000);
        for bad in ["", "04 AB", "04AB\n", long.as_str(), "04AB\u{202e}"] {
            let r = parse_card("the lost card", bad).expect_err(bad);
            assert_eq!(r.code(), "invalid_card");
            assert!(r.to_string().len() < 400, "{r}");
        }
    }

    #[test]
    fn the_event_names_both_cards() {
        let (a, b) = (
            CardId::new("04AA").expect("a"),
            CardId::new("04BB").expect("b"),
        );
        let e = event(&a, &b, 7);
        assert_eq!(e.event, EventKind::CardReplaced);
        assert_eq!(e.card.as_ref(), Some(&a));
        assert_eq!(e.detail.as_deref(), Some("04BB"));
        assert_eq!(e.reason.as_deref(), Some(REPLACED));
    }

    /// The script holds no field or key name: the only quoted words are Redis commands, Lua
    /// patterns and its own replies.
    #[test]
    fn the_script_names_no_field() {
        let quoted: Vec<&str> = REPLACE.split('\'').skip(1).step_by(2).collect();
        let allowed = [
            "HGET",
            "EXISTS",
            "HGETALL",
            "RENAME",
            "HSET",
            "XADD",
            "MAXLEN",
            "~",
            "*",
            "PTTL",
            "LRANGE",
            "DEL",
            "RPUSH",
            "PEXPIRE",
            "0",
            "1",
            "",
            "^(%d+)-(%d+)$",
            "already_replaced",
            "unknown_card",
            "target_blocked",
            "target_has_pass",
            "target_has_wallet",
            "replaced",
        ];
        for q in quoted {
            assert!(allowed.contains(&q), "literal {q:?} in the replace script");
        }
    }
}
