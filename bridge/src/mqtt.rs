//! The MQTT connection's set-up: options, subscription filters, the start-up handshake and the
//! shared-subscription check. [`crate::connection`] owns the connection once it is up.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use tapgate_runtime::mqtt::{BrokerSettings, MqttSetupError, MAX_PACKET_BYTES};

use crate::config::BridgeConfig;
use crate::connection;
use crate::dispatch::Dispatcher;
use crate::outbox::Line;

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

/// How long the start-up check waits for its probe to come back through the shared group.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Checks that the broker delivers through `$share/{group}/…`: subscribes to a fresh probe topic
/// through the group, publishes one message to it and waits for it. A broker that takes
/// `$share/…` as a plain topic never delivers it, and the bridge would silently receive no tap;
/// it stops instead, naming the broker's limitation. Other messages arriving meanwhile are
/// dispatched as usual.
pub(crate) async fn verify_sharing(
    eventloop: &mut EventLoop,
    client: &AsyncClient,
    topics: &tapgate_protocol::Topics,
    group: &str,
    url: &str,
    dispatcher: &Dispatcher,
    line: &mut Line,
) -> Result<(), MqttError> {
    let nonce = format!("{:016x}", getrandom::u64().unwrap_or_else(|_| now_nanos()));
    let topic = topics.bridge_probe(&nonce);
    let filter = tapgate_protocol::Topics::shared(group, &topic);
    let fail = |reason: String| MqttError::Connect {
        url: url.to_owned(),
        reason,
    };
    client
        .try_subscribe(filter.as_str(), QoS::AtLeastOnce)
        .map_err(|e| fail(e.to_string()))?;
    let wait = async {
        loop {
            match connection::poll_writing(eventloop, line).await {
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
                    // Acknowledged and unsubscribed before returning: once the connection task
                    // owns the connection, nothing reads the client's requests.
                    client.try_ack(&p).map_err(|e| fail(e.to_string()))?;
                    client
                        .try_unsubscribe(filter.as_str())
                        .map_err(|e| fail(e.to_string()))?;
                }
                Ok(Event::Incoming(Packet::UnsubAck(_))) => return Ok(()),
                Ok(Event::Incoming(Packet::Publish(p))) => dispatcher.offer(p, 0),
                Ok(_) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    };
    match tokio::time::timeout(PROBE_WAIT, wait).await {
        Ok(r) => r,
        Err(_) => Err(MqttError::SharingUnsupported {
            url: url.to_owned(),
            filter: filter.clone(),
            secs: PROBE_WAIT.as_secs(),
        }),
    }
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
pub(crate) const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// The MQTT options the bridge uses: the shared broker settings (credentials, TLS), a persistent
/// session, manual acks and the incoming packet limit above.
pub(crate) fn options(broker: &BrokerSettings, client_id: &str) -> Result<MqttOptions, MqttError> {
    let mut opts = broker.options(client_id)?;
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_PACKET_BYTES)
        .set_inflight(200);
    Ok(opts)
}

/// The subscription filters, wrapped in `$share/{group}/` when a shared group is set.
pub(crate) fn filters(cfg: &BridgeConfig, topics: &tapgate_protocol::Topics) -> Vec<String> {
    topics
        .bridge_filters()
        .into_iter()
        .map(|f| match &cfg.shared_group {
            Some(g) => tapgate_protocol::Topics::shared(g, &f),
            None => f,
        })
        .collect()
}

/// Creates the client and event loop (TCP_NODELAY on, through the shared runtime).
pub(crate) fn client(opts: MqttOptions) -> (AsyncClient, EventLoop) {
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
/// that arrive meanwhile (queued for this session) are dispatched, not lost, and what the
/// workers queue for them is written (the broker sends no more than its in-flight window until
/// they are acknowledged).
pub(crate) async fn handshake(
    eventloop: &mut EventLoop,
    client: &AsyncClient,
    filters: &[String],
    url: &str,
    dispatcher: &Dispatcher,
    line: &mut Line,
) -> Result<(), MqttError> {
    let fail = |reason: String| MqttError::Connect {
        url: url.to_owned(),
        reason,
    };
    let wait = async {
        let mut subscribed = false;
        loop {
            match connection::poll_writing(eventloop, line).await {
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
                Ok(Event::Incoming(Packet::Publish(p))) => dispatcher.offer(p, 0),
                Ok(_) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
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
