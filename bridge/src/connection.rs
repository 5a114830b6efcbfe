//! The task that owns the MQTT connection once it is up: it reads incoming packets and hands
//! each publish to the dispatcher, writes what the workers queued in the [`crate::outbox`] in
//! batches, pings, and reconnects with exponential backoff.
//!
//! It never waits for a worker (see [`crate::dispatch`]): it waits only for the network, the
//! outbox and the keep-alive timer, each of which it can stop waiting for without losing
//! anything. rumqttc's `EventLoop::poll` is used only to (re)connect; once connected, the task
//! reads and writes through the event loop's own network and state (its public fields), so that
//! packet ids, the in-flight window and retransmission after a reconnect stay rumqttc's. A
//! publish through rumqttc's client would be written and flushed on its own; here everything
//! ready at a wake-up goes out in one flush.
//!
//! The persistent session (clean session off) means the broker keeps and redelivers what arrived
//! while the bridge was away; decisions it had not acknowledged are sent again after the
//! reconnect.
//!
//! In a shared group with Sentinel, the task unsubscribes while the bridge cannot reach a majority
//! of the sentinels and subscribes again when it can (see `watch_sentinels` in the crate root), so
//! the broker hands the group's messages to the other bridges meanwhile.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rumqttc::{
    ConnectionError, Event, EventLoop, Packet, QoS, Request, StateError, Subscribe,
    SubscribeFilter, SubscribeReasonCode, Unsubscribe,
};
use tapgate_runtime::Backoff;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::outbox::Line;

/// How long one write (a batch) or flush may take before the connection counts as broken.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most incoming packets handled before the next batch is written.
const READ_BATCH: usize = 64;

/// How long the task keeps writing at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("writing to the broker took longer than {WRITE_TIMEOUT:?}")]
    WriteTimeout,
    #[error("no answer to the previous keep-alive ping")]
    NoPingAnswer,
}

/// The future's output if it is ready without waiting.
fn ready_now<F: Future>(f: F) -> Option<F::Output> {
    let f = pin!(f);
    match f.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Flushes the event loop's network (a macro: rumqttc does not export the network's type).
macro_rules! flush {
    ($network:expr) => {
        match timeout(WRITE_TIMEOUT, $network.flush()).await {
            Ok(r) => r.map_err(Broken::from),
            Err(_) => Err(Broken::WriteTimeout),
        }
    };
}

/// Everything the task needs besides the event loop.
pub(crate) struct Drive {
    pub filters: Vec<String>,
    pub dispatcher: Dispatcher,
    pub line: Line,
    pub metrics: Metrics,
    pub max_backoff: Duration,
    /// Whether to be subscribed (false: leave the shared group while the bridge cannot decide);
    /// `None`: always.
    pub in_group: Option<watch::Receiver<bool>>,
}

impl Drive {
    /// Whether the bridge should be subscribed now.
    fn wants_group(&self) -> bool {
        self.in_group.as_ref().is_none_or(|rx| *rx.borrow())
    }
}

/// The next change of `in_group`: whether to be subscribed. Never ends without one.
async fn group_changed(in_group: &mut Option<watch::Receiver<bool>>) -> bool {
    if let Some(rx) = in_group {
        if rx.changed().await.is_ok() {
            return *rx.borrow_and_update();
        }
    }
    std::future::pending().await
}

/// Runs the connection until `stop` is cancelled (the event loop is connected and subscribed
/// when this starts), then writes what the workers left in the outbox and disconnects.
pub(crate) async fn drive(mut eventloop: EventLoop, mut drive: Drive, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(100), drive.max_backoff);
    loop {
        if eventloop.network.is_some() {
            match connected(&mut eventloop, &mut drive, &stop).await {
                Ok(()) => break,
                Err(e) => {
                    // Unacknowledged decisions move to `pending`, sent after the reconnect.
                    eventloop.clean();
                    drive.metrics.mqtt_reconnect();
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "MQTT connection lost");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
            continue;
        }
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                drive.line.new_session();
                info!(
                    session_present = ack.session_present,
                    "Reconnected to MQTT broker"
                );
                let filters: &[String] = if drive.wants_group() {
                    &drive.filters
                } else {
                    &[]
                };
                if let Err(e) = resume(&mut eventloop, filters).await {
                    warn!(error = %e, "Cannot resubscribe");
                    eventloop.clean();
                }
            }
            Ok(other) => debug!(event = ?other, "Unexpected event while connecting"),
            Err(e) => {
                drive.metrics.mqtt_reconnect();
                let delay = backoff.next_delay();
                warn!(error = %e, retry_in = ?delay, "Cannot reconnect to MQTT broker");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    if timeout(SHUTDOWN_FLUSH, finish(&mut eventloop, &mut drive.line))
        .await
        .is_err()
    {
        debug!("Outbox not fully written at shutdown");
    }
}

/// After a reconnect: sends again what the broker had not acknowledged, then subscribes to
/// `filters` (none: stays out).
async fn resume(eventloop: &mut EventLoop, filters: &[String]) -> Result<(), Broken> {
    let EventLoop {
        network,
        state,
        pending,
        ..
    } = eventloop;
    let Some(network) = network.as_mut() else {
        return Ok(());
    };
    for request in pending.drain(..) {
        if let Some(packet) = state.handle_outgoing_packet(request)? {
            network.write(packet).await?;
        }
    }
    if !filters.is_empty() {
        if let Some(packet) = state.handle_outgoing_packet(subscription(filters, true))? {
            network.write(packet).await?;
        }
    }
    flush!(network)
}

/// The request to subscribe to `filters` (`join`) or to unsubscribe from them.
fn subscription(filters: &[String], join: bool) -> Request {
    if join {
        Request::Subscribe(Subscribe::new_many(
            filters
                .iter()
                .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
        ))
    } else {
        Request::Unsubscribe(Unsubscribe {
            pkid: 0,
            topics: filters.to_vec(),
        })
    }
}

/// Writes what the outbox allows now, with one flush.
async fn write_batch(eventloop: &mut EventLoop, line: &mut Line) -> Result<(), Broken> {
    let max_inflight = eventloop.mqtt_options.inflight();
    let EventLoop { network, state, .. } = eventloop;
    let Some(network) = network.as_mut() else {
        return Ok(());
    };
    line.take_ready();
    let packets = line.writable(state, max_inflight)?;
    if packets.is_empty() {
        return Ok(());
    }
    let write = async {
        for packet in packets {
            network.write(packet).await?;
        }
        network.flush().await
    };
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Broken::WriteTimeout),
    }
}

/// `EventLoop::poll` for the start-up handshake and the sharing check, writing what the workers
/// queue meanwhile: a persistent session's messages arrive before the handshake ends, and the
/// broker sends nothing more (the sharing probe included) until they are acknowledged.
///
/// Unlike [`drive`], this stops waiting for a poll when the outbox has items. That is safe here:
/// the outbox's items are written and flushed before every poll, so a poll never waits for room
/// in the write buffer, the one place where dropping it could lose a packet.
pub(crate) async fn poll_writing(
    eventloop: &mut EventLoop,
    line: &mut Line,
) -> Result<Event, ConnectionError> {
    loop {
        write_batch(eventloop, line).await.map_err(|e| match e {
            Broken::State(e) => ConnectionError::MqttState(e),
            Broken::WriteTimeout | Broken::NoPingAnswer => ConnectionError::FlushTimeout,
        })?;
        if eventloop.network.is_none() || line.holding() {
            return eventloop.poll().await;
        }
        tokio::select! {
            biased;
            event = eventloop.poll() => return event,
            open = line.fill() => if !open {
                return eventloop.poll().await;
            }
        }
    }
}

/// One connection's life: returns `Ok` at `stop`, an error when the connection breaks.
async fn connected(
    eventloop: &mut EventLoop,
    drive: &mut Drive,
    stop: &CancellationToken,
) -> Result<(), Broken> {
    let keep_alive = eventloop.mqtt_options.keep_alive();
    let mut ping = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
    // Packets read with the handshake's last one wait in the state.
    dispatch(&mut eventloop.state, drive);
    loop {
        write_batch(eventloop, &mut drive.line).await?;
        let EventLoop { network, state, .. } = &mut *eventloop;
        let Some(network) = network.as_mut() else {
            return Err(Broken::State(StateError::ConnectionAborted));
        };
        let holding = drive.line.holding();
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            packet = network.read() => {
                let mut packet = packet?;
                let mut handled = 0;
                loop {
                    if let Some(reply) = state.handle_incoming_packet(packet)? {
                        network.write(reply).await?;
                    }
                    handled += 1;
                    if handled == READ_BATCH {
                        break;
                    }
                    // Only packets already read or readable now; never a wait.
                    match ready_now(network.read()) {
                        Some(next) => packet = next?,
                        None => break,
                    }
                }
                dispatch(state, drive);
                flush!(network)?;
            }
            // Only when nothing waits in hand for the in-flight window: that needs the
            // broker's acknowledgements (the branch above), not more items.
            _ = drive.line.fill(), if !holding => {}
            join = group_changed(&mut drive.in_group) => {
                if join {
                    info!(filters = ?drive.filters, "A majority of the sentinels answers again; rejoining the shared group");
                } else {
                    warn!(filters = ?drive.filters, "Cannot reach a majority of the sentinels; leaving the shared group so the other bridges take the taps (those in hand are decided when Redis answers)");
                }
                if let Some(packet) = state.handle_outgoing_packet(subscription(&drive.filters, join))? {
                    network.write(packet).await?;
                }
                flush!(network)?;
            }
            _ = ping.tick() => {
                if state.await_pingresp {
                    return Err(Broken::NoPingAnswer);
                }
                if let Some(packet) = state.handle_outgoing_packet(Request::PingReq(rumqttc::PingReq))? {
                    network.write(packet).await?;
                }
                flush!(network)?;
            }
        }
    }
}

/// Hands the publishes read to the dispatcher, stamped with the connection they came in on.
fn dispatch(state: &mut rumqttc::MqttState, drive: &Drive) {
    let session = drive.line.session();
    for event in state.events.drain(..) {
        match event {
            Event::Incoming(Packet::Publish(p)) => drive.dispatcher.offer(p, session),
            Event::Incoming(Packet::SubAck(ack))
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                warn!(codes = ?ack.return_codes, "Broker refused a subscription");
            }
            _ => {}
        }
    }
}

/// At shutdown (workers done): writes everything left in the outbox, waiting for the broker's
/// acknowledgements where the in-flight window is full, then disconnects.
async fn finish(eventloop: &mut EventLoop, line: &mut Line) {
    let result = async {
        loop {
            write_batch(eventloop, line).await?;
            if line.is_empty() {
                break;
            }
            let EventLoop { network, state, .. } = &mut *eventloop;
            let Some(network) = network.as_mut() else {
                return Ok(());
            };
            let packet = network.read().await?;
            state.handle_incoming_packet(packet)?;
            for event in state.events.drain(..) {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    // Not acknowledged: the broker redelivers it to the next session.
                    let topic = tapgate_protocol::text::escape_untrusted(&p.topic, 200);
                    debug!(topic = ?topic, "Left for redelivery at shutdown");
                }
            }
        }
        let EventLoop { network, state, .. } = &mut *eventloop;
        if let Some(network) = network.as_mut() {
            if let Some(packet) =
                state.handle_outgoing_packet(Request::Disconnect(rumqttc::Disconnect))?
            {
                network.write(packet).await?;
            }
            flush!(network)?;
        }
        Ok::<(), Broken>(())
    }
    .await;
    if let Err(e) = result {
        debug!(error = %e, "Connection not closed cleanly");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_now_does_not_wait() {
        assert_eq!(ready_now(async { 7 }), Some(7));
        assert_eq!(ready_now(std::future::pending::<u8>()), None);
    }
}
