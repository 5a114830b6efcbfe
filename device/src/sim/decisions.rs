//! Every decision the simulator receives, checked: parsed, matched to the message it answers,
//! and compared with what the rules model predicted for that rider's card ([`super::model`]);
//! mismatches, late and lost answers are tallied for the report.

use super::*;

impl Sim {
    pub(super) fn on_decision(&mut self, dev: usize, payload: &[u8], at: Instant) {
        let decision = match Decision::from_json(payload) {
            Ok(d) => d,
            Err(e) => {
                warn!(device = %self.devices[dev].id, error = %e, "Unparseable decision");
                self.tally.unexpected += 1;
                return;
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
            return;
        };
        let key = (dev, id);
        let Some(inflight) = self.pending.remove(&key) else {
            if self.answered.contains_key(&key) {
                self.tally.duplicates += 1;
            } else {
                self.tally.unexpected += 1;
            }
            return;
        };
        self.answered.insert(key, ());
        self.tally.record_latency(at - inflight.scheduled);
        self.count(&decision.outcome);
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
            Sent::Rider { rider: r, input } => {
                let terminal = self.riders[r].terminal;
                let mut stranger = CardModel::default();
                let mut no_sale = None;
                let is_stranger =
                    matches!(&input, Input::TerminalTap(c) if *c != self.riders[r].card);
                let sale = match (&input, terminal) {
                    (Input::GateTap(_), _) | (_, None) => &mut no_sale,
                    (_, Some(t)) => &mut self.sales[t],
                };
                let card = if is_stranger {
                    &mut stranger
                } else {
                    &mut self.riders[r].model
                };
                let charged_before = card.wallet.charged;
                let result = check(
                    &input,
                    card,
                    sale,
                    &decision.outcome,
                    inflight.sent_ms,
                    recv_ms,
                    Timing {
                        catalogue: &self.catalogue,
                        sale_timeout_ms: self.sale_timeout_ms,
                        time: self.time,
                        stamp: inflight.stamp,
                    },
                );
                // Pay as you go: the amounts the bridge reported are the model's.
                let amounts = match &result {
                    Check::Match | Check::OperatorAction => {
                        let w = &card.wallet;
                        let charged = decision.charged.map(|c| (c, w.charged - charged_before));
                        let balance = decision.balance.map(|b| (b, w.balance));
                        match (charged, balance) {
                            (Some((got, want)), _) if got != want => {
                                Some(format!("charged {got}, the model {want}"))
                            }
                            (_, Some((got, want))) if got != want => {
                                Some(format!("balance {got}, the model {want}"))
                            }
                            _ => None,
                        }
                    }
                    Check::Mismatch(_) => None,
                };
                if let Some(why) = amounts {
                    self.tally.mismatch(format!(
                        "rider {r}: {input:?} {}: {why}",
                        decision.outcome.name()
                    ));
                }
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
                    decision.outcome,
                    Outcome::Denied {
                        reason: DenyReason::Blocked
                    } | Outcome::UnpaidEntry {
                        reason: DenyReason::Blocked
                    }
                );
                if refused_blocked && !is_stranger {
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
        }
    }

    pub(super) fn count(&mut self, outcome: &Outcome) {
        *self
            .tally
            .outcomes
            .entry(outcome.name().to_owned())
            .or_default() += 1;
    }
}
