//! Rate-limited refusals in Redis's rejected counters, where the dashboard reads them.
//!
//! A message refused for the per-device rate limit ([`crate::limit`]) never reaches Redis by
//! itself: a flood must not become a flood of writes. The shard that refuses it counts it here,
//! in memory (a lock and an increment). [`run`] adds what was counted to
//! `tapgate:counters:rejected` (field `rate_limited`) and to each device's counters (field
//! `rejected`) once every [`FLUSH_EVERY`], in one transaction for all devices; the bridge writes
//! what is left with [`Tally::flush`] when it stops. Counts a write could not store are kept for
//! the next one.
//!
//! Bounded whatever device ids appear: at most [`MAX_DEVICES`] devices are told apart between
//! two writes; refusals of any other device are counted in the total only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tapgate_protocol::{DeviceId, RejectReason};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::{Store, StoreError};

/// How often counted refusals are written to Redis: at most once a second for any device.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Devices told apart between two writes.
pub(crate) const MAX_DEVICES: usize = 65_536;

/// Refusals counted and not yet written.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// All of them.
    pub total: u64,
    /// By device, for those told apart.
    pub devices: HashMap<DeviceId, u64>,
}

/// Refusals counted by the shards, shared with the task that writes them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally(Arc<Mutex<Counts>>);

impl Tally {
    /// Counts one refusal, of `device` when its topic named one.
    pub(crate) fn add(&self, device: Option<DeviceId>) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total += 1;
        if let Some(device) = device {
            let told_apart = counts.devices.len() < MAX_DEVICES;
            match counts.devices.get_mut(&device) {
                Some(n) => *n += 1,
                None if told_apart => {
                    counts.devices.insert(device, 1);
                }
                None => {}
            }
        }
    }

    /// Refusals counted and not yet written.
    pub(crate) fn pending(&self) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).total
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back counts a write could not store.
    fn restore(&self, kept: Counts) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total += kept.total;
        for (device, n) in kept.devices {
            let told_apart = counts.devices.len() < MAX_DEVICES;
            match counts.devices.get_mut(&device) {
                Some(m) => *m += n,
                None if told_apart => {
                    counts.devices.insert(device, n);
                }
                None => {}
            }
        }
    }

    /// Writes what was counted to the rejected counters; returns how many refusals that was.
    /// On failure the counts are kept for the next write.
    pub(crate) async fn flush(&self, store: &Store) -> Result<u64, StoreError> {
        let counts = self.take();
        if counts.total == 0 {
            return Ok(0);
        }
        match store
            .count_rejected(RejectReason::RateLimited, counts.total, &counts.devices)
            .await
        {
            Ok(()) => Ok(counts.total),
            Err(e) => {
                self.restore(counts);
                Err(e)
            }
        }
    }
}

/// Writes `tally` to Redis every `every` until `shutdown` (the last write is the bridge's, once
/// its shards have stopped: [`crate::BridgeHandle::join`]).
pub(crate) async fn run(tally: Tally, store: Store, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = tally.flush(&store).await {
                    warn!(
                        error = %e,
                        pending = tally.pending(),
                        "Could not add rate-limited refusals to the rejected counters; kept for \
                         the next try"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Option<DeviceId> {
        DeviceId::new(id).ok()
    }

    #[test]
    fn counts_by_device_and_in_all() {
        let tally = Tally::default();
        tally.add(device("g1"));
        tally.add(device("g1"));
        tally.add(device("g2"));
        tally.add(None);
        let counts = tally.take();
        assert_eq!(counts.total, 4);
        assert_eq!(
            counts.devices.get(&DeviceId::new("g1").expect("id")),
            Some(&2)
        );
        assert_eq!(
            counts.devices.get(&DeviceId::new("g2").expect("id")),
            Some(&1)
        );
        assert_eq!(tally.pending(), 0);
        // Kept when a write fails, added to what came since.
        tally.add(device("g1"));
        tally.restore(counts);
        let counts = tally.take();
        assert_eq!(counts.total, 5);
        assert_eq!(
            counts.devices.get(&DeviceId::new("g1").expect("id")),
            Some(&3)
        );
    }

    #[test]
    fn devices_beyond_the_bound_count_in_the_total_only() {
        let tally = Tally::default();
        for n in 0..=MAX_DEVICES {
            tally.add(device(&format!("g{n}")));
        }
        tally.add(device("g0"));
        let counts = tally.take();
        assert_eq!(counts.total, MAX_DEVICES as u64 + 2);
        assert_eq!(counts.devices.len(), MAX_DEVICES);
        assert_eq!(
            counts.devices.get(&DeviceId::new("g0").expect("id")),
            Some(&2)
        );
    }
}
