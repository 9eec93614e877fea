//! Live updates: the WebSocket hub and the messages it carries.

mod hub;

pub use hub::{
    CloseReason, Event, Hub, HubStats, MAX_TOPICS, Peer, Subscription, Topic, WatchError,
};
