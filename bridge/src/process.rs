//! Handling one incoming message: validate, decide, answer, acknowledge.
//!
//! The order matters for "exactly once": the decision is stored (atomically, with its effects) and
//! published before the message is acknowledged. A crash in between means the broker redelivers
//! the message, and the stored decision is published again without a second charge.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Publish, QoS};
use tapgate_protocol::rules::Input;
use tapgate_protocol::status::{parse_status, Heartbeat};
use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::validate::{parse_button, parse_tap};
use tapgate_protocol::{
    Decision, DeviceId, DeviceKind, Event, EventKind, InboundTopic, Outcome, Rejection, Topics,
    MAX_PAYLOAD_BYTES,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::store::{Request, Store, StoreError};

/// Everything a worker needs to handle messages. Cheap to clone.
#[derive(Clone)]
pub struct Processor {
    /// Redis.
    pub store: Store,
    /// MQTT client for decisions, events and acks.
    pub client: AsyncClient,
    /// Topic names.
    pub topics: Topics,
    /// Counters.
    pub metrics: Metrics,
    /// Longest pause between Redis retries.
    pub max_backoff: Duration,
    /// Stops retries at shutdown (the message is then left unacknowledged for redelivery).
    pub shutdown: CancellationToken,
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What a message turned out to be.
enum Parsed {
    Decide(InboundTopic, tapgate_protocol::MessageId, Input),
    Presence(InboundTopic, Option<bool>, Option<u64>),
    Refuse(Option<(DeviceKind, DeviceId)>, Rejection),
    Ignore,
}

fn parse(topics: &Topics, publish: &Publish) -> Parsed {
    let topic = match topics.parse(&publish.topic) {
        Ok(t) => t,
        Err(e) => {
            let device = e.device().map(|(k, d)| (k, d.clone()));
            return Parsed::Refuse(device, Rejection::from(&e));
        }
    };
    let payload: &[u8] = &publish.payload;
    let here = Some((topic.kind, topic.device.clone()));
    match topic.message {
        MessageKind::Tap | MessageKind::Button if publish.retain => {
            // Answer with the message's id when it has a readable one.
            let id = match topic.message {
                MessageKind::Tap => parse_tap(payload).ok().map(|t| t.id),
                _ => parse_button(payload).ok().map(|b| b.id),
            };
            Parsed::Refuse(
                here,
                Rejection {
                    id,
                    ..Rejection::new(
                        tapgate_protocol::RejectReason::Retained,
                        "taps and button presses must not be retained",
                    )
                },
            )
        }
        MessageKind::Tap => match parse_tap(payload) {
            Ok(tap) => {
                let input = match topic.kind {
                    DeviceKind::Gate => Input::GateTap(tap.card),
                    DeviceKind::Terminal => Input::TerminalTap(tap.card),
                };
                Parsed::Decide(topic, tap.id, input)
            }
            Err(r) => Parsed::Refuse(here, r),
        },
        MessageKind::Button => match parse_button(payload) {
            Ok(b) => Parsed::Decide(topic, b.id, Input::Button(b.pass)),
            Err(r) => Parsed::Refuse(here, r),
        },
        // A retained status cleared with an empty payload: nothing to record.
        MessageKind::Status if payload.is_empty() => Parsed::Ignore,
        MessageKind::Status => match parse_status(payload) {
            Some(online) => Parsed::Presence(topic, Some(online), None),
            None => Parsed::Refuse(
                None,
                Rejection::new(
                    tapgate_protocol::RejectReason::MalformedJson,
                    "status must be \"online\" or \"offline\"",
                ),
            ),
        },
        MessageKind::Heartbeat => {
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Parsed::Ignore;
            }
            match serde_json::from_slice::<Heartbeat>(payload) {
                Ok(h) => Parsed::Presence(topic, None, Some(h.uptime_s)),
                Err(e) => Parsed::Refuse(
                    None,
                    Rejection::new(
                        tapgate_protocol::RejectReason::MalformedJson,
                        format!("bad heartbeat: {e}"),
                    ),
                ),
            }
        }
        MessageKind::Decision => Parsed::Ignore,
    }
}

impl Processor {
    /// Handles one publish to completion (or until shutdown), then acknowledges it.
    pub async fn handle(&self, publish: Publish) {
        let received = Instant::now();
        let done = match parse(&self.topics, &publish) {
            Parsed::Decide(topic, id, input) => {
                self.metrics.message(topic.message);
                self.decide(&topic, &id, &input, received).await
            }
            Parsed::Presence(topic, online, uptime) => {
                self.metrics.message(topic.message);
                self.retry("presence", || {
                    self.store
                        .presence(topic.kind, &topic.device, online, uptime, now_ms())
                })
                .await
                .is_some()
            }
            Parsed::Refuse(device, rejection) => {
                self.refuse(&publish.topic, device, rejection, received)
                    .await
            }
            Parsed::Ignore => true,
        };
        if done {
            if let Err(e) = self.client.ack(&publish).await {
                debug!(error = %e, "Ack not sent (shutting down)");
            }
        }
        self.metrics.inflight_add(-1);
    }

    async fn decide(
        &self,
        topic: &InboundTopic,
        id: &tapgate_protocol::MessageId,
        input: &Input,
        received: Instant,
    ) -> bool {
        let now = now_ms();
        let req = Request {
            kind: topic.kind,
            device: &topic.device,
            id,
            input,
            now_ms: now,
        };
        let Some(decided) = self.retry("decide", || self.store.decide(&req)).await else {
            return false;
        };
        if decided.replayed {
            self.metrics.replay();
        }
        let outcome = decided.decision.outcome.name();
        info!(
            device = %topic.device,
            kind = %topic.kind,
            id = %id,
            outcome,
            replayed = decided.replayed,
            "Decided"
        );
        self.answer(topic.kind, &topic.device, &decided.decision, received)
            .await;
        for event in &decided.events {
            self.publish_event(event).await;
        }
        true
    }

    async fn refuse(
        &self,
        raw_topic: &str,
        device: Option<(DeviceKind, DeviceId)>,
        rejection: Rejection,
        received: Instant,
    ) -> bool {
        self.metrics.rejected(rejection.reason);
        let shown_topic: String = raw_topic.chars().take(200).collect();
        warn!(
            topic = %shown_topic,
            reason = %rejection.reason,
            detail = %rejection.detail,
            "Refused device message"
        );
        let mut event = Event::new(EventKind::Rejected, now_ms());
        event.device_kind = device.as_ref().map(|(k, _)| *k);
        event.device = device.as_ref().map(|(_, d)| d.clone());
        event.id = rejection.id.clone();
        event.reason = Some(rejection.reason.as_str().to_owned());
        event.detail = Some(rejection.detail.clone());
        let reason = rejection.reason.as_str();
        let Some(event) = self
            .retry("reject", || self.store.reject(event.clone(), reason))
            .await
        else {
            return false;
        };
        if let Some((kind, device)) = &device {
            let decision = Decision {
                id: rejection.id,
                outcome: Outcome::Rejected {
                    reason: rejection.reason,
                    detail: rejection.detail,
                },
            };
            self.answer(*kind, device, &decision, received).await;
        }
        self.publish_event(&event).await;
        true
    }

    async fn answer(
        &self,
        kind: DeviceKind,
        device: &DeviceId,
        decision: &Decision,
        received: Instant,
    ) {
        let topic = self.topics.decision(kind, device);
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, decision.to_json())
            .await
        {
            warn!(error = %e, %device, "Cannot publish decision");
        }
        self.metrics
            .decision(kind, &decision.outcome, received.elapsed());
    }

    async fn publish_event(&self, event: &Event) {
        let topic = self.topics.event(event.event, event.pass_type());
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, event.to_json())
            .await
        {
            warn!(error = %e, "Cannot publish event");
        }
    }

    /// Runs `op` until it succeeds, retrying connection failures with backoff. Returns `None` at
    /// shutdown or on a permanent error (logged), leaving the message unacknowledged.
    async fn retry<T, F, Fut>(&self, what: &'static str, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(v) => return Some(v),
                Err(e) if e.is_transient() => {
                    self.metrics.redis_reconnect();
                    warn!(error = %e, op = what, retry_in = ?backoff, "Redis unavailable, retrying");
                }
                Err(e) => {
                    // Not transient (e.g. a script error): retrying the same input cannot help,
                    // but the message must not be lost either; keep trying slowly so an operator
                    // can fix Redis, and say so loudly.
                    warn!(error = %e, op = what, "Redis refused the operation; will retry");
                    backoff = backoff.max(Duration::from_secs(1));
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}
