//! `tapgate-monitor report`: a service day's takings per terminal and product, computed from the
//! event stream and checked against the day's revenue counters.
//!
//! The stream is the record of every sale (`pass-issued`) and every void (`pass-voided`), each
//! carrying its price and the service day its revenue counts on; the counters
//! (`tapgate:revenue:{DAY}`, [`tapgate_protocol::fields::revenue`]) are kept in the same atomic
//! steps. [`Tally`] adds up the stream (pure); [`Tally::differences`] compares it with the
//! counters field by field, and every difference is printed, never hidden. A stream trimmed past
//! the start of the day cannot account for it: the report says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use jiff::civil::Date;
use tapgate_protocol::fields::revenue as field;
use tapgate_protocol::{keys, Catalogue, Currency, Event, EventKind, ProductId};
use tapgate_runtime::redis::RedisSource;

use crate::stream::{self, StreamError, StreamId};

/// Entries read per `XRANGE`.
const PAGE: usize = 1000;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The Redis URL is not one.
    #[error(transparent)]
    Url(#[from] tapgate_runtime::redis::RedisUrlError),
    /// Redis failed or the stream could not be read.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Redis failed reading the counters.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Sales (net of voids) and what they took, minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sales {
    /// Passes sold less passes voided.
    pub count: i64,
    /// What they took less what the voided ones had taken.
    pub amount: i64,
}

impl Sales {
    fn add(&mut self, count: i64, amount: i64) {
        self.count += count;
        self.amount += amount;
    }
}

/// One service day's sales and voids as the stream records them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Terminal → product → its sales, net of voids.
    pub sales: BTreeMap<String, BTreeMap<ProductId, Sales>>,
    /// Voids: how many, and what the voided sales had taken.
    pub voids: Sales,
    /// The currencies the day's events name (one, unless the catalogue's currency changed).
    pub currencies: BTreeSet<Currency>,
    /// Sales recorded without a service day (by versions before days were kept): not counted.
    pub undated: u64,
    /// Entries that could not be read as events.
    pub unreadable: u64,
}

/// A revenue field whose counter is not what the stream adds up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The field of `tapgate:revenue:{DAY}`.
    pub field: String,
    /// What the stream adds up to.
    pub stream: i64,
    /// What the counter holds (0 when absent).
    pub counters: i64,
}

impl Tally {
    /// Counts `event` if it is a sale or void of `day`.
    pub fn add(&mut self, day: Date, event: &Event) {
        let sign = match event.event {
            EventKind::PassIssued => 1,
            EventKind::PassVoided => -1,
            _ => return,
        };
        let Some(event_day) = event.day else {
            if sign == 1 {
                self.undated += 1;
            }
            return;
        };
        if event_day != day {
            return;
        }
        let price = event
            .price
            .map_or(0, |p| i64::try_from(p).unwrap_or(i64::MAX));
        let terminal = event
            .device
            .as_ref()
            .map_or_else(|| "(unknown)".to_owned(), |d| d.as_str().to_owned());
        let Some(product) = event.pass_type() else {
            // A sale or void names its product; one that does not cannot be counted.
            self.unreadable += 1;
            return;
        };
        self.sales
            .entry(terminal)
            .or_default()
            .entry(product)
            .or_default()
            .add(sign, sign * price);
        if sign < 0 {
            self.voids.add(1, price);
        }
        if let Some(c) = event.currency {
            self.currencies.insert(c);
        }
    }

    /// A terminal's sales over all products.
    pub fn terminal_total(&self, terminal: &str) -> Sales {
        let mut t = Sales::default();
        for s in self
            .sales
            .get(terminal)
            .into_iter()
            .flat_map(BTreeMap::values)
        {
            t.add(s.count, s.amount);
        }
        t
    }

    /// The day's sales over all terminals.
    pub fn total(&self) -> Sales {
        let mut t = Sales::default();
        for terminal in self.sales.keys() {
            let s = self.terminal_total(terminal);
            t.add(s.count, s.amount);
        }
        t
    }

    /// Every revenue field with the value the stream gives it.
    pub fn expected(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        let total = self.total();
        out.insert(field::SALES.to_owned(), total.count);
        out.insert(field::AMOUNT.to_owned(), total.amount);
        out.insert(field::VOIDS.to_owned(), self.voids.count);
        out.insert(field::VOIDED.to_owned(), self.voids.amount);
        for (terminal, products) in &self.sales {
            let t = self.terminal_total(terminal);
            *out.entry(field::terminal_sales(terminal)).or_default() += t.count;
            *out.entry(field::terminal_amount(terminal)).or_default() += t.amount;
            for (product, s) in products {
                *out.entry(field::product_sales(product.as_str()))
                    .or_default() += s.count;
                *out.entry(field::product_amount(product.as_str()))
                    .or_default() += s.amount;
            }
        }
        out
    }

    /// The fields where `counters` (the revenue hash) and the stream disagree; an absent field
    /// counts as 0.
    pub fn differences(&self, counters: &HashMap<String, i64>) -> Vec<Difference> {
        let expected = self.expected();
        let names: BTreeSet<&String> = expected.keys().chain(counters.keys()).collect();
        names
            .into_iter()
            .filter_map(|name| {
                let stream = expected.get(name).copied().unwrap_or(0);
                let counters = counters.get(name).copied().unwrap_or(0);
                (stream != counters).then(|| Difference {
                    field: name.clone(),
                    stream,
                    counters,
                })
            })
            .collect()
    }
}

/// A report: the day, its tally, the counters' differences from it, and whether the stream
/// reaches back to the start of the day.
#[derive(Debug, Clone)]
pub struct Report {
    /// The service day.
    pub day: Date,
    /// What the stream says.
    pub tally: Tally,
    /// Where the counters disagree.
    pub differences: Vec<Difference>,
    /// The stream's oldest entry, when the stream was trimmed and begins after the day did (so
    /// the day's early sales may be missing from the tally).
    pub trimmed_after: Option<StreamId>,
}

/// Reads the stream and the day's counters from `redis` and makes `day`'s report;
/// `day_starts_ms` is when the service day began (to tell whether the stream still reaches it).
pub async fn make(redis: &str, day: Date, day_starts_ms: u64) -> Result<Report, ReportError> {
    let source = RedisSource::new(redis, None)?;
    let mut conn = stream::connect(&source, Duration::from_secs(30))
        .await
        .map_err(StreamError::from)?;
    let mut tally = Tally::default();
    let mut from = StreamId::ZERO;
    let mut first = None;
    let mut exclusive = false;
    loop {
        let page = stream::range_page(&mut conn, from, exclusive, None, PAGE).await?;
        for entry in &page {
            first.get_or_insert(entry.id);
            match &entry.event {
                Ok(e) => tally.add(day, e),
                Err(_) => tally.unreadable += 1,
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => {
                from = last.id;
                exclusive = true;
            }
            _ => break,
        }
    }
    let counters: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(keys::revenue(&day.to_string()))
        .query_async(&mut conn)
        .await?;
    let differences = tally.differences(&counters);
    // Entries were removed (trimmed) and what is left begins after the day did: some of the
    // day's may be gone. A stream that merely began after the day did is complete.
    let trimmed_after = first.filter(|f| f.ms > day_starts_ms);
    let trimmed_after = if lost_entries(&mut conn).await {
        trimmed_after
    } else {
        None
    };
    Ok(Report {
        day,
        tally,
        differences,
        trimmed_after,
    })
}

/// Whether entries were ever removed from the stream: XINFO's `entries-added` (Redis 7) exceeds
/// its length. False for a stream that does not exist yet, or a Redis that does not say.
async fn lost_entries(conn: &mut redis::aio::MultiplexedConnection) -> bool {
    let info: Result<HashMap<String, redis::Value>, _> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(keys::EVENTS_STREAM)
        .query_async(conn)
        .await;
    let number = |v: Option<&redis::Value>| match v {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    };
    info.ok().is_some_and(|info| {
        matches!(
            (number(info.get("entries-added")), number(info.get("length"))),
            (Some(added), Some(length)) if added > length
        )
    })
}

impl Report {
    /// The report for people: a line per terminal and product, totals, voids, then the check.
    pub fn to_text(&self, catalogue: &Catalogue) -> String {
        let money = |minor: i64| self.currency(catalogue).format(minor);
        let mut out = String::new();
        let _ = writeln!(out, "Service day {}", self.day);
        let _ = writeln!(
            out,
            "{:<16} {:<32} {:>7} {:>14}",
            "terminal", "product", "sales", "amount"
        );
        for (terminal, products) in &self.tally.sales {
            for (product, s) in products {
                let name = catalogue
                    .product(*product)
                    .map_or_else(|| product.to_string(), |p| format!("{product} {}", p.name));
                let _ = writeln!(
                    out,
                    "{:<16} {:<32} {:>7} {:>14}",
                    terminal,
                    clip(&name, 32),
                    s.count,
                    money(s.amount)
                );
            }
            let t = self.tally.terminal_total(terminal);
            let _ = writeln!(
                out,
                "{:<16} {:<32} {:>7} {:>14}",
                terminal,
                "all products",
                t.count,
                money(t.amount)
            );
        }
        let t = self.tally.total();
        let _ = writeln!(
            out,
            "{:<16} {:<32} {:>7} {:>14}",
            "all terminals",
            "all products",
            t.count,
            money(t.amount)
        );
        let _ = writeln!(
            out,
            "Voided: {} sale(s), {}",
            self.tally.voids.count,
            money(self.tally.voids.amount)
        );
        out.push_str(&self.notes());
        out
    }

    /// The report as CSV: one row per terminal and product, amounts in minor units and as
    /// written.
    pub fn to_csv(&self, catalogue: &Catalogue) -> String {
        let currency = self.currency(catalogue);
        let mut out =
            String::from("day,terminal,product,name,sales,amount_minor,amount,currency\n");
        for (terminal, products) in &self.tally.sales {
            for (product, s) in products {
                let name = catalogue.product(*product).map_or("", |p| p.name.as_str());
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    self.day,
                    csv(terminal),
                    product,
                    csv(name),
                    s.count,
                    s.amount,
                    csv(&currency.format(s.amount)),
                    currency
                );
            }
        }
        out
    }

    /// What the check found, for people: agreement, each difference, a trimmed stream, entries
    /// that could not be counted.
    pub fn notes(&self) -> String {
        let mut out = String::new();
        let key = keys::revenue(&self.day.to_string());
        if self.differences.is_empty() {
            let _ = writeln!(out, "Counters ({key}) agree with the event stream.");
        } else {
            let _ = writeln!(
                out,
                "DIFFERENCES between the counters ({key}) and the event stream:"
            );
            for d in &self.differences {
                let _ = writeln!(
                    out,
                    "  {}: counters {}, stream {} ({:+})",
                    d.field,
                    d.counters,
                    d.stream,
                    d.counters - d.stream
                );
            }
        }
        if let Some(first) = self.trimmed_after {
            let _ = writeln!(
                out,
                "The event stream was trimmed and now begins at {first}, after this day began: \
                 the day's earliest events may be gone, and with them what they took."
            );
        }
        if self.tally.currencies.len() > 1 {
            let names: Vec<&str> = self.tally.currencies.iter().map(Currency::as_str).collect();
            let _ = writeln!(
                out,
                "The day's sales are in more than one currency ({}): amounts are added as they \
                 are.",
                names.join(", ")
            );
        }
        if self.tally.undated > 0 {
            let _ = writeln!(
                out,
                "{} sale(s) in the stream carry no service day (recorded by an older bridge) and \
                 are not counted.",
                self.tally.undated
            );
        }
        if self.tally.unreadable > 0 {
            let _ = writeln!(
                out,
                "{} stream entries could not be read as events.",
                self.tally.unreadable
            );
        }
        out
    }

    /// Whether the counters and the stream agree.
    pub fn agrees(&self) -> bool {
        self.differences.is_empty()
    }

    /// The day's currency: the events', else the catalogue's.
    fn currency(&self, catalogue: &Catalogue) -> Currency {
        self.tally
            .currencies
            .first()
            .copied()
            .unwrap_or(catalogue.currency)
    }
}

/// `text` cut to `n` characters.
fn clip(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{DeviceId, PassInfo};

    const DAY: Date = Date::constant(2026, 12, 6);

    fn sale(kind: EventKind, terminal: &str, product: &str, price: u64, day: Date) -> Event {
        let mut e = Event::new(kind, 1);
        e.device = DeviceId::new(terminal).ok();
        e.pass = Some(PassInfo {
            pass_type: ProductId::parse(product).expect("product"),
            trips_remaining: None,
            expires_at: None,
            remaining_ms: None,
        });
        e.price = Some(price);
        e.currency = Currency::parse("EUR");
        e.day = Some(day);
        e
    }

    #[test]
    fn sales_and_voids_of_the_day_add_up_per_terminal_and_product() {
        let mut t = Tally::default();
        for e in [
            sale(EventKind::PassIssued, "t1", "DAY", 750, DAY),
            sale(EventKind::PassIssued, "t1", "DAY", 750, DAY),
            sale(EventKind::PassIssued, "t2", "SINGLE", 250, DAY),
            sale(EventKind::PassVoided, "t1", "DAY", 750, DAY),
            // Another day's sale, and an entry, count for nothing.
            sale(
                EventKind::PassIssued,
                "t1",
                "DAY",
                750,
                DAY.tomorrow().expect("day"),
            ),
            sale(EventKind::PassUsed, "t1", "DAY", 750, DAY),
        ] {
            t.add(DAY, &e);
        }
        let e = t.expected();
        let get = |f: &str| e.get(f).copied();
        assert_eq!(get(field::SALES), Some(2));
        assert_eq!(get(field::AMOUNT), Some(1000));
        assert_eq!(get(field::VOIDS), Some(1));
        assert_eq!(get(field::VOIDED), Some(750));
        assert_eq!(get(&field::product_amount("DAY")), Some(750));
        assert_eq!(get(&field::terminal_sales("t2")), Some(1));
        assert_eq!(
            t.terminal_total("t1"),
            Sales {
                count: 1,
                amount: 750
            }
        );
    }

    #[test]
    fn every_difference_is_found_and_an_absent_counter_is_zero() {
        let mut t = Tally::default();
        t.add(DAY, &sale(EventKind::PassIssued, "t1", "DAY", 750, DAY));
        let mut counters: HashMap<String, i64> = t.expected().into_iter().collect();
        assert!(t.differences(&counters).is_empty());
        counters.insert(field::AMOUNT.to_owned(), 700);
        counters.insert(field::terminal_sales("t9"), 1);
        counters.remove(&field::product_sales("DAY"));
        let d = t.differences(&counters);
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["amount", "product:DAY:sales", "terminal:t9:sales"]);
        assert_eq!((d[0].stream, d[0].counters), (750, 700));
    }

    #[test]
    fn an_undated_sale_is_counted_apart_and_csv_fields_are_quoted() {
        let mut t = Tally::default();
        let mut old = sale(EventKind::PassIssued, "t1", "DAY", 750, DAY);
        old.day = None;
        t.add(DAY, &old);
        assert_eq!((t.undated, t.total()), (1, Sales::default()));
        assert_eq!(csv("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(csv("plain"), "plain");
    }
}
