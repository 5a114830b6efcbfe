//! A service day's revenue, as the dashboard shows it.
//!
//! The bridge counts every sale on its service day's hash ([`keys::revenue`]): totals, and a
//! count and an amount per product and per terminal; a void ([`super::void`]) takes its sale off
//! those and onto `voids` and `voided`. A top-up is a sale too (the terminal took the money), and
//! also counted on `top_ups` and `topped_up`: stored value held for the rider. An entry paid as
//! you go counts on `fares` and `fare_amount`: the fare revenue charged to balances. The totals
//! name what terminals took (`amount`), of which top-ups (`topped_up`) and pass sales
//! (`pass_amount`), the fares, and the revenue recognised: pass sales plus fares. [`read`] turns one day's hash into JSON with each amount
//! both in minor units and as people read it (`7.50 EUR`), products named by the fare catalogue
//! the monitor was given (the bridge's fares file, or the built-in one). The catalogue also says
//! which service day it is now, so `GET /api/revenue` shows today's unless asked for another day.
//!
//! Field names are read back through the protocol's own formatters ([`id_in`]), so this file
//! spells none of them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use redis::aio::ConnectionLike;
use serde::Deserialize;
use serde_json::{json, Value};
use tapgate_protocol::fares::FaresError;
use tapgate_protocol::fields::revenue;
use tapgate_protocol::{keys, Catalogue, Currency, DeviceId, ProductId};

use super::auth::Viewer;
use super::error::WebError;
use super::void::day_label;
use super::AppState;

/// The two-hour pass's window of the built-in catalogue; only its product names and service
/// days matter here.
const BUILTIN_TWO_HOUR_MS: u64 = 7_200_000;

/// The catalogue named by the `fares` setting, or the built-in one without it.
pub(super) fn load_catalogue(fares: Option<&Path>) -> Result<Catalogue, FaresError> {
    match fares {
        Some(path) => Catalogue::load(path),
        None => Ok(Catalogue::builtin(BUILTIN_TWO_HOUR_MS)),
    }
}

/// The id in `field` when `field` is what `make` names for some id: the formatter's text on
/// either side of the id is the protocol's, so nothing here repeats it.
fn id_in(field: &str, make: fn(&str) -> String) -> Option<&str> {
    let shape = make("\u{0}");
    let (before, after) = shape.split_once('\u{0}')?;
    field
        .strip_prefix(before)?
        .strip_suffix(after)
        .filter(|id| !id.is_empty())
}

/// Sales and amount of one product or terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Takings {
    sales: i64,
    amount: i64,
}

/// One day's revenue hash, read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Day {
    totals: BTreeMap<&'static str, i64>,
    products: BTreeMap<ProductId, Takings>,
    terminals: BTreeMap<DeviceId, Takings>,
}

impl Day {
    /// Sorts the fields of `hash` into totals, products and terminals; a field that is none of
    /// these, names an invalid id or holds no number is left out.
    fn from_hash(hash: &HashMap<String, String>) -> Self {
        let mut day = Day {
            totals: revenue::ALL.iter().map(|f| (*f, 0)).collect(),
            ..Day::default()
        };
        for (field, value) in hash {
            let Ok(n) = value.parse::<i64>() else {
                continue;
            };
            if let Some(total) = revenue::ALL.iter().find(|f| **f == field) {
                day.totals.insert(total, n);
            } else if let Some(p) = id_in(field, revenue::product_sales).and_then(ProductId::parse)
            {
                day.products.entry(p).or_default().sales = n;
            } else if let Some(p) = id_in(field, revenue::product_amount).and_then(ProductId::parse)
            {
                day.products.entry(p).or_default().amount = n;
            } else if let Some(t) =
                id_in(field, revenue::terminal_sales).and_then(|t| DeviceId::new(t).ok())
            {
                day.terminals.entry(t).or_default().sales = n;
            } else if let Some(t) =
                id_in(field, revenue::terminal_amount).and_then(|t| DeviceId::new(t).ok())
            {
                day.terminals.entry(t).or_default().amount = n;
            }
        }
        day
    }

    /// As JSON: every catalogue product in catalogue order (those not sold at zero), then
    /// products only the hash knows, then the terminals by name.
    fn to_json(&self, label: &str, today: &str, catalogue: &Catalogue) -> Value {
        let cur = catalogue.currency;
        let total = |f: &str| self.totals.get(f).copied().unwrap_or(0);
        let mut products: Vec<Value> = catalogue
            .products
            .iter()
            .map(|p| {
                let t = self.products.get(&p.id()).copied().unwrap_or_default();
                row(p.id().as_str(), Some(&p.name), t, cur)
            })
            .collect();
        products.extend(
            self.products
                .iter()
                .filter(|(id, _)| catalogue.product(**id).is_none())
                .map(|(id, t)| row(id.as_str(), None, *t, cur)),
        );
        let terminals: Vec<Value> = self
            .terminals
            .iter()
            .map(|(id, t)| row(id.as_str(), None, *t, cur))
            .collect();
        // Terminals took passes and top-ups; a top-up is held for the rider, and becomes
        // revenue only as fares are charged from it.
        let pass_sales = total(revenue::SALES) - total(revenue::TOP_UPS);
        let pass_amount = total(revenue::AMOUNT) - total(revenue::TOPPED_UP);
        let recognised = pass_amount + total(revenue::FARE_AMOUNT);
        json!({
            "day": label,
            "today": label == today,
            "currency": cur,
            "payg": catalogue.payg.is_some(),
            "totals": {
                "sales": total(revenue::SALES),
                "amount": total(revenue::AMOUNT),
                "amount_text": cur.format(total(revenue::AMOUNT)),
                "voids": total(revenue::VOIDS),
                "voided": total(revenue::VOIDED),
                "voided_text": cur.format(total(revenue::VOIDED)),
                "top_ups": total(revenue::TOP_UPS),
                "topped_up": total(revenue::TOPPED_UP),
                "topped_up_text": cur.format(total(revenue::TOPPED_UP)),
                "pass_sales": pass_sales,
                "pass_amount": pass_amount,
                "pass_amount_text": cur.format(pass_amount),
                "fares": total(revenue::FARES),
                "fare_amount": total(revenue::FARE_AMOUNT),
                "fare_amount_text": cur.format(total(revenue::FARE_AMOUNT)),
                "recognised": recognised,
                "recognised_text": cur.format(recognised),
            },
            "products": products,
            "terminals": terminals,
        })
    }
}

fn row(id: &str, name: Option<&str>, t: Takings, cur: Currency) -> Value {
    json!({"id": id, "name": name, "sales": t.sales, "amount": t.amount,
           "amount_text": cur.format(t.amount)})
}

/// The revenue of service day `label` (`YYYY-MM-DD`); `today` is today's label.
pub(super) async fn read(
    conn: &mut impl ConnectionLike,
    catalogue: &Catalogue,
    label: &str,
    today: &str,
) -> Result<Value, WebError> {
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::revenue(label))
        .query_async(conn)
        .await?;
    Ok(Day::from_hash(&hash).to_json(label, today, catalogue))
}

/// Query of `GET /api/revenue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevenueQuery {
    /// The service day, `YYYY-MM-DD` (default: today's).
    pub day: Option<String>,
}

/// `GET /api/revenue[?day=YYYY-MM-DD]`: a service day's revenue, today's by default.
pub(super) async fn route(
    State(state): State<AppState>,
    _: Viewer,
    q: Result<Query<RevenueQuery>, QueryRejection>,
) -> Result<Json<Value>, WebError> {
    let Query(q) = q.map_err(|e| WebError::BadRequest(e.body_text()))?;
    let today = state.catalogue.service_day(state.clock.now_ms()).label();
    let day = match q.day.as_deref() {
        None => today.clone(),
        Some(d) => day_label(d).ok_or_else(|| {
            WebError::BadRequest(
                "day must be a calendar date as YYYY-MM-DD, e.g. 2026-03-01".into(),
            )
        })?,
    };
    Ok(Json(
        read(&mut state.redis.clone(), &state.catalogue, &day, &today).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(String, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn ids_come_back_out_of_the_protocols_field_names() {
        let f = revenue::product_sales("DAY");
        assert_eq!(id_in(&f, revenue::product_sales), Some("DAY"));
        assert_eq!(id_in(&f, revenue::product_amount), None);
        assert_eq!(id_in(&f, revenue::terminal_sales), None);
        assert_eq!(id_in(revenue::SALES, revenue::product_sales), None);
        assert_eq!(
            id_in(&revenue::product_sales(""), revenue::product_sales),
            None
        );
    }

    #[test]
    fn a_day_reads_totals_products_and_terminals() {
        let catalogue = Catalogue::builtin(1);
        let h = hash(&[
            (revenue::SALES.into(), "3"),
            (revenue::AMOUNT.into(), "950"),
            (revenue::VOIDS.into(), "1"),
            (revenue::VOIDED.into(), "200"),
            (revenue::product_sales("TEN_TRIP"), "1"),
            (revenue::product_amount("TEN_TRIP"), "750"),
            (revenue::product_sales("NIGHT"), "2"),
            (revenue::product_amount("NIGHT"), "200"),
            (revenue::product_sales("bad id"), "9"),
            (revenue::terminal_sales("t1"), "3"),
            (revenue::terminal_amount("t1"), "950"),
            ("unrelated".into(), "5"),
            (revenue::terminal_amount("t2"), "many"),
        ]);
        let v = Day::from_hash(&h).to_json("2026-01-02", "2026-01-02", &catalogue);
        assert_eq!(v["today"], true);
        assert_eq!(v["currency"], "EUR");
        assert_eq!(
            v["totals"],
            json!({"sales": 3, "amount": 950, "amount_text": "9.50 EUR", "voids": 1,
                   "voided": 200, "voided_text": "2.00 EUR",
                   "top_ups": 0, "topped_up": 0, "topped_up_text": "0.00 EUR",
                   "pass_sales": 3, "pass_amount": 950, "pass_amount_text": "9.50 EUR",
                   "fares": 0, "fare_amount": 0, "fare_amount_text": "0.00 EUR",
                   "recognised": 950, "recognised_text": "9.50 EUR"})
        );
        assert_eq!(v["payg"], false);
        let ids: Vec<&str> = v["products"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["id"].as_str())
            .collect();
        assert_eq!(ids, ["SINGLE_USE", "TEN_TRIP", "TWO_HOUR", "NIGHT"]);
        assert_eq!(
            v["products"][1],
            json!({"id": "TEN_TRIP", "name": "Ten trip", "sales": 1, "amount": 750,
                   "amount_text": "7.50 EUR"})
        );
        assert_eq!(v["products"][0]["sales"], 0);
        assert_eq!(v["products"][3]["name"], Value::Null);
        assert_eq!(
            v["terminals"],
            json!([{"id": "t1", "name": null, "sales": 3, "amount": 950,
                    "amount_text": "9.50 EUR"}])
        );
    }

    #[test]
    fn top_ups_are_taken_but_held_and_fares_are_revenue() {
        let h = hash(&[
            (revenue::SALES.into(), "3"),
            (revenue::AMOUNT.into(), "2750"),
            (revenue::TOP_UPS.into(), "2"),
            (revenue::TOPPED_UP.into(), "2000"),
            (revenue::FARES.into(), "4"),
            (revenue::FARE_AMOUNT.into(), "700"),
        ]);
        let v = Day::from_hash(&h).to_json("2026-01-02", "2026-01-02", &Catalogue::builtin(1));
        let t = &v["totals"];
        assert_eq!(
            (&t["amount"], &t["topped_up"]),
            (&json!(2750), &json!(2000))
        );
        assert_eq!(
            (&t["pass_sales"], &t["pass_amount"]),
            (&json!(1), &json!(750))
        );
        assert_eq!(
            (&t["fares"], &t["fare_amount_text"]),
            (&json!(4), &json!("7.00 EUR"))
        );
        assert_eq!(
            (&t["recognised"], &t["recognised_text"]),
            (&json!(1450), &json!("14.50 EUR"))
        );
    }

    #[test]
    fn an_empty_day_is_all_zeros() {
        let v = Day::from_hash(&HashMap::new()).to_json(
            "2026-01-01",
            "2026-01-02",
            &Catalogue::builtin(1),
        );
        assert_eq!(v["today"], false);
        assert_eq!(v["totals"]["amount_text"], "0.00 EUR");
        assert_eq!(v["terminals"], json!([]));
    }
}
