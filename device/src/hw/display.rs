//! The display player: shows each [`Readout`] for its time, then blanks the display.
//!
//! A new readout replaces the one shown at once. The display starts blank and is blanked on
//! shutdown; text equal to what is shown is not written again. The player runs on tokio time, so
//! tests use `tokio::time::pause()`.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Display;
use crate::digits::{DisplayText, Readout};

/// Shows readouts from `readouts` on `display` until `shutdown` (or the sender is gone), then
/// blanks it. Returns the display.
pub async fn play<D: Display>(
    mut display: D,
    mut readouts: mpsc::Receiver<Readout>,
    shutdown: CancellationToken,
) -> D {
    let mut shown: Option<DisplayText> = None;
    let mut show = |display: &mut D, text: DisplayText| {
        if shown == Some(text) {
            return;
        }
        shown = Some(text);
        if let Err(e) = display.show(text) {
            warn!(error = %e, %text, "Display failure");
        }
    };
    show(&mut display, DisplayText::BLANK);
    let mut blank_at: Option<Instant> = None;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => None,
            r = readouts.recv() => r,
            _ = sleep_until(blank_at) => {
                show(&mut display, DisplayText::BLANK);
                blank_at = None;
                continue;
            }
        };
        let Some(r) = next else { break };
        show(&mut display, r.text);
        blank_at = (r.text != DisplayText::BLANK).then(|| Instant::now() + r.hold);
    }
    show(&mut display, DisplayText::BLANK);
    display
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::console::RecordingDisplay;
    use std::time::Duration;
    use tapgate_protocol::Currency;

    fn readout(text: DisplayText, secs: u64) -> Readout {
        Readout {
            text,
            hold: Duration::from_secs(secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shows_for_a_while_then_blanks() {
        let display = RecordingDisplay::default();
        let (tx, rx) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let player = tokio::spawn(play(display.clone(), rx, shutdown.clone()));
        let price = DisplayText::price(250, Currency::EUR);
        tx.send(readout(price, 10)).await.expect("send");
        tokio::time::sleep(Duration::from_secs(12)).await;
        // A new readout cuts the old one short, and its own time counts from when it came.
        let trips = DisplayText::count(9);
        tx.send(readout(price, 10)).await.expect("send");
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(readout(trips, 5)).await.expect("send");
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(readout(trips, 5)).await.expect("send");
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
        player.await.expect("player");
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            display.changes(),
            vec![
                (at(0), DisplayText::BLANK),
                (at(0), price),
                (at(10), DisplayText::BLANK),
                (at(12), price),
                (at(15), trips),
                (at(19), DisplayText::BLANK),
            ],
            "the same text again is not rewritten; shutdown blanks"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn blank_is_shown_at_once_and_the_sender_gone_stops_it() {
        let display = RecordingDisplay::default();
        let (tx, rx) = mpsc::channel(4);
        let player = tokio::spawn(play(display.clone(), rx, CancellationToken::new()));
        tx.send(readout(DisplayText::count(3), 60))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(readout(DisplayText::BLANK, 60))
            .await
            .expect("send");
        drop(tx);
        player.await.expect("player");
        let texts: Vec<String> = display
            .changes()
            .into_iter()
            .map(|(_, t)| t.to_string())
            .collect();
        assert_eq!(texts, ["    ", "   3", "    "]);
    }
}
