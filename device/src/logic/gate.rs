//! The entry gate as a pure state machine.
//!
//! Idle shows red. A new tap is published, the display goes blank and the light turns red + amber
//! while the gate waits for the decision with that tap's id. Granted: green for
//! [`GateSettings::green_for`], chime, "access granted" and what is left on the pass (trips, or
//! time), whatever its product, as a line and on the four-digit display for as long as green. Denied
//! (or anything else that is not a grant): red flashes [`GateSettings::denied_flashes`] times,
//! buzzer, "access denied". No decision by the deadline: the [`OfflinePolicy`] decides. Decisions
//! for other ids, late decisions and taps while a decision is pending are ignored with a log line.
//! Green is shown only for a `granted` decision answering the pending tap, or by an explicit
//! fail-open timeout.
//!
//! Every tap is stamped with the wall clock's time and `online` (the gate waits). Under
//! fail-open, a tap whose decision did not come in time lets the rider through and is sent again,
//! with a new id, as an `offline` entry stamped with the original tap's time and naming the
//! waiting tap (`replaces`): the bridge charges the ride once, by whichever of the two it decides
//! first (a waiting tap decided in time whose answer came late or was lost settles the entry; a
//! waiting tap arriving after the entry is `stale`). Answers to offline entries and `stale`
//! answers are only logged: the gate has already shown its light. Under fail-closed, the rider
//! is turned away, and the same card's next tap within [`RETAP_WITHIN`] (a retap) names the tap
//! the gate gave up on (`replaces`): if that tap was decided and charged while its answer was
//! late or lost, the bridge grants the retap on that charge.

use std::time::Duration;

use tapgate_protocol::{CardId, Currency, Decision, MessageId, Outcome, RejectReason, Stamp, Tap};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{system_clock, Command, OfflinePolicy, Outbound, TapDebouncer, TapIds, WallClock};
use crate::digits::{DisplayText, Readout};
use crate::prompt::{describe_denial, money, pass_left, LightPattern, Prompt, Sound, RATE_LIMITED};

/// Timing and policy of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSettings {
    /// How long to wait for a decision.
    pub decision_timeout: Duration,
    /// What to do when none arrives in time.
    pub offline_policy: OfflinePolicy,
    /// How long green stays on after a grant.
    pub green_for: Duration,
    /// How many times red flashes after a denial.
    pub denied_flashes: u32,
    /// Reader-level debounce: the same card within this window is the same tap.
    pub card_hold: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            decision_timeout: Duration::from_millis(1500),
            offline_policy: OfflinePolicy::FailClosed,
            green_for: Duration::from_secs(5),
            denied_flashes: 4,
            card_hold: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    id: MessageId,
    deadline: Instant,
    card: CardId,
    /// Wall-clock time of the tap, Unix ms.
    at: u64,
}

/// How long after a fail-closed gate gave up on a tap the same card's next tap names it (a
/// retap): the rider was turned away and tries again.
pub const RETAP_WITHIN: Duration =
    Duration::from_millis(tapgate_protocol::rules::RETAP_NAMED_WITHIN_MS);

/// A tap a fail-closed gate gave up on.
#[derive(Debug, Clone)]
struct Unanswered {
    id: MessageId,
    card: CardId,
    /// Until when the same card's next tap names it.
    until: Instant,
}

/// An entry gate's logic.
pub struct Gate {
    settings: GateSettings,
    ids: TapIds,
    debounce: TapDebouncer,
    pending: Option<Pending>,
    unanswered: Option<Unanswered>,
    clock: WallClock,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("settings", &self.settings)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate whose process started at `boot_ms` (Unix ms, for tap ids), and the commands that
    /// set up its idle state.
    pub fn new(settings: GateSettings, boot_ms: u64) -> (Self, Vec<Command>) {
        let gate = Self {
            settings,
            ids: TapIds::new(boot_ms),
            debounce: TapDebouncer::new(settings.card_hold),
            pending: None,
            unanswered: None,
            clock: system_clock(),
        };
        (gate, vec![Command::Lights(LightPattern::Idle)])
    }

    /// The same gate stamping its taps with `clock`.
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// The id of the tap awaiting a decision, if any.
    pub fn pending(&self) -> Option<&MessageId> {
        self.pending.as_ref().map(|p| &p.id)
    }

    /// When [`Gate::tick`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// The reader saw `card` at `now`.
    pub fn card(&mut self, card: CardId, now: Instant) -> Vec<Command> {
        if !self.debounce.is_new_tap(&card, now) {
            return Vec::new();
        }
        if let Some(p) = &self.pending {
            info!(pending = %p.id, "Tap ignored: still waiting for the previous decision");
            return Vec::new();
        }
        let id = self.ids.next_id();
        let at = self.clock.now_ms();
        // A retap of the card whose last tap went unanswered names that tap: if it was decided
        // and charged (its answer lost), the bridge grants this one on that charge.
        let replaces = self
            .unanswered
            .take_if(|u| u.card == card && now < u.until)
            .map(|u| u.id);
        info!(%id, retap_of = ?replaces, "Card tapped");
        self.pending = Some(Pending {
            id: id.clone(),
            deadline: now + self.settings.decision_timeout,
            card: card.clone(),
            at,
        });
        let tap = Tap { id, card, replaces };
        vec![
            Command::Publish(Outbound::Tap(tap, Stamp::online(at))),
            Command::Lights(LightPattern::Checking),
            self.display(DisplayText::BLANK),
        ]
    }

    /// A decision arrived on the gate's decision topic.
    pub fn decision(&mut self, decision: &Decision) -> Vec<Command> {
        let outcome = decision.outcome.name();
        let matches = match (&self.pending, &decision.id) {
            (Some(p), Some(id)) => &p.id == id,
            _ => false,
        };
        if !matches {
            let id = decision
                .id
                .as_ref()
                .map(MessageId::as_str)
                .unwrap_or("null");
            info!(id, outcome, "Decision ignored: not for the pending tap");
            return Vec::new();
        }
        if matches!(decision.outcome, Outcome::Stale) {
            // The bridge saw the tap too late; the gate has not given up yet, but a stale tap is
            // never charged, so the rider cannot go through on it.
            self.pending = None;
            warn!(outcome, "Tap reached the bridge too late; denying");
            return self.deny("service unavailable".into(), true);
        }
        self.pending = None;
        match &decision.outcome {
            Outcome::Granted { .. } if decision.charged.is_some() => {
                // Paid as you go: say what was charged, show what is left.
                let charged = decision.charged.unwrap_or(0);
                let currency = decision.balance_currency.unwrap_or(Currency::EUR);
                let balance = decision.balance.unwrap_or(0);
                let mut cmds = self.grant(
                    format!(
                        "charged {}, balance {}",
                        money(charged, currency),
                        currency.format(balance)
                    ),
                    u64::try_from(balance)
                        .map(|b| DisplayText::price(b, currency))
                        .unwrap_or(DisplayText::DASHES),
                );
                cmds.push(Command::Play(Sound::price("fare", charged, currency)));
                let owed = if balance < 0 {
                    "balance owed"
                } else {
                    "balance"
                };
                cmds.push(Command::Play(Sound::price(
                    owed,
                    balance.unsigned_abs(),
                    currency,
                )));
                cmds
            }
            Outcome::Granted { pass } => self.grant(
                pass_left(pass).unwrap_or_else(|| "have a good trip".into()),
                DisplayText::pass_left(pass).unwrap_or(DisplayText::BLANK),
            ),
            Outcome::Denied { reason } => self.deny(describe_denial(*reason).into(), false),
            Outcome::Rejected {
                reason: RejectReason::RateLimited,
                detail,
            } => {
                warn!(
                    detail,
                    "Tap refused: this gate is over the bridge's rate limit"
                );
                self.deny(RATE_LIMITED.into(), false)
            }
            Outcome::Rejected { reason, detail } => {
                warn!(%reason, detail, "Tap rejected by the bridge");
                self.deny(format!("rejected: {reason}"), false)
            }
            other => {
                warn!(
                    outcome = other.name(),
                    "Unexpected outcome at a gate; denying"
                );
                self.deny("not allowed here".into(), false)
            }
        }
    }

    /// Time passed: applies the offline policy to a tap whose decision is overdue.
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        let Some(p) = &self.pending else {
            return Vec::new();
        };
        if now < p.deadline {
            return Vec::new();
        }
        let id = p.id.clone();
        let Some(p) = self.pending.take() else {
            return Vec::new();
        };
        let policy = self.settings.offline_policy;
        warn!(%id, %policy, "No decision in time");
        match policy {
            OfflinePolicy::FailClosed => {
                // The card's next tap names this one (a retap unanswered too included: the
                // bridge keeps a retap granted on an earlier charge long enough to be named).
                self.unanswered = Some(Unanswered {
                    id,
                    card: p.card,
                    until: now + RETAP_WITHIN,
                });
                self.deny("service unavailable".into(), true)
            }
            OfflinePolicy::FailOpen => {
                // The rider goes through now; the bridge settles the entry at the tap's time,
                // once with the waiting tap it replaces (which may have been charged already).
                let entry = self.ids.next_id();
                info!(%entry, waited_for = %id, "Queued an offline entry");
                let mut cmds = vec![Command::Publish(Outbound::Tap(
                    Tap {
                        id: entry,
                        card: p.card,
                        replaces: Some(id),
                    },
                    Stamp::offline(p.at),
                ))];
                cmds.extend(self.grant("offline entry".into(), DisplayText::BLANK));
                cmds
            }
        }
    }

    fn grant(&self, line: String, left: DisplayText) -> Vec<Command> {
        vec![
            Command::Lights(LightPattern::Granted(self.settings.green_for)),
            Command::Play(Sound::Chime),
            Command::Play(Sound::Say(Prompt::AccessGranted)),
            Command::Show(line),
            self.display(left),
        ]
    }

    /// `text` on the display for as long as green stays on.
    fn display(&self, text: DisplayText) -> Command {
        Command::Display(Readout {
            text,
            hold: self.settings.green_for,
        })
    }

    fn deny(&self, line: String, unavailable: bool) -> Vec<Command> {
        let prompt = if unavailable {
            Prompt::ServiceUnavailable
        } else {
            Prompt::AccessDenied
        };
        vec![
            Command::Lights(LightPattern::Denied(self.settings.denied_flashes)),
            Command::Play(Sound::Buzzer),
            Command::Play(Sound::Say(prompt)),
            Command::Show(line),
            self.display(DisplayText::BLANK),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{Currency, DenyReason, PassInfo, ProductId, RejectReason};

    fn pass(trips: Option<u32>, remaining_ms: Option<u64>) -> PassInfo {
        PassInfo {
            pass_type: ProductId::from_static("ANY_PRODUCT"),
            trips_remaining: trips,
            expires_at: remaining_ms.map(|ms| 1_000 + ms),
            remaining_ms,
        }
    }

    fn card(s: &str) -> CardId {
        CardId::new(s).expect("card")
    }

    fn start(policy: OfflinePolicy) -> (Gate, Instant) {
        let settings = GateSettings {
            offline_policy: policy,
            ..GateSettings::default()
        };
        let (gate, init) = Gate::new(settings, 1000);
        assert_eq!(init, vec![Command::Lights(LightPattern::Idle)]);
        (gate, Instant::now())
    }

    fn tap(gate: &mut Gate, c: &str, now: Instant) -> MessageId {
        let cmds = gate.card(card(c), now);
        let Some(Command::Publish(Outbound::Tap(t, stamp))) = cmds.first() else {
            panic!("no publish: {cmds:?}");
        };
        assert_eq!(stamp.mode, tapgate_protocol::TapMode::Online);
        assert_eq!(t.card, card(c));
        assert_eq!(cmds[1], Command::Lights(LightPattern::Checking));
        let Some(Command::Display(readout)) = cmds.get(2) else {
            panic!("the display is not blanked: {cmds:?}");
        };
        assert_eq!(
            readout.text,
            DisplayText::BLANK,
            "the last rider's trips are gone"
        );
        t.id.clone()
    }

    fn decision(id: Option<&MessageId>, outcome: Outcome) -> Decision {
        Decision::new(id.cloned(), outcome)
    }

    fn granted(trips: u32) -> Outcome {
        Outcome::Granted {
            pass: pass(Some(trips), None),
        }
    }

    fn shows_green(cmds: &[Command]) -> bool {
        cmds.iter()
            .any(|c| matches!(c, Command::Lights(LightPattern::Granted(_))))
    }

    #[tokio::test(start_paused = true)]
    async fn granted_sequence() {
        let (mut gate, now) = start(OfflinePolicy::FailClosed);
        let id = tap(&mut gate, "C1", now);
        assert!(id.as_str().starts_with("1000-1-"), "{id}");
        assert_eq!(gate.deadline(), Some(now + Duration::from_millis(1500)));
        let cmds = gate.decision(&decision(Some(&id), granted(9)));
        assert_eq!(
            cmds,
            vec![
                Command::Lights(LightPattern::Granted(Duration::from_secs(5))),
                Command::Play(Sound::Chime),
                Command::Play(Sound::Say(Prompt::AccessGranted)),
                Command::Show("9 trips left".into()),
                Command::Display(Readout {
                    text: DisplayText::count(9),
                    hold: Duration::from_secs(5),
                }),
            ]
        );
        assert_eq!(gate.pending(), None);
        assert!(gate.tick(now + Duration::from_secs(10)).is_empty());
    }

    /// Paid as you go: the gate shows and says what was charged and what is left.
    #[tokio::test(start_paused = true)]
    async fn paid_as_you_go_says_the_fare_and_the_balance() {
        for (charged, balance, line, digits, owed) in [
            (
                250,
                750,
                "charged 2.50 EUR, balance 7.50 EUR",
                " 7.50",
                "balance",
            ),
            (
                0,
                100,
                "charged 0.00 EUR, balance 1.00 EUR",
                " 1.00",
                "balance",
            ),
            (
                250,
                -150,
                "charged 2.50 EUR, balance -1.50 EUR",
                "----",
                "balance owed",
            ),
        ] {
            let (mut gate, now) = start(OfflinePolicy::FailClosed);
            let id = tap(&mut gate, "C1", now);
            let d = Decision {
                charged: Some(charged),
                balance: Some(balance),
                balance_currency: Some(Currency::EUR),
                ..decision(
                    Some(&id),
                    Outcome::Granted {
                        pass: tapgate_protocol::rules::payg_pass(),
                    },
                )
            };
            let cmds = gate.decision(&d);
            assert!(shows_green(&cmds), "{cmds:?}");
            assert_eq!(cmds[3], Command::Show(line.into()));
            let Command::Display(readout) = &cmds[4] else {
                panic!("{cmds:?}");
            };
            assert_eq!(readout.text.to_string(), digits);
            assert_eq!(
                cmds[5..],
                [
                    Command::Play(Sound::price("fare", charged, Currency::EUR)),
                    Command::Play(Sound::price(owed, balance.unsigned_abs(), Currency::EUR)),
                ]
            );
        }
    }

    /// What the gate shows comes from the decision's pass, never from a product's name: trips
    /// when it counts them, time when it has an end.
    #[tokio::test(start_paused = true)]
    async fn granted_shows_what_is_left() {
        for (left, line, digits) in [
            (pass(Some(1), None), "1 trip left", "   1"),
            (pass(Some(10), Some(60_000)), "10 trips left", "  10"),
            (pass(None, Some(45 * 60_000)), "0h 45m left", " 0:45"),
            (pass(None, Some(90 * 60_000)), "1h 30m left", " 1:30"),
            (pass(None, None), "have a good trip", "    "),
        ] {
            let (mut gate, now) = start(OfflinePolicy::FailClosed);
            let id = tap(&mut gate, "C1", now);
            let cmds = gate.decision(&decision(Some(&id), Outcome::Granted { pass: left }));
            assert_eq!(cmds[3], Command::Show(line.into()));
            let Command::Display(readout) = &cmds[4] else {
                panic!("{cmds:?}");
            };
            assert_eq!(readout.text.to_string(), digits);
            assert_eq!(readout.hold, Duration::from_secs(5), "as long as green");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn denied_sequence_for_every_reason() {
        for reason in DenyReason::ALL {
            let (mut gate, now) = start(OfflinePolicy::FailOpen);
            let id = tap(&mut gate, "C1", now);
            let cmds = gate.decision(&decision(Some(&id), Outcome::Denied { reason }));
            assert_eq!(
                cmds[..3],
                [
                    Command::Lights(LightPattern::Denied(4)),
                    Command::Play(Sound::Buzzer),
                    Command::Play(Sound::Say(Prompt::AccessDenied)),
                ]
            );
            assert_eq!(cmds[3], Command::Show(describe_denial(reason).into()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_says_to_wait() {
        let (mut gate, now) = start(OfflinePolicy::FailOpen);
        let id = tap(&mut gate, "C1", now);
        let refused = Outcome::Rejected {
            reason: RejectReason::RateLimited,
            detail: "x".into(),
        };
        let cmds = gate.decision(&decision(Some(&id), refused));
        assert_eq!(cmds[0], Command::Lights(LightPattern::Denied(4)));
        assert_eq!(
            cmds[3],
            Command::Show("too many taps: wait a moment".into())
        );
    }

    /// Every outcome other than `granted`, answering the pending tap, is a denial: never green.
    #[tokio::test(start_paused = true)]
    async fn only_granted_shows_green() {
        let held = pass(None, None);
        let others = [
            Outcome::SelectPass {
                products: Vec::new(),
            },
            Outcome::AlreadyHasPass { pass: held.clone() },
            Outcome::TapToConfirm {
                selected: ProductId::TWO_HOUR,
                price: 0,
                currency: Currency::EUR,
            },
            Outcome::PassIssued {
                pass: held,
                price: 0,
                currency: Currency::EUR,
            },
            Outcome::CardMismatch,
            Outcome::TapCardFirst,
            Outcome::Rejected {
                reason: RejectReason::InvalidCard,
                detail: "x".into(),
            },
        ];
        for outcome in others {
            let (mut gate, now) = start(OfflinePolicy::FailOpen);
            let id = tap(&mut gate, "C1", now);
            let cmds = gate.decision(&decision(Some(&id), outcome.clone()));
            assert!(!shows_green(&cmds), "{outcome:?}");
            assert_eq!(
                cmds[0],
                Command::Lights(LightPattern::Denied(4)),
                "{outcome:?}"
            );
            assert_eq!(gate.pending(), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn foreign_and_late_decisions_are_ignored() {
        let (mut gate, now) = start(OfflinePolicy::FailClosed);
        // Nothing pending: a grant changes nothing.
        let stray = MessageId::new("other-1").expect("id");
        assert!(gate
            .decision(&decision(Some(&stray), granted(5)))
            .is_empty());
        let id = tap(&mut gate, "C1", now);
        // Another id, or no id at all: ignored, still pending.
        assert!(gate
            .decision(&decision(Some(&stray), granted(5)))
            .is_empty());
        assert!(gate.decision(&decision(None, granted(5))).is_empty());
        assert_eq!(gate.pending(), Some(&id));
        // Timeout (fail-closed), then the real grant arrives late: ignored.
        let cmds = gate.tick(now + Duration::from_millis(1500));
        assert!(!shows_green(&cmds));
        assert!(gate.decision(&decision(Some(&id), granted(5))).is_empty());
        // A repeated decision for an answered tap is ignored too.
        let id2 = tap(&mut gate, "C2", now + Duration::from_secs(3));
        assert_eq!(gate.decision(&decision(Some(&id2), granted(4))).len(), 5);
        assert!(gate.decision(&decision(Some(&id2), granted(4))).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn offline_policies() {
        let (mut gate, now) = start(OfflinePolicy::FailClosed);
        tap(&mut gate, "C1", now);
        assert!(gate.tick(now + Duration::from_millis(1499)).is_empty());
        let cmds = gate.tick(now + Duration::from_millis(1500));
        assert_eq!(
            cmds,
            vec![
                Command::Lights(LightPattern::Denied(4)),
                Command::Play(Sound::Buzzer),
                Command::Play(Sound::Say(Prompt::ServiceUnavailable)),
                Command::Show("service unavailable".into()),
                Command::Display(Readout {
                    text: DisplayText::BLANK,
                    hold: Duration::from_secs(5),
                }),
            ]
        );

        let (mut gate, now) = start(OfflinePolicy::FailOpen);
        tap(&mut gate, "C1", now);
        let cmds = gate.tick(now + Duration::from_secs(2));
        assert!(matches!(cmds[0], Command::Publish(Outbound::Tap(..))));
        assert_eq!(
            cmds[1],
            Command::Lights(LightPattern::Granted(Duration::from_secs(5)))
        );
        assert_eq!(cmds[3], Command::Play(Sound::Say(Prompt::AccessGranted)));
        assert_eq!(gate.deadline(), None);
    }

    fn clocked(policy: OfflinePolicy, wall: &super::super::ManualClock) -> (Gate, Instant) {
        let (gate, now) = start(policy);
        (gate.with_clock(std::sync::Arc::new(wall.clone())), now)
    }

    #[tokio::test(start_paused = true)]
    async fn taps_carry_their_wall_time() {
        let wall = super::super::ManualClock::at(1_700_000_000_000);
        let (mut gate, now) = clocked(OfflinePolicy::FailClosed, &wall);
        let cmds = gate.card(card("C1"), now);
        assert_eq!(
            cmds[0],
            Command::Publish(Outbound::Tap(
                Tap::new(gate.pending().cloned().expect("pending"), card("C1")),
                Stamp::online(1_700_000_000_000)
            ))
        );
        // Fail-closed: the timeout publishes nothing more; the waiting tap will be stale.
        wall.advance(1500);
        let cmds = gate.tick(now + Duration::from_millis(1500));
        assert!(!cmds.iter().any(|c| matches!(c, Command::Publish(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn fail_open_timeout_queues_an_offline_entry() {
        let wall = super::super::ManualClock::at(1_700_000_000_000);
        let (mut gate, now) = clocked(OfflinePolicy::FailOpen, &wall);
        let waiting = tap(&mut gate, "C1", now);
        wall.advance(1500);
        let cmds = gate.tick(now + Duration::from_millis(1500));
        let Some(Command::Publish(Outbound::Tap(entry, stamp))) = cmds.first() else {
            panic!("no offline entry: {cmds:?}");
        };
        assert_ne!(
            entry.id, waiting,
            "a new message, not the waiting tap again"
        );
        assert_eq!(entry.card, card("C1"));
        assert_eq!(
            entry.replaces.as_ref(),
            Some(&waiting),
            "names the waiting tap, so the ride is charged once"
        );
        assert_eq!(
            *stamp,
            Stamp::offline(1_700_000_000_000),
            "stamped with the tap's time"
        );
        assert!(shows_green(&cmds));
        // Answers to either are only logged: the light was already shown.
        assert!(gate
            .decision(&decision(Some(&waiting), Outcome::Stale))
            .is_empty());
        let settled = Outcome::EntrySettled {
            pass: pass(Some(9), None),
        };
        assert!(gate
            .decision(&decision(Some(&entry.id), settled))
            .is_empty());
    }

    /// A tap a fail-closed gate gave up on is named by the same card's next tap there (a retap),
    /// within RETAP_WITHIN; other cards' taps name nothing, and the retap's own timeout is named
    /// by the one after.
    #[tokio::test(start_paused = true)]
    async fn fail_closed_retap_names_the_unanswered_tap() {
        let replaces = |cmds: &[Command]| match cmds.first() {
            Some(Command::Publish(Outbound::Tap(t, stamp))) => {
                assert_eq!(stamp.mode, tapgate_protocol::TapMode::Online);
                (t.id.clone(), t.replaces.clone())
            }
            other => panic!("no tap: {other:?}"),
        };
        let (mut gate, now) = start(OfflinePolicy::FailClosed);
        let timeout = Duration::from_millis(1500);
        let first = tap(&mut gate, "C1", now);
        assert!(!shows_green(&gate.tick(now + timeout)));

        // Another card first: names nothing, and answered in time.
        let t = now + Duration::from_secs(3);
        let (other, named) = replaces(&gate.card(card("C2"), t));
        assert_eq!(named, None);
        gate.decision(&decision(Some(&other), granted(3)));

        // The rider taps again: the retap names the unanswered tap.
        let t = now + Duration::from_secs(6);
        let (retap, named) = replaces(&gate.card(card("C1"), t));
        assert_eq!(named, Some(first.clone()));
        // Unanswered too: the next tap names the retap, once only.
        assert!(!shows_green(&gate.tick(t + timeout)));
        let t = t + Duration::from_secs(4);
        let (third, named) = replaces(&gate.card(card("C1"), t));
        assert_eq!(named, Some(retap));
        assert!(shows_green(
            &gate.decision(&decision(Some(&third), granted(8)))
        ));
        let t = t + Duration::from_secs(4);
        let (fourth, named) = replaces(&gate.card(card("C1"), t));
        assert_eq!(named, None, "answered: nothing left to name");
        gate.decision(&decision(Some(&fourth), granted(7)));

        // Past RETAP_WITHIN the next tap is a tap of its own.
        let t = t + Duration::from_secs(4);
        let late = tap(&mut gate, "C1", t);
        assert!(!shows_green(&gate.tick(t + timeout)));
        let (_, named) = replaces(&gate.card(card("C1"), t + timeout + RETAP_WITHIN));
        assert_eq!(named, None, "{late} is too long ago");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_answer_never_opens() {
        let (mut gate, now) = start(OfflinePolicy::FailOpen);
        let id = tap(&mut gate, "C1", now);
        let cmds = gate.decision(&decision(Some(&id), Outcome::Stale));
        assert!(!shows_green(&cmds));
        assert_eq!(
            cmds[2],
            Command::Play(Sound::Say(Prompt::ServiceUnavailable))
        );
        assert_eq!(gate.pending(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn held_card_and_busy_gate() {
        let (mut gate, now) = start(OfflinePolicy::FailClosed);
        let id = tap(&mut gate, "C1", now);
        // Same card still on the reader: nothing.
        assert!(gate
            .card(card("C1"), now + Duration::from_millis(100))
            .is_empty());
        // Another card while waiting: ignored.
        assert!(gate
            .card(card("C2"), now + Duration::from_millis(200))
            .is_empty());
        gate.decision(&decision(Some(&id), granted(3)));
        // C1 lifted and tapped again after the hold window: a new tap with a new id.
        let id2 = tap(&mut gate, "C1", now + Duration::from_secs(3));
        assert_ne!(id, id2);
    }
}
