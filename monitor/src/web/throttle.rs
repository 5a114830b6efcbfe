//! What keeps logins from being used against the server or against an operator.
//!
//! - A global bound on password checks running at once ([`PasswordChecks`]): each argon2 check
//!   takes ~19 MiB and tens of milliseconds, so a flood of logins could otherwise exhaust memory.
//!   Checks run on a fixed set of threads, one per slot (so the allocator keeps at most one
//!   check's memory per thread, not per blocking-pool thread). A login that finds every slot
//!   busy waits for one, first come first served, for at most [`SLOT_WAIT`] (so two operators
//!   logging in at once are both served), then is refused (503 with `Retry-After`). Waiting holds
//!   no check memory.
//! - Failed logins per client address bucket (an IPv4 address or an IPv6 /64) in
//!   `tapgate:monitor:login-failures:addr:{bucket}`: past the limit, that address is refused
//!   until the window ends. Only the attacker's own address suffers.
//! - Failed logins per name, from anywhere, in `tapgate:monitor:login-failures:name:{name}`
//!   (`failures`, `last`): past a few, each further attempt of that name must wait 1 s, 2 s,
//!   4 s … up to a ceiling after the last failure ([`name_wait`]). A delay, never a lockout: an
//!   attacker failing with an operator's name slows guessing of that name but cannot keep its
//!   owner out.
//!
//! The per-name check and the recording of a failure are two steps, so a burst of attempts of
//! one name arriving at the same instant can all pass the check; the bound on password checks
//! caps such a burst at `password_checks` guesses.
//!
//! Time comes from the injected [`Clock`], so the delays are tested without sleeping.

use std::sync::Arc;
use std::time::Duration;

use tapgate_runtime::clock::Clock;
use tapgate_runtime::redis::RedisLink;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::WebError;
use crate::password;
use tapgate_protocol::keys;

/// Longest a login waits for a password-check slot before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

struct Job {
    password: String,
    hash: String,
    slot: OwnedSemaphorePermit,
    answer: tokio::sync::oneshot::Sender<bool>,
}

/// The bound on password checks running at once, and the threads that run them.
#[derive(Clone)]
pub struct PasswordChecks {
    slots: Arc<Semaphore>,
    jobs: std::sync::mpsc::Sender<Job>,
}

impl PasswordChecks {
    /// Allows `n` at once, on `n` threads that end when the last clone is dropped.
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || loop {
                    let job = {
                        let guard = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        guard.recv()
                    };
                    let Ok(job) = job else { return };
                    let ok = password::verify(&job.password, &job.hash);
                    drop(job.slot);
                    // The login may have gone away meanwhile; nobody to tell then.
                    let _ = job.answer.send(ok);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "Cannot start a password-check thread");
            }
        }
        Self {
            slots: Arc::new(Semaphore::new(n)),
            jobs,
        }
    }

    /// A slot, waiting up to [`SLOT_WAIT`] for one; [`WebError::Busy`] if none frees by then.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, WebError> {
        match tokio::time::timeout(SLOT_WAIT, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(WebError::Busy(SLOT_WAIT.as_secs().max(1))),
        }
    }

    /// Whether `password` matches `hash`, checked on a password-check thread holding `slot`.
    pub async fn verify(
        &self,
        slot: OwnedSemaphorePermit,
        password: String,
        hash: String,
    ) -> Result<bool, WebError> {
        let (answer, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job {
                password,
                hash,
                slot,
                answer,
            })
            .map_err(|_| WebError::Internal("no password-check thread".into()))?;
        rx.await
            .map_err(|_| WebError::Internal("a password check failed".into()))
    }
}

/// The login limits from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures of one name before attempts of it are delayed.
    pub free_failures: u32,
    /// Longest delay between attempts of one name.
    pub max_delay: Duration,
    /// Failures allowed per address bucket within the window.
    pub per_address: u32,
    /// How long failures are remembered.
    pub window: Duration,
}

/// How long an attempt of a name must still wait: after `failures` failures, the last at
/// `last_ms`, at `now_ms`. No wait while `failures < free`; then 1 s doubling per failure, capped
/// at `max`.
pub fn name_wait(failures: u32, last_ms: u64, now_ms: u64, free: u32, max: Duration) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(30);
    let delay = Duration::from_secs(1u64 << doublings).min(max);
    let elapsed = Duration::from_millis(now_ms.saturating_sub(last_ms));
    delay.saturating_sub(elapsed)
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Refuses an attempt of `name` from `bucket` that must wait; `Ok` when it may go ahead.
pub async fn check(
    redis: &mut RedisLink,
    clock: &dyn Clock,
    limits: Limits,
    name: &str,
    bucket: &str,
) -> Result<(), WebError> {
    let addr = keys::monitor_login_failures_address(bucket);
    let (count, ttl, failures, last): (Option<u64>, i64, Option<u32>, Option<u64>) = redis::pipe()
        .get(&addr)
        .ttl(&addr)
        .hget(keys::monitor_login_failures_name(name), "failures")
        .hget(keys::monitor_login_failures_name(name), "last")
        .query_async(redis)
        .await?;
    if count.unwrap_or(0) >= u64::from(limits.per_address) {
        return Err(WebError::TooManyAttempts(
            u64::try_from(ttl).unwrap_or(1).max(1),
        ));
    }
    let wait = name_wait(
        failures.unwrap_or(0),
        last.unwrap_or(0),
        clock.now_ms(),
        limits.free_failures,
        limits.max_delay,
    );
    if wait > Duration::ZERO {
        return Err(WebError::TooManyAttempts(whole_secs(wait).max(1)));
    }
    Ok(())
}

/// Counts a failed login of `name` (empty: a name that breaks the name rule, counted against
/// the address only) from `bucket`.
pub async fn failed(
    redis: &mut RedisLink,
    clock: &dyn Clock,
    limits: Limits,
    name: &str,
    bucket: &str,
) -> Result<(), WebError> {
    let addr = keys::monitor_login_failures_address(bucket);
    let key = keys::monitor_login_failures_name(name);
    let window_ms = i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .incr(&addr, 1u64)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&addr)
        .arg(window_ms)
        .arg("NX")
        .ignore();
    if !name.is_empty() {
        pipe.hincr(&key, "failures", 1u64)
            .ignore()
            .hset(&key, "last", clock.now_ms())
            .ignore()
            .pexpire(&key, window_ms)
            .ignore();
    }
    pipe.query_async::<()>(redis).await?;
    Ok(())
}

/// Forgets the failures of `name`, after it logged in.
pub async fn succeeded(redis: &mut RedisLink, name: &str) -> Result<(), WebError> {
    redis::cmd("DEL")
        .arg(keys::monitor_login_failures_name(name))
        .query_async::<()>(redis)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn delays_grow_then_stop_growing() {
        assert_eq!(name_wait(4, 1_000, 1_000, 5, MAX), Duration::ZERO);
        assert_eq!(name_wait(5, 1_000, 1_000, 5, MAX), Duration::from_secs(1));
        assert_eq!(name_wait(6, 1_000, 1_000, 5, MAX), Duration::from_secs(2));
        assert_eq!(name_wait(8, 1_000, 1_000, 5, MAX), Duration::from_secs(8));
        assert_eq!(name_wait(20, 1_000, 1_000, 5, MAX), MAX, "capped");
        assert_eq!(name_wait(u32::MAX, 0, 0, 5, MAX), MAX, "no overflow");
    }

    #[test]
    fn waiting_counts_down_from_the_last_failure() {
        assert_eq!(
            name_wait(7, 10_000, 11_500, 5, MAX),
            Duration::from_millis(2_500)
        );
        assert_eq!(name_wait(7, 10_000, 14_000, 5, MAX), Duration::ZERO);
        assert_eq!(name_wait(7, 10_000, 9_000, 5, MAX), Duration::from_secs(4));
        assert_eq!(whole_secs(Duration::from_millis(2_500)), 3);
    }

    proptest::proptest! {
        #[test]
        fn never_longer_than_the_ceiling(f in 0u32..100, last in 0u64..1_000_000, now in 0u64..1_000_000, free in 1u32..10, max in 1u64..120) {
            let w = name_wait(f, last, now, free, Duration::from_secs(max));
            proptest::prop_assert!(w <= Duration::from_secs(max));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_login_waits_for_a_slot_then_is_refused() {
        let checks = PasswordChecks::new(2);
        let a = checks.slot().await.expect("first");
        let _b = checks.slot().await.expect("second");
        let asked = tokio::time::Instant::now();
        assert!(matches!(checks.slot().await, Err(WebError::Busy(1))));
        assert_eq!(asked.elapsed(), SLOT_WAIT, "refused once the wait is over");
        // A slot freed within the wait goes to the login waiting for it.
        let waiting = tokio::spawn({
            let checks = checks.clone();
            async move { checks.slot().await.is_ok() }
        });
        tokio::time::sleep(SLOT_WAIT / 2).await;
        drop(a);
        assert!(
            waiting.await.expect("task"),
            "a finished check frees its slot"
        );
    }

    #[tokio::test]
    async fn checks_run_and_give_their_slot_back() {
        let checks = PasswordChecks::new(1);
        let hash = password::hash("pw").expect("hash");
        let slot = checks.slot().await.expect("slot");
        assert_eq!(checks.slots.available_permits(), 0, "the slot is taken");
        assert!(checks
            .verify(slot, "pw".into(), hash.clone())
            .await
            .expect("check"));
        let slot = checks.slot().await.expect("slot is back");
        assert!(!checks
            .verify(slot, "nope".into(), hash)
            .await
            .expect("check"));
    }
}
