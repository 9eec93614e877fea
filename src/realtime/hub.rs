//! The hub fans events out to WebSocket connections.
//!
//! Each connection owns a bounded queue; a send never waits. A connection whose queue is full
//! is a slow consumer: it is dropped (its socket task sees the queue close and ends the
//! connection) so one slow client never delays anyone else. Messages are serialised once per
//! event, not once per connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::agents::Agent;
use crate::orchestrator::{Task, TaskStatus};

/// Messages a connection may have queued before it counts as slow.
const CONNECTION_QUEUE: usize = 256;

/// A message as sent: `{type, timestamp, data}`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub data: Value,
}

impl Event {
    pub fn new(kind: &'static str, data: Value) -> Self {
        Self {
            kind,
            timestamp: OffsetDateTime::now_utc(),
            data,
        }
    }

    pub fn task_update(task: &Task) -> Self {
        Self::new(
            "task_update",
            json!({
                "task_id": task.id,
                "status": task.status,
                "query": task.query,
                "agent_id": task.agent_id,
                // 1-based number of the run this update is about.
                "attempt": task.attempts.len() + usize::from(task.status == TaskStatus::Running),
                "error": task.error,
            }),
        )
    }

    pub fn agent_update(agent: &Agent, action: &str) -> Self {
        Self::new(
            "agent_update",
            json!({"agent_id": agent.id, "name": agent.name, "action": action, "status": agent.status}),
        )
    }

    /// A version of the agent was added, replaced, deleted, or made current again
    /// (`change`: added | replaced | deleted | rollback).
    pub fn agent_version(agent: &Agent, version: &str, change: &str) -> Self {
        Self::new(
            "agent_update",
            json!({"agent_id": agent.id, "name": agent.name, "action": "version",
                "version": version, "change": change, "current_version": agent.version,
                "status": agent.status}),
        )
    }

    pub fn system(message: &str, level: &str) -> Self {
        Self::new("system", json!({"message": message, "level": level}))
    }

    pub fn to_text(&self) -> Arc<str> {
        serde_json::to_string(self)
            .expect("events serialise")
            .into()
    }
}

struct Connection {
    user_id: Uuid,
    tx: mpsc::Sender<Arc<str>>,
}

#[derive(Default)]
struct Counters {
    total_connections: AtomicU64,
    messages_sent: AtomicU64,
    dropped: AtomicU64,
}

/// Shared hub handle. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    /// A std RwLock: held only to clone senders, never across an await.
    connections: Arc<RwLock<HashMap<u64, Connection>>>,
    next_id: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

/// A registered connection's receiving end; dropping it unregisters the connection.
pub struct Subscription {
    pub id: u64,
    pub rx: mpsc::Receiver<Arc<str>>,
    hub: Hub,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .connections
            .write()
            .expect("hub lock")
            .remove(&self.id);
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HubStats {
    pub current_connections: usize,
    pub total_connections: u64,
    pub messages_sent: u64,
    /// Connections dropped because they could not keep up.
    pub dropped: u64,
}

impl Hub {
    pub fn subscribe(&self, user_id: Uuid) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        self.connections
            .write()
            .expect("hub lock")
            .insert(id, Connection { user_id, tx });
        self.counters
            .total_connections
            .fetch_add(1, Ordering::Relaxed);
        Subscription {
            id,
            rx,
            hub: self.clone(),
        }
    }

    /// Sends to every connection.
    pub fn broadcast(&self, event: Event) {
        self.deliver(|| event, |_| true);
    }

    /// Sends to the connections of one user. The event is built only if that user is
    /// connected: the task pipeline announces every change, mostly to nobody.
    pub fn send_to_user(&self, user_id: Uuid, event: impl FnOnce() -> Event) {
        self.deliver(event, |c| c.user_id == user_id);
    }

    fn deliver(&self, event: impl FnOnce() -> Event, wanted: impl Fn(&Connection) -> bool) {
        let mut event = Some(event);
        let mut text = None;
        let mut slow = Vec::new();
        {
            let connections = self.connections.read().expect("hub lock");
            for (id, conn) in connections.iter().filter(|(_, c)| wanted(c)) {
                let text: &Arc<str> =
                    text.get_or_insert_with(|| event.take().expect("built once")().to_text());
                match conn.tx.try_send(text.clone()) {
                    Ok(()) => {
                        self.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        if !slow.is_empty() {
            let mut connections = self.connections.write().expect("hub lock");
            for id in slow {
                // Dropping the sender closes the queue; the socket task then closes with 1013.
                if connections.remove(&id).is_some() {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(connection = id, "dropping slow WebSocket consumer");
                }
            }
        }
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            current_connections: self.connections.read().expect("hub lock").len(),
            total_connections: self.counters.total_connections.load(Ordering::Relaxed),
            messages_sent: self.counters.messages_sent.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_per_user_and_drops_slow_consumers() {
        let hub = Hub::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let mut a = hub.subscribe(alice);
        let mut b = hub.subscribe(bob);
        hub.send_to_user(alice, || Event::system("for alice", "info"));
        hub.broadcast(Event::system("for all", "info"));
        assert!(a.rx.recv().await.unwrap().contains("for alice"));
        assert!(a.rx.recv().await.unwrap().contains("for all"));
        assert!(b.rx.recv().await.unwrap().contains("for all"));
        assert!(b.rx.try_recv().is_err());

        for _ in 0..=CONNECTION_QUEUE {
            hub.send_to_user(alice, || Event::system("flood", "info"));
        }
        let stats = hub.stats();
        assert_eq!((stats.current_connections, stats.dropped), (1, 1));
        // The slow connection's queue is closed after its buffered messages.
        let mut received = 0;
        while a.rx.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, CONNECTION_QUEUE);
        drop(b);
        assert_eq!(hub.stats().current_connections, 0);
    }
}
