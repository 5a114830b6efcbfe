//! The rider simulator: `tapgate-device simulate`.
//!
//! One MQTT client per simulated device ([`fleet`]). Riders buy passes at terminals through the
//! full sales flow and ride by tapping gates; some tap with no pass, press a button before
//! tapping, or have their sale confirmed by a stranger's card; some slots send garbage; now and
//! then a gate's connection is dropped and restored. Riders buy the products of the bridge's
//! fare catalogue (`--fares`, the same file; the built-in catalogue without one), each product
//! as likely as any other; a rider whose card is refused as blocked (an operator's doing) stops
//! using it and carries on with a new card. After a journey a rider rests (`rest`, randomised)
//! before the next, so a pass is used at a believable pace. Messages go out on a fixed schedule
//! (open loop). Every message is stamped with when it happened and every decision is checked against
//! [`tapgate_protocol::rules::decide_timed`] through the [`model`]; a card is never in flight twice
//! and a terminal serves one sale at a time, so predictions are deterministic.
//!
//! Outage mode (`outage` > 0): some gate rides happened during a bridge outage and arrive
//! `outage_age` late. At a fail-closed gate only the waiting tap arrives: it must be `stale` and
//! charge nothing. At a fail-open gate the waiting tap (`stale`) and the offline entry the gate
//! queued, naming it (`replaces`), arrive in either order: the entry must be settled at the tap's
//! time — one trip off a trips pass, a period's window from the tap, an `unpaid_entry` for a
//! card that could not pay. Progress goes to stderr once a second; the [`report`] ends the run.
//!
//! - [`config`]: settings. - [`devices`]: provisioned device logins. - [`fleet`]: the MQTT
//!   clients. - [`model`]: predictions. - [`report`]: counters, histogram, summary. - [`rng`]:
//!   seeded randomness.

pub mod config;
pub mod devices;
pub mod fleet;
pub mod model;
pub mod report;
pub mod rng;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::QoS;
use tapgate_protocol::rules::{Input, Sale, TimeSettings};
use tapgate_protocol::{
    CardId, Catalogue, Decision, DenyReason, DeviceId, DeviceKind, MessageId, Outcome, Stamp,
    Terms, Validity,
};
use tapgate_protocol::{RejectReason, Tap};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{SimArgs, SimConfig};
use fleet::{Device, FleetConfig, FleetEvent};
use model::{check, CardModel, Check, Timing};
use report::{Summary, Tally};
use rng::Rng;

use crate::config::ConfigError;
use crate::runtime::now_ms;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Not every simulated device could connect.
    #[error(
        "only {up} of {total} simulated devices connected within 20s; is the broker at {url}?"
    )]
    Connect {
        /// Devices connected.
        up: usize,
        /// Devices started.
        total: usize,
        url: String,
    },
    /// The summary could not be written.
    #[error("cannot write the summary to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// Strict mode: mismatches or lost decisions.
    #[error("{mismatches} mismatched and {lost} lost decisions")]
    Failed {
        mismatches: u64,
        /// Lost decisions.
        lost: u64,
    },
}

/// One step of a rider's plan at its terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Tap the rider's card.
    Tap,
    /// Press the button of a product, on the catalogue's terms.
    Button(Terms),
    /// A stranger's card confirms: the sale is void.
    StrangerTap,
}

#[derive(Debug)]
struct Rider {
    card: CardId,
    model: CardModel,
    busy: bool,
    terminal: Option<usize>,
    plan: VecDeque<Step>,
}

/// What a message was, to check its decision.
#[derive(Debug, Clone)]
enum Sent {
    Rider {
        rider: usize,
        input: Input,
    },
    Garbage(RejectReason),
    /// A waiting tap made during an outage, arriving after the decision window.
    LateWaiting,
}

#[derive(Debug)]
struct Inflight {
    sent: Sent,
    scheduled: Instant,
    sent_ms: u64,
    stamp: Option<Stamp>,
    /// Where and what was published, to publish it again.
    topic: String,
    payload: Vec<u8>,
    /// When it was last published.
    last_sent: Instant,
    /// How often it was published again.
    retries: u32,
}

/// A message payload with its stamp.
fn stamped(mut body: serde_json::Value, stamp: Stamp) -> String {
    body["time"] = stamp.time.into();
    body["mode"] = stamp.mode.as_str().into();
    body.to_string()
}

struct Sim {
    cfg: SimConfig,
    /// The bridge's fare catalogue: what riders buy, and the terms the model sells it on.
    catalogue: Catalogue,
    /// The bridge's sale timeout, ms.
    sale_timeout_ms: u64,
    time: TimeSettings,
    rng: Rng,
    run: String,
    devices: Vec<Device>,
    gates: Vec<usize>,
    terminals: Vec<usize>,
    sales: Vec<Option<Sale>>,
    terminal_owner: Vec<Option<usize>>,
    riders: Vec<Rider>,
    urgent: VecDeque<usize>,
    ready: VecDeque<usize>,
    /// Riders resting after a journey, by when they are ready again.
    resting: BinaryHeap<Reverse<(Instant, usize)>>,
    pending: HashMap<(usize, MessageId), Inflight>,
    answered: HashMap<(usize, MessageId), ()>,
    null_expected: Vec<VecDeque<Instant>>,
    next_id: u64,
    strangers: u64,
    /// Cards handed out to replace blocked ones.
    new_cards: u64,
    tally: Tally,
}

impl Sim {
    fn message_id(&mut self) -> MessageId {
        self.next_id += 1;
        MessageId::new(format!("s{}", self.next_id)).expect("numeric ids are valid")
    }

    fn publish(&mut self, dev: usize, topic: String, payload: Vec<u8>) -> bool {
        let d = &self.devices[dev];
        let Some(client) = &d.client else {
            return false;
        };
        d.requested.fetch_add(1, Ordering::SeqCst);
        match client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            Ok(()) => true,
            Err(e) => {
                d.requested.fetch_sub(1, Ordering::SeqCst);
                warn!(device = %d.id, error = %e, "Simulated device refused a message");
                self.tally.send_failures += 1;
                false
            }
        }
    }

    fn free_gate(&mut self) -> Option<usize> {
        let n = self.gates.len();
        let start = self.rng.below(n);
        (0..n)
            .map(|i| self.gates[(start + i) % n])
            .find(|&g| self.devices[g].up)
    }

    fn free_terminal(&mut self) -> Option<usize> {
        let n = self.terminals.len();
        let start = self.rng.below(n);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&t| self.terminal_owner[t].is_none() && self.devices[self.terminals[t]].up)
    }

    /// One schedule slot: send something, or count the slot as skipped.
    fn slot(&mut self, scheduled: Instant) {
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

    fn send_garbage(&mut self, scheduled: Instant) -> bool {
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
                Inflight {
                    sent: Sent::Garbage(reason),
                    scheduled,
                    sent_ms: now_ms(),
                    stamp: None,
                    topic,
                    payload,
                    last_sent: Instant::now(),
                    retries: 0,
                },
            );
        } else {
            self.null_expected[gate].push_back(scheduled);
        }
        true
    }

    /// The rider's next move; false if it cannot move now.
    fn act(&mut self, r: usize, scheduled: Instant) -> bool {
        if self.riders[r].plan.is_empty() {
            self.plan(r);
        }
        let step = self.riders[r].plan.front().copied();
        let card = self.riders[r].card.clone();
        let (dev, topic, input) = match (step, self.riders[r].terminal) {
            (None, _) => {
                let Some(gate) = self.free_gate() else {
                    return false;
                };
                let topic = self.devices[gate].tap_topic.clone();
                (gate, topic, Input::GateTap(card))
            }
            (Some(step), Some(t)) => {
                let dev = self.terminals[t];
                let d = &self.devices[dev];
                if !d.up {
                    return false;
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
                return false;
            }
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
                Inflight {
                    sent: Sent::LateWaiting,
                    scheduled,
                    sent_ms: now_ms(),
                    stamp: Some(Stamp::online(at)),
                    topic: topic.clone(),
                    payload,
                    last_sent: Instant::now(),
                    retries: 0,
                },
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
            Inflight {
                sent: Sent::Rider { rider: r, input },
                scheduled,
                sent_ms: now_ms(),
                stamp: Some(stamp),
                topic,
                payload,
                last_sent: Instant::now(),
                retries: 0,
            },
        );
        true
    }

    /// Publishes again, with the same id, every message that has waited too long for its
    /// decision ([`crate::link::retry_delay`]), as a device's outbox does: a broker can drop a
    /// message it acknowledged (mosquitto 2.0 forgets shared subscriptions at a restart).
    fn retry_undecided(&mut self) {
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
    fn pays_as_you_go(&self, r: usize) -> bool {
        r % 2 == 0 && self.catalogue.payg.is_some() && self.catalogue.sells_top_ups()
    }

    /// Chooses what an idle rider does next: ride, or buy at a free terminal.
    fn plan(&mut self, r: usize) {
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
    fn plan_payg(&mut self, r: usize) {
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
    fn new_card(&mut self, r: usize) {
        self.release(r);
        self.new_cards += 1;
        let card = CardId::new(format!("{}N{}", self.run, self.new_cards)).expect("alphanumeric");
        let rider = &mut self.riders[r];
        info!(rider = r, blocked = %rider.card, new = %card, "Rider stops using a blocked card");
        rider.card = card;
        rider.model = CardModel::default();
    }

    fn release(&mut self, r: usize) {
        let rider = &mut self.riders[r];
        rider.plan.clear();
        if let Some(t) = rider.terminal.take() {
            self.terminal_owner[t] = None;
        }
    }

    fn on_decision(&mut self, dev: usize, payload: &[u8], at: Instant) {
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

    /// How long a rider rests after this journey: between half and one and a half times
    /// `rest`; `None` when riders do not rest.
    fn rest(&mut self) -> Option<Duration> {
        if self.cfg.rest.is_zero() {
            return None;
        }
        // below(1001) / 1000 is a uniform draw in [0, 1].
        let draw = 0.5 + self.rng.below(1001) as f64 / 1000.0;
        Some(self.cfg.rest.mul_f64(draw))
    }

    fn count(&mut self, outcome: &Outcome) {
        *self
            .tally
            .outcomes
            .entry(outcome.name().to_owned())
            .or_default() += 1;
    }

    fn inflight(&self) -> usize {
        self.pending.len() + self.null_expected.iter().map(VecDeque::len).sum::<usize>()
    }

    fn drop_a_gate(&mut self) {
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

    fn on_fleet(&mut self, event: FleetEvent) {
        match event {
            FleetEvent::Decision(dev, payload, at) => self.on_decision(dev, &payload, at),
            FleetEvent::Up(dev, client) => {
                let d = &mut self.devices[dev];
                d.client = Some(client);
                d.up = true;
            }
            FleetEvent::Down(_) => {}
        }
    }
}

/// The card of a tap.
fn card_of(input: &Input) -> Option<&CardId> {
    match input {
        Input::GateTap(c) | Input::TerminalTap(c) => Some(c),
        Input::Button(_) => None,
    }
}

/// Runs a simulation until its duration (plus grace) has passed or `shutdown`. `cfg` is taken as
/// [`SimArgs::load`](config::SimArgs::load) checked it (or as its `Default` is): it is not
/// checked again.
pub async fn run(cfg: SimConfig, shutdown: CancellationToken) -> Result<Summary, SimError> {
    let topics = cfg.prefix.clone();
    let seed = if cfg.seed == 0 { now_ms() } else { cfg.seed };
    let run = format!("S{seed:x}").to_uppercase();
    info!(seed, run, "Simulation starting");
    let fleet_cfg = FleetConfig {
        broker: cfg.broker()?,
        topics,
    };
    // Provisioned devices log in as themselves; otherwise invent ids and share one login.
    let roster: Vec<(DeviceKind, DeviceId, fleet::Login)> = match &cfg.devices {
        Some(path) => devices::load(path)?
            .into_iter()
            .map(|d| (d.kind, d.id, Some(d.password)))
            .collect(),
        None => {
            let lower = run.to_lowercase();
            let mut list = Vec::new();
            for (kind, count) in [
                (DeviceKind::Gate, cfg.gates),
                (DeviceKind::Terminal, cfg.terminals),
            ] {
                for n in 0..count {
                    let letter = if kind == DeviceKind::Gate { 'g' } else { 't' };
                    let id = DeviceId::new(format!("sim-{lower}-{letter}{n}"))
                        .map_err(|e| crate::config::invalid("seed", e.to_string()))?;
                    list.push((kind, id, None));
                }
            }
            list
        }
    };
    // The bridge refuses a device's messages beyond its rate limit (`--device-rate`, 20 a second
    // by default, after a burst of 1000): a load test above that must raise it or switch it off.
    let per_device = cfg.rate / roster.len().max(1) as f64;
    if per_device > 20.0 {
        warn!(
            per_device,
            "Each simulated device sends more than 20 messages a second, the bridge's default \
             --device-rate: run the bridge with a higher one, or --device-rate 0, or it refuses \
             them as rate_limited once a device's burst is spent"
        );
    }
    let fleet_stop = CancellationToken::new();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut devices = Vec::new();
    let mut gates = Vec::new();
    let mut terminals = Vec::new();
    for (kind, id, login) in roster {
        let index = devices.len();
        match kind {
            DeviceKind::Gate => gates.push(index),
            DeviceKind::Terminal => terminals.push(index),
        }
        let device = fleet::spawn(
            &fleet_cfg,
            index,
            kind,
            id,
            &login,
            events_tx.clone(),
            fleet_stop.clone(),
        )
        .map_err(|e| crate::config::invalid("mqtt", e.to_string()))?;
        devices.push(device);
    }
    let riders = (0..cfg.riders)
        .map(|n| Rider {
            card: CardId::new(format!("{run}R{n}")).expect("alphanumeric"),
            model: CardModel::default(),
            busy: false,
            terminal: None,
            plan: VecDeque::new(),
        })
        .collect();
    let n_devices = devices.len();
    let catalogue = cfg.catalogue()?;
    info!(
        products = %catalogue.ids(),
        version = %catalogue.version,
        "Riders buy from the fare catalogue"
    );
    let mut sim = Sim {
        catalogue,
        sale_timeout_ms: u64::try_from(cfg.sale_timeout.as_millis()).unwrap_or(u64::MAX),
        time: TimeSettings {
            decision_window_ms: cfg.decision_window.as_millis() as u64,
            ..TimeSettings::default()
        },
        rng: Rng::new(seed),
        run,
        sales: vec![None; terminals.len()],
        terminal_owner: vec![None; terminals.len()],
        gates,
        terminals,
        devices,
        riders,
        urgent: VecDeque::new(),
        ready: (0..cfg.riders).collect(),
        resting: BinaryHeap::new(),
        pending: HashMap::new(),
        answered: HashMap::new(),
        null_expected: vec![VecDeque::new(); n_devices],
        next_id: 0,
        strangers: 0,
        new_cards: 0,
        tally: Tally::default(),
        cfg,
    };

    // Wait until every device is connected.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.devices.iter().any(|d| !d.up) {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {
                let up = sim.devices.iter().filter(|d| d.up).count();
                fleet_stop.cancel();
                let url = tapgate_protocol::broker::redact(&sim.cfg.broker.mqtt);
                return Err(SimError::Connect { up, total: n_devices, url });
            }
            Some(e) = events.recv() => sim.on_fleet(e),
        }
    }
    eprintln!(
        "simulating {} riders on {} gates and {} terminals at {}/s for {:?}",
        sim.cfg.riders,
        sim.gates.len(),
        sim.terminals.len(),
        sim.cfg.rate,
        sim.cfg.duration
    );

    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / sim.cfg.rate);
    let end = start + sim.cfg.duration;
    let mut slot_n: u32 = 0;
    let mut next_slot = start;
    let mut progress =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let drop_every = sim.cfg.drop_every;
    let mut next_drop = (!drop_every.is_zero()).then(|| start + drop_every);
    let mut sending = true;
    let mut sending_time = sim.cfg.duration;
    loop {
        if sending && next_slot >= end {
            sending = false;
            sending_time = start.elapsed();
        }
        if !sending && sim.inflight() == 0 {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                if sending {
                    sending_time = start.elapsed();
                }
                break;
            }
            Some(e) = events.recv() => sim.on_fleet(e),
            _ = tokio::time::sleep_until(next_slot), if sending => {
                sim.slot(next_slot);
                slot_n += 1;
                next_slot = start + period * slot_n;
            }
            _ = progress.tick() => {
                eprintln!("{}", sim.tally.progress(start.elapsed(), sim.inflight()));
                sim.retry_undecided();
            }
            _ = async { tokio::time::sleep_until(next_drop.unwrap_or(end)).await }, if sending && next_drop.is_some() => {
                sim.drop_a_gate();
                next_drop = next_drop.map(|t| t + drop_every);
            }
            _ = tokio::time::sleep_until(end + sim.cfg.grace), if !sending => break,
        }
    }
    let lost = sim.inflight() as u64;
    if lost > 0 {
        for ((dev, id), f) in sim.pending.iter().take(10) {
            warn!(device = %sim.devices[*dev].id, %id, sent = ?f.sent, "No decision");
        }
    }
    fleet_stop.cancel();
    // Let the devices say offline and disconnect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Summary::new(&sim.tally, sending_time, sim.cfg.rate, lost))
}

/// Prints the summary, writes it as JSON if asked, and applies `strict`.
pub fn finish(cfg: &SimConfig, summary: &Summary) -> Result<(), SimError> {
    println!("{}", summary.render());
    if let Some(path) = &cfg.json {
        let body = serde_json::to_string_pretty(summary).unwrap_or_default();
        std::fs::write(path, body).map_err(|source| SimError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    if cfg.strict && (summary.mismatches > 0 || summary.lost > 0) {
        return Err(SimError::Failed {
            mismatches: summary.mismatches,
            lost: summary.lost,
        });
    }
    Ok(())
}
