//! Pay as you go: stored value on a card, a fare at each entry, capped per service day and week.
//!
//! A catalogue with a `[payg]` section ([`Payg`]) charges an entry the card has no usable pass
//! for: `fare`, but never more than what is left of the day's cap (`daily_cap`, per service day)
//! or the week's (`weekly_cap`, Monday to Sunday service days). With fare 250 and a daily cap of
//! 700, four entries in one service day cost 250, 250, 200 and 0. A card whose balance would fall
//! below `minimum_balance` (0, or negative to allow a journey in debt) is refused with
//! `insufficient_funds`. Money reaches a card through `top_up` products, sold at terminals like
//! any product.
//!
//! ```toml
//! [payg]
//! fare = 250
//! daily_cap = 700        # optional
//! weekly_cap = 3000      # optional
//! minimum_balance = 0    # optional, 0 or below
//! ```
//!
//! The card's [`Wallet`] keeps its balance, what was topped up and charged in all (so
//! `topped_up = balance + charged` holds for every card, exactly), and what was charged per
//! service day and per week. Per-day and per-week totals are kept for [`HISTORY_DAYS`] days
//! before the newest week a card was charged in; an entry on an older day (an offline entry
//! arriving weeks late) is charged nothing, as its caps can no longer be known.

use std::collections::BTreeMap;

pub use jiff::civil::Date;
use jiff::ToSpan;
use serde::Deserialize;

use crate::fares::{Catalogue, Currency, MAX_PRICE};
use crate::ids::ProductId;

/// The product an entry paid as you go reports as its pass (no catalogue product may use it).
pub const PAYG_PRODUCT: ProductId = ProductId::from_static("PAYG");

/// How many days before the start of the newest week a card was charged in its per-day and
/// per-week totals are kept.
pub const HISTORY_DAYS: i64 = 28;

/// A catalogue's pay-as-you-go terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payg {
    /// What an entry costs before caps, minor units.
    pub fare: u64,
    /// The most charged per card and service day, if capped.
    pub daily_cap: Option<u64>,
    /// The most charged per card and week (Monday to Sunday service days), if capped.
    pub weekly_cap: Option<u64>,
    /// The lowest balance an entry may leave (0 or below).
    pub minimum_balance: i64,
    /// The catalogue's currency.
    pub currency: Currency,
}

impl Payg {
    /// What an entry costs given what the card was already charged that service day and week:
    /// the fare, cut to what is left of either cap.
    pub fn charge(&self, day_charged: u64, week_charged: u64) -> u64 {
        let mut c = self.fare;
        if let Some(cap) = self.daily_cap {
            c = c.min(cap.saturating_sub(day_charged));
        }
        if let Some(cap) = self.weekly_cap {
            c = c.min(cap.saturating_sub(week_charged));
        }
        c
    }

    /// The terms as one line of words, as the decide function takes them: `fare daily_cap
    /// weekly_cap minimum_balance currency`, an absent cap written as `-`.
    pub fn to_words(&self) -> String {
        let cap = |c: Option<u64>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
        format!(
            "{} {} {} {} {}",
            self.fare,
            cap(self.daily_cap),
            cap(self.weekly_cap),
            self.minimum_balance,
            self.currency
        )
    }
}

/// The `[payg]` section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PaygForm {
    pub(crate) fare: toml::Spanned<i64>,
    #[serde(default)]
    pub(crate) daily_cap: Option<toml::Spanned<i64>>,
    #[serde(default)]
    pub(crate) weekly_cap: Option<toml::Spanned<i64>>,
    #[serde(default)]
    pub(crate) minimum_balance: Option<toml::Spanned<i64>>,
}

impl PaygForm {
    /// The checked terms, or the field at fault with its byte span and what is wrong.
    pub(crate) fn check(
        &self,
        currency: Currency,
    ) -> Result<Payg, (std::ops::Range<usize>, &'static str, String)> {
        let amount = |v: &toml::Spanned<i64>, field: &'static str, least: u64| {
            u64::try_from(*v.get_ref())
                .ok()
                .filter(|n| (least..=MAX_PRICE).contains(n))
                .ok_or_else(|| {
                    (
                        v.span(),
                        field,
                        format!(
                            "{} is not an amount: an integer from {least} to {MAX_PRICE} in minor units",
                            v.get_ref()
                        ),
                    )
                })
        };
        let fare = amount(&self.fare, "payg.fare", 1)?;
        let daily_cap = self
            .daily_cap
            .as_ref()
            .map(|c| amount(c, "payg.daily_cap", 1))
            .transpose()?;
        let weekly_cap = self
            .weekly_cap
            .as_ref()
            .map(|c| amount(c, "payg.weekly_cap", 1))
            .transpose()?;
        let minimum_balance = match &self.minimum_balance {
            None => 0,
            Some(m) => {
                let v = *m.get_ref();
                if !(-(MAX_PRICE as i64)..=0).contains(&v) {
                    return Err((
                        m.span(),
                        "payg.minimum_balance",
                        format!("{v} is not a minimum balance: 0 or below, down to -{MAX_PRICE}"),
                    ));
                }
                v
            }
        };
        Ok(Payg {
            fare,
            daily_cap,
            weekly_cap,
            minimum_balance,
            currency,
        })
    }
}

/// The service day and week a moment's fare is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FareDay {
    /// The service day.
    pub day: Date,
    /// The Monday its week starts on.
    pub week: Date,
    /// When the service day starts and ends (Unix ms, end exclusive).
    pub starts_at_ms: u64,
    /// See `starts_at_ms`.
    pub ends_at_ms: u64,
}

impl FareDay {
    /// The oldest day a wallet keeps once it is charged in this day's week.
    pub fn keep_from(&self) -> Date {
        keep_from(self.week)
    }

    /// As the decide function takes it: `day week keep_from starts_at ends_at`.
    pub fn to_words(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.day,
            self.week,
            self.keep_from(),
            self.starts_at_ms,
            self.ends_at_ms
        )
    }
}

/// The Monday of the week `day` is in.
pub fn week_of(day: Date) -> Date {
    let back = i64::from(day.weekday().to_monday_zero_offset());
    day.checked_sub(back.days()).unwrap_or(day)
}

/// The oldest day kept once a card is charged in the week starting `week`.
pub fn keep_from(week: Date) -> Date {
    week.checked_sub(HISTORY_DAYS.days()).unwrap_or(week)
}

impl Catalogue {
    /// The service day and week that `at_ms` (Unix ms) belongs to, for fares.
    pub fn fare_day(&self, at_ms: u64) -> FareDay {
        let day = self.service_day(at_ms);
        FareDay {
            day: day.date,
            week: week_of(day.date),
            starts_at_ms: self.day_starts_at_ms(day.date),
            ends_at_ms: day.ends_at_ms,
        }
    }

    /// Whether the catalogue sells any `top_up` product.
    pub fn sells_top_ups(&self) -> bool {
        self.products
            .iter()
            .any(|p| p.terms.validity == crate::fares::Validity::TopUp)
    }
}

/// A card's stored value, as the rules model keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wallet {
    /// What the card holds, minor units (below 0 only down to a `minimum_balance`).
    pub balance: i64,
    /// Every top-up, in all.
    pub topped_up: u64,
    /// Every fare charged, in all.
    pub charged: u64,
    /// Charged per service day (days from `kept_from` on).
    pub days: BTreeMap<Date, u64>,
    /// Charged per week, by its Monday (weeks from `kept_from` on).
    pub weeks: BTreeMap<Date, u64>,
    /// Totals of days before this were dropped; an entry on such a day is charged nothing.
    pub kept_from: Option<Date>,
}

/// What an entry paid as you go did to a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Charged `charged` (0 once capped); the balance afterwards.
    Paid {
        /// This entry's fare after caps.
        charged: u64,
        /// The balance after it.
        balance: i64,
    },
    /// The balance cannot pay: nothing changed.
    Insufficient {
        /// The balance, unchanged.
        balance: i64,
    },
}

impl Wallet {
    /// Charges one entry on `fare_day` under `payg`, or refuses it for want of funds.
    pub fn charge(&mut self, payg: &Payg, fare_day: &FareDay) -> Charge {
        let day = fare_day.day;
        let charged = if self.kept_from.is_some_and(|k| day < k) {
            0
        } else {
            let d = self.days.get(&day).copied().unwrap_or(0);
            let w = self.weeks.get(&fare_day.week).copied().unwrap_or(0);
            payg.charge(d, w)
        };
        let after = self.balance - i64::try_from(charged).unwrap_or(i64::MAX);
        if charged > 0 && after < payg.minimum_balance {
            return Charge::Insufficient {
                balance: self.balance,
            };
        }
        if charged > 0 {
            self.balance = after;
            self.charged += charged;
            *self.days.entry(day).or_default() += charged;
            let week = self.weeks.entry(fare_day.week).or_default();
            let new_week = *week == 0;
            *week += charged;
            if new_week {
                let keep = fare_day.keep_from();
                if self.kept_from.is_none_or(|k| keep > k) {
                    self.days.retain(|d, _| *d >= keep);
                    self.weeks.retain(|w, _| *w >= keep);
                    self.kept_from = Some(keep);
                }
            }
        }
        Charge::Paid {
            charged,
            balance: self.balance,
        }
    }

    /// Adds a top-up of `amount`.
    pub fn top_up(&mut self, amount: u64) {
        self.balance += i64::try_from(amount).unwrap_or(i64::MAX);
        self.topped_up += amount;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payg(fare: u64, daily: Option<u64>, weekly: Option<u64>, min: i64) -> Payg {
        Payg {
            fare,
            daily_cap: daily,
            weekly_cap: weekly,
            minimum_balance: min,
            currency: Currency::EUR,
        }
    }

    fn day(d: Date) -> FareDay {
        FareDay {
            day: d,
            week: week_of(d),
            starts_at_ms: 0,
            ends_at_ms: 0,
        }
    }

    #[test]
    fn four_entries_under_a_daily_cap_cost_250_250_200_0() {
        let p = payg(250, Some(700), Some(3000), 0);
        let mut w = Wallet::default();
        w.top_up(1000);
        let d = day(Date::constant(2026, 12, 7));
        let charged: Vec<u64> = (0..4)
            .map(|_| match w.charge(&p, &d) {
                Charge::Paid { charged, .. } => charged,
                Charge::Insufficient { .. } => panic!("funds"),
            })
            .collect();
        assert_eq!(charged, [250, 250, 200, 0]);
        assert_eq!(w.balance, 300);
        assert_eq!(w.topped_up as i64, w.balance + w.charged as i64);
    }

    #[test]
    fn the_weekly_cap_spans_days_and_resets_on_monday() {
        let p = payg(250, Some(700), Some(1000), 0);
        let mut w = Wallet::default();
        w.top_up(10_000);
        // Monday 2026-12-07 .. Sunday 2026-12-13.
        for d in 7..=8 {
            for _ in 0..3 {
                w.charge(&p, &day(Date::constant(2026, 12, d)));
            }
        }
        assert_eq!(w.weeks[&Date::constant(2026, 12, 7)], 1000);
        assert_eq!(
            w.charge(&p, &day(Date::constant(2026, 12, 13))),
            Charge::Paid {
                charged: 0,
                balance: 9000
            }
        );
        assert_eq!(
            w.charge(&p, &day(Date::constant(2026, 12, 14))),
            Charge::Paid {
                charged: 250,
                balance: 8750
            }
        );
    }

    #[test]
    fn a_balance_that_cannot_pay_is_refused_and_nothing_changes() {
        let p = payg(250, None, None, -250);
        let mut w = Wallet::default();
        w.top_up(100);
        let d = day(Date::constant(2026, 12, 7));
        assert_eq!(
            w.charge(&p, &d),
            Charge::Paid {
                charged: 250,
                balance: -150
            }
        );
        let before = w.clone();
        assert_eq!(w.charge(&p, &d), Charge::Insufficient { balance: -150 });
        assert_eq!(w, before);
    }

    #[test]
    fn old_totals_are_dropped_and_their_days_charge_nothing() {
        let p = payg(250, Some(700), None, -10_000);
        let mut w = Wallet::default();
        let old = Date::constant(2026, 10, 5);
        w.charge(&p, &day(old));
        w.charge(&p, &day(Date::constant(2026, 12, 7)));
        assert_eq!(w.kept_from, Some(Date::constant(2026, 11, 9)));
        assert!(!w.days.contains_key(&old));
        assert_eq!(
            w.charge(&p, &day(old)),
            Charge::Paid {
                charged: 0,
                balance: -500
            }
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        assert_eq!(
            week_of(Date::constant(2026, 12, 6)),
            Date::constant(2026, 11, 30)
        );
        assert_eq!(
            week_of(Date::constant(2026, 12, 7)),
            Date::constant(2026, 12, 7)
        );
    }
}
