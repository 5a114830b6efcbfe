//! The Redis connection every program uses: one server, or the primary that Redis Sentinel
//! names, followed through a failover without a restart.
//!
//! [`RedisTarget::parse`] takes `redis://[user:password@]host:port[/db]` or
//! `redis+sentinel://[user:password@]host:port,host:port,…/primary-name[/db]` (the credentials are
//! the Redis nodes', not the sentinels'). [`RedisLink`] is a cheap-to-clone connection that
//! implements `redis::aio::ConnectionLike`: a command that fails because the connection broke or
//! the node is no longer a writable primary drops the connection, and the next command connects
//! again — asking the sentinels for the primary first. The caller retries (the bridge does, with
//! backoff); scripts are reloaded by `redis::Script` when the new primary answers `NOSCRIPT`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};

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
    /// Parses a `redis://` or `redis+sentinel://` URL; `password`, when given, replaces the
    /// URL's (so it can stay out of the URL and off command lines).
    pub fn parse(url: &str, password: Option<&str>) -> Result<Self, RedisUrlError> {
        let bad = |why: &str| RedisUrlError {
            url: tapgate_protocol::broker::redact(url),
            why: why.to_owned(),
        };
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            let mut info = url
                .into_connection_info()
                .map_err(|e| bad(&e.to_string()))?;
            if let Some(pw) = password {
                let settings = info.redis_settings().clone().set_password(pw);
                info = info.set_redis_settings(settings);
            }
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
        if let Some(pw) = password {
            node = node.set_password(pw);
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
}

/// Finds the node to talk to: the server itself, or what the sentinels say now.
enum Resolver {
    Direct(Client),
    Sentinel(Box<SentinelClient>),
}

impl Resolver {
    async fn client(&mut self) -> RedisResult<Client> {
        match self {
            Resolver::Direct(c) => Ok(c.clone()),
            Resolver::Sentinel(s) => s.async_get_client().await,
        }
    }
}

/// Where to find the node to talk to now: one server, or whatever the sentinels name as primary
/// at the moment of asking. Cheap to clone. For a program that opens connections of its own
/// (blocking stream reads); [`RedisLink`] uses it to reconnect.
#[derive(Clone)]
pub struct RedisSource {
    shown: String,
    resolver: Arc<tokio::sync::Mutex<Resolver>>,
}

impl RedisSource {
    /// Parses `url` (see [`RedisTarget::parse`]); `password`, when given, replaces the URL's.
    pub fn new(url: &str, password: Option<&str>) -> Result<Self, RedisUrlError> {
        let target = RedisTarget::parse(url, password)?;
        Self::from_target(url, target)
    }

    /// A source for an already parsed target; `url` is only shown (password removed).
    pub fn from_target(url: &str, target: RedisTarget) -> Result<Self, RedisUrlError> {
        let shown = tapgate_protocol::broker::redact(url);
        let bad = |e: RedisError| RedisUrlError {
            url: shown.clone(),
            why: e.to_string(),
        };
        let resolver = match target {
            RedisTarget::Direct(info) => Resolver::Direct(Client::open(info).map_err(bad)?),
            RedisTarget::Sentinel {
                sentinels,
                primary,
                node,
            } => {
                let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
                Resolver::Sentinel(Box::new(
                    SentinelClient::build(
                        sentinels,
                        primary,
                        Some(node),
                        SentinelServerType::Master,
                    )
                    .map_err(bad)?,
                ))
            }
        };
        Ok(Self {
            shown,
            resolver: Arc::new(tokio::sync::Mutex::new(resolver)),
        })
    }

    /// The URL as shown in logs (password removed).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// A client for the node to use now (for Sentinel: the primary the sentinels name now).
    /// Failing to find one is connection trouble, never the caller's fault.
    pub async fn client(&self) -> RedisResult<Client> {
        let mut resolver = self.resolver.lock().await;
        tokio::time::timeout(TIMEOUT, resolver.client())
            .await
            .map_err(|_| timed_out("asking the sentinels for the primary"))?
            .map_err(not_connected)
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

struct Current {
    generation: u64,
    connection: MultiplexedConnection,
    address: String,
}

struct Inner {
    source: RedisSource,
    /// Held while connecting, so one caller connects and the others wait for it.
    connecting: tokio::sync::Mutex<()>,
    current: RwLock<Option<Current>>,
    generations: AtomicU64,
    reconnects: AtomicU64,
}

/// A Redis connection that reconnects by itself, following Sentinel failovers. Cheap to clone.
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
    /// Connects now (asking the sentinels first, for a Sentinel target) and PINGs, failing with
    /// the URL (password removed) if that does not work within [`TIMEOUT`].
    pub async fn connect(url: &str, target: RedisTarget) -> Result<Self, RedisConnectError> {
        let source = RedisSource::from_target(url, target).map_err(|e| RedisConnectError {
            url: e.url.clone(),
            source: RedisError::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, e.why)),
        })?;
        Self::open(source).await
    }

    /// Connects to what `source` names now and PINGs.
    pub async fn open(source: RedisSource) -> Result<Self, RedisConnectError> {
        let url = source.url().to_owned();
        let link = Self {
            inner: Arc::new(Inner {
                source,
                connecting: tokio::sync::Mutex::new(()),
                current: RwLock::new(None),
                generations: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
            }),
        };
        let mut probe = link.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut probe)
            .await
            .map_err(|source| RedisConnectError { url, source })?;
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

    /// The connection in use and its generation (every command asks: no allocation here).
    fn read_current(&self) -> Option<(u64, MultiplexedConnection)> {
        let guard = self.inner.current.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|c| (c.generation, c.connection.clone()))
    }

    /// The connection in use, connecting (and asking the sentinels) when there is none.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        let _connecting = self.inner.connecting.lock().await;
        // Someone else may have connected while this one waited.
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        let client = self.inner.source.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(not_connected)?;
        let generation = self.inner.generations.fetch_add(1, Ordering::SeqCst) + 1;
        if generation > 1 {
            self.inner.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let address = client.get_connection_info().addr().to_string();
        tracing::info!(redis = %self.inner.source.url(), node = %address, generation, "Connected to Redis");
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Current {
            generation,
            connection: connection.clone(),
            address,
        });
        Ok((generation, connection))
    }

    /// After `e` on connection `generation`: forget that connection if `e` says it is no use.
    fn after_error(&self, generation: u64, e: &RedisError) {
        if !is_connection_error(e) {
            return;
        }
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

fn timed_out(what: &str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} s {what}", TIMEOUT.as_secs()),
    ))
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut con) = self.connection().await?;
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
            let (generation, mut con) = self.connection().await?;
            let result = con.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
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
            RedisTarget::parse("redis://127.0.0.1:6379", None),
            Ok(RedisTarget::Direct(_))
        ));
        let t = RedisTarget::parse(
            "redis+sentinel://tapgate-bridge:pw@h1:26379,h2:26380,h3/tapgate/2",
            None,
        )
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
        let t =
            RedisTarget::parse("redis+sentinel://h1/tapgate", Some("from-setting")).expect("url");
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
            assert!(RedisTarget::parse(bad, None).is_err(), "{bad}");
        }
        let e = RedisTarget::parse("redis+sentinel://u:secret@h1", None).expect_err("bad");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
