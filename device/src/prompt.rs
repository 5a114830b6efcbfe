//! What a device says and shows.
//!
//! [`Prompt`] is every spoken prompt, with its text (printed when there is no audio) and the
//! file name of its recording in `device/assets/` (made by `device/assets/generate.sh`).
//! [`Sound`] adds the two tones and a product's name and price ([`Sound::Price`]). [`LightPattern`] names what the traffic light shows; the light
//! player in [`crate::hw::lights`] turns a pattern into timed lamp changes. [`pass_left`],
//! [`describe_denial`] and [`price_line`] are the lines shown to riders.
//!
//! Products are data: a terminal learns their names and prices from the bridge, shows them and
//! speaks them: the price in recorded words ([`crate::words`]), the name as text (printed, or
//! synthesised where the device can). [`THANKS`] lists the products with a thank-you recorded
//! for them (the built-in catalogue's); any other product is thanked with the generic
//! [`Prompt::ThankYou`], so selling a product never needs code or a recording.

use std::fmt;
use std::time::Duration;

use tapgate_protocol::{Currency, DenyReason, PassInfo, ProductId};

/// A thank-you recorded for one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thanks {
    /// The product it thanks for.
    pub product: ProductId,
    /// Its words.
    pub words: &'static str,
    /// Its recording in `device/assets/`.
    pub file: &'static str,
}

/// The products with a thank-you of their own: the built-in catalogue's three.
pub const THANKS: [Thanks; 3] = [
    Thanks {
        product: ProductId::SINGLE_USE,
        words: "thank you for your single trip pass",
        file: "thank_you_single_trip.wav",
    },
    Thanks {
        product: ProductId::TEN_TRIP,
        words: "thank you for your ten trip pass",
        file: "thank_you_ten_trip.wav",
    },
    Thanks {
        product: ProductId::TWO_HOUR,
        words: "thank you for your two hour pass",
        file: "thank_you_two_hour.wav",
    },
];

/// A spoken prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// Terminal: the card has no pass; press a button.
    SelectPass,
    /// Terminal: a product was chosen; tap the same card.
    TapToConfirm,
    /// Terminal: the pass is on the card (any product).
    ThankYou,
    /// Terminal: the pass is on the card, for a product with a thank-you of its own.
    ThankYouFor(Thanks),
    /// Terminal: nothing sold, the card holds a pass.
    AlreadyHasPass,
    /// Terminal: another card confirmed; the sale is void.
    CardMismatch,
    /// Gate: come in.
    AccessGranted,
    /// Gate (or terminal, blocked card): no.
    AccessDenied,
    /// Terminal: a button with no sale in progress.
    TapCardFirst,
    /// No answer from the system in time.
    ServiceUnavailable,
}

impl Prompt {
    /// Every prompt that needs no product.
    pub const GENERAL: [Prompt; 9] = [
        Prompt::SelectPass,
        Prompt::TapToConfirm,
        Prompt::ThankYou,
        Prompt::AlreadyHasPass,
        Prompt::CardMismatch,
        Prompt::AccessGranted,
        Prompt::AccessDenied,
        Prompt::TapCardFirst,
        Prompt::ServiceUnavailable,
    ];

    /// Every prompt, for generating and checking the recordings.
    pub fn all() -> impl Iterator<Item = Prompt> {
        Prompt::GENERAL
            .into_iter()
            .chain(THANKS.into_iter().map(Prompt::ThankYouFor))
    }

    /// The thanks for a pass of `product`: its own recording if it has one, else the generic.
    pub fn thank_you(product: ProductId) -> Prompt {
        THANKS
            .into_iter()
            .find(|t| t.product == product)
            .map_or(Prompt::ThankYou, Prompt::ThankYouFor)
    }

    /// The words, as spoken and as printed.
    pub const fn text(self) -> &'static str {
        match self {
            Prompt::SelectPass => "select a pass",
            Prompt::TapToConfirm => "tap your card to confirm",
            Prompt::ThankYou => "thank you for your pass",
            Prompt::ThankYouFor(t) => t.words,
            Prompt::AlreadyHasPass => "this card already has a pass",
            Prompt::CardMismatch => "different card — transaction cancelled",
            Prompt::AccessGranted => "access granted",
            Prompt::AccessDenied => "access denied",
            Prompt::TapCardFirst => "tap your card first",
            Prompt::ServiceUnavailable => "service unavailable",
        }
    }

    /// The recording's file name in `device/assets/`.
    pub const fn file_name(self) -> &'static str {
        match self {
            Prompt::SelectPass => "select_pass.wav",
            Prompt::TapToConfirm => "tap_to_confirm.wav",
            Prompt::ThankYou => "thank_you.wav",
            Prompt::ThankYouFor(t) => t.file,
            Prompt::AlreadyHasPass => "already_has_pass.wav",
            Prompt::CardMismatch => "card_mismatch.wav",
            Prompt::AccessGranted => "access_granted.wav",
            Prompt::AccessDenied => "access_denied.wav",
            Prompt::TapCardFirst => "tap_card_first.wav",
            Prompt::ServiceUnavailable => "service_unavailable.wav",
        }
    }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Something the speaker plays.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sound {
    /// A short rising two-tone: yes.
    Chime,
    /// A low buzz: no.
    Buzzer,
    /// A spoken prompt.
    Say(Prompt),
    /// A product's name and a price: "Day pass, seven euros fifty cents".
    Price {
        /// The product's name, as the bridge lists it (made safe to show).
        name: String,
        /// The price in minor units of `currency`.
        price: u64,
        /// Its currency.
        currency: Currency,
    },
}

impl Sound {
    /// A product's name and price.
    pub fn price(name: impl Into<String>, price: u64, currency: Currency) -> Self {
        Sound::Price {
            name: name.into(),
            price,
            currency,
        }
    }
}

impl fmt::Display for Sound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sound::Chime => f.write_str("(chime)"),
            Sound::Buzzer => f.write_str("(buzzer)"),
            Sound::Say(p) => write!(f, "\"{p}\""),
            Sound::Price {
                name,
                price,
                currency,
            } => write!(
                f,
                "\"{name}, {}\"",
                crate::words::sentence(&crate::words::amount(*price, *currency))
            ),
        }
    }
}

/// What the gate's traffic light shows. Timed patterns end in [`LightPattern::Idle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LightPattern {
    /// Red steady: waiting for a card.
    Idle,
    /// Red and amber: a tap is being checked.
    Checking,
    /// Red off, green on for the given time, then idle.
    Granted(Duration),
    /// Red flashes the given number of times, then idle.
    Denied(u32),
    /// Everything off (shutdown).
    Off,
}

/// The three lamps of a traffic light.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lamps {
    /// Red lamp on.
    pub red: bool,
    /// Amber lamp on.
    pub amber: bool,
    /// Green lamp on.
    pub green: bool,
}

impl Lamps {
    /// All off.
    pub const OFF: Lamps = Lamps {
        red: false,
        amber: false,
        green: false,
    };
    /// Red only.
    pub const RED: Lamps = Lamps {
        red: true,
        amber: false,
        green: false,
    };
    /// Red and amber.
    pub const RED_AMBER: Lamps = Lamps {
        red: true,
        amber: true,
        green: false,
    };
    /// Green only.
    pub const GREEN: Lamps = Lamps {
        red: false,
        amber: false,
        green: true,
    };
}

/// What is left on a pass, as its decision reports it: trips when it counts them, time when it
/// has an end; `None` when it reports neither (a single ride, or a period not yet started).
pub fn pass_left(pass: &PassInfo) -> Option<String> {
    if let Some(n) = pass.trips_remaining {
        return Some(match n {
            1 => "1 trip left".into(),
            n => format!("{n} trips left"),
        });
    }
    let mins = pass.remaining_ms?.div_ceil(60_000);
    let (days, hours, mins) = (mins / 1440, mins / 60 % 24, mins % 60);
    Some(if days > 0 {
        format!("{days}d {hours:02}h {mins:02}m left")
    } else {
        format!("{hours}h {mins:02}m left")
    })
}

/// A price as shown to riders: `Day pass, 7.50 EUR`.
pub fn price_line(name: &str, price: u64, currency: Currency) -> String {
    format!("{name}, {}", money(price, currency))
}

/// An amount in minor units of `currency`, as people read it: `7.50 EUR`.
pub fn money(price: u64, currency: Currency) -> String {
    currency.format(price)
}

/// The line for the rider when the bridge refused a message over the device's rate limit.
pub const RATE_LIMITED: &str = "too many taps: wait a moment";

/// One line for the rider about a refusal.
pub fn describe_denial(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::NoPass => "no pass on this card",
        DenyReason::Expired => "pass expired",
        DenyReason::Blocked => "card blocked",
        DenyReason::CorruptPass => "card needs service: ask staff",
        DenyReason::InsufficientFunds => "balance too low: top up",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_have_distinct_files_and_text() {
        let all: Vec<Prompt> = Prompt::all().collect();
        let files: std::collections::HashSet<_> = all.iter().map(|p| p.file_name()).collect();
        let texts: std::collections::HashSet<_> = all.iter().map(|p| p.text()).collect();
        assert_eq!(files.len(), all.len());
        assert_eq!(texts.len(), all.len());
        assert_eq!(
            Prompt::thank_you(ProductId::TEN_TRIP).text(),
            "thank you for your ten trip pass"
        );
        assert_eq!(
            Prompt::thank_you(ProductId::from_static("DAY")),
            Prompt::ThankYou
        );
        assert_eq!(
            Sound::Say(Prompt::AccessGranted).to_string(),
            "\"access granted\""
        );
        assert_eq!(
            Sound::price("Day pass", 750, Currency::EUR).to_string(),
            "\"Day pass, seven euros fifty cents\""
        );
    }

    #[test]
    fn pass_lines() {
        let pass = |trips, remaining| PassInfo {
            pass_type: ProductId::from_static("ANY"),
            trips_remaining: trips,
            expires_at: remaining,
            remaining_ms: remaining,
        };
        assert_eq!(
            pass_left(&pass(Some(9), None)).as_deref(),
            Some("9 trips left")
        );
        assert_eq!(
            pass_left(&pass(Some(1), None)).as_deref(),
            Some("1 trip left")
        );
        assert_eq!(
            pass_left(&pass(None, Some(7_200_000))).as_deref(),
            Some("2h 00m left")
        );
        assert_eq!(
            pass_left(&pass(None, Some(61_000))).as_deref(),
            Some("0h 02m left")
        );
        assert_eq!(
            pass_left(&pass(None, Some(30 * 3_600_000))).as_deref(),
            Some("1d 06h 00m left")
        );
        assert_eq!(pass_left(&pass(None, None)), None);
        assert_eq!(
            price_line("Day pass", 750, Currency::EUR),
            "Day pass, 7.50 EUR"
        );
    }
}
