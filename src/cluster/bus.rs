//! The message bus between nodes, on Redis pub/sub: wake-ups (a task was pushed), cancels (stop
//! task X wherever it runs) and live events ([`RedisFanout`]: a user's socket hears of an
//! event whichever node produced it). Pub/sub is fire-and-forget: nothing here carries state
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
use crate::realtime::{Event, Fanout, Hub, SignOut, Topic, TopicMessage};

/// An event crossing to the other nodes' hubs.
#[derive(Debug, Serialize, Deserialize)]
enum Envelope {
    Broadcast(Event),
    User { user: Uuid, event: Event },
    TaskUpdate { owner: Uuid, event: Event },
    SignOut { user: Uuid, which: SignOut },
}

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The node that sent it: it delivered it to its own hub already.
    origin: String,
    body: Envelope,
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
    pub fn start(redis: Redis, origin: String, stop: CancellationToken) -> Self {
        let bus = Self(Arc::new(Inner {
            redis,
            origin,
            pushed: Arc::new(Notify::new()),
            runs: Mutex::default(),
            hub: Mutex::default(),
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

    /// Events from other nodes go to `hub` from now on.
    pub fn deliver_to(&self, hub: Hub) {
        *self.0.hub.lock().expect("bus hub") = Some(hub);
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

    fn send(&self, body: Envelope) {
        let message = Message {
            origin: self.0.origin.clone(),
            body,
        };
        match serde_json::to_string(&message) {
            Ok(json) => self.publish(self.events_channel(), json),
            Err(e) => tracing::error!(error = %e, "an event that does not serialise"),
        }
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
        pubsub
            .subscribe(&[
                self.wake_channel(),
                self.cancel_channel(),
                self.events_channel(),
            ])
            .await?;
        Ok(pubsub)
    }

    fn dispatch(&self, channel: &str, payload: &str) {
        if channel == self.wake_channel() {
            self.0.pushed.notify_waiters();
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
        match message.body {
            Envelope::Broadcast(event) => drop(hub.broadcast(event)),
            Envelope::User { user, event } => drop(hub.send_to_user(user, || event.clone())),
            Envelope::TaskUpdate { owner, event } => hub.send_task_update(owner, || event.clone()),
            Envelope::SignOut { user, which } => drop(hub.sign_out(user, which)),
        }
    }
}

/// Keeps a run's cancel watch while it lasts.
pub struct CancelWatch(Bus, Uuid);

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.0.0.runs.lock().expect("bus runs").remove(&self.1);
    }
}

/// The fan-out of compatibility mode: to this node's hub at once, and over the bus to every
/// other node's. Topic messages stay local: each node builds its own from what it holds.
#[derive(Clone)]
pub struct RedisFanout {
    pub hub: Hub,
    pub bus: Bus,
}

impl Fanout for RedisFanout {
    fn broadcast(&self, event: Event) -> usize {
        self.bus.send(Envelope::Broadcast(event.clone()));
        self.hub.broadcast(event)
    }

    fn send_to_user(&self, user: Uuid, event: &dyn Fn() -> Event) -> usize {
        self.bus.send(Envelope::User {
            user,
            event: event(),
        });
        self.hub.send_to_user(user, event)
    }

    fn send_task_update(&self, owner: Uuid, event: &dyn Fn() -> Event) {
        self.bus.send(Envelope::TaskUpdate {
            owner,
            event: event(),
        });
        self.hub.send_task_update(owner, event)
    }

    fn touch(&self, topic: Topic, build: TopicMessage) {
        self.hub.touch(topic, build)
    }

    fn sign_out(&self, user: Uuid, which: SignOut) -> usize {
        self.bus.send(Envelope::SignOut { user, which });
        self.hub.sign_out(user, which)
    }
}

impl Bus {
    /// Publishes an event for `owner`'s sockets on every node but this one (a worker node
    /// has no sockets of its own).
    pub fn task_event(&self, owner: Uuid, event: Event) {
        self.send(Envelope::TaskUpdate { owner, event });
    }
}
