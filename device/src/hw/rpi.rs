//! Raspberry Pi hardware (feature `rpi`): the only code that uses `rppal`.
//!
//! - Card reader: MFRC522 on SPI0, chip select CE0, reset (RST) on a GPIO held high.
//! - Terminal buttons: one GPIO input per button, with pull-ups (buttons switch to ground).
//! - Gate lights: three GPIO outputs (LED + resistor to ground).
//! - Either kind: a TM1637 four-digit display on two GPIO outputs (CLK, DIO), when both pins are
//!   set.
//!
//! Pin numbers are BCM and come from [`Pins`]. The drivers themselves are the generic ones in
//! [`super::mfrc522`], [`super::buttons`], [`super::lights`] and [`super::tm1637`].

use rppal::gpio::{Gpio, InputPin, OutputPin};
use rppal::hal::Delay;
use rppal::spi::{Bus, Mode, SimpleHalSpiDevice, SlaveSelect, Spi};

use super::buttons::PinButtons;
use super::lights::PinLights;
use super::mfrc522::{Mfrc522Reader, ReaderError};
use super::tm1637::Tm1637;
use crate::config::{ConfigError, Pins};

/// Why the Pi hardware could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RpiError {
    /// GPIO unavailable or a pin busy.
    #[error("GPIO: {0}")]
    Gpio(#[from] rppal::gpio::Error),
    /// SPI unavailable (is it enabled in raspi-config?).
    #[error("SPI: {0}")]
    Spi(#[from] rppal::spi::Error),
    /// The card reader did not initialise.
    #[error(transparent)]
    Reader(#[from] ReaderError),
    /// The pins cannot work together.
    #[error(transparent)]
    Pins(#[from] ConfigError),
}

/// The MFRC522 on SPI0 CE0, with its reset pin. Keep the returned pin alive: dropping it
/// releases the reset line.
pub fn card_reader(
    pins: &Pins,
) -> Result<(Mfrc522Reader<SimpleHalSpiDevice>, OutputPin), RpiError> {
    let gpio = Gpio::new()?;
    // RST high takes the chip out of hard power-down.
    let reset = gpio.get(pins.reset)?.into_output_high();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let spi = Spi::new(Bus::Spi0, SlaveSelect::Ss0, pins.spi_hz, Mode::Mode0)?;
    let mut reader = Mfrc522Reader::new(SimpleHalSpiDevice::new(spi))?;
    let version = reader.check_version()?;
    tracing::info!(version = format!("{version:#04x}"), "MFRC522 ready");
    Ok((reader, reset))
}

/// The product buttons, in the order of `pins.buttons`, with pull-ups.
pub fn buttons(pins: &Pins, settle: std::time::Duration) -> Result<PinButtons<InputPin>, RpiError> {
    let gpio = Gpio::new()?;
    let inputs = pins
        .buttons
        .iter()
        .map(|&n| Ok(gpio.get(n)?.into_input_pullup()))
        .collect::<Result<Vec<InputPin>, RpiError>>()?;
    Ok(PinButtons::new(inputs, settle))
}

/// The traffic light (red, amber, green), all off to start.
pub fn lights(pins: &Pins) -> Result<PinLights<OutputPin>, RpiError> {
    let gpio = Gpio::new()?;
    let pin = |n: u8| -> Result<OutputPin, RpiError> { Ok(gpio.get(n)?.into_output_low()) };
    Ok(PinLights::new(
        pin(pins.red)?,
        pin(pins.amber)?,
        pin(pins.green)?,
    ))
}

/// The TM1637 display on `pins.display_clk` and `pins.display_dio`, both lines idle (high); `None`
/// when its pins are not set.
pub fn display(pins: &Pins) -> Result<Option<Tm1637<OutputPin, OutputPin, Delay>>, RpiError> {
    let Some((clk, dio)) = pins.display()? else {
        return Ok(None);
    };
    let gpio = Gpio::new()?;
    let clk = gpio.get(clk)?.into_output_high();
    let dio = gpio.get(dio)?.into_output_high();
    Ok(Some(Tm1637::new(clk, dio, Delay::new())))
}
