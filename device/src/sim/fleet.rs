//! The simulator's devices: one MQTT client per simulated gate or terminal.
//!
//! Each device task owns its event loop, subscribes to its decision topic and forwards every
//! decision (with its arrival time) to the simulator. Sessions are persistent, so when the
//! simulator drops a device's connection — abruptly, so the broker publishes its last will —
//! decisions published meanwhile are queued by the broker and delivered on reconnect. A drop
//! waits until every message the device was asked to send has been acknowledged by the broker,
//! so no tap is lost on the device side. Like a real device, each sends a heartbeat with its
//! uptime every [`HEARTBEAT_INTERVAL_SECS`] while connected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tapgate_protocol::status::{Heartbeat, HEARTBEAT_INTERVAL_SECS, OFFLINE, ONLINE};
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_runtime::mqtt::{BrokerSettings, MqttSetupError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A simulated device as the scheduler sees it.
pub struct Device {
    /// Gate or terminal.
    pub kind: DeviceKind,
    /// Its id (also the MQTT client id).
    pub id: DeviceId,
    /// Where it publishes taps.
    pub tap_topic: String,
    /// Where it publishes buttons (terminals).
    pub button_topic: String,
    /// The current client; replaced after a reconnect.
    pub client: Option<AsyncClient>,
    /// Messages the scheduler handed to the client.
    pub requested: Arc<AtomicU64>,
    /// Whether the device is connected and may be used.
    pub up: bool,
    /// Asks the device task to drop its connection for a while.
    pub control: mpsc::Sender<Duration>,
}

/// What device tasks report.
pub enum FleetEvent {
    /// A decision payload arrived for device `0` at `2`.
    Decision(usize, Vec<u8>, Instant),
    /// Device `0` is connected with this client.
    Up(usize, AsyncClient),
    /// Device `0` has dropped its connection.
    Down(usize),
}

/// Connection settings shared by all simulated devices.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Broker URL, shared credentials and TLS.
    pub broker: BrokerSettings,
    pub topics: Topics,
}

/// A simulated device's own login, when the broker gives every device one.
pub type Login = Option<String>;

fn options(
    cfg: &FleetConfig,
    kind: DeviceKind,
    id: &DeviceId,
    password: &Login,
) -> Result<MqttOptions, MqttSetupError> {
    let broker = match password {
        // A provisioned device logs in as itself.
        Some(pw) => cfg
            .broker
            .clone()
            .with_credentials(Some(id.to_string()), Some(pw.clone())),
        None => cfg.broker.clone(),
    };
    let mut opts = broker
        .with_keep_alive(Duration::from_secs(10))
        .options(id.as_str())?;
    opts.set_clean_session(false);
    opts.set_inflight(200);
    opts.set_last_will(LastWill::new(
        cfg.topics.status(kind, id),
        OFFLINE,
        QoS::AtLeastOnce,
        false,
    ));
    Ok(opts)
}

fn connect(opts: &MqttOptions) -> (AsyncClient, EventLoop) {
    tapgate_runtime::mqtt::client(opts.clone(), 10_000)
}

/// Starts a device task for each of `roster`, in order: device `i` is `roster[i]`.
pub fn spawn_all(
    cfg: &FleetConfig,
    roster: Vec<(DeviceKind, DeviceId, Login)>,
    events: &mpsc::UnboundedSender<FleetEvent>,
    shutdown: &CancellationToken,
) -> Result<Vec<Device>, MqttSetupError> {
    roster
        .into_iter()
        .enumerate()
        .map(|(index, (kind, id, login))| {
            spawn(
                cfg,
                index,
                kind,
                id,
                &login,
                events.clone(),
                shutdown.clone(),
            )
        })
        .collect()
}

/// Starts a device task; returns the scheduler's handle.
pub fn spawn(
    cfg: &FleetConfig,
    index: usize,
    kind: DeviceKind,
    id: DeviceId,
    login: &Login,
    events: mpsc::UnboundedSender<FleetEvent>,
    shutdown: CancellationToken,
) -> Result<Device, MqttSetupError> {
    let opts = options(cfg, kind, &id, login)?;
    let (control_tx, control_rx) = mpsc::channel(4);
    let requested = Arc::new(AtomicU64::new(0));
    let device = Device {
        kind,
        tap_topic: cfg.topics.tap(kind, &id),
        button_topic: cfg.topics.button(&id),
        id: id.clone(),
        client: None,
        requested: requested.clone(),
        up: false,
        control: control_tx,
    };
    let task = DeviceTask {
        index,
        opts,
        status: cfg.topics.status(kind, &id),
        heartbeat: cfg.topics.heartbeat(kind, &id),
        decision: cfg.topics.decision(kind, &id),
        requested,
        written: 0,
        acked: 0,
        events,
    };
    tokio::spawn(task.run(control_rx, shutdown));
    Ok(device)
}

struct DeviceTask {
    index: usize,
    opts: MqttOptions,
    status: String,
    heartbeat: String,
    decision: String,
    requested: Arc<AtomicU64>,
    written: u64,
    acked: u64,
    events: mpsc::UnboundedSender<FleetEvent>,
}

impl DeviceTask {
    async fn run(mut self, mut control: mpsc::Receiver<Duration>, shutdown: CancellationToken) {
        let started = Instant::now();
        let mut beat = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (client, mut eventloop) = connect(&self.opts);
            self.written = 0;
            self.acked = 0;
            self.requested.store(0, Ordering::SeqCst);
            let mut announced = false;
            let drop_for = loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => {
                        self.stop(&client, &mut eventloop).await;
                        return;
                    }
                    d = control.recv(), if announced => match d {
                        Some(d) => break d,
                        None => return,
                    },
                    _ = beat.tick(), if announced => {
                        self.heartbeat(&client, started);
                        continue;
                    }
                    e = eventloop.poll() => e,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        self.connected(&client, &mut announced);
                    }
                    Ok(other) => self.handle(other),
                    Err(e) => {
                        debug!(device = self.index, error = %e, "Simulated device reconnecting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            // Drop: first let every requested publish reach the broker and be acknowledged.
            self.settle(&mut eventloop).await;
            drop(client);
            drop(eventloop); // abrupt: no DISCONNECT, the broker sends the last will
            let _ = self.events.send(FleetEvent::Down(self.index));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(drop_for) => {}
            }
        }
    }

    /// Publishes a heartbeat with the time since the device started.
    fn heartbeat(&mut self, client: &AsyncClient, started: Instant) {
        let hb = Heartbeat {
            uptime_s: started.elapsed().as_secs(),
        };
        let body = serde_json::to_vec(&hb).unwrap_or_default();
        if client
            .try_publish(self.heartbeat.as_str(), QoS::AtLeastOnce, false, body)
            .is_ok()
        {
            self.requested.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// On (re)connecting: subscribes to decisions, says it is online, and the first time tells
    /// the fleet it is up.
    fn connected(&mut self, client: &AsyncClient, announced: &mut bool) {
        self.requested.fetch_add(1, Ordering::SeqCst);
        let _ = client.try_subscribe(self.decision.as_str(), QoS::AtLeastOnce);
        let _ = client.try_publish(self.status.as_str(), QoS::AtLeastOnce, false, ONLINE);
        if !*announced {
            *announced = true;
            let _ = self.events.send(FleetEvent::Up(self.index, client.clone()));
        }
    }

    /// Before a drop: lets every requested publish reach the broker and be acknowledged, for at
    /// most 5 s.
    async fn settle(&mut self, eventloop: &mut EventLoop) {
        let settle = async {
            while self.written < self.requested.load(Ordering::SeqCst) || self.acked < self.written
            {
                match eventloop.poll().await {
                    Ok(e) => self.handle(e),
                    Err(e) => {
                        warn!(device = self.index, error = %e, "Connection failed while settling");
                        break;
                    }
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), settle)
            .await
            .is_err()
        {
            warn!(device = self.index, "Unacknowledged messages at drop time");
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::Publish(p)) if p.topic == self.decision => {
                let _ = self.events.send(FleetEvent::Decision(
                    self.index,
                    p.payload.to_vec(),
                    Instant::now(),
                ));
            }
            Event::Outgoing(Outgoing::Publish(_)) => self.written += 1,
            Event::Incoming(Packet::PubAck(_)) => self.acked += 1,
            _ => {}
        }
    }

    async fn stop(&mut self, client: &AsyncClient, eventloop: &mut EventLoop) {
        let _ = client.try_publish(self.status.as_str(), QoS::AtLeastOnce, false, OFFLINE);
        let _ = client.try_disconnect();
        let flush = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(e) => self.handle(e),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    }
}
