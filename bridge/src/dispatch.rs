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
//! - a QoS 0 message is dropped and counted (`tapgate_dropped_total`): QoS 0 promises nothing;
//! - a QoS 1 message waits: the task that owns the MQTT event loop stops reading from the broker
//!   until the shard has room, so the broker holds the rest (backpressure). This cannot deadlock
//!   against the workers' own publishes and acks, which also go through the event loop: while it
//!   waits, the workers can only work through what is already queued or in hand, at most
//!   `shards × (shard_queue + 1)` messages of at most [`REQUESTS_PER_MESSAGE`] requests each, and
//!   the client's request channel is sized to hold all of them ([`request_capacity`]). So a
//!   worker never blocks on the channel, the full shard drains, and the event loop resumes.

use std::hash::{DefaultHasher, Hash, Hasher};
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

/// Most client requests one message can cause: a decision, two events and an ack.
pub const REQUESTS_PER_MESSAGE: usize = 4;

/// Request channel capacity that lets every queued and in-hand message be answered while the
/// event loop is waiting for room in a shard (see the module documentation).
pub const fn request_capacity(shards: usize, shard_queue: usize) -> usize {
    REQUESTS_PER_MESSAGE * shards * (shard_queue + 1) + 1024
}

/// A publish as queued: oversized parts already dropped, their sizes kept for the refusal.
#[derive(Debug)]
pub struct Inbound {
    /// The publish (payload emptied if it was too large, topic emptied if it was too long).
    pub publish: Publish,
    /// The payload's size as received, bytes.
    pub payload_len: usize,
    /// The topic's length as received, bytes.
    pub topic_len: usize,
}

impl Inbound {
    /// Drops the parts of `publish` no handler will read, so a queued message stays small.
    pub fn new(mut publish: Publish) -> Self {
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
        }
    }
}

/// Hands publishes to the shard that owns their device.
#[derive(Clone)]
pub struct Dispatcher {
    shards: Arc<Vec<mpsc::Sender<Inbound>>>,
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
        Self {
            shards: Arc::new(senders),
            metrics,
        }
    }

    /// Queues a publish on its device's shard: QoS 0 is dropped (and counted) if the shard is
    /// full, QoS 1 waits for room.
    pub async fn dispatch(&self, publish: Publish) {
        let inbound = Inbound::new(publish);
        let mut h = DefaultHasher::new();
        device_part(&inbound.publish.topic).hash(&mut h);
        let idx = (h.finish() % self.shards.len() as u64) as usize;
        let shard = &self.shards[idx];
        self.metrics.inflight_add(1);
        let sent = if inbound.publish.qos == QoS::AtMostOnce {
            match shard.try_send(inbound) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.dropped();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        } else {
            // Shutting down if closed: unacknowledged, so the broker redelivers it next time.
            shard.send(inbound).await.is_ok()
        };
        if !sent {
            self.metrics.inflight_add(-1);
        }
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
        let i = Inbound::new(p);
        assert_eq!(i.payload_len, 70 * 1024);
        assert!(i.publish.payload.is_empty());
        assert_eq!(i.publish.topic, "tapgate/gate/g1/tap");
        let p = Publish::new("t".repeat(MAX_TOPIC_BYTES + 1), QoS::AtMostOnce, "{}");
        let i = Inbound::new(p);
        assert!(i.publish.topic.is_empty());
        assert_eq!(i.topic_len, MAX_TOPIC_BYTES + 1);
        assert_eq!(&i.publish.payload[..], b"{}");
    }

    #[test]
    fn request_channel_covers_every_queued_message() {
        assert!(request_capacity(64, 64) >= REQUESTS_PER_MESSAGE * 64 * 65);
    }
}
