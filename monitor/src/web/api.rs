//! The JSON read routes. Each admits a [`Viewer`] and answers from [`super::data`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Viewer;
use super::data;
use super::error::WebError;
use super::AppState;
use crate::format;
use tapgate_protocol::Event;
use tapgate_runtime::clock::now_ms;

/// `GET /api/session`: who is looking, the CSRF token for their requests, whether they may
/// change anything, and the dashboard's wording ([`format::wording`]).
pub(super) async fn session(State(state): State<AppState>, Viewer(s): Viewer) -> Json<Value> {
    let mut v = match s {
        Some(s) => json!({"operator": s.operator, "csrf": s.csrf, "read_only": false}),
        None => json!({"operator": null, "csrf": null, "read_only": true,
                       "public": state.config.public_read_only}),
    };
    v["wording"] = format::wording();
    Json(v)
}

/// `GET /api/counters`.
pub(super) async fn counters(
    State(state): State<AppState>,
    _: Viewer,
) -> Result<Json<Value>, WebError> {
    Ok(Json(data::counters(&mut state.redis.clone()).await?))
}

/// Query of `GET /api/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// How many of the newest events (1..=1000; default: the configured history).
    pub limit: Option<usize>,
}

/// `GET /api/events?limit=N`: the newest events, oldest first.
pub(super) async fn events(
    State(state): State<AppState>,
    _: Viewer,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>, WebError> {
    let Query(q) = q.map_err(|e| WebError::BadRequest(e.body_text()))?;
    let n = q.limit.unwrap_or(state.config.history);
    if !(1..=1000).contains(&n) {
        return Err(WebError::BadRequest("limit must be 1..=1000".into()));
    }
    let (events, last) = data::history(&mut state.redis.clone(), n).await?;
    Ok(Json(
        json!({"events": events, "last": last.map(|l| l.to_string())}),
    ))
}

/// `GET /api/charts/minutes`: per-minute entries and denials over the last hour.
pub(super) async fn minutes(
    State(state): State<AppState>,
    _: Viewer,
) -> Result<Json<Value>, WebError> {
    Ok(Json(
        data::minutes(&mut state.redis.clone(), now_ms()).await?,
    ))
}

/// `GET /api/devices`: presence and counters per device.
pub(super) async fn devices(
    State(state): State<AppState>,
    _: Viewer,
) -> Result<Json<Value>, WebError> {
    let mut rows = data::devices(&mut state.redis.clone()).await?;
    if let Value::Array(rows) = &mut rows {
        state.live.freshen(rows);
    }
    Ok(Json(rows))
}

/// `GET /api/cards/{card}`: the card's pass (and whether it may be voided now), wallet (balance
/// and charges against the caps), block and recent events.
pub(super) async fn card(
    State(state): State<AppState>,
    _: Viewer,
    Path(card): Path<String>,
) -> Result<Json<Value>, WebError> {
    let card = data::card_id(&card)?;
    let now = state.clock.now_ms();
    let mut v = data::card(
        &mut state.redis.clone(),
        &card,
        now,
        state.config.void_window,
        &state.catalogue,
    )
    .await?;
    if let Some(recent) = v.get_mut("recent").and_then(Value::as_array_mut) {
        for item in recent {
            describe(item);
        }
    }
    Ok(Json(v))
}

/// Adds an event's description (`described`, as in the feed) to its JSON; unreadable entries
/// stay as they are.
fn describe(item: &mut Value) {
    if let Ok(e) = serde_json::from_value::<Event>(item.clone()) {
        item["described"] = format::described(&e);
    }
}

/// `GET /api/blocked`: the deny list.
pub(super) async fn blocked(
    State(state): State<AppState>,
    _: Viewer,
) -> Result<Json<Value>, WebError> {
    Ok(Json(data::blocked(&mut state.redis.clone()).await?))
}

/// `GET /api/audit`: the newest 100 audit records, newest first (operators only, never the
/// public).
pub(super) async fn audit(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
) -> Result<Json<Value>, WebError> {
    if viewer.is_none() {
        return Err(WebError::LoginRequired);
    }
    let records = crate::audit::latest(&mut state.redis.clone(), 100).await?;
    Ok(Json(Value::Array(
        records.iter().map(crate::audit::Stored::to_json).collect(),
    )))
}
