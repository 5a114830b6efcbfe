//! Hardware behind small traits, each with its own `Error`.
//!
//! - [`CardReader`], [`Buttons`], [`Lights`], [`Speaker`], [`Display`]: what the device logic
//!   needs.
//! - [`mfrc522`]: a card reader on any embedded-hal 1.0 SPI device (the MFRC522 chip).
//! - [`buttons`]: debounced push buttons on any embedded-hal input pins.
//! - [`lights`]: a traffic light on any embedded-hal output pins, and the player that turns a
//!   [`LightPattern`](crate::prompt::LightPattern) into timed lamp changes.
//! - [`tm1637`]: a four-digit seven-segment display on any two embedded-hal output pins.
//! - [`display`]: the player that shows a [`DisplayText`] for a while, then blanks the display.
//! - [`speaker`]: prompts printed as text, or (feature `audio`) played through ALSA.
//! - [`console`]: simulated hardware for a laptop: type card numbers and 1–9, see the lights as
//!   coloured blocks and the display as a bracketed line; also scriptable from stdin.
//! - `rpi` (feature `rpi`): the Raspberry Pi constructors, the only code that touches `rppal`.
//!
//! The drivers are generic over embedded-hal traits so they build and are tested against mock
//! buses in the default build; only the constructors that open real pins sit behind `rpi`.

pub mod buttons;
pub mod console;
pub mod display;
pub mod lights;
pub mod mfrc522;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod speaker;
pub mod tm1637;

use tapgate_protocol::CardId;
use tokio::time::Instant;

use crate::digits::DisplayText;
use crate::prompt::{Lamps, Sound};

/// A contactless card reader, polled.
pub trait CardReader: Send + 'static {
    /// Why the reader failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The card in the field right now, if any. May block briefly (bus traffic); the runtime
    /// calls it from a dedicated thread.
    fn poll(&mut self) -> Result<Option<CardId>, Self::Error>;
}

/// A terminal's product buttons, sampled. A button is known by its position (from 0); which
/// product it sells is the terminal's setting, not the hardware's.
pub trait Buttons: Send + 'static {
    /// Why the buttons could not be read.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Samples the buttons at `now`: the position of a press that has just become certain, if
    /// any. Debouncing is the implementation's job.
    fn poll(&mut self, now: Instant) -> Result<Option<usize>, Self::Error>;
}

/// A traffic light.
pub trait Lights: Send + 'static {
    /// Why the lamps could not be switched.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Switches the lamps to `lamps`.
    fn set(&mut self, lamps: Lamps) -> Result<(), Self::Error>;
}

/// A speaker (or, without audio, a text line).
pub trait Speaker: Send + 'static {
    /// Why the sound could not be played.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Starts playing `sound` after whatever is already playing; returns at once.
    fn play(&mut self, sound: Sound) -> Result<(), Self::Error>;
}

/// A four-digit display (on a console, a printed line).
pub trait Display: Send + 'static {
    /// Why the display could not be written.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Shows `text` until the next call.
    fn show(&mut self, text: DisplayText) -> Result<(), Self::Error>;
}

/// A display that may not be fitted: `None` shows nothing.
impl<D: Display> Display for Option<D> {
    type Error = D::Error;

    fn show(&mut self, text: DisplayText) -> Result<(), D::Error> {
        match self {
            Some(d) => d.show(text),
            None => Ok(()),
        }
    }
}
