//! Ordering and bounded queues: messages from one device are decided in the order sent, different
//! devices concurrently, and a flood cannot grow the bridge's memory.
//!
//! Each incoming publish goes to one of a fixed number of worker shards, chosen by a hash of the
//! device part of its topic. A shard handles its messages one at a time, so a device's taps keep
//! their order, while the shards run in parallel. The shard count bounds the number of tasks no
//! matter how many device ids (real or spoofed) appear.
//!
//! Each shard's queue holds at most `shard_queue` messages, and a queued message is small: a
//! payload larger than [`MAX_PAYLOAD_BYTES`] (refused anyway) is dropped on arrival, keeping only
//! its size, and so is a topic longer than [`MAX_TOPIC_BYTES`]. When a shard's queue is full:
//!
//! - a QoS 0 message is dropped and counted (`tapgate_dropped_total{qos="0"}`): QoS 0 promises
//!   nothing;
//! - a QoS 1 message waits in a line, in arrival order, for a feeder task to hand it to its shard
//!   when the shard has room. The task that owns the MQTT event loop never waits for a shard: it
//!   must keep polling, because the workers' decisions and acknowledgements go out through that
//!   same loop (waiting there deadlocks: the shard's worker waits for the loop to take its
//!   publishes, the loop waits for the shard), and it must never drop a half-done poll either.
//!   The line is bounded by the broker, which sends no more unacknowledged QoS 1 messages than its
//!   in-flight window (mosquitto `max_inflight_messages`, EMQX `max_inflight`), and the bridge
//!   acknowledges only after deciding: that is the backpressure. Whatever the broker's settings,
//!   MQTT itself caps unacknowledged QoS 1 messages at 65,535 (one packet identifier each), so
//!   the line cannot grow past that. (Dropping a QoS 1 message unacknowledged instead would not
//!   help: it would hold a slot of the broker's window until the next connection, and enough of
//!   them stop delivery altogether.)
//!
//! A device's QoS 1 messages keep their order: while any message waits in the line, every new QoS 1
//! message queues behind it. QoS 0 messages have no order relative to QoS 1 ones.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rumqttc::{Publish, QoS};
use tapgate_protocol::MAX_PAYLOAD_BYTES;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::process::Processor;

/// Longest topic the bridge keeps; a longer one is refused as `bad_topic` (device topics are at
/// most about 100 bytes even with a long prefix).
pub const MAX_TOPIC_BYTES: usize = 512;

/// A publish as queued: oversized parts already dropped, their sizes kept for the refusal.
#[derive(Debug)]
pub struct Inbound {
    /// The publish (payload emptied if it was too large, topic emptied if it was too long).
    pub publish: Publish,
    /// The payload's size as received, bytes.
    pub payload_len: usize,
    /// The topic's length as received, bytes.
    pub topic_len: usize,
    /// The connection it came in on (its acknowledgement is only good there).
    pub session: u64,
}

impl Inbound {
    /// Drops the parts of `publish` (received on connection `session`) no handler will read, so
    /// a queued message stays small.
    pub fn new(mut publish: Publish, session: u64) -> Self {
        let payload_len = publish.payload.len();
        let topic_len = publish.topic.len();
        if payload_len > MAX_PAYLOAD_BYTES {
            drop(std::mem::take(&mut publish.payload));
        }
        if topic_len > MAX_TOPIC_BYTES {
            drop(std::mem::take(&mut publish.topic));
        }
        Self {
            publish,
            payload_len,
            topic_len,
            session,
        }
    }
}

/// Hands publishes to the shard that owns their device.
#[derive(Clone)]
pub struct Dispatcher {
    shards: Arc<Vec<mpsc::Sender<Inbound>>>,
    /// The line of QoS 1 messages waiting for room, and how many are in it or being handed over.
    line: mpsc::UnboundedSender<Inbound>,
    waiting: Arc<AtomicUsize>,
    metrics: Metrics,
}

/// The part of a topic that names the device: everything before the last `/`.
fn device_part(topic: &str) -> &str {
    topic.rsplit_once('/').map_or(topic, |(head, _)| head)
}

impl Dispatcher {
    /// Starts `shards` workers with queues of `shard_queue` on `tracker`; they stop at
    /// `shutdown`, after the message in hand.
    pub fn start(
        shards: usize,
        shard_queue: usize,
        processor: Processor,
        metrics: Metrics,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let senders = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(shard_queue.max(1));
                tracker.spawn(worker(rx, processor.clone(), shutdown.clone()));
                tx
            })
            .collect();
        let (line, line_rx) = mpsc::unbounded_channel();
        let dispatcher = Self {
            shards: Arc::new(senders),
            line,
            waiting: Arc::new(AtomicUsize::new(0)),
            metrics,
        };
        tracker.spawn(feeder(line_rx, dispatcher.clone(), shutdown));
        dispatcher
    }

    fn shard(&self, inbound: &Inbound) -> &mpsc::Sender<Inbound> {
        let mut h = DefaultHasher::new();
        device_part(&inbound.publish.topic).hash(&mut h);
        let idx = (h.finish() % self.shards.len() as u64) as usize;
        &self.shards[idx]
    }

    /// Queues a publish on its device's shard without waiting: a QoS 0 message is dropped (and
    /// counted) if the shard is full; a QoS 1 message joins the line if the shard is full or the
    /// line is not empty. `session` is the connection it came in on.
    pub fn offer(&self, publish: Publish, session: u64) {
        let inbound = Inbound::new(publish, session);
        let qos0 = inbound.publish.qos == QoS::AtMostOnce;
        if !qos0 && self.waiting.load(Ordering::Acquire) > 0 {
            self.wait(inbound);
            return;
        }
        match self.shard(&inbound).try_send(inbound) {
            Ok(()) => self.metrics.inflight_add(1),
            Err(mpsc::error::TrySendError::Full(inbound)) if !qos0 => self.wait(inbound),
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.dropped(),
            // Shutting down: unacknowledged, so the broker redelivers it next time.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn wait(&self, inbound: Inbound) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        if self.line.send(inbound).is_err() {
            // Shutting down: unacknowledged, so the broker redelivers it next time.
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Hands the line's messages to their shards in order, waiting for room as needed. A message
/// counts as waiting until it is in its shard, so nothing overtakes it meanwhile.
async fn feeder(
    mut line: mpsc::UnboundedReceiver<Inbound>,
    dispatcher: Dispatcher,
    shutdown: CancellationToken,
) {
    loop {
        let inbound = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = line.recv() => match next {
                Some(inbound) => inbound,
                None => return,
            },
        };
        let shard = dispatcher.shard(&inbound).clone();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            sent = shard.send(inbound) => {
                if sent.is_ok() {
                    dispatcher.metrics.inflight_add(1);
                }
            }
        }
        dispatcher.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn worker(
    mut rx: mpsc::Receiver<Inbound>,
    processor: Processor,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            next = rx.recv() => match next {
                Some(inbound) => processor.handle(inbound).await,
                None => return,
            },
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

    #[test]
    fn oversized_parts_are_not_kept() {
        let p = Publish::new(
            "tapgate/gate/g1/tap",
            QoS::AtLeastOnce,
            vec![b'x'; 70 * 1024],
        );
        let i = Inbound::new(p, 0);
        assert_eq!(i.payload_len, 70 * 1024);
        assert!(i.publish.payload.is_empty());
        assert_eq!(i.publish.topic, "tapgate/gate/g1/tap");
        let p = Publish::new("t".repeat(MAX_TOPIC_BYTES + 1), QoS::AtMostOnce, "{}");
        let i = Inbound::new(p, 0);
        assert!(i.publish.topic.is_empty());
        assert_eq!(i.topic_len, MAX_TOPIC_BYTES + 1);
        assert_eq!(&i.publish.payload[..], b"{}");
    }
}
