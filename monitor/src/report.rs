//! `tapgate-monitor report`: a service day's takings per terminal and product, its fare revenue
//! paid as you go, computed from the event stream and checked against the day's revenue counters.
//!
//! The stream is the record of every sale (`pass-issued`), void (`pass-voided`), top-up
//! (`topped-up`) and entry paid from a balance (`fare-charged`), each carrying its price and the
//! service day it counts on; the counters (`tapgate:revenue:{DAY}`,
//! [`tapgate_protocol::fields::revenue`]) are kept in the same atomic steps. [`Tally`] adds up the
//! stream (pure); [`Tally::differences`] compares it with the counters field by field, and every
//! difference is printed, never hidden. A stream trimmed past the start of the day cannot account
//! for it: the report says so.
//!
//! Money in two senses: what terminals took (passes and top-ups: cash in), and revenue
//! recognised (passes sold, net of voids, plus fares charged to balances). A top-up is money held
//! for the rider until a gate charges a fare from it, so it is takings but not yet revenue.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use jiff::civil::Date;
use tapgate_protocol::fields::revenue as field;
use tapgate_protocol::payg::PAYG_PRODUCT;
use tapgate_protocol::{keys, Catalogue, Currency, Event, EventKind, ProductId};
use tapgate_runtime::redis::RedisSource;
use tapgate_runtime::RedisUrl;

use crate::stream::{self, StreamError, StreamId};

/// Entries read per `XRANGE`.
const PAGE: usize = 1000;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
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

    fn minus(self, other: Sales) -> Sales {
        Sales {
            count: self.count - other.count,
            amount: self.amount - other.amount,
        }
    }
}

/// What a terminal sold a product as: a pass, or stored value (a top-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Line {
    /// A pass (`pass-issued`, `pass-voided`): revenue when sold.
    Pass,
    /// A top-up (`topped-up`): money held for the rider, revenue only when fares are charged.
    TopUp,
}

impl Line {
    /// The CSV `kind` of its rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Line::Pass => "pass",
            Line::TopUp => "top_up",
        }
    }
}

/// Entries paid as you go and what they were charged, minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fares {
    /// Entries paid from a balance, capped ones (charged 0) included.
    pub entries: i64,
    /// What they were charged: fare revenue.
    pub amount: i64,
    /// Entries charged nothing: the day's or week's cap was reached.
    pub capped: i64,
}

impl Fares {
    fn add(&mut self, other: Fares) {
        self.entries += other.entries;
        self.amount += other.amount;
        self.capped += other.capped;
    }
}

/// One service day's sales, voids, top-ups and fares as the stream records them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Terminal → product and what it was sold as → its sales, net of voids: what terminals took.
    pub sales: BTreeMap<String, BTreeMap<(ProductId, Line), Sales>>,
    /// Voids: how many, and what the voided sales had taken.
    pub voids: Sales,
    /// Gate → the entries it let through paid as you go.
    pub fares: BTreeMap<String, Fares>,
    /// The currencies the day's events name (one, unless the catalogue's currency changed).
    pub currencies: BTreeSet<Currency>,
    /// Sales, top-ups and fares recorded without a service day (by versions before days were
    /// kept): not counted.
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

/// What an event adds to the day's money.
enum Counts {
    /// A pass sold (+1) or voided (-1).
    Pass(i64),
    /// A top-up sold.
    TopUp,
    /// An entry paid from a balance.
    Fare,
}

impl Tally {
    /// Counts `event` if it is a sale, void, top-up or fare of `day`.
    pub fn add(&mut self, day: Date, event: &Event) {
        let counts = match event.event {
            EventKind::PassIssued => Counts::Pass(1),
            EventKind::PassVoided => Counts::Pass(-1),
            EventKind::ToppedUp => Counts::TopUp,
            EventKind::FareCharged => Counts::Fare,
            _ => return,
        };
        let Some(event_day) = event.day else {
            if !matches!(counts, Counts::Pass(-1)) {
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
        let device = event
            .device
            .as_ref()
            .map_or_else(|| "(unknown)".to_owned(), |d| d.as_str().to_owned());
        if let Some(c) = event.currency {
            self.currencies.insert(c);
        }
        if let Counts::Fare = counts {
            self.fares.entry(device).or_default().add(Fares {
                entries: 1,
                amount: price,
                capped: i64::from(price == 0),
            });
            return;
        }
        let Some(product) = event.pass_type() else {
            // A sale, void or top-up names its product; one that does not cannot be counted.
            self.unreadable += 1;
            return;
        };
        let (line, sign) = match counts {
            Counts::Pass(sign) => (Line::Pass, sign),
            _ => (Line::TopUp, 1),
        };
        self.sales
            .entry(device)
            .or_default()
            .entry((product, line))
            .or_default()
            .add(sign, sign * price);
        if sign < 0 {
            self.voids.add(1, price);
        }
    }

    /// A terminal's takings over all products, top-ups included.
    pub fn terminal_total(&self, terminal: &str) -> Sales {
        self.terminal_lines(terminal, |_| true)
    }

    fn terminal_lines(&self, terminal: &str, lines: impl Fn(Line) -> bool) -> Sales {
        let mut t = Sales::default();
        for ((_, line), s) in self.sales.get(terminal).into_iter().flatten() {
            if lines(*line) {
                t.add(s.count, s.amount);
            }
        }
        t
    }

    /// The day's takings over all terminals, top-ups included: cash in.
    pub fn total(&self) -> Sales {
        self.lines(|_| true)
    }

    /// The day's top-ups: stored value sold, held for riders.
    pub fn top_ups(&self) -> Sales {
        self.lines(|l| l == Line::TopUp)
    }

    /// The day's pass sales, net of voids.
    pub fn pass_sales(&self) -> Sales {
        self.total().minus(self.top_ups())
    }

    fn lines(&self, lines: impl Fn(Line) -> bool + Copy) -> Sales {
        let mut t = Sales::default();
        for terminal in self.sales.keys() {
            let s = self.terminal_lines(terminal, lines);
            t.add(s.count, s.amount);
        }
        t
    }

    /// The day's entries paid as you go over all gates.
    pub fn fare_total(&self) -> Fares {
        let mut t = Fares::default();
        for f in self.fares.values() {
            t.add(*f);
        }
        t
    }

    /// Revenue recognised on the day: pass sales net of voids, plus fares charged to balances.
    pub fn recognised(&self) -> i64 {
        self.pass_sales().amount + self.fare_total().amount
    }

    /// Every revenue field with the value the stream gives it.
    pub fn expected(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        let total = self.total();
        let top_ups = self.top_ups();
        let fares = self.fare_total();
        for (name, value) in [
            (field::SALES, total.count),
            (field::AMOUNT, total.amount),
            (field::VOIDS, self.voids.count),
            (field::VOIDED, self.voids.amount),
            (field::TOP_UPS, top_ups.count),
            (field::TOPPED_UP, top_ups.amount),
            (field::FARES, fares.entries),
            (field::FARE_AMOUNT, fares.amount),
        ] {
            out.insert(name.to_owned(), value);
        }
        for (terminal, products) in &self.sales {
            let t = self.terminal_total(terminal);
            *out.entry(field::terminal_sales(terminal)).or_default() += t.count;
            *out.entry(field::terminal_amount(terminal)).or_default() += t.amount;
            for ((product, _), s) in products {
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
pub async fn make(redis: &RedisUrl, day: Date, day_starts_ms: u64) -> Result<Report, ReportError> {
    let source = RedisSource::at(redis, None);
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

/// One row of the report's text tables: two labels, a count and an amount.
fn text_row(out: &mut String, a: &str, b: &str, count: &str, amount: &str) {
    let _ = writeln!(out, "{a:<16} {:<32} {count:>7} {amount:>14}", clip(b, 32));
}

impl Report {
    /// The report for people: a line per terminal and product, totals, voids, fares per gate,
    /// a summary of takings and revenue, then the check.
    pub fn to_text(&self, catalogue: &Catalogue) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Service day {}", self.day);
        self.sales_text(&mut out, catalogue);
        let show_fares = catalogue.payg.is_some() || !self.tally.fares.is_empty();
        if show_fares {
            self.fares_text(&mut out, catalogue);
        }
        self.summary_text(&mut out, catalogue, show_fares);
        out.push_str(&self.notes());
        out
    }

    /// The sales table: a line per terminal and product with each terminal's total, the total
    /// of all, then the voids.
    fn sales_text(&self, out: &mut String, catalogue: &Catalogue) {
        let money = |minor: i64| self.currency(catalogue).format(minor);
        text_row(out, "terminal", "product", "sales", "amount");
        for (terminal, products) in &self.tally.sales {
            for ((product, _), s) in products {
                let name = catalogue
                    .product(*product)
                    .map_or_else(|| product.to_string(), |p| format!("{product} {}", p.name));
                text_row(out, terminal, &name, &s.count.to_string(), &money(s.amount));
            }
            let t = self.tally.terminal_total(terminal);
            let (count, amount) = (t.count.to_string(), money(t.amount));
            text_row(out, terminal, "all products", &count, &amount);
        }
        let t = self.tally.total();
        let (count, amount) = (t.count.to_string(), money(t.amount));
        text_row(out, "all terminals", "all products", &count, &amount);
        let _ = writeln!(
            out,
            "Voided: {} sale(s), {}",
            self.tally.voids.count,
            money(self.tally.voids.amount)
        );
    }

    /// The pay-as-you-go table: entries and fares per gate, and for all gates.
    fn fares_text(&self, out: &mut String, catalogue: &Catalogue) {
        let money = |minor: i64| self.currency(catalogue).format(minor);
        text_row(out, "gate", "paid as you go", "entries", "fares");
        for (gate, f) in &self.tally.fares {
            let (count, amount) = (f.entries.to_string(), money(f.amount));
            text_row(out, gate, "fares", &count, &amount);
        }
        let fares = self.tally.fare_total();
        let (count, amount) = (fares.entries.to_string(), money(fares.amount));
        text_row(out, "all gates", "fares", &count, &amount);
    }

    /// The summary of takings and revenue (fare revenue when `show_fares`).
    fn summary_text(&self, out: &mut String, catalogue: &Catalogue, show_fares: bool) {
        let money = |minor: i64| self.currency(catalogue).format(minor);
        let mut sum = |label: &str, count: Option<i64>, amount: Option<i64>| {
            let count = count.map(|c| c.to_string()).unwrap_or_default();
            let amount = amount.map(money).unwrap_or_default();
            let text = format!("{label:<49} {count:>7} {amount:>14}");
            let _ = writeln!(out, "{}", text.trim_end());
        };
        let t = self.tally.total();
        let top_ups = self.tally.top_ups();
        let passes = self.tally.pass_sales();
        sum("Terminal takings (cash in)", Some(t.count), Some(t.amount));
        sum(
            "  of which stored value sold (top-ups)",
            Some(top_ups.count),
            Some(top_ups.amount),
        );
        sum(
            "  of which pass sales, net of voids",
            Some(passes.count),
            Some(passes.amount),
        );
        if show_fares {
            let fares = self.tally.fare_total();
            sum(
                "Fare revenue from balances (pay as you go)",
                Some(fares.entries),
                Some(fares.amount),
            );
            sum(
                "  of which entries capped (charged 0)",
                Some(fares.capped),
                None,
            );
        }
        sum(
            "Revenue recognised (pass sales + fare revenue)",
            None,
            Some(self.tally.recognised()),
        );
    }

    /// The report as CSV: one row per terminal and product, then one per gate for the fares
    /// it charged; amounts in minor units and as written. `kind` says what a row's money is:
    /// `pass` and `top_up` rows are what terminals took, `fare` rows what balances were charged;
    /// `revenue_minor` is its share of revenue recognised (a top-up has none yet).
    pub fn to_csv(&self, catalogue: &Catalogue) -> String {
        let currency = self.currency(catalogue);
        let mut out = String::from(
            "day,terminal,product,name,sales,amount_minor,amount,currency,kind,revenue_minor\n",
        );
        let mut row = |device: &str, product: &str, name: &str, s: Sales, kind: &str| {
            let revenue = if kind == Line::TopUp.as_str() {
                0
            } else {
                s.amount
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                self.day,
                csv(device),
                product,
                csv(name),
                s.count,
                s.amount,
                csv(&currency.format(s.amount)),
                currency,
                kind,
                revenue
            );
        };
        for (terminal, products) in &self.tally.sales {
            for ((product, line), s) in products {
                let name = catalogue.product(*product).map_or("", |p| p.name.as_str());
                row(terminal, product.as_str(), name, *s, line.as_str());
            }
        }
        for (gate, f) in &self.tally.fares {
            let s = Sales {
                count: f.entries,
                amount: f.amount,
            };
            row(gate, PAYG_PRODUCT.as_str(), "Pay as you go", s, "fare");
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
                "{} sale(s), top-up(s) or fare(s) in the stream carry no service day (recorded \
                 by an older bridge) and are not counted.",
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
    fn top_ups_are_takings_and_fares_are_revenue() {
        let mut t = Tally::default();
        let fare = |gate: &str, price: u64| {
            let mut e = sale(EventKind::FareCharged, gate, "PAYG", price, DAY);
            e.balance = Some(0);
            e
        };
        for e in [
            sale(EventKind::PassIssued, "t1", "DAY", 750, DAY),
            sale(EventKind::ToppedUp, "t1", "TOPUP_10", 1000, DAY),
            sale(EventKind::ToppedUp, "t2", "TOPUP_10", 1000, DAY),
            fare("g1", 250),
            fare("g1", 250),
            fare("g2", 200),
            fare("g2", 0),
            // Another day's fare counts there.
            sale(
                EventKind::FareCharged,
                "g1",
                "PAYG",
                250,
                DAY.tomorrow().expect("day"),
            ),
        ] {
            t.add(DAY, &e);
        }
        assert_eq!(
            t.total(),
            Sales {
                count: 3,
                amount: 2750
            }
        );
        assert_eq!(
            t.top_ups(),
            Sales {
                count: 2,
                amount: 2000
            }
        );
        assert_eq!(
            t.pass_sales(),
            Sales {
                count: 1,
                amount: 750
            }
        );
        assert_eq!(
            t.fare_total(),
            Fares {
                entries: 4,
                amount: 700,
                capped: 1
            }
        );
        assert_eq!(t.recognised(), 1450);
        let e = t.expected();
        let get = |f: &str| e.get(f).copied();
        assert_eq!(get(field::SALES), Some(3));
        assert_eq!(get(field::AMOUNT), Some(2750));
        assert_eq!(get(field::TOP_UPS), Some(2));
        assert_eq!(get(field::TOPPED_UP), Some(2000));
        assert_eq!(get(field::FARES), Some(4));
        assert_eq!(get(field::FARE_AMOUNT), Some(700));
        assert_eq!(get(&field::product_amount("TOPUP_10")), Some(2000));
        assert_eq!(get(&field::terminal_amount("t1")), Some(1750));
        // Gates sell nothing: their fares are not terminal takings.
        assert_eq!(get(&field::terminal_sales("g1")), None);
        assert_eq!(get(&field::product_sales("PAYG")), None);
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
