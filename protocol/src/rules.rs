//! The pass rules, as a pure function.
//!
//! [`decide`] takes one device input, the state it touches (the card's pass, whether the card is
//! blocked, the terminal's sale in progress) and the time, and returns the decision and the new
//! state. It does no I/O. The bridge applies the same rules inside one atomic Redis script; this
//! function is the reference model that the script is tested against, and the rider simulator
//! uses it to predict decisions.
//!
//! Rules, read from the [`Terms`] a pass was sold on (no product is named here):
//! - `single`: one entry, never expires until used. `trips`: that many entries, the decision
//!   reports the trips left after the entry; the pass is gone after the last. `period`: the first
//!   entry starts the window (`pass-activated`); unlimited entries while `now < expires_at`;
//!   denied `expired` after, and the pass is removed. `service_day`: unlimited entries until the
//!   end of the service day it was sold in, then `expired` like a period. Unused `single`,
//!   `trips` and `period` passes never expire.
//! - One pass per card; once it is used up the card may buy again.
//! - Pay as you go ([`crate::payg`], when the catalogue has `[payg]`): a gate entry with no
//!   usable pass is charged the fare from the card's wallet, capped per service day and week of
//!   the entry's time ([`Settings::fare_day`]); the grant reports the pass `PAYG`, what was
//!   `charged` and the `balance`. A balance that cannot pay is denied `insufficient_funds` and
//!   nothing changes. A `top_up` product sold at a terminal adds its price to the wallet
//!   (`topped_up`, with the balance) whether or not the card holds a pass; a catalogue that sells
//!   top-ups starts a sale for a card with a pass too, so it can be topped up.
//! - A blocked card is denied (`blocked`) at gates and terminals.
//! - A card whose stored pass cannot be read (unknown type, garbled field) is denied
//!   (`corrupt_pass`) at gates and terminals and the record is left for an operator; see
//!   [`decide_stored`].
//! - Sales, per terminal: tap → `select_pass` (or `already_has_pass`); button → `tap_to_confirm`
//!   with the product's terms and price (the bridge looks the product up in its catalogue);
//!   same card → `pass_issued` at that price if the card still has no pass; another card → `card_mismatch`
//!   (sale void); button without a sale → `tap_card_first`. A sale not advanced within the sale
//!   timeout is abandoned.
//!
//! Time ([`decide_timed`]): a device message carries a [`Stamp`] — when it happened on the device's
//! clock and whether the device waits for the answer (`online`) or already let the rider through
//! (`offline`, fail-open gates only).
//! - The stamp is read on the bridge's clock ([`resolve_time`]): less the device's measured lead
//!   when its clock runs ahead (flagged, and said so, beyond `max_skew_ms`); as sent when it runs
//!   behind (a late heartbeat looks the same, and a slow stamp can only make a tap stale, never
//!   charge a late one); the bridge's `now` for a message without a stamp. A time more than
//!   `max_future_ms` ahead of `now` is refused (`time_in_future`); `offline` anywhere but a gate tap
//!   is refused (`offline_not_allowed`), and an offline entry more than `max_offline_age_ms`
//!   before `now` (older than a device is meant to hold one, or a clock that was never set:
//!   1970) is refused (`time_too_old`). Refusals change nothing.
//! - A waiting message older than `decision_window_ms` is `stale`: the device has already given
//!   up on it; nothing is decided or charged.
//! - An offline entry is settled at the time it happened: the pass rules run at that time (a
//!   two-hour window starts then, a ten-trip pass loses a trip) and the answer is
//!   `entry_settled`; a card that could not pay (no pass, expired, blocked, unreadable) is an
//!   `unpaid_entry` with the deny reason, and nothing changes. A pass sold after the entry
//!   happened (by more than `max_future_ms`, the bridges' clocks' tolerance) did not pay for it:
//!   the entry is settled as if the card had no pass (pay as you go, or `unpaid_entry`
//!   `no_pass`), and the pass is left as it is.

use crate::fares::{Terms, Validity};
use crate::ids::CardId;
use crate::message::{ClockSource, DenyReason, Outcome, PassInfo, Stamp, TapMode};
use crate::payg::{Charge, FareDay, Payg, Wallet, PAYG_PRODUCT};
use crate::validate::RejectReason;

/// A pass on a card, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// What it was sold as: product, validity, trips, duration, price.
    pub terms: Terms,
    /// `trips`: entries left. Others: 0.
    pub trips: u32,
    /// A `period` pass once activated, a `service_day` pass from its sale: when it stops being
    /// valid (Unix ms).
    pub expires_at: Option<u64>,
    /// When it was issued (Unix ms).
    pub issued_at: u64,
    /// When it was first used at a gate (Unix ms); `None` while unused, the only state in which
    /// an operator may void its sale.
    pub used_at: Option<u64>,
}

impl Pass {
    /// A pass sold on `terms` at `now`; `day_ends_at` is the end of the service day `now` is in
    /// (a `service_day` pass is valid until then).
    pub fn issue(terms: Terms, now: u64, day_ends_at: u64) -> Self {
        Self {
            terms,
            trips: if terms.validity == Validity::Trips {
                terms.trips
            } else {
                0
            },
            expires_at: (terms.validity == Validity::ServiceDay).then_some(day_ends_at),
            issued_at: now,
            used_at: None,
        }
    }

    /// Whether the pass can still be used at `now` (one past its `expires_at` cannot).
    pub fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    /// The pass as reported to devices and monitors at `now`.
    pub fn info(&self, now: u64) -> PassInfo {
        PassInfo {
            pass_type: self.terms.product,
            trips_remaining: (self.terms.validity == Validity::Trips).then_some(self.trips),
            expires_at: self.expires_at,
            remaining_ms: self.expires_at.map(|e| e.saturating_sub(now)),
        }
    }
}

/// A terminal's sale in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// The card that started it.
    pub card: CardId,
    /// The product chosen with a button, on the terms it had then, once one was pressed.
    pub selected: Option<Terms>,
    /// When the sale is abandoned unless advanced (Unix ms).
    pub expires_at: u64,
}

/// What a device sent, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A card tap at a gate.
    GateTap(CardId),
    /// A card tap at a sales terminal.
    TerminalTap(CardId),
    /// A product button at a sales terminal, with the product's terms from the catalogue.
    Button(Terms),
}

/// Settings of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a sale waits for its next step, ms.
    pub sale_timeout_ms: u64,
    /// The end of the service day the decision's time is in (Unix ms): a `service_day` product
    /// sold now is valid until then. [`crate::fares::Catalogue::service_day`] gives it.
    pub day_ends_at: u64,
    /// Pay-as-you-go terms, when the catalogue has them.
    pub payg: Option<Payg>,
    /// The service day and week an entry is charged in: those of the time the rules run at
    /// ([`fare_time`]); [`crate::fares::Catalogue::fare_day`] gives it.
    pub fare_day: FareDay,
    /// Whether the catalogue sells top-ups: then a terminal starts a sale for a card that holds
    /// a pass too (it may top up; a pass product is still refused `already_has_pass`).
    pub top_ups: bool,
}

/// A fare day at the epoch, for settings without pay as you go.
pub const NO_FARE_DAY: FareDay = FareDay {
    day: jiff::civil::Date::constant(1970, 1, 1),
    week: jiff::civil::Date::constant(1969, 12, 29),
    starts_at_ms: 0,
    ends_at_ms: 0,
};

impl Default for Settings {
    fn default() -> Self {
        Self {
            sale_timeout_ms: 30_000,
            day_ends_at: u64::MAX,
            payg: None,
            fare_day: NO_FARE_DAY,
            top_ups: false,
        }
    }
}

/// The state one input can touch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// The tapped card's pass (for a button: the sale card's pass; unused).
    pub pass: Option<Pass>,
    /// Whether the tapped card is on the deny list.
    pub blocked: bool,
    /// The terminal's sale (terminal inputs only).
    pub sale: Option<Sale>,
    /// The tapped card's pay-as-you-go wallet (empty when it never had one).
    pub wallet: Wallet,
}

/// The result of one input: the decision and the state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the device is told.
    pub outcome: Outcome,
    /// The tapped card's pass afterwards.
    pub pass: Option<Pass>,
    /// The terminal's sale afterwards.
    pub sale: Option<Sale>,
    /// A `period` pass was activated by this entry.
    pub activated: bool,
    /// The tapped card's wallet afterwards.
    pub wallet: Wallet,
    /// Pay as you go: what this entry cost.
    pub charged: Option<u64>,
    /// Pay as you go: the balance after this decision (entries paid as you go, top-ups,
    /// `insufficient_funds`).
    pub balance: Option<i64>,
}

impl Verdict {
    /// `outcome` with `pass` and `sale` afterwards; the wallet as in `state`, no amounts.
    pub fn new(outcome: Outcome, pass: Option<Pass>, sale: Option<Sale>, state: &State) -> Self {
        Self {
            outcome,
            pass,
            sale,
            activated: false,
            wallet: state.wallet.clone(),
            charged: None,
            balance: None,
        }
    }
}

/// The info an entry paid as you go reports as its pass.
pub fn payg_pass() -> PassInfo {
    PassInfo {
        pass_type: PAYG_PRODUCT,
        trips_remaining: None,
        expires_at: None,
        remaining_ms: None,
    }
}

/// Applies the rules to one input. Pure: same arguments, same verdict.
pub fn decide(input: &Input, state: &State, now: u64, settings: Settings) -> Verdict {
    // Expired state is as good as absent.
    let pass = state.pass.clone().filter(|p| p.is_live(now));
    let sale = state.sale.clone().filter(|s| now <= s.expires_at);
    match input {
        Input::GateTap(_) => gate_entry(state, pass, now, settings),
        Input::TerminalTap(card) => match sale {
            Some(Sale {
                card: sale_card,
                selected: Some(selected),
                ..
            }) => {
                if &sale_card == card {
                    confirm_sale(state, pass, selected, now, settings)
                } else {
                    Verdict::new(Outcome::CardMismatch, state.pass.clone(), None, state)
                }
            }
            _ => start_sale(card, state, pass, now, settings),
        },
        Input::Button(selected) => match sale {
            Some(s) => choose_product(s, *selected, state, now, settings),
            None => Verdict::new(Outcome::TapCardFirst, state.pass.clone(), None, state),
        },
    }
}

/// A denial for `reason`.
fn denied(reason: DenyReason) -> Outcome {
    Outcome::Denied { reason }
}

/// A gate tap, `pass` being the card's live pass: a blocked card is denied and keeps what it
/// has; a live pass is used; without one the entry is paid as you go, where offered.
fn gate_entry(state: &State, pass: Option<Pass>, now: u64, settings: Settings) -> Verdict {
    if state.blocked {
        return Verdict::new(denied(DenyReason::Blocked), state.pass.clone(), None, state);
    }
    match pass {
        Some(p) => use_pass(p, now, state),
        None => pay_entry(state, settings),
    }
}

/// An entry on a live pass: marks it used, takes a trip or starts a period's window, and
/// removes the pass once it is used up.
fn use_pass(mut p: Pass, now: u64, state: &State) -> Verdict {
    let mut activated = false;
    p.used_at.get_or_insert(now);
    match p.terms.validity {
        // A top-up is never stored as a pass; read as single if one were.
        Validity::Single | Validity::ServiceDay | Validity::TopUp => {}
        Validity::Trips => p.trips = p.trips.saturating_sub(1),
        Validity::Period => {
            if p.expires_at.is_none() {
                p.expires_at = Some(now.saturating_add(p.terms.duration_ms));
                activated = true;
            }
        }
    }
    let info = p.info(now);
    let used_up = match p.terms.validity {
        Validity::Single | Validity::TopUp => true,
        Validity::Trips => p.trips == 0,
        Validity::Period | Validity::ServiceDay => false,
    };
    Verdict {
        activated,
        ..Verdict::new(
            Outcome::Granted { pass: info },
            (!used_up).then_some(p),
            None,
            state,
        )
    }
}

/// An entry with no usable pass (an expired one is removed): charged from the card's wallet when
/// the catalogue offers pay as you go (denied `insufficient_funds` when the balance cannot pay),
/// otherwise denied `expired` or `no_pass`.
fn pay_entry(state: &State, settings: Settings) -> Verdict {
    let Some(payg) = settings.payg else {
        let reason = match state.pass {
            Some(_) => DenyReason::Expired,
            None => DenyReason::NoPass,
        };
        return Verdict::new(denied(reason), None, None, state);
    };
    let mut wallet = state.wallet.clone();
    let (outcome, charged, balance) = match wallet.charge(&payg, &settings.fare_day) {
        Charge::Paid { charged, balance } => (
            Outcome::Granted { pass: payg_pass() },
            Some(charged),
            balance,
        ),
        Charge::Insufficient { balance } => (denied(DenyReason::InsufficientFunds), None, balance),
    };
    Verdict {
        wallet,
        charged,
        balance: Some(balance),
        ..Verdict::new(outcome, None, None, state)
    }
}

/// A terminal tap by the card that started a sale with a product chosen: a blocked card is
/// denied; a top-up is added to the wallet; a pass is issued unless the card already holds a live
/// one. The sale ends either way.
fn confirm_sale(
    state: &State,
    pass: Option<Pass>,
    selected: Terms,
    now: u64,
    settings: Settings,
) -> Verdict {
    if state.blocked {
        Verdict::new(denied(DenyReason::Blocked), state.pass.clone(), None, state)
    } else if selected.validity == Validity::TopUp {
        let mut wallet = state.wallet.clone();
        wallet.top_up(selected.price);
        let sold = Outcome::ToppedUp {
            selected: selected.product,
            price: selected.price,
            currency: selected.currency,
        };
        Verdict {
            balance: Some(wallet.balance),
            wallet,
            ..Verdict::new(sold, pass, None, state)
        }
    } else if let Some(p) = pass {
        let info = p.info(now);
        Verdict::new(Outcome::AlreadyHasPass { pass: info }, Some(p), None, state)
    } else {
        let p = Pass::issue(selected, now, settings.day_ends_at);
        let info = p.info(now);
        let sold = Outcome::PassIssued {
            pass: info,
            price: selected.price,
            currency: selected.currency,
        };
        Verdict::new(sold, Some(p), None, state)
    }
}

/// A terminal tap with no sale waiting for it: a blocked card is denied; a card with a live pass
/// is told so (unless the catalogue sells top-ups); otherwise `card` starts a sale.
fn start_sale(
    card: &CardId,
    state: &State,
    pass: Option<Pass>,
    now: u64,
    settings: Settings,
) -> Verdict {
    if state.blocked {
        Verdict::new(denied(DenyReason::Blocked), state.pass.clone(), None, state)
    } else if let Some(p) = pass.clone().filter(|_| !settings.top_ups) {
        let info = p.info(now);
        Verdict::new(Outcome::AlreadyHasPass { pass: info }, Some(p), None, state)
    } else {
        let select = Outcome::SelectPass {
            products: Vec::new(),
        };
        let sale = Sale {
            card: card.clone(),
            selected: None,
            expires_at: now + settings.sale_timeout_ms,
        };
        Verdict::new(select, pass, Some(sale), state)
    }
}

/// A product button during `sale`: the product is chosen (replacing any earlier choice) and the
/// sale's timeout starts again.
fn choose_product(
    sale: Sale,
    selected: Terms,
    state: &State,
    now: u64,
    settings: Settings,
) -> Verdict {
    let after = Sale {
        selected: Some(selected),
        expires_at: now + settings.sale_timeout_ms,
        ..sale
    };
    let confirm = Outcome::TapToConfirm {
        selected: selected.product,
        price: selected.price,
        currency: selected.currency,
    };
    Verdict::new(confirm, state.pass.clone(), Some(after), state)
}

/// A fail-closed gate that gave up on a tap names it (`replaces`) in the same card's next tap
/// there within this long, ms: a *retap*, the rider turned away trying again.
pub const RETAP_NAMED_WITHIN_MS: u64 = 30_000;

/// The bridge grants a retap on the charge of the tap it names only when that tap is at most
/// this much older, ms: the gate's own bound and the time the rider took to tap again, with room
/// to spare. Naming an older tap is a ride of its own.
pub const RETAP_ACCEPTED_WITHIN_MS: u64 = 60_000;

/// Time settings of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSettings {
    /// A waiting message older than this (bridge time minus event time) is `stale`. Shorter than
    /// the devices' decision timeout by the time an answer takes to reach them: a device has
    /// given up on an answer by then.
    pub decision_window_ms: u64,
    /// An event time further ahead of the bridge's clock than this is refused.
    pub max_future_ms: u64,
    /// A device whose measured clock skew exceeds this is flagged (a lead is corrected whatever
    /// its size; a lag never is).
    pub max_skew_ms: u64,
    /// An offline entry that happened longer ago than this is refused (`time_too_old`).
    pub max_offline_age_ms: u64,
}

impl Default for TimeSettings {
    fn default() -> Self {
        Self {
            decision_window_ms: 1_500,
            max_future_ms: 5_000,
            max_skew_ms: 1_000,
            max_offline_age_ms: 24 * 3_600_000,
        }
    }
}

/// Whether a measured skew (device clock minus bridge clock, ms) is beyond `max_skew_ms`.
pub fn skew_flagged(skew_ms: i64, settings: TimeSettings) -> bool {
    skew_ms.unsigned_abs() > settings.max_skew_ms
}

/// When a message happened, on the bridge's clock, and which clock that came from; or why its
/// time is refused. `skew_ms` is the device's last measured skew, if any.
pub fn resolve_time(
    stamp: Option<Stamp>,
    now: u64,
    skew_ms: Option<i64>,
    settings: TimeSettings,
) -> Result<(u64, ClockSource), RejectReason> {
    let Some(stamp) = stamp else {
        return Ok((now, ClockSource::Bridge));
    };
    // A clock running ahead is corrected by its measured lead, whatever its size: a heartbeat's
    // delay can only make the lead look smaller, so the correction never makes a tap look older
    // than it is. A clock behind is never corrected: a heartbeat the bridge reads late (queued at
    // the broker while the bridge was away) looks exactly like a slow clock, and correcting by it
    // would make late taps look fresh and charge them; a slow stamp can at worst make a waiting
    // tap stale. A stamp is "bridge" time once the device is flagged fast.
    let lead = skew_ms.unwrap_or(0).max(0);
    let at = stamp.time.saturating_sub(lead.unsigned_abs());
    let clock = if skew_flagged(lead, settings) {
        ClockSource::Bridge
    } else {
        ClockSource::Device
    };
    if at > now.saturating_add(settings.max_future_ms) {
        return Err(RejectReason::TimeInFuture);
    }
    Ok((at, clock))
}

/// The time whose service day an entry is charged in ([`Settings::fare_day`]): when it happened
/// for an offline entry (settled at its own time), the bridge's `now` otherwise. `None` when the
/// message's time is refused.
pub fn fare_time(
    stamp: Option<Stamp>,
    now: u64,
    skew_ms: Option<i64>,
    settings: TimeSettings,
) -> Option<u64> {
    let (at, _) = resolve_time(stamp, now, skew_ms, settings).ok()?;
    Some(match stamp.map(|s| s.mode) {
        Some(TapMode::Offline) => at,
        _ => now,
    })
}

/// The result of [`decide_timed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    /// The decision and the state after it (unchanged for `stale` and `unpaid_entry`).
    pub verdict: Verdict,
    /// When the message happened, on the bridge's clock.
    pub at: u64,
    /// Which clock `at` came from.
    pub clock: ClockSource,
}

/// When a message is decided: the time it carries, the bridge's clock, and how far its device's
/// clock was measured to run ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    /// The message's stamp, if it has one.
    pub stamp: Option<Stamp>,
    /// The bridge's clock, Unix ms.
    pub now: u64,
    /// The device's clock lead over the bridge's (negative: behind), ms, if measured.
    pub skew_ms: Option<i64>,
}

/// [`decide_stored`] with time: staleness, offline entries settled at the time they happened, and
/// the device's clock trust. `Err` is a refusal; nothing changes.
pub fn decide_timed(
    input: &Input,
    state: &State,
    pass_corrupt: bool,
    when: When,
    settings: Settings,
    time: TimeSettings,
) -> Result<Timed, RejectReason> {
    let When {
        stamp,
        now,
        skew_ms,
    } = when;
    let (at, clock) = resolve_time(stamp, now, skew_ms, time)?;
    let mode = stamp.map_or(TapMode::Online, |s| s.mode);
    let unchanged = |outcome| Verdict::new(outcome, state.pass.clone(), state.sale.clone(), state);
    let verdict = match mode {
        TapMode::Offline => {
            if !matches!(input, Input::GateTap(_)) {
                return Err(RejectReason::OfflineNotAllowed);
            }
            if now.saturating_sub(at) > time.max_offline_age_ms {
                return Err(RejectReason::TimeTooOld);
            }
            // A pass sold after the entry happened did not pay for it: settled without it, and
            // left as it is.
            let sold_later = !pass_corrupt
                && state
                    .pass
                    .as_ref()
                    .is_some_and(|p| p.issued_at > at.saturating_add(time.max_future_ms));
            let v = if sold_later {
                let without = State {
                    pass: None,
                    ..state.clone()
                };
                Verdict {
                    pass: state.pass.clone(),
                    ..decide_stored(input, &without, false, at, settings)
                }
            } else {
                decide_stored(input, state, pass_corrupt, at, settings)
            };
            match v.outcome {
                Outcome::Granted { pass } => Verdict {
                    outcome: Outcome::EntrySettled { pass },
                    ..v
                },
                Outcome::Denied { reason } => Verdict {
                    outcome: Outcome::UnpaidEntry { reason },
                    ..v
                },
                other => Verdict {
                    outcome: other,
                    ..v
                },
            }
        }
        TapMode::Online if now.saturating_sub(at) > time.decision_window_ms => {
            unchanged(Outcome::Stale)
        }
        TapMode::Online => decide_stored(input, state, pass_corrupt, now, settings),
    };
    Ok(Timed { verdict, at, clock })
}

/// [`decide`] for a card whose stored pass record may be unreadable (`pass_corrupt`): such a card
/// is never granted and never sold a pass over the bad record. A block still wins, and so does a
/// sale's card mismatch (the other card's record is not read). Nothing is changed but the sale.
pub fn decide_stored(
    input: &Input,
    state: &State,
    pass_corrupt: bool,
    now: u64,
    settings: Settings,
) -> Verdict {
    let corrupt = Verdict::new(
        Outcome::Denied {
            reason: DenyReason::CorruptPass,
        },
        state.pass.clone(),
        None,
        state,
    );
    if !pass_corrupt || state.blocked {
        return decide(input, state, now, settings);
    }
    match input {
        Input::Button(_) => decide(input, state, now, settings),
        Input::GateTap(_) => corrupt,
        Input::TerminalTap(card) => {
            let sale = state.sale.as_ref().filter(|s| now <= s.expires_at);
            match sale {
                Some(s) if s.selected.is_some() && &s.card != card => {
                    decide(input, state, now, settings)
                }
                _ => corrupt,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fares::{Catalogue, Currency};
    use crate::ids::ProductId;

    const NOW: u64 = 1_000_000;
    const TWO_HOUR_MS: u64 = 7_200_000;
    const DAY_END: u64 = NOW + 50_000;
    const S: Settings = Settings {
        sale_timeout_ms: 30_000,
        day_ends_at: DAY_END,
        payg: None,
        fare_day: NO_FARE_DAY,
        top_ups: false,
    };
    const TODAY: ProductId = ProductId::from_static("TODAY");
    const TOPUP: ProductId = ProductId::from_static("TOPUP");
    const PAYG: Payg = Payg {
        fare: 250,
        daily_cap: Some(700),
        weekly_cap: Some(3000),
        minimum_balance: 0,
        currency: Currency::EUR,
    };
    /// `S` with pay as you go and top-ups, on Monday 2026-12-07.
    const SP: Settings = Settings {
        payg: Some(PAYG),
        fare_day: FareDay {
            day: jiff::civil::Date::constant(2026, 12, 7),
            week: jiff::civil::Date::constant(2026, 12, 7),
            starts_at_ms: 0,
            ends_at_ms: DAY_END,
        },
        top_ups: true,
        ..S
    };

    /// The terms of a built-in product, or of `TODAY`, a service-day pass at 600.
    fn terms(id: ProductId) -> Terms {
        if id == TOPUP {
            return Terms {
                product: TOPUP,
                validity: Validity::TopUp,
                trips: 0,
                duration_ms: 0,
                price: 1000,
                currency: Currency::EUR,
            };
        }
        if id == TODAY {
            return Terms {
                product: TODAY,
                validity: Validity::ServiceDay,
                trips: 0,
                duration_ms: 0,
                price: 600,
                currency: Currency::EUR,
            };
        }
        Catalogue::builtin(TWO_HOUR_MS)
            .product(id)
            .expect("built-in product")
            .terms
    }

    fn issue(id: ProductId, now: u64) -> Pass {
        Pass::issue(terms(id), now, DAY_END)
    }

    fn info(id: ProductId) -> PassInfo {
        PassInfo::new(&terms(id), None, NOW)
    }

    fn select() -> Outcome {
        Outcome::SelectPass {
            products: Vec::new(),
        }
    }

    fn live_pass(state: &State) -> Option<Pass> {
        state.pass.clone().filter(|p| p.is_live(NOW))
    }

    fn card(s: &str) -> CardId {
        CardId::new(s).expect("card")
    }

    fn with_pass(p: Pass) -> State {
        State {
            pass: Some(p),
            ..State::default()
        }
    }

    fn gate(state: &State, now: u64) -> Verdict {
        decide(&Input::GateTap(card("1")), state, now, S)
    }

    #[test]
    fn single_use_is_one_entry() {
        let v = gate(&with_pass(issue(ProductId::SINGLE_USE, 0)), NOW);
        assert_eq!(
            v.outcome,
            Outcome::Granted {
                pass: info(ProductId::SINGLE_USE)
            }
        );
        assert_eq!(v.pass, None);
        assert!(!v.activated);
        // Years later, still good: unused passes never expire.
        let v = gate(&with_pass(issue(ProductId::SINGLE_USE, 0)), u64::MAX / 2);
        assert!(matches!(v.outcome, Outcome::Granted { .. }));
    }

    #[test]
    fn ten_trip_counts_down_to_zero() {
        let mut state = with_pass(issue(ProductId::TEN_TRIP, 0));
        for expected in (0..10).rev() {
            let v = gate(&state, NOW);
            match &v.outcome {
                Outcome::Granted { pass } => assert_eq!(pass.trips_remaining, Some(expected)),
                other => panic!("entry {expected}: {other:?}"),
            }
            state.pass = v.pass;
        }
        assert_eq!(state.pass, None, "gone after the tenth");
        let v = gate(&state, NOW);
        assert_eq!(
            v.outcome,
            Outcome::Denied {
                reason: DenyReason::NoPass
            }
        );
    }

    #[test]
    fn two_hour_window() {
        let state = with_pass(issue(ProductId::TWO_HOUR, 0));
        let v = gate(&state, NOW);
        assert!(v.activated);
        let after = v.pass.clone().expect("kept");
        assert_eq!(after.expires_at, Some(NOW + TWO_HOUR_MS));
        match v.outcome {
            Outcome::Granted { pass } => {
                assert_eq!(pass.expires_at, Some(NOW + TWO_HOUR_MS));
                assert_eq!(pass.remaining_ms, Some(TWO_HOUR_MS));
            }
            other => panic!("{other:?}"),
        }
        let state = with_pass(after);
        // Inside the window: unlimited entries, no new activation.
        for t in [NOW + 1, NOW + TWO_HOUR_MS / 2, NOW + TWO_HOUR_MS - 1] {
            let v = gate(&state, t);
            assert!(matches!(v.outcome, Outcome::Granted { .. }), "{t}");
            assert!(!v.activated);
            assert_eq!(v.pass, state.pass);
        }
        // At and after the end: denied, pass removed.
        for t in [NOW + TWO_HOUR_MS, NOW + TWO_HOUR_MS + 1] {
            let v = gate(&state, t);
            assert_eq!(
                v.outcome,
                Outcome::Denied {
                    reason: DenyReason::Expired
                }
            );
            assert_eq!(v.pass, None);
        }
    }

    #[test]
    fn service_day_pass_lasts_until_the_day_ends() {
        let tap = Input::TerminalTap(card("5"));
        let state = State {
            sale: sale("5", Some(terms(TODAY))),
            ..State::default()
        };
        let v = decide(&tap, &state, NOW, S);
        let Outcome::PassIssued { pass, price, .. } = &v.outcome else {
            panic!("{v:?}");
        };
        assert_eq!((pass.expires_at, *price), (Some(DAY_END), 600));
        let state = with_pass(v.pass.clone().expect("sold"));
        for t in [NOW + 1, DAY_END - 1] {
            let v = gate(&state, t);
            assert!(matches!(v.outcome, Outcome::Granted { .. }), "{t}");
            assert!(!v.activated);
            let mut used = state.pass.clone().expect("pass");
            used.used_at = Some(t);
            assert_eq!(v.pass, Some(used), "unlimited entries, first use recorded");
        }
        let v = gate(&state, DAY_END);
        assert_eq!(
            v.outcome,
            Outcome::Denied {
                reason: DenyReason::Expired
            }
        );
    }

    #[test]
    fn blocked_card_denied_and_untouched() {
        let state = State {
            pass: Some(issue(ProductId::TEN_TRIP, 0)),
            blocked: true,
            sale: None,
            wallet: Wallet::default(),
        };
        let v = gate(&state, NOW);
        assert_eq!(
            v.outcome,
            Outcome::Denied {
                reason: DenyReason::Blocked
            }
        );
        assert_eq!(v.pass, state.pass);
        let v = decide(&Input::TerminalTap(card("1")), &state, NOW, S);
        assert_eq!(
            v.outcome,
            Outcome::Denied {
                reason: DenyReason::Blocked
            }
        );
        assert_eq!(v.sale, None);
    }

    fn sale(c: &str, selected: Option<Terms>) -> Option<Sale> {
        Some(Sale {
            card: card(c),
            selected,
            expires_at: NOW + 10,
        })
    }

    #[test]
    fn corrupt_pass_is_never_granted_or_sold_over() {
        let state = State::default();
        let corrupt = Outcome::Denied {
            reason: DenyReason::CorruptPass,
        };
        let v = decide_stored(&Input::GateTap(card("1")), &state, true, NOW, S);
        assert_eq!(v.outcome, corrupt);
        let started = State {
            sale: sale("1", Some(terms(ProductId::TEN_TRIP))),
            ..State::default()
        };
        let v = decide_stored(&Input::TerminalTap(card("1")), &started, true, NOW, S);
        assert_eq!(v.outcome, corrupt);
        assert_eq!(v.sale, None, "the sale is void");
        let v = decide_stored(&Input::TerminalTap(card("2")), &started, true, NOW, S);
        assert_eq!(v.outcome, Outcome::CardMismatch);
        let blocked = State {
            blocked: true,
            ..State::default()
        };
        let v = decide_stored(&Input::GateTap(card("1")), &blocked, true, NOW, S);
        assert_eq!(
            v.outcome,
            Outcome::Denied {
                reason: DenyReason::Blocked
            }
        );
        let v = decide_stored(
            &Input::Button(terms(ProductId::SINGLE_USE)),
            &started,
            true,
            NOW,
            S,
        );
        assert!(matches!(v.outcome, Outcome::TapToConfirm { .. }));
    }

    #[test]
    fn full_sale() {
        let tap = Input::TerminalTap(card("7"));
        let v = decide(&tap, &State::default(), NOW, S);
        assert_eq!(v.outcome, select());
        let started = v.sale.clone().expect("sale");
        assert_eq!(started.selected, None);
        assert_eq!(started.expires_at, NOW + S.sale_timeout_ms);

        let state = State {
            sale: v.sale,
            ..State::default()
        };
        let v = decide(
            &Input::Button(terms(ProductId::TEN_TRIP)),
            &state,
            NOW + 1,
            S,
        );
        assert_eq!(
            v.outcome,
            Outcome::TapToConfirm {
                selected: ProductId::TEN_TRIP,
                price: 0,
                currency: Currency::EUR,
            }
        );
        let state = State {
            sale: v.sale,
            ..State::default()
        };
        let v = decide(&tap, &state, NOW + 2, S);
        assert_eq!(
            v.outcome,
            Outcome::PassIssued {
                pass: info(ProductId::TEN_TRIP),
                price: 0,
                currency: Currency::EUR,
            }
        );
        assert_eq!(v.pass, Some(issue(ProductId::TEN_TRIP, NOW + 2)));
        assert_eq!(v.sale, None);
    }

    #[test]
    fn button_can_change_the_choice() {
        let state = State {
            sale: sale("7", Some(terms(ProductId::TEN_TRIP))),
            ..State::default()
        };
        let v = decide(&Input::Button(terms(ProductId::TWO_HOUR)), &state, NOW, S);
        assert_eq!(
            v.sale.and_then(|s| s.selected).map(|t| t.product),
            Some(ProductId::TWO_HOUR)
        );
    }

    #[test]
    fn mismatch_voids_the_sale() {
        let state = State {
            sale: sale("7", Some(terms(ProductId::SINGLE_USE))),
            ..State::default()
        };
        let v = decide(&Input::TerminalTap(card("8")), &state, NOW, S);
        assert_eq!(v.outcome, Outcome::CardMismatch);
        assert_eq!(v.sale, None);
        assert_eq!(v.pass, None);
    }

    #[test]
    fn pass_bought_meanwhile_is_not_doubled() {
        let state = State {
            pass: Some(issue(ProductId::SINGLE_USE, 0)),
            blocked: false,
            sale: sale("7", Some(terms(ProductId::TEN_TRIP))),
            wallet: Wallet::default(),
        };
        let v = decide(&Input::TerminalTap(card("7")), &state, NOW, S);
        assert!(matches!(v.outcome, Outcome::AlreadyHasPass { .. }));
        assert_eq!(v.pass, state.pass);
        assert_eq!(v.sale, None);
    }

    #[test]
    fn already_has_pass_and_rebuy_after_use() {
        let state = with_pass(issue(ProductId::TWO_HOUR, 0));
        let v = decide(&Input::TerminalTap(card("7")), &state, NOW, S);
        assert_eq!(
            v.outcome,
            Outcome::AlreadyHasPass {
                pass: info(ProductId::TWO_HOUR)
            }
        );
        // An expired two-hour pass counts as none: the card may buy again.
        let mut expired = issue(ProductId::TWO_HOUR, 0);
        expired.expires_at = Some(NOW - 1);
        let v = decide(&Input::TerminalTap(card("7")), &with_pass(expired), NOW, S);
        assert_eq!(v.outcome, select());
        assert_eq!(v.pass, None);
    }

    #[test]
    fn button_without_sale() {
        let v = decide(
            &Input::Button(terms(ProductId::SINGLE_USE)),
            &State::default(),
            NOW,
            S,
        );
        assert_eq!(v.outcome, Outcome::TapCardFirst);
        assert_eq!(v.sale, None);
        // An abandoned sale is no sale.
        let state = State {
            sale: Some(Sale {
                card: card("7"),
                selected: None,
                expires_at: NOW - 1,
            }),
            ..State::default()
        };
        let v = decide(&Input::Button(terms(ProductId::SINGLE_USE)), &state, NOW, S);
        assert_eq!(v.outcome, Outcome::TapCardFirst);
        let state = State {
            sale: Some(Sale {
                card: card("7"),
                selected: Some(terms(ProductId::SINGLE_USE)),
                expires_at: NOW - 1,
            }),
            ..State::default()
        };
        let v = decide(&Input::TerminalTap(card("7")), &state, NOW, S);
        assert_eq!(v.outcome, select(), "timed-out sale starts over");
    }

    const T: TimeSettings = TimeSettings {
        decision_window_ms: 1_500,
        max_future_ms: 5_000,
        max_skew_ms: 30_000,
        max_offline_age_ms: 3_600_000,
    };

    fn timed(state: &State, stamp: Option<Stamp>, now: u64, skew: Option<i64>) -> Timed {
        let when = When {
            stamp,
            now,
            skew_ms: skew,
        };
        decide_timed(&Input::GateTap(card("1")), state, false, when, S, T).expect("not refused")
    }

    #[test]
    fn stale_waiting_tap_charges_nothing() {
        let state = with_pass(issue(ProductId::TEN_TRIP, 0));
        let t = timed(&state, Some(Stamp::online(NOW)), NOW + 1_500, None);
        assert!(
            matches!(t.verdict.outcome, Outcome::Granted { .. }),
            "inside the window"
        );
        let t = timed(&state, Some(Stamp::online(NOW)), NOW + 1_501, None);
        assert_eq!(t.verdict.outcome, Outcome::Stale);
        assert_eq!(t.verdict.pass, state.pass, "nothing charged");
        assert_eq!((t.at, t.clock), (NOW, ClockSource::Device));
        // Without a stamp the bridge's clock is all there is: never stale.
        let t = timed(&state, None, NOW, None);
        assert_eq!(t.clock, ClockSource::Bridge);
        assert!(matches!(t.verdict.outcome, Outcome::Granted { .. }));
    }

    #[test]
    fn offline_entries_settle_at_their_time() {
        let eight = 8 * 3_600_000;
        let half_past = eight + 1_800_000;
        let state = with_pass(issue(ProductId::TWO_HOUR, 0));
        let t = timed(&state, Some(Stamp::offline(eight)), half_past, None);
        let Outcome::EntrySettled { pass } = &t.verdict.outcome else {
            panic!("{t:?}");
        };
        assert_eq!(
            pass.expires_at,
            Some(eight + TWO_HOUR_MS),
            "window from the entry"
        );
        assert!(t.verdict.activated);
        // Ten trips: each offline entry takes one.
        let mut state = with_pass(issue(ProductId::TEN_TRIP, 0));
        for left in [9, 8, 7] {
            let t = timed(&state, Some(Stamp::offline(NOW)), NOW + 60_000, None);
            let Outcome::EntrySettled { pass } = &t.verdict.outcome else {
                panic!("{t:?}");
            };
            assert_eq!(pass.trips_remaining, Some(left));
            state.pass = t.verdict.pass;
        }
        // No pass, or blocked: an unpaid entry, never a denial; nothing changes.
        let t = timed(
            &State::default(),
            Some(Stamp::offline(NOW)),
            NOW + 60_000,
            None,
        );
        assert_eq!(
            t.verdict.outcome,
            Outcome::UnpaidEntry {
                reason: DenyReason::NoPass
            }
        );
        let blocked = State {
            blocked: true,
            ..with_pass(issue(ProductId::SINGLE_USE, 0))
        };
        let t = timed(&blocked, Some(Stamp::offline(NOW)), NOW, None);
        assert_eq!(
            t.verdict.outcome,
            Outcome::UnpaidEntry {
                reason: DenyReason::Blocked
            }
        );
        assert_eq!(t.verdict.pass, blocked.pass);
    }

    #[test]
    fn clock_trust() {
        let state = with_pass(issue(ProductId::TEN_TRIP, 0));
        // Too far ahead: refused.
        let ahead = When {
            stamp: Some(Stamp::online(NOW + 5_001)),
            now: NOW,
            skew_ms: None,
        };
        let r = decide_timed(&Input::GateTap(card("1")), &state, false, ahead, S, T);
        assert_eq!(r, Err(RejectReason::TimeInFuture));
        // A device ten minutes fast, flagged: its stamps are corrected by the skew.
        let fast: u64 = 600_000;
        let t = timed(
            &state,
            Some(Stamp::online(NOW + fast)),
            NOW + 100,
            Some(600_000),
        );
        assert_eq!((t.at, t.clock), (NOW, ClockSource::Bridge));
        assert!(matches!(t.verdict.outcome, Outcome::Granted { .. }));
        // Within the allowed skew, a lead is still taken off; the clock counts as the device's.
        let t = timed(&state, Some(Stamp::online(NOW + 900)), NOW, Some(900));
        assert_eq!((t.at, t.clock), (NOW, ClockSource::Device));
        // Flagged slow (or a heartbeat read late after an outage): never corrected forward, so
        // a late tap stays stale.
        let t = timed(
            &state,
            Some(Stamp::online(NOW)),
            NOW + 10_000,
            Some(-600_000),
        );
        assert_eq!((t.at, t.clock), (NOW, ClockSource::Device));
        assert_eq!(t.verdict.outcome, Outcome::Stale);
        // Offline only at gates.
        let offline = When {
            stamp: Some(Stamp::offline(NOW)),
            now: NOW,
            skew_ms: None,
        };
        let r = decide_timed(&Input::TerminalTap(card("1")), &state, false, offline, S, T);
        assert_eq!(r, Err(RejectReason::OfflineNotAllowed));
    }

    /// Every combination of input, pass, block and sale: the invariants that must always hold.
    #[test]
    fn exhaustive_invariants() {
        let mut passes = vec![None];
        for t in [
            ProductId::SINGLE_USE,
            ProductId::TEN_TRIP,
            ProductId::TWO_HOUR,
            TODAY,
        ] {
            passes.push(Some(issue(t, 0)));
        }
        for trips in [1, 2] {
            let mut p = issue(ProductId::TEN_TRIP, 0);
            p.trips = trips;
            passes.push(Some(p));
        }
        for end in [NOW + 1, NOW, NOW - 1] {
            let mut p = issue(ProductId::TWO_HOUR, 0);
            p.expires_at = Some(end);
            passes.push(Some(p));
        }
        let mut sales = vec![None];
        for c in ["1", "2"] {
            for sel in [
                None,
                Some(terms(ProductId::SINGLE_USE)),
                Some(terms(ProductId::TWO_HOUR)),
                Some(terms(TODAY)),
                Some(terms(TOPUP)),
            ] {
                for end in [NOW, NOW - 1] {
                    sales.push(Some(Sale {
                        card: card(c),
                        selected: sel,
                        expires_at: end,
                    }));
                }
            }
        }
        let mut inputs = vec![Input::GateTap(card("1")), Input::TerminalTap(card("1"))];
        inputs.extend(
            [ProductId::SINGLE_USE, ProductId::TEN_TRIP, TODAY, TOPUP]
                .map(|p| Input::Button(terms(p))),
        );
        let mut wallets = vec![Wallet::default()];
        for (balance, today) in [(100, 0), (1000, 500), (5000, 700)] {
            let mut w = Wallet::default();
            w.top_up(balance + today);
            if today > 0 {
                w.charge(
                    &Payg {
                        fare: today,
                        ..PAYG
                    },
                    &SP.fare_day,
                );
            }
            wallets.push(w);
        }
        let mut seen = std::collections::HashSet::new();
        for input in &inputs {
            for pass in &passes {
                for blocked in [false, true] {
                    for sale in &sales {
                        for (settings, wallet) in wallets
                            .iter()
                            .map(|w| (SP, w))
                            .chain([(S, &Wallet::default())])
                        {
                            let state = State {
                                pass: pass.clone(),
                                blocked,
                                sale: sale.clone(),
                                wallet: wallet.clone(),
                            };
                            let v = decide(input, &state, NOW, settings);
                            seen.insert(v.outcome.name());
                            check_invariants(input, &state, &v, settings);
                            assert_eq!(v, decide(input, &state, NOW, settings), "deterministic");
                        }
                    }
                }
            }
        }
        // Pay as you go, exactly: entries charged 250, 250, 200, 0 under a daily cap of 700.
        let mut state = State::default();
        state.wallet.top_up(1000);
        let mut charged = Vec::new();
        for _ in 0..4 {
            let v = decide(&Input::GateTap(card("1")), &state, NOW, SP);
            assert_eq!(v.outcome, Outcome::Granted { pass: payg_pass() });
            charged.push(v.charged.expect("charged"));
            state.wallet = v.wallet;
        }
        assert_eq!(charged, [250, 250, 200, 0]);
        let mut all: Vec<_> = Outcome::NAMES.to_vec();
        // Time outcomes come from decide_timed, tested above.
        all.retain(|n| !["rejected", "stale", "entry_settled", "unpaid_entry"].contains(n));
        for name in all {
            assert!(seen.contains(name), "never produced {name}");
        }
    }

    fn check_invariants(input: &Input, state: &State, v: &Verdict, settings: Settings) {
        let ctx = format!("{input:?} {state:?} {settings:?} -> {v:?}");
        // Money is conserved on every card: what was topped up is held or was charged.
        let w = &v.wallet;
        assert_eq!(
            i128::from(w.topped_up),
            i128::from(w.balance) + i128::from(w.charged),
            "{ctx}"
        );
        let spent = w.charged - state.wallet.charged;
        let added = w.topped_up - state.wallet.topped_up;
        match &v.outcome {
            Outcome::Granted { pass } if pass.pass_type == PAYG_PRODUCT => {
                let payg = settings.payg.expect("payg");
                assert_eq!(v.charged, Some(spent), "{ctx}");
                assert_eq!(v.balance, Some(w.balance), "{ctx}");
                assert!(w.balance >= payg.minimum_balance, "{ctx}");
                let day = w.days.get(&settings.fare_day.day).copied().unwrap_or(0);
                let before = state.wallet.days.get(&settings.fare_day.day).copied();
                if before.unwrap_or(0) <= 700 {
                    assert!(day <= 700, "daily cap: {ctx}");
                }
                assert_eq!(added, 0, "{ctx}");
            }
            Outcome::ToppedUp { price, .. } => {
                assert_eq!(added, *price, "{ctx}");
                assert_eq!(spent, 0, "{ctx}");
                assert_eq!(v.pass, live_pass(state), "a top-up leaves the pass: {ctx}");
            }
            _ => assert_eq!(v.wallet, state.wallet, "only entries and top-ups: {ctx}"),
        }
        let live = state.pass.as_ref().filter(|p| p.is_live(NOW));
        // A blocked card never gets in, never buys, and its pass is untouched.
        if state.blocked && !matches!(input, Input::Button(_)) {
            let mismatch = matches!(v.outcome, Outcome::CardMismatch);
            assert!(
                mismatch
                    || v.outcome
                        == Outcome::Denied {
                            reason: DenyReason::Blocked
                        },
                "{ctx}"
            );
            assert_eq!(v.pass, state.pass, "{ctx}");
        }
        match &v.outcome {
            Outcome::Granted { pass } => {
                assert!(matches!(input, Input::GateTap(_)), "{ctx}");
                let payg = pass.pass_type == PAYG_PRODUCT;
                assert!((live.is_some() != payg) && !state.blocked, "{ctx}");
            }
            Outcome::PassIssued { pass, price, .. } => {
                assert!(live.is_none(), "one pass per card: {ctx}");
                let sold = v.pass.as_ref().map(|p| p.terms);
                assert_eq!(sold.map(|t| t.product), Some(pass.pass_type), "{ctx}");
                assert_eq!(
                    sold.map(|t| t.price),
                    Some(*price),
                    "charged its price: {ctx}"
                );
            }
            Outcome::Denied { reason } => {
                assert_eq!(*reason == DenyReason::Blocked, state.blocked, "{ctx}");
                if *reason == DenyReason::InsufficientFunds {
                    assert!(settings.payg.is_some() && live.is_none(), "{ctx}");
                }
            }
            Outcome::AlreadyHasPass { .. } => {
                assert!(live.is_some(), "{ctx}");
            }
            _ => {}
        }
        // Only a gate entry or a sale changes a live pass.
        if !matches!(
            v.outcome,
            Outcome::Granted { .. } | Outcome::PassIssued { .. } | Outcome::Denied { .. }
        ) && live.is_some()
        {
            assert_eq!(v.pass.as_ref(), live, "{ctx}");
        }
        if matches!(input, Input::GateTap(_)) {
            assert_eq!(v.sale, None, "{ctx}");
        }
    }
}
