//! The fare catalogue: the operator's products, their prices and how each is valid.
//!
//! The bridge reads it from a TOML file (`--fares`); without one it uses [`Catalogue::builtin`],
//! the three products tapgate always had, at price 0. A product is data: an id a terminal's button
//! sends, a name devices speak and dashboards show, a price in minor units of the catalogue's
//! currency, and a [`Validity`]. The pass rules ([`crate::rules`]) never name a product; they read
//! the [`Terms`] a pass was sold on, which the pass record keeps, so a later price change or a
//! removed product never changes a pass already sold.
//!
//! ```toml
//! currency = "EUR"                 # ISO 4217; prices are integers in minor units
//! time_zone = "Europe/Dublin"      # for service days
//! service_day_starts = "04:00"     # a day pass bought at 01:30 belongs to the previous day
//!
//! [[product]]
//! id = "DAY"                       # what a terminal's button sends as `pass`; 1–32 of [A-Z0-9_]
//! name = "Day pass"
//! price = 750
//! validity = "period"              # single | trips | period | service_day
//! duration = "24h"                 # period only: from first entry
//! # trips = 10                     # trips only: entries
//! ```
//!
//! [`Catalogue::parse`] refuses a bad file with the line and the field at fault
//! ([`FaresError`]). A service day runs from `service_day_starts` on one calendar day to the same
//! time on the next, in `time_zone` ([`Catalogue::service_day`]); revenue is counted per service
//! day and a `service_day` product is valid until the end of the day it was sold in.

use std::fmt;
use std::ops::Range;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::ProductId;
use crate::payg::{Payg, PaygForm, PAYG_PRODUCT};

/// The largest price a product may have, in minor units (a million in major units of a
/// two-decimal currency): far above any fare, far below any overflow.
pub const MAX_PRICE: u64 = 100_000_000;
/// The most trips a `trips` product may hold.
pub const MAX_TRIPS: u32 = 1_000;
/// The most products a catalogue may hold (a terminal lists them all in one answer).
pub const MAX_PRODUCTS: usize = 32;
/// The longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// The shortest and longest `period` a product may have.
pub const PERIOD_RANGE_MS: Range<u64> = 60_000..(400 * 24 * 3_600_000 + 1);

/// How a product is valid once sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// One entry, never expires until used.
    Single,
    /// `trips` entries.
    Trips,
    /// Unlimited entries for `duration` from the first entry.
    Period,
    /// Unlimited entries until the end of the service day it was sold in.
    ServiceDay,
    /// Not a pass: adds its price to the card's pay-as-you-go balance ([`crate::payg`]).
    TopUp,
}

impl Validity {
    /// Every validity.
    pub const ALL: [Validity; 5] = [
        Validity::Single,
        Validity::Trips,
        Validity::Period,
        Validity::ServiceDay,
        Validity::TopUp,
    ];

    /// The wire and file name, e.g. `service_day`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Validity::Single => "single",
            Validity::Trips => "trips",
            Validity::Period => "period",
            Validity::ServiceDay => "service_day",
            Validity::TopUp => "top_up",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Validity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 4217 currency code: three upper-case letters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The built-in catalogue's currency.
    pub const EUR: Currency = Currency(*b"EUR");

    /// Parses a code; `None` unless three upper-case ASCII letters.
    pub fn parse(s: &str) -> Option<Self> {
        let b: [u8; 3] = s.as_bytes().try_into().ok()?;
        b.iter().all(u8::is_ascii_uppercase).then_some(Self(b))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in this currency's major unit (ISO 4217's minor unit):
    /// 0 for yen-like currencies, 3 for dinar-like ones, otherwise 2.
    pub fn decimals(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }

    /// An amount in minor units (a price, or a signed amount) as people read it: `7.50 EUR`,
    /// `-2.00 EUR`, `300 JPY`.
    pub fn format(&self, minor: impl Into<i128>) -> String {
        let minor: i128 = minor.into();
        let d = self.decimals();
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        if d == 0 {
            return format!("{sign}{abs} {}", self.as_str());
        }
        let unit = 10u128.pow(d);
        format!(
            "{sign}{}.{:0width$} {}",
            abs / unit,
            abs % unit,
            self.as_str(),
            width = d as usize
        )
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).ok_or_else(|| serde::de::Error::custom("not an ISO 4217 code"))
    }
}

/// What a pass is sold on: everything the rules need to honour it, fixed at the sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Terms {
    /// The product sold.
    pub product: ProductId,
    /// How it is valid.
    pub validity: Validity,
    /// `trips`: entries it holds when new; 0 otherwise.
    pub trips: u32,
    /// `period`: its length from the first entry, ms; 0 otherwise.
    pub duration_ms: u64,
    /// Its price, minor units of `currency`.
    pub price: u64,
    /// The currency of `price`.
    pub currency: Currency,
}

impl Terms {
    /// The terms as one line of words, as the decide function takes and a sale stores them:
    /// `validity trips duration_ms price currency` (the product travels apart).
    pub fn to_words(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.validity, self.trips, self.duration_ms, self.price, self.currency
        )
    }
}

/// One product of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// What it is sold as.
    pub terms: Terms,
    /// Shown and spoken on terminals, shown on dashboards.
    pub name: String,
}

impl Product {
    /// Its id.
    pub fn id(&self) -> ProductId {
        self.terms.product
    }
}

/// The service day a moment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDay {
    /// Its calendar date (the day it starts on).
    pub date: Date,
    /// When it ends (the next one starts), Unix ms.
    pub ends_at_ms: u64,
}

impl ServiceDay {
    /// 1970-01-01, ending at once: what a caller that was given no day falls back to.
    pub const EPOCH: ServiceDay = ServiceDay {
        date: Date::constant(1970, 1, 1),
        ends_at_ms: 0,
    };

    /// The date as `YYYY-MM-DD`, as revenue keys and reports name it.
    pub fn label(&self) -> String {
        self.date.to_string()
    }
}

/// The operator's fare catalogue.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// Prices' currency.
    pub currency: Currency,
    /// Where service days are counted.
    pub time_zone: TimeZone,
    /// When a service day starts, local time.
    pub service_day_starts: Time,
    /// The products, in file order (terminal buttons are assigned in this order by default).
    pub products: Vec<Product>,
    /// A fingerprint of the file, so logs and reports can say which catalogue was in force.
    pub version: String,
    /// Pay-as-you-go terms (`[payg]`), if the operator charges entries without a pass.
    pub payg: Option<Payg>,
}

/// Why a fares file is refused: where, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct FaresError {
    /// The file (as named to [`Catalogue::parse`]).
    pub file: String,
    /// 1-based line of the fault (1 when the fault is the file as a whole).
    pub line: usize,
    /// The field at fault, e.g. `product[2].price` or `currency`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The file as written, with where each value stands.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    currency: toml::Spanned<String>,
    time_zone: toml::Spanned<String>,
    #[serde(default)]
    service_day_starts: Option<toml::Spanned<String>>,
    #[serde(default)]
    product: Vec<toml::Spanned<ProductForm>>,
    #[serde(default)]
    payg: Option<toml::Spanned<PaygForm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductForm {
    id: toml::Spanned<String>,
    name: toml::Spanned<String>,
    price: toml::Spanned<i64>,
    validity: toml::Spanned<String>,
    #[serde(default)]
    trips: Option<toml::Spanned<i64>>,
    #[serde(default)]
    duration: Option<toml::Spanned<String>>,
}

/// A field of a fares file at fault: its byte span, its name and what is wrong.
type Fault = (Range<usize>, &'static str, String);

impl FileForm {
    /// What every price and day is reckoned in: the currency, the time zone and when the service
    /// day starts (04:00 unless given); or the field at fault.
    fn reckoning(&self) -> Result<(Currency, TimeZone, Time), Fault> {
        let currency = Currency::parse(self.currency.get_ref()).ok_or_else(|| {
            (
                self.currency.span(),
                "currency",
                format!(
                    "{:?} is not an ISO 4217 code (three capital letters, e.g. EUR)",
                    self.currency.get_ref()
                ),
            )
        })?;
        let zone_name = self.time_zone.get_ref();
        let time_zone = TimeZone::get(zone_name).map_err(|e| {
            (
                self.time_zone.span(),
                "time_zone",
                format!("unknown time zone {zone_name:?} ({e}); e.g. Europe/Dublin or UTC"),
            )
        })?;
        let service_day_starts = match &self.service_day_starts {
            None => Time::constant(4, 0, 0, 0),
            Some(s) => parse_hh_mm(s.get_ref()).ok_or_else(|| {
                (
                    s.span(),
                    "service_day_starts",
                    format!("{:?} is not a time of day HH:MM", s.get_ref()),
                )
            })?,
        };
        Ok((currency, time_zone, service_day_starts))
    }
}

impl ProductForm {
    /// The checked product, priced in `currency`, or the field at fault; `before` are the
    /// products above it in the file (an id is used once).
    fn check(&self, currency: Currency, before: &[Product]) -> Result<Product, Fault> {
        let id = ProductId::new(self.id.get_ref()).map_err(|e| {
            (
                self.id.span(),
                "id",
                format!("{e} (a terminal's button sends it: 1–32 of A-Z 0-9 _)"),
            )
        })?;
        if id == PAYG_PRODUCT {
            let why = format!("{id} is reserved for entries paid as you go");
            return Err((self.id.span(), "id", why));
        }
        if before.iter().any(|q| q.id() == id) {
            return Err((self.id.span(), "id", format!("duplicate product id {id}")));
        }
        let name = self.name.get_ref().trim().to_owned();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            let why = format!("1–{MAX_NAME_CHARS} printable characters");
            return Err((self.name.span(), "name", why));
        }
        let price = u64::try_from(*self.price.get_ref())
            .ok()
            .filter(|v| *v <= MAX_PRICE)
            .ok_or_else(|| {
                (
                    self.price.span(),
                    "price",
                    format!(
                        "{} is not a price: an integer from 0 to {MAX_PRICE} in minor units",
                        self.price.get_ref()
                    ),
                )
            })?;
        let validity = Validity::parse(self.validity.get_ref()).ok_or_else(|| {
            (
                self.validity.span(),
                "validity",
                format!(
                    "unknown validity {:?}; one of single, trips, period, service_day, top_up",
                    self.validity.get_ref()
                ),
            )
        })?;
        let trips = self.trips(validity)?;
        let duration_ms = self.duration_ms(validity)?;
        if validity == Validity::TopUp && price == 0 {
            let why = "a top_up product adds its price to a balance: at least 1".to_owned();
            return Err((self.price.span(), "price", why));
        }
        Ok(Product {
            terms: Terms {
                product: id,
                validity,
                trips,
                duration_ms,
                price,
                currency,
            },
            name,
        })
    }

    /// The entries of a `trips` product, which it must give; no other kind has any.
    fn trips(&self, validity: Validity) -> Result<u32, Fault> {
        let entries = |t: &i64| {
            u32::try_from(*t)
                .ok()
                .filter(|n| (1..=MAX_TRIPS).contains(n))
                .ok_or_else(|| format!("from 1 to {MAX_TRIPS} entries"))
        };
        let wording = ("trips", "trips", "trips = N");
        self.owned(&self.trips, validity, Validity::Trips, wording, entries)
    }

    /// How long a `period` product lasts, ms, which it must give; no other kind has a duration.
    fn duration_ms(&self, validity: Validity) -> Result<u64, Fault> {
        let ms = |d: &String| {
            humantime::parse_duration(d)
                .ok()
                .and_then(|d| u64::try_from(d.as_millis()).ok())
                .filter(|ms| PERIOD_RANGE_MS.contains(ms))
                .ok_or_else(|| format!("{d:?} is not a duration from 1m to 400days, e.g. \"24h\""))
        };
        let wording = ("duration", "a duration", "duration = \"…\"");
        self.owned(&self.duration, validity, Validity::Period, wording, ms)
    }

    /// A field only products of validity `owner` have, and must give: its value as `read` takes
    /// it (or why not) on such a product, 0 on any other, where it is a fault. `wording`: the
    /// field's name, what a product has when it has the field, and how the field is written.
    fn owned<F, T: Default>(
        &self,
        field: &Option<toml::Spanned<F>>,
        validity: Validity,
        owner: Validity,
        (name, has, needs): (&'static str, &str, &str),
        read: impl FnOnce(&F) -> Result<T, String>,
    ) -> Result<T, Fault> {
        match field {
            Some(f) if validity == owner => read(f.get_ref()).map_err(|why| (f.span(), name, why)),
            None if validity == owner => {
                let why = format!("a {owner} product needs {needs}");
                Err((self.validity.span(), name, why))
            }
            Some(f) => {
                let why = format!("only a {owner} product has {has}, not a {validity} product");
                Err((f.span(), name, why))
            }
            None => Ok(T::default()),
        }
    }
}

/// Line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(at.min(text.len()))
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A short stable fingerprint of `text` (FNV-1a, 64 bits, as hex).
fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Catalogue {
    /// Today's three products at price 0, in euros, service days from 04:00 UTC: what the bridge
    /// sells without a fares file. `two_hour_ms` is the two-hour pass's window (shortened in
    /// demos).
    pub fn builtin(two_hour_ms: u64) -> Self {
        let terms = |product, validity, trips, duration_ms| Terms {
            product,
            validity,
            trips,
            duration_ms,
            price: 0,
            currency: Currency::EUR,
        };
        let products = vec![
            Product {
                terms: terms(ProductId::SINGLE_USE, Validity::Single, 0, 0),
                name: "Single trip".into(),
            },
            Product {
                terms: terms(ProductId::TEN_TRIP, Validity::Trips, 10, 0),
                name: "Ten trip".into(),
            },
            Product {
                terms: terms(ProductId::TWO_HOUR, Validity::Period, 0, two_hour_ms),
                name: "Two hour".into(),
            },
        ];
        Self {
            currency: Currency::EUR,
            time_zone: TimeZone::UTC,
            service_day_starts: Time::constant(4, 0, 0, 0),
            products,
            version: format!("builtin-{two_hour_ms}"),
            payg: None,
        }
    }

    /// Parses and checks a fares file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, FaresError> {
        let err = |at: Option<Range<usize>>, field: &str, message: String| FaresError {
            file: file.to_owned(),
            line: at.map_or(1, |r| line_of(text, r.start)),
            field: field.to_owned(),
            message,
        };
        let form: FileForm = toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .and_then(|at| field_at(text, at.start))
                .unwrap_or_else(|| "file".to_owned());
            err(e.span(), &field, e.message().trim().to_owned())
        })?;
        let (currency, time_zone, service_day_starts) = form
            .reckoning()
            .map_err(|(at, f, message)| err(Some(at), f, message))?;
        if form.product.is_empty() {
            return Err(err(None, "product", "no [[product]] in the file".into()));
        }
        if form.product.len() > MAX_PRODUCTS {
            return Err(err(
                Some(form.product[MAX_PRODUCTS].span()),
                "product",
                format!("at most {MAX_PRODUCTS} products"),
            ));
        }
        let mut products: Vec<Product> = Vec::with_capacity(form.product.len());
        for (i, p) in form.product.iter().enumerate() {
            let product = p
                .get_ref()
                .check(currency, &products)
                .map_err(|(at, f, message)| {
                    err(Some(at), &format!("product[{}].{f}", i + 1), message)
                })?;
            products.push(product);
        }
        let payg = match &form.payg {
            None => None,
            Some(section) => Some(
                section
                    .get_ref()
                    .check(currency)
                    .map_err(|(at, f, message)| err(Some(at), f, message))?,
            ),
        };
        if payg.is_none() {
            if let Some((i, p)) = form
                .product
                .iter()
                .enumerate()
                .find(|(_, p)| p.get_ref().validity.get_ref() == Validity::TopUp.as_str())
            {
                return Err(err(
                    Some(p.get_ref().validity.span()),
                    &format!("product[{}].validity", i + 1),
                    "a top_up product needs a [payg] section: a balance pays fares only there"
                        .into(),
                ));
            }
        }
        Ok(Self {
            currency,
            time_zone,
            service_day_starts,
            products,
            version: fingerprint(text),
            payg,
        })
    }

    /// Reads and parses a fares file.
    pub fn load(path: &std::path::Path) -> Result<Self, FaresError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FaresError {
            file: name.clone(),
            line: 1,
            field: "file".into(),
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&name, &text)
    }

    /// The product with id `id`.
    pub fn product(&self, id: ProductId) -> Option<&Product> {
        self.products.iter().find(|p| p.id() == id)
    }

    /// The products as a terminal's first answer (`select_pass`) lists them, in order.
    pub fn offers(&self) -> Vec<crate::message::Offer> {
        self.products
            .iter()
            .map(|p| crate::message::Offer {
                id: p.id(),
                name: p.name.clone(),
                price: p.terms.price,
                currency: p.terms.currency,
            })
            .collect()
    }

    /// The ids of every product, in order, for messages that list them.
    pub fn ids(&self) -> String {
        self.products
            .iter()
            .map(|p| p.id().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The service day that `at_ms` (Unix ms) belongs to.
    pub fn service_day(&self, at_ms: u64) -> ServiceDay {
        let at = i64::try_from(at_ms)
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let local = self.time_zone.to_datetime(at);
        let mut date = local.date();
        if local.time() < self.service_day_starts {
            date = date.yesterday().unwrap_or(date);
        }
        let next = date.tomorrow().unwrap_or(date);
        let ends_at_ms = self
            .time_zone
            .to_timestamp(next.to_datetime(self.service_day_starts))
            .ok()
            .and_then(|t| u64::try_from(t.as_millisecond()).ok())
            .unwrap_or(u64::MAX);
        ServiceDay { date, ends_at_ms }
    }

    /// When the service day of `date` starts, Unix ms (0 for a date before the epoch).
    pub fn day_starts_at_ms(&self, date: Date) -> u64 {
        self.time_zone
            .to_timestamp(date.to_datetime(self.service_day_starts))
            .ok()
            .and_then(|t| u64::try_from(t.as_millisecond()).ok())
            .unwrap_or(0)
    }
}

/// The field written at byte `at` of a fares file, as errors name it: the key on that line,
/// `product[N].` before it inside the N-th `[[product]]`.
fn field_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let headers: Vec<&str> = text[..start]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .collect();
    if headers.last() == Some(&"[payg]") {
        return Some(format!("payg.{key}"));
    }
    let product = headers.iter().filter(|l| **l == "[[product]]").count();
    Some(if product == 0 {
        key.to_owned()
    } else {
        format!("product[{product}].{key}")
    })
}

/// `HH:MM` as a time of day.
fn parse_hh_mm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
currency = "EUR"
time_zone = "Europe/Dublin"
service_day_starts = "04:00"

[[product]]
id = "SINGLE"
name = "Single"
price = 250
validity = "single"

[[product]]
id = "TEN"
name = "Ten journeys"
price = 2000
validity = "trips"
trips = 10

[[product]]
id = "DAY"
name = "Day pass"
price = 750
validity = "period"
duration = "24h"

[[product]]
id = "TODAY"
name = "Today"
price = 600
validity = "service_day"
"#;

    fn refused(text: &str) -> FaresError {
        Catalogue::parse("fares.toml", text).expect_err("refused")
    }

    #[test]
    fn parses_the_contract() {
        let c = Catalogue::parse("fares.toml", GOOD).expect("good");
        assert_eq!(c.currency.as_str(), "EUR");
        assert_eq!(c.products.len(), 4);
        let day = c.product(ProductId::from_static("DAY")).expect("day");
        assert_eq!(day.name, "Day pass");
        assert_eq!(day.terms.price, 750);
        assert_eq!(day.terms.validity, Validity::Period);
        assert_eq!(day.terms.duration_ms, 24 * 3_600_000);
        let ten = c.product(ProductId::from_static("TEN")).expect("ten");
        assert_eq!((ten.terms.validity, ten.terms.trips), (Validity::Trips, 10));
        assert_eq!(c.ids(), "SINGLE, TEN, DAY, TODAY");
        assert_eq!(c.version.len(), 16);
        assert_ne!(
            c.version,
            Catalogue::parse("f", &GOOD.replace("750", "800"))
                .expect("good")
                .version
        );
    }

    const PAYG: &str = r#"
[payg]
fare = 250
daily_cap = 700
weekly_cap = 3000
minimum_balance = -250

[[product]]
id = "TOPUP_10"
name = "Top up 10.00"
price = 1000
validity = "top_up"
"#;

    #[test]
    fn the_shipped_example_parses_with_pay_as_you_go() {
        let c = Catalogue::parse(
            "fares.example.toml",
            include_str!("../../bridge/fares.example.toml"),
        )
        .expect("the example is a valid catalogue");
        assert!(c.payg.is_some() && c.sells_top_ups());
    }

    #[test]
    fn pay_as_you_go_and_top_ups() {
        let c = Catalogue::parse("fares.toml", &format!("{GOOD}{PAYG}")).expect("good");
        let payg = c.payg.expect("payg");
        assert_eq!(
            (
                payg.fare,
                payg.daily_cap,
                payg.weekly_cap,
                payg.minimum_balance
            ),
            (250, Some(700), Some(3000), -250)
        );
        assert_eq!(payg.to_words(), "250 700 3000 -250 EUR");
        assert!(c.sells_top_ups());
        let top = c
            .product(ProductId::from_static("TOPUP_10"))
            .expect("top-up");
        assert_eq!(top.terms.validity, Validity::TopUp);
        assert!(!Catalogue::parse("f", GOOD).expect("good").sells_top_ups());

        let only = "currency = \"EUR\"\ntime_zone = \"UTC\"\n[payg]\nfare = 100\n[[product]]\nid = \"T\"\nname = \"T\"\nprice = 500\nvalidity = \"top_up\"\n";
        let c = Catalogue::parse("f", only).expect("caps are optional");
        assert_eq!(c.payg.expect("payg").to_words(), "100 - - 0 EUR");

        let e = refused(&format!(
            "{GOOD}{}",
            PAYG.replace("fare = 250", "fare = -1")
        ));
        assert_eq!(e.field, "payg.fare", "{e}");
        let e = refused(&format!(
            "{GOOD}{}",
            PAYG.replace("minimum_balance = -250", "minimum_balance = 5")
        ));
        assert_eq!(e.field, "payg.minimum_balance", "{e}");
        let e = refused(&format!(
            "{GOOD}{}",
            PAYG.replace("fare = 250", "fare = 250\nfair = 1")
        ));
        assert_eq!(e.field, "payg.fair", "{e}");
        let e = refused(&format!(
            "{GOOD}{}",
            PAYG.replace(
                "[payg]\nfare = 250\ndaily_cap = 700\nweekly_cap = 3000\nminimum_balance = -250\n",
                ""
            )
        ));
        assert_eq!(e.field, "product[5].validity", "{e}");
        assert!(e.message.contains("[payg]"), "{e}");
        let e = refused(&format!(
            "{GOOD}{}",
            PAYG.replace("price = 1000", "price = 0")
        ));
        assert_eq!(e.field, "product[5].price", "{e}");
        let e = refused(&GOOD.replace("id = \"DAY\"", "id = \"PAYG\""));
        assert_eq!(e.field, "product[3].id", "{e}");
        assert!(e.message.contains("reserved"), "{e}");
    }

    #[test]
    fn refusals_name_line_and_field() {
        let e = refused(&GOOD.replace("price = 750", "price = -5"));
        assert_eq!((e.line, e.field.as_str()), (22, "product[3].price"));
        assert!(e.message.contains("-5"), "{e}");
        assert_eq!(
            e.to_string(),
            format!("fares.toml:22: product[3].price: {}", e.message)
        );

        let e = refused(&GOOD.replace("id = \"TEN\"", "id = \"SINGLE\""));
        assert_eq!((e.line, e.field.as_str()), (13, "product[2].id"));
        assert!(e.message.contains("duplicate"), "{e}");

        let e = refused(&GOOD.replace("validity = \"single\"", "validity = \"monthly\""));
        assert_eq!((e.line, e.field.as_str()), (10, "product[1].validity"));

        let e = refused(&GOOD.replace("duration = \"24h\"", "trips = 3"));
        assert_eq!((e.line, e.field.as_str()), (24, "product[3].trips"));
        assert!(e.message.contains("not a period product"), "{e}");

        let e = refused(&GOOD.replace("trips = 10", "trips = 10\nduration = \"1h\""));
        assert_eq!(e.field, "product[2].duration");

        let e = refused(&GOOD.replace("trips = 10\n", ""));
        assert_eq!(e.field, "product[2].trips");

        let e = refused(&GOOD.replace("id = \"DAY\"", "id = \"day-pass\""));
        assert_eq!((e.line, e.field.as_str()), (20, "product[3].id"));

        let e = refused(&GOOD.replace("\"EUR\"", "\"euro\""));
        assert_eq!((e.line, e.field.as_str()), (2, "currency"));

        let e = refused(&GOOD.replace("Europe/Dublin", "Mars/Olympus"));
        assert_eq!((e.line, e.field.as_str()), (3, "time_zone"));

        let e = refused(&GOOD.replace("\"04:00\"", "\"25:00\""));
        assert_eq!((e.line, e.field.as_str()), (4, "service_day_starts"));

        let e = refused(&GOOD.replace("duration = \"24h\"", "duration = \"5s\""));
        assert_eq!(e.field, "product[3].duration");

        let e = refused(&GOOD.replace("name = \"Today\"", "name = \"\""));
        assert_eq!(e.field, "product[4].name");

        let e = refused(&GOOD.replace("price = 600", "price = 600\ncolour = \"red\""));
        assert_eq!((e.line, e.field.as_str()), (30, "product[4].colour"), "{e}");
        assert!(e.message.contains("colour"), "{e}");

        let e = refused(&GOOD.replace("price = 750", "price = 7.50"));
        assert_eq!((e.line, e.field.as_str()), (22, "product[3].price"), "{e}");

        let e = refused("currency = \"EUR\"\ntime_zone = \"UTC\"\n");
        assert_eq!(e.field, "product");

        let e = refused("currency = \"EUR\"\n[[product]\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn service_days_start_at_the_configured_hour() {
        let c = Catalogue::parse("fares.toml", GOOD).expect("good");
        // 2026-12-06 01:30 in Dublin (UTC in winter) belongs to 2026-12-05.
        let at = |s: &str| -> u64 {
            let ts: Timestamp = s.parse().expect("timestamp");
            u64::try_from(ts.as_millisecond()).expect("after 1970")
        };
        let night = c.service_day(at("2026-12-06T01:30:00Z"));
        assert_eq!(night.label(), "2026-12-05");
        assert_eq!(night.ends_at_ms, at("2026-12-06T04:00:00Z"));
        let morning = c.service_day(at("2026-12-06T04:00:00Z"));
        assert_eq!(morning.label(), "2026-12-06");
        assert_eq!(morning.ends_at_ms, at("2026-12-07T04:00:00Z"));
        // Summer time: Dublin is UTC+1, so the day starts at 03:00 UTC.
        let summer = c.service_day(at("2026-07-01T03:30:00Z"));
        assert_eq!(summer.label(), "2026-07-01");
        assert_eq!(summer.ends_at_ms, at("2026-07-02T03:00:00Z"));
        assert_eq!(c.day_starts_at_ms(summer.date), at("2026-07-01T03:00:00Z"));
        assert_eq!(c.day_starts_at_ms(night.date), at("2026-12-05T04:00:00Z"));
    }

    #[test]
    fn builtin_is_todays_three_products() {
        let c = Catalogue::builtin(7_200_000);
        let ids: Vec<_> = c.products.iter().map(Product::id).collect();
        assert_eq!(
            ids,
            [
                ProductId::SINGLE_USE,
                ProductId::TEN_TRIP,
                ProductId::TWO_HOUR
            ]
        );
        assert!(c.products.iter().all(|p| p.terms.price == 0));
        let two = c.product(ProductId::TWO_HOUR).expect("two hour");
        assert_eq!(two.terms.duration_ms, 7_200_000);
    }

    /// The words the decide function's `read_terms` pattern reads: validity, trips, duration,
    /// price and currency, space-separated.
    #[test]
    fn terms_as_words() {
        let c = Catalogue::parse("fares.toml", GOOD).expect("good");
        let words: Vec<String> = c.products.iter().map(|p| p.terms.to_words()).collect();
        assert_eq!(
            words,
            [
                "single 0 0 250 EUR",
                "trips 10 0 2000 EUR",
                "period 0 86400000 750 EUR",
                "service_day 0 0 600 EUR",
            ]
        );
    }

    #[test]
    fn prices_read_as_money() {
        assert_eq!(Currency::EUR.format(750), "7.50 EUR");
        assert_eq!(Currency::EUR.format(-5), "-0.05 EUR");
        assert_eq!(Currency::EUR.format(u64::MAX), "184467440737095516.15 EUR");
        let jpy = Currency::parse("JPY").expect("jpy");
        assert_eq!(jpy.format(300), "300 JPY");
        let kwd = Currency::parse("KWD").expect("kwd");
        assert_eq!(kwd.format(1_250), "1.250 KWD");
        assert_eq!(Currency::parse("eur"), None);
        assert_eq!(Currency::parse("EURO"), None);
    }
}
