//! Live updates: the WebSocket hub and the messages it carries.

mod hub;

pub use hub::{Event, Hub, HubStats, Subscription};
