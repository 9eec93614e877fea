//! The nodes that run tasks: each beats (`{p}:nodes`, a sorted set by last beat, and
//! `{p}:node:<name>`, what it says of itself, expiring after three beats); the primary lists
//! the living and drops those silent for three beats. A dropped node's tasks are taken over by
//! the queue's leases, not here.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::Redis;
use crate::queue::QueueError;

/// What a node says of itself.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Node name and process: unique per running process.
    pub id: String,
    /// `primary` or `worker`.
    pub role: String,
    pub version: String,
    /// Runs it takes at once.
    pub slots: usize,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub last_beat: OffsetDateTime,
}

/// The node registry. Cheap to clone.
#[derive(Clone)]
pub struct Nodes {
    redis: Redis,
    every: Duration,
}

impl Nodes {
    pub fn new(redis: Redis, every: Duration) -> Self {
        Self { redis, every }
    }

    fn silent_after(&self) -> Duration {
        self.every * 3
    }

    /// Beats for `info` until `stop`, then says goodbye (the node leaves the list at once).
    pub async fn beat(&self, mut info: NodeInfo, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.cancelled() => break,
            }
            info.last_beat = OffsetDateTime::now_utc();
            if let Err(e) = self.beat_once(&info).await {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        }
        let mut conn = self.redis.conn();
        let mut gone = redis::pipe();
        gone.cmd("ZREM")
            .arg(self.redis.key("nodes"))
            .arg(&info.id)
            .cmd("DEL")
            .arg(self.redis.key(&format!("node:{}", info.id)));
        let _ = self.redis.call(gone.query_async::<()>(&mut conn)).await;
    }

    async fn beat_once(&self, info: &NodeInfo) -> Result<(), QueueError> {
        let json = serde_json::to_string(info).expect("node info serialises");
        let now_ms = info.last_beat.unix_timestamp_nanos() / 1_000_000;
        let mut conn = self.redis.conn();
        let mut beat = redis::pipe();
        beat.cmd("ZADD")
            .arg(self.redis.key("nodes"))
            .arg(now_ms as i64)
            .arg(&info.id)
            .cmd("SET")
            .arg(self.redis.key(&format!("node:{}", info.id)))
            .arg(json)
            .arg("PX")
            .arg(self.silent_after().as_millis() as u64);
        self.redis.call(beat.query_async::<()>(&mut conn)).await
    }

    /// The living nodes, oldest beat first; drops those silent for three beats.
    pub async fn list(&self) -> Result<Vec<NodeInfo>, QueueError> {
        let now_ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let cutoff = now_ms as i64 - self.silent_after().as_millis() as i64;
        let key = self.redis.key("nodes");
        let mut conn = self.redis.conn();
        let (dropped, ids): (i64, Vec<String>) = self
            .redis
            .call(
                redis::pipe()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(format!("({cutoff}"))
                    .cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn),
            )
            .await?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "dropped worker nodes that stopped beating; their tasks are taken over when their leases expire"
            );
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.redis.key(&format!("node:{id}")))
            .collect();
        let infos: Vec<Option<String>> = self
            .redis
            .call(redis::cmd("MGET").arg(keys).query_async(&mut conn))
            .await?;
        Ok(infos
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }
}
