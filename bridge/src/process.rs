//! Handling one incoming message: validate, decide, answer, acknowledge.
//!
//! The order matters for "exactly once": the decision is stored (atomically, with its effects) and
//! published before the message is acknowledged. A crash in between means the broker redelivers
//! the message, and the stored decision is published again without a second charge.
//!
//! No message can stall a shard: Redis connection failures are retried (Redis down must not lose
//! taps), but anything else the bridge cannot handle (a payload or topic it refuses, a stored
//! record or script result it cannot read, a Redis error that retrying cannot fix) is answered
//! `rejected`, counted, logged once and acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tapgate_protocol::rules::Input;
use tapgate_protocol::text::escape_untrusted;
use tapgate_protocol::topic::MessageKind;
use tapgate_protocol::validate::{
    parse_button, parse_button_stamped, parse_heartbeat_clock, parse_status_payload, parse_tap,
    parse_tap_stamped,
};
use tapgate_protocol::{
    Catalogue, Decision, DeviceId, DeviceKind, Event, EventKind, InboundTopic, MessageId, Notice,
    Outcome, RejectReason, Rejection, Stamp, Topics, MAX_PAYLOAD_BYTES,
};
use tapgate_runtime::clock::Clock;
use tapgate_runtime::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::fares::Fares;
use crate::inbound::{Inbound, MAX_TOPIC_BYTES};
use crate::limit::Rate;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::refusals::Tally;
use crate::store::{Answer, Decided, Message, Request, Store, StoreError};

/// Everything a worker needs to handle messages. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Processor {
    pub store: Store,
    /// Decisions, events and acknowledgements go out through it, in that order.
    pub out: Outbox,
    pub topics: Topics,
    pub metrics: Metrics,
    /// Longest pause between Redis retries.
    pub max_backoff: Duration,
    /// Refuse taps and buttons without `time` and `mode` (after the transition).
    pub require_stamp: bool,
    /// The bridge's time: decisions, presence and refusals are stamped with it.
    pub clock: Arc<dyn Clock>,
    /// The fare catalogue: a button's product is looked up in it, a terminal's first answer
    /// lists it.
    pub fares: Fares,
    /// Stops retries at shutdown (the message is then left unacknowledged for redelivery).
    pub shutdown: CancellationToken,
    /// The per-device rate limit (the shards apply it; quoted in a `rate_limited` answer).
    pub device_rate: Rate,
    /// Refusals for that limit, counted here and written to Redis once a second.
    pub refusals: Tally,
}

/// A tap or button to decide.
struct ToDecide {
    topic: InboundTopic,
    id: MessageId,
    input: Input,
    stamp: Option<Stamp>,
    /// A gate's offline entry or retap: the waiting tap it replaces.
    replaces: Option<MessageId>,
}

/// What a message turned out to be.
enum Parsed {
    /// Decide it.
    Decide(ToDecide),
    /// Status (online flag) or heartbeat (uptime, device clock).
    Presence(InboundTopic, Option<bool>, Option<u64>, Option<u64>),
    Refuse(Option<(DeviceKind, DeviceId)>, Rejection),
    Ignore,
}

/// Why a store operation gave up.
enum GaveUp {
    /// Shutting down: leave the message unacknowledged for redelivery.
    Shutdown,
    /// Retrying cannot help.
    Permanent(StoreError),
}

fn too_large(len: usize) -> Rejection {
    Rejection::new(
        RejectReason::PayloadTooLarge,
        format!("payload is {len} bytes, at most {MAX_PAYLOAD_BYTES} allowed"),
    )
}

/// Why the rules refused a message for its stamp (`reason`), for the device's log and the
/// operator.
fn unusable_time(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::TimeInFuture => {
            "the message's time is too far ahead of the bridge's clock; check the device's clock"
        }
        RejectReason::OfflineNotAllowed => {
            "only a gate's tap can be an offline entry; a terminal always waits for its answer"
        }
        RejectReason::TimeTooOld => {
            "the offline entry happened longer ago than the bridge accepts (--max-offline-age); check the device's clock"
        }
        _ => "the message's time cannot be used",
    }
}

/// The refusal of a tap or button without a stamp, once stamps are required.
fn unstamped(id: MessageId) -> Rejection {
    Rejection::new(
        RejectReason::MissingField,
        "missing fields \"time\" and \"mode\": this bridge requires every tap and button to say when it happened",
    )
    .with_id(Some(id))
}

/// What `inbound` is: a tap or button to decide, a device's presence, a message to refuse (and
/// whose), or one to ignore. Only the message is read: nothing is asked of Redis.
fn parse(topics: &Topics, inbound: &Inbound, require_stamp: bool, fares: &Catalogue) -> Parsed {
    let publish = &inbound.publish;
    if inbound.topic_len > MAX_TOPIC_BYTES {
        return Parsed::Refuse(
            None,
            Rejection::new(
                RejectReason::BadTopic,
                format!(
                    "topic is {} bytes, at most {MAX_TOPIC_BYTES} allowed",
                    inbound.topic_len
                ),
            ),
        );
    }
    let topic = match topics.parse(&publish.topic) {
        Ok(t) => t,
        Err(e) => {
            let device = e.device().map(|(k, d)| (k, d.clone()));
            return Parsed::Refuse(device, Rejection::from(&e));
        }
    };
    let payload: &[u8] = &publish.payload;
    let here = Some((topic.kind, topic.device.clone()));
    let decide = |to_decide: Result<ToDecide, Rejection>| match to_decide {
        Ok(d) => Parsed::Decide(d),
        Err(r) => Parsed::Refuse(here.clone(), r),
    };
    match topic.message {
        MessageKind::Tap | MessageKind::Button if publish.retain => {
            Parsed::Refuse(here, retained(topic.message, payload))
        }
        _ if inbound.payload_len > MAX_PAYLOAD_BYTES => {
            Parsed::Refuse(here, too_large(inbound.payload_len))
        }
        MessageKind::Tap => decide(tap(topic, payload, require_stamp)),
        MessageKind::Button => decide(button(topic, payload, require_stamp, fares)),
        // A retained status cleared with an empty payload: nothing to record.
        MessageKind::Status if payload.is_empty() => Parsed::Ignore,
        MessageKind::Status => match parse_status_payload(payload) {
            Ok(online) => Parsed::Presence(topic, Some(online), None, None),
            Err(r) => Parsed::Refuse(here, r),
        },
        MessageKind::Heartbeat => match parse_heartbeat_clock(payload) {
            Ok((h, clock)) => Parsed::Presence(topic, None, Some(h.uptime_s), clock),
            Err(r) => Parsed::Refuse(here, r),
        },
        MessageKind::Decision => Parsed::Ignore,
    }
}

/// The refusal of a retained tap or button (`kind`), with the message's id when it has a
/// readable one.
fn retained(kind: MessageKind, payload: &[u8]) -> Rejection {
    let id = match kind {
        MessageKind::Tap => parse_tap(payload).ok().map(|t| t.id),
        _ => parse_button(payload).ok().map(|b| b.id),
    };
    Rejection::new(
        RejectReason::Retained,
        "taps and button presses must not be retained",
    )
    .with_id(id)
}

/// A gate's or terminal's tap, on `topic`, to decide; or why it is refused.
fn tap(topic: InboundTopic, payload: &[u8], require_stamp: bool) -> Result<ToDecide, Rejection> {
    let (tap, stamp) = parse_tap_stamped(payload)?;
    if stamp.is_none() && require_stamp {
        return Err(unstamped(tap.id));
    }
    let input = match topic.kind {
        DeviceKind::Gate => Input::GateTap(tap.card),
        DeviceKind::Terminal if tap.replaces.is_some() => {
            return Err(Rejection::new(
                RejectReason::UnknownField,
                "field \"replaces\" names the waiting tap a gate's offline entry or retap \
                 replaces; a terminal's tap has none",
            )
            .with_id(Some(tap.id)));
        }
        DeviceKind::Terminal => Input::TerminalTap(tap.card),
    };
    Ok(ToDecide {
        topic,
        id: tap.id,
        input,
        stamp,
        replaces: tap.replaces,
    })
}

/// A terminal's button, on `topic`, to decide: the product of the fare catalogue `fares` it
/// names; or why it is refused.
fn button(
    topic: InboundTopic,
    payload: &[u8],
    require_stamp: bool,
    fares: &Catalogue,
) -> Result<ToDecide, Rejection> {
    let (b, stamp) = parse_button_stamped(payload)?;
    if stamp.is_none() && require_stamp {
        return Err(unstamped(b.id));
    }
    let Some(product) = fares.product(b.pass) else {
        return Err(Rejection::new(
            RejectReason::UnknownPassType,
            format!(
                "no product {} in the fare catalogue; on sale: {}",
                b.pass,
                fares.ids()
            ),
        )
        .with_id(Some(b.id)));
    };
    Ok(ToDecide {
        topic,
        id: b.id,
        input: Input::Button(product.terms),
        stamp,
        replaces: None,
    })
}

impl Processor {
    /// Handles one publish to completion (or until shutdown), then acknowledges it.
    pub(crate) async fn handle(&self, inbound: Inbound) {
        let received = Instant::now();
        let fares = self.fares.current();
        let done = match parse(&self.topics, &inbound, self.require_stamp, &fares) {
            Parsed::Decide(m) => {
                self.metrics.message(m.topic.message);
                if m.stamp.is_none() {
                    self.metrics.unstamped();
                }
                self.decide(&m, &fares, received).await
            }
            Parsed::Presence(topic, online, uptime, clock) => {
                self.metrics.message(topic.message);
                let now = self.clock.now_ms();
                let mut stored = self
                    .retry("presence", || {
                        self.store
                            .presence(topic.kind, &topic.device, online, uptime, now)
                    })
                    .await;
                if let (Ok(()), Some(clock)) = (&stored, clock) {
                    stored = match self
                        .retry("clock", || {
                            self.store.clock(topic.kind, &topic.device, clock, now)
                        })
                        .await
                    {
                        Ok(notice) => {
                            self.clock_checked(&topic, clock, now, notice).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                }
                match stored {
                    Ok(()) => true,
                    Err(GaveUp::Shutdown) => false,
                    Err(GaveUp::Permanent(e)) => {
                        let here = Some((topic.kind, topic.device.clone()));
                        let raw = &inbound.publish.topic;
                        self.record_refusal(raw, here, internal(&e, None), received, Some(&e))
                            .await
                    }
                }
            }
            Parsed::Refuse(device, rejection) => {
                self.refuse(&inbound, device, rejection, received).await
            }
            Parsed::Ignore => true,
        };
        if done && !self.out.ack(&inbound.publish, inbound.session).await {
            debug!("Ack not sent (shutting down)");
        }
        self.metrics.inflight_add(-1);
    }

    /// Refuses a message its device's rate limit does not admit: counted, acknowledged, and
    /// answered `rate_limited` only if `answer` (the first refusal of the device in a second),
    /// with no Redis round trip and no event. A flood costs the bridge one counter increment and
    /// one acknowledgement per message, and the device one answer a second.
    pub(crate) async fn refuse_rate_limited(&self, inbound: Inbound, answer: bool) {
        let received = Instant::now();
        self.metrics.rate_limited();
        self.refusals.add(
            self.topics
                .parse(&inbound.publish.topic)
                .ok()
                .map(|t| t.device),
        );
        if answer {
            self.answer_rate_limited(&inbound, received).await;
        }
        if !self.out.ack(&inbound.publish, inbound.session).await {
            debug!("Ack not sent (shutting down)");
        }
        self.metrics.inflight_add(-1);
    }

    /// Logs the first refusal of a device in a second and answers it if it was a tap or button
    /// (with its id when the payload has a readable one); a heartbeat is not answered.
    async fn answer_rate_limited(&self, inbound: &Inbound, received: Instant) {
        let publish = &inbound.publish;
        let Ok(topic) = self.topics.parse(&publish.topic) else {
            let shown = escape_untrusted(&publish.topic, 200);
            warn!(topic = ?shown, "Over the per-device rate limit; refusing (logged once a second)");
            return;
        };
        warn!(
            device = %topic.device,
            kind = %topic.kind,
            message = %topic.message,
            per_second = self.device_rate.per_second,
            burst = self.device_rate.burst,
            "Device over its rate limit; refusing its messages (answered and logged once a second)"
        );
        let id = match topic.message {
            MessageKind::Tap => parse_tap(&publish.payload).ok().map(|t| t.id),
            MessageKind::Button => parse_button(&publish.payload).ok().map(|b| b.id),
            _ => return,
        };
        let detail = format!(
            "this device sent more than {} messages a second ({} at once); nothing was decided \
             or charged: try again in a moment",
            self.device_rate.per_second, self.device_rate.burst
        );
        let decision = Decision::new(
            id,
            Outcome::Rejected {
                reason: RejectReason::RateLimited,
                detail,
            },
        );
        self.answer(topic.kind, &topic.device, &decision, received)
            .await;
    }

    /// After a heartbeat's clock was measured: logs, counts and publishes a change of the
    /// device's clock flag.
    async fn clock_checked(
        &self,
        topic: &InboundTopic,
        clock: u64,
        now: u64,
        notice: Option<Notice>,
    ) {
        let Some(notice) = notice else {
            return;
        };
        let flagged = notice.reason.as_deref() == Some("clock_off");
        self.metrics.clock_flag(flagged);
        let skew_ms = i128::from(clock) - i128::from(now);
        if flagged {
            warn!(device = %topic.device, kind = %topic.kind, skew_ms, "Device clock is off; correcting its stamps by the measured skew");
        } else {
            info!(device = %topic.device, kind = %topic.kind, skew_ms, "Device clock is back within the allowed skew");
        }
        self.publish_event(&notice);
    }

    async fn decide(&self, m: &ToDecide, fares: &Catalogue, received: Instant) -> bool {
        let (topic, id, input, stamp) = (&m.topic, &m.id, &m.input, m.stamp);
        let replaces = m.replaces.as_ref();
        // Each attempt is decided at its own time: a call whose reply was lost may have been
        // carried out, and its seen record lives by Redis's clock from then. A retry that keeps
        // the first attempt's time would still be inside the decision window after that record
        // has gone, and charge again; at its own time it is `stale` and answered from the card's
        // history instead.
        let attempt = || {
            let now_ms = self.clock.now_ms();
            let message = Message {
                kind: topic.kind,
                device: &topic.device,
                id,
                input,
                stamp,
                replaces,
            };
            let req = Request::new(message, now_ms, fares);
            async move { self.store.decide_under(req, fares).await }
        };
        let (rejection, error) = match self.retry("decide", attempt).await {
            Ok(Answer::Decided(decided)) => {
                self.decided(topic, id, *decided, fares, received).await;
                return true;
            }
            Err(GaveUp::Shutdown) => return false,
            Ok(Answer::IdReused) => {
                let why =
                    "this id was already used for a different message; its first decision stands";
                (Rejection::new(RejectReason::IdReused, why), None)
            }
            Ok(Answer::Refused(reason)) => (Rejection::new(reason, unusable_time(reason)), None),
            Ok(Answer::FareDayAt(at)) => {
                // decide_under asks again with that fare day; it never answers this.
                let e = StoreError::BadResult(format!("fare day of {at} asked for twice"));
                (internal(&e, None), Some(e))
            }
            Err(GaveUp::Permanent(e)) => (internal(&e, None), Some(e)),
        };
        let here = Some((topic.kind, topic.device.clone()));
        let rejection = rejection.with_id(Some(id.clone()));
        self.refuse_decided(topic, here, rejection, received, error.as_ref())
            .await
    }

    /// A tap or button decided (or its decision replayed): counted, answered, and its events
    /// and notices published. A `select_pass` offers the catalogue in force.
    async fn decided(
        &self,
        topic: &InboundTopic,
        id: &MessageId,
        mut decided: Decided,
        fares: &Catalogue,
        received: Instant,
    ) {
        if decided.replayed {
            self.metrics.replay();
        }
        if let Outcome::SelectPass { products } = &mut decided.decision.outcome {
            *products = fares.offers();
        }
        let outcome = decided.decision.outcome.name();
        // One line per decision only at DEBUG; INFO gets a summary a minute (see `summary`).
        debug!(
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
            self.publish_event(event);
        }
        for notice in &decided.notices {
            self.publish_event(notice);
        }
    }

    /// [`Processor::refuse`] for a message whose topic was valid.
    async fn refuse_decided(
        &self,
        topic: &InboundTopic,
        device: Option<(DeviceKind, DeviceId)>,
        rejection: Rejection,
        received: Instant,
        cause: Option<&StoreError>,
    ) -> bool {
        let raw = self.topics.device(topic.kind, &topic.device, topic.message);
        self.record_refusal(&raw, device, rejection, received, cause)
            .await
    }

    async fn refuse(
        &self,
        inbound: &Inbound,
        device: Option<(DeviceKind, DeviceId)>,
        rejection: Rejection,
        received: Instant,
    ) -> bool {
        self.record_refusal(&inbound.publish.topic, device, rejection, received, None)
            .await
    }

    /// Counts, logs (once; with the store error that caused it, if any), records and answers a
    /// refusal. Returns false only at shutdown (the message is then left for redelivery); a
    /// refusal that cannot be recorded is still answered.
    async fn record_refusal(
        &self,
        raw_topic: &str,
        device: Option<(DeviceKind, DeviceId)>,
        rejection: Rejection,
        received: Instant,
        cause: Option<&StoreError>,
    ) -> bool {
        self.metrics.rejected(rejection.reason);
        let shown_topic = escape_untrusted(raw_topic, 200);
        let id = rejection.id.as_ref().map(MessageId::as_str);
        match cause {
            None => warn!(
                topic = ?shown_topic,
                reason = %rejection.reason,
                detail = ?rejection.detail,
                id = ?id,
                "Refused device message"
            ),
            Some(e) => error!(
                topic = ?shown_topic,
                reason = %rejection.reason,
                id = ?id,
                error = %e,
                "Cannot handle device message; refused it"
            ),
        }
        let mut event = Event::new(EventKind::Rejected, self.clock.now_ms());
        event.device_kind = device.as_ref().map(|(k, _)| *k);
        event.device = device.as_ref().map(|(_, d)| d.clone());
        event.id = rejection.id.clone();
        event.reason = Some(rejection.reason.as_str().to_owned());
        event.detail = Some(rejection.detail.clone());
        let reason = rejection.reason.as_str();
        let recorded = match self
            .retry("reject", || self.store.reject(event.clone(), reason))
            .await
        {
            Ok(event) => Some(event),
            Err(GaveUp::Shutdown) => return false,
            Err(GaveUp::Permanent(e)) => {
                error!(error = %e, reason, "Cannot record a refusal; answering it anyway");
                None
            }
        };
        if let Some((kind, device)) = &device {
            let decision = Decision::new(
                rejection.id,
                Outcome::Rejected {
                    reason: rejection.reason,
                    detail: rejection.detail,
                },
            );
            self.answer(*kind, device, &decision, received).await;
        }
        if let Some(event) = recorded {
            self.publish_event(&event);
        }
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
        if !self.out.decision(topic, decision.to_json().into()).await {
            debug!(%device, "Decision not sent (shutting down)");
        }
        self.metrics
            .decision(kind, &decision.outcome, received.elapsed());
    }

    /// Publishes an event or notice (at QoS 0, see [`crate::mqtt`]); the Redis stream already
    /// holds it. Only pass events carry a pass segment in their topic.
    fn publish_event(&self, event: &Event) {
        let topic = self.topics.event(event.event, event.pass_type());
        self.out.event(topic, event.to_json().into());
    }

    /// Runs `op` until it succeeds, retrying connection failures with backoff (Redis down must
    /// not lose taps). Gives up at shutdown, or at once on an error retrying cannot fix.
    async fn retry<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T, GaveUp>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(50), self.max_backoff);
        loop {
            let delay = match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    self.metrics.redis_reconnect();
                    let delay = backoff.next_delay();
                    warn!(error = %e, op = what, retry_in = ?delay, "Redis unavailable, retrying");
                    delay
                }
                Err(e) => return Err(GaveUp::Permanent(e)),
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(GaveUp::Shutdown),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// The refusal for a message the bridge could not handle.
fn internal(e: &StoreError, id: Option<MessageId>) -> Rejection {
    let why = match e {
        StoreError::BadResult(_) => "its stored record or result cannot be read",
        StoreError::Full(_) => "Redis is full (its memory limit is reached) and stored nothing",
        _ => "Redis refused the operation",
    };
    Rejection::new(
        RejectReason::InternalError,
        format!("the bridge could not decide this message: {why}; an operator has been alerted"),
    )
    .with_id(id)
}

#[cfg(test)]
mod tests {
    use rumqttc::{Publish, QoS};
    use tapgate_protocol::ProductId;

    use super::*;

    const STAMP: &str = r#""time":1700000000000,"mode":"online""#;

    fn parsed(topic: &str, payload: &str, retain: bool, require_stamp: bool) -> Parsed {
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload.as_bytes().to_vec());
        publish.retain = retain;
        let topics = Topics::default();
        let fares = Catalogue::builtin(7_200_000);
        parse(&topics, &Inbound::new(publish, 0), require_stamp, &fares)
    }

    /// The reason and id of a refusal, and whose message it was.
    fn refused(p: Parsed) -> (RejectReason, Option<String>, Option<String>) {
        match p {
            Parsed::Refuse(device, r) => (
                r.reason,
                r.id.map(|id| id.as_str().to_owned()),
                device.map(|(_, d)| d.as_str().to_owned()),
            ),
            _ => panic!("not refused"),
        }
    }

    fn decided(p: Parsed) -> ToDecide {
        match p {
            Parsed::Decide(d) => d,
            _ => panic!("not decided"),
        }
    }

    #[test]
    fn taps_are_decided_by_the_kind_of_device_that_sent_them() {
        let gate = decided(parsed(
            "tapgate/gate/g1/tap",
            &format!(r#"{{"id":"m1","card":"C1",{STAMP},"replaces":"m0"}}"#),
            false,
            true,
        ));
        assert!(matches!(gate.input, Input::GateTap(ref c) if c.as_str() == "C1"));
        assert_eq!(gate.replaces.as_ref().map(MessageId::as_str), Some("m0"));
        assert!(gate.stamp.is_some());
        let terminal = decided(parsed(
            "tapgate/terminal/t1/tap",
            r#"{"id":"m2","card":"C2"}"#,
            false,
            false,
        ));
        assert!(matches!(terminal.input, Input::TerminalTap(_)));
        assert_eq!(terminal.stamp, None);
    }

    #[test]
    fn a_button_is_decided_as_the_product_it_names() {
        let b = decided(parsed(
            "tapgate/terminal/t1/button",
            &format!(r#"{{"id":"b1","pass":"TEN_TRIP",{STAMP}}}"#),
            false,
            true,
        ));
        assert!(matches!(b.input, Input::Button(t) if t.product == ProductId::TEN_TRIP));
        let unknown = refused(parsed(
            "tapgate/terminal/t1/button",
            r#"{"id":"b2","pass":"DAY"}"#,
            false,
            false,
        ));
        assert_eq!(
            unknown,
            (
                RejectReason::UnknownPassType,
                Some("b2".into()),
                Some("t1".into())
            )
        );
    }

    #[test]
    fn each_refusal_names_its_reason_and_what_it_could_read() {
        let tap = r#"{"id":"m1","card":"C1"}"#;
        let cases = [
            // topic, payload, retained, stamps required → reason, id, device
            (
                "tapgate/gate/g1/tap",
                tap,
                true,
                false,
                (RejectReason::Retained, Some("m1"), Some("g1")),
            ),
            (
                "tapgate/gate/g1/tap",
                tap,
                false,
                true,
                (RejectReason::MissingField, Some("m1"), Some("g1")),
            ),
            (
                "tapgate/terminal/t1/tap",
                r#"{"id":"m3","card":"C1","replaces":"m0"}"#,
                false,
                false,
                (RejectReason::UnknownField, Some("m3"), Some("t1")),
            ),
            (
                "tapgate/gate/g1/status",
                "maybe",
                false,
                false,
                (RejectReason::MalformedJson, None, Some("g1")),
            ),
        ];
        for (topic, payload, retain, require, (reason, id, device)) in cases {
            let got = refused(parsed(topic, payload, retain, require));
            let want = (reason, id.map(String::from), device.map(String::from));
            assert_eq!(got, want, "{topic} {payload}");
        }
        let long = format!("tapgate/gate/{}/tap", "g".repeat(MAX_TOPIC_BYTES));
        assert_eq!(
            refused(parsed(&long, tap, false, false)).0,
            RejectReason::BadTopic
        );
        let big = format!(
            r#"{{"id":"m1","card":"{}"}}"#,
            "1".repeat(MAX_PAYLOAD_BYTES)
        );
        assert_eq!(
            refused(parsed("tapgate/gate/g1/tap", &big, false, false)).0,
            RejectReason::PayloadTooLarge
        );
    }

    #[test]
    fn presence_is_recorded_a_cleared_status_ignored() {
        assert!(matches!(
            parsed("tapgate/gate/g1/status", "online", true, true),
            Parsed::Presence(_, Some(true), None, None)
        ));
        assert!(matches!(
            parsed(
                "tapgate/gate/g1/heartbeat",
                r#"{"uptime_s":5,"clock_ms":7}"#,
                false,
                true
            ),
            Parsed::Presence(_, None, Some(5), Some(7))
        ));
        assert!(matches!(
            parsed("tapgate/gate/g1/status", "", true, true),
            Parsed::Ignore
        ));
        // The bridge's own answers are not a device's to publish.
        let (reason, _, device) = refused(parsed("tapgate/gate/g1/decision", "{}", false, true));
        assert_eq!(
            (reason, device.as_deref()),
            (RejectReason::UnsupportedMessage, Some("g1"))
        );
    }
}
