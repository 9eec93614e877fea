//! The event fan-out seam: how the domain (accounts, the marketplace, the orchestrator) sends
//! live messages without knowing where the sockets are.
//!
//! The implementation is the [`Hub`] of this process, in both modes: only the primary has
//! sockets, and every task change is journaled there. In compatibility mode the worker nodes'
//! own task events reach this hub over the Redis bus (`cluster::Bus`). Builders run in the
//! sending process; what could cross to another node is what they build (events) and plain
//! data (users, topics, [`SignOut`]).

use uuid::Uuid;

use super::hub::{Event, Hub, SignOut, Topic, TopicMessage};

/// Where live messages go. Cheap to call when nobody listens: builders run only for an
/// audience.
pub trait Fanout: Send + Sync {
    /// To every connection; returns how many it reached.
    fn broadcast(&self, event: Event) -> usize;

    /// To one user's connections (not to admins); returns how many it reached. `event` is
    /// built only if that user is connected.
    fn send_to_user(&self, user: Uuid, event: &dyn Fn() -> Event) -> usize;

    /// A task update: to the owner's connections and the watchers of [`Topic::Tasks`], built
    /// only if one of them is connected.
    fn send_task_update(&self, owner: Uuid, event: &dyn Fn() -> Event);

    /// `topic` changed: `build` makes its message at the next coalesced flush.
    fn touch(&self, topic: Topic, build: TopicMessage);

    /// Ends the connections of `user` that `which` names; returns how many.
    fn sign_out(&self, user: Uuid, which: SignOut) -> usize;
}

impl Fanout for Hub {
    fn broadcast(&self, event: Event) -> usize {
        Hub::broadcast(self, event)
    }

    fn send_to_user(&self, user: Uuid, event: &dyn Fn() -> Event) -> usize {
        Hub::send_to_user(self, user, event)
    }

    fn send_task_update(&self, owner: Uuid, event: &dyn Fn() -> Event) {
        Hub::send_task_update(self, owner, event)
    }

    fn touch(&self, topic: Topic, build: TopicMessage) {
        Hub::touch(self, topic, build)
    }

    fn sign_out(&self, user: Uuid, which: SignOut) -> usize {
        Hub::sign_out(self, user, which)
    }
}
