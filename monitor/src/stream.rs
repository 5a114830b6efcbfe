//! Reading the event stream.
//!
//! [`StreamId`] is a parsed stream entry id, ordered as Redis orders them. [`Entry`] is one entry:
//! its id and either the [`Event`] it holds or why it could not be read, so an entry that breaks
//! the contract is still shown, never dropped. [`latest`] and [`range_page`] read history;
//! [`by_ids`] reads entries by id (a card's recent list);
//! [`Follower`] follows the stream with `XREAD BLOCK` from a cursor and survives Redis restarts by
//! reconnecting with backoff and resuming after the last id it returned.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::streams::{self, StreamRangeReply, StreamReadReply};
use redis::Value;
use tapgate_protocol::keys::EVENTS_STREAM;
use tapgate_protocol::Event;
use tapgate_runtime::redis::RedisSource;
use tapgate_runtime::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A stream entry id, `{ms}-{seq}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part: the Redis server's clock when the entry was added.
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The smallest id, `0-0`: reading after it reads everything.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// The first possible id of millisecond `ms`.
    pub const fn at(ms: u64) -> Self {
        Self { ms, seq: 0 }
    }

    /// The id just before this one, so that reading after it includes this one.
    pub const fn pred(self) -> Self {
        if self.seq > 0 {
            Self {
                ms: self.ms,
                seq: self.seq - 1,
            }
        } else if self.ms > 0 {
            Self {
                ms: self.ms - 1,
                seq: u64::MAX,
            }
        } else {
            Self::ZERO
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Why a string is not a stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a stream id (expected MS-SEQ, e.g. 1700000000000-0)")]
pub struct BadStreamId(pub String);

impl FromStr for StreamId {
    type Err = BadStreamId;

    /// Parses `ms-seq` or a bare `ms` (sequence 0).
    fn from_str(s: &str) -> Result<Self, BadStreamId> {
        let bad = || BadStreamId(s.to_owned());
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Why a stream entry could not be read as an [`Event`].
pub(crate) use tapgate_protocol::stream::EntryError as Unreadable;

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its stream id.
    pub id: StreamId,
    /// The event, or why it could not be read.
    pub event: Result<Event, Unreadable>,
}

/// Errors reading the stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Redis failed or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered with something that is not a stream reply.
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// Reads one entry's event (either layout, see [`tapgate_protocol::stream`]). `None` only when
/// even the id is unreadable.
fn entry(raw: &streams::StreamId) -> Option<Entry> {
    let id: StreamId = raw.id.parse().ok()?;
    let event = match raw.map.iter().find(|(_, v)| text(v).is_none()) {
        Some((field, _)) => Err(Unreadable::NotText(field.clone())),
        None => Event::from_stream(|name| raw.map.get(name).and_then(text)),
    };
    Some(Entry { id, event })
}

fn entries(ids: &[streams::StreamId]) -> Result<Vec<Entry>, StreamError> {
    ids.iter()
        .map(|i| entry(i).ok_or_else(|| StreamError::Reply(format!("stream id {:?}", i.id))))
        .collect()
}

/// The entries of an `XRANGE`/`XREVRANGE` reply, in reply order.
pub(crate) fn parse_range(reply: &StreamRangeReply) -> Result<Vec<Entry>, StreamError> {
    entries(&reply.ids)
}

/// The entries of an `XREAD` reply for the one stream read.
pub(crate) fn parse_read(reply: &StreamReadReply) -> Result<Vec<Entry>, StreamError> {
    reply
        .keys
        .first()
        .map_or_else(|| Ok(Vec::new()), |k| entries(&k.ids))
}

/// The entries with the given ids, in that order; ids no longer in the stream (trimmed) are
/// left out.
pub(crate) async fn by_ids(
    conn: &mut impl ConnectionLike,
    ids: &[StreamId],
) -> Result<Vec<Entry>, StreamError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XRANGE")
            .arg(EVENTS_STREAM)
            .arg(id.to_string())
            .arg(id.to_string());
    }
    let replies: Vec<StreamRangeReply> = pipe.query_async(conn).await?;
    let mut out = Vec::with_capacity(ids.len());
    for r in &replies {
        out.extend(parse_range(r)?);
    }
    Ok(out)
}

/// Opens a connection to the node in use now (the primary, with Sentinel) whose replies may take
/// `response_timeout` (longer than any `BLOCK`).
pub(crate) async fn connect(
    source: &RedisSource,
    response_timeout: Duration,
) -> Result<MultiplexedConnection, redis::RedisError> {
    source.connect(response_timeout).await
}

/// The newest `count` entries with id ≥ `from`, oldest first.
pub(crate) async fn latest(
    conn: &mut impl ConnectionLike,
    from: Option<StreamId>,
    count: usize,
) -> Result<Vec<Entry>, StreamError> {
    let start = from.map_or_else(|| "-".to_owned(), |f| f.to_string());
    let v: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(EVENTS_STREAM)
        .arg("+")
        .arg(start)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let mut entries = parse_range(&v)?;
    entries.reverse();
    Ok(entries)
}

/// Up to `count` entries with id ≥ `from` (or > `from` when `exclusive`), oldest first.
pub(crate) async fn range_page(
    conn: &mut impl ConnectionLike,
    from: StreamId,
    exclusive: bool,
    end: Option<StreamId>,
    count: usize,
) -> Result<Vec<Entry>, StreamError> {
    let start = if exclusive {
        format!("({from}")
    } else {
        from.to_string()
    };
    let end = end.map_or_else(|| "+".to_owned(), |e| e.to_string());
    let v: StreamRangeReply = redis::cmd("XRANGE")
        .arg(EVENTS_STREAM)
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    parse_range(&v)
}

/// Up to `count` entries with id > `cursor`, waiting up to `block` for the first one.
pub(crate) async fn read_after(
    conn: &mut impl ConnectionLike,
    cursor: StreamId,
    block: Duration,
    count: usize,
) -> Result<Vec<Entry>, StreamError> {
    let v: StreamReadReply = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
        .arg("STREAMS")
        .arg(EVENTS_STREAM)
        .arg(cursor.to_string())
        .query_async(conn)
        .await?;
    parse_read(&v)
}

/// The delays between reconnection attempts: 100 ms, doubling up to 5 s.
pub(crate) fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}

/// Follows the stream after a cursor, across lost connections and Redis restarts.
pub(crate) struct Follower {
    client: RedisSource,
    conn: Option<MultiplexedConnection>,
    cursor: StreamId,
    block: Duration,
    backoff: Backoff,
    lost: bool,
}

impl Follower {
    /// Follows entries after `cursor`. `conn`, if given, is used until it fails.
    pub(crate) fn new(
        client: RedisSource,
        conn: Option<MultiplexedConnection>,
        cursor: StreamId,
    ) -> Self {
        Self {
            client,
            conn,
            cursor,
            block: Duration::from_secs(5),
            backoff: reconnect_backoff(),
            lost: false,
        }
    }

    /// The next entries after the cursor, in order. Waits as long as it takes, reconnecting with
    /// backoff when Redis is gone; `None` once `shutdown` is cancelled.
    pub(crate) async fn next(&mut self, shutdown: &CancellationToken) -> Option<Vec<Entry>> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let result = match self.conn.as_mut() {
                Some(conn) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        r = read_after(conn, self.cursor, self.block, 500) => r,
                    }
                }
                None => {
                    let timeout = self.block + Duration::from_secs(5);
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        c = connect(&self.client, timeout) => match c {
                            Ok(c) => {
                                if self.lost {
                                    info!(cursor = %self.cursor, "Reconnected to redis, resuming");
                                    self.lost = false;
                                }
                                self.conn = Some(c);
                                continue;
                            }
                            Err(e) => Err(StreamError::Redis(e)),
                        },
                    }
                }
            };
            match result {
                Ok(entries) if entries.is_empty() => {
                    self.backoff.reset();
                }
                Ok(entries) => {
                    self.backoff.reset();
                    if let Some(last) = entries.last() {
                        self.cursor = last.id;
                    }
                    return Some(entries);
                }
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    if !self.lost {
                        warn!(error = %e, cursor = %self.cursor, "Lost the event stream, reconnecting");
                    }
                    self.lost = true;
                    self.conn = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_order() {
        let a: StreamId = "1700000000000-5".parse().expect("id");
        assert_eq!(
            a,
            StreamId {
                ms: 1_700_000_000_000,
                seq: 5
            }
        );
        assert_eq!(a.to_string(), "1700000000000-5");
        assert_eq!("42".parse::<StreamId>(), Ok(StreamId::at(42)));
        assert!(StreamId::at(2) > StreamId { ms: 1, seq: 9 });
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "1 -2",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn predecessor() {
        assert_eq!(
            StreamId { ms: 5, seq: 3 }.pred(),
            StreamId { ms: 5, seq: 2 }
        );
        assert_eq!(
            StreamId::at(5).pred(),
            StreamId {
                ms: 4,
                seq: u64::MAX
            }
        );
        assert_eq!(StreamId::ZERO.pred(), StreamId::ZERO);
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn range(v: Value) -> Result<Vec<Entry>, StreamError> {
        let reply: StreamRangeReply = redis::from_redis_value(v).expect("a range reply");
        parse_range(&reply)
    }

    #[test]
    fn entries_parse_or_say_why_not() {
        let good = tapgate_protocol::Event::new(tapgate_protocol::EventKind::PassDenied, 1);
        let mut fields = Vec::new();
        for (k, v) in good.stream_fields() {
            fields.extend([bulk(k), bulk(&v)]);
        }
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("1-0"), Value::Array(fields)]),
            Value::Array(vec![
                bulk("2-0"),
                Value::Array(vec![bulk("event"), bulk(&good.to_json())]),
            ]),
            Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("other"), bulk("x")]),
            ]),
            Value::Array(vec![
                bulk("4-0"),
                Value::Array(vec![bulk("event"), bulk("{not json")]),
            ]),
            Value::Array(vec![
                bulk("5-0"),
                Value::Array(vec![bulk("event"), Value::Int(3)]),
            ]),
        ]);
        let entries = range(reply).expect("parse");
        assert_eq!(entries.len(), 5);
        assert_eq!(
            entries[0].event,
            Ok(good.clone()),
            "a field per event field"
        );
        assert_eq!(
            entries[1].event,
            Ok(good),
            "an entry of the older JSON layout"
        );
        assert_eq!(entries[2].event, Err(Unreadable::MissingField));
        assert!(matches!(entries[3].event, Err(Unreadable::BadEvent(_))));
        assert_eq!(entries[4].event, Err(Unreadable::NotText("event".into())));
        let bad_id = Value::Array(vec![Value::Array(vec![
            bulk("soon"),
            Value::Array(vec![bulk("event"), bulk("x")]),
        ])]);
        assert!(range(bad_id).is_err());
        assert!(
            redis::from_redis_value::<StreamRangeReply>(Value::Array(vec![Value::Int(1)])).is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn ids_round_trip_and_order_like_redis(a: (u64, u64), b: (u64, u64)) {
            let (x, y) = (StreamId { ms: a.0, seq: a.1 }, StreamId { ms: b.0, seq: b.1 });
            proptest::prop_assert_eq!(x.to_string().parse::<StreamId>(), Ok(x));
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            if x > StreamId::ZERO {
                proptest::prop_assert!(x.pred() < x);
                proptest::prop_assert!(!(x.pred() < y && y < x), "nothing between pred and id");
            }
        }
    }
}
