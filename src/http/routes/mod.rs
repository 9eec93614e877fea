//! One module per resource.

pub mod agents;
pub mod auctions;
pub mod health;
pub mod tasks;
pub mod users;
pub mod ws;

/// Tags used to group operations in the OpenAPI document.
pub mod tags {
    pub const USERS: &str = "users";
    pub const AGENTS: &str = "agents";
    pub const TASKS: &str = "tasks";
    pub const REALTIME: &str = "realtime";
    pub const OPERATIONS: &str = "operations";
}

/// Pagination bounds shared by list routes.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
