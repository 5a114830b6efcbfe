//! The MFRC522 card reader on any embedded-hal 1.0 SPI device.
//!
//! Each poll sends REQA (and, if nothing answers, WUPA, which also wakes a card that is still in
//! the field after being halted), runs anticollision/select for the UID, then halts the card. A
//! card resting on the reader therefore answers every poll; turning those sightings into one tap
//! is the job of [`crate::logic::TapDebouncer`]. Card-level failures (timeout, collision, CRC)
//! mean "no card this time"; only bus failures are errors.

use embedded_hal::spi::SpiDevice;
use mfrc522::comm::blocking::spi::{DummyDelay, SpiInterface};
use mfrc522::{Initialized, Mfrc522};
use tapgate_protocol::CardId;
use tracing::debug;

use super::CardReader;

/// Why the reader failed.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The SPI bus failed.
    #[error("card reader bus error: {0}")]
    Bus(String),
    /// The chip answered with an unexpected version (not an MFRC522, or not wired).
    #[error("card reader reports version {0:#04x}; expected an MFRC522 (0x91 or 0x92)")]
    Version(u8),
    /// A pin (reset) could not be driven.
    #[error("card reader pin error: {0}")]
    Pin(String),
}

fn bus<E: std::fmt::Debug>(e: mfrc522::Error<E>) -> ReaderError {
    ReaderError::Bus(format!("{e:?}"))
}

/// An initialised MFRC522 on an SPI device.
pub struct Mfrc522Reader<SPI: SpiDevice> {
    chip: Mfrc522<SpiInterface<SPI, DummyDelay>, Initialized>,
}

impl<SPI: SpiDevice> Mfrc522Reader<SPI> {
    /// Resets and initialises the chip (antenna on). The chip must be out of hard power-down
    /// (its reset pin high) before this is called.
    pub fn new(spi: SPI) -> Result<Self, ReaderError> {
        let chip = Mfrc522::new(SpiInterface::new(spi)).init().map_err(bus)?;
        Ok(Self { chip })
    }

    /// The chip's version register (0x91 or 0x92 for a genuine MFRC522).
    pub fn version(&mut self) -> Result<u8, ReaderError> {
        self.chip.version().map_err(bus)
    }

    /// Fails unless the chip reports an MFRC522 version: catches a missing or miswired reader at
    /// start-up.
    pub fn check_version(&mut self) -> Result<u8, ReaderError> {
        match self.version()? {
            v @ (0x91 | 0x92 | 0x88 | 0x12) => Ok(v),
            v => Err(ReaderError::Version(v)),
        }
    }

    /// One read: the UID of the card in the field, if any.
    pub fn read_uid(&mut self) -> Result<Option<Vec<u8>>, ReaderError> {
        let atqa = match self.chip.reqa() {
            Ok(a) => a,
            Err(mfrc522::Error::Comm(e)) => return Err(bus(mfrc522::Error::Comm(e))),
            Err(_) => match self.chip.wupa() {
                Ok(a) => a,
                Err(mfrc522::Error::Comm(e)) => return Err(bus(mfrc522::Error::Comm(e))),
                Err(_) => return Ok(None),
            },
        };
        let uid = match self.chip.select(&atqa) {
            Ok(uid) => uid,
            Err(mfrc522::Error::Comm(e)) => return Err(bus(mfrc522::Error::Comm(e))),
            Err(e) => {
                debug!(error = ?e, "Card answered but could not be selected");
                return Ok(None);
            }
        };
        if let Err(e) = self.chip.hlta() {
            debug!(error = ?e, "Card did not halt");
        }
        Ok(Some(uid.as_bytes().to_vec()))
    }
}

/// A UID as a card id: upper-case hex, e.g. `04A1B2C3`.
pub fn uid_to_card(uid: &[u8]) -> Option<CardId> {
    let hex: String = uid.iter().map(|b| format!("{b:02X}")).collect();
    CardId::new(hex).ok()
}

impl<SPI> CardReader for Mfrc522Reader<SPI>
where
    SPI: SpiDevice + Send + 'static,
{
    type Error = ReaderError;

    fn poll(&mut self) -> Result<Option<CardId>, ReaderError> {
        Ok(self.read_uid()?.as_deref().and_then(uid_to_card))
    }
}

#[cfg(test)]
mod tests {
    //! Register traffic of an MFRC522 on a mock SPI bus, byte for byte: the address byte is
    //! `reg << 1`, with bit 7 set for a read.
    use super::*;
    use embedded_hal_mock::eh1::spi::{Mock, Transaction as T};

    const COMMAND: u8 = 0x01;
    const COM_IRQ: u8 = 0x04;
    const DIV_IRQ: u8 = 0x05;
    const ERROR: u8 = 0x06;
    const FIFO_DATA: u8 = 0x09;
    const FIFO_LEVEL: u8 = 0x0A;
    const CONTROL: u8 = 0x0C;
    const BIT_FRAMING: u8 = 0x0D;
    const COLL: u8 = 0x0E;
    const MODE: u8 = 0x11;
    const TX_MODE: u8 = 0x12;
    const RX_MODE: u8 = 0x13;
    const TX_CONTROL: u8 = 0x14;
    const TX_ASK: u8 = 0x15;
    const CRC_HIGH: u8 = 0x21;
    const CRC_LOW: u8 = 0x22;
    const MOD_WIDTH: u8 = 0x24;
    const T_MODE: u8 = 0x2A;
    const T_PRESCALER: u8 = 0x2B;
    const T_RELOAD_HIGH: u8 = 0x2C;
    const T_RELOAD_LOW: u8 = 0x2D;
    const VERSION: u8 = 0x37;

    const IDLE: u8 = 0x00;
    const CALC_CRC: u8 = 0x03;
    const TRANSCEIVE: u8 = 0x0C;
    const SOFT_RESET: u8 = 0x0F;
    const RX_IRQ: u8 = 0x20;
    const TIMER_IRQ: u8 = 0x01;

    /// The expected bus traffic, built step by step.
    #[derive(Default)]
    struct Bus(Vec<T<u8>>);

    impl Bus {
        fn write(&mut self, reg: u8, val: u8) {
            self.0.extend([
                T::transaction_start(),
                T::write_vec(vec![reg << 1, val]),
                T::transaction_end(),
            ]);
        }

        fn read(&mut self, reg: u8, val: u8) {
            self.0.extend([
                T::transaction_start(),
                T::transfer_in_place(vec![(reg << 1) | 0x80, 0], vec![0, val]),
                T::transaction_end(),
            ]);
        }

        fn write_fifo(&mut self, bytes: &[u8]) {
            self.0.extend([
                T::transaction_start(),
                T::write_vec(vec![FIFO_DATA << 1]),
                T::write_vec(bytes.to_vec()),
                T::transaction_end(),
            ]);
        }

        fn read_fifo(&mut self, bytes: &[u8]) {
            let addr = (FIFO_DATA << 1) | 0x80;
            let mut sent = vec![addr; bytes.len()];
            if let Some(last) = sent.last_mut() {
                *last = 0;
            }
            self.0.extend([
                T::transaction_start(),
                T::write(addr),
                T::transfer_in_place(sent, bytes.to_vec()),
                T::transaction_end(),
            ]);
        }

        fn init(&mut self) {
            self.write(COMMAND, SOFT_RESET);
            self.read(COMMAND, 0x00); // power-down bit clear: reset done
            self.write(TX_MODE, 0x00);
            self.write(RX_MODE, 0x00);
            self.write(MOD_WIDTH, 0x26);
            self.write(T_MODE, 0x80);
            self.write(T_PRESCALER, 0xA9);
            self.write(T_RELOAD_HIGH, 0x03);
            self.write(T_RELOAD_LOW, 0xE8);
            self.write(TX_ASK, 0x40);
            self.write(MODE, 0x3D);
            self.read(TX_CONTROL, 0x80);
            self.write(TX_CONTROL, 0x83); // antenna on
        }

        /// One transceive: `tx` out with `framing` in BitFramingReg; the card answers `rx`
        /// (`None`: it stays silent and the chip's timer fires).
        fn transceive(&mut self, tx: &[u8], framing: u8, rx: Option<&[u8]>) {
            self.write(COMMAND, IDLE);
            self.write(COM_IRQ, 0x7F);
            self.write(FIFO_LEVEL, 0x80);
            self.write_fifo(tx);
            self.write(COMMAND, TRANSCEIVE);
            self.write(BIT_FRAMING, framing);
            match rx {
                None => self.read(COM_IRQ, TIMER_IRQ),
                Some(rx) => {
                    self.read(COM_IRQ, 0x00); // still busy
                    self.read(COM_IRQ, RX_IRQ);
                    self.read(ERROR, 0x00);
                    self.read(FIFO_LEVEL, rx.len() as u8);
                    self.read_fifo(rx);
                    self.read(CONTROL, 0x00); // all bits of the last byte valid
                }
            }
        }

        fn crc(&mut self, data: &[u8], crc: [u8; 2]) {
            self.write(COMMAND, IDLE);
            self.write(DIV_IRQ, 0x04);
            self.write(FIFO_LEVEL, 0x80);
            self.write_fifo(data);
            self.write(COMMAND, CALC_CRC);
            self.read(DIV_IRQ, 0x04);
            self.write(COMMAND, IDLE);
            self.read(CRC_LOW, crc[0]);
            self.read(CRC_HIGH, crc[1]);
        }

        /// REQA answered with ATQA 0x0004, anticollision returns the 4-byte `uid` (+ BCC),
        /// select answers SAK 0x08 (MIFARE Classic 1K), then HLTA.
        fn read_card(&mut self, uid: [u8; 4]) {
            self.transceive(&[0x26], 0x87, Some(&[0x04, 0x00])); // REQA, 7-bit frame
            self.read(COLL, 0x80);
            self.write(COLL, 0x00); // clear ValuesAfterColl
            let bcc = uid.iter().fold(0, |a, b| a ^ b);
            let mut answer = uid.to_vec();
            answer.push(bcc);
            self.transceive(&[0x93, 0x20], 0x80, Some(&answer)); // ANTICOLLISION CL1
            let mut select = vec![0x93, 0x70];
            select.extend(answer);
            self.crc(&select, [0x11, 0x22]);
            select.extend([0x11, 0x22]);
            self.transceive(&select, 0x80, Some(&[0x08, 0xB6, 0xDD])); // SELECT → SAK + CRC
            self.crc(&[0x08], [0xB6, 0xDD]);
            self.crc(&[0x50, 0x00], [0x57, 0xCD]);
            self.transceive(&[0x50, 0x00, 0x57, 0xCD], 0x80, None); // HLTA: silence is success
        }
    }

    #[test]
    fn reads_a_uid_with_reqa_and_anticollision() {
        let mut bus = Bus::default();
        bus.init();
        bus.read(VERSION, 0x92);
        bus.read_card([0xDE, 0xAD, 0xBE, 0xEF]);
        let mut spi = Mock::new(&bus.0);
        let mut reader = Mfrc522Reader::new(spi.clone()).expect("init");
        assert_eq!(reader.check_version().expect("version"), 0x92);
        let card = reader.poll().expect("poll");
        assert_eq!(card, Some(CardId::new("DEADBEEF").expect("card")));
        spi.done();
    }

    #[test]
    fn empty_field_is_no_card() {
        let mut bus = Bus::default();
        bus.init();
        bus.transceive(&[0x26], 0x87, None); // REQA: silence
        bus.transceive(&[0x52], 0x87, None); // WUPA: silence
        let mut spi = Mock::new(&bus.0);
        let mut reader = Mfrc522Reader::new(spi.clone()).expect("init");
        assert_eq!(reader.poll().expect("poll"), None);
        spi.done();
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut bus = Bus::default();
        bus.init();
        bus.read(VERSION, 0x00);
        let mut spi = Mock::new(&bus.0);
        let mut reader = Mfrc522Reader::new(spi.clone()).expect("init");
        assert!(matches!(
            reader.check_version(),
            Err(ReaderError::Version(0))
        ));
        spi.done();
    }

    #[test]
    fn uid_formatting() {
        assert_eq!(
            uid_to_card(&[0x04, 0xA1, 0x0B, 0xC3, 0x00, 0x11, 0x22]).map(String::from),
            Some("04A10BC3001122".into())
        );
    }
}
