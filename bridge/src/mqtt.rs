//! The MQTT connection: options, start-up handshake and the task that owns the event loop.
//!
//! One task owns the rumqttc event loop and never blocks: it hands each incoming publish to the
//! dispatcher and goes straight back to polling. Workers hold clones of the client to publish
//! decisions and acknowledge messages (manual acks: a message is acknowledged only after its
//! decision is stored and published). A lost connection is retried with exponential backoff; the
//! persistent session (clean session off) means the broker keeps and redelivers what arrived
//! meanwhile.
//!
//! Events go out at QoS 0 by a side path ([`EventSender`]): the loop task puts them in its write
//! buffer between polls without a write of their own, and they leave in the same write as the next
//! decision or acknowledgement (every event is followed by its message's acknowledgement). A
//! publish through the client costs one write each; this way a tap costs two (decision, ack)
//! instead of three or four.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use tapgate_runtime::mqtt::{BrokerSettings, MqttSetupError, MAX_PACKET_BYTES};
use tapgate_runtime::Backoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::BridgeConfig;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;

/// Why the MQTT side failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker settings cannot work (URL, TLS files).
    #[error(transparent)]
    Setup(#[from] MqttSetupError),
    /// No connection at start-up.
    #[error("cannot connect to MQTT broker at {url}: {reason}")]
    Connect {
        /// host:port.
        url: String,
        reason: String,
    },
    /// The broker refused a subscription (usually an ACL).
    #[error("MQTT broker at {url} refused the subscription to {filter}")]
    SubscribeRefused {
        /// host:port.
        url: String,
        filter: String,
    },
    /// `--shared-group` is set, but the broker does not deliver through `$share/{group}/…`.
    #[error(
        "MQTT broker at {url} accepted the shared subscription {filter} but delivered nothing \
         through it within {secs} s: it does not support shared subscriptions (some brokers, \
         e.g. RabbitMQ's MQTT plugin before 3.13 or NATS, take $share/... as a plain topic). \
         Run a single bridge without --shared-group, or use a broker that shares (mosquitto 2, EMQX)"
    )]
    SharingUnsupported {
        /// host:port.
        url: String,
        /// The shared probe filter.
        filter: String,
        /// How long the bridge waited.
        secs: u64,
    },
}

/// Events waiting for the loop task; beyond this they are dropped (QoS 0 promises nothing, and
/// every event is in the Redis stream).
const EVENT_QUEUE: usize = 4096;

/// How long writing events into the connection may take before the loop gives up on them.
const EVENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands events to the task that owns the event loop, which publishes them at QoS 0 (see the
/// module docs), and counts the acknowledgements handed to the client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Publish>,
    acks_queued: Arc<AtomicU64>,
}

/// The receiving end of [`EventSender`], for [`drive`].
#[derive(Debug)]
pub struct EventQueue {
    rx: mpsc::Receiver<Publish>,
    acks_queued: Arc<AtomicU64>,
    /// Acknowledgements the loop wrote (counted from its `Outgoing::PubAck` events).
    acks_written: u64,
}

/// A side path for events: the sender for workers, the queue for [`drive`].
pub fn event_path() -> (EventSender, EventQueue) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let acks_queued = Arc::new(AtomicU64::new(0));
    let sender = EventSender {
        tx,
        acks_queued: acks_queued.clone(),
    };
    let queue = EventQueue {
        rx,
        acks_queued,
        acks_written: 0,
    };
    (sender, queue)
}

impl EventSender {
    /// Queues an event for publishing at QoS 0; dropped (and logged at DEBUG) if the queue is full
    /// or the loop has stopped.
    pub fn publish(&self, topic: String, payload: Vec<u8>) {
        let publish = Publish::new(topic, QoS::AtMostOnce, payload);
        if let Err(e) = self.tx.try_send(publish) {
            debug!(error = %e, "Event not published over MQTT (in the stream only)");
        }
    }

    /// Call before handing an acknowledgement to the client: while one waits there, the loop
    /// leaves queued events for that acknowledgement's write to carry.
    pub fn ack_queued(&self) {
        self.acks_queued.fetch_add(1, Ordering::Relaxed);
    }
}

impl EventQueue {
    /// Whether an acknowledgement handed to the client has not been written yet: its write will
    /// carry whatever is in the buffer.
    fn ack_pending(&self) -> bool {
        self.acks_queued.load(Ordering::Relaxed) > self.acks_written
    }

    /// Counts the loop's writes of acknowledgements; after a reconnect, assumes none is pending
    /// (so events are flushed on their own rather than left waiting for an ack that was lost).
    fn observe(&mut self, event: &Event) {
        match event {
            // Never ahead of the count queued (acks left over from before a reconnect).
            Event::Outgoing(Outgoing::PubAck(_)) => {
                self.acks_written =
                    (self.acks_written + 1).min(self.acks_queued.load(Ordering::Relaxed));
            }
            Event::Incoming(Packet::ConnAck(_)) => {
                self.acks_written = self.acks_queued.load(Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// Puts the queued events in the connection's write buffer. Flushes them only when `flush`:
/// otherwise the write of a decision's acknowledgement still to come carries them.
async fn write_events(eventloop: &mut EventLoop, queue: &mut EventQueue, flush: bool) {
    let Some(network) = eventloop.network.as_mut() else {
        return;
    };
    let write = async {
        let mut wrote = false;
        while let Ok(publish) = queue.rx.try_recv() {
            network.write(Packet::Publish(publish)).await?;
            wrote = true;
        }
        if wrote && flush {
            network.flush().await?;
        }
        Ok::<(), rumqttc::StateError>(())
    };
    match tokio::time::timeout(EVENT_WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        // The connection is broken: the next poll sees it and reconnects.
        Ok(Err(e)) => debug!(error = %e, "Events not written"),
        Err(_) => debug!("Events not written within the timeout"),
    }
}

/// How long the start-up check waits for its probe to come back through the shared group.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Checks that the broker delivers through `$share/{group}/…`: subscribes to a fresh probe topic
/// through the group, publishes one message to it and waits for it. A broker that takes
/// `$share/…` as a plain topic never delivers it, and the bridge would silently receive no tap;
/// it stops instead, naming the broker's limitation. Other messages arriving meanwhile are
/// dispatched as usual.
pub async fn verify_sharing(
    eventloop: &mut EventLoop,
    client: &AsyncClient,
    topics: &tapgate_protocol::Topics,
    group: &str,
    url: &str,
    dispatcher: &Dispatcher,
) -> Result<(), MqttError> {
    let nonce = format!("{:016x}", getrandom::u64().unwrap_or_else(|_| now_nanos()));
    let topic = topics.bridge_probe(&nonce);
    let filter = format!("$share/{group}/{topic}");
    let fail = |reason: String| MqttError::Connect {
        url: url.to_owned(),
        reason,
    };
    client
        .try_subscribe(filter.as_str(), QoS::AtLeastOnce)
        .map_err(|e| fail(e.to_string()))?;
    let wait = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        return Err(MqttError::SubscribeRefused {
                            url: url.to_owned(),
                            filter: filter.clone(),
                        });
                    }
                    client
                        .try_publish(topic.as_str(), QoS::AtLeastOnce, false, nonce.as_bytes())
                        .map_err(|e| fail(e.to_string()))?;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                    let _ = client.try_ack(&p);
                    return Ok(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => dispatcher.offer(p),
                Ok(_) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    };
    let result = match tokio::time::timeout(PROBE_WAIT, wait).await {
        Ok(r) => r,
        Err(_) => Err(MqttError::SharingUnsupported {
            url: url.to_owned(),
            filter: filter.clone(),
            secs: PROBE_WAIT.as_secs(),
        }),
    };
    let _ = client.try_unsubscribe(filter.as_str());
    result
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos().into())
        .unwrap_or(0)
}

/// Largest MQTT packet the bridge reads, 1 MiB.
///
/// A packet above the client's limit is a protocol error to rumqttc: the connection drops, and
/// the persistent session redelivers the same packet on reconnect, forever. So this limit must be
/// above anything the broker will deliver. Brokers are configured to refuse packets above 8 KiB
/// (mosquitto `max_packet_size`, EMQX `mqtt.max_packet_size`); 1 MiB leaves a wide margin for a
/// broker left at a larger limit (payloads above the 1 KiB contract are still refused one by one,
/// as `payload_too_large`), while one packet in hand costs at most 1 MiB of memory, whose bytes
/// are dropped before the message is queued.
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// The MQTT options the bridge uses: the shared broker settings (credentials, TLS), a persistent
/// session, manual acks and the incoming packet limit above.
pub fn options(broker: &BrokerSettings, client_id: &str) -> Result<MqttOptions, MqttError> {
    let mut opts = broker.options(client_id)?;
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_PACKET_BYTES)
        .set_inflight(200);
    Ok(opts)
}

/// The subscription filters, wrapped in `$share/{group}/` when a shared group is set.
pub fn filters(cfg: &BridgeConfig, topics: &tapgate_protocol::Topics) -> Vec<String> {
    topics
        .bridge_filters()
        .into_iter()
        .map(|f| match &cfg.shared_group {
            Some(g) => format!("$share/{g}/{f}"),
            None => f,
        })
        .collect()
}

/// Creates the client and event loop (TCP_NODELAY on, through the shared runtime).
pub fn client(opts: MqttOptions) -> (AsyncClient, EventLoop) {
    tapgate_runtime::mqtt::client(opts, 4096)
}

fn subscribe(client: &AsyncClient, filters: &[String]) -> Result<(), rumqttc::ClientError> {
    client.try_subscribe_many(
        filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
    )
}

/// Connects and subscribes, failing fast with the broker's address if either fails. Messages
/// that arrive meanwhile (queued for this session) are dispatched, not lost.
pub async fn handshake(
    eventloop: &mut EventLoop,
    client: &AsyncClient,
    filters: &[String],
    url: &str,
    dispatcher: &Dispatcher,
) -> Result<(), MqttError> {
    let fail = |reason: String| MqttError::Connect {
        url: url.to_owned(),
        reason,
    };
    let wait = async {
        let mut subscribed = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        return Err(fail(format!("broker refused: {:?}", ack.code)));
                    }
                    if !subscribed {
                        subscribe(client, filters).map_err(|e| fail(e.to_string()))?;
                        subscribed = true;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    for (code, filter) in ack.return_codes.iter().zip(filters) {
                        if *code == SubscribeReasonCode::Failure {
                            return Err(MqttError::SubscribeRefused {
                                url: url.to_owned(),
                                filter: filter.clone(),
                            });
                        }
                    }
                    return Ok(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => dispatcher.offer(p),
                Ok(_) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
}

/// Polls the event loop until `stop` is cancelled, dispatching every publish and reconnecting
/// with exponential backoff. It waits for nothing but the event loop (see [`crate::dispatch`]).
/// After `stop`, keeps polling briefly so queued acks and the DISCONNECT reach the broker.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    dispatcher: Dispatcher,
    mut events: EventQueue,
    metrics: Metrics,
    max_backoff: Duration,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), max_backoff);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        if let Ok(event) = &event {
            events.observe(event);
            // A decision just written or an acknowledgement waiting in the client: its write
            // carries the events.
            let decision = matches!(event, Event::Outgoing(Outgoing::Publish(_)));
            let carried = decision || events.ack_pending();
            write_events(&mut eventloop, &mut events, !carried).await;
        }
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => dispatcher.offer(p),
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                info!(
                    session_present = ack.session_present,
                    "Reconnected to MQTT broker"
                );
                if let Err(e) = subscribe(&client, &filters) {
                    warn!(error = %e, "Cannot resubscribe");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    warn!(codes = ?ack.return_codes, "Broker refused a subscription");
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_reconnect();
                let delay = backoff.next_delay();
                warn!(error = %e, retry_in = ?delay, "MQTT connection lost");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    // Flush what workers queued (decisions, events, acks) and the DISCONNECT, for at most 2 s.
    let flush = async {
        loop {
            let event = eventloop.poll().await;
            if event.is_ok() {
                write_events(&mut eventloop, &mut events, true).await;
            }
            match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // Not acknowledged: the broker redelivers it to the next session.
                    let topic = tapgate_protocol::text::escape_untrusted(&p.topic, 200);
                    debug!(topic = ?topic, "Left for redelivery at shutdown");
                }
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_filters() {
        let cfg = BridgeConfig {
            shared_group: Some("g".into()),
            ..BridgeConfig::default()
        };
        let f = filters(&cfg, &tapgate_protocol::Topics::default());
        assert_eq!(f[0], "$share/g/tapgate/+/+/tap");
    }
}
