//! What a fault run must account for, read from Redis afterwards: the events in the stream by
//! kind, the revenue their sales add up to per service day, what top-ups put on cards and charges
//! took, the counters, and every card's wallet. Shared by the failover and partition suites.
#![allow(dead_code)]

use std::collections::HashMap;

use tapgate_protocol::{fields, keys};
use tapgate_runtime::redis::RedisLink;

/// The priced catalogue the fault runs sell and their riders buy from: the built-in products
/// with prices, and pay as you go with a top-up, so half the riders keep money on their cards
/// through the faults.
pub const FARES: &str = r#"
currency = "EUR"
time_zone = "UTC"

[[product]]
id = "SINGLE_USE"
name = "Single"
price = 250
validity = "single"

[[product]]
id = "TEN_TRIP"
name = "Ten trips"
price = 1800
validity = "trips"
trips = 10

[[product]]
id = "TWO_HOUR"
name = "Two hours"
price = 350
validity = "period"
duration = "1m"

[[product]]
id = "TOPUP_5"
name = "Top up 5.00"
price = 500
validity = "top_up"

[payg]
fare = 200
daily_cap = 600
"#;

/// Revenue by service day and field, as the stream's sales add it up.
pub type Revenue = HashMap<String, HashMap<String, i64>>;

/// The stream, added up.
#[derive(Debug, Default)]
pub struct Tally {
    /// Events by kind.
    pub counts: HashMap<String, i64>,
    /// What its sales, top-ups and charges add up to per service day, by revenue field.
    pub revenue: Revenue,
    /// What its top-ups put on cards.
    pub added: i64,
    /// What its charges took from them.
    pub taken: i64,
}

/// Reads the whole event stream.
pub async fn tally(link: &mut RedisLink) -> Tally {
    use tapgate_protocol::fields::revenue as field;
    let mut t = Tally::default();
    let mut start = "-".to_owned();
    loop {
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(keys::EVENTS_STREAM)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(5000)
            .query_async(link)
            .await
            .expect("XRANGE");
        let Some(last) = page.ids.last() else { break };
        for entry in &page.ids {
            let fields: std::collections::BTreeMap<String, String> = entry
                .map
                .keys()
                .filter_map(|k| Some((k.clone(), entry.get::<String>(k)?)))
                .collect();
            let event = tapgate_protocol::Event::from_stream_map(&fields);
            let kind = event
                .as_ref()
                .map_or_else(|_| "?".to_owned(), |e| e.event.as_str().to_owned());
            *t.counts.entry(kind).or_insert(0) += 1;
            let event = event.ok();
            if let Some(e) = event
                .as_ref()
                .filter(|e| e.event == tapgate_protocol::EventKind::FareCharged)
            {
                let day = e.day.expect("a charge names its service day").to_string();
                let price = i64::try_from(e.price.expect("a charge has a price")).expect("price");
                let r = t.revenue.entry(day).or_default();
                t.taken += price;
                *r.entry(field::FARES.to_owned()).or_default() += 1;
                if price > 0 {
                    *r.entry(field::FARE_AMOUNT.to_owned()).or_default() += price;
                }
            }
            if let Some(e) = event.filter(|e| {
                [
                    tapgate_protocol::EventKind::PassIssued,
                    tapgate_protocol::EventKind::ToppedUp,
                ]
                .contains(&e.event)
            }) {
                let top_up = e.event == tapgate_protocol::EventKind::ToppedUp;
                let day = e.day.expect("a sale names its service day").to_string();
                let price = i64::try_from(e.price.expect("a sale has a price")).expect("price");
                let product = e.pass_type().expect("a sale names its product");
                let terminal = e.device.expect("a sale names its terminal");
                let r = t.revenue.entry(day).or_default();
                for (f, v) in [
                    (field::SALES.to_owned(), 1),
                    (field::AMOUNT.to_owned(), price),
                    (field::product_sales(product.as_str()), 1),
                    (field::product_amount(product.as_str()), price),
                    (field::terminal_sales(terminal.as_str()), 1),
                    (field::terminal_amount(terminal.as_str()), price),
                ] {
                    *r.entry(f).or_default() += v;
                }
                if top_up {
                    t.added += price;
                    *r.entry(field::TOP_UPS.to_owned()).or_default() += 1;
                    *r.entry(field::TOPPED_UP.to_owned()).or_default() += price;
                }
            }
        }
        start = format!("({}", last.id);
    }
    t
}

/// The sum of a counters hash's fields.
pub async fn counter_sum(link: &mut RedisLink, key: &str) -> i64 {
    let h: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(link)
        .await
        .expect("HGETALL");
    h.values().sum()
}

/// Every card's wallet, checked.
#[derive(Debug, Default)]
pub struct Wallets {
    /// Wallets whose top-ups are not their balance plus their charges: key, top-ups, the sum.
    pub unbalanced: Vec<(String, i64, i64)>,
    /// Their balances, top-ups and charges in all.
    pub held: i64,
    pub topped_up: i64,
    pub charged: i64,
}

/// Reads every card's wallet.
pub async fn wallets(link: &mut RedisLink) -> Wallets {
    let names: Vec<String> = redis::cmd("KEYS")
        .arg("tapgate:card:*:wallet")
        .query_async(link)
        .await
        .expect("KEYS");
    let mut out = Wallets::default();
    for key in names {
        let w: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(link)
            .await
            .expect("HGETALL");
        let get = |f: &str| w.get(f).map_or(0, |v| v.parse::<i64>().expect("an amount"));
        let (topped_up, balance, charged) = (
            get(fields::wallet::TOPPED_UP),
            get(fields::wallet::BALANCE),
            get(fields::wallet::CHARGED),
        );
        if topped_up != balance + charged {
            out.unbalanced.push((key, topped_up, balance + charged));
        }
        out.held += balance;
        out.topped_up += topped_up;
        out.charged += charged;
    }
    out
}
