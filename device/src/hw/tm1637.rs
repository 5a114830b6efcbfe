//! A TM1637 four-digit seven-segment display on two embedded-hal 1.0 output pins.
//!
//! The TM1637 speaks a two-wire protocol much like I²C without addresses, bit-banged here on a
//! clock (CLK) and a data (DIO) pin. A frame opens with a start condition (DIO falls while CLK
//! is high) and closes with a stop (DIO rises while CLK is high); in between, each byte goes out
//! least significant bit first, a bit being DIO set while CLK is low and taken by the chip as CLK
//! rises, followed by a ninth clock in which the chip acknowledges by pulling DIO low. Showing
//! four cells takes three frames:
//!
//! 1. `0x40`: data command, write with auto-incrementing address;
//! 2. `0xC0` (address of the first cell), then the four segment bytes;
//! 3. `0x88 | brightness` (0–7): display control, display on.
//!
//! DIO is an output only, so the acknowledgement is not read: during the ninth clock DIO is
//! driven low, the level the chip pulls it to, so the two never drive against each other for
//! longer than the one pin write between CLK falling and DIO going low. A missing display is
//! therefore not detected. What the cells show comes from [`DisplayText`].

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

use super::Display;
use crate::digits::{DisplayText, CELLS};

/// Data command: write to the display registers, address auto-increment.
pub const DATA_AUTO_INCREMENT: u8 = 0x40;
/// Address command for the first cell.
pub const ADDRESS_FIRST: u8 = 0xC0;
/// Display control: display on (OR the brightness, 0–7).
pub const DISPLAY_ON: u8 = 0x88;
/// Display control: display off.
pub const DISPLAY_OFF: u8 = 0x80;
/// Brightest setting.
pub const MAX_BRIGHTNESS: u8 = 7;
/// Half a clock period, µs: slow enough for the modules' pull-ups and filter capacitors.
pub const HALF_BIT_US: u32 = 50;

/// Why the display could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot drive the display's {pin} pin: {source}")]
pub struct DisplayError {
    /// `CLK` or `DIO`.
    pub pin: &'static str,
    /// The pin's error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A TM1637 on a clock pin, a data pin and a delay.
pub struct Tm1637<CLK, DIO, D> {
    clk: CLK,
    dio: DIO,
    delay: D,
    brightness: u8,
}

impl<CLK, DIO, D> Tm1637<CLK, DIO, D>
where
    CLK: OutputPin,
    CLK::Error: std::error::Error + Send + Sync + 'static,
    DIO: OutputPin,
    DIO::Error: std::error::Error + Send + Sync + 'static,
    D: DelayNs,
{
    /// A display on `clk` and `dio` at brightness 4 of 7; nothing is written until the first
    /// [`Display::show`].
    pub fn new(clk: CLK, dio: DIO, delay: D) -> Self {
        Self {
            clk,
            dio,
            delay,
            brightness: 4,
        }
    }

    /// The same display at `level` (0 dimmest, 7 brightest; higher is taken as 7).
    pub fn with_brightness(mut self, level: u8) -> Self {
        self.brightness = level.min(MAX_BRIGHTNESS);
        self
    }

    /// Writes four segment bytes (`.gfedcba`, left to right) and switches the display on.
    pub fn write_segments(&mut self, segments: [u8; CELLS]) -> Result<(), DisplayError> {
        self.frame(&[DATA_AUTO_INCREMENT])?;
        let mut data = [ADDRESS_FIRST; CELLS + 1];
        data[1..].copy_from_slice(&segments);
        self.frame(&data)?;
        self.frame(&[DISPLAY_ON | self.brightness])
    }

    /// Switches the display off (the segment registers keep their contents).
    pub fn off(&mut self) -> Result<(), DisplayError> {
        self.frame(&[DISPLAY_OFF])
    }

    /// Gives the pins and the delay back.
    pub fn release(self) -> (CLK, DIO, D) {
        (self.clk, self.dio, self.delay)
    }

    fn frame(&mut self, bytes: &[u8]) -> Result<(), DisplayError> {
        self.start()?;
        for &b in bytes {
            self.byte(b)?;
        }
        self.stop()
    }

    /// DIO falls while CLK is high.
    fn start(&mut self) -> Result<(), DisplayError> {
        self.dio(true)?;
        self.clk(true)?;
        self.wait();
        self.dio(false)?;
        self.wait();
        Ok(())
    }

    /// Eight bits, least significant first, then the acknowledge clock.
    fn byte(&mut self, b: u8) -> Result<(), DisplayError> {
        for bit in 0..8 {
            self.clk(false)?;
            self.dio(b >> bit & 1 == 1)?;
            self.wait();
            self.clk(true)?;
            self.wait();
        }
        self.clk(false)?;
        self.dio(false)?;
        self.wait();
        self.clk(true)?;
        self.wait();
        Ok(())
    }

    /// DIO rises while CLK is high; both lines are left high (idle).
    fn stop(&mut self) -> Result<(), DisplayError> {
        self.clk(false)?;
        self.dio(false)?;
        self.wait();
        self.clk(true)?;
        self.wait();
        self.dio(true)?;
        self.wait();
        Ok(())
    }

    fn wait(&mut self) {
        self.delay.delay_us(HALF_BIT_US);
    }

    fn clk(&mut self, high: bool) -> Result<(), DisplayError> {
        let r = if high {
            self.clk.set_high()
        } else {
            self.clk.set_low()
        };
        r.map_err(|e| DisplayError {
            pin: "CLK",
            source: Box::new(e),
        })
    }

    fn dio(&mut self, high: bool) -> Result<(), DisplayError> {
        let r = if high {
            self.dio.set_high()
        } else {
            self.dio.set_low()
        };
        r.map_err(|e| DisplayError {
            pin: "DIO",
            source: Box::new(e),
        })
    }
}

impl<CLK, DIO, D> Display for Tm1637<CLK, DIO, D>
where
    CLK: OutputPin + Send + 'static,
    CLK::Error: std::error::Error + Send + Sync + 'static,
    DIO: OutputPin + Send + 'static,
    DIO::Error: std::error::Error + Send + Sync + 'static,
    D: DelayNs + Send + 'static,
{
    type Error = DisplayError;

    fn show(&mut self, text: DisplayText) -> Result<(), DisplayError> {
        self.write_segments(text.segments())
    }
}

#[cfg(test)]
mod tests {
    //! The two lines on a mock bus: every pin write and delay is recorded in order, and the test
    //! decodes the waveform back into frames of bytes as the chip would read it.
    use super::*;
    use crate::digits::POINT;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use tapgate_protocol::Currency;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Event {
        Clk(bool),
        Dio(bool),
        Wait(u32),
    }

    type Log = Arc<Mutex<Vec<Event>>>;

    struct Pin(Log, fn(bool) -> Event);

    impl embedded_hal::digital::ErrorType for Pin {
        type Error = Infallible;
    }

    impl OutputPin for Pin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.lock().expect("log").push((self.1)(false));
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.lock().expect("log").push((self.1)(true));
            Ok(())
        }
    }

    struct Delay(Log);

    impl DelayNs for Delay {
        fn delay_ns(&mut self, ns: u32) {
            self.0.lock().expect("log").push(Event::Wait(ns));
        }
    }

    fn display() -> (Tm1637<Pin, Pin, Delay>, Log) {
        let log = Log::default();
        let d = Tm1637::new(
            Pin(log.clone(), Event::Clk),
            Pin(log.clone(), Event::Dio),
            Delay(log.clone()),
        );
        (d, log)
    }

    /// Reads the waveform as the chip does: frames between start and stop, a bit sampled as CLK
    /// rises and taken as it falls (a start or stop while CLK is high is no bit), nine clocks a
    /// byte, the ninth the acknowledge, where DIO must be low. Checks that the lines hold for a
    /// half bit before every change of CLK and every start or stop, that DIO changes while CLK
    /// is high only to start or stop a frame, and that the lines end idle (high).
    fn decode(log: &[Event]) -> Vec<Vec<u8>> {
        let (mut clk, mut dio) = (true, true);
        let mut waited = true;
        let mut frames = Vec::new();
        let mut frame: Option<(Vec<u8>, Vec<bool>)> = None;
        let mut sampled: Option<bool> = None;
        for &e in log {
            match e {
                Event::Wait(ns) => {
                    assert!(ns >= HALF_BIT_US * 1000, "short wait {ns} ns");
                    waited = true;
                }
                Event::Clk(level) if level != clk => {
                    assert!(waited, "CLK changed without a half bit's wait");
                    waited = false;
                    clk = level;
                    if level {
                        sampled = Some(dio);
                        continue;
                    }
                    let Some(bit) = sampled.take() else { continue };
                    let (bytes, bits) = frame.as_mut().expect("clock outside a frame");
                    bits.push(bit);
                    if bits.len() == 9 {
                        assert!(!bits[8], "DIO high during the acknowledge clock");
                        let byte = bits[..8].iter().rev().fold(0, |b, &x| b << 1 | u8::from(x));
                        bytes.push(byte);
                        bits.clear();
                    }
                }
                Event::Dio(level) if level != dio => {
                    dio = level;
                    if !clk {
                        continue;
                    }
                    assert!(waited, "start or stop without a half bit's wait");
                    waited = false;
                    sampled = None;
                    if level {
                        let (bytes, bits) = frame.take().expect("stop outside a frame");
                        assert!(bits.is_empty(), "stop in the middle of a byte");
                        frames.push(bytes);
                    } else {
                        assert!(frame.is_none(), "start inside a frame");
                        frame = Some((Vec::new(), Vec::new()));
                    }
                }
                Event::Clk(_) | Event::Dio(_) => {}
            }
        }
        assert!(frame.is_none(), "frame left open");
        assert!(clk && dio, "lines not left idle");
        frames
    }

    fn shows(text: DisplayText, brightness: u8) -> Vec<Vec<u8>> {
        let (d, log) = display();
        let mut d = d.with_brightness(brightness);
        d.show(text).expect("show");
        let log = log.lock().expect("log").clone();
        decode(&log)
    }

    #[test]
    fn a_price_on_the_wire() {
        assert_eq!(
            shows(DisplayText::price(250, Currency::EUR), 4),
            vec![
                vec![0x40],
                vec![0xC0, 0x00, 0x5B | POINT, 0x6D, 0x3F],
                vec![0x8C]
            ]
        );
    }

    #[test]
    fn trips_and_minutes_on_the_wire() {
        assert_eq!(
            shows(DisplayText::count(10), 7),
            vec![vec![0x40], vec![0xC0, 0, 0, 0x06, 0x3F], vec![0x8F]]
        );
        assert_eq!(
            shows(DisplayText::time_left(45 * 60_000), 0),
            vec![
                vec![0x40],
                vec![0xC0, 0, 0x3F | POINT, 0x66, 0x6D],
                vec![0x88]
            ]
        );
        assert_eq!(
            shows(DisplayText::BLANK, 200),
            vec![vec![0x40], vec![0xC0, 0, 0, 0, 0], vec![0x8F]],
            "brightness above 7 is 7"
        );
    }

    #[test]
    fn every_byte_value_survives_the_wire() {
        let (mut d, log) = display();
        for b in 0..=255u8 {
            d.write_segments([b, !b, b.rotate_left(3), 0xA5])
                .expect("write");
        }
        d.off().expect("off");
        let log = log.lock().expect("log").clone();
        let frames = decode(&log);
        assert_eq!(frames.len(), 256 * 3 + 1);
        for (b, f) in (0..=255u8).zip(frames.chunks(3)) {
            assert_eq!(f[1], vec![0xC0, b, !b, b.rotate_left(3), 0xA5]);
        }
        assert_eq!(frames.last(), Some(&vec![DISPLAY_OFF]));
    }

    #[test]
    fn a_failing_pin_is_named() {
        use embedded_hal_mock::eh1::delay::NoopDelay;
        use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};
        use embedded_hal_mock::eh1::MockError;
        let mut clk = Mock::new(&[T::set(State::High)]);
        let mut dio = Mock::new(&[
            T::set(State::High),
            T::set(State::Low).with_error(MockError::Io(std::io::ErrorKind::BrokenPipe)),
        ]);
        let mut d = Tm1637::new(clk.clone(), dio.clone(), NoopDelay::new());
        let e = d.show(DisplayText::count(1)).expect_err("DIO fails");
        assert_eq!(e.pin, "DIO");
        clk.done();
        dio.done();
    }
}
