//! The gate's traffic light: lamps on embedded-hal output pins, and the pattern player.
//!
//! [`PinLights`] drives three active-high LEDs and writes only the pins that change.
//! [`play`] turns each [`LightPattern`] into timed lamp changes: idle is red steady, checking is
//! red + amber, granted is red off and green on for its time, denied is red flashing its count
//! ([`FLASH`] off, [`FLASH`] on), and a new pattern cuts the running one short. On shutdown every
//! lamp is switched off. The player runs on tokio time, so tests use `tokio::time::pause()`.

use std::time::Duration;

use embedded_hal::digital::OutputPin;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Lights;
use crate::prompt::{Lamps, LightPattern};

/// Half a flash: how long red is off, then on, in a denial.
pub const FLASH: Duration = Duration::from_millis(250);

/// Why a lamp could not be switched.
#[derive(Debug, thiserror::Error)]
#[error("cannot switch the {lamp} lamp: {source}")]
pub struct LampError {
    pub lamp: &'static str,
    /// The pin's error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Red, amber and green LEDs on output pins (high = on).
pub struct PinLights<P> {
    red: P,
    amber: P,
    green: P,
    shown: Option<Lamps>,
}

impl<P: OutputPin> PinLights<P> {
    /// Lamps on the given pins; nothing is written until the first [`Lights::set`].
    pub fn new(red: P, amber: P, green: P) -> Self {
        Self {
            red,
            amber,
            green,
            shown: None,
        }
    }
}

fn drive<P>(pin: &mut P, on: bool, lamp: &'static str) -> Result<(), LampError>
where
    P: OutputPin,
    P::Error: std::error::Error + Send + Sync + 'static,
{
    let r = if on { pin.set_high() } else { pin.set_low() };
    r.map_err(|e| LampError {
        lamp,
        source: Box::new(e),
    })
}

impl<P> Lights for PinLights<P>
where
    P: OutputPin + Send + 'static,
    P::Error: std::error::Error + Send + Sync + 'static,
{
    type Error = LampError;

    fn set(&mut self, lamps: Lamps) -> Result<(), LampError> {
        let old = self.shown;
        let changed = |get: fn(&Lamps) -> bool| old.is_none_or(|o| get(&o) != get(&lamps));
        if changed(|l| l.red) {
            drive(&mut self.red, lamps.red, "red")?;
        }
        if changed(|l| l.amber) {
            drive(&mut self.amber, lamps.amber, "amber")?;
        }
        if changed(|l| l.green) {
            drive(&mut self.green, lamps.green, "green")?;
        }
        self.shown = Some(lamps);
        Ok(())
    }
}

/// The timed steps of a pattern; the last step holds until the next pattern.
pub fn steps(pattern: LightPattern) -> Vec<(Lamps, Option<Duration>)> {
    match pattern {
        LightPattern::Idle => vec![(Lamps::RED, None)],
        LightPattern::Checking => vec![(Lamps::RED_AMBER, None)],
        LightPattern::Granted(green) => vec![(Lamps::GREEN, Some(green)), (Lamps::RED, None)],
        LightPattern::Denied(flashes) => {
            let mut s = Vec::new();
            for _ in 0..flashes {
                s.push((Lamps::OFF, Some(FLASH)));
                s.push((Lamps::RED, Some(FLASH)));
            }
            s.push((Lamps::RED, None));
            s
        }
        LightPattern::Off => vec![(Lamps::OFF, None)],
    }
}

/// Plays patterns from `patterns` on `lights` until `shutdown` (or the sender is gone), then
/// switches every lamp off. Returns the lights. Starts idle (red); a lamp state equal to the one
/// shown is not written again.
pub async fn play<L: Lights>(
    mut lights: L,
    mut patterns: mpsc::Receiver<LightPattern>,
    shutdown: CancellationToken,
) -> L {
    let mut queue = steps(LightPattern::Idle).into_iter();
    let mut hold: Option<Duration> = None;
    let mut shown: Option<Lamps> = None;
    let mut set = |lights: &mut L, lamps| {
        if shown == Some(lamps) {
            return;
        }
        shown = Some(lamps);
        if let Err(e) = lights.set(lamps) {
            warn!(error = %e, "Lamp failure");
        }
    };
    loop {
        if let Some((lamps, d)) = queue.next() {
            set(&mut lights, lamps);
            hold = d;
            if d.is_none() {
                queue = Vec::new().into_iter();
            }
        }
        let next = match hold {
            Some(d) => tokio::select! {
                _ = shutdown.cancelled() => None,
                _ = tokio::time::sleep(d) => continue,
                p = patterns.recv() => p,
            },
            None => tokio::select! {
                _ = shutdown.cancelled() => None,
                p = patterns.recv() => p,
            },
        };
        match next {
            Some(p) => queue = steps(p).into_iter(),
            None => break,
        }
    }
    set(&mut lights, Lamps::OFF);
    lights
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    /// Lamps on mock pins, with the time of every change recorded.
    struct Timed {
        inner: PinLights<Mock>,
        start: Instant,
        log: Arc<Mutex<Vec<(Duration, Lamps)>>>,
    }

    impl Lights for Timed {
        type Error = LampError;
        fn set(&mut self, lamps: Lamps) -> Result<(), LampError> {
            self.log
                .lock()
                .expect("log")
                .push((self.start.elapsed(), lamps));
            self.inner.set(lamps)
        }
    }

    fn pins(states: &[State]) -> Mock {
        let t: Vec<T> = states.iter().map(|s| T::set(*s)).collect();
        Mock::new(&t)
    }

    #[tokio::test(start_paused = true)]
    async fn granted_then_denied_on_the_pins() {
        use State::{High as On, Low as Off};
        // Idle red; granted: red off, green on for 5 s, red back; denied: red flashes 4 times;
        // shutdown: red off.
        let mut red = pins(&[On, Off, On, Off, On, Off, On, Off, On, Off, On, Off]);
        let mut amber = pins(&[Off]);
        let mut green = pins(&[Off, On, Off]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let lights = Timed {
            inner: PinLights::new(red.clone(), amber.clone(), green.clone()),
            start: Instant::now(),
            log: log.clone(),
        };
        let (tx, rx) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let player = tokio::spawn(play(lights, rx, shutdown.clone()));
        tx.send(LightPattern::Granted(Duration::from_secs(5)))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(6)).await;
        tx.send(LightPattern::Denied(4)).await.expect("send");
        tokio::time::sleep(Duration::from_secs(3)).await;
        shutdown.cancel();
        player.await.expect("player");
        red.done();
        amber.done();
        green.done();

        let log = log.lock().expect("log").clone();
        let at = |ms: u64| Duration::from_millis(ms);
        let mut expected = vec![
            (at(0), Lamps::RED),
            (at(0), Lamps::GREEN),
            (at(5000), Lamps::RED),
        ];
        for i in 0..4 {
            expected.push((at(6000 + i * 500), Lamps::OFF));
            expected.push((at(6250 + i * 500), Lamps::RED));
        }
        expected.push((at(9000), Lamps::OFF));
        assert_eq!(log, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_pattern_cuts_the_old_one_short() {
        let log = Arc::new(Mutex::new(Vec::new()));
        struct Rec(Arc<Mutex<Vec<Lamps>>>);
        impl Lights for Rec {
            type Error = LampError;
            fn set(&mut self, lamps: Lamps) -> Result<(), LampError> {
                self.0.lock().expect("log").push(lamps);
                Ok(())
            }
        }
        let (tx, rx) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let player = tokio::spawn(play(Rec(log.clone()), rx, shutdown.clone()));
        tx.send(LightPattern::Granted(Duration::from_secs(5)))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(LightPattern::Checking).await.expect("send");
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(tx);
        player.await.expect("player");
        assert_eq!(
            *log.lock().expect("log"),
            vec![Lamps::RED, Lamps::GREEN, Lamps::RED_AMBER, Lamps::OFF]
        );
    }
}
