//! Redis side of the bridge: applies decisions atomically and records refusals and presence.
//!
//! Every decision is one `FCALL` of the library's decide function (`decide.lua`, see
//! [`library`]), which reads and writes the pass, deny list, sale, counters, event stream and
//! idempotency record in one atomic step. This module only moves data in and out of the
//! functions; the rules themselves are in the script and, as the reference model, in
//! `tapgate_protocol::rules`.

pub mod library;
mod migrate;
mod request;
pub mod result;

pub use migrate::Migration;
pub use request::{decide_command, Message, Request};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::Script;
use tapgate_protocol::rules::{Input, TimeSettings};
use tapgate_protocol::{
    fields, keys, CardId, Decision, DeviceId, DeviceKind, Event, EventKind, Notice, RejectReason,
};
use tapgate_runtime::redis::{RedisConnectError, RedisLink, RedisUrlError};
use tapgate_runtime::RedisUrl;

use library::{Function, Library};
use std::sync::Arc;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse.
    #[error(transparent)]
    Url(#[from] RedisUrlError),
    /// Could not reach Redis at start-up.
    #[error(transparent)]
    Connect(#[from] RedisConnectError),
    /// A decision's writes did not reach enough replicas in time (`WAIT`): not confirmed, so the
    /// message is retried (the idempotency record makes that safe).
    #[error("the decision reached {acked} of {wanted} replicas within {timeout_ms} ms")]
    NotReplicated {
        /// Replicas that acknowledged.
        acked: u64,
        /// Replicas wanted.
        wanted: u32,
        /// How long the bridge waited.
        timeout_ms: u64,
    },
    /// Redis reached its memory limit (`maxmemory`, policy `noeviction`) and refused the write:
    /// nothing was stored. Not retried: it passes only once memory is freed (records expire, or
    /// an operator raises the limit), and a tap waiting for that would hold its gate.
    #[error(
        "Redis is full: used memory reached maxmemory and it refuses writes, so nothing was \
         stored ({0})"
    )]
    Full(redis::RedisError),
    /// A command failed.
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    /// A script returned something this bridge does not understand (a version mismatch).
    #[error("unexpected script result: {0}")]
    BadResult(String),
}

impl StoreError {
    /// Whether retrying later may succeed (connection trouble), as opposed to a bug.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::NotReplicated { .. } => true,
            StoreError::Command(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                    // A failover in progress, or a script still running: both pass.
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                    || e.code() == Some("BUSY")
                    // A primary with `min-replicas-to-write` refusing writes while its replicas
                    // are away: nothing was written; it passes once they are back.
                    || e.code() == Some("NOREPLICAS")
            }
            _ => false,
        }
    }
}

/// Rule timings and retention, from the bridge config.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// The period of a pass stored before passes kept their terms (type `TWO_HOUR`), ms.
    pub legacy_period_ms: u64,
    /// Sale timeout, ms.
    pub sale_timeout_ms: u64,
    /// Idempotency record lifetime of an offline entry or an unstamped message, s. A waiting
    /// stamped message's record lives only until a redelivery would be answered `stale` (the
    /// decision window plus `max_future_ms`, see `decide.lua`).
    pub seen_ttl_s: u64,
    /// Approximate event stream length.
    pub stream_maxlen: u64,
    /// Lifetime of a card's recent-events list after its last event, s.
    pub recent_ttl_s: u64,
    /// Lifetime of a device's presence hash and counters after it was last heard from, s.
    pub device_ttl_s: u64,
    /// Decision window, future limit and allowed clock skew.
    pub time: TimeSettings,
}

impl StoreSettings {
    /// The settings argument of the decide function: its numbers, space-separated, in the
    /// order `decide.lua` reads them.
    pub fn decide_arg(&self) -> String {
        [
            self.legacy_period_ms,
            self.sale_timeout_ms,
            self.seen_ttl_s,
            self.stream_maxlen,
            keys::CARD_RECENT_LEN as u64,
            self.recent_ttl_s,
            self.device_ttl_s,
            self.time.decision_window_ms,
            self.time.max_future_ms,
            self.time.max_skew_ms,
            tapgate_protocol::rules::RETAP_ACCEPTED_WITHIN_MS,
            self.time.max_offline_age_ms,
        ]
        .map(|n| n.to_string())
        .join(" ")
    }
}

/// What the script made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Decided now, or earlier with the same content (a redelivery). Boxed: the other answers
    /// are a word or two.
    Decided(Box<Decided>),
    /// The device already used this id for different content: nothing changed.
    IdReused,
    /// The message's time is refused (`time_in_future`, `offline_not_allowed`, `time_too_old`):
    /// nothing changed.
    Refused(RejectReason),
    /// An entry paid as you go happened at this time (Unix ms), outside the fare day passed
    /// (a device's lead moved an offline entry across a service-day boundary): nothing changed;
    /// decide it again with this time's fare day.
    FareDayAt(u64),
}

/// A decision as stored: the answer and the events it produced (with their stream ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// True when this message was decided before (a redelivery): nothing changed this time.
    pub replayed: bool,
    /// The answer for the device.
    pub decision: Decision,
    /// Events appended to the stream, with `seq` set.
    pub events: Vec<Event>,
    /// Notices (stale taps, unpaid entries) appended to the stream, with `seq` set.
    pub notices: Vec<Notice>,
}

/// Whether an event is about tap time (stale taps, unpaid entries, clock skew).
fn is_notice(e: &Event) -> bool {
    matches!(
        e.event,
        EventKind::TapStale | EventKind::UnpaidEntry | EventKind::ClockSkew
    )
}

/// Handle to Redis with the scripts loaded. Cheap to clone; reconnects by itself and follows a
/// Sentinel failover.
#[derive(Clone)]
pub struct Store {
    con: RedisLink,
    library: Arc<Library>,
    /// The settings argument of every decide call (see `decide.lua`).
    settings_arg: Arc<str>,
    settings: StoreSettings,
    wait: Option<Wait>,
    /// Where writes refused at the memory limit are counted, if anywhere.
    metrics: Option<crate::Metrics>,
}

/// How many replicas must hold a decision before it is confirmed, and for how long to wait.
#[derive(Debug, Clone, Copy)]
struct Wait {
    replicas: u32,
    timeout_ms: u64,
}

impl Store {
    /// Connects (failing fast if Redis is unreachable) and prepares the scripts. `url` is
    /// `redis://…` or `redis+sentinel://host:port,…/primary`; `password`, when given, replaces
    /// the URL's.
    pub async fn connect(
        url: &str,
        password: Option<&str>,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        Self::connect_to(&RedisUrl::parse(url)?, password, settings).await
    }

    /// [`Store::connect`] to a URL parsed when the settings were read; `password`, when given,
    /// replaces the URL's.
    pub async fn connect_to(
        url: &RedisUrl,
        password: Option<&str>,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        let con = RedisLink::connect(url, password).await?;
        let store = Self {
            con,
            library: Arc::new(Library::new()),
            settings_arg: settings.decide_arg().into(),
            settings,
            wait: None,
            metrics: None,
        };
        // Load the library now so a Redis that refuses functions fails at start-up. A full
        // Redis refuses the load too (FUNCTION LOAD is a write): start anyway, and refuse each
        // message as Redis refuses it, until memory is freed; the library is loaded then.
        let mut con = store.con.clone();
        match store.library.load(&mut con).await {
            Err(e) if is_oom(&e) => tracing::warn!(
                error = %e,
                "Redis is full: function library not loaded; every decision is refused until \
                 memory is freed"
            ),
            other => other?,
        }
        Ok(store)
    }

    /// Confirms a decision only once `replicas` replicas hold its writes (`WAIT`, pipelined with
    /// the script), waiting at most `timeout`.
    pub fn with_replication(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then(|| Wait {
            replicas,
            timeout_ms: crate::config::millis(timeout).max(1),
        });
        self
    }

    /// Counts writes Redis refuses at its memory limit ([`StoreError::Full`]) in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A command's error: [`StoreError::Full`] (counted) when Redis refused it for memory
    /// (`OOM`), else [`StoreError::Command`].
    fn command_error(&self, e: redis::RedisError) -> StoreError {
        if !is_oom(&e) {
            return StoreError::Command(e);
        }
        if let Some(metrics) = &self.metrics {
            metrics.redis_full();
        }
        StoreError::Full(e)
    }

    /// The Redis connection (for its address and reconnect count).
    pub fn link(&self) -> &RedisLink {
        &self.con
    }

    /// Runs the decide function, then `WAIT` in the same round trip when replication is
    /// required. A Redis that lost the library (restarted without persistence) has it loaded
    /// again and the call repeated.
    async fn run_decide(&self, call: redis::Cmd) -> Result<Reply, StoreError> {
        let mut con = self.con.clone();
        let Some(wait) = self.wait else {
            let reply = self.library.query(&mut con, &call).await;
            return split_reply(reply.map_err(|e| self.command_error(e))?);
        };
        // Every replica a failover could promote, at least the configured number.
        let wanted = self.con.replicas_to_wait(wait.replicas);
        let mut pipe = redis::pipe();
        pipe.add_command(call)
            .cmd("WAIT")
            .arg(wanted)
            .arg(wait.timeout_ms);
        let (reply, acked): (String, u64) = self
            .library
            .query_pipe(&mut con, &pipe)
            .await
            .map_err(|e| self.command_error(e))?;
        if acked < u64::from(wanted) {
            return Err(StoreError::NotReplicated {
                acked,
                wanted,
                timeout_ms: wait.timeout_ms,
            });
        }
        split_reply(reply)
    }

    /// Decides one message in one atomic script run. A redelivered (device, id) with the same
    /// content returns the stored result with `replayed` set; with other content,
    /// [`Answer::IdReused`]. Either way nothing changes.
    pub async fn decide(&self, req: &Request<'_>) -> Result<Answer, StoreError> {
        let call = request::decide_command(&self.library, &self.settings_arg, req);
        let card = match req.input {
            Input::GateTap(c) | Input::TerminalTap(c) => Some(c),
            Input::Button(_) => None,
        };
        let reply = self.run_decide(call).await?;
        let (code, json) = (reply.code, reply.body());
        match code {
            2 => return Ok(Answer::IdReused),
            4 => {
                return json
                    .parse()
                    .map(Answer::FareDayAt)
                    .map_err(|_| StoreError::BadResult(format!("unreadable fare time {json:?}")))
            }
            3 => {
                return RejectReason::ALL
                    .into_iter()
                    .find(|r| r.as_str() == json)
                    .map(Answer::Refused)
                    .ok_or_else(|| StoreError::BadResult(format!("unknown refusal {json:?}")))
            }
            _ => {}
        }
        let asked = result::Asked {
            kind: req.kind,
            device: req.device,
            id: req.id,
            card: card.map(CardId::as_str),
            stamp: req.stamp,
        };
        let parsed = result::parse(json, &asked).map_err(|e| StoreError::BadResult(e.0))?;
        let mut events = Vec::new();
        let mut notices = Vec::new();
        for ev in parsed.events {
            if is_notice(&ev) {
                notices.push(ev);
            } else {
                events.push(ev);
            }
        }
        Ok(Answer::Decided(Box::new(Decided {
            replayed: code == 1,
            decision: parsed.decision,
            events,
            notices,
        })))
    }

    /// [`Store::decide`] under `fares`, asking once more with the fare day the script names
    /// ([`Answer::FareDayAt`]: a device's clock lead moved an offline entry paid as you go across
    /// a service-day boundary). Never answers `FareDayAt`.
    pub async fn decide_under(
        &self,
        req: Request<'_>,
        fares: &tapgate_protocol::Catalogue,
    ) -> Result<Answer, StoreError> {
        match self.decide(&req).await? {
            Answer::FareDayAt(at) => match self.decide(&req.at_fare_time(fares, at)).await? {
                Answer::FareDayAt(again) => Err(StoreError::BadResult(format!(
                    "the fare day of {at} does not hold {again}"
                ))),
                answer => Ok(answer),
            },
            answer => Ok(answer),
        }
    }

    /// Records a refused message: counter by reason, per-device counter when the device is known,
    /// and the `rejected` event. Returns the event with `seq` set.
    pub async fn reject(&self, mut event: Event, reason: &str) -> Result<Event, StoreError> {
        let mut k = vec![
            keys::EVENTS_STREAM.to_owned(),
            keys::COUNTERS_REJECTED.to_owned(),
        ];
        if let Some(device) = &event.device {
            k.push(keys::device_counters(device));
        }
        let mut call = self.library.call(Function::Reject, &k);
        call.arg(reason)
            .arg(self.settings.stream_maxlen)
            .arg(self.settings.device_ttl_s);
        for (field, value) in event.stream_fields() {
            call.arg(field).arg(value);
        }
        let mut con = self.con.clone();
        let seq: String = self
            .library
            .query(&mut con, &call)
            .await
            .map_err(|e| self.command_error(e))?;
        event.seq = Some(seq);
        Ok(event)
    }

    /// Adds `total` refusals for `reason` to the rejected counters and each device's count to its
    /// own counters (field `rejected`, given their lifetime as `reject.lua` does), in one
    /// transaction: refusals counted in the bridge rather than recorded one by one
    /// (the bridge's `refusals` module). No event is appended.
    pub async fn count_rejected(
        &self,
        reason: RejectReason,
        total: u64,
        devices: &HashMap<DeviceId, u64>,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.hincr(keys::COUNTERS_REJECTED, reason.as_str(), total)
            .ignore();
        for (device, n) in devices {
            let key = keys::device_counters(device);
            pipe.hincr(&key, fields::device_counters::REJECTED, *n)
                .ignore();
            pipe.expire(&key, ttl_secs(self.settings.device_ttl_s))
                .ignore();
        }
        let mut con = self.con.clone();
        pipe.query_async::<()>(&mut con)
            .await
            .map_err(|e| self.command_error(e))?;
        Ok(())
    }

    /// Records a device's presence: online state, last seen and uptime; renews the lifetime of
    /// its presence hash and counters.
    pub async fn presence(
        &self,
        kind: DeviceKind,
        device: &DeviceId,
        online: Option<bool>,
        uptime_s: Option<u64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let key = keys::device(kind, device);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.hset(&key, fields::presence::LAST_SEEN, now_ms)
            .ignore();
        if let Some(online) = online {
            pipe.hset(&key, fields::presence::ONLINE, u8::from(online))
                .ignore();
        }
        if let Some(up) = uptime_s {
            // A heartbeat means the device is up, whatever the last status said.
            pipe.hset(&key, fields::presence::UPTIME_S, up).ignore();
            pipe.hset(&key, fields::presence::ONLINE, 1u8).ignore();
        }
        pipe.expire(&key, ttl_secs(self.settings.device_ttl_s))
            .ignore();
        // The device's counters live as long as its presence (the decide function gives them
        // their first lifetime but does not renew it).
        pipe.expire(
            keys::device_counters(device),
            ttl_secs(self.settings.device_ttl_s),
        )
        .ignore();
        pipe.sadd(keys::DEVICES, keys::device_member(kind, device))
            .ignore();
        let mut con = self.con.clone();
        pipe.query_async::<()>(&mut con)
            .await
            .map_err(|e| self.command_error(e))?;
        Ok(())
    }

    /// Records the skew of a device's clock (`clock_ms`, from its heartbeat, against the bridge's
    /// `now_ms`) in its presence hash. When the device's flag changes (off by more than the
    /// allowed skew, or back within it), counts it and appends a `clock-skew` notice, returned
    /// with `seq` set.
    pub async fn clock(
        &self,
        kind: DeviceKind,
        device: &DeviceId,
        clock_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Notice>, StoreError> {
        let mut call = self.library.call(
            Function::Clock,
            &[
                keys::device(kind, device),
                keys::EVENTS_STREAM.to_owned(),
                keys::COUNTERS_CLOCK.to_owned(),
            ],
        );
        call.arg(now_ms)
            .arg(clock_ms)
            .arg(self.settings.time.max_skew_ms)
            .arg(device.as_str())
            .arg(kind.as_str())
            .arg(self.settings.stream_maxlen)
            .arg(self.settings.device_ttl_s);
        let mut con = self.con.clone();
        let out: Vec<String> = self
            .library
            .query(&mut con, &call)
            .await
            .map_err(|e| self.command_error(e))?;
        let Some((seq, pairs)) = out.split_first() else {
            return Ok(None);
        };
        let entry: BTreeMap<String, String> = pairs
            .chunks_exact(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        let notice = Notice::from_stream_map(&entry).map_err(|e| {
            StoreError::BadResult(format!(
                "{e}: {:?}",
                tapgate_protocol::text::escape_untrusted(&format!("{out:?}"), 200)
            ))
        })?;
        Ok(Some(Notice {
            seq: Some(seq.clone()),
            ..notice
        }))
    }

    /// Removes from [`keys::DEVICES`] every device whose presence hash has expired (not heard
    /// from for the device TTL). Returns how many were removed.
    pub async fn prune_devices(&self) -> Result<usize, StoreError> {
        let mut con = self.con.clone();
        let mut cursor: u64 = 0;
        let mut removed = 0;
        let prune = Script::new(PRUNE_DEVICE);
        loop {
            let (next, members): (u64, Vec<String>) = redis::cmd("SSCAN")
                .arg(keys::DEVICES)
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut con)
                .await?;
            for member in members {
                let Some(key) = member_key(&member) else {
                    // Not a device this bridge would write: drop it.
                    let _: i64 = redis::cmd("SREM")
                        .arg(keys::DEVICES)
                        .arg(&member)
                        .query_async(&mut con)
                        .await?;
                    removed += 1;
                    continue;
                };
                let n: i64 = prune
                    .key(key)
                    .key(keys::DEVICES)
                    .arg(&member)
                    .invoke_async(&mut con)
                    .await?;
                removed += usize::try_from(n).unwrap_or(0);
            }
            cursor = next;
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }
}

/// Whether Redis refused a write for its memory limit (`OOM`).
fn is_oom(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM")
}

/// Whether Redis refused a command for this user's rights (`NOPERM`), as opposed to failing.
fn no_perm(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
}

/// Removes a device from the set if its presence hash is gone. KEYS: presence hash, devices set.
const PRUNE_DEVICE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return redis.call('SREM', KEYS[2], ARGV[1])
";

/// The decide function's reply: the kind of answer (see `decide.lua`) and its text, read in
/// place.
#[derive(Debug)]
struct Reply {
    code: u8,
    text: String,
    start: usize,
}

impl Reply {
    /// The text after the code (or after a new decision's fingerprint).
    fn body(&self) -> &str {
        self.text.get(self.start..).unwrap_or_default()
    }
}

/// Splits the decide function's reply. A new decision (0) is its seen record, a fingerprint
/// (starting with its op, a lower-case letter) and a newline before the result; every other kind
/// is a leading digit and the text after it.
fn split_reply(text: String) -> Result<Reply, StoreError> {
    let (code, start) = match text.as_bytes().first() {
        Some(&c @ b'1'..=b'4') => (c - b'0', Some(1)),
        Some(b'a'..=b'z') => (0, text.find('\n').map(|nl| nl + 1)),
        _ => (0, None),
    };
    match start {
        Some(start) => Ok(Reply { code, text, start }),
        None => Err(StoreError::BadResult(format!(
            "decide reply without its code: {:?}",
            tapgate_protocol::text::escape_untrusted(&text, 200)
        ))),
    }
}

/// The presence hash of a `{kind}/{device}` member of [`keys::DEVICES`].
fn member_key(member: &str) -> Option<String> {
    let (kind, device) = member.split_once('/')?;
    let kind = DeviceKind::parse(kind)?;
    let device = DeviceId::new(device).ok()?;
    Some(keys::device(kind, &device))
}

fn ttl_secs(s: u64) -> i64 {
    i64::try_from(s.max(1)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_reply_is_split_at_its_code() {
        let split = |text: &str| {
            split_reply(text.to_owned())
                .ok()
                .map(|r| (r.code, r.body().to_owned()))
        };
        assert_eq!(
            split("gate:04AB:\ngranted\t"),
            Some((0, "granted\t".to_owned()))
        );
        assert_eq!(split("2"), Some((2, String::new())));
        assert_eq!(
            split("3time_in_future"),
            Some((3, "time_in_future".to_owned()))
        );
        assert_eq!(
            split("41700000000000"),
            Some((4, "1700000000000".to_owned()))
        );
        for bad in ["", "5x", "0granted\t", "granted", "é"] {
            assert!(
                matches!(split_reply(bad.into()), Err(StoreError::BadResult(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn presence_keys() {
        assert_eq!(
            member_key("gate/g1").as_deref(),
            Some("tapgate:device:gate:g1")
        );
        assert_eq!(member_key("bus/g1"), None);
        assert_eq!(member_key("gate"), None);
    }
}
