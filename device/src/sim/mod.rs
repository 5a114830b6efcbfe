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
//!   clients. - `riders`: what each rider does next. - `decisions`: each decision checked.
//! - [`model`]: predictions. - [`report`]: counters, histogram, summary. - [`rng`]: seeded
//!   randomness.

pub mod config;
mod decisions;
pub mod devices;
pub mod fleet;
pub mod model;
pub mod report;
mod riders;
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

pub use config::{SimArgs, SimConfig, Simulation};
use fleet::{Device, FleetConfig, FleetEvent};
use model::{check, CardModel, Check, Timing};
use report::{Summary, Tally};
use rng::Rng;

use crate::config::ConfigError;
use riders::Rider;
use tapgate_runtime::clock::now_ms;

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

impl Inflight {
    /// `sent` (scheduled at `scheduled`, stamped `stamp`), published just now on `topic`.
    fn now(
        sent: Sent,
        scheduled: Instant,
        stamp: Option<Stamp>,
        topic: String,
        payload: Vec<u8>,
    ) -> Self {
        Self {
            sent,
            scheduled,
            sent_ms: now_ms(),
            stamp,
            topic,
            payload,
            last_sent: Instant::now(),
            retries: 0,
        }
    }
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

    fn inflight(&self) -> usize {
        self.pending.len() + self.null_expected.iter().map(VecDeque::len).sum::<usize>()
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

/// Runs a simulation until its duration (plus grace) has passed or `shutdown`, with the settings
/// and catalogue [`SimConfig::check`] gave (which [`SimArgs::load`] calls): nothing is checked or
/// read again.
pub async fn run(sim: Simulation, shutdown: CancellationToken) -> Result<Summary, SimError> {
    let Simulation {
        config: cfg,
        catalogue,
    } = sim;
    let seed = if cfg.seed == 0 { now_ms() } else { cfg.seed };
    let run = format!("S{seed:x}").to_uppercase();
    info!(seed, run, "Simulation starting");
    let roster = roster(&cfg, &run)?;
    warn_above_rate_limit(cfg.rate, roster.len());
    let fleet_cfg = FleetConfig {
        broker: cfg.broker()?,
        topics: cfg.prefix.clone(),
    };
    let fleet_stop = CancellationToken::new();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let devices = fleet::spawn_all(&fleet_cfg, roster, &events_tx, &fleet_stop)
        .map_err(|e| ConfigError::invalid("mqtt", e.to_string()))?;
    info!(
        products = %catalogue.ids(),
        version = %catalogue.version,
        "Riders buy from the fare catalogue"
    );
    let mut sim = Sim::new(cfg, catalogue, seed, run, devices);
    if let Err(e) = sim.connect(&mut events, &shutdown).await {
        fleet_stop.cancel();
        return Err(e);
    }
    eprintln!(
        "simulating {} riders on {} gates and {} terminals at {}/s for {:?}",
        sim.cfg.riders,
        sim.gates.len(),
        sim.terminals.len(),
        sim.cfg.rate,
        sim.cfg.duration
    );
    let sending_time = sim.schedule(&mut events, &shutdown).await;
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

/// The simulated devices: the provisioned ones (`devices`), each logging in as itself, or else
/// `gates` and `terminals` with ids made from the run's name, sharing one login.
fn roster(
    cfg: &SimConfig,
    run: &str,
) -> Result<Vec<(DeviceKind, DeviceId, fleet::Login)>, SimError> {
    if let Some(path) = &cfg.devices {
        return Ok(devices::load(path)?
            .into_iter()
            .map(|d| (d.kind, d.id, Some(d.password)))
            .collect());
    }
    let lower = run.to_lowercase();
    let mut list = Vec::new();
    for (kind, count, letter) in [
        (DeviceKind::Gate, cfg.gates, 'g'),
        (DeviceKind::Terminal, cfg.terminals, 't'),
    ] {
        for n in 0..count {
            let id = DeviceId::new(format!("sim-{lower}-{letter}{n}"))
                .map_err(|e| ConfigError::invalid("seed", e.to_string()))?;
            list.push((kind, id, None));
        }
    }
    Ok(list)
}

/// Warns when `rate` messages a second over `devices` devices is more than a device may send by
/// the bridge's default rate limit (`--device-rate`, 20 a second, after a burst of 1000): a load
/// test above that must raise it or switch it off.
fn warn_above_rate_limit(rate: f64, devices: usize) {
    let per_device = rate / devices.max(1) as f64;
    if per_device > 20.0 {
        warn!(
            per_device,
            "Each simulated device sends more than 20 messages a second, the bridge's default \
             --device-rate: run the bridge with a higher one, or --device-rate 0, or it refuses \
             them as rate_limited once a device's burst is spent"
        );
    }
}

impl Sim {
    /// A simulation of `cfg.riders` riders, each with a card of its own, on `devices`; the `run`
    /// name makes the cards and message ids of this run its own.
    fn new(
        cfg: SimConfig,
        catalogue: Catalogue,
        seed: u64,
        run: String,
        devices: Vec<Device>,
    ) -> Self {
        let of_kind = |kind: DeviceKind| -> Vec<usize> {
            (0..devices.len())
                .filter(|&i| devices[i].kind == kind)
                .collect()
        };
        let (gates, terminals) = (of_kind(DeviceKind::Gate), of_kind(DeviceKind::Terminal));
        let riders = (0..cfg.riders)
            .map(|n| Rider {
                card: CardId::new(format!("{run}R{n}")).expect("alphanumeric"),
                model: CardModel::default(),
                busy: false,
                terminal: None,
                plan: VecDeque::new(),
            })
            .collect();
        Sim {
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
            null_expected: vec![VecDeque::new(); devices.len()],
            devices,
            riders,
            urgent: VecDeque::new(),
            ready: (0..cfg.riders).collect(),
            resting: BinaryHeap::new(),
            pending: HashMap::new(),
            answered: HashMap::new(),
            next_id: 0,
            strangers: 0,
            new_cards: 0,
            tally: Tally::default(),
            cfg,
        }
    }

    /// Waits until every device is connected (or `shutdown`); fails after 20 s naming how many
    /// did.
    async fn connect(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<FleetEvent>,
        shutdown: &CancellationToken,
    ) -> Result<(), SimError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.devices.iter().any(|d| !d.up) {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => {
                    let up = self.devices.iter().filter(|d| d.up).count();
                    let url = tapgate_protocol::broker::redact(&self.cfg.broker.mqtt.to_string());
                    return Err(SimError::Connect { up, total: self.devices.len(), url });
                }
                Some(e) = events.recv() => self.on_fleet(e),
            }
        }
        Ok(())
    }

    /// The schedule: a slot every `1/rate` s for `duration` (open loop, whatever the answers),
    /// a gate's connection dropped every `drop_every`, progress and retries once a second; then
    /// up to `grace` for the last decisions. Every decision is checked as it arrives
    /// ([`Sim::on_fleet`]). Returns how long messages were sent for.
    async fn schedule(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<FleetEvent>,
        shutdown: &CancellationToken,
    ) -> Duration {
        let start = Instant::now();
        let period = Duration::from_secs_f64(1.0 / self.cfg.rate);
        let end = start + self.cfg.duration;
        let mut slot_n: u32 = 0;
        let mut next_slot = start;
        let mut progress =
            tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
        let drop_every = self.cfg.drop_every;
        let mut next_drop = (!drop_every.is_zero()).then(|| start + drop_every);
        let mut sending = true;
        let mut sending_time = self.cfg.duration;
        loop {
            if sending && next_slot >= end {
                sending = false;
                sending_time = start.elapsed();
            }
            if !sending && self.inflight() == 0 {
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
                Some(e) = events.recv() => self.on_fleet(e),
                _ = tokio::time::sleep_until(next_slot), if sending => {
                    self.slot(next_slot);
                    slot_n += 1;
                    next_slot = start + period * slot_n;
                }
                _ = progress.tick() => {
                    eprintln!("{}", self.tally.progress(start.elapsed(), self.inflight()));
                    self.retry_undecided();
                }
                _ = async { tokio::time::sleep_until(next_drop.unwrap_or(end)).await }, if sending && next_drop.is_some() => {
                    self.drop_a_gate();
                    next_drop = next_drop.map(|t| t + drop_every);
                }
                _ = tokio::time::sleep_until(end + self.cfg.grace), if !sending => break,
            }
        }
        sending_time
    }
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
