//! Every decision the simulator receives, checked: parsed, matched to the message it answers,
//! and compared with what the rules model predicted for that rider's card ([`super::model`]);
//! mismatches, late and lost answers are tallied for the report.

use super::*;

impl Sim {
    /// Checks a decision device `dev` received at `at`: against the message it answers, and for
    /// a rider's message against the model; then the rider moves on to the next step.
    pub(super) fn on_decision(&mut self, dev: usize, payload: &[u8], at: Instant) {
        let Some((decision, inflight)) = self.answered(dev, payload, at) else {
            return;
        };
        let recv_ms = now_ms();
        match inflight.sent {
            Sent::Garbage(reason) => {
                let ok = matches!(&decision.outcome, Outcome::Rejected { reason: r, .. } if *r == reason);
                if !ok {
                    self.tally.mismatch(format!(
                        "garbage expecting rejected {reason}: got {}",
                        decision.outcome.name()
                    ));
                }
            }
            Sent::LateWaiting => {
                if !matches!(decision.outcome, Outcome::Stale) {
                    self.tally.mismatch(format!(
                        "a waiting tap {} ms late: expected stale, got {}",
                        recv_ms.saturating_sub(inflight.stamp.map_or(recv_ms, |s| s.time)),
                        serde_json::to_string(&decision.outcome).unwrap_or_default()
                    ));
                }
            }
            Sent::Rider { rider, input } => {
                let sent = (inflight.sent_ms, inflight.stamp);
                let result = self.check_rider(rider, &input, &decision, sent, recv_ms);
                self.rider_moves_on(rider, &input, result, &decision.outcome, at);
            }
        }
    }

    /// The decision in `payload` and the message it answers, its latency and outcome counted;
    /// `None` when it answers nothing waiting (counted as unexpected or a duplicate), or is a
    /// refusal of garbage without an id.
    fn answered(
        &mut self,
        dev: usize,
        payload: &[u8],
        at: Instant,
    ) -> Option<(Decision, Inflight)> {
        let decision = match Decision::from_json(payload) {
            Ok(d) => d,
            Err(e) => {
                warn!(device = %self.devices[dev].id, error = %e, "Unparseable decision");
                self.tally.unexpected += 1;
                return None;
            }
        };
        let Some(id) = decision.id.clone() else {
            match (&decision.outcome, self.null_expected[dev].pop_front()) {
                (Outcome::Rejected { .. }, Some(scheduled)) => {
                    self.count(&decision.outcome);
                    self.tally.record_latency(at - scheduled);
                }
                _ => self.tally.unexpected += 1,
            }
            return None;
        };
        let key = (dev, id);
        let Some(inflight) = self.pending.remove(&key) else {
            if self.answered.contains_key(&key) {
                self.tally.duplicates += 1;
            } else {
                self.tally.unexpected += 1;
            }
            return None;
        };
        self.answered.insert(key, ());
        self.tally.record_latency(at - inflight.scheduled);
        self.count(&decision.outcome);
        Some((decision, inflight))
    }

    /// Rider `r`'s `input` (sent at `sent_ms` with `stamp`) checked against the model of its
    /// card, or of a stranger's card it had a sale confirmed with; the model then holds what the
    /// decision did. Pay as you go: the amounts the bridge reported must be the model's too.
    fn check_rider(
        &mut self,
        r: usize,
        input: &Input,
        decision: &Decision,
        (sent_ms, stamp): (u64, Option<Stamp>),
        recv_ms: u64,
    ) -> Check {
        let terminal = self.riders[r].terminal;
        let mut stranger = CardModel::default();
        let mut no_sale = None;
        let is_stranger = self.strangers_tap(r, input);
        let sale = match (input, terminal) {
            (Input::GateTap(_), _) | (_, None) => &mut no_sale,
            (_, Some(t)) => &mut self.sales[t],
        };
        let card = if is_stranger {
            &mut stranger
        } else {
            &mut self.riders[r].model
        };
        let charged_before = card.wallet.charged;
        let timing = Timing {
            catalogue: &self.catalogue,
            sale_timeout_ms: self.sale_timeout_ms,
            time: self.time,
            stamp,
        };
        let result = check(
            input,
            card,
            sale,
            &decision.outcome,
            sent_ms,
            recv_ms,
            timing,
        );
        if let Check::Match | Check::OperatorAction = result {
            let w = &card.wallet;
            let charged = decision.charged.map(|c| (c, w.charged - charged_before));
            let balance = decision.balance.map(|b| (b, w.balance));
            let differ = match (charged, balance) {
                (Some((got, want)), _) if got != want => {
                    Some(format!("charged {got}, the model {want}"))
                }
                (_, Some((got, want))) if got != want => {
                    Some(format!("balance {got}, the model {want}"))
                }
                _ => None,
            };
            if let Some(why) = differ {
                self.tally.mismatch(format!(
                    "rider {r}: {input:?} {}: {why}",
                    decision.outcome.name()
                ));
            }
        }
        result
    }

    /// Rider `r`, answered `outcome` to `input` at `at`, takes the next step of its plan (after a
    /// mismatch it gives its plan up); a rider whose card was refused as blocked gets a new one.
    /// With the plan done it rests after a journey, or is ready at once.
    fn rider_moves_on(
        &mut self,
        r: usize,
        input: &Input,
        result: Check,
        outcome: &Outcome,
        at: Instant,
    ) {
        let rider = &mut self.riders[r];
        rider.busy = false;
        match result {
            Check::Match => {
                rider.plan.pop_front();
            }
            Check::OperatorAction => {
                self.tally.operator_actions += 1;
                rider.plan.pop_front();
            }
            Check::Mismatch(why) => {
                self.tally.mismatch(format!("rider {r}: {why}"));
                self.release(r);
            }
        }
        let refused_blocked = matches!(
            outcome,
            Outcome::Denied {
                reason: DenyReason::Blocked
            } | Outcome::UnpaidEntry {
                reason: DenyReason::Blocked
            }
        );
        if refused_blocked && !self.strangers_tap(r, input) {
            self.new_card(r);
        }
        if self.riders[r].plan.is_empty() {
            self.release(r);
            let journey = matches!(input, Input::GateTap(_));
            match self.rest() {
                Some(rest) if journey => self.resting.push(Reverse((at + rest, r))),
                _ => self.ready.push_back(r),
            }
        } else {
            self.urgent.push_back(r);
        }
    }

    /// Whether rider `r`'s `input` is a stranger's card tapped to confirm the rider's sale.
    fn strangers_tap(&self, r: usize, input: &Input) -> bool {
        matches!(input, Input::TerminalTap(c) if *c != self.riders[r].card)
    }

    pub(super) fn count(&mut self, outcome: &Outcome) {
        *self
            .tally
            .outcomes
            .entry(outcome.name().to_owned())
            .or_default() += 1;
    }
}
