//! What the simulator expects: a model of every card and terminal, fed through
//! [`tapgate_protocol::rules::decide_timed`] with each message's stamp: a waiting message late
//! past the decision window is `stale` and changes nothing; an offline entry is settled at the
//! time it happened.
//!
//! A card is never in flight on two devices at once and a terminal serves one rider's sale at a
//! time, so the state a decision sees is the state the model holds. Time is the only race: the
//! prediction is made at both the send time and the receive time, and either is accepted — which
//! is the leniency needed at two-hour (and sale-timeout) boundaries. After a match the model
//! takes the verdict's state, with a two-hour window's end taken from the decision itself.
//!
//! The simulator never blocks a card, but an operator may, on the dashboard, while it runs. A
//! decision that matches only with the card's deny-list state flipped is an operator's action,
//! not a rules error: the model follows it and it is counted apart from mismatches.

use tapgate_protocol::rules::{self, Input, Pass, Sale, Settings, State, TimeSettings, Verdict};
use tapgate_protocol::{Outcome, PassInfo, Stamp};

/// The model of one card.
#[derive(Debug, Clone, Default)]
pub struct CardModel {
    /// Its pass, as the bridge should hold it.
    pub pass: Option<Pass>,
    /// Whether an operator has put it on the deny list (as far as decisions have shown).
    pub blocked: bool,
}

/// Outcomes compared for what matters: the kind, pass type, trips, reasons, selection.
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
        | (Outcome::AlreadyHasPass { pass: a }, Outcome::AlreadyHasPass { pass: b })
        | (Outcome::PassIssued { pass: a }, Outcome::PassIssued { pass: b }) => pass_eq(a, b),
        (Outcome::Denied { reason: a }, Outcome::Denied { reason: b })
        | (Outcome::UnpaidEntry { reason: a }, Outcome::UnpaidEntry { reason: b }) => a == b,
        (Outcome::TapToConfirm { selected: a }, Outcome::TapToConfirm { selected: b }) => a == b,
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

/// The rules' settings, and the message's stamp.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Pass rules.
    pub settings: Settings,
    /// Decision window and clock limits.
    pub time: TimeSettings,
    /// The message's stamp (`None`: decided on the bridge's clock).
    pub stamp: Option<Stamp>,
}

impl Timing {
    /// The verdict for `input` on `state` with the bridge's clock at `now`; a refusal of the
    /// message's time is a `rejected` outcome that changes nothing.
    pub fn decide(&self, input: &Input, state: &State, now: u64) -> Verdict {
        match rules::decide_timed(
            input,
            state,
            false,
            self.stamp,
            now,
            None,
            self.settings,
            self.time,
        ) {
            Ok(t) => t.verdict,
            Err(reason) => Verdict {
                outcome: Outcome::Rejected {
                    reason,
                    detail: String::new(),
                },
                pass: state.pass.clone(),
                sale: state.sale.clone(),
                activated: false,
            },
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
    timing: Timing,
) -> Check {
    let state = State {
        pass: card.pass.clone(),
        blocked: card.blocked,
        sale: sale.clone(),
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
                Outcome::PassIssued { .. }
                | Outcome::Granted { .. }
                | Outcome::EntrySettled { .. } => {
                    if let Outcome::Granted { pass }
                    | Outcome::PassIssued { pass }
                    | Outcome::EntrySettled { pass } = actual
                    {
                        card.pass = follow(pass, sent_ms);
                    }
                    *sale = None;
                }
                Outcome::SelectPass | Outcome::TapToConfirm { .. } => {}
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
fn decision_times(state: &State, sent_ms: u64, recv_ms: u64, timing: Timing) -> Vec<u64> {
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
    if let (Some(p), Outcome::Granted { pass: info } | Outcome::EntrySettled { pass: info }) =
        (pass.as_mut(), actual)
    {
        if info.expires_at.is_some() {
            p.expires_at = info.expires_at;
        }
    }
    card.pass = pass;
    *sale = v.sale;
}

/// A model pass matching what the bridge reported (after a mismatch).
fn follow(info: &PassInfo, now: u64) -> Option<Pass> {
    let mut p = Pass::issue(info.pass_type, now);
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
    use tapgate_protocol::{CardId, DenyReason, PassType};

    fn card(s: &str) -> CardId {
        CardId::new(s).expect("card")
    }

    /// Decided on the bridge's clock with the default time limits.
    fn unstamped(settings: Settings) -> Timing {
        Timing {
            settings,
            time: TimeSettings::default(),
            stamp: None,
        }
    }

    /// A card holding a fresh ten-trip pass.
    fn ten_trip_card() -> CardModel {
        CardModel {
            pass: Some(Pass::issue(PassType::TenTrip, 0)),
            ..CardModel::default()
        }
    }

    #[test]
    fn two_hour_boundary_is_lenient_either_way() {
        let s = Settings {
            two_hour_ms: 1000,
            sale_timeout_ms: 30_000,
        };
        let s = unstamped(s);
        let mut pass = Pass::issue(PassType::TwoHour, 0);
        pass.expires_at = Some(5000);
        let input = Input::GateTap(card("A"));
        // Sent just before the end, decided just after: both answers are right.
        for actual in [
            Outcome::Granted {
                pass: PassInfo {
                    pass_type: PassType::TwoHour,
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
        let s = unstamped(Settings::default());
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
        let mut info = PassInfo::new(PassType::TenTrip);
        info.trips_remaining = Some(9);
        assert!(matches!(
            check(
                &input,
                &mut m,
                &mut None,
                &Outcome::Granted { pass: info },
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
        let s = Timing {
            stamp: Some(Stamp::online(1_000)),
            ..unstamped(Settings::default())
        };
        let expired = Outcome::Denied {
            reason: DenyReason::Expired,
        };
        // Sent at 1,000 and answered at 4,000 by a two-hour pass ending at `end`.
        let judge = |end: u64| {
            let mut pass = Pass::issue(PassType::TwoHour, 0);
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
        let s = unstamped(Settings::default());
        let mut m = ten_trip_card();
        let mut info = PassInfo::new(PassType::TenTrip);
        info.trips_remaining = Some(8);
        let wrong = Outcome::Granted { pass: info.clone() };
        let input = Input::GateTap(card("A"));
        assert!(matches!(
            check(&input, &mut m, &mut None, &wrong, 1, 2, s),
            Check::Mismatch(_)
        ));
        // The model followed reality: 8 left, so the next entry leaves 7.
        info.trips_remaining = Some(7);
        let next = Outcome::Granted { pass: info };
        assert!(matches!(
            check(&input, &mut m, &mut None, &next, 3, 4, s),
            Check::Match
        ));
    }
}
