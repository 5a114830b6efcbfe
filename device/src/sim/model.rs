//! What the simulator expects: a model of every card and terminal, fed through
//! [`tapgate_protocol::rules::decide_timed`] with each message's stamp: a waiting message late
//! past the decision window is `stale` and changes nothing; an offline entry is settled at the
//! time it happened. The products, their terms and the service days come from the same fare
//! catalogue the bridge reads, so the model agrees with the bridge for any catalogue: a button
//! is the product's terms, a `select_pass` lists the catalogue, a sale is at its price.
//!
//! A card is never in flight on two devices at once and a terminal serves one rider's sale at a
//! time, so the state a decision sees is the state the model holds. Time is the only race: the
//! prediction is made at both the send time and the receive time, and either is accepted — which
//! is the leniency needed at a pass's expiry (and sale-timeout) boundaries. After a match the
//! model takes the verdict's state, with a pass's end taken from the decision itself.
//!
//! The simulator never blocks a card, but an operator may, on the dashboard, while it runs. A
//! decision that matches only with the card's deny-list state flipped is an operator's action,
//! not a rules error: the model follows it and it is counted apart from mismatches.

use tapgate_protocol::payg::Wallet;
use tapgate_protocol::rules::{self, Input, Pass, Sale, Settings, State, TimeSettings, Verdict};
use tapgate_protocol::{Catalogue, Offer, Outcome, PassInfo, Stamp};

/// The model of one card.
#[derive(Debug, Clone, Default)]
pub struct CardModel {
    /// Its pass, as the bridge should hold it.
    pub pass: Option<Pass>,
    /// Whether an operator has put it on the deny list (as far as decisions have shown).
    pub blocked: bool,
    /// Its pay-as-you-go wallet.
    pub wallet: Wallet,
}

/// Outcomes compared for what matters: the kind, pass type, trips, reasons, selection, prices
/// and the products on sale.
pub fn same_outcome(actual: &Outcome, expected: &Outcome) -> bool {
    let pass_eq = |a: &PassInfo, b: &PassInfo| {
        a.pass_type == b.pass_type && a.trips_remaining == b.trips_remaining
    };
    match (actual, expected) {
        // An offline entry's time is the device's stamp, not a race: its window is exact.
        (Outcome::EntrySettled { pass: a }, Outcome::EntrySettled { pass: b }) => {
            pass_eq(a, b) && a.expires_at == b.expires_at
        }
        (Outcome::Granted { pass: a }, Outcome::Granted { pass: b })
        | (Outcome::AlreadyHasPass { pass: a }, Outcome::AlreadyHasPass { pass: b }) => {
            pass_eq(a, b)
        }
        (
            Outcome::PassIssued {
                pass: a,
                price: pa,
                currency: ca,
            },
            Outcome::PassIssued {
                pass: b,
                price: pb,
                currency: cb,
            },
        ) => pass_eq(a, b) && (pa, ca) == (pb, cb),
        (Outcome::SelectPass { products: a }, Outcome::SelectPass { products: b }) => a == b,
        (Outcome::Denied { reason: a }, Outcome::Denied { reason: b })
        | (Outcome::UnpaidEntry { reason: a }, Outcome::UnpaidEntry { reason: b }) => a == b,
        (
            Outcome::TapToConfirm {
                selected: a,
                price: pa,
                currency: ca,
            },
            Outcome::TapToConfirm {
                selected: b,
                price: pb,
                currency: cb,
            },
        ) => (a, pa, ca) == (b, pb, cb),
        (Outcome::Rejected { reason: a, .. }, Outcome::Rejected { reason: b, .. }) => a == b,
        (a, b) => a.name() == b.name(),
    }
}

/// The result of checking one decision.
#[derive(Debug)]
pub enum Check {
    /// As predicted; the model is updated.
    Match,
    /// As predicted once an operator's block or unblock of the card is taken into account; the
    /// model now holds the card's new deny-list state.
    OperatorAction,
    /// Not as predicted; the model follows the actual outcome as far as it can.
    Mismatch(String),
}

/// The rules' settings, the fare catalogue, and the message's stamp.
#[derive(Debug, Clone, Copy)]
pub struct Timing<'a> {
    /// The bridge's fare catalogue: products on sale and service days.
    pub catalogue: &'a Catalogue,
    /// How long a sale waits for its next step, ms (the bridge's setting).
    pub sale_timeout_ms: u64,
    /// Decision window and clock limits.
    pub time: TimeSettings,
    /// The message's stamp (`None`: decided on the bridge's clock).
    pub stamp: Option<Stamp>,
}

impl Timing<'_> {
    /// The rules' settings for a decision at `now`: a service-day pass sold then lasts until the
    /// end of the catalogue's service day.
    pub fn settings(&self, now: u64) -> Settings {
        let fare_time = rules::fare_time(self.stamp, now, None, self.time).unwrap_or(now);
        Settings {
            sale_timeout_ms: self.sale_timeout_ms,
            day_ends_at: self.catalogue.service_day(now).ends_at_ms,
            payg: self.catalogue.payg,
            fare_day: self.catalogue.fare_day(fare_time),
            top_ups: self.catalogue.sells_top_ups(),
        }
    }

    /// The catalogue's products as a `select_pass` lists them.
    pub fn offers(&self) -> Vec<Offer> {
        self.catalogue.offers()
    }

    /// The verdict for `input` on `state` with the bridge's clock at `now`; a refusal of the
    /// message's time is a `rejected` outcome that changes nothing. A `select_pass` lists the
    /// catalogue, as the bridge fills it in.
    pub fn decide(&self, input: &Input, state: &State, now: u64) -> Verdict {
        let when = rules::When {
            stamp: self.stamp,
            now,
            skew_ms: None,
        };
        match rules::decide_timed(input, state, false, when, self.settings(now), self.time) {
            Ok(t) => match t.verdict.outcome {
                Outcome::SelectPass { .. } => Verdict {
                    outcome: Outcome::SelectPass {
                        products: self.offers(),
                    },
                    ..t.verdict
                },
                _ => t.verdict,
            },
            Err(reason) => Verdict::new(
                Outcome::Rejected {
                    reason,
                    detail: String::new(),
                },
                state.pass.clone(),
                state.sale.clone(),
                state,
            ),
        }
    }
}

/// Predicts `input` on `card`'s and `sale`'s state at `sent_ms` and `recv_ms`, compares with
/// `actual`, and updates `card` and `sale` (the tapped card's model; the terminal's sale).
pub fn check(
    input: &Input,
    card: &mut CardModel,
    sale: &mut Option<Sale>,
    actual: &Outcome,
    sent_ms: u64,
    recv_ms: u64,
    timing: Timing<'_>,
) -> Check {
    let state = State {
        pass: card.pass.clone(),
        blocked: card.blocked,
        sale: sale.clone(),
        wallet: card.wallet.clone(),
    };
    let early = timing.decide(input, &state, sent_ms);
    let times = decision_times(&state, sent_ms, recv_ms, timing);
    let chosen: Option<Verdict> = times
        .iter()
        .map(|&t| timing.decide(input, &state, t))
        .find(|v| same_outcome(actual, &v.outcome));
    // Only a card tap can show the deny list; then try the card as an operator may have left it.
    let card_tap = matches!(input, Input::GateTap(_) | Input::TerminalTap(_));
    let flipped = State {
        blocked: !card.blocked,
        ..state.clone()
    };
    let operator = || {
        times
            .iter()
            .map(|&t| timing.decide(input, &flipped, t))
            .find(|v| same_outcome(actual, &v.outcome))
    };
    match (chosen, card_tap.then(operator).flatten()) {
        (Some(v), _) => {
            apply(v, card, sale, actual);
            Check::Match
        }
        (None, Some(v)) => {
            card.blocked = flipped.blocked;
            apply(v, card, sale, actual);
            Check::OperatorAction
        }
        (None, None) => {
            let why = format!(
                "{input:?} with {state:?}: expected {}, got {}",
                early.outcome.name(),
                serde_json::to_string(actual).unwrap_or_default()
            );
            // Follow reality so one mismatch does not cascade.
            match actual {
                Outcome::PassIssued { pass, .. }
                | Outcome::Granted { pass }
                | Outcome::EntrySettled { pass } => {
                    card.pass = follow(pass, sent_ms, timing);
                    *sale = None;
                }
                Outcome::SelectPass { .. } | Outcome::TapToConfirm { .. } => {}
                _ => *sale = None,
            }
            Check::Mismatch(why)
        }
    }
}

/// The bridge decided somewhere between sending and receiving: the times at which the rules can
/// give a different answer are the two ends and, inside, the pass's expiry and the last moment
/// before a waiting message turns stale. A tap sent before a two-hour pass ends and decided just
/// after, still inside the decision window, is rightly `expired`, though it was `granted` when
/// sent and would be `stale` by the time its answer arrived.
fn decision_times(state: &State, sent_ms: u64, recv_ms: u64, timing: Timing<'_>) -> Vec<u64> {
    let mut times = vec![sent_ms, recv_ms];
    let inside = |t: u64| t > sent_ms && t < recv_ms;
    if let Some(end) = state.pass.as_ref().and_then(|p| p.expires_at) {
        times.extend(
            [end.saturating_sub(1), end]
                .into_iter()
                .filter(|&t| inside(t)),
        );
    }
    if let Some(stamp) = timing.stamp {
        let last_fresh = stamp.time.saturating_add(timing.time.decision_window_ms);
        times.extend(Some(last_fresh).filter(|&t| inside(t)));
    }
    times
}

fn apply(v: Verdict, card: &mut CardModel, sale: &mut Option<Sale>, actual: &Outcome) {
    let mut pass = v.pass;
    // The bridge's own time decides where a window or a service day ends.
    if let (
        Some(p),
        Outcome::Granted { pass: info }
        | Outcome::EntrySettled { pass: info }
        | Outcome::PassIssued { pass: info, .. },
    ) = (pass.as_mut(), actual)
    {
        if info.expires_at.is_some() {
            p.expires_at = info.expires_at;
        }
    }
    card.pass = pass;
    card.wallet = v.wallet;
    *sale = v.sale;
}

/// A model pass matching what the bridge reported (after a mismatch); none for a product the
/// catalogue does not have.
fn follow(info: &PassInfo, now: u64, timing: Timing<'_>) -> Option<Pass> {
    let terms = timing.catalogue.product(info.pass_type)?.terms;
    let mut p = Pass::issue(terms, now, timing.settings(now).day_ends_at);
    if let Some(t) = info.trips_remaining {
        if t == 0 {
            return None;
        }
        p.trips = t;
    }
    p.expires_at = info.expires_at;
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{CardId, Currency, DenyReason, ProductId};

    const DAY: ProductId = ProductId::from_static("DAY");
    const TODAY: ProductId = ProductId::from_static("TODAY");

    fn card(s: &str) -> CardId {
        CardId::new(s).expect("card")
    }

    /// The built-in catalogue with a two-hour pass of `two_hour_ms`.
    fn builtin(two_hour_ms: u64) -> Catalogue {
        Catalogue::builtin(two_hour_ms)
    }

    /// A catalogue of products only a fares file knows, with service days from 04:00 UTC.
    fn fares() -> Catalogue {
        Catalogue::parse(
            "fares.toml",
            r#"
currency = "EUR"
time_zone = "UTC"
service_day_starts = "04:00"

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
"#,
        )
        .expect("fares")
    }

    /// Decided on the bridge's clock with the default time limits.
    fn unstamped(catalogue: &Catalogue) -> Timing<'_> {
        Timing {
            catalogue,
            sale_timeout_ms: 30_000,
            time: TimeSettings::default(),
            stamp: None,
        }
    }

    fn terms(catalogue: &Catalogue, id: ProductId) -> tapgate_protocol::Terms {
        catalogue.product(id).expect("product").terms
    }

    /// A card holding a fresh ten-trip pass.
    fn ten_trip_card() -> CardModel {
        CardModel {
            pass: Some(Pass::issue(
                terms(&builtin(7_200_000), ProductId::TEN_TRIP),
                0,
                u64::MAX,
            )),
            ..CardModel::default()
        }
    }

    fn ten_trip_info(left: u32) -> PassInfo {
        PassInfo {
            pass_type: ProductId::TEN_TRIP,
            trips_remaining: Some(left),
            expires_at: None,
            remaining_ms: None,
        }
    }

    #[test]
    fn two_hour_boundary_is_lenient_either_way() {
        let c = builtin(1000);
        let s = unstamped(&c);
        let mut pass = Pass::issue(terms(&c, ProductId::TWO_HOUR), 0, u64::MAX);
        pass.expires_at = Some(5000);
        let input = Input::GateTap(card("A"));
        // Sent just before the end, decided just after: both answers are right.
        for actual in [
            Outcome::Granted {
                pass: PassInfo {
                    pass_type: ProductId::TWO_HOUR,
                    trips_remaining: None,
                    expires_at: Some(5000),
                    remaining_ms: Some(1),
                },
            },
            Outcome::Denied {
                reason: DenyReason::Expired,
            },
        ] {
            let mut m = CardModel {
                pass: Some(pass.clone()),
                ..CardModel::default()
            };
            let mut sale = None;
            assert!(matches!(
                check(&input, &mut m, &mut sale, &actual, 4999, 5001, s),
                Check::Match
            ));
        }
        // Well inside the window, a denial is a mismatch.
        let mut m = CardModel {
            pass: Some(pass),
            ..CardModel::default()
        };
        let denied = Outcome::Denied {
            reason: DenyReason::Expired,
        };
        assert!(matches!(
            check(&input, &mut m, &mut None, &denied, 100, 200, s),
            Check::Mismatch(_)
        ));
    }

    #[test]
    fn an_operators_block_and_unblock_are_followed_not_mismatched() {
        let c = builtin(7_200_000);
        let s = unstamped(&c);
        let mut m = ten_trip_card();
        let input = Input::GateTap(card("A"));
        let blocked = Outcome::Denied {
            reason: DenyReason::Blocked,
        };
        assert!(matches!(
            check(&input, &mut m, &mut None, &blocked, 1, 2, s),
            Check::OperatorAction
        ));
        assert!(m.blocked);
        // Still blocked: as predicted now.
        assert!(matches!(
            check(&input, &mut m, &mut None, &blocked, 3, 4, s),
            Check::Match
        ));
        // Unblocked: the pass is intact (a denial used no trip).
        assert!(matches!(
            check(
                &input,
                &mut m,
                &mut None,
                &Outcome::Granted {
                    pass: ten_trip_info(9)
                },
                5,
                6,
                s
            ),
            Check::OperatorAction
        ));
        assert!(!m.blocked);
        // A denial for another reason is still a mismatch.
        let no_pass = Outcome::Denied {
            reason: DenyReason::NoPass,
        };
        assert!(matches!(
            check(&input, &mut m, &mut None, &no_pass, 7, 8, s),
            Check::Mismatch(_)
        ));
    }

    #[test]
    fn expired_inside_the_decision_window_is_a_match() {
        let c = builtin(7_200_000);
        let s = Timing {
            stamp: Some(Stamp::online(1_000)),
            ..unstamped(&c)
        };
        let expired = Outcome::Denied {
            reason: DenyReason::Expired,
        };
        // Sent at 1,000 and answered at 4,000 by a two-hour pass ending at `end`.
        let judge = |end: u64| {
            let mut pass = Pass::issue(terms(&c, ProductId::TWO_HOUR), 0, u64::MAX);
            pass.expires_at = Some(end);
            let mut m = CardModel {
                pass: Some(pass),
                ..CardModel::default()
            };
            let input = Input::GateTap(card("A"));
            check(&input, &mut m, &mut None, &expired, 1_000, 4_000, s)
        };
        // Granted when sent, stale when answered, expired if decided between 1,500 and 2,500.
        assert!(matches!(judge(1_500), Check::Match));
        // Expired is impossible when the pass outlived the whole interval.
        assert!(matches!(judge(10_000), Check::Mismatch(_)));
    }

    #[test]
    fn ten_trip_counts_must_match() {
        let c = builtin(7_200_000);
        let s = unstamped(&c);
        let mut m = ten_trip_card();
        let wrong = Outcome::Granted {
            pass: ten_trip_info(8),
        };
        let input = Input::GateTap(card("A"));
        assert!(matches!(
            check(&input, &mut m, &mut None, &wrong, 1, 2, s),
            Check::Mismatch(_)
        ));
        // The model followed reality: 8 left, so the next entry leaves 7.
        let next = Outcome::Granted {
            pass: ten_trip_info(7),
        };
        assert!(matches!(
            check(&input, &mut m, &mut None, &next, 3, 4, s),
            Check::Match
        ));
    }

    /// A sale of a product only the fares file knows: the listing, the price at the button and
    /// at the sale must be the catalogue's; a service-day pass ends where the bridge says.
    #[test]
    fn sales_follow_the_catalogue() {
        let c = fares();
        let s = unstamped(&c);
        let now = 1_800_000_000_000;
        let buyer = card("B");
        let mut m = CardModel::default();
        let mut sale = None;
        let tap = Input::TerminalTap(buyer.clone());
        let listed = Outcome::SelectPass {
            products: vec![
                Offer {
                    id: DAY,
                    name: "Day pass".into(),
                    price: 750,
                    currency: Currency::EUR,
                },
                Offer {
                    id: TODAY,
                    name: "Today".into(),
                    price: 600,
                    currency: Currency::EUR,
                },
            ],
        };
        // A bridge listing other products, or none, disagrees with this catalogue.
        let Outcome::SelectPass { products } = &listed else {
            unreachable!("a listing")
        };
        for fewer in [Vec::new(), products[..1].to_vec()] {
            let short = Outcome::SelectPass { products: fewer };
            assert!(!same_outcome(&short, &listed));
        }
        assert!(matches!(
            check(&tap, &mut m, &mut sale, &listed, now, now + 5, s),
            Check::Match
        ));
        let button = Input::Button(terms(&c, TODAY));
        let confirm = |price| Outcome::TapToConfirm {
            selected: TODAY,
            price,
            currency: Currency::EUR,
        };
        let mut wrong_sale = sale.clone();
        assert!(matches!(
            check(
                &button,
                &mut m,
                &mut wrong_sale,
                &confirm(0),
                now + 10,
                now + 15,
                s
            ),
            Check::Mismatch(_)
        ));
        assert!(matches!(
            check(
                &button,
                &mut m,
                &mut sale,
                &confirm(600),
                now + 10,
                now + 15,
                s
            ),
            Check::Match
        ));
        let day_end = c.service_day(now + 20).ends_at_ms;
        let issued = Outcome::PassIssued {
            pass: PassInfo {
                pass_type: TODAY,
                trips_remaining: None,
                expires_at: Some(day_end),
                remaining_ms: Some(day_end - now - 20),
            },
            price: 600,
            currency: Currency::EUR,
        };
        assert!(matches!(
            check(&tap, &mut m, &mut sale, &issued, now + 20, now + 25, s),
            Check::Match
        ));
        let pass = m.pass.as_ref().expect("sold");
        assert_eq!(pass.terms.product, TODAY);
        assert_eq!(pass.expires_at, Some(day_end));
        assert_eq!(sale, None);
    }
}
