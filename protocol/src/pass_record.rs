//! A card's pass as Redis stores it ([`crate::keys::pass`], fields in [`crate::fields::pass`]),
//! read back: the one reader, in Rust, of every layout the bridge has written.
//!
//! - **Terms in one field** (written now): `terms` holds the words the sale was made on,
//!   `validity trips duration_ms price currency [catalogue version]` ([`Terms::to_words`], the
//!   bridge's decide function reads them with one pattern); apart from them the pass's state
//!   (`trips` left, `expires_at`, `used_at`) and its sale (`issued_at`, `sold_by`, `day`).
//! - **Terms as fields** (earlier): `validity`, `duration`, `price`, `currency` and
//!   `catalogue` each a field of its own; still read, never written.
//! - **Before terms** (earlier still): only `type`, `trips`, `expires_at`, `issued_at`, the type
//!   one of `SINGLE_USE`, `TEN_TRIP`, `TWO_HOUR`, read on those types' built-in terms (price 0, a
//!   `TWO_HOUR`'s period the bridge's `legacy_period`).
//!
//! A record none of these reads is [`Unreadable`], naming the field: the bridge denies such a card
//! `corrupt_pass` and leaves the record for an operator.

use std::collections::HashMap;

use crate::fares::{Currency, Terms, Validity};
use crate::fields::pass as field;
use crate::ids::ProductId;
use crate::rules::Pass;

/// Which layout a record was written in (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `terms` in one field.
    Terms,
    /// Terms as fields of their own.
    Fields,
    /// No terms stored: a built-in type's.
    BeforeTerms,
}

/// A pass record, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPass {
    /// The pass as the rules see it.
    pub pass: Pass,
    /// The fare catalogue's version it was sold from, when the record has it.
    pub catalogue: Option<String>,
    /// The terminal that sold it (absent on records from before sales kept it).
    pub sold_by: Option<String>,
    /// The service day its sale was counted on, `YYYY-MM-DD` (absent likewise).
    pub day: Option<String>,
    /// The layout it was read in.
    pub layout: Layout,
}

/// A record that is not a pass any layout describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pass record has an unreadable or missing `{field}`")]
pub struct Unreadable {
    /// The field at fault.
    pub field: &'static str,
}

/// The built-in types a record from before terms names, and their validity.
const BEFORE_TERMS: [(&str, Validity); 3] = [
    ("SINGLE_USE", Validity::Single),
    ("TEN_TRIP", Validity::Trips),
    ("TWO_HOUR", Validity::Period),
];

/// Trips a `TEN_TRIP` record from before terms may hold.
const BEFORE_TERMS_TRIPS: u32 = 10;

/// Terms and the catalogue version from the words of a `terms` field (or of a sale's), for
/// `product`. `None` when they are not five words (a sixth, the version, optional) of the right
/// kinds.
pub fn terms_from_words(product: ProductId, text: &str) -> Option<(Terms, Option<String>)> {
    let mut words = text.split(' ');
    let validity = Validity::parse(words.next()?)?;
    let trips = digits(words.next()?)?;
    let duration_ms = digits(words.next()?)?;
    let price = digits(words.next()?)?;
    let currency = Currency::parse(words.next()?)?;
    let version = match words.next() {
        None => None,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Some(v.to_owned())
        }
        Some(_) => return None,
    };
    if words.next().is_some() {
        return None;
    }
    let terms = Terms {
        product,
        validity,
        trips: u32::try_from(trips).ok()?,
        duration_ms,
        price,
        currency,
    };
    Some((terms, version))
}

/// A non-negative integer written as digits only.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Field `name` of `record`, if it is there.
fn text<'a>(record: &'a HashMap<String, String>, name: &'static str) -> Option<&'a str> {
    record.get(name).map(String::as_str)
}

/// Field `name` of `record` as a number, if it is there; unreadable unless digits only.
fn number(record: &HashMap<String, String>, name: &'static str) -> Result<Option<u64>, Unreadable> {
    text(record, name)
        .map(|t| digits(t).ok_or(Unreadable { field: name }))
        .transpose()
}

/// The terms of a record that keeps them as fields of their own (validity, currency, duration,
/// price), and the catalogue version it was sold from.
fn terms_from_fields(
    record: &HashMap<String, String>,
    product: ProductId,
) -> Result<(Terms, Option<String>), Unreadable> {
    let text = |name: &'static str| text(record, name);
    let number = |name: &'static str| number(record, name);
    let validity = text(field::VALIDITY)
        .and_then(Validity::parse)
        .ok_or(Unreadable {
            field: field::VALIDITY,
        })?;
    let currency = match text(field::CURRENCY) {
        Some(c) => Currency::parse(c).ok_or(Unreadable {
            field: field::CURRENCY,
        })?,
        None => Currency::EUR,
    };
    let duration = number(field::DURATION)?;
    if validity == Validity::Period && duration.is_none() {
        return Err(Unreadable {
            field: field::DURATION,
        });
    }
    let terms = Terms {
        product,
        validity,
        trips: 0,
        duration_ms: duration.unwrap_or(0),
        price: number(field::PRICE)?.unwrap_or(0),
        currency,
    };
    let catalogue = text(field::CATALOGUE)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    Ok((terms, catalogue))
}

/// The terms of a record from before passes kept them: the built-in product its type names,
/// its period `legacy_period_ms`; a trips pass holds at most the built-in number of `trips`.
fn terms_before_terms(
    product: ProductId,
    trips: Option<u64>,
    legacy_period_ms: u64,
) -> Result<Terms, Unreadable> {
    let validity = BEFORE_TERMS
        .iter()
        .find(|(name, _)| *name == product.as_str())
        .map(|(_, v)| *v)
        .ok_or(Unreadable { field: field::TYPE })?;
    if validity == Validity::Trips && trips.is_none_or(|t| t > u64::from(BEFORE_TERMS_TRIPS)) {
        return Err(Unreadable {
            field: field::TRIPS,
        });
    }
    Ok(Terms {
        product,
        validity,
        trips: if validity == Validity::Trips {
            BEFORE_TERMS_TRIPS
        } else {
            0
        },
        duration_ms: if validity == Validity::Period {
            legacy_period_ms
        } else {
            0
        },
        price: 0,
        currency: Currency::EUR,
    })
}

/// Reads a pass record (`HGETALL` of its key). `Ok(None)` for no record; `legacy_period_ms` is
/// the period of a `TWO_HOUR` record from before terms.
pub fn read(
    record: &HashMap<String, String>,
    legacy_period_ms: u64,
) -> Result<Option<StoredPass>, Unreadable> {
    if record.is_empty() {
        return Ok(None);
    }
    let text = |name: &'static str| text(record, name);
    let number = |name: &'static str| number(record, name);
    let product = text(field::TYPE)
        .and_then(ProductId::parse)
        .ok_or(Unreadable { field: field::TYPE })?;
    let trips = number(field::TRIPS)?;
    let expires_at = number(field::EXPIRES_AT)?;
    let issued_at = number(field::ISSUED_AT)?;
    let used_at = number(field::USED_AT)?;
    let (terms, catalogue, layout) = if let Some(words) = text(field::TERMS) {
        let (terms, version) = terms_from_words(product, words).ok_or(Unreadable {
            field: field::TERMS,
        })?;
        (terms, version, Layout::Terms)
    } else if text(field::VALIDITY).is_some() {
        let (terms, catalogue) = terms_from_fields(record, product)?;
        (terms, catalogue, Layout::Fields)
    } else {
        let terms = terms_before_terms(product, trips, legacy_period_ms)?;
        (terms, None, Layout::BeforeTerms)
    };
    let needs = |ok: bool, field: &'static str| {
        if ok {
            Ok(())
        } else {
            Err(Unreadable { field })
        }
    };
    needs(terms.validity != Validity::TopUp, field::TERMS)?;
    needs(
        terms.validity != Validity::Trips || trips.is_some(),
        field::TRIPS,
    )?;
    needs(
        terms.validity != Validity::ServiceDay || expires_at.is_some(),
        field::EXPIRES_AT,
    )?;
    let trips = u32::try_from(trips.unwrap_or(0)).map_err(|_| Unreadable {
        field: field::TRIPS,
    })?;
    Ok(Some(StoredPass {
        pass: Pass {
            terms,
            trips: if terms.validity == Validity::Trips {
                trips
            } else {
                0
            },
            expires_at,
            issued_at: issued_at.unwrap_or(0),
            used_at,
        },
        catalogue,
        sold_by: text(field::SOLD_BY).map(str::to_owned),
        day: text(field::DAY).map(str::to_owned),
        layout,
    }))
}

impl StoredPass {
    /// The fields, as stored, that name its sale: what an operator's void checks are unchanged
    /// when it removes the pass (its terms, when and where it was sold, its day).
    pub fn sale_fields(&self) -> &'static [&'static str] {
        match self.layout {
            Layout::Terms => &[
                field::TYPE,
                field::TERMS,
                field::ISSUED_AT,
                field::SOLD_BY,
                field::DAY,
            ],
            Layout::Fields | Layout::BeforeTerms => &[
                field::TYPE,
                field::PRICE,
                field::ISSUED_AT,
                field::SOLD_BY,
                field::DAY,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_terms_in_one_field() {
        let r = record(&[
            ("type", "DAY"),
            ("terms", "period 0 86400000 750 EUR v3"),
            ("trips", "0"),
            ("issued_at", "5"),
            ("sold_by", "t1"),
            ("day", "2026-12-06"),
        ]);
        let p = read(&r, 1).expect("readable").expect("a pass");
        assert_eq!(p.layout, Layout::Terms);
        assert_eq!(p.pass.terms.validity, Validity::Period);
        assert_eq!(p.pass.terms.duration_ms, 86_400_000);
        assert_eq!(p.pass.terms.price, 750);
        assert_eq!(p.catalogue.as_deref(), Some("v3"));
        assert_eq!(p.pass.issued_at, 5);
        assert_eq!(p.pass.used_at, None);
        assert_eq!(p.sold_by.as_deref(), Some("t1"));
    }

    #[test]
    fn reads_earlier_layouts() {
        let fields = record(&[
            ("type", "TEN"),
            ("validity", "trips"),
            ("trips", "4"),
            ("duration", "0"),
            ("price", "1200"),
            ("currency", "GBP"),
            ("catalogue", "abc"),
            ("issued_at", "7"),
            ("used_at", "9"),
        ]);
        let p = read(&fields, 1).expect("readable").expect("a pass");
        assert_eq!(p.layout, Layout::Fields);
        assert_eq!((p.pass.trips, p.pass.terms.price), (4, 1200));
        assert_eq!(p.pass.terms.currency.as_str(), "GBP");
        assert_eq!(p.pass.used_at, Some(9));
        let before = record(&[("type", "TWO_HOUR"), ("trips", "0"), ("issued_at", "0")]);
        let p = read(&before, 7_200_000).expect("readable").expect("a pass");
        assert_eq!(p.layout, Layout::BeforeTerms);
        assert_eq!(p.pass.terms.duration_ms, 7_200_000);
        assert_eq!(read(&HashMap::new(), 1), Ok(None));
    }

    #[test]
    fn refuses_what_no_layout_describes() {
        let bad: [(&[(&str, &str)], &str); 9] = [
            (&[("type", "MONTHLY"), ("trips", "0")], "type"),
            (&[("type", "TEN_TRIP"), ("trips", "11")], "trips"),
            (&[("type", "TEN_TRIP"), ("trips", "lots")], "trips"),
            (&[("trips", "3")], "type"),
            (&[("type", "DAY"), ("terms", "forever 0 0 0 EUR")], "terms"),
            (&[("type", "DAY"), ("terms", "period 0 0 -5 EUR")], "terms"),
            (
                &[("type", "DAY"), ("terms", "period 0 0 5 EUR v 1")],
                "terms",
            ),
            (&[("type", "DAY"), ("terms", "top_up 0 0 5 EUR")], "terms"),
            (&[("type", "DAY"), ("validity", "period")], "duration"),
        ];
        for (pairs, field) in bad {
            assert_eq!(
                read(&record(pairs), 1),
                Err(Unreadable { field }),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn terms_words_round_trip() {
        let product = ProductId::parse("DAY").expect("id");
        let terms = Terms {
            product,
            validity: Validity::Trips,
            trips: 10,
            duration_ms: 0,
            price: 1500,
            currency: Currency::EUR,
        };
        let words = format!("{} builtin-7200000", terms.to_words());
        assert_eq!(
            terms_from_words(product, &words),
            Some((terms, Some("builtin-7200000".into())))
        );
        assert_eq!(
            terms_from_words(product, &terms.to_words()),
            Some((terms, None))
        );
    }
}
