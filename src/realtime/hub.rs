//! The hub fans events out to WebSocket connections. A leaf: it routes events by user and
//! topic and never builds one from a task or an agent (their builders live with them).
//!
//! Each connection owns a bounded queue; a send never waits. A connection whose queue is full
//! is a slow consumer: it is dropped (its socket task sees the queue close and closes the
//! socket with 1013) so one slow client never delays anyone else. Messages are serialised once
//! per event, not once per connection.
//!
//! Routing: task updates go to the task's owner and to the watchers of [`Topic::Tasks`] (admins,
//! who watch it from the start and may unsubscribe), agent updates and system messages to
//! everyone, and topic messages (an agent's live statistics, the queue's depth) to the
//! connections that subscribed to the topic. Connections are indexed by user and by topic, so
//! a targeted message costs the size of its audience, not of the hub, and no event is
//! serialised while the index is locked.
//!
//! Topic messages are coalesced: [`Hub::touch`] records that a topic changed, and its message
//! is built and sent at most once per [`TOPIC_INTERVAL`] for all topics together, from the
//! state at sending time. Nothing is scheduled while nobody watches, so an idle hub costs no
//! CPU.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Messages a connection may have queued before it counts as slow.
const CONNECTION_QUEUE: usize = 256;
/// Topics one connection may watch at once.
pub const MAX_TOPICS: usize = 16;
/// Shortest time between two sends of topic messages.
pub const TOPIC_INTERVAL: Duration = Duration::from_secs(1);

/// A message as sent: `{type, timestamp, data}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub data: Value,
}

impl Event {
    pub fn new(kind: impl Into<String>, data: Value) -> Self {
        Self {
            kind: kind.into(),
            timestamp: OffsetDateTime::now_utc(),
            data,
        }
    }

    pub fn system(message: &str, level: &str) -> Self {
        Self::new("system", json!({"message": message, "level": level}))
    }

    /// A client message the server could not take.
    pub fn error(code: &str, message: &str) -> Self {
        Self::new("error", json!({"code": code, "message": message}))
    }

    /// The message as sent: serialised once, then shared by every connection it goes to
    /// (cloning it bumps a reference count; the socket writes it without copying it first).
    pub fn to_text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .expect("events serialise")
            .into()
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub user_id: Uuid,
    /// Admins may watch [`Topic::Tasks`], and do from the start.
    pub admin: bool,
    /// The API key the connection was opened with, if not a session.
    pub key_id: Option<Uuid>,
    /// The session the connection was opened with, if it has an id.
    pub session_id: Option<Uuid>,
}

/// What a connection can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `tasks`: every user's task updates (admins only).
    Tasks,
    /// `queue`: the queue's depth and the tasks running, server-wide.
    Queue,
    /// `agent:<id>`: one agent's live statistics.
    Agent(Uuid),
}

impl Topic {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tasks" => Some(Topic::Tasks),
            "queue" => Some(Topic::Queue),
            _ => s
                .strip_prefix("agent:")
                .and_then(|id| Uuid::parse_str(id).ok())
                .map(Topic::Agent),
        }
    }
}

/// Which of a user's connections a sign-out ends: plain data, so it can travel to other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum SignOut {
    /// Those opened with a session token (a password change ended the sessions).
    Sessions,
    /// Those opened with this API key (it was revoked).
    Key(Uuid),
    /// Those opened with this session (it was signed out).
    Session(Uuid),
}

impl SignOut {
    fn matches(self, peer: &Peer) -> bool {
        match self {
            SignOut::Sessions => peer.key_id.is_none(),
            SignOut::Key(id) => peer.key_id == Some(id),
            SignOut::Session(id) => peer.key_id.is_none() && peer.session_id == Some(id),
        }
    }
}

/// Why the hub closed a connection, for its close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its queue overflowed.
    Slow,
    /// Its credential stopped working (API key revoked, password changed).
    SignedOut,
}

struct Connection {
    peer: Peer,
    tx: mpsc::Sender<Utf8Bytes>,
    topics: Vec<Topic>,
}

/// The connections and their indexes. Every id in an index is in `connections`.
#[derive(Default)]
struct Registry {
    connections: HashMap<u64, Connection>,
    /// A user's connections: a handful each, so a list.
    by_user: HashMap<Uuid, Vec<u64>>,
    /// A topic's watchers: up to every connection (`queue` on every dashboard), so a set.
    topics: HashMap<Topic, HashSet<u64>>,
}

impl Registry {
    fn insert(&mut self, id: u64, conn: Connection) {
        self.by_user.entry(conn.peer.user_id).or_default().push(id);
        for topic in &conn.topics {
            self.topics.entry(*topic).or_default().insert(id);
        }
        self.connections.insert(id, conn);
    }

    fn remove(&mut self, id: u64) -> Option<Connection> {
        let conn = self.connections.remove(&id)?;
        if let Some(ids) = self.by_user.get_mut(&conn.peer.user_id) {
            if let Some(at) = ids.iter().position(|&i| i == id) {
                ids.swap_remove(at);
            }
            if ids.is_empty() {
                self.by_user.remove(&conn.peer.user_id);
            }
        }
        for topic in &conn.topics {
            self.unwatch_index(*topic, id);
        }
        Some(conn)
    }

    fn unwatch_index(&mut self, topic: Topic, id: u64) {
        if let Some(ids) = self.topics.get_mut(&topic) {
            ids.remove(&id);
            if ids.is_empty() {
                self.topics.remove(&topic);
            }
        }
    }
}

/// Why a watch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchError {
    /// The connection watches [`MAX_TOPICS`] already.
    TooMany,
    /// Only admins may watch [`Topic::Tasks`].
    Forbidden,
    /// The connection is closing.
    Gone,
}

#[derive(Default)]
struct Counters {
    total_connections: AtomicU64,
    messages_sent: AtomicU64,
    dropped: AtomicU64,
}

/// A topic message waiting for the next flush, built from the state at sending time (`None`:
/// nothing to say any more).
pub type TopicMessage = Box<dyn FnOnce() -> Option<Event> + Send>;

#[derive(Default)]
struct Coalescer {
    pending: HashMap<Topic, TopicMessage>,
    flush_scheduled: bool,
    last_flush: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    /// A std RwLock: held to look connections up and `try_send`, never across an await.
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    counters: Counters,
    /// A std Mutex: held to record or take pending topics.
    coalescer: Mutex<Coalescer>,
    /// Why the hub closed a connection, taken by its socket task when its queue ends.
    closed: Mutex<HashMap<u64, CloseReason>>,
    /// Each user's claimed [`Slot`]s: their connections, counted from before the upgrade
    /// (so concurrent upgrades cannot pass a cap together) to the socket's end.
    slots: Mutex<HashMap<Uuid, u64>>,
}

/// Shared hub handle. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A registered connection's receiving end; dropping it unregisters the connection.
pub struct Subscription {
    pub id: u64,
    pub rx: mpsc::Receiver<Utf8Bytes>,
    hub: Hub,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.registry_mut().remove(self.id);
        self.hub.closed().remove(&self.id);
    }
}

/// One of a user's connections, claimed before its upgrade; dropping it frees the place.
pub struct Slot {
    hub: Hub,
    user: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.hub.inner.slots.lock().expect("hub slots");
        if let Some(n) = slots.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                slots.remove(&self.user);
            }
        }
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
    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.inner.registry.read().expect("hub lock")
    }

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.inner.registry.write().expect("hub lock")
    }

    fn closed(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CloseReason>> {
        self.inner.closed.lock().expect("hub close reasons")
    }

    /// Claims a place for one more connection of `user`, unless they hold `limit` already
    /// (`Err` with how many they hold). `None`: no limit.
    pub fn claim_slot(&self, user: Uuid, limit: Option<u64>) -> Result<Slot, u64> {
        let mut slots = self.inner.slots.lock().expect("hub slots");
        let held = slots.entry(user).or_default();
        if limit.is_some_and(|limit| *held >= limit) {
            return Err(*held);
        }
        *held += 1;
        Ok(Slot {
            hub: self.clone(),
            user,
        })
    }

    pub fn subscribe(&self, peer: Peer) -> Subscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        let topics = if peer.admin {
            vec![Topic::Tasks]
        } else {
            Vec::new()
        };
        self.registry_mut()
            .insert(id, Connection { peer, tx, topics });
        self.inner
            .counters
            .total_connections
            .fetch_add(1, Ordering::Relaxed);
        Subscription {
            id,
            rx,
            hub: self.clone(),
        }
    }

    /// Sends to every connection; returns how many it reached.
    pub fn broadcast(&self, event: Event) -> usize {
        let text = event.to_text();
        let slow;
        let sent;
        {
            let registry = self.registry();
            (sent, slow) = self.deliver(&registry, registry.connections.keys().copied(), &text);
        }
        self.drop_slow(slow);
        sent
    }

    /// Sends to the connections of one user (not to admins); returns how many it reached. The
    /// event is built only if that user is connected.
    pub fn send_to_user(&self, user_id: Uuid, event: impl FnOnce() -> Event) -> usize {
        self.send(
            |r| r.by_user.get(&user_id).cloned().unwrap_or_default(),
            event,
        )
    }

    /// A task update: to the owner's connections and the watchers of [`Topic::Tasks`]. Built
    /// only if one of them is connected: the task pipeline announces every change, mostly to
    /// nobody.
    pub fn send_task_update(&self, owner: Uuid, event: impl FnOnce() -> Event) {
        self.send(
            |r| {
                let mut ids = r.by_user.get(&owner).cloned().unwrap_or_default();
                // An admin's own task reaches each of their connections once.
                if let Some(watchers) = r.topics.get(&Topic::Tasks) {
                    ids.extend(
                        watchers
                            .iter()
                            .filter(|id| r.connections[id].peer.user_id != owner),
                    );
                }
                ids
            },
            event,
        );
    }

    /// Sends to the watchers of `topic` now; see [`Hub::touch`] for coalesced sends.
    pub fn publish(&self, topic: Topic, event: impl FnOnce() -> Event) -> usize {
        self.send(
            |r| {
                r.topics
                    .get(&topic)
                    .map(|ids| ids.iter().copied().collect())
                    .unwrap_or_default()
            },
            event,
        )
    }

    /// Whether any connection watches `topic`.
    pub fn watched(&self, topic: Topic) -> bool {
        self.registry().topics.contains_key(&topic)
    }

    /// Notes that `topic` changed: `build` makes its message at the next flush (the latest
    /// `build` of a topic wins). Costs a map lookup when nobody watches the topic.
    pub fn touch(&self, topic: Topic, build: TopicMessage) {
        if !self.watched(topic) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut coalescer = self.inner.coalescer.lock().expect("hub coalescer");
        coalescer.pending.insert(topic, build);
        if coalescer.flush_scheduled {
            return;
        }
        coalescer.flush_scheduled = true;
        let delay = coalescer.last_flush.map_or(Duration::ZERO, |at| {
            (at + TOPIC_INTERVAL).saturating_duration_since(Instant::now())
        });
        let hub = self.clone();
        runtime.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            hub.flush_topics();
        });
    }

    fn flush_topics(&self) {
        let pending = {
            let mut coalescer = self.inner.coalescer.lock().expect("hub coalescer");
            coalescer.flush_scheduled = false;
            coalescer.last_flush = Some(Instant::now());
            std::mem::take(&mut coalescer.pending)
        };
        for (topic, build) in pending {
            if let Some(event) = build() {
                self.publish(topic, || event);
            }
        }
    }

    /// Subscribes connection `id` to `topic`.
    pub fn watch(&self, id: u64, topic: Topic) -> Result<(), WatchError> {
        let mut registry = self.registry_mut();
        let Some(conn) = registry.connections.get_mut(&id) else {
            return Err(WatchError::Gone);
        };
        if conn.topics.contains(&topic) {
            return Ok(());
        }
        if topic == Topic::Tasks && !conn.peer.admin {
            return Err(WatchError::Forbidden);
        }
        if conn.topics.len() >= MAX_TOPICS {
            return Err(WatchError::TooMany);
        }
        conn.topics.push(topic);
        registry.topics.entry(topic).or_default().insert(id);
        Ok(())
    }

    pub fn unwatch(&self, id: u64, topic: Topic) {
        let mut registry = self.registry_mut();
        if let Some(conn) = registry.connections.get_mut(&id)
            && let Some(at) = conn.topics.iter().position(|t| *t == topic)
        {
            conn.topics.swap_remove(at);
            registry.unwatch_index(topic, id);
        }
    }

    /// Closes the connections of `user_id` that `which` names (1008); returns how many.
    pub fn sign_out(&self, user_id: Uuid, which: SignOut) -> usize {
        let mut registry = self.registry_mut();
        let ids: Vec<u64> = registry
            .by_user
            .get(&user_id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| which.matches(&registry.connections[id].peer))
            .collect();
        let mut closed = self.closed();
        for id in &ids {
            // Dropping the sender ends the queue; the socket task then closes the socket.
            registry.remove(*id);
            closed.insert(*id, CloseReason::SignedOut);
        }
        ids.len()
    }

    /// Why the hub ended connection `id`'s queue.
    pub fn close_reason(&self, id: u64) -> CloseReason {
        self.closed().remove(&id).unwrap_or(CloseReason::Slow)
    }

    /// Sends to the connections `targets` picks. The event is serialised between two short
    /// read locks, not under one: a task's query can be long.
    fn send(
        &self,
        targets: impl FnOnce(&Registry) -> Vec<u64>,
        event: impl FnOnce() -> Event,
    ) -> usize {
        let ids = targets(&self.registry());
        if ids.is_empty() {
            return 0;
        }
        let text = event().to_text();
        let (sent, slow) = {
            let registry = self.registry();
            self.deliver(&registry, ids.into_iter(), &text)
        };
        self.drop_slow(slow);
        sent
    }

    /// Queues `text` on each target; returns how many took it and the ids that were full.
    fn deliver(
        &self,
        registry: &Registry,
        targets: impl Iterator<Item = u64>,
        text: &Utf8Bytes,
    ) -> (usize, Vec<u64>) {
        let mut sent = 0;
        let mut slow = Vec::new();
        for id in targets {
            let Some(conn) = registry.connections.get(&id) else {
                continue;
            };
            match conn.tx.try_send(text.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(id),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.inner
            .counters
            .messages_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        (sent, slow)
    }

    fn drop_slow(&self, slow: Vec<u64>) {
        if slow.is_empty() {
            return;
        }
        let mut registry = self.registry_mut();
        for id in slow {
            // Dropping the sender closes the queue; the socket task then closes with 1013.
            if registry.remove(id).is_some() {
                self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(connection = id, "dropping slow WebSocket consumer");
            }
        }
    }

    pub fn stats(&self) -> HubStats {
        let c = &self.inner.counters;
        HubStats {
            current_connections: self.registry().connections.len(),
            total_connections: c.total_connections.load(Ordering::Relaxed),
            messages_sent: c.messages_sent.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(user_id: Uuid, admin: bool) -> Peer {
        Peer {
            user_id,
            admin,
            key_id: None,
            session_id: None,
        }
    }

    fn drain(sub: &mut Subscription) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(text) = sub.rx.try_recv() {
            out.push(
                serde_json::from_str::<Value>(&text).unwrap()["data"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        out
    }

    #[tokio::test]
    async fn routes_per_user_and_drops_slow_consumers() {
        let hub = Hub::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let mut a = hub.subscribe(peer(alice, false));
        let mut b = hub.subscribe(peer(bob, false));
        assert_eq!(
            hub.send_to_user(alice, || Event::system("for alice", "info")),
            1
        );
        assert_eq!(hub.broadcast(Event::system("for all", "info")), 2);
        assert_eq!(drain(&mut a), ["for alice", "for all"]);
        assert_eq!(drain(&mut b), ["for all"]);

        for _ in 0..=CONNECTION_QUEUE {
            hub.send_to_user(alice, || Event::system("flood", "info"));
        }
        let stats = hub.stats();
        assert_eq!((stats.current_connections, stats.dropped), (1, 1));
        assert_eq!(hub.close_reason(a.id), CloseReason::Slow);
        // The slow connection's queue is closed after its buffered messages.
        let mut received = 0;
        while a.rx.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, CONNECTION_QUEUE);
        drop(b);
        assert_eq!(hub.stats().current_connections, 0);
        assert!(hub.registry().by_user.is_empty(), "indexes follow removals");
    }

    #[tokio::test]
    async fn task_updates_reach_the_owner_and_admins_once_each() {
        let hub = Hub::default();
        let (owner, admin, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut o = hub.subscribe(peer(owner, false));
        let mut ad = hub.subscribe(peer(admin, true));
        let mut x = hub.subscribe(peer(other, false));
        hub.send_task_update(owner, || Event::system("task", "info"));
        assert_eq!(drain(&mut o), ["task"]);
        assert_eq!(drain(&mut ad), ["task"]);
        assert!(drain(&mut x).is_empty());
        // An admin's own task: once, not twice.
        hub.send_task_update(admin, || Event::system("mine", "info"));
        assert_eq!(drain(&mut ad), ["mine"]);
        // Admins see everyone's tasks, until they unsubscribe.
        hub.send_task_update(Uuid::new_v4(), || Event::system("a stranger's", "info"));
        assert_eq!(drain(&mut ad), ["a stranger's"]);
        hub.unwatch(ad.id, Topic::Tasks);
        hub.send_task_update(owner, || Event::system("again", "info"));
        assert!(drain(&mut ad).is_empty());
        assert_eq!(hub.watch(ad.id, Topic::Tasks), Ok(()));
        assert_eq!(hub.watch(x.id, Topic::Tasks), Err(WatchError::Forbidden));
        drop(ad);
        assert!(hub.registry().topics.is_empty());
        // Nobody to tell: the event is never built.
        hub.send_task_update(Uuid::new_v4(), || panic!("built for nobody"));
    }

    #[tokio::test]
    async fn topics_reach_their_watchers_and_coalesce() {
        let hub = Hub::default();
        let agent = Topic::Agent(Uuid::new_v4());
        let mut w = hub.subscribe(peer(Uuid::new_v4(), false));
        let mut other = hub.subscribe(peer(Uuid::new_v4(), false));
        hub.touch(agent, Box::new(|| panic!("nobody watches")));
        assert_eq!(hub.watch(w.id, agent), Ok(()));
        assert_eq!(hub.watch(w.id, Topic::Queue), Ok(()));
        assert_eq!(hub.publish(agent, || Event::system("now", "info")), 1);
        assert_eq!(drain(&mut w), ["now"]);

        // The first touch is sent at once; the ones after it within the interval coalesce
        // into one message built from the last, sent when the interval has passed.
        let started = Instant::now();
        hub.touch(agent, Box::new(|| Some(Event::system("first", "info"))));
        let first = tokio::time::timeout(Duration::from_secs(10), w.rx.recv()).await;
        assert!(first.unwrap().unwrap().contains("first"));
        for n in 0..5 {
            hub.touch(
                agent,
                Box::new(move || Some(Event::system(&format!("later {n}"), "info"))),
            );
        }
        let early = tokio::time::timeout(TOPIC_INTERVAL / 2, w.rx.recv()).await;
        assert!(early.is_err(), "held until the interval passes");
        let later = tokio::time::timeout(Duration::from_secs(10), w.rx.recv()).await;
        assert!(later.unwrap().unwrap().contains("later 4"));
        assert!(started.elapsed() >= TOPIC_INTERVAL);
        assert!(drain(&mut w).is_empty(), "one message for the five touches");
        assert!(drain(&mut other).is_empty());

        hub.unwatch(w.id, agent);
        assert!(!hub.watched(agent));
        for n in 0..MAX_TOPICS {
            hub.watch(other.id, Topic::Agent(Uuid::from_u128(n as u128)))
                .unwrap();
        }
        assert_eq!(hub.watch(other.id, Topic::Queue), Err(WatchError::TooMany));
        drop(other);
        assert_eq!(
            hub.registry().topics.len(),
            1,
            "only w's queue watch is left"
        );
    }

    #[tokio::test]
    async fn a_sign_out_closes_the_connections_it_names_with_its_reason() {
        let hub = Hub::default();
        let user = Uuid::new_v4();
        let key = Uuid::new_v4();
        let mut session = hub.subscribe(peer(user, false));
        let mut scripted = hub.subscribe(Peer {
            user_id: user,
            admin: false,
            key_id: Some(key),
            session_id: None,
        });
        let signed_in = Uuid::new_v4();
        let mut browser = hub.subscribe(Peer {
            session_id: Some(signed_in),
            ..peer(user, false)
        });
        assert_eq!(hub.sign_out(user, SignOut::Key(key)), 1);
        assert!(scripted.rx.recv().await.is_none());
        assert_eq!(hub.close_reason(scripted.id), CloseReason::SignedOut);
        assert_eq!(hub.sign_out(user, SignOut::Session(signed_in)), 1);
        assert!(browser.rx.recv().await.is_none());
        assert_eq!(
            hub.send_to_user(user, || Event::system("still here", "info")),
            1
        );
        assert_eq!(drain(&mut session), ["still here"]);
        assert_eq!(hub.stats().dropped, 0, "a sign-out is not a slow consumer");
    }

    #[test]
    fn topics_parse() {
        let id = Uuid::new_v4();
        assert_eq!(Topic::parse("queue"), Some(Topic::Queue));
        assert_eq!(Topic::parse(&format!("agent:{id}")), Some(Topic::Agent(id)));
        assert_eq!(Topic::parse("agent:nope"), None);
        assert_eq!(Topic::parse("tasks"), Some(Topic::Tasks));
        assert_eq!(Topic::parse("everything"), None);
    }
}
