//! An MQTT client for tests: publish, subscribe, and wait for messages.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A message the probe received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Whether the broker flagged it retained.
    pub retain: bool,
}

impl Received {
    /// The payload as text (lossy), for assertions and messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The payload parsed as JSON; panics with the payload if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("not JSON on {}: {e}: {}", self.topic, self.text()))
    }
}

/// A connected MQTT client whose incoming publishes are queued for the test to read.
pub struct MqttProbe {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Received>,
    task: JoinHandle<()>,
}

impl MqttProbe {
    /// Connects to `127.0.0.1:port` as `client_id` (clean session) and waits for the CONNACK.
    pub async fn connect(port: u16, client_id: &str) -> Self {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        Self::connect_with(opts).await
    }

    /// Connects with the given options and waits for the CONNACK (panics after 5 s).
    pub async fn connect_with(opts: MqttOptions) -> Self {
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(drive(eventloop, tx, ready_tx));
        match tokio::time::timeout(Duration::from_secs(5), ready_rx).await {
            Ok(Ok(())) => {}
            _ => panic!("probe got no CONNACK within 5 s (see the retries above)"),
        }
        Self { client, rx, task }
    }

    /// The underlying client, for options the probe does not wrap.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Subscribes at QoS 1 and gives the broker a moment to register it.
    pub async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        // SUBACK is not surfaced separately; a short pause lets the broker apply the subscription.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Publishes at QoS 1, not retained.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish");
    }

    /// Publishes at QoS 1 with the retain flag.
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
            .await
            .expect("publish");
    }

    /// The next message, or `None` after `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next message whose topic equals `topic`, skipping others; panics after `timeout`.
    pub async fn expect_on(&mut self, topic: &str, timeout: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_timeout(left).await {
                Some(m) if m.topic == topic => return m,
                Some(_) => continue,
                None => panic!("no message on {topic} within {timeout:?}"),
            }
        }
    }

    /// Collects every message that arrives within `window`.
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.recv_timeout(left).await {
                Some(m) => out.push(m),
                None => return out,
            }
        }
    }

    /// Disconnects cleanly.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

impl Drop for MqttProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<Received>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = tx.send(Received {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                });
            }
            Ok(_) => {}
            Err(e) => {
                if ready.is_some() {
                    eprintln!("probe: connection attempt failed, retrying: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
