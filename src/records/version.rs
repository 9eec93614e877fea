//! Agent versions and reviews: the records kept beside an agent.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::agent::{AgentStatus, Build, Rejection};

/// One uploaded binary of an agent. Stored as JSON in `agent_versions`; also the API shape.
/// The agent's `version`, `binary_hash`, `status`, `rejection` and `build` mirror its current
/// version's record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentVersion {
    /// Semver, unique per agent.
    pub version: String,
    /// The blob holding the module.
    pub sha256: String,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Each version is validated and compiled on its own; only a ready one can be current
    /// for auctions.
    pub status: AgentStatus,
    #[serde(default)]
    pub rejection: Option<Rejection>,
    #[serde(default)]
    pub build: Option<Build>,
}

/// A user's review of an agent; one per user and agent. Stored as JSON in `reviews`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Review {
    pub agent_id: Uuid,
    pub user_id: Uuid,
    /// The reviewer's display name when they last posted.
    pub user_name: String,
    /// 1 to 5 stars.
    pub rating: u8,
    pub comment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Semver precedence of two version strings (`MAJOR.MINOR.PATCH[-pre][+build]`): numeric
/// fields compare as numbers, a pre-release sorts before its release, and build metadata is
/// ignored; a string that does not parse sorts first.
pub fn semver_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(v: &str) -> Option<([u64; 3], Option<&str>)> {
        let v = v.split('+').next()?;
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        };
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let n = [parts.next()??, parts.next()??, parts.next()??];
        Some((n, pre))
    }
    match (key(a), key(b)) {
        (Some((na, pa)), Some((nb, pb))) => na.cmp(&nb).then_with(|| match (pa, pb) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => x.cmp(y),
        }),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::semver_cmp;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_order_by_semver_precedence() {
        assert_eq!(semver_cmp("1.10.0", "1.9.3"), Greater);
        assert_eq!(semver_cmp("2.0.0-rc.1", "2.0.0"), Less);
        assert_eq!(semver_cmp("1.0.0+build.5", "1.0.0"), Equal);
        assert_eq!(semver_cmp("0.1.0", "0.1.0"), Equal);
    }
}
