//! What keeps logins from being used against the server or against an operator.
//!
//! - A global bound on password checks running at once ([`PasswordChecks`]): each argon2 check
//!   takes ~19 MiB and tens of milliseconds, so a flood of logins could otherwise exhaust memory.
//!   Checks run on a fixed set of threads, one per slot (so the allocator keeps at most one
//!   check's memory per thread, not per blocking-pool thread). A login that finds every slot it
//!   may take busy waits for one, first come first served, for at most [`SLOT_WAIT`] (so two
//!   operators logging in at once are both served), then is refused (503 with `Retry-After`).
//!   Waiting holds no check memory. One slot (of two or more) is kept for logins naming an
//!   operator ([`Claim::Operator`]): a flood of made-up names ([`Claim::Other`]) takes the rest,
//!   so it cannot make an operator's login wait behind it. With a single slot, made-up names
//!   may take it, but only one of them at a time holds it or waits for it, so an operator waits
//!   for at most the check running and one more. Nothing adds a slot: no more checks run at once than
//!   `password_checks`.
//! - Failed logins per client address bucket (an IPv4 address or an IPv6 /64) in
//!   `tapgate:monitor:login-failures:addr:{bucket}`, and per operator's name and address bucket
//!   in `tapgate:monitor:login-failures:pair:{name}:{bucket}`. Past the limit, an address is
//!   refused for names that are not an operator's, and an operator's name is refused from an
//!   address where *that name* failed too often, until the window ends. So a flood from one
//!   address is stopped (only the attacker's own address suffers), but failures of other names
//!   from a shared address (NAT, an office, Docker's port mapping, where every client is the
//!   gateway) never lock out an operator who gets their own name and password right.
//! - Failed logins per name, from anywhere, in `tapgate:monitor:login-failures:name:{name}`
//!   (`failures`, `last`): past a few, each further attempt of that name must wait 1 s, 2 s,
//!   4 s … up to a ceiling after the last failure ([`name_wait`]). A delay, never a lockout: an
//!   attacker failing with an operator's name slows guessing of that name but cannot keep its
//!   owner out. With the default settings (5 free failures, delays up to 30 s, 20 failures per
//!   5 minutes), once a name must wait, failing it 20 times takes longer than the window, so the
//!   (name, address) pair cannot be locked either, unless a burst pushed it past 10 failures
//!   before its first wait, which takes 7 or more password checks running at once.
//!
//! Attempts of one name arriving at the same instant can all pass the check before any of them
//! fails, so the check is made again once a login holds a password-check slot, and then, once
//! the name must wait, [`take_turn`] lets only one of them go ahead per wait (a compare-and-set
//! of the name's `last` attempt in Redis); the others are refused. Before a name must wait, up
//! to `password_checks` attempts of it can be checked at once.
//!
//! An address past its limit, or a flood filling every slot but the operators' one, can tell an
//! operator's name from a made-up one by the answer; the passwords are the secret, and their
//! guessing is bounded by the per-name delay.
//!
//! Time comes from the injected [`Clock`], so the delays are tested without sleeping.

use std::sync::Arc;
use std::time::Duration;

use tapgate_runtime::clock::Clock;
use tapgate_runtime::redis::RedisLink;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::WebError;
use crate::password;
use tapgate_protocol::fields::login_failures as fields;
use tapgate_protocol::keys;

/// Longest a login waits for a password-check slot before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Who a password check is for, which decides the slots it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A login naming an operator, or made with a valid session: may take any slot.
    Operator,
    /// Any other login: may not take the slot kept for operators.
    Other,
}

/// A password-check slot; given back when dropped.
pub(crate) struct Slot {
    // Dropped in this order: the slot first, so a login waiting for any slot gets it before a
    // made-up name waiting for its share is let into the queue.
    _any: OwnedSemaphorePermit,
    _others: Option<OwnedSemaphorePermit>,
}

struct Job {
    password: String,
    hash: String,
    slot: Slot,
    answer: tokio::sync::oneshot::Sender<bool>,
}

/// The bound on password checks running at once, and the threads that run them.
#[derive(Clone)]
pub(crate) struct PasswordChecks {
    /// Every slot: each check holds one.
    slots: Arc<Semaphore>,
    /// The share [`Claim::Other`] logins may hold (or wait for a slot with) at once: all but
    /// one slot when there are two or more.
    others: Arc<Semaphore>,
    jobs: std::sync::mpsc::Sender<Job>,
}

impl PasswordChecks {
    /// Allows `n` at once, on `n` threads that end when the last clone is dropped; of two or
    /// more, one is kept for [`Claim::Operator`].
    pub(crate) fn new(n: usize) -> Self {
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
            others: Arc::new(Semaphore::new(if n >= 2 { n - 1 } else { 1 })),
            jobs,
        }
    }

    /// A slot `claim` may take, waiting up to [`SLOT_WAIT`] for one; [`WebError::Busy`] if none
    /// frees by then.
    pub(crate) async fn slot(&self, claim: Claim) -> Result<Slot, WebError> {
        let take = async {
            let others = match claim {
                Claim::Operator => None,
                Claim::Other => Some(Arc::clone(&self.others).acquire_owned().await?),
            };
            let any = Arc::clone(&self.slots).acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>(Slot {
                _any: any,
                _others: others,
            })
        };
        match tokio::time::timeout(SLOT_WAIT, take).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(WebError::Busy(SLOT_WAIT.as_secs().max(1))),
        }
    }

    /// Whether `password` matches `hash`, checked on a password-check thread holding `slot`.
    pub(crate) async fn verify(
        &self,
        slot: Slot,
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
pub(crate) struct Limits {
    /// Failures of one name before attempts of it are delayed.
    pub free_failures: u32,
    /// Longest delay between attempts of one name.
    pub max_delay: Duration,
    /// Failures allowed per address bucket (of names that are not an operator's) and per
    /// operator's name and address bucket, within the window.
    pub per_address: u32,
    /// How long failures are remembered.
    pub window: Duration,
}

/// How long an attempt of a name must still wait: after `failures` failures, the last at
/// `last_ms`, at `now_ms`. No wait while `failures < free`; then 1 s doubling per failure, capped
/// at `max`.
pub(super) fn name_wait(
    failures: u32,
    last_ms: u64,
    now_ms: u64,
    free: u32,
    max: Duration,
) -> Duration {
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

/// What [`check`] read of a name's failures.
struct Seen {
    failures: u32,
    /// `last` as stored, to take the name's turn only if nobody else has meanwhile.
    last: Option<String>,
}

/// A login attempt as the limits see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attempt<'a> {
    /// The name it logs in with.
    pub name: &'a str,
    /// Its client address bucket (an IPv4 address or an IPv6 /64).
    pub bucket: &'a str,
    /// The name is an operator's: limited per (name, address) rather than per address.
    pub known: bool,
}

/// Refuses an attempt that must wait; `Ok` when it may go ahead.
pub(super) async fn check(
    redis: &mut RedisLink,
    clock: &dyn Clock,
    limits: Limits,
    attempt: Attempt<'_>,
) -> Result<(), WebError> {
    seen(redis, clock, limits, attempt).await.map(|_| ())
}

async fn seen(
    redis: &mut RedisLink,
    clock: &dyn Clock,
    limits: Limits,
    attempt: Attempt<'_>,
) -> Result<Seen, WebError> {
    let Attempt {
        name,
        bucket,
        known,
    } = attempt;
    let counted = if known {
        keys::monitor_login_failures_pair(name, bucket)
    } else {
        keys::monitor_login_failures_address(bucket)
    };
    let (count, ttl, failures, last): (Option<u64>, i64, Option<u32>, Option<String>) =
        redis::pipe()
            .get(&counted)
            .ttl(&counted)
            .hget(keys::monitor_login_failures_name(name), fields::FAILURES)
            .hget(keys::monitor_login_failures_name(name), fields::LAST)
            .query_async(redis)
            .await?;
    if count.unwrap_or(0) >= u64::from(limits.per_address) {
        return Err(WebError::TooManyAttempts(
            u64::try_from(ttl).unwrap_or(1).max(1),
        ));
    }
    let failures = failures.unwrap_or(0);
    let last_ms = last.as_deref().and_then(|l| l.parse().ok()).unwrap_or(0);
    let wait = name_wait(
        failures,
        last_ms,
        clock.now_ms(),
        limits.free_failures,
        limits.max_delay,
    );
    if wait > Duration::ZERO {
        return Err(WebError::TooManyAttempts(whole_secs(wait).max(1)));
    }
    Ok(Seen { failures, last })
}

/// Sets a name's `last` attempt (field `ARGV[3]`) to now (`ARGV[2]`) only if it still holds what
/// was read (`ARGV[1]`): 1 if so, 0 if another attempt took the turn first.
const TAKE_TURN: &str = r"
if redis.call('HGET', KEYS[1], ARGV[3]) == ARGV[1] then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
  return 1
end
return 0
";

/// [`check`], then, once the attempt's name must wait between attempts, takes its turn: of
/// attempts of it arriving together, one goes ahead and the others are refused as if its wait
/// had just begun. Called with a password-check slot held, just before the password is checked.
pub(super) async fn take_turn(
    redis: &mut RedisLink,
    clock: &dyn Clock,
    limits: Limits,
    attempt: Attempt<'_>,
) -> Result<(), WebError> {
    let name = attempt.name;
    let seen = seen(redis, clock, limits, attempt).await?;
    let Some(last) = seen.last.filter(|_| seen.failures >= limits.free_failures) else {
        return Ok(());
    };
    let now = clock.now_ms();
    let taken: bool = redis::Script::new(TAKE_TURN)
        .key(keys::monitor_login_failures_name(name))
        .arg(last)
        .arg(now)
        .arg(fields::LAST)
        .invoke_async(redis)
        .await?;
    if taken {
        return Ok(());
    }
    let wait = name_wait(
        seen.failures,
        now,
        now,
        limits.free_failures,
        limits.max_delay,
    );
    Err(WebError::TooManyAttempts(whole_secs(wait).max(1)))
}

/// Counts a failed login of `name` (empty: a name that breaks the name rule, counted against
/// the address only) from `bucket`; `known`: the name is an operator's, counted against the
/// (name, address) pair too.
pub(super) async fn failed(
    redis: &mut RedisLink,
    clock: &dyn Clock,
    limits: Limits,
    name: &str,
    bucket: &str,
    known: bool,
) -> Result<(), WebError> {
    let addr = keys::monitor_login_failures_address(bucket);
    let key = keys::monitor_login_failures_name(name);
    let window_ms = i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut counted = vec![addr];
    if known && !name.is_empty() {
        counted.push(keys::monitor_login_failures_pair(name, bucket));
    }
    for k in &counted {
        pipe.incr(k, 1u64)
            .ignore()
            .cmd("PEXPIRE")
            .arg(k)
            .arg(window_ms)
            .arg("NX")
            .ignore();
    }
    if !name.is_empty() {
        pipe.hincr(&key, fields::FAILURES, 1u64)
            .ignore()
            .hset(&key, fields::LAST, clock.now_ms())
            .ignore()
            .pexpire(&key, window_ms)
            .ignore();
    }
    pipe.query_async::<()>(redis).await?;
    Ok(())
}

/// Forgets the failures of `name`, and of `name` from `bucket`, after it logged in from there.
pub(super) async fn succeeded(
    redis: &mut RedisLink,
    name: &str,
    bucket: &str,
) -> Result<(), WebError> {
    redis::cmd("DEL")
        .arg(keys::monitor_login_failures_name(name))
        .arg(keys::monitor_login_failures_pair(name, bucket))
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
        let a = checks.slot(Claim::Operator).await.expect("first");
        let _b = checks.slot(Claim::Operator).await.expect("second");
        let asked = tokio::time::Instant::now();
        assert!(matches!(
            checks.slot(Claim::Operator).await,
            Err(WebError::Busy(1))
        ));
        assert_eq!(asked.elapsed(), SLOT_WAIT, "refused once the wait is over");
        // A slot freed within the wait goes to the login waiting for it.
        let waiting = tokio::spawn({
            let checks = checks.clone();
            async move { checks.slot(Claim::Operator).await.is_ok() }
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
        let slot = checks.slot(Claim::Other).await.expect("slot");
        assert_eq!(checks.slots.available_permits(), 0, "the slot is taken");
        assert!(checks
            .verify(slot, "pw".into(), hash.clone())
            .await
            .expect("check"));
        let slot = checks.slot(Claim::Other).await.expect("slot is back");
        assert!(!checks
            .verify(slot, "nope".into(), hash)
            .await
            .expect("check"));
    }

    #[tokio::test(start_paused = true)]
    async fn made_up_names_never_take_the_operators_slot() {
        let checks = PasswordChecks::new(3);
        let _x = checks.slot(Claim::Other).await.expect("first share");
        let _y = checks.slot(Claim::Other).await.expect("second share");
        assert!(
            matches!(checks.slot(Claim::Other).await, Err(WebError::Busy(1))),
            "the last slot is not for made-up names"
        );
        let asked = tokio::time::Instant::now();
        let _op = checks.slot(Claim::Operator).await.expect("operator");
        assert_eq!(asked.elapsed(), Duration::ZERO, "taken at once");
    }

    #[tokio::test(start_paused = true)]
    async fn with_one_slot_an_operator_waits_behind_at_most_one_made_up_name() {
        const CHECK: Duration = Duration::from_millis(400);
        let checks = PasswordChecks::new(1);
        let running = checks.slot(Claim::Other).await.expect("running");
        // Made-up names queue up, each holding the slot for a check's time once it has it:
        // first come first served, the operator would wait behind all four (1.6 s).
        for _ in 0..4 {
            let checks = checks.clone();
            tokio::spawn(async move {
                if let Ok(slot) = checks.slot(Claim::Other).await {
                    tokio::time::sleep(CHECK).await;
                    drop(slot);
                }
            });
        }
        tokio::task::yield_now().await;
        let asked = tokio::time::Instant::now();
        let operator = tokio::spawn({
            let checks = checks.clone();
            async move { checks.slot(Claim::Operator).await.is_ok() }
        });
        tokio::time::sleep(CHECK).await;
        drop(running);
        assert!(operator.await.expect("task"), "served, not refused");
        assert!(asked.elapsed() <= CHECK, "next after the check running");
    }
}
