//! `tapgate-admin card replace`: replaces a lost card by a new one, for scripts.
//!
//! It runs the dashboard's own replacement, [`tapgate_monitor::replace::replace`], directly on
//! Redis rather than through the monitor's HTTP API. That is the simplest sound way: the rules
//! live in one script in one place, and the same call checks them, moves the pass and wallet,
//! blocks the lost card and writes the same audit record, so a script and an operator cannot
//! disagree. Going through HTTP would make a script log in with an operator's password, keep
//! a session cookie and a CSRF token, and meet the login throttle meant for people, for no
//! added check. The Redis user needs what the monitor's has (`tapgate-monitor`, or
//! `tapgate-admin`); the audit record names the operator given with `--operator` and comes
//! `from` [`FROM`].

use tapgate_monitor::replace::{self, parse_card, Replaced};
pub use tapgate_monitor::replace::{ReplaceError, ReplaceRefusal};
use tapgate_runtime::redis::RedisLink;
use tapgate_runtime::RedisUrl;

/// What the audit trail records as the place a replacement came from.
pub const FROM: &str = "tapgate-admin";

/// Why `card replace` failed.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// Redis cannot be reached.
    #[error(transparent)]
    Connect(#[from] tapgate_runtime::redis::RedisConnectError),
    /// The replacement was refused (nothing changed) or failed.
    #[error(transparent)]
    Replace(#[from] ReplaceError),
    /// The operator's name is empty or too long.
    #[error(
        "--operator must name who replaces the card (1 to 64 characters, no control characters)"
    )]
    Operator,
}

impl CardError {
    /// The refusal's code (`same_card`, `target_has_wallet`, …), when it was refused.
    pub fn refusal(&self) -> Option<&ReplaceRefusal> {
        match self {
            CardError::Replace(ReplaceError::Refused(r)) => Some(r),
            _ => None,
        }
    }
}

/// Replaces card `from` by card `to` on the Redis at `redis_url`, on behalf of `operator`, at
/// `now_ms`. Card ids are checked (any case) before Redis is reached.
pub async fn replace_card(
    redis_url: &RedisUrl,
    from: &str,
    to: &str,
    operator: &str,
    now_ms: u64,
) -> Result<Replaced, CardError> {
    let from = parse_card("the lost card", from).map_err(ReplaceError::from)?;
    let to = parse_card("the new card", to).map_err(ReplaceError::from)?;
    if operator.is_empty()
        || operator.chars().count() > 64
        || operator.chars().any(char::is_control)
    {
        return Err(CardError::Operator);
    }
    if from == to {
        return Err(ReplaceError::from(ReplaceRefusal::SameCard).into());
    }
    let mut conn = RedisLink::connect(redis_url, None).await?;
    Ok(replace::replace(
        &mut conn,
        &from,
        &to,
        operator,
        Some(FROM.to_owned()),
        now_ms,
    )
    .await?)
}
