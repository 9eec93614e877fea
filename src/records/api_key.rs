//! API keys as stored: the record, its scopes and the hash that identifies a key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a key may do. A session token may do everything its account may; a key only what its
/// scopes name (`src/http/access.rs` says which routes need which).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// List, search and read agents, their versions and reviews.
    #[serde(rename = "agents:read")]
    AgentsRead,
    /// Upload, edit and delete agents and versions; post reviews.
    #[serde(rename = "agents:write")]
    AgentsWrite,
    /// Read tasks, their statistics and analytics; receive live updates.
    #[serde(rename = "tasks:read")]
    TasksRead,
    /// Submit and cancel tasks.
    #[serde(rename = "tasks:write")]
    TasksWrite,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::TasksRead,
        Scope::TasksWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
            Scope::TasksRead => "tasks:read",
            Scope::TasksWrite => "tasks:write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of scopes, one bit each: copied into every authenticated request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

/// A stored key: everything but the secret. Stored as JSON; also the API shape.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    pub name: String,
    /// The key's first characters (`zs_` and 8 more), to tell keys apart.
    pub prefix: String,
    /// Sorted, without duplicates.
    pub scopes: Vec<Scope>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last request made with the key (to the second), `null` if never used.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// After this the key is refused; `null`: it never expires.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// sha256 of a whole key: its identity in the store and in memory.
pub type KeyHash = [u8; 32];

pub fn hash_key(secret: &str) -> KeyHash {
    Sha256::digest(secret.as_bytes()).into()
}
