//! What a device says and shows.
//!
//! [`Prompt`] is every spoken prompt, with its text (printed when there is no audio) and the
//! file name of its recording in `device/assets/` (made by `device/assets/generate.sh`).
//! [`Sound`] adds the two tones. [`LightPattern`] names what the traffic light shows; the light
//! player in [`crate::hw::lights`] turns a pattern into timed lamp changes.

use std::fmt;
use std::time::Duration;

use tapgate_protocol::{DenyReason, PassInfo, PassType};

/// A spoken prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// Terminal: the card has no pass; press a button.
    SelectPass,
    /// Terminal: a pass was chosen; tap the same card.
    TapToConfirm,
    /// Terminal: the pass is on the card.
    ThankYou(PassType),
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
    /// Every prompt, for generating and checking the recordings.
    pub const ALL: [Prompt; 11] = [
        Prompt::SelectPass,
        Prompt::TapToConfirm,
        Prompt::ThankYou(PassType::SingleUse),
        Prompt::ThankYou(PassType::TenTrip),
        Prompt::ThankYou(PassType::TwoHour),
        Prompt::AlreadyHasPass,
        Prompt::CardMismatch,
        Prompt::AccessGranted,
        Prompt::AccessDenied,
        Prompt::TapCardFirst,
        Prompt::ServiceUnavailable,
    ];

    /// The words, as spoken and as printed.
    pub fn text(self) -> String {
        match self {
            Prompt::SelectPass => "select a pass".into(),
            Prompt::TapToConfirm => "tap your card to confirm".into(),
            Prompt::ThankYou(p) => format!("thank you for your {} pass", p.spoken()),
            Prompt::AlreadyHasPass => "this card already has a pass".into(),
            Prompt::CardMismatch => "different card — transaction cancelled".into(),
            Prompt::AccessGranted => "access granted".into(),
            Prompt::AccessDenied => "access denied".into(),
            Prompt::TapCardFirst => "tap your card first".into(),
            Prompt::ServiceUnavailable => "service unavailable".into(),
        }
    }

    /// The recording's file name in `device/assets/`.
    pub const fn file_name(self) -> &'static str {
        match self {
            Prompt::SelectPass => "select_pass.wav",
            Prompt::TapToConfirm => "tap_to_confirm.wav",
            Prompt::ThankYou(PassType::SingleUse) => "thank_you_single_trip.wav",
            Prompt::ThankYou(PassType::TenTrip) => "thank_you_ten_trip.wav",
            Prompt::ThankYou(PassType::TwoHour) => "thank_you_two_hour.wav",
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
        f.write_str(&self.text())
    }
}

/// Something the speaker plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sound {
    /// A short rising two-tone: yes.
    Chime,
    /// A low buzz: no.
    Buzzer,
    /// A spoken prompt.
    Say(Prompt),
}

impl fmt::Display for Sound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sound::Chime => f.write_str("(chime)"),
            Sound::Buzzer => f.write_str("(buzzer)"),
            Sound::Say(p) => write!(f, "\"{p}\""),
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

/// One line for the rider about a pass: what is left on it.
pub fn describe_pass(pass: &PassInfo) -> String {
    match pass.pass_type {
        PassType::SingleUse => "single trip pass used".into(),
        PassType::TenTrip => match pass.trips_remaining {
            Some(1) => "ten trip pass: 1 trip left".into(),
            Some(n) => format!("ten trip pass: {n} trips left"),
            None => "ten trip pass".into(),
        },
        PassType::TwoHour => match pass.remaining_ms {
            Some(ms) => {
                let mins = ms.div_ceil(60_000);
                format!("two hour pass: {}h {:02}m left", mins / 60, mins % 60)
            }
            None => "two hour pass: starts at the first gate".into(),
        },
    }
}

/// One line for the rider about a refusal.
pub fn describe_denial(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::NoPass => "no pass on this card",
        DenyReason::Expired => "pass expired",
        DenyReason::Blocked => "card blocked",
        DenyReason::CorruptPass => "card needs service: ask staff",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_have_distinct_files_and_text() {
        let files: std::collections::HashSet<_> =
            Prompt::ALL.iter().map(|p| p.file_name()).collect();
        assert_eq!(files.len(), Prompt::ALL.len());
        assert_eq!(
            Prompt::ThankYou(PassType::TenTrip).text(),
            "thank you for your ten trip pass"
        );
        assert_eq!(
            Sound::Say(Prompt::AccessGranted).to_string(),
            "\"access granted\""
        );
    }

    #[test]
    fn pass_lines() {
        let mut p = PassInfo::new(PassType::TenTrip);
        p.trips_remaining = Some(9);
        assert_eq!(describe_pass(&p), "ten trip pass: 9 trips left");
        p.trips_remaining = Some(1);
        assert_eq!(describe_pass(&p), "ten trip pass: 1 trip left");
        let mut t = PassInfo::new(PassType::TwoHour);
        assert_eq!(describe_pass(&t), "two hour pass: starts at the first gate");
        t.remaining_ms = Some(7_200_000);
        assert_eq!(describe_pass(&t), "two hour pass: 2h 00m left");
        t.remaining_ms = Some(61_000);
        assert_eq!(describe_pass(&t), "two hour pass: 0h 02m left");
        assert_eq!(
            describe_pass(&PassInfo::new(PassType::SingleUse)),
            "single trip pass used"
        );
    }
}
