//! `tapgate-monitor tail`: the event stream in a terminal.
//!
//! First replays history (the last N entries, or everything since a time or stream id), then
//! follows live from the last id it printed, so nothing is missed or printed twice at the
//! hand-over. When Redis goes away it reconnects with backoff and resumes after the last id
//! printed. Lines go to an injected writer, so tests read exactly what a terminal would; notes
//! for the person watching ("waiting for events on …" when there is nothing to replay) go to a
//! second one (stderr), so piped or `--json` output stays pure.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};
use tapgate_runtime::redis::RedisSource;
use tapgate_runtime::RedisUrl;

use tokio_util::sync::CancellationToken;

use crate::format::{entry_json, entry_line};
use crate::stream::{self, Entry, Follower, StreamError, StreamId};

/// How many entries one history read fetches.
const PAGE: usize = 500;

/// Where the replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Only entries with this id or later (`None`: the whole stream).
    pub since: Option<StreamId>,
    /// At most the newest this many of them (`None`: all).
    pub last: Option<usize>,
}

/// Settings of `tail`.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// Redis URL.
    pub redis: RedisUrl,
    /// What to replay before following.
    pub replay: Replay,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// ANSI colours in text lines.
    pub color: bool,
}

/// Why `tail` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Redis could not be read at start-up (later losses are retried, not errors).
    #[error("cannot read the event stream: {0}")]
    Stream(#[from] StreamError),
    /// The output could not be written (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Why a `--since` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time: give a stream id (1700000000000-0), an RFC 3339 time \
     (2026-11-22T08:00:00Z) or a duration ago (10m, 2h)"
)]
pub struct BadSince(pub String);

/// Parses `--since`: a stream id, an RFC 3339 time, or a duration before `now_ms`.
pub fn parse_since(s: &str, now_ms: u64) -> Result<StreamId, BadSince> {
    if let Ok(id) = s.parse::<StreamId>() {
        return Ok(id);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| BadSince(s.to_owned()))?
            .as_millis();
        return Ok(StreamId::at(
            u64::try_from(ms).map_err(|_| BadSince(s.to_owned()))?,
        ));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let ago = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        return Ok(StreamId::at(now_ms.saturating_sub(ago)));
    }
    Err(BadSince(s.to_owned()))
}

/// Whether to colour: `forced` (`--color always|never`) wins; otherwise only when stdout is a
/// terminal and `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn use_color(forced: Option<bool>, stdout_is_terminal: bool, no_color: Option<&str>) -> bool {
    forced.unwrap_or(stdout_is_terminal && no_color.is_none_or(str::is_empty))
}

/// Writes entries as lines, remembering the last id written.
struct Printer<W> {
    out: W,
    json: bool,
    color: bool,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        for entry in entries {
            let line = if self.json {
                entry_json(entry)
            } else {
                entry_line(entry).render(self.color)
            };
            writeln!(self.out, "{line}")?;
        }
        self.out.flush()
    }
}

/// Replays history into `out` and returns the cursor to follow from: the last id printed, or,
/// when nothing was printed, an id just before anything that could still arrive.
async fn replay<W: Write>(
    conn: &mut redis::aio::MultiplexedConnection,
    replay: Replay,
    printer: &mut Printer<W>,
) -> Result<StreamId, TailError> {
    let floor = replay.since.map_or(StreamId::ZERO, StreamId::pred);
    if let Some(n) = replay.last {
        let entries = stream::latest(conn, replay.since, n).await?;
        printer.print(&entries)?;
        return Ok(entries.last().map_or(floor, |e| e.id));
    }
    let mut cursor = replay.since.unwrap_or(StreamId::ZERO);
    let mut exclusive = false;
    let mut last = floor;
    loop {
        let page = stream::range_page(conn, cursor, exclusive, None, PAGE).await?;
        printer.print(&page)?;
        match page.last() {
            Some(e) => {
                last = e.id;
                cursor = e.id;
                exclusive = true;
            }
            None => return Ok(last),
        }
        if page.len() < PAGE {
            return Ok(last);
        }
    }
}

/// Replays, then follows until `shutdown`. Fails only at start-up or when `out` fails. When
/// the replay printed nothing, says on `notes` where it waits, so an empty or missing stream is
/// not mistaken for a hang.
pub async fn run<W: Write, N: Write>(
    config: TailConfig,
    out: W,
    mut notes: N,
    shutdown: CancellationToken,
) -> Result<(), TailError> {
    let client = RedisSource::at(&config.redis, None);
    let mut conn = stream::connect(&client, Duration::from_secs(10))
        .await
        .map_err(StreamError::from)?;
    let mut printer = Printer {
        out,
        json: config.json,
        color: config.color,
    };
    let floor = config.replay.since.map_or(StreamId::ZERO, StreamId::pred);
    let cursor = replay(&mut conn, config.replay, &mut printer).await?;
    if cursor == floor {
        let len: u64 = redis::cmd("XLEN")
            .arg(tapgate_protocol::keys::EVENTS_STREAM)
            .query_async(&mut conn)
            .await
            .map_err(StreamError::from)?;
        let addr = client
            .client()
            .await
            .map(|c| c.get_connection_info().addr().to_string())
            .unwrap_or_else(|_| client.url().to_owned());
        let _ = writeln!(notes, "{}", waiting_note(&addr, len));
    }
    let mut follower = Follower::new(client, None, cursor);
    drop(conn);
    while let Some(entries) = follower.next(&shutdown).await {
        printer.print(&entries)?;
    }
    Ok(())
}

/// "waiting for events on 127.0.0.1:6379 (tapgate:events is empty)": where `tail` waits, without
/// the URL's user or password.
fn waiting_note(addr: &str, stream_len: u64) -> String {
    let stream = tapgate_protocol::keys::EVENTS_STREAM;
    if stream_len == 0 {
        format!("waiting for events on {addr} ({stream} is empty)")
    } else {
        format!("waiting for new events on {addr} ({stream})")
    }
}

/// `tail --audit`: prints the newest `last` audit records, then follows new ones until
/// `shutdown`.
pub async fn run_audit<W: Write>(
    redis: &RedisUrl,
    last: usize,
    json: bool,
    color: bool,
    mut out: W,
    shutdown: CancellationToken,
) -> Result<(), TailError> {
    let client = RedisSource::at(redis, None);
    crate::audit::follow(&client, last, &shutdown, |records| {
        for r in records {
            if json {
                writeln!(out, "{}", r.to_json())?;
            } else {
                writeln!(out, "{}", r.line().render(color))?;
            }
        }
        out.flush()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_terminals_without_no_color() {
        assert!(use_color(None, true, None));
        assert!(!use_color(None, false, None), "piped output is plain");
        assert!(
            !use_color(None, true, Some("1")),
            "NO_COLOR turns colour off"
        );
        assert!(
            use_color(None, true, Some("")),
            "an empty NO_COLOR does not"
        );
        assert!(use_color(Some(true), false, Some("1")), "--color always");
        assert!(!use_color(Some(false), true, None), "--color never");
    }

    #[test]
    fn since_forms() {
        let now = 1_700_000_600_000;
        assert_eq!(
            parse_since("1700000000000-4", now),
            Ok(StreamId {
                ms: 1_700_000_000_000,
                seq: 4
            })
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now),
            Ok(StreamId::at(1_700_000_000_000))
        );
        assert_eq!(parse_since("10m", now), Ok(StreamId::at(1_700_000_000_000)));
        assert!(parse_since("yesterday-ish", now).is_err());
        assert!(parse_since("", now).is_err());
    }
}
