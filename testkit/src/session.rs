//! An MQTT client for attack tests: every outcome is surfaced, nothing is retried.
//!
//! [`MqttSession::connect`] returns the broker's refusal instead of retrying;
//! [`MqttSession::subscribe`] returns the SUBACK's codes; [`MqttSession::closed`] waits for the
//! broker to cut the connection. Each wait is bounded by a timeout on a channel, never a sleep.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::probe::Received;

/// What the connection reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// CONNACK accepted.
    Connected,
    /// SUBACK: one entry per filter, `true` when granted.
    SubAck(Vec<bool>),
    /// PUBACK for a QoS 1 publish.
    PubAck(u16),
    /// A message.
    Message(Received),
    /// The connection ended (refused CONNACK, disconnect by the broker, I/O error).
    Closed(String),
}

/// A single MQTT connection whose events are reported to the test.
pub struct MqttSession {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Report>,
    task: JoinHandle<()>,
    /// Messages received while waiting for something else.
    pending: Vec<Received>,
}

/// Options for `client_id` as `username` with `password` on `127.0.0.1:port`.
pub fn options(port: u16, client_id: &str, username: &str, password: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_credentials(username, password);
    opts
}

impl MqttSession {
    /// Connects and waits up to 5 s for the CONNACK; `Err` with the reason when refused or cut.
    pub async fn connect(opts: MqttOptions) -> Result<Self, String> {
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(eventloop, tx));
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Report::Connected)) => Ok(Self {
                client,
                rx,
                task,
                pending: Vec::new(),
            }),
            Ok(Some(Report::Closed(why))) => {
                task.abort();
                Err(why)
            }
            Ok(other) => {
                task.abort();
                Err(format!("unexpected first event {other:?}"))
            }
            Err(_) => {
                task.abort();
                Err("no CONNACK within 5 s".into())
            }
        }
    }

    /// The client, for anything not wrapped here.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    async fn next(&mut self, timeout: Duration) -> Option<Report> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Subscribes to `filter` at QoS 1 and returns whether the broker granted it (`Err` when the
    /// connection ended or no SUBACK came within 5 s).
    pub async fn subscribe(&mut self, filter: &str) -> Result<bool, String> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Report::SubAck(codes)) => return Ok(codes.iter().all(|c| *c)),
                Some(Report::Message(m)) => self.pending.push(m),
                Some(Report::Closed(why)) => return Err(why),
                Some(_) => {}
                None => return Err("no SUBACK within 5 s".into()),
            }
        }
    }

    /// Publishes without waiting for anything.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, qos: QoS, retain: bool) {
        self.client
            .publish(topic, qos, retain, payload.into())
            .await
            .expect("publish queued");
    }

    /// The next message on `topic` within `timeout`.
    pub async fn message_on(&mut self, topic: &str, timeout: Duration) -> Option<Received> {
        if let Some(i) = self.pending.iter().position(|m| m.topic == topic) {
            return Some(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Report::Message(m)) if m.topic == topic => return Some(m),
                Some(Report::Message(m)) => self.pending.push(m),
                Some(Report::Closed(_)) | None => return None,
                Some(_) => {}
            }
        }
    }

    /// Every message that arrives within `window` (and any received earlier but not yet read).
    pub async fn messages_for(&mut self, window: Duration) -> Vec<Received> {
        let mut out = std::mem::take(&mut self.pending);
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left).await {
                Some(Report::Message(m)) => out.push(m),
                Some(Report::Closed(_)) | None => return out,
                Some(_) => {}
            }
        }
    }

    /// Waits up to `timeout` for the broker to end the connection; the reason, or `None` if it
    /// stayed open.
    pub async fn closed(&mut self, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Report::Closed(why)) => return Some(why),
                Some(Report::Message(m)) => self.pending.push(m),
                Some(_) => {}
                None => return None,
            }
        }
    }

    /// Publishes at QoS 1 and waits for its PUBACK; `Err` with the reason if the connection ends
    /// first or nothing comes within `timeout`.
    pub async fn publish_acked(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
        timeout: Duration,
    ) -> Result<(), String> {
        self.publish(topic, payload, QoS::AtLeastOnce, retain).await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Report::PubAck(_)) => return Ok(()),
                Some(Report::Message(m)) => self.pending.push(m),
                Some(Report::Closed(why)) => return Err(why),
                Some(_) => {}
                None => return Err(format!("no PUBACK within {timeout:?}")),
            }
        }
    }
}

impl Drop for MqttSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Report>) {
    loop {
        let report = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Report::Connected,
            Ok(Event::Incoming(Packet::SubAck(ack))) => Report::SubAck(
                ack.return_codes
                    .iter()
                    .map(|c| !matches!(c, SubscribeReasonCode::Failure))
                    .collect(),
            ),
            Ok(Event::Incoming(Packet::PubAck(ack))) => Report::PubAck(ack.pkid),
            Ok(Event::Incoming(Packet::Publish(p))) => Report::Message(Received {
                topic: p.topic.clone(),
                payload: p.payload.to_vec(),
                retain: p.retain,
            }),
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Report::Closed(e.to_string()));
                return;
            }
        };
        if tx.send(report).is_err() {
            return;
        }
    }
}
