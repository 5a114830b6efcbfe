//! The sales terminal as a pure state machine.
//!
//! The bridge keeps the sale; the terminal publishes every new tap and every button press and
//! plays the prompt for each decision of the sales flow: `select_pass` → "select a pass",
//! `tap_to_confirm` → "tap your card to confirm", `pass_issued` → chime and "thank you for your
//! … pass", `already_has_pass`, `card_mismatch` ("different card — transaction cancelled"),
//! `tap_card_first` (a button with no sale) and `denied` (a blocked card). A message without a
//! decision by its deadline gets "service unavailable". Decisions for ids the terminal is not
//! waiting for are ignored with a log line, and so is a `stale` answer (the message reached the
//! bridge after its decision window; nothing was done). Every message is stamped with the wall
//! clock's time and `online`: a terminal always waits for its answer.

use std::time::Duration;

use tapgate_protocol::{Button, CardId, Decision, MessageId, Outcome, PassType, Stamp, Tap};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{system_clock, Command, Outbound, TapDebouncer, TapIds, WallClock};
use crate::prompt::{describe_denial, describe_pass, Prompt, Sound};

/// Timing of a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSettings {
    /// How long to wait for a decision.
    pub decision_timeout: Duration,
    /// Reader-level debounce: the same card within this window is the same tap.
    pub card_hold: Duration,
    /// Most messages awaiting a decision at once; older ones are given up.
    pub max_pending: usize,
}

impl Default for TerminalSettings {
    fn default() -> Self {
        Self {
            decision_timeout: Duration::from_millis(1500),
            card_hold: Duration::from_secs(2),
            max_pending: 16,
        }
    }
}

/// A sales terminal's logic.
pub struct Terminal {
    settings: TerminalSettings,
    ids: TapIds,
    debounce: TapDebouncer,
    pending: Vec<(MessageId, Instant)>,
    clock: WallClock,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("settings", &self.settings)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// A terminal whose process started at `boot_ms` (Unix ms, for message ids).
    pub fn new(settings: TerminalSettings, boot_ms: u64) -> Self {
        Self {
            settings,
            ids: TapIds::new(boot_ms),
            debounce: TapDebouncer::new(settings.card_hold),
            pending: Vec::new(),
            clock: system_clock(),
        }
    }

    /// The same terminal stamping its messages with `clock`.
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Ids awaiting a decision, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &MessageId> {
        self.pending.iter().map(|(id, _)| id)
    }

    /// When [`Terminal::tick`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|(_, d)| *d).min()
    }

    /// The reader saw `card` at `now`.
    pub fn card(&mut self, card: CardId, now: Instant) -> Vec<Command> {
        if !self.debounce.is_new_tap(&card, now) {
            return Vec::new();
        }
        let id = self.track(now);
        info!(%id, "Card tapped");
        let stamp = Stamp::online(self.clock.now_ms());
        vec![Command::Publish(Outbound::Tap(Tap::new(id, card), stamp))]
    }

    /// A pass button was pressed at `now`.
    pub fn button(&mut self, pass: PassType, now: Instant) -> Vec<Command> {
        let id = self.track(now);
        info!(%id, %pass, "Button pressed");
        let stamp = Stamp::online(self.clock.now_ms());
        vec![Command::Publish(Outbound::Button(
            Button { id, pass },
            stamp,
        ))]
    }

    fn track(&mut self, now: Instant) -> MessageId {
        let id = self.ids.next_id();
        if self.pending.len() >= self.settings.max_pending {
            let (old, _) = self.pending.remove(0);
            warn!(id = %old, "Too many messages awaiting decisions; giving up the oldest");
        }
        self.pending
            .push((id.clone(), now + self.settings.decision_timeout));
        id
    }

    /// A decision arrived on the terminal's decision topic.
    pub fn decision(&mut self, decision: &Decision) -> Vec<Command> {
        let outcome = decision.outcome.name();
        let pos = decision
            .id
            .as_ref()
            .and_then(|id| self.pending.iter().position(|(p, _)| p == id));
        let Some(pos) = pos else {
            let id = decision
                .id
                .as_ref()
                .map(MessageId::as_str)
                .unwrap_or("null");
            info!(id, outcome, "Decision ignored: not awaited");
            return Vec::new();
        };
        self.pending.remove(pos);
        let say = |p| Command::Play(Sound::Say(p));
        match &decision.outcome {
            Outcome::SelectPass => vec![say(Prompt::SelectPass)],
            Outcome::TapToConfirm { selected } => vec![
                say(Prompt::TapToConfirm),
                Command::Show(format!("{} pass selected", selected.spoken())),
            ],
            Outcome::PassIssued { pass } => vec![
                Command::Play(Sound::Chime),
                say(Prompt::ThankYou(pass.pass_type)),
                Command::Show(describe_pass(pass)),
            ],
            Outcome::AlreadyHasPass { pass } => vec![
                say(Prompt::AlreadyHasPass),
                Command::Show(describe_pass(pass)),
            ],
            Outcome::CardMismatch => vec![Command::Play(Sound::Buzzer), say(Prompt::CardMismatch)],
            Outcome::TapCardFirst => vec![say(Prompt::TapCardFirst)],
            Outcome::Denied { reason } => vec![
                Command::Play(Sound::Buzzer),
                say(Prompt::AccessDenied),
                Command::Show(describe_denial(*reason).into()),
            ],
            Outcome::Rejected { reason, detail } => {
                warn!(%reason, detail, "Message rejected by the bridge");
                vec![
                    Command::Play(Sound::Buzzer),
                    Command::Show(format!("rejected: {reason}")),
                ]
            }
            Outcome::Stale => {
                warn!(
                    outcome,
                    "Message reached the bridge too late; nothing was done"
                );
                vec![Command::Play(Sound::Say(Prompt::ServiceUnavailable))]
            }
            Outcome::Granted { .. }
            | Outcome::EntrySettled { .. }
            | Outcome::UnpaidEntry { .. } => {
                warn!(outcome, "Unexpected outcome at a terminal");
                vec![Command::Play(Sound::Buzzer)]
            }
        }
    }

    /// Time passed: messages whose decision is overdue get "service unavailable" (once).
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        let before = self.pending.len();
        self.pending.retain(|(id, deadline)| {
            let overdue = *deadline <= now;
            if overdue {
                warn!(%id, "No decision in time");
            }
            !overdue
        });
        if self.pending.len() == before {
            return Vec::new();
        }
        vec![
            Command::Play(Sound::Buzzer),
            Command::Play(Sound::Say(Prompt::ServiceUnavailable)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::{DenyReason, PassInfo, RejectReason};

    fn card(s: &str) -> CardId {
        CardId::new(s).expect("card")
    }

    fn published(cmds: &[Command]) -> MessageId {
        match cmds {
            [Command::Publish(o)] => o.id().clone(),
            other => panic!("expected one publish: {other:?}"),
        }
    }

    fn answer(t: &mut Terminal, id: &MessageId, outcome: Outcome) -> Vec<Command> {
        t.decision(&Decision {
            id: Some(id.clone()),
            outcome,
        })
    }

    fn prompts(cmds: &[Command]) -> Vec<Prompt> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Play(Sound::Say(p)) => Some(*p),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn messages_are_stamped_and_stale_answers_sell_nothing() {
        let wall = super::super::ManualClock::at(1_700_000_000_000);
        let mut t = Terminal::new(TerminalSettings::default(), 7)
            .with_clock(std::sync::Arc::new(wall.clone()));
        let now = Instant::now();
        let cmds = t.card(card("C1"), now);
        let [Command::Publish(tap)] = cmds.as_slice() else {
            panic!("{cmds:?}");
        };
        assert_eq!(tap.stamp(), Stamp::online(1_700_000_000_000));
        wall.advance(250);
        let cmds = t.button(PassType::TenTrip, now);
        let [Command::Publish(press)] = cmds.as_slice() else {
            panic!("{cmds:?}");
        };
        assert_eq!(press.stamp(), Stamp::online(1_700_000_000_250));
        // Too late at the bridge: nothing was done; the rider hears the service is unavailable.
        let cmds = answer(&mut t, tap.id(), Outcome::Stale);
        assert_eq!(prompts(&cmds), vec![Prompt::ServiceUnavailable]);
        assert!(!cmds
            .iter()
            .any(|c| matches!(c, Command::Play(Sound::Chime))));
        // Already answered: a repeat is ignored.
        assert!(answer(&mut t, tap.id(), Outcome::Stale).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn full_sale_prompts_in_order() {
        let mut t = Terminal::new(TerminalSettings::default(), 7);
        let now = Instant::now();
        let a = published(&t.card(card("C1"), now));
        let mut heard = prompts(&answer(&mut t, &a, Outcome::SelectPass));
        let cmds = t.button(PassType::TenTrip, now);
        assert!(matches!(
            &cmds[0],
            Command::Publish(Outbound::Button(
                Button {
                    pass: PassType::TenTrip,
                    ..
                },
                Stamp {
                    mode: tapgate_protocol::TapMode::Online,
                    ..
                }
            ))
        ));
        let b = published(&cmds);
        heard.extend(prompts(&answer(
            &mut t,
            &b,
            Outcome::TapToConfirm {
                selected: PassType::TenTrip,
            },
        )));
        let c = published(&t.card(card("C1"), now + Duration::from_secs(3)));
        let issued = answer(
            &mut t,
            &c,
            Outcome::PassIssued {
                pass: PassInfo::new(PassType::TenTrip),
            },
        );
        assert_eq!(issued[0], Command::Play(Sound::Chime));
        assert_eq!(
            issued[2],
            Command::Show("ten trip pass: 10 trips left".into())
        );
        heard.extend(prompts(&issued));
        assert_eq!(
            heard,
            vec![
                Prompt::SelectPass,
                Prompt::TapToConfirm,
                Prompt::ThankYou(PassType::TenTrip)
            ]
        );
        assert_eq!(t.pending().count(), 0);
        assert_eq!(t.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn every_outcome_has_its_prompt() {
        let pass = PassInfo::new(PassType::TwoHour);
        let cases = [
            (
                Outcome::AlreadyHasPass { pass },
                vec![Prompt::AlreadyHasPass],
            ),
            (Outcome::CardMismatch, vec![Prompt::CardMismatch]),
            (Outcome::TapCardFirst, vec![Prompt::TapCardFirst]),
            (
                Outcome::Denied {
                    reason: DenyReason::Blocked,
                },
                vec![Prompt::AccessDenied],
            ),
            (
                Outcome::Rejected {
                    reason: RejectReason::UnknownPassType,
                    detail: "x".into(),
                },
                vec![],
            ),
        ];
        for (outcome, expected) in cases {
            let mut t = Terminal::new(TerminalSettings::default(), 7);
            let id = published(&t.button(PassType::SingleUse, Instant::now()));
            assert_eq!(
                prompts(&answer(&mut t, &id, outcome.clone())),
                expected,
                "{outcome:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stray_decisions_and_timeouts() {
        let mut t = Terminal::new(TerminalSettings::default(), 7);
        let now = Instant::now();
        let stray = MessageId::new("x-1").expect("id");
        assert!(answer(&mut t, &stray, Outcome::SelectPass).is_empty());
        let a = published(&t.card(card("C1"), now));
        let b = published(&t.button(PassType::TwoHour, now + Duration::from_millis(500)));
        assert_eq!(t.deadline(), Some(now + Duration::from_millis(1500)));
        // The first times out alone: one "service unavailable".
        let cmds = t.tick(now + Duration::from_millis(1600));
        assert_eq!(prompts(&cmds), vec![Prompt::ServiceUnavailable]);
        assert_eq!(t.pending().collect::<Vec<_>>(), vec![&b]);
        assert!(answer(&mut t, &a, Outcome::SelectPass).is_empty(), "late");
        assert_eq!(
            prompts(&answer(&mut t, &b, Outcome::TapCardFirst)),
            vec![Prompt::TapCardFirst]
        );
        assert!(t.tick(now + Duration::from_secs(60)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn held_card_is_one_tap_and_pending_is_bounded() {
        let settings = TerminalSettings {
            max_pending: 2,
            ..TerminalSettings::default()
        };
        let mut t = Terminal::new(settings, 7);
        let now = Instant::now();
        published(&t.card(card("C1"), now));
        assert!(t
            .card(card("C1"), now + Duration::from_millis(50))
            .is_empty());
        published(&t.button(PassType::SingleUse, now));
        published(&t.button(PassType::TenTrip, now));
        assert_eq!(t.pending().count(), 2);
    }
}
