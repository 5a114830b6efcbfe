//! Validated identifiers.
//!
//! Each identifier is a newtype that can only be built from a string that passes its rule, so a
//! value of these types is always safe to put in a topic, a Redis key or a log line.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which identifier was being parsed.
        what: &'static str,
    },
    /// The string is longer than the identifier allows.
    #[error("{what} is {len} characters long, at most {max} allowed")]
    TooLong {
        /// Which identifier was being parsed.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The string holds a character outside the identifier's alphabet.
    #[error("{what} holds {found:?}; allowed: {allowed}")]
    BadChar {
        /// Which identifier was being parsed.
        what: &'static str,
        /// The first offending character.
        found: char,
        /// A description of the allowed alphabet.
        allowed: &'static str,
    },
}

fn check(
    s: &str,
    what: &'static str,
    max: usize,
    allowed: &'static str,
    ok: fn(char) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if let Some(found) = s.chars().find(|c| !ok(*c)) {
        return Err(IdError::BadChar {
            what,
            found,
            allowed,
        });
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:literal, $ok:expr, $canon:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Validates `s` and wraps it in its canonical form.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check(&s, $what, $max, $allowed, $ok)?;
                let canon: fn(String) -> String = $canon;
                Ok(Self(canon(s)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A device name: 1–64 of `[A-Za-z0-9_-]`. It is also the device's MQTT client id.
    DeviceId,
    "device id",
    64,
    "A-Z a-z 0-9 _ -",
    |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
    |s| s
);

id_type!(
    /// A card number: 1–32 of `[0-9A-Za-z]`, so both the decimal serials an MFRC522 prints and hex
    /// UIDs fit. Card numbers are case-insensitive: the canonical form is upper case, and this
    /// constructor is the only way in (taps, the deny list, card lookups), so `04ab` and `04AB`
    /// are the same card everywhere.
    CardId,
    "card",
    32,
    "A-Z a-z 0-9",
    |c| c.is_ascii_alphanumeric(),
    |mut s| {
        s.make_ascii_uppercase();
        s
    }
);

id_type!(
    /// A message id chosen by the device: 1–64 of `[A-Za-z0-9._:-]`, unique per device. A
    /// redelivered message carries the same id and gets the same decision.
    MessageId,
    "id",
    64,
    "A-Z a-z 0-9 . _ : -",
    |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
    |s| s
);

/// A fare product's id, from the operator's catalogue (`[[product]] id`): 1–32 of `[A-Z0-9_]`,
/// exactly as a terminal's button sends it in `pass`. Held inline, so it is `Copy` like the
/// small value it is; the built-in catalogue's three ids are constants.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductId {
    len: u8,
    bytes: [u8; ProductId::MAX_LEN],
}

impl ProductId {
    /// Longest accepted value, in characters.
    pub const MAX_LEN: usize = 32;
    /// The built-in catalogue's single-use ticket.
    pub const SINGLE_USE: ProductId = ProductId::from_static("SINGLE_USE");
    /// The built-in catalogue's ten-trip ticket.
    pub const TEN_TRIP: ProductId = ProductId::from_static("TEN_TRIP");
    /// The built-in catalogue's two-hour pass.
    pub const TWO_HOUR: ProductId = ProductId::from_static("TWO_HOUR");

    const fn allowed(b: u8) -> bool {
        b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
    }

    /// Validates `s` (case-sensitive: `day` is not `DAY`).
    pub fn new(s: &str) -> Result<Self, IdError> {
        check(s, "product id", Self::MAX_LEN, "A-Z 0-9 _", |c| {
            c.is_ascii() && Self::allowed(c as u8)
        })?;
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    /// A product id known when compiling; a bad one fails the build.
    pub const fn from_static(s: &'static str) -> Self {
        let src = s.as_bytes();
        assert!(
            !src.is_empty() && src.len() <= Self::MAX_LEN,
            "product id length"
        );
        let mut bytes = [0u8; Self::MAX_LEN];
        let mut i = 0;
        while i < src.len() {
            assert!(Self::allowed(src[i]), "product id character");
            bytes[i] = src[i];
            i += 1;
        }
        Self {
            len: src.len() as u8,
            bytes,
        }
    }

    /// Parses a product id; `None` for anything outside the rule.
    pub fn parse(s: &str) -> Option<Self> {
        Self::new(s).ok()
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl PartialOrd for ProductId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ProductId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProductId({})", self.as_str())
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProductId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl AsRef<str> for ProductId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for ProductId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProductId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The two kinds of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// An entry gate: card reader and traffic lights.
    Gate,
    /// A ticket sales terminal: card reader and three pass buttons.
    Terminal,
}

impl DeviceKind {
    /// Both kinds, for iteration.
    pub const ALL: [DeviceKind; 2] = [DeviceKind::Gate, DeviceKind::Terminal];

    /// The kind as it appears in topics and keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Gate => "gate",
            DeviceKind::Terminal => "terminal",
        }
    }

    /// Parses the topic segment; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gate" => Some(DeviceKind::Gate),
            "terminal" => Some(DeviceKind::Terminal),
            _ => None,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(DeviceId::new("g1").is_ok());
        assert!(DeviceId::new("gate_north-2").is_ok());
        assert!(DeviceId::new("a".repeat(64)).is_ok());
        assert_eq!(
            DeviceId::new("a".repeat(65)),
            Err(IdError::TooLong {
                what: "device id",
                len: 65,
                max: 64
            })
        );
        assert_eq!(DeviceId::new(""), Err(IdError::Empty { what: "device id" }));
        for bad in ["g/1", "g+", "#", "g 1", "g.1", "gé"] {
            assert!(
                matches!(DeviceId::new(bad), Err(IdError::BadChar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn card_ids() {
        assert!(CardId::new("123456789012").is_ok());
        assert!(CardId::new("04A1B2C3D4E5F6").is_ok());
        assert!(CardId::new("1".repeat(32)).is_ok());
        assert!(CardId::new("1".repeat(33)).is_err());
        for bad in ["12-34", "<script>", "12 34", "", "a_b"] {
            assert!(CardId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn card_ids_are_canonical_upper_case() {
        let lower = CardId::new("04ab").expect("card");
        assert_eq!(lower.as_str(), "04AB");
        assert_eq!(lower, CardId::new("04AB").expect("card"));
        assert_eq!(lower, CardId::new("04aB").expect("card"));
        let parsed: CardId = serde_json::from_str("\"04ab\"").expect("json");
        assert_eq!(parsed, lower);
        // Device and message ids keep their case.
        assert_eq!(DeviceId::new("g1").expect("dev").as_str(), "g1");
        assert_eq!(MessageId::new("a-B").expect("id").as_str(), "a-B");
    }

    #[test]
    fn message_ids() {
        assert!(MessageId::new("g1:1700000000000:42").is_ok());
        assert!(MessageId::new("a.b_c-d:e").is_ok());
        assert!(MessageId::new("x".repeat(64)).is_ok());
        assert!(MessageId::new("x".repeat(65)).is_err());
        for bad in ["a/b", "a b", "", "a\"b", "a\nb"] {
            assert!(MessageId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Result<CardId, _> = serde_json::from_str("\"ABC123\"");
        assert!(ok.is_ok());
        let bad: Result<CardId, _> = serde_json::from_str("\"AB-C\"");
        assert!(bad.is_err());
    }

    #[test]
    fn product_ids() {
        let day = ProductId::new("DAY_2").expect("id");
        assert_eq!(day.as_str(), "DAY_2");
        assert_eq!(ProductId::new("TEN_TRIP"), Ok(ProductId::TEN_TRIP));
        assert!(ProductId::new(&"A".repeat(32)).is_ok());
        assert!(ProductId::new(&"A".repeat(33)).is_err());
        for bad in ["", "day", "DAY-1", "DAY 1", "É", "\u{1b}[31m"] {
            assert!(ProductId::new(bad).is_err(), "{bad:?}");
        }
        let json: ProductId = serde_json::from_str("\"DAY\"").expect("json");
        assert_eq!(serde_json::to_string(&json).expect("json"), "\"DAY\"");
        assert!(serde_json::from_str::<ProductId>("\"day\"").is_err());
        assert!(ProductId::SINGLE_USE < ProductId::TWO_HOUR);
    }

    #[test]
    fn kinds() {
        for k in DeviceKind::ALL {
            assert_eq!(DeviceKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DeviceKind::parse("bus"), None);
    }
}
