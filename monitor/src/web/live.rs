//! Live updates: one follower, every browser.
//!
//! [`follow`] is the only reader of the live stream: it follows `tapgate:events` with
//! `XREAD BLOCK` (reconnecting across Redis restarts) and, for each batch, broadcasts the events,
//! then the counters re-read from Redis, then the rows of just the devices those events name.
//! Every few seconds, while anyone watches, it re-reads the device list and pushes only what
//! changed: new or changed rows, and devices that are gone (their presence expired); a browser
//! that connects refreshes the table first, so its snapshot is current. The hub
//! keeps the device table every browser was sent, so changes are computed against it. A device
//! whose messages are being decided is alive whether or not it sends heartbeats: the hub also
//! keeps the time of each device's latest event, and a row's `last_seen` is the newer of its
//! presence record and that event ([`Activity`]). [`sse`]
//! serves `GET /api/live`: it subscribes first, then sends a snapshot (latest history, counters,
//! the device table), then forwards broadcast events newer than the snapshot, so a browser sees
//! every event exactly once and every browser sees the same numbers. An operator's stream
//! re-checks its session every [`SESSION_CHECK`] and ends when the session does. The browser
//! never polls.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tapgate_runtime::redis::RedisLink;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use tapgate_protocol::keys;

use super::auth::Viewer;
use super::data;
use super::error::WebError;
use super::session;
use super::AppState;
use crate::format::entry_value;
use crate::stream::{self as events, Follower, StreamId};

/// How often an operator's live stream re-checks that the session is still valid.
pub(super) const SESSION_CHECK: Duration = Duration::from_secs(2);

/// How many of the latest events are read at start-up to learn which devices are active.
const RECENT_ACTIVITY: usize = 1000;

/// How often devices are pushed when nothing happens.
const DEVICES_EVERY: Duration = Duration::from_secs(5);

/// One broadcast update.
#[derive(Debug)]
pub(crate) enum LiveMsg {
    /// New stream entries, oldest first, with their ids.
    Events(Vec<(StreamId, Value)>),
    /// The counters after them.
    Counters(Value),
    /// Devices whose row changed, and devices that are gone.
    DeviceChanges(DeviceChanges),
}

/// What changed in the device table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct DeviceChanges {
    /// New or changed rows.
    pub changed: Vec<Value>,
    /// `{kind}/{device}` of devices no longer shown.
    pub removed: Vec<String>,
}

impl DeviceChanges {
    fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The device table: `{kind}/{device}` → row.
pub(super) type DeviceTable = BTreeMap<String, Value>;

/// Applies fresh `rows` (`None`: no longer shown) to `table` and says what changed. With
/// `complete`, `rows` name every device, and any other in the table is gone.
pub(super) fn apply_rows(
    table: &mut DeviceTable,
    rows: Vec<(String, Option<Value>)>,
    complete: bool,
) -> DeviceChanges {
    let mut changes = DeviceChanges::default();
    if complete {
        let named: std::collections::HashSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        let gone: Vec<String> = table
            .keys()
            .filter(|k| !named.contains(k.as_str()))
            .cloned()
            .collect();
        for k in gone {
            table.remove(&k);
            changes.removed.push(k);
        }
    }
    for (key, row) in rows {
        match row {
            Some(row) => {
                if table.get(&key) != Some(&row) {
                    table.insert(key, row.clone());
                    changes.changed.push(row);
                }
            }
            None => {
                if table.remove(&key).is_some() {
                    changes.removed.push(key);
                }
            }
        }
    }
    changes
}

/// When each device (`{kind}/{device}`) last had an event in the stream, Unix ms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Activity(BTreeMap<String, u64>);

impl Activity {
    /// Most devices remembered; beyond it the longest-quiet one is forgotten.
    const MAX: usize = data::MAX_DEVICES * 2;

    /// Notes the events of `entries` (their stream id time), keeping the newest per device.
    pub(super) fn note(&mut self, entries: &[events::Entry]) {
        for e in entries {
            let Some((kind, device)) = e
                .event
                .as_ref()
                .ok()
                .and_then(|ev| Some((ev.device_kind?, ev.device.as_ref()?)))
            else {
                continue;
            };
            let at = self.0.entry(keys::device_member(kind, device)).or_default();
            *at = (*at).max(e.id.ms);
        }
        while self.0.len() > Self::MAX {
            let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.0.remove(&oldest);
        }
    }

    /// Sets a device row's `last_seen` to the newer of its presence and its latest event.
    pub(super) fn freshen(&self, key: &str, row: &mut Value) {
        let Some(&at) = self.0.get(key) else {
            return;
        };
        let seen = row.get("last_seen").and_then(Value::as_u64).unwrap_or(0);
        if at > seen {
            row["last_seen"] = json!(at);
        }
    }
}

/// The broadcast point between the follower and the browsers.
#[derive(Clone)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<LiveMsg>>,
    shutdown: CancellationToken,
    devices: Arc<Mutex<DeviceTable>>,
    activity: Arc<Mutex<Activity>>,
}

impl Hub {
    /// A hub whose browser streams end when `shutdown` is cancelled.
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            tx,
            shutdown,
            devices: Arc::default(),
            activity: Arc::default(),
        }
    }

    /// Notes which devices the events of `entries` came from.
    pub(crate) fn note_activity(&self, entries: &[events::Entry]) {
        self.activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .note(entries);
    }

    /// Sets each row's `last_seen` to the newer of its presence and its latest event.
    pub(crate) fn freshen(&self, rows: &mut [Value]) {
        let activity = self
            .activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for row in rows {
            let key = match (
                row.get("kind").and_then(Value::as_str),
                row.get("device").and_then(Value::as_str),
            ) {
                (Some(k), Some(d)) => format!("{k}/{d}"),
                _ => continue,
            };
            activity.freshen(&key, row);
        }
    }

    /// Applies fresh device rows and broadcasts what changed, under one lock, so a browser's
    /// snapshot is either before both or after both.
    fn update_devices(&self, mut rows: Vec<(String, Option<Value>)>, complete: bool) {
        {
            let activity = self
                .activity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (key, row) in &mut rows {
                if let Some(row) = row {
                    activity.freshen(key, row);
                }
            }
        }
        let mut table = self
            .devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changes = apply_rows(&mut table, rows, complete);
        if !changes.is_empty() {
            self.send(LiveMsg::DeviceChanges(changes));
        }
    }

    /// The device table as every browser has it now.
    pub(crate) fn devices(&self) -> Value {
        let table = self
            .devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Value::Array(table.values().cloned().collect())
    }

    fn send(&self, msg: LiveMsg) {
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(msg));
    }

    /// A new receiver of every update from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<LiveMsg>> {
        self.tx.subscribe()
    }
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Runs a Redis read, retrying twice when Redis fails (the connection manager reconnects in the
/// background after a failure, e.g. across a Redis restart).
pub(super) async fn retry<T, F, Fut>(mut f: F) -> Result<T, WebError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, WebError>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..2 {
        match f().await {
            Err(WebError::Redis(e)) => {
                debug!(error = %e, "Redis read failed, retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            r => return r,
        }
    }
    f().await
}

async fn follow_stream(client: tapgate_runtime::redis::RedisSource, redis: RedisLink, hub: Hub) {
    let shutdown = hub.shutdown.clone();
    let mut conn = redis.clone();
    let mut backoff = crate::stream::reconnect_backoff();
    let cursor = loop {
        // The latest events also say which devices were active just before the monitor started.
        match events::latest(&mut conn, None, RECENT_ACTIVITY).await {
            Ok(last) => {
                hub.note_activity(&last);
                break last.last().map_or(StreamId::ZERO, |e| e.id);
            }
            Err(e) => {
                debug!(error = %e, "Waiting for redis");
                if !sleep_or_cancel(backoff.next_delay(), &shutdown).await {
                    return;
                }
            }
        }
    };
    let mut follower = Follower::new(client, None, cursor);
    while let Some(entries) = follower.next(&shutdown).await {
        hub.note_activity(&entries);
        hub.send(LiveMsg::Events(
            entries.iter().map(|e| (e.id, entry_value(e))).collect(),
        ));
        match retry(|| {
            let mut c = conn.clone();
            async move { data::counters(&mut c).await }
        })
        .await
        {
            Ok(c) => hub.send(LiveMsg::Counters(c)),
            Err(e) => warn!(error = %e, "Cannot read counters"),
        }
        let mut named: Vec<data::DeviceKey> = entries
            .iter()
            .filter_map(|e| e.event.as_ref().ok())
            .filter_map(|e| Some((e.device_kind?, e.device.clone()?)))
            .collect();
        named.sort();
        named.dedup();
        if named.is_empty() {
            continue;
        }
        match retry(|| {
            let mut c = conn.clone();
            let named = named.clone();
            async move { data::device_rows(&mut c, &named).await }
        })
        .await
        {
            Ok(rows) => hub.update_devices(keyed(&named, rows), false),
            Err(e) => warn!(error = %e, "Cannot read devices"),
        }
    }
}

fn keyed(devices: &[data::DeviceKey], rows: Vec<Option<Value>>) -> Vec<(String, Option<Value>)> {
    devices
        .iter()
        .map(|(k, d)| keys::device_member(*k, d))
        .zip(rows)
        .collect()
}

async fn refresh_devices(conn: &mut RedisLink, hub: &Hub) -> Result<(), WebError> {
    let members = data::device_members(conn).await?;
    let rows = data::device_rows(conn, &members).await?;
    hub.update_devices(keyed(&members, rows), true);
    Ok(())
}

async fn push_devices(redis: RedisLink, hub: Hub) {
    let mut conn = redis;
    if let Err(e) = refresh_devices(&mut conn, &hub).await {
        debug!(error = %e, "Cannot read devices yet");
    }
    while sleep_or_cancel(DEVICES_EVERY, &hub.shutdown).await {
        if hub.tx.receiver_count() == 0 {
            continue;
        }
        if let Err(e) = refresh_devices(&mut conn, &hub).await {
            debug!(error = %e, "Cannot read devices");
        }
    }
}

/// Follows the stream and pushes updates to `hub` until its shutdown token is cancelled.
pub(super) async fn follow(
    client: tapgate_runtime::redis::RedisSource,
    redis: RedisLink,
    hub: Hub,
) {
    tokio::join!(
        follow_stream(client, redis.clone(), hub.clone()),
        push_devices(redis, hub)
    );
}

fn sse_json(name: &str, data: &Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

/// `GET /api/live`: server-sent events `snapshot`, then `events`, `counters`,
/// `device-changes`.
pub(super) async fn sse(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, WebError> {
    // An operator's stream is re-checked every few seconds and ends when the session does
    // (logout, logout everywhere, expiry, operator removed); the browser then reconnects, is
    // refused, and goes back to the login page.
    let id = viewer.as_ref().map(|s| s.id.clone());
    // Nobody may have watched for a while (the periodic refresh only runs while someone
    // does): bring the device table up to date first, so the snapshot shows every device as it
    // is now. Before subscribing, so this browser gets the result in its snapshot, not twice.
    if let Err(e) = refresh_devices(&mut state.redis.clone(), &state.live).await {
        debug!(error = %e, "Cannot refresh devices for a new browser");
    }
    let rx = state.live.subscribe();
    let (snapshot, last) = snapshot(&state).await?;
    let shutdown = state.live.shutdown.clone();
    let cursor = last.unwrap_or(StreamId::ZERO);
    let mut check = tokio::time::interval(SESSION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let updates = stream::unfold(
        (rx, cursor, check),
        move |(mut rx, mut cursor, mut check)| {
            let shutdown = shutdown.clone();
            let id = id.clone();
            let state = state.clone();
            async move {
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = check.tick(), if id.is_some() => {
                            if session_ended(&state, id.as_deref().unwrap_or_default()).await {
                                return None;
                            }
                            continue;
                        }
                        m = rx.recv() => m,
                    };
                    // A browser too slow to keep up is closed; EventSource reconnects and gets a
                    // fresh snapshot, so it misses nothing.
                    let msg = msg.ok()?;
                    if let Some(event) = update(&msg, &mut cursor) {
                        return Some((Ok(event), (rx, cursor, check)));
                    }
                }
            }
        },
    );
    let all = stream::once(async move { Ok(snapshot) }).chain(updates);
    Ok(Sse::new(all).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The `snapshot` a new browser starts from (recent events, counters, devices), and the id of
/// the newest event in it.
async fn snapshot(state: &AppState) -> Result<(SseEvent, Option<StreamId>), WebError> {
    let redis = &state.redis;
    let n = state.config.history;
    let (history, last) = retry(|| {
        let mut c = redis.clone();
        async move { data::history(&mut c, n).await }
    })
    .await?;
    let counters = retry(|| {
        let mut c = redis.clone();
        async move { data::counters(&mut c).await }
    })
    .await?;
    let devices = state.live.devices();
    let snapshot = sse_json(
        "snapshot",
        &json!({"events": history, "counters": counters, "devices": devices,
                "last": last.map(|l| l.to_string())}),
    );
    Ok((snapshot, last))
}

/// Whether the operator session `id` has ended (logged out, expired, operator removed). Redis
/// briefly away is not an end: the stream stays, and is checked again next tick.
async fn session_ended(state: &AppState, id: &str) -> bool {
    let mut redis = state.redis.clone();
    match session::operator_of(&mut redis, id, &state.operators).await {
        Ok(found) => found.is_none(),
        Err(e) => {
            debug!(error = %e, "Cannot re-check a live session");
            false
        }
    }
}

/// The server-sent event for `msg`, if the browser has not seen it: events at or before
/// `cursor` (already in its snapshot) are left out, and `cursor` moves to the newest sent.
fn update(msg: &LiveMsg, cursor: &mut StreamId) -> Option<SseEvent> {
    Some(match msg {
        LiveMsg::Events(entries) => {
            let fresh: Vec<&Value> = entries
                .iter()
                .filter(|(id, _)| *id > *cursor)
                .map(|(_, v)| v)
                .collect();
            let (newest, _) = entries.last()?;
            if fresh.is_empty() {
                return None;
            }
            *cursor = (*cursor).max(*newest);
            sse_json("events", &json!(fresh))
        }
        LiveMsg::Counters(c) => sse_json("counters", c),
        LiveMsg::DeviceChanges(d) => sse_json("device-changes", &json!(d)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::DeviceKind;

    fn row(name: &str, granted: u64) -> (String, Option<Value>) {
        (
            format!("gate/{name}"),
            Some(json!({"kind": "gate", "device": name, "granted": granted})),
        )
    }

    #[test]
    fn only_changes_are_pushed() {
        let mut table = DeviceTable::new();
        let c = apply_rows(&mut table, vec![row("g1", 0), row("g2", 0)], true);
        assert_eq!((c.changed.len(), c.removed.len()), (2, 0));
        let c = apply_rows(&mut table, vec![row("g1", 0), row("g2", 0)], true);
        assert_eq!(c, DeviceChanges::default(), "nothing changed, nothing sent");
        let c = apply_rows(&mut table, vec![row("g2", 5)], false);
        assert_eq!(c.changed, vec![row("g2", 5).1.expect("row")]);
        assert!(
            c.removed.is_empty(),
            "a partial update removes nothing else"
        );
        let c = apply_rows(&mut table, vec![("gate/g2".into(), None)], false);
        assert_eq!(c.removed, vec!["gate/g2".to_owned()], "presence expired");
        let c = apply_rows(&mut table, vec![], true);
        assert_eq!(c.removed, vec!["gate/g1".to_owned()], "left the set");
        assert!(table.is_empty());
    }

    fn entry(ms: u64, kind: DeviceKind, device: &str) -> events::Entry {
        let mut e = tapgate_protocol::Event::new(tapgate_protocol::EventKind::PassUsed, ms);
        e.device_kind = Some(kind);
        e.device = tapgate_protocol::DeviceId::new(device).ok();
        events::Entry {
            id: StreamId::at(ms),
            event: Ok(e),
        }
    }

    #[test]
    fn a_device_deciding_taps_was_seen_at_its_latest_event() {
        let mut activity = Activity::default();
        activity.note(&[
            entry(5_000, DeviceKind::Gate, "g1"),
            entry(9_000, DeviceKind::Gate, "g1"),
            entry(7_000, DeviceKind::Terminal, "g1"),
        ]);
        activity.note(&[entry(8_000, DeviceKind::Gate, "g1")]);
        let mut stale = json!({"kind": "gate", "device": "g1", "last_seen": 1_000});
        activity.freshen("gate/g1", &mut stale);
        assert_eq!(stale["last_seen"], 9_000, "the newest event wins");
        let mut fresh = json!({"kind": "terminal", "device": "g1", "last_seen": 20_000});
        activity.freshen("terminal/g1", &mut fresh);
        assert_eq!(fresh["last_seen"], 20_000, "a newer heartbeat wins");
        let mut never = json!({"kind": "gate", "device": "g2", "last_seen": null});
        activity.freshen("gate/g2", &mut never);
        assert_eq!(never["last_seen"], Value::Null, "no events, no change");
    }
}
