//! The device's MQTT link.
//!
//! One task owns the rumqttc event loop. The device connects with a persistent session
//! (`clean_session = false`, client id = device id) and a last will `offline` on its status topic;
//! on every CONNACK it subscribes to its decision topic (QoS 1) and publishes `online`. Nothing is
//! retained: brokers refuse retained messages, so a retained tap can never exist. While connected it sends a heartbeat with its uptime and wall clock every
//! [`tapgate_protocol::status::HEARTBEAT_INTERVAL_SECS`] seconds. Taps and buttons are
//! published at QoS 1; while the broker is unreachable they wait in a bounded queue and go out on
//! reconnect (overflow is logged and counted). Every message stays in an outbox until its
//! decision arrives; if the broker comes back without the session, the outbox is published again
//! with the same ids, which the bridge answers without charging twice. Malformed decisions are
//! logged and dropped. On shutdown the link publishes `offline` and disconnects cleanly.
//!
//! A broker that refuses the device's login (no login, a wrong password, a device never
//! provisioned or since removed) is not an outage: the link says so as an error naming the fix,
//! and tries again only every [`REFUSED_RETRY`], in case the device is provisioned meanwhile.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, Outgoing, Packet,
    QoS,
};
use tapgate_protocol::status::{ClockHeartbeat, HEARTBEAT_INTERVAL_SECS, OFFLINE, ONLINE};
use tapgate_protocol::{Decision, DeviceId, DeviceKind, MessageId, Stamped, Topics};
use tapgate_runtime::mqtt::{BrokerSettings, MqttSetupError};
use tapgate_runtime::Backoff;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::logic::{Outbound, WallClock};

/// Why the link could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The broker settings cannot work (URL, TLS files).
    #[error(transparent)]
    Broker(#[from] MqttSetupError),
}

/// Settings of a link.
#[derive(Clone)]
pub struct LinkConfig {
    /// Broker URL, credentials, TLS and keep-alive.
    pub broker: BrokerSettings,
    pub topics: Topics,
    /// Gate or terminal.
    pub kind: DeviceKind,
    /// The device (also the client id).
    pub device: DeviceId,
    /// Most messages waiting while the broker is unreachable.
    pub queue_limit: usize,
    /// The wall clock reported in heartbeats.
    pub clock: WallClock,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("broker", &self.broker)
            .field("topics", &self.topics)
            .field("kind", &self.kind)
            .field("device", &self.device)
            .field("queue_limit", &self.queue_limit)
            .finish_non_exhaustive()
    }
}

/// Counters of a link, for logs and tests.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Messages handed to the client.
    pub published: AtomicU64,
    /// Messages dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Messages published again after the broker lost the session.
    pub republished: AtomicU64,
    /// Decisions received and forwarded.
    pub decisions: AtomicU64,
    /// Decision payloads that could not be parsed.
    pub malformed: AtomicU64,
    /// Connections made (CONNACKs).
    pub connects: AtomicU64,
    /// Connections the broker refused because of the device's login.
    pub refusals: AtomicU64,
    /// Whether the link is connected now.
    pub connected: AtomicBool,
}

/// Messages awaiting their decision, oldest first, bounded.
#[derive(Debug, Default)]
struct Outbox {
    limit: usize,
    items: VecDeque<Waiting>,
}

/// One message awaiting its decision.
#[derive(Debug, Clone)]
struct Waiting {
    id: MessageId,
    topic: String,
    payload: Vec<u8>,
    /// When it was last handed to the client.
    sent: Instant,
    /// How often it was published again.
    retries: u32,
}

/// How long a message may wait for its decision, while connected, before it is published again
/// with the same id (doubling after each try, see [`retry_delay`]). A broker can lose a message it acknowledged (mosquitto forgets shared
/// subscriptions at a restart, so what arrives before the bridges subscribe again reaches
/// nobody); the bridge answers a repeat without charging twice, and a waiting tap that comes back
/// too late is answered `stale`.
pub const RETRY_AFTER: Duration = Duration::from_secs(3);

/// How long to wait before the next try of a message already published again `retries` times:
/// [`RETRY_AFTER`], doubling with each try, at most a minute.
pub fn retry_delay(retries: u32) -> Duration {
    (RETRY_AFTER * 2u32.saturating_pow(retries.min(5))).min(Duration::from_secs(60))
}

/// How long the link waits before trying again after the broker refused the device's login: long
/// enough not to flood the log or the broker, short enough that a device provisioned meanwhile
/// comes up on its own.
pub const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// The broker's answer when it refused the device's login (rather than being unreachable): a
/// wrong or missing username or password, a client id it does not accept, or a login it does not
/// authorise.
fn login_refused(e: &ConnectionError) -> Option<ConnectReturnCode> {
    match e {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::BadClientId),
        ) => Some(*code),
        _ => None,
    }
}

/// The sending side of a running link; cheap to clone.
#[derive(Clone)]
pub struct Link {
    client: AsyncClient,
    topics: Topics,
    kind: DeviceKind,
    device: DeviceId,
    outbox: Arc<Mutex<Outbox>>,
    stats: Arc<LinkStats>,
    clock: WallClock,
}

impl Link {
    /// Starts the link task. Returns the link, the stream of decisions for this device, and the
    /// task (which ends after `shutdown`, once `offline` is sent).
    pub fn start(
        cfg: LinkConfig,
        shutdown: CancellationToken,
    ) -> Result<(Link, mpsc::Receiver<Decision>, JoinHandle<()>), LinkError> {
        let status = cfg.topics.status(cfg.kind, &cfg.device);
        let mut opts = cfg.broker.options(cfg.device.as_str())?;
        opts.set_clean_session(false);
        opts.set_last_will(LastWill::new(&status, OFFLINE, QoS::AtLeastOnce, false));
        let (client, eventloop) = tapgate_runtime::mqtt::client(opts, cfg.queue_limit + 16);
        let link = Link {
            client,
            topics: cfg.topics.clone(),
            kind: cfg.kind,
            device: cfg.device.clone(),
            outbox: Arc::new(Mutex::new(Outbox {
                limit: cfg.queue_limit,
                items: VecDeque::new(),
            })),
            stats: Arc::new(LinkStats::default()),
            clock: cfg.clock.clone(),
        };
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(drive(link.clone(), eventloop, tx, shutdown));
        Ok((link, rx, task))
    }

    /// The link's counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The device this link speaks for.
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Publishes a tap or button at QoS 1 (queued while the broker is unreachable).
    pub fn publish(&self, msg: &Outbound) {
        let (topic, payload) = match msg {
            Outbound::Tap(t, stamp) => (
                self.topics.tap(self.kind, &self.device),
                json(&Stamped {
                    message: t,
                    stamp: *stamp,
                }),
            ),
            Outbound::Button(b, stamp) => (
                self.topics.button(&self.device),
                json(&Stamped {
                    message: b,
                    stamp: *stamp,
                }),
            ),
        };
        {
            let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            if outbox.items.len() >= outbox.limit {
                if let Some(old) = outbox.items.pop_front() {
                    warn!(id = %old.id, "Outbox full; forgetting the oldest undecided message");
                }
            }
            outbox.items.push_back(Waiting {
                id: msg.id().clone(),
                topic: topic.clone(),
                payload: payload.clone(),
                sent: Instant::now(),
                retries: 0,
            });
        }
        self.send(topic, payload, msg.id());
    }

    fn send(&self, topic: String, payload: Vec<u8>, id: &MessageId) {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(%id, dropped_total = dropped, error = %e, "Send queue full; message dropped");
            }
        }
    }

    fn decided(&self, id: &MessageId) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        outbox.items.retain(|w| w.id != *id);
    }

    /// The broker accepted the connection: subscribes to `decision_topic` and says online on
    /// `status`; after a reconnect to a broker that lost the session (`session_present` false),
    /// publishes every undecided message again.
    fn connected(&self, session_present: bool, before: bool, status: &str, decision_topic: &str) {
        self.stats.connected.store(true, Ordering::Relaxed);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        info!(device = %self.device, session_present, "Connected to the broker");
        if let Err(e) = self.client.try_subscribe(decision_topic, QoS::AtLeastOnce) {
            warn!(error = %e, "Cannot subscribe to decisions");
        }
        if let Err(e) = self
            .client
            .try_publish(status, QoS::AtLeastOnce, false, ONLINE)
        {
            warn!(error = %e, "Cannot publish online status");
        }
        if before && !session_present {
            let count = self.republish(true);
            if count > 0 {
                warn!(
                    count,
                    "Broker lost the session; publishing undecided messages again"
                );
            }
        }
    }

    /// A decision arrived: its message is decided, and the decision goes to the device through
    /// `decisions` (dropped, and said, when the device is not keeping up).
    fn received(&self, payload: &[u8], decisions: &mpsc::Sender<Decision>) {
        match Decision::from_json(payload) {
            Ok(d) => {
                if let Some(id) = &d.id {
                    self.decided(id);
                }
                self.stats.decisions.fetch_add(1, Ordering::Relaxed);
                if decisions.try_send(d).is_err() {
                    warn!("Decision dropped: the device is not keeping up");
                }
            }
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, bytes = payload.len(), "Malformed decision ignored");
            }
        }
    }

    /// The broker refused the device's login (`code`): counted, and the operator told how to
    /// give the device a login of its own.
    fn refused(&self, code: Option<ConnectReturnCode>) {
        self.stats.connected.store(false, Ordering::Relaxed);
        self.stats.refusals.fetch_add(1, Ordering::Relaxed);
        let kind = match self.kind {
            DeviceKind::Gate => "gate",
            DeviceKind::Terminal => "terminal",
        };
        error!(
            device = %self.device,
            ?code,
            retry_in_s = REFUSED_RETRY.as_secs(),
            "The broker refused this device's login. Give the device its own: \
             `tapgate-admin device add {id} --kind {kind} > {id}.toml`, then \
             `tapgate-device {kind} --config {id}.toml` (or --mqtt-username and \
             --mqtt-password)",
            id = self.device,
        );
    }

    /// Clean stop: says offline on `status`, then disconnects and lets the event loop flush both
    /// (for at most 2 s).
    async fn say_offline(&self, eventloop: &mut EventLoop, status: &str) {
        let _ = self
            .client
            .try_publish(status, QoS::AtLeastOnce, false, OFFLINE);
        let _ = self.client.try_disconnect();
        let flush = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    }

    /// Publishes again the undecided messages whose retry is due (all of them with `all`).
    fn republish(&self, all: bool) -> usize {
        let items: Vec<Waiting> = {
            let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            outbox
                .items
                .iter_mut()
                .filter(|w| all || now.duration_since(w.sent) >= retry_delay(w.retries))
                .map(|w| {
                    w.sent = now;
                    w.retries += 1;
                    w.clone()
                })
                .collect()
        };
        for w in &items {
            self.stats.republished.fetch_add(1, Ordering::Relaxed);
            self.send(w.topic.clone(), w.payload.clone(), &w.id);
        }
        items.len()
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Taps and buttons hold only validated strings: serialisation cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

async fn drive(
    link: Link,
    mut eventloop: EventLoop,
    decisions: mpsc::Sender<Decision>,
    shutdown: CancellationToken,
) {
    let status = link.topics.status(link.kind, &link.device);
    let decision_topic = link.topics.decision(link.kind, &link.device);
    let heartbeat_topic = link.topics.heartbeat(link.kind, &link.device);
    // The heartbeat runs beside the event loop: `poll` must not be cancelled mid-connect.
    let heartbeat = tokio::spawn(beat(link.clone(), heartbeat_topic, shutdown.clone()));
    let retry = tokio::spawn(retry_undecided(link.clone(), shutdown.clone()));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut ever_connected = false;
    let mut outage_logged = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                outage_logged = false;
                link.connected(
                    ack.session_present,
                    ever_connected,
                    &status,
                    &decision_topic,
                );
                ever_connected = true;
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == decision_topic => {
                link.received(&p.payload, &decisions);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                debug!(topic = %p.topic, "Ignoring a message on another topic");
            }
            Ok(_) => {}
            Err(e) if login_refused(&e).is_some() => {
                link.refused(login_refused(&e));
                outage_logged = false;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(REFUSED_RETRY) => {}
                }
            }
            Err(e) => {
                link.stats.connected.store(false, Ordering::Relaxed);
                if !outage_logged {
                    warn!(device = %link.device, error = %e, "Broker unreachable; retrying");
                    outage_logged = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    if link.stats.connected.load(Ordering::Relaxed) {
        link.say_offline(&mut eventloop, &status).await;
    }
    link.stats.connected.store(false, Ordering::Relaxed);
    let _ = heartbeat.await;
    let _ = retry.await;
    info!(device = %link.device, "Link stopped");
}

/// While connected, publishes again every message that has waited [`RETRY_AFTER`] for its
/// decision.
async fn retry_undecided(link: Link, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !link.stats.connected.load(Ordering::Relaxed) {
            continue;
        }
        let count = link.republish(false);
        if count > 0 {
            debug!(count, "Undecided messages published again");
        }
    }
}

/// Publishes `{"uptime_s": N, "clock_ms": T}` every heartbeat interval while connected, so the
/// bridge can measure this device's clock skew.
async fn beat(link: Link, topic: String, shutdown: CancellationToken) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if link.stats.connected.load(Ordering::Relaxed) {
            let hb = ClockHeartbeat {
                uptime_s: started.elapsed().as_secs(),
                clock_ms: link.clock.now_ms(),
            };
            if let Err(e) =
                link.client
                    .try_publish(topic.as_str(), QoS::AtLeastOnce, false, json(&hb))
            {
                debug!(error = %e, "Heartbeat not queued");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off() {
        let secs: Vec<u64> = (0..8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [3, 6, 12, 24, 48, 60, 60, 60]);
    }

    /// Gate g1 on the broker at `url`, with an outbox of four.
    fn gate_g1(url: &str) -> LinkConfig {
        LinkConfig {
            broker: BrokerSettings::new(url).expect("url"),
            topics: Topics::default(),
            kind: DeviceKind::Gate,
            device: DeviceId::new("g1").expect("id"),
            queue_limit: 4,
            clock: crate::logic::system_clock(),
        }
    }

    /// With no broker, messages wait in the bounded queue; beyond it they are dropped and
    /// counted, and the outbox keeps only the newest `queue_limit` undecided messages.
    #[tokio::test]
    async fn overflow_is_counted_while_the_broker_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let cfg = gate_g1(&format!("mqtt://127.0.0.1:{port}"));
        let shutdown = CancellationToken::new();
        let (link, _decisions, task) = Link::start(cfg, shutdown.clone()).expect("start");
        let mut ids = crate::logic::TapIds::new(1);
        for _ in 0..30 {
            let tap = tapgate_protocol::Tap::new(
                ids.next_id(),
                tapgate_protocol::CardId::new("C1").expect("card"),
            );
            link.publish(&Outbound::Tap(tap, tapgate_protocol::Stamp::online(1)));
        }
        // The client's queue holds queue_limit + 16 (room for status and subscriptions).
        assert_eq!(link.stats().published.load(Ordering::Relaxed), 20);
        assert_eq!(link.stats().dropped.load(Ordering::Relaxed), 10);
        assert!(!link.stats().connected.load(Ordering::Relaxed));
        let kept: Vec<String> = link
            .outbox
            .lock()
            .expect("outbox")
            .items
            .iter()
            .map(|w| w.id.to_string())
            .collect();
        let counters: Vec<&str> = kept.iter().filter_map(|id| id.split('-').nth(1)).collect();
        assert_eq!(counters, ["27", "28", "29", "30"]);
        shutdown.cancel();
        task.await.expect("link task");
    }

    /// A broker that refuses the device's login is asked again only after [`REFUSED_RETRY`],
    /// not at the pace of an outage (which would be every 100 ms to 5 s, forever).
    #[tokio::test]
    async fn a_refused_login_is_not_retried_as_an_outage() {
        let broker = tapgate_testkit::Mosquitto::with_config("allow_anonymous false\n");
        let cfg = gate_g1(&broker.url());
        let shutdown = CancellationToken::new();
        let (link, _decisions, task) = Link::start(cfg, shutdown.clone()).expect("start");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            link.stats().refusals.load(Ordering::Relaxed),
            1,
            "{}",
            broker.log()
        );
        assert_eq!(link.stats().connects.load(Ordering::Relaxed), 0);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the link stops while waiting to retry")
            .expect("link task");
    }

    #[test]
    fn only_a_refused_login_counts_as_refused() {
        let refused = |code| login_refused(&ConnectionError::ConnectionRefused(code));
        assert!(refused(ConnectReturnCode::NotAuthorized).is_some());
        assert!(refused(ConnectReturnCode::BadUserNamePassword).is_some());
        assert!(refused(ConnectReturnCode::ServiceUnavailable).is_none());
        assert!(login_refused(&ConnectionError::RequestsDone).is_none());
    }
}
