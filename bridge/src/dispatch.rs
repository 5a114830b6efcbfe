//! Ordering: messages from one device are decided in the order sent, different devices
//! concurrently.
//!
//! Each incoming publish goes to one of a fixed number of worker shards, chosen by a hash of the
//! device part of its topic. A shard handles its messages one at a time, so a device's taps keep
//! their order, while the shards run in parallel. The shard count bounds the number of tasks no
//! matter how many device ids (real or spoofed) appear.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use rumqttc::Publish;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::process::Processor;

/// Hands publishes to the shard that owns their device.
#[derive(Clone)]
pub struct Dispatcher {
    shards: Arc<Vec<mpsc::UnboundedSender<Publish>>>,
    metrics: Metrics,
}

/// The part of a topic that names the device: everything before the last `/`.
fn device_part(topic: &str) -> &str {
    topic.rsplit_once('/').map_or(topic, |(head, _)| head)
}

impl Dispatcher {
    /// Starts `shards` workers on `tracker`; they stop at `shutdown`, after the message in hand.
    pub fn start(
        shards: usize,
        processor: Processor,
        metrics: Metrics,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let senders = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tracker.spawn(worker(rx, processor.clone(), shutdown.clone()));
                tx
            })
            .collect();
        Self {
            shards: Arc::new(senders),
            metrics,
        }
    }

    /// Queues a publish on its device's shard. Never blocks: the broker's in-flight window
    /// bounds how many unacknowledged messages can be queued.
    pub fn dispatch(&self, publish: Publish) {
        let mut h = DefaultHasher::new();
        device_part(&publish.topic).hash(&mut h);
        let idx = (h.finish() % self.shards.len() as u64) as usize;
        self.metrics.inflight_add(1);
        if self.shards[idx].send(publish).is_err() {
            // Shutting down: unacknowledged, so the broker redelivers it next time.
            self.metrics.inflight_add(-1);
        }
    }
}

async fn worker(
    mut rx: mpsc::UnboundedReceiver<Publish>,
    processor: Processor,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            next = rx.recv() => match next {
                Some(publish) => processor.handle(publish).await,
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
}
