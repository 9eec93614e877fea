//! Live updates: the WebSocket hub, the messages it carries, and the fan-out seam the domain
//! sends them through.

mod fanout;
mod hub;

pub use fanout::Fanout;
pub use hub::{
    CloseReason, Event, Hub, HubStats, MAX_TOPICS, Peer, SignOut, Slot, Subscription, Topic,
    TopicMessage, WatchError,
};
