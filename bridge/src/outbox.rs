//! Everything the bridge sends over MQTT (decisions, events, acknowledgements), queued in one
//! line and written in batches.
//!
//! Workers put what a message produced in the line, in order: its decision (QoS 1), its events
//! (QoS 0), then its acknowledgement. The task that owns the connection ([`crate::connection::drive`])
//! takes whatever is in the line whenever it wakes and writes all of it with one flush: under
//! load, the answers to many taps leave in one write, where a publish through rumqttc's client
//! costs a write of its own (two or more per tap). Because the line keeps each message's order, a
//! decision is always written before its message's acknowledgement: a crash in between leaves
//! the message unacknowledged, and the broker redelivers it.
//!
//! Flow control is rumqttc's: a QoS 1 publish is written only while fewer than the connection's
//! in-flight limit are unacknowledged by the broker (and no packet id collides); until then it,
//! and everything behind it, waits.
//!
//! An acknowledgement belongs to the connection its message came in on. One queued before a
//! reconnect is dropped, as rumqttc's own client does: the broker redelivers the message on the
//! new connection, the bridge answers it again from its stored decision and acknowledges it
//! there.
//!
//! Memory: decisions and acknowledgements wait for room in the line (at most [`LINE`] items, and
//! at most [`BATCH`] more taken from it), and there are at most as many as messages in hand,
//! which the dispatcher bounds. Events never
//! wait: one that finds the line full is dropped (QoS 0 promises nothing, and every event is in
//! the Redis stream).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rumqttc::{MqttState, Publish, QoS, Request};
use tokio::sync::mpsc;
use tracing::debug;

/// Items the line holds.
pub(crate) const LINE: usize = 8192;

/// Most items taken from the line per wake-up.
pub(crate) const BATCH: usize = 1024;

/// One item to send.
#[derive(Debug)]
pub(crate) enum Out {
    /// A decision (QoS 1) or an event (QoS 0).
    Publish(Publish),
    /// The acknowledgement of an incoming QoS 1 message, received on connection `session`.
    Ack { pkid: u16, session: u64 },
}

/// The workers' end of the line. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Out>,
}

/// The connection task's end of the line.
#[derive(Debug)]
pub(crate) struct Line {
    rx: mpsc::Receiver<Out>,
    /// Taken from the line, not yet written (waiting for the broker's in-flight window).
    held: VecDeque<Out>,
    /// The connection now in use; counts reconnections.
    session: Arc<AtomicU64>,
}

/// A line: the end workers write to, and the end the connection task reads.
pub(crate) fn line() -> (Outbox, Line) {
    let (tx, rx) = mpsc::channel(LINE);
    let line = Line {
        rx,
        held: VecDeque::new(),
        session: Arc::new(AtomicU64::new(0)),
    };
    (Outbox { tx }, line)
}

impl Outbox {
    /// Queues a decision, at QoS 1; waits for room in the line. Returns false if the connection
    /// task has stopped.
    pub(crate) async fn decision(&self, topic: String, payload: Vec<u8>) -> bool {
        let publish = Publish::new(topic, QoS::AtLeastOnce, payload);
        self.tx.send(Out::Publish(publish)).await.is_ok()
    }

    /// Queues an event, at QoS 0; dropped (logged at DEBUG) if the line is full.
    pub(crate) fn event(&self, topic: String, payload: Vec<u8>) {
        let publish = Publish::new(topic, QoS::AtMostOnce, payload);
        if let Err(e) = self.tx.try_send(Out::Publish(publish)) {
            debug!(error = %e, "Event not published over MQTT (in the stream only)");
        }
    }

    /// Queues the acknowledgement of `publish`, received on connection `session` (nothing for
    /// QoS 0). Returns false if the connection task has stopped.
    pub(crate) async fn ack(&self, publish: &Publish, session: u64) -> bool {
        if publish.qos == QoS::AtMostOnce {
            return true;
        }
        let ack = Out::Ack {
            pkid: publish.pkid,
            session,
        };
        self.tx.send(ack).await.is_ok()
    }
}

impl Line {
    /// The connection now in use (stamped on each incoming message).
    pub(crate) fn session(&self) -> u64 {
        self.session.load(Ordering::Relaxed)
    }

    /// Starts counting a new connection: acknowledgements queued before it are dropped.
    pub(crate) fn new_session(&mut self) {
        self.session.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether items wait in hand for the broker's in-flight window.
    pub(crate) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whether nothing is in hand or in the line.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.rx.is_empty()
    }

    /// Waits until the line has items and takes them into hand (cancel-safe). Returns false once
    /// every worker's end is gone and the line is empty.
    pub(crate) async fn fill(&mut self) -> bool {
        let mut batch = Vec::with_capacity(64);
        if self.rx.recv_many(&mut batch, BATCH).await == 0 {
            return false;
        }
        self.held.extend(batch);
        true
    }

    /// Takes what is in the line now into hand, without waiting; nothing while items in hand
    /// wait for the in-flight window (so at most [`BATCH`] are in hand).
    pub(crate) fn take_ready(&mut self) {
        if self.holding() {
            return;
        }
        for _ in 0..BATCH {
            match self.rx.try_recv() {
                Ok(item) => self.held.push_back(item),
                Err(_) => break,
            }
        }
    }

    /// The packets to write now, in order, through `state` (which numbers QoS 1 publishes and
    /// tracks them until the broker acknowledges them): everything in hand up to the first QoS 1
    /// publish that must wait for the in-flight window (`max_inflight`), minus acknowledgements
    /// from an older connection.
    pub(crate) fn writable(
        &mut self,
        state: &mut MqttState,
        max_inflight: u16,
    ) -> Result<Vec<rumqttc::Packet>, rumqttc::StateError> {
        let session = self.session();
        let mut packets = Vec::with_capacity(self.held.len());
        while let Some(item) = self.held.front() {
            if let Out::Publish(p) = item {
                let window_full = state.inflight() >= max_inflight || state.collision.is_some();
                if p.qos != QoS::AtMostOnce && window_full {
                    break;
                }
            }
            let request = match self.held.pop_front() {
                Some(Out::Publish(p)) => Request::Publish(p),
                Some(Out::Ack { pkid, session: s }) if s == session => {
                    Request::PubAck(rumqttc::PubAck::new(pkid))
                }
                Some(Out::Ack { .. }) => continue,
                None => break,
            };
            if let Some(packet) = state.handle_outgoing_packet(request)? {
                packets.push(packet);
            }
        }
        // The state's record of outgoing packets is not read; keep it from growing.
        state
            .events
            .retain(|e| !matches!(e, rumqttc::Event::Outgoing(_)));
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::Packet;

    fn incoming(pkid: u16) -> Publish {
        let mut p = Publish::new("tapgate/gate/g1/tap", QoS::AtLeastOnce, "{}");
        p.pkid = pkid;
        p
    }

    async fn queue(out: &Outbox, n: usize, session: u64) {
        for i in 0..n {
            assert!(out.decision(format!("d/{i}"), b"{}".to_vec()).await);
            out.event(format!("e/{i}"), b"{}".to_vec());
            assert!(out.ack(&incoming(i as u16 + 1), session).await);
        }
    }

    fn names(packets: &[Packet]) -> Vec<String> {
        packets
            .iter()
            .map(|p| match p {
                Packet::Publish(p) => format!("{}:{}", p.topic, p.qos as u8),
                Packet::PubAck(a) => format!("ack:{}", a.pkid),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn each_message_keeps_its_order_in_one_batch() {
        let (out, mut line) = line();
        queue(&out, 2, 0).await;
        line.take_ready();
        let mut state = MqttState::new(10, true);
        let packets = line.writable(&mut state, 10).expect("writable");
        assert_eq!(
            names(&packets),
            ["d/0:1", "e/0:0", "ack:1", "d/1:1", "e/1:0", "ack:2"]
        );
        assert!(state.events.is_empty());
        assert!(line.is_empty());
    }

    #[tokio::test]
    async fn a_full_window_holds_the_decision_and_what_follows() {
        let (out, mut line) = line();
        queue(&out, 3, 0).await;
        line.take_ready();
        let mut state = MqttState::new(2, true);
        let packets = line.writable(&mut state, 2).expect("writable");
        // Two decisions fill the window: the third, its event and its ack wait.
        assert_eq!(
            names(&packets),
            ["d/0:1", "e/0:0", "ack:1", "d/1:1", "e/1:0", "ack:2"]
        );
        assert!(line.holding());
        assert!(line.writable(&mut state, 2).expect("writable").is_empty());
        // The broker acknowledges the first decision: the rest goes.
        let first = rumqttc::Incoming::PubAck(rumqttc::PubAck::new(1));
        state.handle_incoming_packet(first).expect("puback");
        let packets = line.writable(&mut state, 2).expect("writable");
        assert_eq!(names(&packets), ["d/2:1", "e/2:0", "ack:3"]);
        assert!(!line.holding());
    }

    #[tokio::test]
    async fn acks_from_an_older_connection_are_dropped() {
        let (out, mut line) = line();
        queue(&out, 1, line.session()).await;
        line.new_session();
        queue(&out, 1, line.session()).await;
        line.take_ready();
        let mut state = MqttState::new(10, true);
        let packets = line.writable(&mut state, 10).expect("writable");
        assert_eq!(
            names(&packets),
            ["d/0:1", "e/0:0", "d/0:1", "e/0:0", "ack:1"]
        );
    }

    #[tokio::test]
    async fn events_never_wait_for_room() {
        let (out, mut line) = line();
        for i in 0..LINE + 10 {
            out.event(format!("e/{i}"), Vec::new());
        }
        let mut taken = 0;
        while line.fill().await {
            taken += line.held.len();
            line.held.clear();
            if line.rx.is_empty() {
                break;
            }
        }
        assert_eq!(taken, LINE);
    }
}
