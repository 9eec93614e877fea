//! One module per resource.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::HeaderMap;
use uuid::Uuid;

use crate::error::{ApiError, Code};

pub mod agents;
pub mod analytics;
pub mod auctions;
pub mod cluster;
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

/// The id of a route's `{id}`. One that is not a UUID (even one that is not UTF-8) names no
/// such thing: `code`, "no {what} with id `…`".
pub fn path_id(
    path: Result<Path<String>, PathRejection>,
    code: Code,
    what: &str,
) -> Result<Uuid, ApiError> {
    let id = path.map(|Path(id)| id).unwrap_or_default();
    Uuid::parse_str(&id).map_err(|_| ApiError::new(code, format!("no {what} with id `{id}`")))
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

/// Longest `Prefer: wait=N` honoured.
pub const MAX_WAIT_SECS: u64 = 60;

/// The `wait=N` preference of a `Prefer` header (RFC 7240), if any. Other preferences are
/// ignored, as the RFC asks.
pub fn prefer_wait(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    for value in headers.get_all("prefer") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::new(Code::InvalidRequest, "Prefer header is not ASCII"))?;
        for preference in value.split([',', ';']) {
            if let Some((name, secs)) = preference.split_once('=')
                && name.trim().eq_ignore_ascii_case("wait")
            {
                return match secs.trim().parse::<u64>() {
                    Ok(n) if n <= MAX_WAIT_SECS => Ok(Some(n)),
                    _ => Err(ApiError::new(
                        Code::InvalidRequest,
                        format!(
                            "Prefer: wait must be a whole number of seconds between 0 and {MAX_WAIT_SECS}"
                        ),
                    )),
                };
            }
        }
    }
    Ok(None)
}
