//! `POST /api/cards/{card}/replace`: an operator replaces a lost card by a new one.
//!
//! The body names the new card, `{"to": "04BB"}`. Like every state-changing route it needs an
//! operator's session and its CSRF token ([`Operator`]). The work is
//! [`crate::replace::replace`]: one script moves the pass, the wallet and the recent events and
//! blocks the lost card with reason `replaced`; a refusal answers its code
//! ([`ReplaceRefusal::code`]) and changes nothing.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::auth::{client_of, Operator};
use super::error::WebError;
use super::AppState;
use crate::replace::{self, parse_card, ReplaceError, ReplaceRefusal};

/// Body of `POST /api/cards/{card}/replace`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplaceRequest {
    /// The new card.
    pub to: String,
}

impl From<ReplaceError> for WebError {
    fn from(e: ReplaceError) -> Self {
        match e {
            ReplaceError::Refused(r) => WebError::Replace(r),
            ReplaceError::Redis(r) => WebError::Redis(r),
            ReplaceError::Reply(s) => WebError::Internal(s),
        }
    }
}

/// `POST /api/cards/{card}/replace` with `{"to": CARD}`.
pub(super) async fn route(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Operator(s): Operator,
    Path(card): Path<String>,
    body: Result<Json<ReplaceRequest>, JsonRejection>,
) -> Result<Json<Value>, WebError> {
    let from = parse_card("the lost card", &card)?;
    let Json(req) = body?;
    let to = parse_card("the new card", &req.to)?;
    if from == to {
        return Err(ReplaceRefusal::SameCard.into());
    }
    let ip = client_of(&state, peer, &headers);
    let now = state.clock.now_ms();
    let mut redis = state.redis.clone();
    let done = replace::replace(
        &mut redis,
        &from,
        &to,
        &s.operator,
        Some(ip.to_string()),
        now,
    )
    .await?;
    info!(
        operator = %s.operator, card = %from, to = %to, pass = done.pass,
        balance = ?done.balance, %ip, "Card replaced"
    );
    Ok(Json(json!({
        "card": from, "to": to, "replaced": true, "pass": done.pass, "balance": done.balance,
        "currency": done.currency, "by": s.operator, "at": done.at, "seq": done.seq,
    })))
}
