//! The HTTP/1 accept loop.
//!
//! Each connection is served by hyper with a header-read timeout, so a client that never
//! finishes its headers is cut off instead of holding a connection forever, and connections are
//! counted per client address bucket (an IPv4 address or an IPv6 /64): past the cap, a new
//! connection from that bucket is closed at once. Trusted proxies are not capped (every client
//! behind them shares their address; the proxy limits its own clients). The peer address is
//! handed to the routes as [`ConnectInfo`]. On shutdown the loop stops accepting and waits for
//! open connections to finish (live streams end by themselves on shutdown).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::{debug, info, warn};

use super::client::{self, Cidr};

/// How long shutdown waits for open connections (a request in flight) to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Limits on connections.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    /// Longest time to send a request's headers.
    pub header_timeout: Duration,
    /// Open connections per client address bucket.
    pub per_address: usize,
    /// Peers that are not capped.
    pub trusted: Vec<Cidr>,
}

type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// One open connection of a bucket; gives its place back when dropped.
struct Slot {
    counts: Counts,
    bucket: String,
}

impl Slot {
    fn take(counts: &Counts, bucket: String, max: usize) -> Option<Slot> {
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(bucket.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: Arc::clone(counts),
            bucket,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.bucket) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.bucket);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown`.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let counts: Counts = Arc::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "Cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = if client::is_trusted(peer.ip(), &limits.trusted) {
            None
        } else {
            let bucket = client::bucket(peer.ip());
            match Slot::take(&counts, bucket, limits.per_address) {
                Some(s) => Some(s),
                None => {
                    debug!(%peer, "Connection refused: too many open from this address");
                    drop(stream);
                    continue;
                }
            }
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().call(req)
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "Connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            info!("Leaving connections still open after the grace period");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_bucket_and_given_back() {
        let counts: Counts = Arc::default();
        let a = Slot::take(&counts, "a".into(), 2).expect("1st");
        let _b = Slot::take(&counts, "a".into(), 2).expect("2nd");
        assert!(Slot::take(&counts, "a".into(), 2).is_none(), "3rd from a");
        assert!(Slot::take(&counts, "b".into(), 2).is_some(), "b is apart");
        drop(a);
        assert!(
            Slot::take(&counts, "a".into(), 2).is_some(),
            "a place came back"
        );
    }
}
