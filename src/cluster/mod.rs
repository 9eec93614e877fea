//! Compatibility mode's shared parts, on Redis: the connection (every call through the
//! `redis` circuit breaker) and its start-up checks; the task queue on streams
//! ([`RedisQueue`]); the message bus between nodes ([`Bus`]: wake-ups, cancels, live events);
//! and the list of live worker nodes ([`Nodes`]).
//!
//! Every key is `{prefix}:name`: the braces make the prefix a hash tag, so a script's keys
//! share one slot on a Redis cluster too, and two installs with two prefixes share one Redis.

mod bus;
mod nodes;
mod queue;

pub use bus::Bus;
pub use nodes::{NodeInfo, Nodes};
pub use queue::{RedisQueue, SharedQueue};

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::breaker::{Breaker, Tripped};
use crate::config::{QueueSettings, RedisSettings};
use crate::queue::QueueError;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A start-up check that failed: which setting, and what the operator must change.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct Misconfigured {
    pub setting: &'static str,
    pub problem: String,
}

fn misconfigured(setting: &'static str, problem: impl Into<String>) -> Misconfigured {
    Misconfigured {
        setting,
        problem: problem.into(),
    }
}

/// What Redis promises about an acknowledged write (`CONFIG GET appendonly appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `appendfsync always`: fsynced before the reply; survives a power loss.
    Always,
    /// `appendfsync everysec`: survives Redis dying; a power loss may take the last second.
    EverySecond,
    /// `appendfsync no`: the OS writes when it likes.
    OsDecides,
    /// `appendonly no`: only snapshots, if any; a restart loses what came after the last.
    None,
    /// `CONFIG` is refused (managed Redis): cannot tell.
    Unknown,
}

/// The connection to Redis. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    breaker: Breaker,
    prefix: String,
}

impl Redis {
    /// Connects and checks the server answers; misconfigurations come back named.
    pub async fn connect(
        settings: &RedisSettings,
        breaker: Breaker,
    ) -> Result<Self, Misconfigured> {
        let client = redis::Client::open(settings.url.expose()).map_err(|e| {
            misconfigured("redis.url", format!("not a Redis URL ({})", e.category()))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(breaker.call_timeout()))
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(client.clone(), config);
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unreachable(&e)),
            Err(_) => {
                return Err(misconfigured(
                    "redis.url",
                    "the Redis server did not answer within 6 s; check the host, the port and \
                     that the server runs",
                ));
            }
        };
        let redis = Self {
            client,
            conn,
            breaker,
            prefix: settings.key_prefix.clone(),
        };
        let pong: Result<String, _> = redis::cmd("PING")
            .query_async(&mut redis.conn.clone())
            .await;
        pong.map_err(|e| unreachable(&e))?;
        Ok(redis)
    }

    /// `{prefix}:name`.
    pub fn key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.prefix)
    }

    /// A connection for one call (a handle onto the shared multiplexed one).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs one Redis call through the breaker; errors become [`QueueError::Unavailable`].
    pub async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, QueueError> {
        self.raw(call).await.map_err(unavailable)
    }

    /// [`Redis::call`] with the error as it came. Only a failure to reach Redis counts against
    /// the breaker: an error reply (a script's, a missing group) is an answer.
    pub async fn raw<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Tripped<redis::RedisError>> {
        let outage = |e: &redis::RedisError| {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
        };
        self.breaker.call_with(call, outage).await
    }

    /// What the server promises about acknowledged writes.
    pub async fn persistence(&self) -> Persistence {
        let got: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("append*")
            .query_async(&mut self.conn())
            .await;
        let Ok(pairs) = got else {
            return Persistence::Unknown;
        };
        let get = |name: &str| {
            pairs
                .chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1).cloned())
                .unwrap_or_default()
        };
        match (get("appendonly").as_str(), get("appendfsync").as_str()) {
            ("no", _) => Persistence::None,
            (_, "always") => Persistence::Always,
            (_, "everysec") => Persistence::EverySecond,
            (_, "no") => Persistence::OsDecides,
            _ => Persistence::Unknown,
        }
    }

    /// Refuses a Redis older than 6.2 (no `XPENDING … IDLE`), and one that may
    /// evict keys (`maxmemory-policy` other than `noeviction`: the queue's streams could
    /// vanish) unless `queue.require_persistence` is false; then checks persistence.
    pub async fn check(&self, queue: &QueueSettings) -> Result<(), Misconfigured> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| unreachable(&e))?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
        if parts.as_slice() < [6, 2].as_slice() {
            return Err(misconfigured(
                "redis.url",
                format!(
                    "the Redis server is version {version}; the queue needs Redis 6.2 or later"
                ),
            ));
        }
        let policy: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut self.conn())
            .await;
        if let Ok(pair) = policy
            && let Some(policy) = pair.get(1).filter(|p| *p != "noeviction")
        {
            let problem = format!(
                "the Redis server may evict keys (maxmemory-policy {policy}): the queue's streams \
                 could vanish. Set `maxmemory-policy noeviction`, or set \
                 queue.require_persistence = false to accept that risk"
            );
            if queue.require_persistence {
                return Err(misconfigured("redis.url", problem));
            }
            tracing::warn!("{problem}");
        }
        self.check_persistence(queue).await
    }

    /// Refuses (or only warns about, as `queue.require_persistence` says) a Redis that would
    /// lose acknowledged tasks on a restart; logs what each setting means.
    async fn check_persistence(&self, queue: &QueueSettings) -> Result<(), Misconfigured> {
        match self.persistence().await {
            Persistence::Always => {
                tracing::info!(
                    "Redis fsyncs every write (appendfsync always): acknowledged tasks survive a crash or power loss"
                );
            }
            Persistence::EverySecond => {
                tracing::info!(
                    "Redis fsyncs every second (appendfsync everysec): acknowledged tasks survive a Redis crash; a power loss may lose the last second"
                );
            }
            Persistence::OsDecides => {
                tracing::warn!(
                    "Redis leaves fsync to the OS (appendfsync no): a power loss may lose acknowledged tasks; set appendfsync always or everysec"
                );
            }
            Persistence::Unknown => {
                tracing::warn!(
                    "cannot read Redis's persistence settings (CONFIG refused); make sure appendonly is yes"
                );
            }
            Persistence::None if queue.require_persistence => {
                return Err(misconfigured(
                    "redis.url",
                    "the Redis server does not persist what it acknowledges (appendonly no): \
                     queued tasks would be lost when it restarts. Set `appendonly yes` with \
                     `appendfsync always` (or `everysec`) in redis.conf, or set \
                     queue.require_persistence = false to accept that risk",
                ));
            }
            Persistence::None => {
                tracing::warn!(
                    "Redis does not persist (appendonly no) and queue.require_persistence = false: queued tasks are lost when Redis restarts, until the primary restarts and queues them again"
                );
            }
        }
        Ok(())
    }
}

/// A connection failure named for the operator; never the URL (it may hold a password).
fn unreachable(e: &redis::RedisError) -> Misconfigured {
    let problem = match e.kind() {
        redis::ErrorKind::AuthenticationFailed => {
            "Redis refused the credentials in the URL (user and password)".to_owned()
        }
        _ if e.to_string().contains("NOAUTH") => {
            "Redis requires a password: put it in the URL (redis://:password@host:port)".into()
        }
        _ if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() => format!(
            "cannot reach the Redis server ({}); check the host, the port and that it runs",
            e.category()
        ),
        _ => format!("Redis refused the connection ({})", e.category()),
    };
    misconfigured("redis.url", problem)
}

/// A failed call through the breaker, as the queue reports it.
pub(super) fn unavailable(e: Tripped<redis::RedisError>) -> QueueError {
    let retry_after = match &e {
        Tripped::Open { retry_after, .. } => *retry_after,
        _ => Duration::from_secs(1),
    };
    let reason = match &e {
        Tripped::Failed(e) => e.category().to_owned(),
        other => other.to_string(),
    };
    QueueError::Unavailable {
        dependency: "redis",
        reason,
        retry_after,
    }
}

/// Compatibility mode's parts one process holds: the bus, the queue and the node registry
/// over one connection.
pub struct Shared {
    pub redis: Redis,
    pub bus: Bus,
    pub queue: std::sync::Arc<RedisQueue>,
    pub nodes: Nodes,
    /// This process's name: the node's name and a random suffix.
    pub process: String,
}

impl Shared {
    /// Connects to `[redis]` through `breaker`, checks it and opens the queue. The primary
    /// passes its `hub` (worker nodes' task events go to it) and alone checks persistence (it
    /// acknowledges submits). `stop` ends the bus.
    pub async fn connect(
        settings: &crate::config::Settings,
        breaker: Breaker,
        hub: Option<crate::realtime::Hub>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Self, Misconfigured> {
        let redis = Redis::connect(&settings.redis, breaker).await?;
        // The primary (the node with the sockets) acknowledges submits.
        if hub.is_some() {
            redis.check(&settings.queue).await?;
        }
        let node = node_name(&settings.cluster.node_name);
        let process = format!("{node}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let bus = Bus::start(redis.clone(), process.clone(), hub, stop);
        let lease = Duration::from_secs(settings.queue.lease_secs);
        let queue = RedisQueue::open(
            redis.clone(),
            bus.clone(),
            &process,
            lease,
            settings.tasks.queue_capacity,
        )
        .await
        .map_err(|e| {
            misconfigured(
                "redis.url",
                format!("cannot create the queue's streams: {e}"),
            )
        })?;
        let every = Duration::from_secs(settings.cluster.heartbeat_secs);
        Ok(Self {
            nodes: Nodes::new(redis.clone(), every),
            queue: std::sync::Arc::new(queue),
            bus,
            redis,
            process,
        })
    }

    /// What this process says of itself in the node registry.
    pub fn node_info(&self, role: &str, slots: usize) -> NodeInfo {
        let now = time::OffsetDateTime::now_utc();
        NodeInfo {
            id: self.process.clone(),
            role: role.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            slots,
            started_at: now,
            last_beat: now,
        }
    }
}

/// `configured`, else the host name.
fn node_name(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}
