//! Ordering, fairness and bounded queues: messages from one device are decided in the order sent,
//! different devices concurrently and in turn, and a flood cannot grow the bridge's memory or
//! delay other devices.
//!
//! Each incoming publish goes to one of a fixed number of worker shards, chosen by a hash of the
//! device part of its topic. A shard handles its messages one at a time, so a device's taps keep
//! their order, while the shards run in parallel. The shard count bounds the number of tasks no
//! matter how many device ids (real or spoofed) appear.
//!
//! Each shard's queue holds at most `shard_queue` messages, and a queued message is small
//! ([`Inbound`]): a payload larger than [`tapgate_protocol::MAX_PAYLOAD_BYTES`] (refused anyway)
//! is dropped on arrival, keeping only its size, and so is a topic longer than
//! [`crate::inbound::MAX_TOPIC_BYTES`]. When a shard's queue is full:
//!
//! - a QoS 0 message is dropped and counted (`tapgate_dropped_total{qos="0"}`): QoS 0 promises
//!   nothing;
//! - a QoS 1 message waits in that shard's line, in arrival order, until the shard's worker takes
//!   it. Each shard has a line of its own, so a device that fills its shard delays no device of
//!   another shard. The task that owns the MQTT event loop never waits for a shard: it must keep
//!   polling, because the workers' decisions and acknowledgements go out through that same loop
//!   (waiting there deadlocks: the shard's worker waits for the loop to take its publishes, the
//!   loop waits for the shard), and it must never drop a half-done poll either. The lines are
//!   bounded by what the broker sends unacknowledged (the bridge acknowledges only after
//!   deciding): whatever the broker's settings, MQTT itself caps unacknowledged QoS 1 messages at
//!   65,535 (one packet identifier each), so the lines together cannot grow past that. (Dropping
//!   a QoS 1 message unacknowledged instead would not help: it would hold a slot of the broker's
//!   window until the next connection, and enough of them stop delivery altogether.)
//!
//! Within a shard, the worker takes everything its queue and its line hold into hand (QoS 0
//! messages only up to `shard_queue`) and serves the devices among them in turn (round-robin),
//! not first come first served: a device with thousands of messages waiting delays another
//! device of its shard by one message per turn. Before handling a message the worker asks its
//! [`Limiter`] (see [`crate::limit`]): beyond its device's rate limit the message is refused
//! (`rate_limited`) at the cost of a counter ([`crate::refusals`]: written to Redis once a
//! second) and an acknowledgement. A device's
//! online/offline status is never limited (the broker publishes a device's last will for it).
//!
//! A device's QoS 1 messages keep their order: while any message waits in its shard's line,
//! every new QoS 1 message for that shard queues behind it, the worker takes the line only when
//! the queue is empty, and it serves each device's messages oldest first. QoS 0 messages have no
//! order relative to QoS 1 ones.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rumqttc::{Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::inbound::Inbound;
use crate::limit::{Limiter, Verdict};
use crate::metrics::Metrics;
use crate::process::Processor;

/// One shard's end for the dispatcher: its queue, and the line of QoS 1 messages that found it
/// full (or found others already waiting).
struct Shard {
    queue: mpsc::Sender<Inbound>,
    line: mpsc::UnboundedSender<Inbound>,
    /// Messages in the line.
    waiting: Arc<AtomicUsize>,
}

/// Hands publishes to the shard that owns their device.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    shards: Arc<Vec<Shard>>,
    metrics: Metrics,
}

/// The part of a topic that names the device: everything before the last `/`.
fn device_part(topic: &str) -> &str {
    topic.rsplit_once('/').map_or(topic, |(head, _)| head)
}

/// The shard (of `shards`) that handles the messages of `topic`'s device.
pub fn shard_index(topic: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    device_part(topic).hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// Whether a topic is a device's online/offline status, which the rate limit leaves alone: the
/// broker publishes a device's last will (`offline`) for it, and refusing that would leave the
/// device shown online.
fn is_status(topic: &str) -> bool {
    topic
        .rsplit_once('/')
        .is_some_and(|(_, last)| last == "status")
}

impl Dispatcher {
    /// Starts `shards` workers with queues of `shard_queue` on `tracker`, each limiting its
    /// devices to the processor's `device_rate`; they stop at `shutdown`, after the message in
    /// hand.
    pub(crate) fn start(
        shards: usize,
        shard_queue: usize,
        processor: Processor,
        metrics: Metrics,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let shard_queue = shard_queue.max(1);
        let shards: Vec<Shard> = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(shard_queue);
                let (line, line_rx) = mpsc::unbounded_channel();
                let waiting = Arc::new(AtomicUsize::new(0));
                let worker = Worker {
                    queue: rx,
                    line: line_rx,
                    waiting: waiting.clone(),
                    fair: Fair::default(),
                    hold: shard_queue,
                    limiter: Limiter::new(processor.device_rate, DEVICES_PER_SHARD),
                    metrics: metrics.clone(),
                    processor: processor.clone(),
                };
                tracker.spawn(worker.run(shutdown.clone()));
                Shard {
                    queue: tx,
                    line,
                    waiting,
                }
            })
            .collect();
        Self {
            shards: Arc::new(shards),
            metrics,
        }
    }

    /// Queues a publish on its device's shard without waiting: a QoS 0 message is dropped (and
    /// counted) if the shard is full; a QoS 1 message joins the shard's line if the shard is full
    /// or its line is not empty. `session` is the connection it came in on.
    pub(crate) fn offer(&self, publish: Publish, session: u64) {
        let inbound = Inbound::new(publish, session);
        let qos0 = inbound.publish.qos == QoS::AtMostOnce;
        let shard = &self.shards[shard_index(&inbound.publish.topic, self.shards.len())];
        if !qos0 && shard.waiting.load(Ordering::Acquire) > 0 {
            Self::wait(shard, inbound);
            return;
        }
        match shard.queue.try_send(inbound) {
            Ok(()) => self.metrics.inflight_add(1),
            Err(mpsc::error::TrySendError::Full(inbound)) if !qos0 => Self::wait(shard, inbound),
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.dropped(),
            // Shutting down: unacknowledged, so the broker redelivers it next time.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn wait(shard: &Shard, inbound: Inbound) {
        shard.waiting.fetch_add(1, Ordering::AcqRel);
        if shard.line.send(inbound).is_err() {
            // Shutting down: unacknowledged, so the broker redelivers it next time.
            shard.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Devices whose rate-limit buckets one shard remembers (64 shards: 65,536 devices active at
/// once; see [`crate::limit`] for what happens beyond).
pub(crate) const DEVICES_PER_SHARD: usize = 1024;

/// A shard's messages in hand, one queue per device, served in turn: each device with messages
/// waiting gets one handled before any gets a second, and a device's own messages keep their
/// order.
#[derive(Default)]
struct Fair {
    queues: HashMap<String, VecDeque<Inbound>>,
    /// Devices with messages waiting, in the order they are served.
    turns: VecDeque<String>,
    len: usize,
    /// How many of them are QoS 0 (nothing else bounds those).
    qos0: usize,
}

impl Fair {
    fn push(&mut self, inbound: Inbound) {
        self.qos0 += usize::from(inbound.publish.qos == QoS::AtMostOnce);
        let device = device_part(&inbound.publish.topic);
        match self.queues.get_mut(device) {
            Some(q) => q.push_back(inbound),
            None => {
                let device = device.to_owned();
                self.turns.push_back(device.clone());
                self.queues.insert(device, VecDeque::from([inbound]));
            }
        }
        self.len += 1;
    }

    /// The next device's oldest message.
    fn pop(&mut self) -> Option<Inbound> {
        let device = self.turns.pop_front()?;
        let q = self.queues.get_mut(&device)?;
        let inbound = q.pop_front()?;
        if q.is_empty() {
            self.queues.remove(&device);
        } else {
            self.turns.push_back(device);
        }
        self.len -= 1;
        self.qos0 -= usize::from(inbound.publish.qos == QoS::AtMostOnce);
        Some(inbound)
    }
}

/// One shard: takes what its queue and its line hold into hand, serves its devices in turn, and
/// refuses what their rate limit does not admit.
///
/// Everything waiting for the shard is in hand, so a device with a backlog delays another by at
/// most one message per turn. The line is taken only when the queue is empty: every message in
/// the line arrived after everything the queue held (a QoS 1 message goes to the queue only
/// while the line is empty), so each device's messages enter the hand in the order sent. QoS 0
/// messages are taken while fewer than `hold` are in hand; beyond that the queue fills and
/// further QoS 0 messages are dropped, as before. QoS 1 messages in hand are bounded like the
/// line was: by what the broker sends unacknowledged, at most 65,535.
struct Worker {
    queue: mpsc::Receiver<Inbound>,
    line: mpsc::UnboundedReceiver<Inbound>,
    waiting: Arc<AtomicUsize>,
    fair: Fair,
    hold: usize,
    limiter: Limiter,
    metrics: Metrics,
    processor: Processor,
}

impl Worker {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            self.take_ready();
            if shutdown.is_cancelled() {
                return;
            }
            if let Some(inbound) = self.fair.pop() {
                self.handle(inbound).await;
                continue;
            }
            // Nothing in hand: the queue was empty when last looked at, so the line may be taken.
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                next = self.queue.recv() => next.map(|m| (m, false)),
                next = self.line.recv() => next.map(|m| (m, true)),
            };
            let Some((inbound, from_line)) = next else {
                return;
            };
            if from_line {
                self.took_from_line();
            }
            if self.queue.is_empty() && self.line.is_empty() {
                // Nothing else waits, so no device is overtaken: served at once, without the
                // turns' bookkeeping (the usual case below saturation).
                self.handle(inbound).await;
            } else {
                self.fair.push(inbound);
            }
        }
    }

    /// Takes what the queue holds now (QoS 0 only while fewer than `hold` are in hand), then, if
    /// the queue is empty, what the line holds.
    fn take_ready(&mut self) {
        loop {
            if self.fair.qos0 >= self.hold {
                // The queue keeps what it holds; the line must wait behind it.
                return;
            }
            match self.queue.try_recv() {
                Ok(inbound) => self.fair.push(inbound),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        while let Ok(inbound) = self.line.try_recv() {
            self.take_from_line(inbound);
        }
    }

    fn take_from_line(&mut self, inbound: Inbound) {
        self.took_from_line();
        self.fair.push(inbound);
    }

    /// Counts a message taken from the line as in hand.
    fn took_from_line(&self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.metrics.inflight_add(1);
    }

    async fn handle(&mut self, inbound: Inbound) {
        let topic = &inbound.publish.topic;
        if is_status(topic) {
            return self.processor.handle(inbound).await;
        }
        let now = self.processor.clock.now_ms();
        match self.limiter.check(device_part(topic), now) {
            Verdict::Admit => self.processor.handle(inbound).await,
            Verdict::Refuse { answer } => {
                self.processor.refuse_rate_limited(inbound, answer).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_device_same_part() {
        assert_eq!(
            device_part("tapgate/terminal/t1/tap"),
            device_part("tapgate/terminal/t1/button")
        );
        assert_ne!(
            device_part("tapgate/gate/g1/tap"),
            device_part("tapgate/gate/g2/tap")
        );
        assert_eq!(device_part("x"), "x");
    }

    fn tap(device: &str, n: u32) -> Inbound {
        let topic = format!("tapgate/gate/{device}/tap");
        Inbound::new(Publish::new(topic, QoS::AtLeastOnce, n.to_string()), 0)
    }

    fn served(fair: &mut Fair) -> Vec<String> {
        std::iter::from_fn(|| fair.pop())
            .map(|i| {
                let device = device_part(&i.publish.topic).rsplit('/').next();
                let n = String::from_utf8_lossy(&i.publish.payload).into_owned();
                format!("{}{n}", device.unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn devices_are_served_in_turn_each_in_order() {
        let mut fair = Fair::default();
        for n in 1..=4 {
            fair.push(tap("a", n));
        }
        fair.push(tap("b", 1));
        fair.push(tap("c", 1));
        fair.push(tap("b", 2));
        assert_eq!(fair.len, 7);
        assert_eq!(
            served(&mut fair),
            ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]
        );
        assert_eq!(fair.len, 0);
        assert!(fair.queues.is_empty() && fair.turns.is_empty());
        // A device that arrives while another has a backlog waits at most one turn.
        for n in 1..=100 {
            fair.push(tap("a", n));
        }
        assert_eq!(fair.pop().map(|i| i.publish.payload), Some("1".into()));
        fair.push(tap("b", 1));
        assert_eq!(served(&mut fair)[..2], ["a2", "b1"]);
    }

    #[test]
    fn status_is_told_apart() {
        assert!(is_status("tapgate/gate/g1/status"));
        assert!(!is_status("tapgate/gate/status/tap"));
        assert!(!is_status("status"));
    }
}
