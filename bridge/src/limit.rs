//! Per-device rate limit: a token bucket for each device, so that no device can crowd out the
//! others, whatever it sends.
//!
//! Each device may send `rate` messages a second on average and `burst` at once (the bucket's
//! size). The bucket is kept as one number, the time at which it will be full again (the
//! "theoretical arrival time" of the generic cell rate algorithm): a message is admitted if the
//! bucket is not empty now, and then pushes that time one interval (1/`rate` s) later. A device
//! not in the map has a full bucket.
//!
//! This is pure logic: the time is passed in (the bridge's [`tapgate_runtime::clock::Clock`]), so
//! it is tested without sleeping. Each worker shard owns one [`Limiter`] for the devices it
//! handles (a device always goes to the same shard), so no lock is needed.
//!
//! Memory is bounded whatever device ids (real or spoofed) appear: a limiter keeps at most
//! `capacity` devices. A new device that finds it full first makes room by forgetting every
//! device whose bucket is full again (forgetting it changes nothing: an absent device has a full
//! bucket); if none is, the device whose bucket is fullest is forgotten (it is given a full
//! bucket back, the least lenient choice available).
//!
//! A refused message is answered only if no refusal of that device was answered within the last
//! [`ANSWER_EVERY_MS`]: a device flooding the bridge gets one answer a second, not one per
//! message, so a flood in does not become a flood out.

use std::collections::HashMap;

/// A refusal is answered at most this often per device, ms.
pub(crate) const ANSWER_EVERY_MS: u64 = 1000;

/// How a device's messages are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages a second on average; 0 switches the limit off.
    pub per_second: u32,
    /// Messages at once (the bucket's size); at least 1.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    #[cfg(test)]
    pub(crate) const OFF: Rate = Rate {
        per_second: 0,
        burst: 1,
    };

    /// Whether the limit is on.
    pub const fn is_on(self) -> bool {
        self.per_second > 0
    }

    /// Microseconds between two messages at the average rate.
    fn interval_us(self) -> u64 {
        1_000_000 / u64::from(self.per_second.max(1))
    }

    /// How far ahead of now the bucket's refill time may be for a message to be admitted, µs.
    fn tolerance_us(self) -> u64 {
        self.interval_us()
            .saturating_mul(u64::from(self.burst.max(1) - 1))
    }
}

/// What the limiter says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Handle it.
    Admit,
    /// Refuse it; `answer` says whether to tell the device (see [`ANSWER_EVERY_MS`]).
    Refuse { answer: bool },
}

/// One device's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When the bucket is full again, µs.
    full_at: u64,
    /// When a refusal was last answered, µs; `None` if never.
    answered_at: Option<u64>,
}

/// The buckets of at most `capacity` devices.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    /// A limiter at `rate` for at most `capacity` devices (at least 1).
    pub(crate) fn new(rate: Rate, capacity: usize) -> Self {
        Self {
            rate,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Devices remembered now (never more than the capacity).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no device is remembered.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Takes one message of `device` at `now_ms`: admitted (charging its bucket) or refused.
    pub(crate) fn check(&mut self, device: &str, now_ms: u64) -> Verdict {
        if !self.rate.is_on() {
            return Verdict::Admit;
        }
        let now = now_ms.saturating_mul(1000);
        let (interval, tolerance) = (self.rate.interval_us(), self.rate.tolerance_us());
        if let Some(b) = self.buckets.get_mut(device) {
            let full_at = b.full_at.max(now);
            if full_at - now > tolerance {
                let answer = b
                    .answered_at
                    .is_none_or(|at| now.saturating_sub(at) >= ANSWER_EVERY_MS * 1000);
                if answer {
                    b.answered_at = Some(now);
                }
                return Verdict::Refuse { answer };
            }
            b.full_at = full_at + interval;
            return Verdict::Admit;
        }
        if self.buckets.len() >= self.capacity {
            self.make_room(now);
        }
        self.buckets.insert(
            device.to_owned(),
            Bucket {
                full_at: now + interval,
                answered_at: None,
            },
        );
        Verdict::Admit
    }

    /// Forgets every device whose bucket is full at `now` (µs); if that frees nothing, the one
    /// whose bucket is fullest.
    fn make_room(&mut self, now: u64) {
        self.buckets.retain(|_, b| b.full_at > now);
        if self.buckets.len() < self.capacity {
            return;
        }
        let fullest = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.full_at)
            .map(|(d, _)| d.clone());
        if let Some(d) = fullest {
            self.buckets.remove(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEN: Rate = Rate {
        per_second: 10,
        burst: 5,
    };

    fn admitted(l: &mut Limiter, device: &str, at_ms: u64, n: usize) -> usize {
        (0..n)
            .filter(|_| l.check(device, at_ms) == Verdict::Admit)
            .count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = Limiter::new(TEN, 16);
        assert_eq!(admitted(&mut l, "g1", 1_000, 100), 5);
        // One token every 100 ms.
        assert_eq!(admitted(&mut l, "g1", 1_099, 10), 0);
        assert_eq!(admitted(&mut l, "g1", 1_100, 10), 1);
        assert_eq!(admitted(&mut l, "g1", 1_400, 10), 3);
        // After half a second idle the bucket is full again, and holds no more than the burst.
        assert_eq!(admitted(&mut l, "g1", 60_000, 100), 5);
    }

    #[test]
    fn devices_have_their_own_buckets() {
        let mut l = Limiter::new(TEN, 16);
        assert_eq!(admitted(&mut l, "g1", 0, 100), 5);
        assert_eq!(admitted(&mut l, "g2", 0, 100), 5);
    }

    #[test]
    fn off_admits_everything() {
        let mut l = Limiter::new(Rate::OFF, 1);
        assert_eq!(admitted(&mut l, "g1", 0, 10_000), 10_000);
        assert!(l.is_empty());
    }

    #[test]
    fn one_answer_a_second_however_many_refusals() {
        let mut l = Limiter::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            16,
        );
        assert_eq!(l.check("g1", 0), Verdict::Admit);
        assert_eq!(l.check("g1", 1), Verdict::Refuse { answer: true });
        for t in 2..1_000 {
            assert_eq!(l.check("g1", t), Verdict::Refuse { answer: false });
        }
        // The bucket refilled at 1000 ms: admitted; the next refusal is answered again.
        assert_eq!(l.check("g1", 1_000), Verdict::Admit);
        assert_eq!(l.check("g1", 1_001), Verdict::Refuse { answer: true });
    }

    #[test]
    fn full_buckets_are_forgotten_first() {
        let mut l = Limiter::new(TEN, 3);
        assert_eq!(admitted(&mut l, "busy", 0, 100), 5);
        l.check("idle1", 0);
        l.check("idle2", 0);
        // At 200 ms the idle devices' buckets are full again; busy's is not.
        l.check("new", 200);
        assert_eq!(l.len(), 2);
        assert_eq!(admitted(&mut l, "busy", 200, 100), 2);
    }

    #[test]
    fn spoofed_ids_cannot_grow_the_map() {
        let mut l = Limiter::new(TEN, 64);
        for n in 0..100_000u64 {
            l.check(&format!("spoof{n}"), n / 1000);
            assert!(l.len() <= 64);
        }
    }

    proptest! {
        /// Over any window, a device is admitted at most burst + rate × window messages, and a
        /// device sending no faster than its rate is never refused, whatever other devices do
        /// (with room in the map for every device; `spoofed_ids_cannot_grow_the_map` covers a
        /// full one).
        #[test]
        fn never_more_than_burst_plus_rate(
            per_second in 1u32..200,
            burst in 1u32..50,
            capacity in 5usize..8,
            sends in proptest::collection::vec((0u8..4, 0u64..50), 1..400),
        ) {
            let rate = Rate { per_second, burst };
            let mut l = Limiter::new(rate, capacity);
            let mut now = 1_000_000u64;
            let mut times: Vec<Vec<u64>> = vec![Vec::new(); 4];
            let mut polite_last: Option<u64> = None;
            let polite_gap = 1000u64.div_ceil(u64::from(per_second));
            for (device, gap) in sends {
                now += gap;
                if l.check(&format!("d{device}"), now) == Verdict::Admit {
                    times[usize::from(device)].push(now);
                }
                if polite_last.is_none_or(|t| now - t >= polite_gap) {
                    prop_assert_eq!(l.check("polite", now), Verdict::Admit);
                    polite_last = Some(now);
                }
            }
            for admitted in &times {
                for (i, &start) in admitted.iter().enumerate() {
                    for (j, &end) in admitted.iter().enumerate().skip(i) {
                        // Messages i..=j were admitted within [start, end].
                        let allowed = u64::from(burst) + (end - start) * 1000 / rate.interval_us();
                        prop_assert!((j - i + 1) as u64 <= allowed,
                            "{} admitted in {} ms (rate {per_second}/s, burst {burst})",
                            j - i + 1, end - start);
                    }
                }
            }
        }
    }
}
