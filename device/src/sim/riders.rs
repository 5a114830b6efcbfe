//! What the simulated riders do next: the schedule's slots, each rider's plan at a terminal
//! (tap, buttons, a stranger's confirming tap) or a ride at a gate, garbage in some slots,
//! resting between journeys, and a gate's connection dropped now and then. What each decision
//! should have been is checked in [`super::decisions`].

use super::*;

/// One step of a rider's plan at its terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Tap the rider's card.
    Tap,
    /// Press the button of a product, on the catalogue's terms.
    Button(Terms),
    /// A stranger's card confirms: the sale is void.
    StrangerTap,
}

#[derive(Debug)]
pub(super) struct Rider {
    pub(super) card: CardId,
    pub(super) model: CardModel,
    pub(super) busy: bool,
    pub(super) terminal: Option<usize>,
    pub(super) plan: VecDeque<Step>,
}

impl Sim {
    pub(super) fn free_gate(&mut self) -> Option<usize> {
        let n = self.gates.len();
        let start = self.rng.below(n);
        (0..n)
            .map(|i| self.gates[(start + i) % n])
            .find(|&g| self.devices[g].up)
    }

    pub(super) fn free_terminal(&mut self) -> Option<usize> {
        let n = self.terminals.len();
        let start = self.rng.below(n);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&t| self.terminal_owner[t].is_none() && self.devices[self.terminals[t]].up)
    }

    /// One schedule slot: send something, or count the slot as skipped.
    pub(super) fn slot(&mut self, scheduled: Instant) {
        while let Some(&Reverse((until, r))) = self.resting.peek() {
            if until > scheduled {
                break;
            }
            self.resting.pop();
            self.ready.push_back(r);
        }
        if self.rng.chance(self.cfg.garbage) && self.send_garbage(scheduled) {
            return;
        }
        if let Some(r) = self.urgent.pop_front() {
            if self.act(r, scheduled) {
                return;
            }
            self.urgent.push_back(r);
        }
        for _ in 0..16 {
            let Some(r) = self.ready.pop_front() else {
                break;
            };
            if self.act(r, scheduled) {
                return;
            }
            self.ready.push_back(r);
        }
        self.tally.skipped_slots += 1;
    }

    pub(super) fn send_garbage(&mut self, scheduled: Instant) -> bool {
        let Some(gate) = self.free_gate() else {
            return false;
        };
        let id = self.message_id();
        let (payload, reason, has_id) = match self.rng.below(4) {
            0 => (
                format!(r#"{{"id":"{id}","card":"not a card!"}}"#),
                RejectReason::InvalidCard,
                true,
            ),
            1 => (
                format!(r#"{{"id":"{id}","card":"ABC123","colour":"red"}}"#),
                RejectReason::UnknownField,
                true,
            ),
            2 => (
                format!(r#"{{"id":"{id}","card":12345}}"#),
                RejectReason::WrongType,
                true,
            ),
            _ => (
                format!(r#"{{"id":"{id}","card":"#),
                RejectReason::MalformedJson,
                false,
            ),
        };
        let topic = self.devices[gate].tap_topic.clone();
        let payload = payload.into_bytes();
        if !self.publish(gate, topic.clone(), payload.clone()) {
            return false;
        }
        self.tally.garbage_sent += 1;
        if has_id {
            self.pending.insert(
                (gate, id),
                Inflight::now(Sent::Garbage(reason), scheduled, None, topic, payload),
            );
        } else {
            self.null_expected[gate].push_back(scheduled);
        }
        true
    }

    /// Where rider `r`'s next step goes and what it is: a tap at a free gate when the plan is
    /// done, else the plan's next step at the rider's terminal (a stranger's card, for a sale
    /// confirmed by one). `None` when no device can take it now.
    fn next_message(&mut self, r: usize) -> Option<(usize, String, Input)> {
        let step = self.riders[r].plan.front().copied();
        let card = self.riders[r].card.clone();
        let message = match (step, self.riders[r].terminal) {
            (None, _) => {
                let gate = self.free_gate()?;
                let topic = self.devices[gate].tap_topic.clone();
                (gate, topic, Input::GateTap(card))
            }
            (Some(step), Some(t)) => {
                let dev = self.terminals[t];
                let d = &self.devices[dev];
                if !d.up {
                    return None;
                }
                match step {
                    Step::Tap => (dev, d.tap_topic.clone(), Input::TerminalTap(card)),
                    Step::StrangerTap => {
                        self.strangers += 1;
                        let stranger = CardId::new(format!("{}X{}", self.run, self.strangers))
                            .expect("alphanumeric");
                        let topic = d.tap_topic.clone();
                        (dev, topic, Input::TerminalTap(stranger))
                    }
                    Step::Button(terms) => (dev, d.button_topic.clone(), Input::Button(terms)),
                }
            }
            (Some(_), None) => {
                self.riders[r].plan.clear();
                return None;
            }
        };
        Some(message)
    }

    /// The rider's next move; false if it cannot move now.
    pub(super) fn act(&mut self, r: usize, scheduled: Instant) -> bool {
        if self.riders[r].plan.is_empty() {
            self.plan(r);
        }
        let Some((dev, topic, input)) = self.next_message(r) else {
            return false;
        };
        let mut stamp = Stamp::online(now_ms());
        let mut replaces = None;
        if matches!(input, Input::GateTap(_))
            && self.cfg.outage > 0.0
            && self.rng.chance(self.cfg.outage)
        {
            let at = now_ms().saturating_sub(self.cfg.outage_age.as_millis() as u64);
            // The waiting tap, queued at the broker while the bridge was away.
            let late = self.message_id();
            let body = serde_json::json!({"id": late, "card": card_of(&input)});
            let payload = stamped(body, Stamp::online(at)).into_bytes();
            if !self.publish(dev, topic.clone(), payload.clone()) {
                return false;
            }
            self.tally.taps_sent += 1;
            self.pending.insert(
                (dev, late.clone()),
                Inflight::now(
                    Sent::LateWaiting,
                    scheduled,
                    Some(Stamp::online(at)),
                    topic.clone(),
                    payload,
                ),
            );
            if self.rng.chance(0.5) {
                // Fail-closed: the rider was turned away; nothing else is sent.
                self.ready.push_back(r);
                return true;
            }
            // Fail-open: the rider went through; the gate queued the entry, naming the tap.
            stamp = Stamp::offline(at);
            replaces = Some(late);
        }
        let id = self.message_id();
        let is_tap = !matches!(input, Input::Button(_));
        let body = match &input {
            Input::GateTap(c) | Input::TerminalTap(c) => serde_json::to_value(Tap {
                id: id.clone(),
                card: c.clone(),
                replaces,
            })
            .expect("a tap serialises"),
            // The button sends the product's id; the bridge looks its terms up.
            Input::Button(terms) => serde_json::json!({"id": id, "pass": terms.product}),
        };
        let payload = stamped(body, stamp).into_bytes();
        if !self.publish(dev, topic.clone(), payload.clone()) {
            return false;
        }
        if is_tap {
            self.tally.taps_sent += 1;
        } else {
            self.tally.buttons_sent += 1;
        }
        self.riders[r].busy = true;
        self.pending.insert(
            (dev, id),
            Inflight::now(
                Sent::Rider { rider: r, input },
                scheduled,
                Some(stamp),
                topic,
                payload,
            ),
        );
        true
    }

    /// Publishes again, with the same id, every message that has waited too long for its
    /// decision ([`crate::link::retry_delay`]), as a device's outbox does: a broker can drop a
    /// message it acknowledged (mosquitto 2.0 forgets shared subscriptions at a restart).
    pub(super) fn retry_undecided(&mut self) {
        let now = Instant::now();
        let due: Vec<(usize, String, Vec<u8>)> = self
            .pending
            .iter_mut()
            .filter(|(_, f)| now.duration_since(f.last_sent) >= crate::link::retry_delay(f.retries))
            .map(|((dev, _), f)| {
                f.last_sent = now;
                f.retries += 1;
                (*dev, f.topic.clone(), f.payload.clone())
            })
            .collect();
        for (dev, topic, payload) in due {
            if self.devices[dev].up && self.publish(dev, topic, payload) {
                self.tally.republished += 1;
            }
        }
    }

    /// Whether rider `r` rides pay as you go: every second rider, when the catalogue has pay as
    /// you go and sells top-ups. They buy no passes; they top up when the balance cannot pay
    /// the next fare, else ride.
    pub(super) fn pays_as_you_go(&self, r: usize) -> bool {
        r % 2 == 0 && self.catalogue.payg.is_some() && self.catalogue.sells_top_ups()
    }

    /// Chooses what an idle rider does next: ride, or buy at a free terminal.
    pub(super) fn plan(&mut self, r: usize) {
        if self.pays_as_you_go(r) {
            return self.plan_payg(r);
        }
        let has_pass = self.riders[r].model.pass.is_some();
        let buy = if has_pass {
            self.rng.chance(self.cfg.rebuy)
        } else {
            !self.rng.chance(self.cfg.no_pass)
        };
        if !buy {
            return; // an empty plan is a gate tap
        }
        let Some(t) = self.free_terminal() else {
            return;
        };
        self.terminal_owner[t] = Some(r);
        let rider = &mut self.riders[r];
        rider.terminal = Some(t);
        if has_pass {
            rider.plan.push_back(Step::Tap); // expect already_has_pass
            return;
        }
        // Passes only, where the catalogue has any: top-ups are for pay-as-you-go riders.
        let passes: Vec<Terms> = self
            .catalogue
            .products
            .iter()
            .map(|p| p.terms)
            .filter(|t| t.validity != Validity::TopUp)
            .collect();
        let choice = if passes.is_empty() {
            self.catalogue.products.iter().map(|p| p.terms).collect()
        } else {
            passes
        };
        let terms = choice[self.rng.below(choice.len())];
        if self.rng.chance(self.cfg.button_first) {
            rider.plan.push_back(Step::Button(terms)); // expect tap_card_first
        }
        rider.plan.push_back(Step::Tap);
        rider.plan.push_back(Step::Button(terms));
        if self.rng.chance(self.cfg.mismatch) {
            rider.plan.push_back(Step::StrangerTap);
        } else {
            rider.plan.push_back(Step::Tap);
        }
    }

    /// A pay-as-you-go rider's next step: a top-up when the balance cannot pay a fare (now and
    /// then, by `no_pass`, they ride anyway and are refused `insufficient_funds`), else a ride.
    pub(super) fn plan_payg(&mut self, r: usize) {
        let Some(payg) = self.catalogue.payg else {
            return;
        };
        let balance = self.riders[r].model.wallet.balance;
        let fare = i64::try_from(payg.fare).unwrap_or(i64::MAX);
        let low = balance.saturating_sub(fare) < payg.minimum_balance;
        if !low || self.rng.chance(self.cfg.no_pass) {
            return; // ride
        }
        let top_ups: Vec<Terms> = self
            .catalogue
            .products
            .iter()
            .map(|p| p.terms)
            .filter(|t| t.validity == Validity::TopUp)
            .collect();
        let Some(t) = self.free_terminal() else {
            return;
        };
        let terms = top_ups[self.rng.below(top_ups.len())];
        self.terminal_owner[t] = Some(r);
        let rider = &mut self.riders[r];
        rider.terminal = Some(t);
        rider
            .plan
            .extend([Step::Tap, Step::Button(terms), Step::Tap]);
    }

    /// A rider whose card was refused as blocked stops using it: whatever they were doing at a
    /// terminal is dropped, and they carry on with a new card holding no pass.
    pub(super) fn new_card(&mut self, r: usize) {
        self.release(r);
        self.new_cards += 1;
        let card = CardId::new(format!("{}N{}", self.run, self.new_cards)).expect("alphanumeric");
        let rider = &mut self.riders[r];
        info!(rider = r, blocked = %rider.card, new = %card, "Rider stops using a blocked card");
        rider.card = card;
        rider.model = CardModel::default();
    }

    pub(super) fn release(&mut self, r: usize) {
        let rider = &mut self.riders[r];
        rider.plan.clear();
        if let Some(t) = rider.terminal.take() {
            self.terminal_owner[t] = None;
        }
    }

    /// How long a rider rests after this journey: between half and one and a half times
    /// `rest`; `None` when riders do not rest.
    pub(super) fn rest(&mut self) -> Option<Duration> {
        if self.cfg.rest.is_zero() {
            return None;
        }
        // below(1001) / 1000 is a uniform draw in [0, 1].
        let draw = 0.5 + self.rng.below(1001) as f64 / 1000.0;
        Some(self.cfg.rest.mul_f64(draw))
    }

    pub(super) fn drop_a_gate(&mut self) {
        let Some(g) = self.free_gate() else {
            return;
        };
        let d = &mut self.devices[g];
        if d.control.try_send(self.cfg.drop_for).is_ok() {
            d.up = false;
            d.client = None;
            self.tally.connection_drops += 1;
            info!(device = %d.id, "Dropping a gate's connection");
        }
    }
}
