//! Debounced push buttons on embedded-hal input pins.
//!
//! Arcade buttons are wired between the pin and ground with the pin's pull-up on, so a pressed
//! button reads low. A contact bounces for a few milliseconds; [`Debouncer`] accepts a level only
//! after it has held for the settle time, and reports a press on the stable high → low edge.
//! [`PinButtons`] samples any number of pins, one per button, through their debouncers; a press
//! is reported by the button's position (which product it sells is the terminal's setting).
//! [`watch`] polls any [`Buttons`] on a timer and forwards presses; it runs on tokio time, so
//! tests drive it with `tokio::time::pause()`.

use std::time::Duration;

use embedded_hal::digital::InputPin;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Buttons;

/// Default settle time of a button contact.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(30);
/// Default sampling period.
pub const DEFAULT_SAMPLE: Duration = Duration::from_millis(5);

/// Debounces one contact.
#[derive(Debug, Clone)]
pub struct Debouncer {
    settle: Duration,
    stable: bool,
    candidate: Option<(bool, Instant)>,
}

impl Debouncer {
    /// A released contact that must hold a new level for `settle` before it counts.
    pub fn new(settle: Duration) -> Self {
        Self {
            settle,
            stable: false,
            candidate: None,
        }
    }

    /// Feeds one sample (`pressed` at `now`); true exactly once per press.
    pub fn sample(&mut self, pressed: bool, now: Instant) -> bool {
        if pressed == self.stable {
            self.candidate = None;
            return false;
        }
        match self.candidate {
            Some((level, since)) if level == pressed => {
                if now.saturating_duration_since(since) >= self.settle {
                    self.stable = pressed;
                    self.candidate = None;
                    return pressed;
                }
                false
            }
            _ => {
                self.candidate = Some((pressed, now));
                false
            }
        }
    }
}

/// Why the buttons could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read button {}: {source}", .button + 1)]
pub struct ButtonError {
    /// The button's position, from 0.
    pub button: usize,
    /// The pin's error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Active-low buttons, known by their position in the list of pins.
pub struct PinButtons<P> {
    pins: Vec<P>,
    debouncers: Vec<Debouncer>,
}

impl<P: InputPin> PinButtons<P> {
    /// Buttons on `pins` (button 0 first), each debounced with `settle`.
    pub fn new(pins: Vec<P>, settle: Duration) -> Self {
        let debouncers = pins.iter().map(|_| Debouncer::new(settle)).collect();
        Self { pins, debouncers }
    }

    /// Releases the pins.
    pub fn release(self) -> Vec<P> {
        self.pins
    }
}

impl<P> Buttons for PinButtons<P>
where
    P: InputPin + Send + 'static,
    P::Error: std::error::Error + Send + Sync + 'static,
{
    type Error = ButtonError;

    fn poll(&mut self, now: Instant) -> Result<Option<usize>, ButtonError> {
        let mut pressed = None;
        for (button, (pin, debouncer)) in self
            .pins
            .iter_mut()
            .zip(self.debouncers.iter_mut())
            .enumerate()
        {
            let low = pin.is_low().map_err(|e| ButtonError {
                button,
                source: Box::new(e),
            })?;
            if debouncer.sample(low, now) && pressed.is_none() {
                pressed = Some(button);
            }
        }
        Ok(pressed)
    }
}

/// Samples `buttons` every `period` and sends each press (the button's position) to `presses`
/// until `shutdown`.
/// Read errors are logged (once per run of failures) and sampling goes on.
pub async fn watch<B: Buttons>(
    mut buttons: B,
    period: Duration,
    presses: mpsc::Sender<usize>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match buttons.poll(Instant::now()) {
            Ok(Some(button)) => {
                if presses.send(button).await.is_err() {
                    return;
                }
                failing = false;
            }
            Ok(None) => failing = false,
            Err(e) => {
                if !failing {
                    warn!(error = %e, "Buttons unreadable");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn bouncy_press_counts_once() {
        // Samples every 5 ms on the second of three buttons: released, a bouncy press, held, a
        // bouncy release, released. The other two buttons stay released.
        let ten: Vec<bool> = [
            vec![false, false],
            vec![true, false, true, false, true], // bounce, never 30 ms stable
            vec![true; 10],                       // held 50 ms
            vec![false, true, false],             // bouncy release
            vec![false; 10],
        ]
        .concat();
        let level = |pressed: bool| if pressed { State::Low } else { State::High };
        let idle: Vec<T> = ten.iter().map(|_| T::get(State::High)).collect();
        let active: Vec<T> = ten.iter().map(|p| T::get(level(*p))).collect();
        let mut mocks = vec![Mock::new(&idle), Mock::new(&active), Mock::new(&idle)];
        let mut buttons = PinButtons::new(mocks.clone(), DEFAULT_SETTLE);
        let start = Instant::now();
        let mut presses = Vec::new();
        for _ in &ten {
            tokio::time::advance(DEFAULT_SAMPLE).await;
            if let Some(p) = buttons.poll(Instant::now()).expect("poll") {
                presses.push((p, Instant::now() - start));
            }
        }
        // Low and stable from the 7th sample (35 ms); after 30 ms of it the press is reported,
        // at 65 ms, once.
        assert_eq!(presses, vec![(1, Duration::from_millis(65))]);
        for m in &mut mocks {
            m.done();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn short_glitch_is_not_a_press() {
        let mut d = Debouncer::new(Duration::from_millis(30));
        let t = Instant::now();
        assert!(!d.sample(true, t));
        assert!(!d.sample(true, t + Duration::from_millis(29)));
        assert!(!d.sample(false, t + Duration::from_millis(30)));
        assert!(!d.sample(true, t + Duration::from_millis(100)));
        assert!(d.sample(true, t + Duration::from_millis(130)));
        // Held: no repeat.
        assert!(!d.sample(true, t + Duration::from_millis(500)));
    }

    /// An input pin driven by the test.
    #[derive(Clone)]
    struct Injected(Arc<AtomicBool>);

    impl embedded_hal::digital::ErrorType for Injected {
        type Error = std::convert::Infallible;
    }

    impl InputPin for Injected {
        fn is_high(&mut self) -> Result<bool, Self::Error> {
            Ok(!self.0.load(Ordering::SeqCst))
        }
        fn is_low(&mut self) -> Result<bool, Self::Error> {
            Ok(self.0.load(Ordering::SeqCst))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_forwards_one_press_per_push() {
        // Five buttons: a terminal has as many as its products.
        let pins: Vec<Injected> = (0..5).map(|_| Injected(Arc::default())).collect();
        let fifth = pins[4].0.clone();
        let (tx, mut rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch(
            PinButtons::new(pins, DEFAULT_SETTLE),
            DEFAULT_SAMPLE,
            tx,
            shutdown.clone(),
        ));
        for _ in 0..2 {
            fifth.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
            fifth.store(false, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        shutdown.cancel();
        task.await.expect("watcher");
        let mut got = Vec::new();
        while let Ok(p) = rx.try_recv() {
            got.push(p);
        }
        assert_eq!(got, vec![4, 4]);
    }
}
