//! The Redis connection every program uses: one server, or the primary that Redis Sentinel
//! names, followed through a failover without a restart.
//!
//! [`RedisTarget::parse`] takes `redis://[user:password@]host:port[/db]` or
//! `redis+sentinel://[user:password@]host:port,host:port,…/primary-name[/db]` (the credentials are
//! the Redis nodes', not the sentinels'); a program reads it once, as a
//! [`RedisUrl`] setting. [`RedisLink`] is a cheap-to-clone connection that
//! implements `redis::aio::ConnectionLike`: a command that fails because the connection broke or
//! the node is no longer a writable primary drops the connection, and the next command connects
//! again — asking the sentinels for the primary first. The sentinels are asked as a quorum
//! ([`crate::sentinel`]): the primary is the node a majority of them names, and a link leaves a
//! node as soon as the majority names another or none. The caller retries (the bridge does, with
//! backoff); scripts are reloaded by `redis::Script` when the new primary answers `NOSCRIPT`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};

use crate::redis_url::RedisUrl;
use crate::sentinel::{NoQuorum, Quorum, Sentinels};

/// How long connecting, or one answer, may take before the attempt counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One server.
    Direct(ConnectionInfo),
    /// The primary the sentinels name.
    Sentinel {
        /// The sentinels, `redis://host:port`.
        sentinels: Vec<String>,
        /// The name they know the primary by.
        primary: String,
        /// Database and credentials for the primary.
        node: RedisConnectionInfo,
    },
}

/// A Redis URL that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL {url}: {why}")]
pub struct RedisUrlError {
    /// The URL with any password removed.
    pub url: String,
    /// What is wrong.
    pub why: String,
}

/// Why the first connection failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Redis at {url}: {source}")]
pub struct RedisConnectError {
    /// The URL with any password removed.
    pub url: String,
    pub source: RedisError,
}

impl RedisTarget {
    /// Parses a `redis://` or `redis+sentinel://` URL.
    pub fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let bad = |why: &str| RedisUrlError {
            url: tapgate_protocol::broker::redact(url),
            why: why.to_owned(),
        };
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            let info = url
                .into_connection_info()
                .map_err(|e| bad(&e.to_string()))?;
            return Ok(Self::Direct(info));
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected redis+sentinel://host:port,host:port/primary-name"))?;
        let (creds, hosts) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    format!("redis://{h}")
                } else {
                    format!("redis://{h}:26379")
                }
            })
            .collect();
        if sentinels.is_empty() {
            return Err(bad("no sentinel address"));
        }
        let mut parts = path.trim_end_matches('/').split('/');
        let primary = parts.next().unwrap_or_default();
        if primary.is_empty() {
            return Err(bad("no primary name after the sentinel addresses"));
        }
        let mut node = RedisConnectionInfo::default();
        if let Some(db) = parts.next() {
            let db: i64 = db
                .parse()
                .map_err(|_| bad("the database is not a number"))?;
            node = node.set_db(db);
        }
        if parts.next().is_some() {
            return Err(bad("unexpected text after the database"));
        }
        if let Some(c) = creds {
            let (user, pw) = c.split_once(':').unwrap_or((c, ""));
            if !user.is_empty() {
                node = node.set_username(user);
            }
            if !pw.is_empty() {
                node = node.set_password(pw);
            }
        }
        Ok(Self::Sentinel {
            sentinels,
            primary: primary.to_owned(),
            node,
        })
    }

    /// Whether the primary comes from Sentinel (and may move).
    pub fn is_sentinel(&self) -> bool {
        matches!(self, Self::Sentinel { .. })
    }

    /// The Redis node's password, if any (for Sentinel, the primary's, not the sentinels').
    pub fn password(&self) -> Option<&str> {
        match self {
            Self::Direct(info) => info.redis_settings().password(),
            Self::Sentinel { node, .. } => node.password(),
        }
    }

    /// The same target with `password` for the Redis node in place of the URL's (a setting of
    /// its own, kept off the URL and command lines).
    pub fn with_password(self, password: &str) -> Self {
        match self {
            Self::Direct(info) => {
                let node = info.redis_settings().clone().set_password(password);
                Self::Direct(info.set_redis_settings(node))
            }
            Self::Sentinel {
                sentinels,
                primary,
                node,
            } => Self::Sentinel {
                sentinels,
                primary,
                node: node.set_password(password),
            },
        }
    }
}

/// Finds the node to talk to: the server itself, or the primary a majority of the sentinels
/// names now.
enum Resolver {
    Direct(ConnectionInfo),
    Sentinel {
        sentinels: Sentinels,
        node: RedisConnectionInfo,
    },
}

/// Where to find the node to talk to now: one server, or the primary a majority of the sentinels
/// names at the moment of asking. Cheap to clone. For a program that opens connections of its own
/// (blocking stream reads); [`RedisLink`] uses it to reconnect.
#[derive(Clone)]
pub struct RedisSource {
    shown: String,
    resolver: Arc<Resolver>,
}

impl RedisSource {
    /// The Redis at `url`, parsed when it was read; `password`, when given, replaces the URL's.
    pub fn at(url: &RedisUrl, password: Option<&str>) -> Self {
        let resolver = match url.with_password(password) {
            RedisTarget::Direct(info) => Resolver::Direct(info),
            RedisTarget::Sentinel {
                sentinels,
                primary,
                node,
            } => Resolver::Sentinel {
                sentinels: Sentinels::new(&sentinels, &primary),
                node,
            },
        };
        Self {
            shown: url.to_string(),
            resolver: Arc::new(resolver),
        }
    }

    /// The URL as shown in logs (password removed).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Whether the primary comes from Sentinel (and may move).
    pub fn is_sentinel(&self) -> bool {
        matches!(*self.resolver, Resolver::Sentinel { .. })
    }

    /// For Sentinel: asks every sentinel and returns the primary a majority names now, with the
    /// replicas that may be promoted. `None` for one server.
    pub async fn quorum(&self) -> Option<Result<Quorum, NoQuorum>> {
        match &*self.resolver {
            Resolver::Direct(_) => None,
            Resolver::Sentinel { sentinels, .. } => Some(sentinels.quorum().await),
        }
    }

    /// A client for the node to use now (for Sentinel: the primary a majority of the sentinels
    /// names now). Failing to find one is connection trouble, never the caller's fault.
    pub async fn client(&self) -> RedisResult<Client> {
        Ok(self.resolve().await?.0)
    }

    /// The client, and for Sentinel the quorum that named its node.
    async fn resolve(&self) -> RedisResult<(Client, Option<Quorum>)> {
        match &*self.resolver {
            Resolver::Direct(info) => {
                Ok((Client::open(info.clone()).map_err(not_connected)?, None))
            }
            Resolver::Sentinel { sentinels, node } => {
                let quorum = sentinels.quorum().await.map_err(|e| {
                    RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        e.to_string(),
                    ))
                })?;
                let info = ConnectionAddr::Tcp(quorum.primary.host.clone(), quorum.primary.port)
                    .into_connection_info()
                    .map_err(not_connected)?
                    .set_redis_settings(node.clone());
                Ok((Client::open(info).map_err(not_connected)?, Some(quorum)))
            }
        }
    }

    /// A new connection to the node to use now, whose answers may take `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> RedisResult<MultiplexedConnection> {
        let client = self.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(not_connected)
    }
}

/// How often a Sentinel link asks the sentinels whether its node is still the primary, besides
/// asking at once after a connection error, `READONLY` or a `WAIT` short of replicas.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

struct Current {
    generation: u64,
    connection: MultiplexedConnection,
    address: String,
    /// Held by the one pipeline ending in `WAIT` sent on this connection while replicas are
    /// short. Per connection: one stuck on a node the link has left must not hold up the next.
    wait_probe: Arc<tokio::sync::Mutex<()>>,
}

/// The connection in use: its generation, the connection and its `WAIT` probe.
type InUse = (u64, MultiplexedConnection, Arc<tokio::sync::Mutex<()>>);

struct Inner {
    source: RedisSource,
    /// Held while connecting, so one caller connects and the others wait for it.
    connecting: tokio::sync::Mutex<()>,
    current: RwLock<Option<Current>>,
    generations: AtomicU64,
    reconnects: AtomicU64,
    /// Replicas that may be promoted, as the sentinels last said (see [`Quorum::replicas_up`]).
    replicas_up: AtomicU32,
    /// Wakes the watcher: ask the sentinels now.
    check: Arc<tokio::sync::Notify>,
    /// The last `WAIT` got fewer replicas than asked: until one gets them all (on this node or
    /// the next: a new connection does not clear it, or every waiting decision would send its
    /// `WAIT` at once again), only one pipeline ending in `WAIT` is sent at a time on a connection
    /// (see `req_packed_commands`).
    replicas_short: AtomicBool,
}

/// A Redis connection that reconnects by itself, following Sentinel failovers. Cheap to clone.
///
/// With Sentinel, the link never keeps using a node a majority of the sentinels no longer names
/// as primary: a watcher task asks them every [`CHECK_EVERY`], and at once after a connection
/// error, `READONLY`, a `WAIT` answered with fewer replicas than asked or a sentinel's
/// `+switch-master`; when the majority names
/// another node, or none, the connection is dropped and the next command connects to what the
/// majority names then (or fails, to be retried, while there is no majority).
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

/// Whether `e` means this connection (or this node as primary) is no use any more.
pub fn is_connection_error(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
}

impl RedisLink {
    /// Connects now to the Redis at `url` (asking the sentinels first, for Sentinel) and PINGs,
    /// failing with the URL (password removed) if that does not work within [`TIMEOUT`];
    /// `password`, when given, replaces the URL's.
    pub async fn connect(
        url: &RedisUrl,
        password: Option<&str>,
    ) -> Result<Self, RedisConnectError> {
        Self::open(RedisSource::at(url, password)).await
    }

    /// Connects to what `source` names now and PINGs. For Sentinel, starts the watcher (it ends
    /// when the last clone of the link is dropped).
    pub async fn open(source: RedisSource) -> Result<Self, RedisConnectError> {
        let url = source.url().to_owned();
        let sentinel = source.is_sentinel();
        let link = Self {
            inner: Arc::new(Inner {
                source,
                connecting: tokio::sync::Mutex::new(()),
                current: RwLock::new(None),
                generations: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                replicas_up: AtomicU32::new(0),
                check: Arc::new(tokio::sync::Notify::new()),
                replicas_short: AtomicBool::new(false),
            }),
        };
        let mut probe = link.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut probe)
            .await
            .map_err(|source| RedisConnectError { url, source })?;
        if let Resolver::Sentinel { sentinels, .. } = &*link.inner.source.resolver {
            sentinels.on_switch(Arc::downgrade(&link.inner.check));
        }
        if sentinel {
            tokio::spawn(watch(
                Arc::downgrade(&link.inner),
                Arc::clone(&link.inner.check),
            ));
        }
        Ok(link)
    }

    /// Where the link finds its node (to open connections of one's own).
    pub fn source(&self) -> &RedisSource {
        &self.inner.source
    }

    /// The URL as shown in logs (password removed).
    pub fn url(&self) -> &str {
        self.inner.source.url()
    }

    /// `host:port` of the node in use, if connected.
    pub fn address(&self) -> Option<String> {
        let guard = self.inner.current.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|c| c.address.clone())
    }

    /// Connections made after the first: how often the link had to reconnect.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// How many replicas a write must reach (`WAIT`) before it is confirmed, at least `floor`:
    /// with Sentinel, every replica any sentinel sees up as last asked, so that whichever of them
    /// a failover promotes holds every confirmed write. One server: `floor`.
    pub fn replicas_to_wait(&self, floor: u32) -> u32 {
        if !self.inner.source.is_sentinel() {
            return floor;
        }
        floor.max(self.inner.replicas_up.load(Ordering::Relaxed))
    }

    /// The connection in use and its generation (every command asks: no allocation here).
    fn read_current(&self) -> Option<InUse> {
        let guard = self.inner.current.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|c| {
            (
                c.generation,
                c.connection.clone(),
                Arc::clone(&c.wait_probe),
            )
        })
    }

    /// The connection in use, connecting (and asking the sentinels) when there is none.
    async fn connection(&self) -> RedisResult<InUse> {
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        let _connecting = self.inner.connecting.lock().await;
        // Someone else may have connected while this one waited.
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        let started = std::time::Instant::now();
        let (client, quorum) = self.inner.source.resolve().await?;
        let resolved = started.elapsed();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(not_connected)?;
        let address = client.get_connection_info().addr().to_string();
        if let Some(quorum) = &quorum {
            // A node the sentinels name may not have been told yet (a restarted old primary
            // comes back as a primary; a just promoted one may still be a replica).
            let role: Vec<Value> = redis::cmd("ROLE")
                .query_async(&mut connection)
                .await
                .map_err(not_connected)?;
            let primary = match role.first() {
                Some(Value::BulkString(r)) => r.as_slice() == b"master",
                Some(Value::SimpleString(r)) => r == "master",
                _ => false,
            };
            if !primary {
                return Err(not_connected(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    format!("{address}, named primary by the sentinels, is not a primary yet"),
                ))));
            }
            self.inner
                .replicas_up
                .store(count(quorum.replicas_up), Ordering::Relaxed);
        }
        let generation = self.inner.generations.fetch_add(1, Ordering::SeqCst) + 1;
        if generation > 1 {
            self.inner.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        match &quorum {
            Some(q) => tracing::info!(
                redis = %self.inner.source.url(),
                node = %address,
                named_by = q.named_by,
                sentinels = q.sentinels,
                replicas_up = q.replicas_up,
                generation,
                asking_ms = resolved.as_millis(),
                connecting_ms = (started.elapsed() - resolved).as_millis(),
                "Connected to the Redis primary a majority of the sentinels names"
            ),
            None => {
                tracing::info!(redis = %self.inner.source.url(), node = %address, generation, "Connected to Redis")
            }
        }
        let wait_probe = Arc::new(tokio::sync::Mutex::new(()));
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Current {
            generation,
            connection: connection.clone(),
            address,
            wait_probe: Arc::clone(&wait_probe),
        });
        Ok((generation, connection, wait_probe))
    }

    /// After `e` on connection `generation`: forget that connection if `e` says it is no use,
    /// and have the sentinels asked again.
    fn after_error(&self, generation: u64, e: &RedisError) {
        if !is_connection_error(e) {
            return;
        }
        self.inner.check.notify_one();
        let mut guard = self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|c| c.generation == generation) {
            tracing::warn!(redis = %self.inner.source.url(), error = %e, "Redis connection lost; reconnecting");
            *guard = None;
        }
    }

    /// After a pipeline's answers: a `WAIT` at its end (asking for `asked` replicas) answered
    /// with fewer has the sentinels asked again (the node may no longer be the one they promote
    /// from) and holds back further `WAIT`s until one gets them all.
    fn after_pipeline(&self, asked: Option<i64>, values: &[Value]) {
        let Some(asked) = asked else {
            return;
        };
        if let Some(Value::Int(acked)) = values.last() {
            let short = *acked < asked;
            self.inner.replicas_short.store(short, Ordering::Relaxed);
            if short {
                self.inner.check.notify_one();
            }
        }
    }

    /// Drops the connection in use if it is to another node than `primary` (or to any node,
    /// `primary` being `None`): a majority of the sentinels no longer names it.
    fn drop_unless(&self, primary: Option<&str>, why: &str) {
        let mut guard = self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(current) = guard.as_ref() {
            if Some(current.address.as_str()) != primary {
                tracing::warn!(
                    redis = %self.inner.source.url(),
                    node = %current.address,
                    primary = ?primary,
                    why,
                    "A majority of the sentinels no longer names this node; leaving it"
                );
                *guard = None;
            }
        }
    }
}

/// The watcher of a Sentinel link: asks the sentinels every [`CHECK_EVERY`] or when woken, keeps
/// the count of replicas to wait for, and drops the connection to a node the majority no longer
/// names. Ends when the link is dropped.
async fn watch(inner: std::sync::Weak<Inner>, check: Arc<tokio::sync::Notify>) {
    loop {
        // Holding only the weak reference while waiting: dropping the last link ends this.
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = check.notified() => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let link = RedisLink { inner: strong };
        match link.inner.source.quorum().await {
            Some(Ok(q)) => {
                let primary = q.primary.to_string();
                if link.address().as_deref() == Some(primary.as_str()) {
                    link.inner
                        .replicas_up
                        .store(count(q.replicas_up), Ordering::Relaxed);
                }
                link.drop_unless(Some(&primary), "the majority names another node");
            }
            Some(Err(e)) => link.drop_unless(None, &e.to_string()),
            None => return,
        }
    }
}

/// `numreplicas` of a `WAIT` command.
fn wait_replicas(cmd: &Cmd) -> Option<i64> {
    let mut args = cmd.args_iter();
    match args.next()? {
        redis::Arg::Simple(name) if name.eq_ignore_ascii_case(b"WAIT") => {}
        _ => return None,
    }
    match args.next()? {
        redis::Arg::Simple(n) => std::str::from_utf8(n).ok()?.parse().ok(),
        _ => None,
    }
}

/// The error for a pipeline held back while replicas are short: connection trouble (the caller
/// retries), nothing was sent.
fn replicas_short(asked: i64) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::WouldBlock,
        format!("fewer than {asked} replicas answered the last WAIT; not sent, retry"),
    ))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A failure to connect, as an I/O error so every caller sees connection trouble.
fn not_connected(e: RedisError) -> RedisError {
    if is_connection_error(&e) {
        return e;
    }
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("no usable Redis primary yet: {e}"),
    ))
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut con, _) = self.connection().await?;
            let result = con.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            // A `WAIT` holds the (shared) connection until its replicas answer or it times out.
            // While replicas are short every one would time out, each holding up everything
            // behind it; so then one is sent at a time and the others fail at once, to be retried.
            let asked = pipeline.cmd_iter().last().and_then(wait_replicas);
            let (generation, mut con, probe) = self.connection().await?;
            let _probe = match asked {
                Some(n) if self.inner.replicas_short.load(Ordering::Relaxed) => {
                    match probe.try_lock_owned() {
                        Ok(probe) => Some(probe),
                        Err(_) => return Err(replicas_short(n)),
                    }
                }
                _ => None,
            };
            let result = con.req_packed_commands(pipeline, offset, count).await;
            match &result {
                Ok(values) => self.after_pipeline(asked, values),
                Err(e) => self.after_error(generation, e),
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_direct_and_sentinel_urls() {
        assert!(matches!(
            RedisTarget::parse("redis://127.0.0.1:6379"),
            Ok(RedisTarget::Direct(_))
        ));
        let t =
            RedisTarget::parse("redis+sentinel://tapgate-bridge:pw@h1:26379,h2:26380,h3/tapgate/2")
                .expect("sentinel url");
        let RedisTarget::Sentinel {
            sentinels,
            primary,
            node,
        } = t
        else {
            panic!("not sentinel");
        };
        assert_eq!(
            sentinels,
            ["redis://h1:26379", "redis://h2:26380", "redis://h3:26379"]
        );
        assert_eq!(primary, "tapgate");
        assert_eq!(node.db(), 2);
        assert_eq!(node.username(), Some("tapgate-bridge"));
        assert_eq!(node.password(), Some("pw"));
        let t = RedisTarget::parse("redis+sentinel://h1/tapgate")
            .expect("url")
            .with_password("from-setting");
        let RedisTarget::Sentinel { node, .. } = t else {
            panic!("not sentinel");
        };
        assert_eq!(node.password(), Some("from-setting"));
    }

    #[test]
    fn refuses_sentinel_urls_that_cannot_work() {
        for bad in [
            "redis+sentinel://h1:26379",
            "redis+sentinel://h1:26379/",
            "redis+sentinel:///tapgate",
            "redis+sentinel://h1/tapgate/x",
            "redis+sentinel://h1/tapgate/0/extra",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
        let e = RedisTarget::parse("redis+sentinel://u:secret@h1").expect_err("bad");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn finds_the_replicas_a_wait_asks_for() {
        let mut wait = redis::cmd("WAIT");
        wait.arg(2).arg(500);
        assert_eq!(wait_replicas(&wait), Some(2));
        assert_eq!(wait_replicas(redis::cmd("wait").arg(1).arg(10)), Some(1));
        assert_eq!(wait_replicas(redis::cmd("GET").arg(2)), None);
        assert_eq!(wait_replicas(&redis::cmd("WAIT")), None);
        let mut pipe = redis::pipe();
        pipe.cmd("FCALL").arg("decide").cmd("WAIT").arg(2).arg(500);
        let last = pipe.cmd_iter().last().and_then(wait_replicas);
        assert_eq!(last, Some(2));
    }

    #[test]
    fn a_held_back_wait_is_trouble_the_caller_retries() {
        // The bridge's store retries I/O errors; the link returns this one before sending, so
        // it never drops the connection.
        let e = replicas_short(2);
        assert!(e.is_io_error(), "{e}");
        assert!(e.to_string().contains("not sent"), "{e}");
    }
}
