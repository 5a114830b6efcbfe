//! Device logic as pure state machines: inputs and decisions in, commands out.
//!
//! - [`gate`]: an entry gate (card reader, traffic light, speaker).
//! - [`terminal`]: a sales terminal (card reader, product buttons, speaker).
//! - this module: what both share — the [`Command`]s they emit (publish, lights, sound, a line of
//!   text, the four-digit display), the reader-level [`TapDebouncer`], the never-reused message
//!   ids ([`TapIds`]) and the [`OfflinePolicy`].
//!
//! Nothing here does I/O: time comes in as an argument (an `Instant` for timeouts) or through an
//! injected [`Clock`] (the wall clock that stamps taps and buttons with when they happened), so
//! every behaviour is tested with plain `#[test]`s and a `ManualClock`. The runtime in [`crate::runtime`] connects the machines to the
//! hardware traits and the MQTT link.

pub mod gate;
pub mod terminal;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tapgate_protocol::{Button, CardId, MessageId, Stamp, Tap};
pub use tapgate_runtime::clock::{Clock, ManualClock, SystemClock};
use tokio::time::Instant;

use crate::digits::Readout;
use crate::prompt::{LightPattern, Sound};

/// The wall clock a state machine stamps its messages with.
pub type WallClock = Arc<dyn Clock>;

/// The system clock, as a [`WallClock`].
pub fn system_clock() -> WallClock {
    Arc::new(SystemClock)
}

/// A message for the bridge, with when it happened and whether the device waits for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A card tap.
    Tap(Tap, Stamp),
    /// A product button (terminal only).
    Button(Button, Stamp),
}

impl Outbound {
    pub fn id(&self) -> &MessageId {
        match self {
            Outbound::Tap(t, _) => &t.id,
            Outbound::Button(b, _) => &b.id,
        }
    }

    pub fn stamp(&self) -> Stamp {
        match self {
            Outbound::Tap(_, s) | Outbound::Button(_, s) => *s,
        }
    }
}

/// What a state machine asks the edges to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send a message to the bridge.
    Publish(Outbound),
    /// Show a light pattern (gate only).
    Lights(LightPattern),
    /// Play a sound or prompt.
    Play(Sound),
    /// Show a line of text to the rider (display or console).
    Show(String),
    /// Show four characters on the seven-segment display for a while.
    Display(Readout),
}

/// What a gate does when no decision arrives in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OfflinePolicy {
    /// Deny, saying the service is unavailable.
    #[default]
    FailClosed,
    /// Let the rider in; the tap stays queued and is charged when the bridge returns.
    FailOpen,
}

impl OfflinePolicy {
    /// The setting's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            OfflinePolicy::FailClosed => "fail-closed",
            OfflinePolicy::FailOpen => "fail-open",
        }
    }
}

impl fmt::Display for OfflinePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OfflinePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail-closed" => Ok(OfflinePolicy::FailClosed),
            "fail-open" => Ok(OfflinePolicy::FailOpen),
            other => Err(format!(
                "unknown offline policy {other:?}; expected fail-closed or fail-open"
            )),
        }
    }
}

/// Reader-level debounce: a card held on the reader is one tap, not many.
///
/// A card counts as a new tap unless the same card was seen less than `hold` ago. Every
/// sighting restarts the window, so a card resting on the reader stays one tap however long it
/// rests; a different card is always a new tap.
#[derive(Debug, Clone)]
pub struct TapDebouncer {
    hold: Duration,
    last: Option<(CardId, Instant)>,
}

impl TapDebouncer {
    /// A debouncer with the given hold window.
    pub fn new(hold: Duration) -> Self {
        Self { hold, last: None }
    }

    /// Records a sighting of `card` at `now`; true when it is a new tap.
    pub fn is_new_tap(&mut self, card: &CardId, now: Instant) -> bool {
        let repeat = matches!(&self.last, Some((c, at)) if c == card
            && now.saturating_duration_since(*at) < self.hold);
        self.last = Some((card.clone(), now));
        !repeat
    }
}

/// Message ids that are unique per device, never reused after a restart, and cannot be guessed:
/// `{boot-epoch-ms}-{counter}-{64 random bits in hex}`. The boot time and counter keep them
/// unique and readable in logs; the random part means nobody can prepare an answer for a
/// device's next id in advance.
#[derive(Debug, Clone)]
pub struct TapIds {
    boot_ms: u64,
    next: u64,
}

impl TapIds {
    /// Ids for a process that started at `boot_ms` (Unix ms).
    pub fn new(boot_ms: u64) -> Self {
        Self { boot_ms, next: 1 }
    }

    pub fn next_id(&mut self) -> MessageId {
        let n = self.next;
        self.next = self.next.saturating_add(1);
        // The OS generator only fails on a broken system; the counter still keeps ids unique.
        let tag = getrandom::u64().unwrap_or(0);
        // Digits, hex and two '-', at most 58 characters: always a valid id.
        MessageId::new(format!("{}-{}-{tag:016x}", self.boot_ms, n)).expect("ids are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(s: &str) -> CardId {
        CardId::new(s).expect("card")
    }

    #[tokio::test(start_paused = true)]
    async fn held_card_is_one_tap() {
        let mut d = TapDebouncer::new(Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(d.is_new_tap(&card("A1"), t0));
        // Resting on the reader: seen every 50 ms for 10 s, never a new tap.
        for i in 1..200 {
            assert!(!d.is_new_tap(&card("A1"), t0 + Duration::from_millis(50 * i)));
        }
        // Taken away for 2 s, back again: a new tap.
        let back = t0 + Duration::from_millis(50 * 199) + Duration::from_secs(2);
        assert!(d.is_new_tap(&card("A1"), back));
        // Another card is always new.
        assert!(d.is_new_tap(&card("B2"), back));
        assert!(d.is_new_tap(&card("A1"), back));
    }

    #[test]
    fn ids_are_unique_valid_and_unpredictable() {
        let mut ids = TapIds::new(1_700_000_000_000);
        let a = ids.next_id();
        let b = ids.next_id();
        assert!(a.as_str().starts_with("1700000000000-1-"), "{a}");
        assert!(b.as_str().starts_with("1700000000000-2-"), "{b}");
        // The random parts differ, so knowing one id does not give the next.
        let tag = |id: &MessageId| id.as_str().rsplit('-').next().map(str::to_owned);
        assert_ne!(tag(&a), tag(&b));
        assert_eq!(tag(&a).map(|t| t.len()), Some(16));
        let mut after_restart = TapIds::new(1_700_000_005_000);
        assert!(after_restart
            .next_id()
            .as_str()
            .starts_with("1700000005000-1-"));
        let mut big = TapIds::new(u64::MAX);
        big.next = u64::MAX;
        assert!(big.next_id().as_str().len() <= MessageId::MAX_LEN);
    }

    #[test]
    fn policies_parse() {
        for p in [OfflinePolicy::FailClosed, OfflinePolicy::FailOpen] {
            assert_eq!(p.as_str().parse::<OfflinePolicy>(), Ok(p));
        }
        assert!("open".parse::<OfflinePolicy>().is_err());
        assert_eq!(OfflinePolicy::default(), OfflinePolicy::FailClosed);
    }
}
