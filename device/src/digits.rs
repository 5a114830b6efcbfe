//! What the four-digit display shows, and its seven-segment encoding.
//!
//! A [`DisplayText`] is four cells, each a character and an optional point, laid out right-aligned
//! like a number. The device logic builds one from a price ([`DisplayText::price`]), a count of
//! trips ([`DisplayText::count`]) or the time left on a pass ([`DisplayText::time_left`]); a
//! driver turns it into segment bytes with [`DisplayText::segments`]. A [`Readout`] adds how long
//! the text stays before the display goes blank.
//!
//! What fits is shown exactly or not at all: a price is shown with its decimals (` 2.50`), or as
//! whole units when it has no cents and the decimals do not fit (` 100`), otherwise as `----`.
//! A count over 9999 is `----` too. Time left is `H:MM` (` 0:45`, `23:59`) below 100 hours and
//! whole days (`  5d`) from there.
//!
//! Segment bytes are the usual `.gfedcba` bits: bit 0 is the top segment `a`, going clockwise to
//! `f`, bit 6 the middle `g`, bit 7 the point. On clock-style modules the second cell's point bit
//! lights the colon instead, which is why a colon may only follow the second cell, and why a price
//! with two decimals (its point after the second cell) reads `2:50` on such a module.

use std::fmt;

use tapgate_protocol::{Currency, PassInfo};

/// How many cells the display has.
pub const CELLS: usize = 4;

/// The point after a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Point {
    /// None.
    #[default]
    None,
    /// A decimal point.
    Dot,
    /// The colon of a clock-style display (only after the second cell).
    Colon,
}

/// One cell: a character the display can draw, and the point after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The character (see [`glyph`] for the ones that can be drawn).
    pub ch: char,
    /// The point after it.
    pub point: Point,
}

impl Cell {
    /// A dark cell.
    pub const BLANK: Cell = Cell {
        ch: ' ',
        point: Point::None,
    };
}

/// Why a text cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// More than four characters (points do not count).
    #[error("{0:?} needs more than {CELLS} cells")]
    TooLong(String),
    /// A character with no seven-segment form.
    #[error("{0:?} cannot be drawn on seven segments")]
    Char(char),
    /// A point with no character before it, or two in a row.
    #[error("a point must follow a character, once")]
    Point,
    /// A colon anywhere but after the second cell.
    #[error("the colon can only follow the second cell")]
    Colon,
}

/// Four cells of text for the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisplayText {
    cells: [Cell; CELLS],
}

impl Default for DisplayText {
    fn default() -> Self {
        Self::BLANK
    }
}

impl DisplayText {
    /// Nothing lit.
    pub const BLANK: DisplayText = DisplayText {
        cells: [Cell::BLANK; CELLS],
    };

    /// `----`: a value that does not fit.
    pub const DASHES: DisplayText = DisplayText {
        cells: [Cell {
            ch: '-',
            point: Point::None,
        }; CELLS],
    };

    /// `text` right-aligned: each character takes a cell, and a `.` or `:` is the point of the
    /// character before it.
    pub fn new(text: &str) -> Result<Self, TextError> {
        let mut cells: Vec<Cell> = Vec::with_capacity(CELLS);
        for ch in text.chars() {
            let point = match ch {
                '.' => Point::Dot,
                ':' => Point::Colon,
                _ => {
                    if glyph(ch).is_none() {
                        return Err(TextError::Char(ch));
                    }
                    if cells.len() == CELLS {
                        return Err(TextError::TooLong(text.into()));
                    }
                    cells.push(Cell {
                        ch,
                        point: Point::None,
                    });
                    continue;
                }
            };
            match cells.last_mut() {
                Some(c) if c.point == Point::None => c.point = point,
                _ => return Err(TextError::Point),
            }
        }
        let mut out = [Cell::BLANK; CELLS];
        let pad = CELLS - cells.len();
        out[pad..].copy_from_slice(&cells);
        if out
            .iter()
            .enumerate()
            .any(|(i, c)| c.point == Point::Colon && i != 1)
        {
            return Err(TextError::Colon);
        }
        Ok(Self { cells: out })
    }

    /// Text built here from digits that were checked to fit; `----` should that ever fail.
    fn fitted(text: &str) -> Self {
        Self::new(text).unwrap_or(Self::DASHES)
    }

    /// A price in minor units of `currency`: with its decimals when they fit (` 2.50`,
    /// `12.34`, `1.250` for three decimals, ` 300` for none), else whole units when the
    /// decimals are zero (` 100`), else `----`.
    pub fn price(minor: u64, currency: Currency) -> Self {
        let decimals = currency.decimals();
        let unit = 10u64.pow(decimals);
        let (major, frac) = (minor / unit, minor % unit);
        let whole = major.to_string();
        if decimals > 0 {
            let digits = whole.len() + decimals as usize;
            if digits <= CELLS {
                let width = decimals as usize;
                return Self::fitted(&format!("{whole}.{frac:0width$}"));
            }
            if frac != 0 {
                return Self::DASHES;
            }
        }
        Self::count(major)
    }

    /// A number, right-aligned (`  10`); `----` over 9999.
    pub fn count(n: u64) -> Self {
        if n > 9999 {
            return Self::DASHES;
        }
        Self::fitted(&n.to_string())
    }

    /// Time left, rounded up to the minute: `H:MM` below 100 hours (` 0:45`, `23:59`), whole days
    /// below 1000 (`  5d`, rounded down), else `----`.
    pub fn time_left(ms: u64) -> Self {
        let mins = ms.div_ceil(60_000);
        let (hours, mins) = (mins / 60, mins % 60);
        if hours < 100 {
            return Self::fitted(&format!("{hours}:{mins:02}"));
        }
        match hours / 24 {
            days @ 0..=999 => Self::fitted(&format!("{days}d")),
            _ => Self::DASHES,
        }
    }

    /// What is left on a pass, as [`crate::prompt::pass_left`] words it: trips when it counts
    /// them, time when it has an end; `None` when it reports neither.
    pub fn pass_left(pass: &PassInfo) -> Option<Self> {
        if let Some(n) = pass.trips_remaining {
            return Some(Self::count(n.into()));
        }
        pass.remaining_ms.map(Self::time_left)
    }

    /// The four cells, left to right.
    pub fn cells(&self) -> [Cell; CELLS] {
        self.cells
    }

    /// The segment bytes of the four cells, left to right (`.gfedcba`, see the module docs).
    pub fn segments(&self) -> [u8; CELLS] {
        self.cells.map(|c| {
            let point = if c.point == Point::None { 0 } else { POINT };
            glyph(c.ch).unwrap_or(0) | point
        })
    }
}

/// Text for the display and how long it stays before the display goes blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Readout {
    /// What to show.
    pub text: DisplayText,
    /// How long to show it (unless something else is shown first).
    pub hold: std::time::Duration,
}

impl fmt::Display for DisplayText {
    /// The text as shown, points included: ` 2.50`, ` 0:45`, `----`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.cells {
            write!(f, "{}", c.ch)?;
            match c.point {
                Point::None => {}
                Point::Dot => f.write_str(".")?,
                Point::Colon => f.write_str(":")?,
            }
        }
        Ok(())
    }
}

/// The point (or colon) bit of a segment byte.
pub const POINT: u8 = 0x80;

/// The segments of `ch` (`.gfedcba`, point off), if seven segments can draw it: the digits,
/// blank, `-`, `_`, and the letters that read unambiguously (`A b C c d E F H h L n o P r S t U u
/// y`, either case where one form serves both).
pub const fn glyph(ch: char) -> Option<u8> {
    Some(match ch {
        '0' | 'O' => 0x3F,
        '1' => 0x06,
        '2' => 0x5B,
        '3' => 0x4F,
        '4' => 0x66,
        '5' | 'S' | 's' => 0x6D,
        '6' => 0x7D,
        '7' => 0x07,
        '8' => 0x7F,
        '9' => 0x6F,
        ' ' => 0x00,
        '-' => 0x40,
        '_' => 0x08,
        'A' | 'a' => 0x77,
        'B' | 'b' => 0x7C,
        'C' => 0x39,
        'c' => 0x58,
        'D' | 'd' => 0x5E,
        'E' | 'e' => 0x79,
        'F' | 'f' => 0x71,
        'H' => 0x76,
        'h' => 0x74,
        'L' | 'l' => 0x38,
        'N' | 'n' => 0x54,
        'o' => 0x5C,
        'P' | 'p' => 0x73,
        'R' | 'r' => 0x50,
        'T' | 't' => 0x78,
        'U' => 0x3E,
        'u' => 0x1C,
        'Y' | 'y' => 0x6E,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tapgate_protocol::ProductId;

    fn shown(t: DisplayText) -> String {
        t.to_string()
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).expect("currency")
    }

    #[test]
    fn prices_fit_exactly_or_not_at_all() {
        let eur = Currency::EUR;
        assert_eq!(shown(DisplayText::price(250, eur)), " 2.50");
        assert_eq!(shown(DisplayText::price(5, eur)), " 0.05");
        assert_eq!(shown(DisplayText::price(0, eur)), " 0.00");
        assert_eq!(shown(DisplayText::price(9999, eur)), "99.99");
        assert_eq!(shown(DisplayText::price(10_000, eur)), " 100");
        assert_eq!(shown(DisplayText::price(999_900, eur)), "9999");
        assert_eq!(shown(DisplayText::price(10_050, eur)), "----");
        assert_eq!(shown(DisplayText::price(1_000_000, eur)), "----");
        assert_eq!(shown(DisplayText::price(300, cur("JPY"))), " 300");
        assert_eq!(shown(DisplayText::price(12_345, cur("JPY"))), "----");
        assert_eq!(shown(DisplayText::price(1_250, cur("KWD"))), "1.250");
        assert_eq!(shown(DisplayText::price(12_000, cur("KWD"))), "  12");
        assert_eq!(shown(DisplayText::price(u64::MAX, eur)), "----");
    }

    #[test]
    fn counts_and_time_left() {
        assert_eq!(shown(DisplayText::count(10)), "  10");
        assert_eq!(shown(DisplayText::count(0)), "   0");
        assert_eq!(shown(DisplayText::count(9999)), "9999");
        assert_eq!(shown(DisplayText::count(10_000)), "----");
        assert_eq!(shown(DisplayText::time_left(45 * 60_000)), " 0:45");
        assert_eq!(shown(DisplayText::time_left(61_000)), " 0:02");
        assert_eq!(shown(DisplayText::time_left(2 * 3_600_000)), " 2:00");
        assert_eq!(shown(DisplayText::time_left(24 * 3_600_000)), "24:00");
        assert_eq!(shown(DisplayText::time_left(99 * 3_600_000)), "99:00");
        assert_eq!(shown(DisplayText::time_left(100 * 3_600_000)), "  4d");
        assert_eq!(shown(DisplayText::time_left(30 * 86_400_000)), " 30d");
        assert_eq!(shown(DisplayText::time_left(u64::MAX)), "----");
        let pass = |trips, remaining_ms| PassInfo {
            pass_type: ProductId::from_static("ANY"),
            trips_remaining: trips,
            expires_at: None,
            remaining_ms,
        };
        assert_eq!(
            DisplayText::pass_left(&pass(Some(9), Some(1))).map(shown),
            Some("   9".into())
        );
        assert_eq!(
            DisplayText::pass_left(&pass(None, Some(90 * 60_000))).map(shown),
            Some(" 1:30".into())
        );
        assert_eq!(DisplayText::pass_left(&pass(None, None)), None);
    }

    #[test]
    fn segments_of_known_texts() {
        // " 2.50": blank, 2 with its point, 5, 0.
        assert_eq!(
            DisplayText::price(250, Currency::EUR).segments(),
            [0x00, 0x5B | POINT, 0x6D, 0x3F]
        );
        assert_eq!(DisplayText::count(10).segments(), [0, 0, 0x06, 0x3F]);
        assert_eq!(
            DisplayText::time_left(45 * 60_000).segments(),
            [0, 0x3F | POINT, 0x66, 0x6D]
        );
        assert_eq!(DisplayText::DASHES.segments(), [0x40; 4]);
        assert_eq!(DisplayText::BLANK.segments(), [0; 4]);
        assert_eq!(
            DisplayText::new("8.8.8.8.").expect("text").segments(),
            [0xFF; 4]
        );
        assert_eq!(
            DisplayText::new("Err").expect("text").segments(),
            [0, 0x79, 0x50, 0x50]
        );
    }

    #[test]
    fn texts_that_cannot_be_shown() {
        assert_eq!(
            DisplayText::new("12345"),
            Err(TextError::TooLong("12345".into()))
        );
        assert_eq!(
            DisplayText::new("1.2.3.4.").map(shown),
            Ok("1.2.3.4.".into())
        );
        assert_eq!(DisplayText::new("W"), Err(TextError::Char('W')));
        assert_eq!(DisplayText::new(".5"), Err(TextError::Point));
        assert_eq!(DisplayText::new("5.."), Err(TextError::Point));
        assert_eq!(DisplayText::new("1:234"), Err(TextError::Colon));
        assert_eq!(DisplayText::new("12:3"), Err(TextError::Colon));
        assert_eq!(DisplayText::new("12:34").map(shown), Ok("12:34".into()));
        assert_eq!(DisplayText::new("").map(shown), Ok("    ".into()));
    }

    /// The digits a text shows, read back as a number (points dropped); `None` for `----`.
    fn read_back(t: DisplayText) -> Option<u64> {
        let digits: String = t
            .cells()
            .iter()
            .map(|c| c.ch)
            .filter(|c| *c != ' ')
            .collect();
        (digits != "----").then(|| digits.parse().expect("digits"))
    }

    proptest! {
        #[test]
        fn any_text_is_shown_or_refused(text in "\\PC{0,8}") {
            if let Ok(t) = DisplayText::new(&text) {
                let segs = t.segments();
                prop_assert_eq!(segs.len(), CELLS);
                // The characters drawn are the text's, right-aligned.
                let asked: String = text.chars().filter(|c| !matches!(c, '.' | ':')).collect();
                let drawn: String = t.cells().iter().map(|c| c.ch).collect();
                prop_assert_eq!(drawn, format!("{asked:>4}"));
            }
        }

        /// A price is shown exactly, or as dashes: the digits read back are the amount (with
        /// its decimals) or the amount in whole units.
        #[test]
        fn prices_read_back_exactly(minor in any::<u64>(), code in prop::sample::select(vec!["EUR", "JPY", "KWD"])) {
            let currency = cur(code);
            let t = DisplayText::price(minor, currency);
            let unit = 10u64.pow(currency.decimals());
            match read_back(t) {
                None => prop_assert!(minor % unit != 0 || minor / unit > 9999),
                Some(n) if t.cells().iter().any(|c| c.point == Point::Dot) => prop_assert_eq!(n, minor),
                Some(n) => prop_assert_eq!(n * unit, minor),
            }
        }

        #[test]
        fn counts_and_times_never_panic(n in any::<u64>()) {
            let c = DisplayText::count(n);
            prop_assert!(read_back(c) == Some(n) || (n > 9999 && c == DisplayText::DASHES));
            let _ = DisplayText::time_left(n).segments();
        }
    }
}
