//! Gates through a bridge outage, with the real broker, Redis and bridge: a fail-closed gate's
//! tap is not charged when the bridge returns (it is answered `stale`), and a fail-open gate's
//! offline entries are each charged exactly once. The outage is longer than the decision window
//! (shortened here so the test stays fast; a 10 s outage behaves the same).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{DeviceStack, Rig, Stack, WAIT};
use tapgate_device::logic::OfflinePolicy;
use tapgate_device::prompt::{Prompt, Sound};
use tapgate_protocol::{keys, CardId, ProductId};
use tapgate_testkit::MqttProbe;

const WINDOW: Duration = Duration::from_millis(500);

/// Sells `card` a ten-trip pass at a terminal.
async fn ten_trip(stack: &Stack, card: &str) {
    let mut t = Rig::terminal(stack.device_config("t1")).await;
    support::buy(&mut t, card, ProductId::TEN_TRIP).await;
    t.stop().await;
}

async fn trips(stack: &Stack, card: &str) -> i64 {
    let card = CardId::new(card).expect("card");
    stack.counter(&keys::pass(&card), "trips").await
}

/// Reads events until `want` (event name → count) is met; panics after [`WAIT`].
async fn await_events(probe: &mut MqttProbe, want: &[(&str, usize)]) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while want
        .iter()
        .any(|(n, c)| seen.get(*n).copied().unwrap_or(0) < *c)
    {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(msg) = probe.recv_timeout(left).await else {
            panic!("expected {want:?}, saw {seen:?}");
        };
        if let Some(name) = msg.json()["event"].as_str() {
            *seen.entry(name.to_owned()).or_default() += 1;
        }
    }
    seen
}

/// Nothing more arrives within half a second: no second charge.
async fn no_more_events(probe: &mut MqttProbe) {
    let late: Vec<_> = probe
        .drain_for(Duration::from_millis(500))
        .await
        .into_iter()
        .map(|m| m.json()["event"].clone())
        .collect();
    assert!(late.is_empty(), "{late:?}");
}

/// Stops the bridge, taps `card` at `g` (after lifting any card: past the hold window), checks
/// what the gate played, and starts the bridge again.
async fn tap_while_the_bridge_is_down(
    stack: &mut Stack,
    g: &mut Rig,
    card: &str,
    heard: [Sound; 2],
) {
    stack.stop_bridge().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    g.tap(card);
    assert_eq!(g.sounds(2).await, heard.to_vec());
    stack.start_bridge().await;
}

async fn gate(stack: &Stack, policy: OfflinePolicy) -> Rig {
    let mut cfg = stack.device_config("g1");
    cfg.decision_timeout = WINDOW;
    cfg.offline_policy = policy;
    Rig::gate(cfg).await
}

#[tokio::test]
async fn fail_closed_tap_during_an_outage_is_not_charged() {
    let mut stack = Stack::start(|c| c.decision_window = WINDOW).await;
    let mut events = MqttProbe::connect(stack.broker.port(), "watch").await;
    events.subscribe("tapgate/events/#").await;
    ten_trip(&stack, "C1").await;
    let mut g = gate(&stack, OfflinePolicy::FailClosed).await;
    g.tap("C1");
    assert_eq!(
        g.sounds(2).await,
        vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
    );
    assert_eq!(trips(&stack, "C1").await, 9);
    await_events(&mut events, &[("pass-used", 1)]).await;

    let unavailable = [Sound::Buzzer, Sound::Say(Prompt::ServiceUnavailable)];
    tap_while_the_bridge_is_down(&mut stack, &mut g, "C1", unavailable).await;

    // The queued tap arrives after the window: answered stale, recorded, not charged.
    let seen = await_events(&mut events, &[("tap-stale", 1)]).await;
    assert_eq!(seen.get("pass-used"), None, "{seen:?}");
    assert_eq!(trips(&stack, "C1").await, 9);
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 1);
    assert_eq!(stack.counter(keys::COUNTERS_STALE, "gate").await, 1);
    // The gate ignores the late answer: it already turned the rider away.
    assert_eq!(g.quiet_for(Duration::from_millis(300)).await, vec![]);
    g.stop().await;
}

#[tokio::test]
async fn fail_open_offline_entries_take_exactly_one_trip_each() {
    let mut stack = Stack::start(|c| c.decision_window = WINDOW).await;
    let mut events = MqttProbe::connect(stack.broker.port(), "watch").await;
    events.subscribe("tapgate/events/#").await;
    ten_trip(&stack, "TEN").await;
    let mut g = gate(&stack, OfflinePolicy::FailOpen).await;

    stack.stop_bridge().await;
    for _ in 0..3 {
        g.tap("TEN");
        assert_eq!(
            g.sounds(2).await,
            vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
        );
        tokio::time::sleep(Duration::from_millis(150)).await; // lift the card
    }
    stack.start_bridge().await;

    // Each waiting tap is stale; each offline entry is settled once.
    let seen = await_events(&mut events, &[("tap-stale", 3), ("pass-used", 3)]).await;
    assert_eq!(seen.get("pass-denied"), None, "{seen:?}");
    assert_eq!(trips(&stack, "TEN").await, 7);
    // Nothing more arrives: no second charge.
    no_more_events(&mut events).await;
    assert_eq!(trips(&stack, "TEN").await, 7);
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 3);
    assert_eq!(stack.counter(keys::COUNTERS_STALE, "gate").await, 3);
    g.stop().await;
}

/// A stack whose decision window (5 s) a bridge restart fits in, a card "TEN" with a ten-trip
/// pass, an event watcher, and gate g1 with `policy`, giving up after `timeout` (well before the
/// window ends).
async fn late_answer_stack(policy: OfflinePolicy, timeout: Duration) -> (Stack, MqttProbe, Rig) {
    let stack = Stack::start(|c| c.decision_window = Duration::from_secs(5)).await;
    let events = MqttProbe::connect(stack.broker.port(), "watch").await;
    events.subscribe("tapgate/events/#").await;
    ten_trip(&stack, "TEN").await;
    let mut cfg = stack.device_config("g1");
    cfg.decision_timeout = timeout;
    cfg.offline_policy = policy;
    let g = Rig::gate(cfg).await;
    (stack, events, g)
}

/// A fail-closed gate's tap decided and charged inside the bridge's window, its answer coming after
/// the gate gave up and turned the rider away: the rider taps again, the retap names the tap the
/// gate gave up on, and it is granted on that charge. One ride, one trip.
#[tokio::test]
async fn fail_closed_retap_after_a_late_answer_is_not_charged_again() {
    let (mut stack, mut events, mut g) =
        late_answer_stack(OfflinePolicy::FailClosed, Duration::from_secs(1)).await;

    let unavailable = [Sound::Buzzer, Sound::Say(Prompt::ServiceUnavailable)];
    tap_while_the_bridge_is_down(&mut stack, &mut g, "TEN", unavailable).await;
    // The waiting tap is decided when the bridge is back: granted, charged, its answer too late.
    await_events(&mut events, &[("pass-used", 1)]).await;
    assert_eq!(trips(&stack, "TEN").await, 9);
    assert_eq!(g.quiet_for(Duration::from_millis(300)).await, vec![]);

    // The rider taps again: let in, on the charge already made.
    g.tap("TEN");
    assert_eq!(
        g.sounds(2).await,
        vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
    );
    no_more_events(&mut events).await;
    assert_eq!(trips(&stack, "TEN").await, 9);
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 1);

    // The next ride is charged as usual.
    tokio::time::sleep(Duration::from_millis(150)).await; // lift the card
    g.tap("TEN");
    assert_eq!(
        g.sounds(2).await,
        vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
    );
    assert_eq!(trips(&stack, "TEN").await, 8);
    g.stop().await;
}

/// The other order: the waiting tap is still decided inside the bridge's window, but its answer
/// comes after the fail-open gate gave up and let the rider through. The gate's offline entry
/// names that tap, so the ride is charged once, by the waiting tap.
#[tokio::test]
async fn fail_open_entry_for_a_tap_decided_late_is_not_charged_again() {
    let (mut stack, mut events, mut g) =
        late_answer_stack(OfflinePolicy::FailOpen, Duration::from_millis(100)).await;

    let let_in = [Sound::Chime, Sound::Say(Prompt::AccessGranted)];
    tap_while_the_bridge_is_down(&mut stack, &mut g, "TEN", let_in).await;

    // The waiting tap is granted (fresh), and the entry settled by that grant: one trip.
    let seen = await_events(&mut events, &[("pass-used", 1)]).await;
    assert_eq!(seen.get("tap-stale"), None, "{seen:?}");
    no_more_events(&mut events).await;
    assert_eq!(trips(&stack, "TEN").await, 9);
    assert_eq!(stack.counter(keys::COUNTERS_ENTRIES, "TEN_TRIP").await, 1);
    g.stop().await;
}
