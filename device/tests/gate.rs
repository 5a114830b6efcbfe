//! An entry gate on fake hardware against the real bridge: light and sound sequences, and the
//! offline policies with the bridge stopped.

mod support;

use std::time::Duration;

use support::{buy, DeviceStack, Rig, Stack};
use tapgate_device::logic::OfflinePolicy;
use tapgate_device::prompt::{Lamps, Prompt, Sound};
use tapgate_protocol::{DeviceId, DeviceKind, ProductId, Topics};
use tapgate_testkit::MqttProbe;

fn flashes(lamps: &[Lamps]) -> usize {
    lamps
        .windows(2)
        .filter(|w| w[0] == Lamps::OFF && w[1] == Lamps::RED)
        .count()
}

#[tokio::test]
async fn granted_and_denied_sequences() {
    let stack = Stack::start(|_| {}).await;
    let mut t = Rig::terminal(stack.device_config("t1")).await;
    let mut g = Rig::gate(stack.device_config("g1")).await;
    buy(&mut t, "RIDER1", ProductId::SINGLE_USE).await;

    // Granted: checking (red + amber), then green only, then back to red after green_for.
    g.tap("RIDER1");
    assert_eq!(
        g.sounds(2).await,
        vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        g.lamps(),
        vec![Lamps::RED, Lamps::RED_AMBER, Lamps::GREEN, Lamps::RED]
    );

    // The single-use pass is spent: denied, red flashes 4 times, buzzer, never green.
    tokio::time::sleep(Duration::from_millis(200)).await;
    g.tap("RIDER1");
    assert_eq!(
        g.sounds(2).await,
        vec![Sound::Buzzer, Sound::Say(Prompt::AccessDenied)]
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let lamps = g.lamps()[4..].to_vec();
    assert_eq!(lamps[0], Lamps::RED_AMBER);
    assert_eq!(flashes(&lamps), 4, "{lamps:?}");
    assert_eq!(lamps.last(), Some(&Lamps::RED));
    assert!(!lamps.contains(&Lamps::GREEN));
    g.stop().await;
    t.stop().await;
}

#[tokio::test]
async fn offline_policies_with_the_bridge_stopped() {
    let mut stack = Stack::start(|_| {}).await;
    let mut t = Rig::terminal(stack.device_config("t1")).await;
    buy(&mut t, "RIDER2", ProductId::TEN_TRIP).await;
    t.stop().await;

    let mut closed_cfg = stack.device_config("gclosed");
    closed_cfg.decision_timeout = Duration::from_millis(400);
    let mut open_cfg = stack.device_config("gopen");
    open_cfg.decision_timeout = Duration::from_millis(400);
    open_cfg.offline_policy = OfflinePolicy::FailOpen;
    let mut closed = Rig::gate(closed_cfg).await;
    let mut open = Rig::gate(open_cfg).await;
    let topics = Topics::default();
    let gopen = DeviceId::new("gopen").expect("id");
    let mut watch = MqttProbe::connect(stack.broker.port(), "watch-gopen").await;
    watch
        .subscribe(&topics.decision(DeviceKind::Gate, &gopen))
        .await;

    stack.stop_bridge().await;

    // Fail-closed: denied with "service unavailable", never green.
    closed.tap("RIDER2");
    assert_eq!(
        closed.sounds(2).await,
        vec![Sound::Buzzer, Sound::Say(Prompt::ServiceUnavailable)]
    );
    assert!(!closed.lamps().contains(&Lamps::GREEN));

    // Fail-open: let in.
    open.tap("RIDER2");
    assert_eq!(
        open.sounds(2).await,
        vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
    );
    assert!(open.lamps().contains(&Lamps::GREEN));

    // The bridge returns: the queued waiting taps are decided (charged if still inside the
    // decision window: the fail-open one is), and the late decisions are ignored by the gates
    // (no sound). The fail-open gate's offline entry names its waiting tap: settled by that
    // charge, not charged again.
    stack.start_bridge().await;
    let d = watch
        .expect_on(
            &topics.decision(DeviceKind::Gate, &gopen),
            Duration::from_secs(10),
        )
        .await
        .json();
    assert_eq!(d["outcome"], "granted", "{d}");
    let left = d["pass"]["trips_remaining"].as_u64().expect("trips");
    assert!(left == 8 || left == 9, "{d}");
    let entry = watch
        .expect_on(
            &topics.decision(DeviceKind::Gate, &gopen),
            Duration::from_secs(5),
        )
        .await
        .json();
    assert_eq!(entry["outcome"], "entry_settled", "{entry}");
    assert_eq!(
        entry["pass"]["trips_remaining"], left,
        "the entry is settled by the waiting tap's charge: {entry}"
    );
    assert_eq!(open.quiet_for(Duration::from_millis(500)).await, vec![]);
    assert_eq!(closed.quiet_for(Duration::from_millis(100)).await, vec![]);

    // Online again: the next tap is decided normally and shows what was charged.
    tokio::time::sleep(Duration::from_millis(200)).await;
    open.tap("RIDER2");
    assert_eq!(
        open.sounds(2).await,
        vec![Sound::Chime, Sound::Say(Prompt::AccessGranted)]
    );
    let d = watch
        .expect_on(
            &topics.decision(DeviceKind::Gate, &gopen),
            Duration::from_secs(5),
        )
        .await
        .json();
    assert_eq!(
        d["pass"]["trips_remaining"],
        left - 1,
        "the fail-open ride was charged once: {d}"
    );
    open.stop().await;
    closed.stop().await;
}

#[tokio::test]
async fn stray_and_malformed_decisions_never_show_green() {
    let stack = Stack::start(|_| {}).await;
    let mut g = Rig::gate(stack.device_config("g9")).await;
    let topics = Topics::default();
    let g9 = DeviceId::new("g9").expect("id");
    let decisions = topics.decision(DeviceKind::Gate, &g9);
    let probe = MqttProbe::connect(stack.broker.port(), "intruder").await;
    let grant = r#"{"id":"someone-else-1","outcome":"granted","pass":{"type":"SINGLE_USE"}}"#;
    probe.publish(&decisions, grant).await;
    probe.publish(&decisions, "{not json").await;
    probe
        .publish(&decisions, r#"{"id":"x","outcome":"teleport"}"#)
        .await;
    assert_eq!(g.quiet_for(Duration::from_millis(500)).await, vec![]);
    assert_eq!(g.lamps(), vec![Lamps::RED]);

    // The gate still works: an unknown card is denied by the bridge.
    g.tap("NOBODY1");
    assert_eq!(
        g.sounds(2).await,
        vec![Sound::Buzzer, Sound::Say(Prompt::AccessDenied)]
    );
    assert!(!g.lamps().contains(&Lamps::GREEN));
    g.stop().await;
}
