//! The message bus between nodes, on Redis pub/sub: wake-ups (a task was pushed), cancels (stop
//! task X wherever it runs) and live task events from the worker nodes, which the primary
//! delivers to its hub (a user's socket hears of an event whichever node produced it). The
//! primary's own events go to its hub directly: no other node has sockets. Pub/sub is fire-and-forget: nothing here carries state
//! that matters after a lost message (a missed wake-up is covered by the queue's polling, a
//! missed cancel by the cancel's own wait, a missed event by the next one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Redis;
use crate::realtime::{Event, Hub};

/// A task event crossing to the node with the sockets. Only task events cross: anyone who can
/// publish on Redis could send one, and a task event reaches only its owner (and admins).
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The node that sent it.
    origin: String,
    owner: Uuid,
    event: Event,
}

struct Inner {
    redis: Redis,
    /// This process's name on the bus.
    origin: String,
    pushed: Arc<Notify>,
    /// Runs of this process by task, to stop when a cancel arrives.
    runs: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Where events from other nodes go (nodes that serve WebSockets).
    hub: Mutex<Option<Hub>>,
}

/// The bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus(Arc<Inner>);

impl Bus {
    /// Subscribes (and re-subscribes after every lost connection) until `stop`.
    /// With a `hub` (the primary's), task events from the other nodes go to it.
    pub fn start(redis: Redis, origin: String, hub: Option<Hub>, stop: CancellationToken) -> Self {
        let bus = Self(Arc::new(Inner {
            redis,
            origin,
            pushed: Arc::new(Notify::new()),
            runs: Mutex::default(),
            hub: Mutex::new(hub),
        }));
        let listener = bus.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = listener.listen() => {}
                _ = stop.cancelled() => {}
            }
        });
        bus
    }

    /// Notified whenever any node pushes a task.
    pub fn pushed(&self) -> Arc<Notify> {
        self.0.pushed.clone()
    }

    pub fn wake_channel(&self) -> String {
        self.0.redis.key("wake")
    }

    fn cancel_channel(&self) -> String {
        self.0.redis.key("cancel")
    }

    fn events_channel(&self) -> String {
        self.0.redis.key("events")
    }

    /// Tells every node to stop task `id` if it runs it.
    pub fn cancel(&self, id: Uuid) {
        self.publish(self.cancel_channel(), id.to_string());
    }

    /// Stops `token` when a cancel of task `id` arrives, until the guard drops.
    pub fn watch_cancel(&self, id: Uuid, token: CancellationToken) -> CancelWatch {
        self.0.runs.lock().expect("bus runs").insert(id, token);
        CancelWatch(self.clone(), id)
    }

    fn publish(&self, channel: String, payload: String) {
        let redis = self.0.redis.clone();
        tokio::spawn(async move {
            let mut conn = redis.conn();
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(channel).arg(payload);
            if let Err(e) = redis.call(publish.query_async::<i64>(&mut conn)).await {
                tracing::debug!(error = %e, "could not publish on the bus");
            }
        });
    }

    /// Subscribes and dispatches; reconnects after a second when the connection drops.
    async fn listen(&self) {
        loop {
            match self.subscribed().await {
                Ok(mut pubsub) => {
                    // Pushes may have been missed while disconnected.
                    self.0.pushed.notify_waiters();
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let payload: String = msg.get_payload().unwrap_or_default();
                        self.dispatch(msg.get_channel_name(), &payload);
                    }
                    tracing::warn!("lost the Redis bus; reconnecting");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot subscribe to the Redis bus; retrying")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn subscribed(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = self.0.redis.client().get_async_pubsub().await?;
        let mut channels = vec![self.wake_channel(), self.cancel_channel()];
        if self.0.hub.lock().expect("bus hub").is_some() {
            channels.push(self.events_channel());
        }
        pubsub.subscribe(&channels).await?;
        Ok(pubsub)
    }

    fn dispatch(&self, channel: &str, payload: &str) {
        if channel == self.wake_channel() {
            // One push, one slot of this node to look (a permit waits if none is waiting).
            self.0.pushed.notify_one();
        } else if channel == self.cancel_channel() {
            let token = payload
                .parse::<Uuid>()
                .ok()
                .and_then(|id| self.0.runs.lock().expect("bus runs").get(&id).cloned());
            if let Some(token) = token {
                token.cancel();
            }
        } else if channel == self.events_channel() {
            self.deliver(payload);
        }
    }

    fn deliver(&self, payload: &str) {
        let Ok(message) = serde_json::from_str::<Message>(payload) else {
            tracing::warn!("an unreadable event on the bus; ignored");
            return;
        };
        if message.origin == self.0.origin {
            return;
        }
        let Some(hub) = self.0.hub.lock().expect("bus hub").clone() else {
            return;
        };
        let event = message.event;
        hub.send_task_update(message.owner, || event);
    }
}

/// Keeps a run's cancel watch while it lasts.
pub struct CancelWatch(Bus, Uuid);

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.0.0.runs.lock().expect("bus runs").remove(&self.1);
    }
}

impl Bus {
    /// Publishes an event for `owner`'s sockets, for the node that holds them (a worker node
    /// has none of its own).
    pub fn task_event(&self, owner: Uuid, event: Event) {
        let message = Message {
            origin: self.0.origin.clone(),
            owner,
            event,
        };
        match serde_json::to_string(&message) {
            Ok(json) => self.publish(self.events_channel(), json),
            Err(e) => tracing::error!(error = %e, "an event that does not serialise"),
        }
    }
}
