//! One module per resource.

use crate::error::{ApiError, Code};

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

/// Parses a query parameter as an integer in `min..=max`.
pub fn parse_bounded(name: &str, value: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(ApiError::new(
            Code::InvalidRequest,
            format!("{name} must be an integer ≥ {min}"),
        )),
        _ => Err(ApiError::new(
            Code::InvalidRequest,
            format!("{name} must be an integer between {min} and {max}"),
        )),
    }
}
