//! What the bridge examples share: a closed loop of gates tapping over real MQTT.

use std::time::{Duration, Instant};

use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_testkit::{Mosquitto, MqttProbe};

/// Round trips, sorted, of `gates` gates (ids `{run}{n}`) tapping `per_gate` times each on cards
/// `{run}{0..97}`, one tap in flight per gate.
pub async fn closed_loop(
    broker: &Mosquitto,
    run: &str,
    gates: usize,
    per_gate: usize,
) -> Vec<Duration> {
    let topics = Topics::default();
    let mut tasks = Vec::new();
    for g in 0..gates {
        let port = broker.port();
        let topics = topics.clone();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let device = DeviceId::new(format!("{run}{g}")).expect("device");
            let mut probe = MqttProbe::connect(port, &format!("{run}-gate-{g}")).await;
            probe
                .subscribe(&topics.decision(DeviceKind::Gate, &device))
                .await;
            let tap_topic = topics.tap(DeviceKind::Gate, &device);
            let mut latencies = Vec::with_capacity(per_gate);
            for i in 0..per_gate {
                let payload = format!(r#"{{"id":"{g}-{i}","card":"{run}{}"}}"#, i % 97);
                let sent = Instant::now();
                probe.publish(&tap_topic, payload).await;
                probe
                    .recv_timeout(Duration::from_secs(10))
                    .await
                    .expect("decision within 10 s");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("gate task"));
    }
    all.sort_unstable();
    all
}

/// The `p` quantile of sorted round trips.
pub fn pct(all: &[Duration], p: f64) -> Duration {
    all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
}
